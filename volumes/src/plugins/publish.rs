//! What configMap, secret, downwardAPI and projected volumes share: one plugin,
//! [`AtomicWriterPlugin`], over a [`PayloadSource`] that says what differs (the name, the
//! volume field, tmpfs or disk, the files). Once the payload is known: set up the wrapped
//! emptyDir, create nested mount points, write the payload atomically with the pod's
//! fsGroup, and tear the volume down again if any of that fails (as upstream's deferred
//! clean-up does).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Volume};
use kubelet_core::{MountedVolume, PodRef, VolumePlugin};
use tracing::{debug, error};

use super::empty_dir::{self, Medium, ready_dir};
use super::{SharedNode, blocking, nested_mount_points, pod_dir, pod_fs_group, volume_path};
use crate::atomic_writer::{AtomicWriter, Payload};
use crate::error::{Error, Result};
use crate::ownership::set_volume_ownership;
use crate::sys;

/// Writes `payload` as volume `name` of `pod` under the directory of plugin `plugin`,
/// on a tmpfs when `memory`. Returns the volume's directory.
pub(crate) async fn publish(
    pod: &Pod,
    name: &str,
    pod_volume_dir: &Path,
    plugin: &str,
    memory: bool,
    node: &SharedNode,
    payload: Payload,
) -> Result<PathBuf> {
    let dir = volume_path(pod_volume_dir, plugin, name);
    let ready = ready_dir(pod_volume_dir, &format!("wrapped_{name}"));
    let (medium, size) = if memory {
        (
            Medium::Memory,
            empty_dir::memory_size(node.get().memory, None, pod),
        )
    } else {
        (Medium::Default, None)
    };
    let fs_group = pod_fs_group(pod);
    let nested = nested_mount_points(name, pod)?;
    let r = PodRef::of(pod);
    let context = format!("pod {}/{} volume {name}", r.namespace, r.name);
    let target = dir.clone();
    blocking(move || {
        // A volume that was ready before is in use by the pod's containers: a failed
        // refresh leaves it as it was rather than tearing it down under them.
        let live = empty_dir::is_ready(&ready);
        empty_dir::set_up_at(&target, &ready, &medium, size, fs_group)?;
        let written = (|| {
            for path in &nested {
                sys::safe_make_dir(Path::new(path), &target, 0o755).map_err(|e| {
                    Error::Invalid(format!("unable to create nested volume mountpoints: {e}"))
                })?;
            }
            let writer = AtomicWriter::new(&target, &context)?;
            // Written files may lie outside the new payload directory: the whole volume.
            let set_perms =
                || set_volume_ownership(&target, fs_group, true);
            writer.write(&payload, Some(&set_perms))
        })();
        match written {
            Ok(true) => debug!(context = %context, "volume contents updated"),
            Ok(false) => {}
            Err(e) if live => {
                error!(context = %context, error = %e, "refreshing the volume failed; it keeps its last contents");
                return Err(e);
            }
            Err(e) => {
                error!(context = %context, error = %e, "setting up the volume failed; tearing it down");
                if let Err(cleanup) = empty_dir::tear_down_at(&target, &ready) {
                    error!(context = %context, error = %cleanup, "tearing down the volume");
                }
                return Err(e);
            }
        }
        Ok(())
    })
    .await?;
    Ok(dir)
}

/// Tears down a volume written by [`publish`].
pub(crate) async fn unpublish(name: &str, pod_volume_dir: &Path, plugin: &str) -> Result<()> {
    super::check_volume_name(name)?;
    let dir = volume_path(pod_volume_dir, plugin, name);
    let ready = ready_dir(pod_volume_dir, &format!("wrapped_{name}"));
    blocking(move || empty_dir::tear_down_at(&dir, &ready)).await
}

/// What differs between the plugins whose volumes are files written atomically.
#[async_trait]
pub(crate) trait PayloadSource: Send + Sync + 'static {
    /// Upstream plugin name.
    const NAME: &'static str;
    /// Whether the volume lives on tmpfs (secrets and tokens never touch the disk).
    const MEMORY: bool;

    /// Whether `volume` is this plugin's.
    fn supports(volume: &Volume) -> bool;

    /// The files of the volume, from the pod, its API objects and the node.
    async fn payload(&self, pod: &Pod, volume: &Volume, node: &SharedNode) -> Result<Payload>;

    /// The pod's volumes of this plugin are gone: forget what was kept for it.
    fn forget_pod(&self, _pod_uid: &str) {}
}

/// A volume plugin writing a [`PayloadSource`]'s files with [`publish`].
pub(crate) struct AtomicWriterPlugin<S> {
    pub(crate) source: S,
    pub(crate) node: SharedNode,
}

#[async_trait]
impl<S: PayloadSource> VolumePlugin for AtomicWriterPlugin<S> {
    fn name(&self) -> &str {
        S::NAME
    }

    fn supports(&self, volume: &Volume) -> bool {
        S::supports(volume)
    }

    fn selinux_relabel(&self) -> bool {
        true
    }

    async fn set_up(
        &self,
        pod: &Pod,
        volume: &Volume,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<MountedVolume> {
        let set_up = async {
            super::check_volume_name(&volume.name)?;
            let payload = self.source.payload(pod, volume, &self.node).await?;
            publish(
                pod,
                &volume.name,
                pod_volume_dir,
                S::NAME,
                S::MEMORY,
                &self.node,
                payload,
            )
            .await
        };
        let host_path = set_up.await.map_err(|e| e.for_volume(&volume.name))?;
        Ok(MountedVolume {
            name: volume.name.clone(),
            host_path,
            read_only: true,
            block: false,
        })
    }

    async fn tear_down(
        &self,
        volume_name: &str,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<()> {
        unpublish(volume_name, pod_volume_dir, S::NAME)
            .await
            .map_err(|e| e.for_volume(volume_name))?;
        if let Some(uid) = pod_dir(pod_volume_dir).file_name() {
            self.source.forget_pod(&uid.to_string_lossy());
        }
        Ok(())
    }
}
