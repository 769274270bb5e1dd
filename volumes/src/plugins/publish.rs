//! What configMap, secret, downwardAPI and projected volumes share once their payload is
//! known: set up the wrapped emptyDir, create nested mount points, write the payload
//! atomically with the pod's fsGroup, and tear the volume down again if any of that
//! fails (as upstream's deferred clean-up does).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kubelet_core::PodRef;
use tracing::{debug, error};

use super::empty_dir::{self, Medium, ready_dir};
use super::{SharedNode, blocking, nested_mount_points, pod_fs_group, volume_path};
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
