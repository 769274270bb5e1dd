//! `subPath` mounts made safe as upstream's `pkg/volume/util/subpath/subpath_linux.go`
//! makes them (CVE-2017-1002101, CVE-2021-25741).
//!
//! A subPath is resolved inside its volume, checked to stay inside it, then opened
//! component by component from the volume's root with `openat(O_PATH | O_NOFOLLOW)`,
//! refusing any symlink on the way. That descriptor is bind-mounted (through
//! `/proc/self/fd/<n>`) onto `<pod>/volume-subpaths/<volume>/<container>/<index>`, and
//! the runtime is given that path: whatever the container does to the volume later
//! (say, swap a directory for a symlink to `/`), the mount holds what was checked.
//!
//! As upstream, symlinks that stay inside the volume are resolved first, so a subPath
//! may name a configMap key (which is a symlink to `..data/<key>`).

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::sys;

/// Directory of the pod's subPath bind mounts.
pub(crate) const SUBPATH_DIR: &str = "volume-subpaths";

/// One subPath of one volume mount of one container.
pub(crate) struct Subpath<'a> {
    /// Index of the volume mount in the container's `volumeMounts`.
    pub volume_mount_index: usize,
    /// The subPath's full path: the volume's path joined with the subPath.
    pub path: PathBuf,
    /// The volume's name.
    pub volume_name: &'a str,
    /// The volume's path on the host.
    pub volume_path: PathBuf,
    /// The pod's directory.
    pub pod_dir: PathBuf,
    /// The container's name.
    pub container_name: &'a str,
}

impl Subpath<'_> {
    fn bind_target(&self) -> PathBuf {
        self.pod_dir
            .join(SUBPATH_DIR)
            .join(self.volume_name)
            .join(self.container_name)
            .join(self.volume_mount_index.to_string())
    }
}

/// Bind-mounts the checked subPath and returns the path to give the runtime (upstream
/// `doBindSubPath`); an existing bind mount of the same file is reused. The error is
/// detailed, for logs only: it may describe the host's filesystem.
pub(crate) fn prepare(subpath: &Subpath<'_>) -> std::result::Result<PathBuf, String> {
    let volume_path = fs::canonicalize(&subpath.volume_path).map_err(|e| {
        format!(
            "error resolving symlinks in {:?}: {e}",
            subpath.volume_path.display().to_string()
        )
    })?;
    let path = fs::canonicalize(&subpath.path).map_err(|e| {
        format!(
            "error resolving symlinks in {:?}: {e}",
            subpath.path.display().to_string()
        )
    })?;
    if !sys::within_base(&path, &volume_path) {
        return Err(format!(
            "subpath {:?} not within volume path {:?}",
            path.display().to_string(),
            volume_path.display().to_string()
        ));
    }
    let fd = sys::safe_open(&path, &volume_path)
        .map_err(|e| format!("error opening subpath {}: {e}", path.display()))?;

    let (already_mounted, target) = prepare_target(subpath, &path)?;
    if already_mounted {
        return Ok(target);
    }
    let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    debug!(source = %source.display(), target = %target.display(), "bind-mounting subpath");
    if let Err(e) = sys::bind_mount(&source, &target) {
        if let Err(clean) = clean_one(&target) {
            warn!(target = %target.display(), error = %clean, "cleaning up a failed subpath");
        }
        return Err(format!("error mounting {}: {e}", path.display()));
    }
    Ok(target)
}

/// Upstream `prepareSubpathTarget`: reuses a bind mount of the same file, detaches a
/// stale one, creates the mount point (a directory 0750 or an empty file 0640).
fn prepare_target(
    subpath: &Subpath<'_>,
    resolved: &Path,
) -> std::result::Result<(bool, PathBuf), String> {
    let target = subpath.bind_target();
    let mounted = sys::mount_at(&target)
        .map_err(|e| format!("error checking path {} for mount: {e}", target.display()))?;
    if mounted.is_some() {
        let source = fs::symlink_metadata(resolved)
            .map_err(|e| format!("stat {} failed: {e}", resolved.display()))?;
        let existing = fs::symlink_metadata(&target)
            .map_err(|e| format!("lstat {} failed: {e}", target.display()))?;
        if source.dev() == existing.dev() && source.ino() == existing.ino() {
            debug!(target = %target.display(), "subpath already mounted");
            return Ok((true, target));
        }
        debug!(target = %target.display(), "stale subpath mount; detaching it");
        sys::lazy_unmount(&target).map_err(|e| {
            format!(
                "error lazy-unmounting stale subpath mount {}: {e}",
                target.display()
            )
        })?;
    }
    if let Some(parent) = target.parent() {
        sys::mkdir_all(parent, 0o750).map_err(|e| e.to_string())?;
    }
    let meta = fs::symlink_metadata(resolved)
        .map_err(|e| format!("lstat {} failed: {e}", resolved.display()))?;
    if meta.is_dir() {
        match fs::DirBuilder::new().create(&target) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(format!(
                    "error creating directory {}: {e}",
                    target.display()
                ));
            }
            _ => sys::chmod(&target, 0o750).map_err(|e| e.to_string())?,
        }
    } else {
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&target)
            .map_err(|e| format!("error creating file {}: {e}", target.display()))?;
    }
    Ok((false, target))
}

/// Unmounts and removes one bind target; a target that cannot be unmounted is left in
/// place (never removed through).
fn clean_one(target: &Path) -> Result<()> {
    if sys::mount_at(target)?.is_some() {
        sys::unmount_all(target)?;
    }
    let meta = match fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspecting", target, e)),
    };
    let removed = if meta.is_dir() {
        fs::remove_dir(target)
    } else {
        fs::remove_file(target)
    };
    removed.map_err(|e| Error::io("removing", target, e))
}

/// Unmounts and removes every subPath bind mount of the pod (upstream
/// `CleanSubPaths`, for all volumes): returns one message per failure, leaving what
/// failed in place.
pub(crate) fn clean_all(pod_dir: &Path) -> Vec<String> {
    let root = pod_dir.join(SUBPATH_DIR);
    let mut failures = Vec::new();
    let list = |dir: &Path, failures: &mut Vec<String>| -> Vec<PathBuf> {
        match fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                failures.push(format!("error reading {}: {e}", dir.display()));
                Vec::new()
            }
        }
    };
    for volume in list(&root, &mut failures) {
        if !is_real_dir(&volume) {
            failures.push(format!("unexpected entry {}", volume.display()));
            continue;
        }
        for container in list(&volume, &mut failures) {
            if !is_real_dir(&container) {
                failures.push(format!("unexpected entry {}", container.display()));
                continue;
            }
            for target in list(&container, &mut failures) {
                if let Err(e) = clean_one(&target) {
                    failures.push(format!(
                        "error cleaning subpath mount {}: {e}",
                        target.display()
                    ));
                }
            }
            if let Err(e) = sys::remove_if_empty(&container) {
                failures.push(e.to_string());
            }
        }
        if let Err(e) = sys::remove_if_empty(&volume) {
            failures.push(e.to_string());
        }
    }
    if let Err(e) = sys::remove_if_empty(&root) {
        failures.push(e.to_string());
    }
    failures
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}
