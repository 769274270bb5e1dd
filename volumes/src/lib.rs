//! Pod volumes for a Rust kubelet: emptyDir, hostPath, configMap, secret, downwardAPI,
//! projected (service-account tokens) and local PersistentVolumes, each a [`kubelet_core::VolumePlugin`], and the
//! [`VolumeManager`] that sets them up for a pod, prepares each container's mounts and
//! tears them down.
//!
//! Volumes live where upstream's kubelet keeps them,
//! `<root-dir>/pods/<pod uid>/volumes/kubernetes.io~<plugin>/<volume>`, and behave as
//! upstream's plugins do (Kubernetes v1.37):
//!
//! - **emptyDir**: a 0777 directory, or with `medium: Memory` a tmpfs sized by the
//!   volume's `sizeLimit`, the pod's memory limit or the node's allocatable memory;
//! - **hostPath**: the node's path itself, checked against `type` (created for
//!   `DirectoryOrCreate` and `FileOrCreate`);
//! - **configMap**, **secret**, **downwardAPI**, **projected**: files written by an
//!   atomic writer (a timestamped directory behind a `..data` symlink swapped in one
//!   rename), refreshed on every set-up and rewritten only when their content changed;
//!   secret, downwardAPI and projected volumes sit on a tmpfs. Service-account tokens
//!   are cached and renewed at 80% of their lifetime;
//! - **persistentVolumeClaim** and generic **ephemeral** volumes: the claim (and, for an
//!   ephemeral volume, the pod's ownership of it) and its bound PersistentVolume checked
//!   as upstream before anything is mounted, once per pod; `hostPath` PersistentVolumes
//!   as hostPath, `local` ones bind-mounted at
//!   `kubernetes.io~local-volume/<pv name>` (read-only when the claim reference is),
//!   honouring `fsGroupChangePolicy: OnRootMismatch`; a volume's
//!   `pv.beta.kubernetes.io/gid` joins the containers' groups
//!   ([`PodVolumes::supplemental_groups`]). A raw block volume (`volumeMode: Block`,
//!   listed in `volumeDevices`) reaches its containers as a device
//!   ([`VolumeManager::container_devices`]): a local PV's block device itself; hostPath
//!   PVs cannot be block volumes, as upstream;
//! - **fsGroup**: the pod's `securityContext.fsGroup` becomes the group of these
//!   volumes' files.
//!
//! A volume whose plugin failed is not asked again before upstream's exponential backoff
//! (500 ms doubling to 2 min 2 s) is over; meanwhile its last failure is reported again,
//! so a failing driver or a missing object is not hammered on every sync of the pod.
//!
//! `subPath` mounts are prepared as upstream's safe subpath code does: resolved inside
//! the volume, opened without following symlinks, and bind-mounted through the opened
//! descriptor, so a symlink swapped in later cannot point the container elsewhere.
//!
//! There is no state besides the disk. After a restart, set-ups find their volumes in
//! place (a tmpfs already mounted is not mounted again), and
//! [`VolumeManager::clean_up_orphans`] removes what pods that are gone left behind.
//!
//! # Example
//!
//! ```no_run
//! use std::collections::HashSet;
//! use std::path::PathBuf;
//! use std::sync::Arc;
//!
//! use kubelet_core::NoVolumeSources;
//! use kubelet_core::k8s_openapi::api::core::v1::Pod;
//! use kubelet_volumes::VolumeManager;
//!
//! async fn run(pod: &Pod) -> Result<(), kubelet_volumes::Error> {
//!     let volumes = Arc::new(VolumeManager::new(
//!         PathBuf::from("/var/lib/kubelet/pods"),
//!         Arc::new(NoVolumeSources),
//!     ));
//!     // Before starting containers, and on every sync of the running pod:
//!     let pod_volumes = volumes.set_up_pod(pod).await?;
//!     for container in &pod.spec.as_ref().expect("a pod has a spec").containers {
//!         let env = vec![("POD_NAME".to_owned(), "web".to_owned())];
//!         let mounts = volumes.container_mounts(pod, container, &pod_volumes, &env).await?;
//!         println!("{}: {mounts:?}", container.name);
//!     }
//!     // Once every container of the pod is gone:
//!     let uid = pod.metadata.uid.as_deref().unwrap_or_default();
//!     volumes.tear_down_pod(uid).await?;
//!     // Once all pod sources have reported, with the UIDs of every known pod:
//!     volumes.clean_up_orphans(&HashSet::new()).await?;
//!     Ok(())
//! }
//! ```

mod atomic_writer;
mod claims;
mod error;
mod manager;
mod ownership;
mod plugins;
mod subpath;
mod sys;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod token;

pub use error::{Error, Result};
pub use manager::{PodVolumes, VolumeManager};

/// Prepares the kubelet's root directory at start-up as upstream does: creates it (mode
/// 0750) and makes it the root of a recursively shared mount (a bind mount of itself,
/// unless the mount it is on is shared already), so that mounts made below it reach
/// containers with `Bidirectional` propagation and a kubelet started later (this one or
/// upstream's) sees the volume mounts made by an earlier one. Blocking: call it from
/// `spawn_blocking`. Whether it bind-mounted.
///
/// # Errors
///
/// The directory cannot be made, or the mount is refused.
pub fn prepare_root_dir(root_dir: &std::path::Path) -> Result<bool> {
    sys::mkdir_all(root_dir, 0o750)?;
    sys::make_rshared(root_dir)
}

/// Removes `path` and everything below it (a file or symlink at `path` is unlinked)
/// without following symlinks, and refuses with [`Error::MountPoint`], removing
/// nothing, when anything is mounted at or below it: for other directories of the
/// kubelet's that a mount may have been left in (pod log directories). Blocking: call it
/// from `spawn_blocking`.
///
/// # Errors
///
/// [`Error::MountPoint`] naming the mount, or the failed file system operation.
pub fn remove_all_on_one_file_system(path: &std::path::Path) -> Result<()> {
    sys::remove_all(path)
}

/// Gives the volume at `dir` the pod's `fsGroup` as upstream's `SetVolumeOwnership`
/// (every file's group, group `rw` bits or `r` when `read_only`, directories setgid);
/// with `on_root_mismatch` (`fsGroupChangePolicy: OnRootMismatch`) the walk is skipped
/// when the volume's root is already right. For volume plugins outside this crate (CSI).
/// Blocking: call it from `spawn_blocking`.
///
/// # Errors
///
/// `fs_group` is no valid group ID, or the volume's root cannot be changed.
pub fn apply_fs_group(
    dir: &std::path::Path,
    fs_group: i64,
    read_only: bool,
    on_root_mismatch: bool,
) -> Result<()> {
    if on_root_mismatch && !ownership::requires_permission_change(dir, fs_group, read_only) {
        return Ok(());
    }
    ownership::set_volume_ownership(dir, Some(fs_group), read_only)
}

/// Whether something is mounted at `path` (per `/proc/self/mountinfo`, so a bind mount
/// from the same file system counts). Blocking: call it from `spawn_blocking`.
///
/// # Errors
///
/// The mount table cannot be read.
pub fn is_mount_point(path: &std::path::Path) -> Result<bool> {
    Ok(sys::mount_at(path)?.is_some())
}

/// Refuses a name that cannot be one directory below a pod's volumes (empty, `.`, `..`,
/// a `/` or NUL in it): a volume's or PersistentVolume's name as plugins outside this
/// crate (CSI) use it for their directories.
///
/// # Errors
///
/// [`Error::Invalid`] naming the name.
pub fn check_volume_name(name: &str) -> Result<()> {
    plugins::check_volume_name(name)
}
