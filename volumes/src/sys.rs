//! Blocking filesystem and mount primitives. Everything here runs on a blocking thread
//! (`tokio::task::spawn_blocking`), never on an async worker.
//!
//! Paths the pod controls (volume contents) are walked with `openat` and `O_NOFOLLOW`,
//! and trees are removed without following symlinks and without crossing mount points.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use tracing::debug;

use crate::error::{Error, Result};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    /// The filesystem type, e.g. `tmpfs`.
    pub fs_type: String,
    /// Whether it is in a shared peer group (an optional field `shared:N`).
    pub shared: bool,
}

/// Parses `/proc/<pid>/mountinfo` text: `id parent major:minor root mount-point options
/// [optional fields...] - fstype source super-options`.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let mount_point = fields.nth(4)?;
            // Past the options: optional fields up to the `-` separator.
            let mut optional = fields.skip(1);
            let mut shared = false;
            for field in optional.by_ref() {
                if field == "-" {
                    break;
                }
                shared |= field.starts_with("shared:");
            }
            let fs_type = optional.next()?;
            Some(MountEntry {
                mount_point: PathBuf::from(OsString::from_vec(unescape_octal(mount_point))),
                fs_type: fs_type.to_owned(),
                shared,
            })
        })
        .collect()
}

/// The kernel escapes space, tab, newline and backslash in mountinfo as `\ooo`.
fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..=i + 3]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..=i + 3]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The mounts of this process's mount namespace, in mount order.
pub(crate) fn mounts() -> Result<Vec<MountEntry>> {
    const MOUNTINFO: &str = "/proc/self/mountinfo";
    let text = fs::read_to_string(MOUNTINFO).map_err(|e| Error::io("reading", MOUNTINFO, e))?;
    Ok(parse_mountinfo(&text))
}

/// `path` with its parent's symlinks resolved but not its last component, as mountinfo
/// names mount points. A path whose parent does not exist is returned as it is.
pub(crate) fn real_path(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => match fs::canonicalize(parent) {
            Ok(parent) => parent.join(name),
            Err(_) => path.to_owned(),
        },
        _ => path.to_owned(),
    }
}

/// The topmost mount on `path` itself, if `path` is a mount point.
pub(crate) fn mount_at(path: &Path) -> Result<Option<MountEntry>> {
    let real = real_path(path);
    Ok(mounts()?.into_iter().rev().find(|m| m.mount_point == real))
}

/// Makes the directory `dir` (which exists) the root of a recursively shared mount, as
/// upstream's `MakeRShared`: nothing when the mount it is on is shared already, else a
/// bind mount of itself made `rshared`. Whether it bind-mounted.
pub(crate) fn make_rshared(dir: &Path) -> Result<bool> {
    let real = fs::canonicalize(dir).map_err(|e| Error::io("resolving", dir, e))?;
    let on_shared = mounts()?
        .into_iter()
        .rev()
        .find(|m| real.starts_with(&m.mount_point))
        .is_some_and(|m| m.shared);
    if on_shared {
        debug!(dir = %real.display(), "already on a shared mount");
        return Ok(false);
    }
    let mount = |flags: MsFlags, what: &'static str| {
        nix::mount::mount(Some(&real), &real, None::<&str>, flags, None::<&str>)
            .map_err(|e| Error::io(what, &real, e))
    };
    mount(MsFlags::MS_BIND, "bind-mounting")?;
    mount(MsFlags::MS_SHARED | MsFlags::MS_REC, "making rshared")?;
    Ok(true)
}

/// Mount points at `path` or below it.
pub(crate) fn mounts_under(path: &Path) -> Result<Vec<PathBuf>> {
    let real = real_path(path);
    Ok(mounts()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(&real))
        .collect())
}

/// Mounts a tmpfs on `dir`, of `size` bytes when given, with `noswap` where the kernel
/// has it (upstream asks for it from Linux 6.4 on; here an `EINVAL` means it has not).
pub(crate) fn mount_tmpfs(dir: &Path, size: Option<i64>) -> Result<()> {
    let size_option = size.filter(|s| *s > 0).map(|s| format!("size={s}"));
    let with_noswap = match &size_option {
        Some(size) => format!("{size},noswap"),
        None => "noswap".to_owned(),
    };
    let mount = |options: Option<&str>| {
        nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::empty(), options)
    };
    match mount(Some(&with_noswap)) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            debug!(dir = %dir.display(), "tmpfs noswap not supported; mounting without it");
            mount(size_option.as_deref()).map_err(|e| Error::io("mounting tmpfs on", dir, e))
        }
        Err(e) => Err(Error::io("mounting tmpfs on", dir, e)),
    }
}

/// Bind-mounts `source` (a path, or `/proc/self/fd/<n>`) onto `target`.
pub(crate) fn bind_mount(source: &Path, target: &Path) -> Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::io("bind-mounting onto", target, e))
}

/// Unmounts the topmost mount on `path`, not following a symlink at `path`.
pub(crate) fn unmount(path: &Path) -> Result<()> {
    nix::mount::umount2(path, MntFlags::UMOUNT_NOFOLLOW)
        .map_err(|e| Error::io("unmounting", path, e))
}

/// Detaches the topmost mount on `path` (`umount -l`).
pub(crate) fn lazy_unmount(path: &Path) -> Result<()> {
    nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
        .map_err(|e| Error::io("lazily unmounting", path, e))
}

/// Unmounts everything mounted on `path` itself (mounts can be stacked), then checks
/// that nothing is left.
pub(crate) fn unmount_all(path: &Path) -> Result<()> {
    // A bound on stacked mounts, so a mount that keeps coming back cannot loop forever.
    for _ in 0..16 {
        if mount_at(path)?.is_none() {
            return Ok(());
        }
        unmount(path)?;
    }
    Err(Error::MountPoint {
        path: path.to_owned(),
    })
}

fn stat_kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// Removes `path` and everything below it, like `rm -r --one-file-system`, except that
/// it refuses outright when anything is mounted at or below `path` (nothing is removed
/// then) and never follows a symlink. A missing path is not an error.
pub(crate) fn remove_all(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspecting", path, e)),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("removing", path, e)),
            _ => Ok(()),
        };
    }
    if let Some(mounted) = mounts_under(path)?.into_iter().next() {
        return Err(Error::MountPoint { path: mounted });
    }
    let dir = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("opening", path, e))?;
    remove_contents(dir, path, meta.dev())?;
    match fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("removing", path, e)),
        _ => Ok(()),
    }
}

fn remove_contents(dir: OwnedFd, path: &Path, device: u64) -> Result<()> {
    let mut dir = Dir::from_fd(dir).map_err(|e| Error::io("reading", path, e))?;
    let mut names: Vec<OsString> = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(|e| Error::io("reading", path, e))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    for name in names {
        let child = path.join(&name);
        let stat = match fstatat(
            dir.as_fd(),
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Error::io("inspecting", child, e)),
        };
        if stat_kind(&stat) == SFlag::S_IFDIR {
            if stat.st_dev != device {
                return Err(Error::MountPoint { path: child });
            }
            let sub = openat(
                dir.as_fd(),
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io("opening", &child, e))?;
            remove_contents(sub, &child, device)?;
            unlinkat(dir.as_fd(), name.as_os_str(), UnlinkatFlags::RemoveDir)
                .or_else(ignore_enoent)
                .map_err(|e| Error::io("removing", &child, e))?;
        } else {
            unlinkat(dir.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .or_else(ignore_enoent)
                .map_err(|e| Error::io("removing", &child, e))?;
        }
    }
    Ok(())
}

fn ignore_enoent(e: Errno) -> nix::Result<()> {
    if e == Errno::ENOENT { Ok(()) } else { Err(e) }
}

/// Removes `path` if it is an empty directory (or a file); a non-empty directory or a
/// missing path is left alone without error.
pub(crate) fn remove_if_empty(path: &Path) -> Result<()> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.kind() == io::ErrorKind::DirectoryNotEmpty =>
        {
            Ok(())
        }
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// Creates `path` and its missing parents with `mode` (subject to the umask), as Go's
/// `os.MkdirAll`.
pub(crate) fn mkdir_all(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| Error::io("creating directory", path, e))
}

/// Sets the permission bits of `path` (following symlinks, as `chmod`).
pub(crate) fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("changing the mode of", path, e))
}

/// True when `path` is `base` or below it; both must be clean absolute paths (upstream
/// `mount.PathWithinBase`).
pub(crate) fn within_base(path: &Path, base: &Path) -> bool {
    path.starts_with(base)
}

/// Opens `path`, which must be below `base`, component by component with `openat(...,
/// O_PATH | O_NOFOLLOW)` from `base`, refusing any symlink on the way and anything
/// outside `base` (upstream `doSafeOpen`). The returned descriptor pins what was
/// checked: a symlink swapped in later cannot redirect it.
pub(crate) fn safe_open(path: &Path, base: &Path) -> std::result::Result<OwnedFd, String> {
    let relative = path.strip_prefix(base).map_err(|_| {
        format!(
            "path {} is outside of allowed base {}",
            path.display(),
            base.display()
        )
    })?;
    let mut current = nix::fcntl::open(
        base,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open directory {}: {}", base.display(), e.desc()))?;
    let mut current_path = base.to_owned();
    for component in relative.components() {
        let segment = match component {
            Component::Normal(segment) => segment,
            Component::CurDir => continue,
            _ => {
                return Err(format!(
                    "path {} is outside of allowed base {}",
                    path.display(),
                    base.display()
                ));
            }
        };
        current_path.push(segment);
        let child = openat(
            current.as_fd(),
            segment,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open {}: {}", current_path.display(), e.desc()))?;
        let stat = fstat(child.as_fd()).map_err(|e| {
            format!(
                "error running fstat on {} with {}",
                current_path.display(),
                e.desc()
            )
        })?;
        if stat_kind(&stat) == SFlag::S_IFLNK {
            return Err(format!(
                "unexpected symlink found {}",
                current_path.display()
            ));
        }
        current = child;
    }
    Ok(current)
}

/// Creates `subdir` below `base` with `perm`, refusing symlinks and anything outside
/// `base` (upstream `SafeMakeDir`): the existing prefix is resolved and checked, then
/// each missing directory is created with `mkdirat` under a descriptor opened without
/// following symlinks, and its mode set with `fchmod` (so the umask does not apply).
pub(crate) fn safe_make_dir(
    subdir: &Path,
    base: &Path,
    perm: u32,
) -> std::result::Result<(), String> {
    let base = fs::canonicalize(base)
        .map_err(|e| format!("error resolving symlinks in {}: {e}", base.display()))?;
    let full = clean(&base.join(subdir));
    if !within_base(&full, &base) {
        return Err(format!(
            "path {} is outside of allowed base {}",
            full.display(),
            base.display()
        ));
    }
    match fs::metadata(&full) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(format!("mkdir {}: not a directory", full.display()));
        }
        Err(_) => {}
    }
    // The longest existing prefix, and what is missing after it.
    let relative: Vec<OsString> = full
        .strip_prefix(&base)
        .map_err(|_| {
            format!(
                "path {} is outside of allowed base {}",
                full.display(),
                base.display()
            )
        })?
        .components()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut existing = base.clone();
    let mut missing_from = relative.len();
    for (i, segment) in relative.iter().enumerate() {
        let next = existing.join(segment);
        if fs::symlink_metadata(&next).is_err() {
            missing_from = i;
            break;
        }
        existing = next;
    }
    let existing_real = fs::canonicalize(&existing)
        .map_err(|e| format!("error opening directory {}: {e}", existing.display()))?;
    if !within_base(&existing_real, &base) {
        return Err(format!(
            "path {} is outside of allowed base {}",
            existing_real.display(),
            base.display()
        ));
    }
    let mut parent = safe_open(&existing_real, &base)
        .map_err(|e| format!("cannot open directory {}: {e}", existing.display()))?;
    let mut current = existing_real;
    let mode = Mode::from_bits_truncate(perm & 0o7777);
    for segment in &relative[missing_from..] {
        current.push(segment);
        match mkdirat(parent.as_fd(), segment.as_os_str(), mode) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(format!(
                    "cannot create directory {}: {}",
                    current.display(),
                    e.desc()
                ));
            }
        }
        let child = openat(
            parent.as_fd(),
            segment.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open {}: {}", current.display(), e.desc()))?;
        fchmod(child.as_fd(), mode)
            .map_err(|e| format!("chmod {:?} failed: {}", current.display(), e.desc()))?;
        parent = child;
    }
    Ok(())
}

/// `path` with `.` removed and `..` applied lexically (Go's `filepath.Clean` for
/// absolute paths).
pub(crate) fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Creates the directory if it is missing, with `mode` (umask applies); an existing
/// directory is left as it is.
pub(crate) fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::io(
            "creating directory",
            path,
            io::Error::from(io::ErrorKind::AlreadyExists),
        )),
        Err(_) => mkdir_all(path, mode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_with_optional_fields_and_escapes() {
        let text = "\
36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue
37 1 0:30 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/s rw,relatime master:2 shared:5 - tmpfs tmpfs rw,size=1024k
38 1 0:31 / /x rw - tmpfs shared:9 rw
";
        let mounts = parse_mountinfo(text);
        assert_eq!(
            mounts,
            vec![
                MountEntry {
                    mount_point: "/mnt/with space".into(),
                    fs_type: "ext3".into(),
                    shared: false,
                },
                MountEntry {
                    mount_point: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/s".into(),
                    fs_type: "tmpfs".into(),
                    shared: true,
                },
                MountEntry {
                    mount_point: "/x".into(),
                    fs_type: "tmpfs".into(),
                    shared: false,
                },
            ]
        );
    }

    #[test]
    fn the_root_dir_becomes_an_rshared_mount_once() {
        if !crate::testing::can_mount("the_root_dir_becomes_an_rshared_mount_once") {
            return;
        }
        // Unmounts what the test mounted below it when dropped, also on failure.
        let dir = kubelet_test_support::TestDir::new();
        let root = dir.path().join("kubelet");
        let real = |m: &MountEntry| m.mount_point == real_path(&root);
        let on_shared_mount_before = {
            let all = mounts().expect("mountinfo");
            all.iter()
                .rev()
                .find(|m| real_path(dir.path()).starts_with(&m.mount_point))
                .is_some_and(|m| m.shared)
        };
        let bound = crate::prepare_root_dir(&root).expect("prepared");
        assert_eq!(bound, !on_shared_mount_before);
        assert_eq!(
            fs::metadata(&root).expect("made").permissions().mode() & 0o777,
            0o750
        );
        if bound {
            let mount = mounts()
                .expect("mountinfo")
                .into_iter()
                .rev()
                .find(real)
                .expect("a mount at the root dir");
            assert!(mount.shared, "{mount:?}");
        }
        // A mount made below it is shared too, and a second start bind-mounts nothing.
        let below = root.join("pods");
        mkdir_all(&below, 0o750).expect("mkdir");
        mount_tmpfs(&below, None).expect("tmpfs");
        let tmpfs = mounts()
            .expect("mountinfo")
            .into_iter()
            .rev()
            .find(|m| m.mount_point == real_path(&below))
            .expect("the tmpfs");
        assert!(tmpfs.shared, "{tmpfs:?}");
        assert!(!crate::prepare_root_dir(&root).expect("again"));
        let stacked = mounts()
            .expect("mountinfo")
            .iter()
            .filter(|m| real(m))
            .count();
        assert_eq!(stacked, usize::from(bound));
    }

    #[test]
    fn cleans_paths_lexically() {
        assert_eq!(clean(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(clean(Path::new("/a/b/")), PathBuf::from("/a/b"));
    }

    #[test]
    fn safe_open_refuses_symlinks_and_escapes() {
        let root = tempfile::tempdir().expect("tempdir");
        let base = fs::canonicalize(root.path()).expect("canonical");
        fs::create_dir_all(base.join("a/b")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", base.join("a/link")).expect("symlink");
        assert!(safe_open(&base.join("a/b"), &base).is_ok());
        let err = safe_open(&base.join("a/link"), &base).expect_err("symlink refused");
        assert_eq!(
            err,
            format!("unexpected symlink found {}", base.join("a/link").display())
        );
        let err = safe_open(&base.join("a/link/passwd"), &base).expect_err("through symlink");
        assert!(
            err.starts_with("unexpected symlink found") || err.starts_with("cannot open"),
            "{err}"
        );
        let err = safe_open(Path::new("/etc"), &base).expect_err("outside");
        assert!(err.contains("is outside of allowed base"), "{err}");
    }

    #[test]
    fn safe_make_dir_creates_inside_and_refuses_symlinked_escape() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let base = fs::canonicalize(root.path()).expect("canonical");
        safe_make_dir(Path::new("x/y"), &base, 0o2775).expect("mkdir");
        let meta = fs::metadata(base.join("x/y")).expect("created");
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o2775);
        std::os::unix::fs::symlink(outside.path(), base.join("out")).expect("symlink");
        let err = safe_make_dir(Path::new("out/z"), &base, 0o755).expect_err("escape refused");
        assert!(err.contains("outside of allowed base"), "{err}");
        assert!(!outside.path().join("z").exists());
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("keep"), b"x").expect("write");
        let tree = root.path().join("tree");
        fs::create_dir_all(tree.join("d/e")).expect("mkdir");
        fs::write(tree.join("d/e/f"), b"x").expect("write");
        std::os::unix::fs::symlink(outside.path(), tree.join("d/link")).expect("symlink");
        remove_all(&tree).expect("removed");
        assert!(!tree.exists());
        assert!(outside.path().join("keep").exists());
        // Missing is fine.
        remove_all(&tree).expect("idempotent");
    }
}
