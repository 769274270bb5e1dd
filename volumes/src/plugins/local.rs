//! local PersistentVolumes (upstream `pkg/volume/local`): the PV's directory on this
//! node bind-mounted at `<pod>/volumes/kubernetes.io~local-volume/<pv name>`
//! (read-only when the pod's claim reference says so), given the pod's `fsGroup` unless
//! read-only; tear-down unmounts it and removes the mount point, never the data.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolume, Pod, Volume};
use kubelet_core::{MountedVolume, VolumePlugin};
use nix::mount::MsFlags;
use tracing::{debug, info};

use super::{blocking, check_volume_name, pod_fs_group, volume_path};
use crate::error::{Error, Result};
use crate::{ownership, sys};

/// Upstream plugin name.
pub(crate) const PLUGIN_NAME: &str = "kubernetes.io/local-volume";

/// The `local` PersistentVolume plugin.
pub(crate) struct LocalVolumePlugin;

/// What one set-up needs, moved onto a blocking thread.
struct SetUp {
    source: PathBuf,
    dir: PathBuf,
    read_only: bool,
    fs_group: Option<i64>,
    on_root_mismatch: bool,
}

#[async_trait]
impl VolumePlugin for LocalVolumePlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    fn supports(&self, _volume: &Volume) -> bool {
        // Only a PersistentVolume can be local.
        false
    }

    fn supports_persistent(&self, pv: &PersistentVolume) -> bool {
        pv.spec.as_ref().is_some_and(|s| s.local.is_some())
    }

    async fn set_up(
        &self,
        _pod: &Pod,
        volume: &Volume,
        _pod_volume_dir: &Path,
    ) -> kubelet_core::Result<MountedVolume> {
        Err(
            Error::Invalid("local volumes are PersistentVolumes only".to_owned())
                .for_volume(&volume.name),
        )
    }

    async fn set_up_persistent(
        &self,
        pod: &Pod,
        volume_name: &str,
        pv: &PersistentVolume,
        read_only: bool,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<MountedVolume> {
        let fail = |e: Error| e.for_volume(volume_name);
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        check_volume_name(&pv_name).map_err(fail)?;
        let path = pv
            .spec
            .as_ref()
            .and_then(|s| s.local.as_ref())
            .map(|l| l.path.clone())
            .unwrap_or_default();
        if path.is_empty() {
            return Err(fail(Error::Invalid(format!(
                "LocalVolume volume {pv_name:?} path is empty"
            ))));
        }
        if path.split('/').any(|part| part == "..") {
            return Err(fail(Error::Invalid(format!(
                "invalid path: {path} must not contain '..'"
            ))));
        }
        if pv.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
            // A raw block volume: the node's device itself goes to the containers
            // (upstream's local block mapper), nothing is mounted.
            let device = PathBuf::from(&path);
            blocking(move || match fs::metadata(&device) {
                Ok(meta) if meta.file_type().is_block_device() => Ok(()),
                Ok(_) => Err(Error::Invalid(format!(
                    "local volume path {} is not a block device",
                    device.display()
                ))),
                Err(e) => Err(Error::io("inspecting", &device, e)),
            })
            .await
            .map_err(fail)?;
            return Ok(MountedVolume {
                name: volume_name.to_owned(),
                host_path: PathBuf::from(path),
                read_only,
                block: true,
            });
        }
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|sc| sc.fs_group_change_policy.as_deref());
        let dir = volume_path(pod_volume_dir, PLUGIN_NAME, &pv_name);
        let set_up = SetUp {
            source: PathBuf::from(&path),
            dir: dir.clone(),
            read_only,
            fs_group: pod_fs_group(pod),
            on_root_mismatch: policy == Some("OnRootMismatch"),
        };
        blocking(move || set_up_at(&set_up)).await.map_err(fail)?;
        Ok(MountedVolume {
            name: volume_name.to_owned(),
            host_path: dir,
            read_only,
            block: false,
        })
    }

    async fn tear_down(
        &self,
        volume_name: &str,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<()> {
        check_volume_name(volume_name).map_err(|e| e.for_volume(volume_name))?;
        let dir = volume_path(pod_volume_dir, PLUGIN_NAME, volume_name);
        blocking(move || tear_down_at(&dir))
            .await
            .map_err(|e| e.for_volume(volume_name))
    }
}

/// Upstream `localVolumeMounter.SetUpAt`: nothing to do when the mount is there already.
fn set_up_at(s: &SetUp) -> Result<()> {
    if sys::mount_at(&s.dir)?.is_some() {
        return Ok(());
    }
    match fs::metadata(&s.source) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::Invalid(format!(
                "local volume path {} is not a directory",
                s.source.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!(
                "path {:?} does not exist",
                s.source.display().to_string()
            )));
        }
        Err(e) => return Err(Error::io("inspecting", &s.source, e)),
    }
    sys::mkdir_all(&s.dir, 0o750)?;
    if let Err(e) = bind(s) {
        // Nothing half-made stays: a mount point without its mount would be served
        // to the containers as an empty directory.
        if sys::mount_at(&s.dir)?.is_some() {
            sys::unmount(&s.dir)?;
        }
        let _ = fs::remove_dir(&s.dir);
        return Err(e);
    }
    info!(source = %s.source.display(), dir = %s.dir.display(), read_only = s.read_only, "mounted local volume");
    if !s.read_only
        && let Some(fs_group) = s.fs_group
    {
        if s.on_root_mismatch && !ownership::requires_permission_change(&s.dir, fs_group, false) {
            debug!(dir = %s.dir.display(), fs_group, "volume root already owned: skipping the ownership walk");
        } else {
            ownership::set_volume_ownership(&s.dir, Some(fs_group), false)?;
        }
    }
    Ok(())
}

/// The bind mount, then its read-only remount (a bind mount takes `ro` only on remount).
fn bind(s: &SetUp) -> Result<()> {
    sys::bind_mount(&s.source, &s.dir)?;
    if s.read_only {
        nix::mount::mount(
            None::<&str>,
            &s.dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| Error::io("remounting read-only", &s.dir, e))?;
    }
    Ok(())
}

/// Unmounts the bind mount (the data stays in the PV's directory) and removes the mount
/// point, which must then be empty.
fn tear_down_at(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspecting", dir, e)),
        Ok(_) => {}
    }
    sys::unmount_all(dir)?;
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", dir, e)),
    }
}
