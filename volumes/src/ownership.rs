//! `fsGroup` ownership of a volume, as upstream `SetVolumeOwnership`
//! (`pkg/volume/volume_linux.go`).
//!
//! Every file and directory below the volume gets the group `fsGroup` and the group
//! bits `rw` (`r` for a read-only volume), directories also `x` and setgid, so that files
//! created later inherit the group. Symlinks are re-grouped but never followed. Failures
//! on single files are logged and skipped, as upstream.
//!
//! Upstream's built-in plugins (emptyDir, configMap, secret, downwardAPI, projected) pass
//! no `fsGroupChangePolicy` (only volumes from persistent volume plugins honour the pod's
//! `OnRootMismatch`), so the whole volume is walked; it happens rarely anyway: once for
//! an emptyDir (its `ready` marker skips later set-ups) and only on a new payload for the
//! others.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tracing::{debug, warn};

use crate::error::{Error, Result};

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Gives `dir` and everything below it the group `fs_group` (see the module docs).
pub(crate) fn set_volume_ownership(
    dir: &Path,
    fs_group: Option<i64>,
    read_only: bool,
) -> Result<()> {
    let Some(fs_group) = fs_group else {
        return Ok(());
    };
    let gid = u32::try_from(fs_group)
        .map_err(|_| Error::Invalid(format!("invalid fsGroup {fs_group}")))?;
    debug!(path = %dir.display(), fs_group, "setting volume ownership");
    walk(dir, &mut |path, meta| change(path, meta, gid, read_only))
        .map_err(|e| Error::io("setting the volume ownership of", dir, e))
}

/// Upstream `requiresPermissionChange`, for a pod's `fsGroupChangePolicy:
/// OnRootMismatch` on a persistent volume: false when the volume's root already has the
/// group `fs_group`, the group bits it would get and setgid, so the walk is skipped.
pub(crate) fn requires_permission_change(dir: &Path, fs_group: i64, read_only: bool) -> bool {
    let Ok(meta) = fs::metadata(dir) else {
        return true;
    };
    if i64::from(meta.gid()) != fs_group || !meta.is_dir() {
        return true;
    }
    let wanted = if read_only { RO_MASK } else { RW_MASK } | EXEC_MASK;
    let perm = meta.mode() & 0o777;
    perm & wanted != wanted || meta.mode() & SETGID == 0
}

fn change(path: &Path, meta: &fs::Metadata, gid: u32, read_only: bool) {
    if let Err(e) = std::os::unix::fs::lchown(path, None, Some(gid)) {
        warn!(path = %path.display(), error = %e, "lchown failed");
    }
    if meta.file_type().is_symlink() {
        return;
    }
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if meta.is_dir() {
        mask |= SETGID | EXEC_MASK;
    }
    let mode = (meta.mode() & 0o7777) | mask;
    if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        warn!(path = %path.display(), error = %e, "chmod failed");
    }
}

/// Depth first, children before their directory, without following symlinks (upstream
/// `walkDeep`).
fn walk(path: &Path, visit: &mut dyn FnMut(&Path, &fs::Metadata)) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            walk(&entry?.path(), visit)?;
        }
    }
    visit(path, &meta);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_group_and_modes_without_following_symlinks() {
        if !nix::unistd::geteuid().is_root() {
            return kubelet_test_support::skip(
                "sets_group_and_modes_without_following_symlinks",
                "changing a file's group to an arbitrary fsGroup needs root",
            );
        }
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("vol");
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(dir.join("sub"), fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::write(dir.join("sub/file"), b"x").expect("write");
        fs::set_permissions(dir.join("sub/file"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let target = outside.path().join("target");
        fs::write(&target, b"x").expect("write");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink(&target, dir.join("link")).expect("symlink");

        set_volume_ownership(&dir, Some(1234), false).expect("ownership");
        let meta = |p: &Path| fs::symlink_metadata(p).expect("stat");
        assert_eq!(meta(&dir).gid(), 1234);
        assert_eq!(meta(&dir).mode() & 0o7777, 0o2775);
        assert_eq!(meta(&dir.join("sub")).mode() & 0o7777, 0o2770);
        assert_eq!(meta(&dir.join("sub/file")).mode() & 0o7777, 0o660);
        assert_eq!(meta(&dir.join("sub/file")).gid(), 1234);
        assert_eq!(meta(&dir.join("link")).gid(), 1234);
        // The symlink's target outside the volume is untouched.
        assert_eq!(meta(&target).mode() & 0o7777, 0o600);
        assert_ne!(meta(&target).gid(), 1234);

        // Read-only volumes get r-- for the group.
        fs::set_permissions(dir.join("sub/file"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        set_volume_ownership(&dir, Some(1234), true).expect("read-only");
        assert_eq!(meta(&dir.join("sub/file")).mode() & 0o7777, 0o640);
    }

    #[test]
    fn no_fs_group_changes_nothing() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        set_volume_ownership(root.path(), None, false).expect("no-op");
        assert_eq!(
            fs::metadata(root.path()).expect("stat").mode() & 0o7777,
            0o700
        );
    }
}
