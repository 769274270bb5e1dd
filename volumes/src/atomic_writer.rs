//! Upstream's `AtomicWriter` (`pkg/volume/util/atomic_writer.go`): a volume's files are
//! replaced all at once, so a container never sees half of an update.
//!
//! Layout of a target directory:
//!
//! ```text
//! ..2024_05_01_10_00_00.123456/   the payload, written fresh for each update
//! ..data -> ..2024_05_01_10_00_00.123456
//! key -> ..data/key               one symlink per top-level path of the payload
//! ```
//!
//! An update writes a new timestamped directory, points a `..data_tmp` symlink at it
//! and renames that over `..data` (the atomic step), adds the user-visible symlinks of
//! new top-level paths, removes those of vanished paths and then the old directory.
//! Nothing is written when every file of the payload already has its content on disk
//! and no path vanished.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{debug, error, warn};

use crate::error::{Error, Result};
use crate::sys;

const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;
const DATA_DIR_NAME: &str = "..data";
const NEW_DATA_DIR_NAME: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileProjection {
    /// The file's content.
    pub data: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner, when it must not stay root.
    pub fs_user: Option<u32>,
}

impl FileProjection {
    pub(crate) fn new(data: impl Into<Vec<u8>>, mode: i32) -> Self {
        Self {
            data: data.into(),
            // Modes are validated as 0..=0777 by the API; keep the permission bits only.
            mode: u32::try_from(mode).unwrap_or(0o644) & 0o7777,
            fs_user: None,
        }
    }
}

/// File path (relative, `/`-separated) → content.
pub(crate) type Payload = BTreeMap<String, FileProjection>;

/// Writes payloads into one target directory.
pub(crate) struct AtomicWriter<'a> {
    target_dir: &'a Path,
    log_context: &'a str,
}

impl<'a> AtomicWriter<'a> {
    /// A writer for `target_dir`, which must exist.
    pub(crate) fn new(target_dir: &'a Path, log_context: &'a str) -> Result<Self> {
        fs::metadata(target_dir).map_err(|e| Error::io("opening", target_dir, e))?;
        Ok(Self {
            target_dir,
            log_context,
        })
    }

    /// Makes the target directory hold exactly `payload`; `set_perms` runs after a new
    /// payload directory is written and before it is published. Returns whether
    /// anything was written.
    pub(crate) fn write(
        &self,
        payload: &Payload,
        set_perms: Option<&dyn Fn() -> Result<()>>,
    ) -> Result<bool> {
        let ctx = self.log_context;
        let payload = validate_payload(payload)?;
        let data_dir = self.target_dir.join(DATA_DIR_NAME);
        let mut old_ts_dir = match fs::read_link(&data_dir) {
            Ok(target) => target.to_string_lossy().into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                error!(context = ctx, error = %e, "reading the link of the data directory");
                return Err(Error::io("reading the link", &data_dir, e));
            }
        };
        // `..data` names one of this writer's timestamped directories beside it; a link
        // anywhere else was not made here, and nothing is read or removed through it.
        if !old_ts_dir.is_empty() && !self.is_payload_dir(&old_ts_dir) {
            warn!(context = ctx, link = %old_ts_dir, "the data directory link leads elsewhere; replacing it");
            old_ts_dir.clear();
        }
        let old_ts_path = self.target_dir.join(&old_ts_dir);

        let mut paths_to_remove = BTreeSet::new();
        let mut should_write = true;
        if !old_ts_dir.is_empty() {
            paths_to_remove = self.paths_to_remove(&payload, &old_ts_path)?;
            if !should_write_payload(&payload, &old_ts_path)? && paths_to_remove.is_empty() {
                debug!(context = ctx, dir = %old_ts_dir, "no write required");
                should_write = false;
                old_ts_dir.clear();
            }
        }

        if should_write {
            let ts_dir = self.new_timestamp_dir()?;
            let ts_name = ts_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let published = (|| {
                write_payload_to_dir(&payload, &ts_dir)?;
                if let Some(set_perms) = set_perms {
                    set_perms()?;
                }
                let new_data_dir = self.target_dir.join(NEW_DATA_DIR_NAME);
                // A `..data_tmp` left by a crash would make every later update fail.
                if fs::symlink_metadata(&new_data_dir).is_ok() {
                    fs::remove_file(&new_data_dir)
                        .map_err(|e| Error::io("removing", &new_data_dir, e))?;
                }
                std::os::unix::fs::symlink(&ts_name, &new_data_dir)
                    .map_err(|e| Error::io("creating symlink", &new_data_dir, e))?;
                if let Err(e) = fs::rename(&new_data_dir, &data_dir) {
                    let _ = fs::remove_file(&new_data_dir);
                    return Err(Error::io("renaming symlink", &new_data_dir, e));
                }
                Ok(())
            })();
            if let Err(e) = published {
                error!(context = ctx, error = %e, "writing a new payload");
                if let Err(cleanup) = sys::remove_all(&ts_dir) {
                    error!(context = ctx, error = %cleanup, "removing the new payload directory");
                }
                return Err(e);
            }
            debug!(context = ctx, dir = %ts_name, "wrote a new payload");
        }

        self.create_user_visible_files(&payload)?;
        self.remove_user_visible_paths(&paths_to_remove)?;
        if !old_ts_dir.is_empty() {
            sys::remove_all(&old_ts_path)?;
        }
        Ok(should_write)
    }

    /// Whether `name` is a timestamped payload directory of this target: a plain
    /// `..`-prefixed name (no path) of a real directory, not a symlink.
    fn is_payload_dir(&self, name: &str) -> bool {
        name.starts_with("..")
            && name.len() > 2
            && !name.contains('/')
            && fs::symlink_metadata(self.target_dir.join(name)).is_ok_and(|m| m.is_dir())
    }

    /// Paths (files and directories, relative) of the old payload that the new one
    /// does not have.
    fn paths_to_remove(
        &self,
        payload: &BTreeMap<String, &FileProjection>,
        old_ts_path: &Path,
    ) -> Result<BTreeSet<String>> {
        let mut paths = BTreeSet::new();
        match walk(old_ts_path, old_ts_path, &mut paths) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(Error::io("walking", old_ts_path, e)),
        }
        let mut new_paths = BTreeSet::new();
        for file in payload.keys() {
            let mut sub = file.as_str();
            loop {
                new_paths.insert(sub.to_owned());
                match sub.rfind('/') {
                    Some(i) => sub = &sub[..i],
                    None => break,
                }
            }
        }
        Ok(paths.difference(&new_paths).cloned().collect())
    }

    fn new_timestamp_dir(&self) -> Result<std::path::PathBuf> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let prefix = timestamp_prefix(SystemTime::now());
        for _ in 0..1000 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
            let random = nanos
                ^ std::process::id().rotate_left(16)
                ^ COUNTER
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_mul(2_654_435_761);
            let dir = self.target_dir.join(format!("{prefix}{random}"));
            match fs::create_dir(&dir) {
                Ok(()) => {
                    sys::chmod(&dir, 0o755)?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("creating directory", &dir, e)),
            }
        }
        Err(Error::io(
            "creating a timestamped directory in",
            self.target_dir,
            io::Error::from(io::ErrorKind::AlreadyExists),
        ))
    }

    fn create_user_visible_files(&self, payload: &BTreeMap<String, &FileProjection>) -> Result<()> {
        for (path, projection) in payload {
            let link_name = path.split('/').next().unwrap_or(path);
            let visible = self.target_dir.join(link_name);
            match fs::read_link(&visible) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let target = Path::new(DATA_DIR_NAME).join(link_name);
                    std::os::unix::fs::symlink(&target, &visible)
                        .map_err(|e| Error::io("creating symlink", &visible, e))?;
                    if let Some(uid) = projection.fs_user {
                        std::os::unix::fs::lchown(&visible, Some(uid), None)
                            .map_err(|e| Error::io("changing the owner of", &visible, e))?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn remove_user_visible_paths(&self, paths: &BTreeSet<String>) -> Result<()> {
        let mut last = None;
        for path in paths.iter().filter(|p| !p.contains('/')) {
            let visible = self.target_dir.join(path);
            if let Err(e) = fs::remove_file(&visible) {
                error!(context = self.log_context, path = %visible.display(), error = %e,
                    "pruning an old user-visible path");
                last = Some(Error::io("removing", visible, e));
            }
        }
        last.map_or(Ok(()), Err)
    }
}

/// Collects the paths below `root` relative to `base`, without following symlinks.
fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if dir != base
        && let Ok(relative) = dir.strip_prefix(base)
    {
        out.insert(relative.to_string_lossy().into_owned());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        walk(base, &entry?.path(), out)?;
    }
    Ok(())
}

fn validate_payload(payload: &Payload) -> Result<BTreeMap<String, &FileProjection>> {
    let mut clean = BTreeMap::new();
    for (path, content) in payload {
        validate_path(path).map_err(Error::Invalid)?;
        clean.insert(clean_relative(path), content);
    }
    Ok(clean)
}

/// Upstream `validatePath`: relative, no `..` element, not starting with `..`, bounded
/// lengths.
pub(crate) fn validate_path(target: &str) -> std::result::Result<(), String> {
    if target.is_empty() {
        return Err(format!("invalid path: must not be empty: {target:?}"));
    }
    if target.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {target}"));
    }
    if target.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let items: Vec<&str> = target.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {target}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {target}"));
    }
    Ok(())
}

/// Go's `filepath.Clean` of a relative path: `.` elements and doubled slashes removed,
/// `x/..` pairs folded (leading `..` kept), `.` for an empty result.
pub(crate) fn clean_relative(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(last) if *last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

fn should_write_payload(
    payload: &BTreeMap<String, &FileProjection>,
    old_ts: &Path,
) -> Result<bool> {
    for (path, projection) in payload {
        let file = old_ts.join(path);
        match fs::symlink_metadata(&file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            _ => {}
        }
        let on_disk = fs::read(&file).map_err(|e| Error::io("reading", &file, e))?;
        if on_disk != projection.data {
            return Ok(true);
        }
    }
    Ok(false)
}

fn write_payload_to_dir(payload: &BTreeMap<String, &FileProjection>, dir: &Path) -> Result<()> {
    for (path, projection) in payload {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            sys::mkdir_all(parent, 0o777)?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(projection.mode)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&full)
            .map_err(|e| Error::io("writing", &full, e))?;
        file.write_all(&projection.data)
            .map_err(|e| Error::io("writing", &full, e))?;
        drop(file);
        sys::chmod(&full, projection.mode)?;
        if let Some(uid) = projection.fs_user {
            std::os::unix::fs::lchown(&full, Some(uid), None)
                .map_err(|e| Error::io("changing the owner of", &full, e))?;
        }
    }
    Ok(())
}

/// `..2006_01_02_15_04_05.` in UTC, the prefix of upstream's timestamped directories.
fn timestamp_prefix(now: SystemTime) -> String {
    jiff::Timestamp::try_from(now)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("..%Y_%m_%d_%H_%M_%S.")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn payload(files: &[(&str, &str)]) -> Payload {
        files
            .iter()
            .map(|(k, v)| ((*k).to_owned(), FileProjection::new(v.as_bytes(), 0o644)))
            .collect()
    }

    fn data_target(dir: &Path) -> String {
        fs::read_link(dir.join("..data"))
            .expect("..data")
            .to_string_lossy()
            .into_owned()
    }

    fn entries(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn timestamp_prefix_is_upstreams_format() {
        let t = UNIX_EPOCH + Duration::from_secs(1_714_557_601);
        assert_eq!(timestamp_prefix(t), "..2024_05_01_10_00_01.");
        assert_eq!(timestamp_prefix(UNIX_EPOCH), "..1970_01_01_00_00_00.");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(11_016 * 86_400 + 3_600);
        assert_eq!(timestamp_prefix(t), "..2000_02_29_01_00_00.");
    }

    #[test]
    fn first_write_creates_data_dir_and_visible_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(dir.path(), "test").expect("writer");
        let mut files = payload(&[("a", "1"), ("sub/b", "2")]);
        files.insert("x".into(), FileProjection::new("3", 0o600));
        assert!(writer.write(&files, None).expect("write"));

        let ts = data_target(dir.path());
        assert!(ts.starts_with(".."), "{ts}");
        assert_eq!(
            fs::read_link(dir.path().join("a")).expect("link"),
            Path::new("..data/a")
        );
        assert_eq!(
            fs::read_link(dir.path().join("sub")).expect("link"),
            Path::new("..data/sub")
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("sub/b")).expect("read"),
            "2"
        );
        let mode = |p: &str| {
            fs::metadata(dir.path().join(p))
                .expect("stat")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("a"), 0o644);
        assert_eq!(mode("x"), 0o600);
        assert_eq!(mode(&ts), 0o755);
        assert_eq!(
            entries(dir.path()),
            BTreeSet::from([
                "..data".to_owned(),
                ts,
                "a".to_owned(),
                "sub".to_owned(),
                "x".to_owned()
            ])
        );
    }

    #[test]
    fn unchanged_payload_is_not_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(dir.path(), "test").expect("writer");
        let files = payload(&[("a", "1"), ("b", "2")]);
        assert!(writer.write(&files, None).expect("first write"));
        let before = data_target(dir.path());
        let ran = std::cell::Cell::new(false);
        let set_perms = || {
            ran.set(true);
            Ok(())
        };
        assert!(
            !writer
                .write(&files, Some(&set_perms))
                .expect("second write")
        );
        assert_eq!(data_target(dir.path()), before);
        assert!(!ran.get(), "set_perms runs only with a new payload");
    }

    #[test]
    fn update_swaps_data_and_removed_keys_vanish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(dir.path(), "test").expect("writer");
        writer
            .write(&payload(&[("a", "1"), ("b", "2"), ("d/e", "3")]), None)
            .expect("first write");
        let old = data_target(dir.path());

        let ran = std::cell::Cell::new(false);
        let set_perms = || {
            ran.set(true);
            Ok(())
        };
        assert!(
            writer
                .write(&payload(&[("a", "changed")]), Some(&set_perms))
                .expect("update")
        );
        assert!(ran.get());
        let new = data_target(dir.path());
        assert_ne!(new, old);
        assert!(!dir.path().join(&old).exists(), "old payload removed");
        assert_eq!(
            fs::read_to_string(dir.path().join("a")).expect("a"),
            "changed"
        );
        assert!(
            fs::symlink_metadata(dir.path().join("b")).is_err(),
            "b vanished"
        );
        assert!(
            fs::symlink_metadata(dir.path().join("d")).is_err(),
            "d vanished"
        );
        assert_eq!(
            entries(dir.path()),
            BTreeSet::from(["..data".to_owned(), new, "a".to_owned()])
        );

        // Removing a key alone (same content for the rest) is also a write.
        writer
            .write(&payload(&[("a", "changed"), ("c", "4")]), None)
            .expect("add c");
        assert!(
            writer
                .write(&payload(&[("a", "changed")]), None)
                .expect("drop c")
        );
        assert!(fs::symlink_metadata(dir.path().join("c")).is_err());
    }

    #[test]
    fn invalid_paths_are_refused_with_upstreams_messages() {
        let cases = [
            ("", "invalid path: must not be empty: \"\""),
            ("/abs", "invalid path: must be relative path: /abs"),
            ("a/../b", "invalid path: must not contain '..': a/../b"),
            ("..data", "invalid path: must not start with '..': ..data"),
        ];
        for (path, message) in cases {
            assert_eq!(validate_path(path), Err(message.to_owned()), "{path}");
        }
        assert_eq!(validate_path("./a/./b"), Ok(()));
        assert_eq!(clean_relative("./a/./b/"), "a/b");
        assert_eq!(clean_relative("a/../b"), "b");
        assert_eq!(clean_relative("../a/.."), "..");
        assert_eq!(clean_relative("a/.."), ".");
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(dir.path(), "test").expect("writer");
        let err = writer
            .write(&payload(&[("../escape", "x")]), None)
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "invalid path: must not contain '..': ../escape"
        );
        assert!(
            fs::read_link(dir.path().join("..data")).is_err(),
            "nothing written"
        );
    }

    /// Generated payload paths (`..`, `.`, leading and doubled slashes, names of the
    /// writer's own `..data` links and timestamp directories, names of symlinks planted
    /// in the target) written twice over target directories in five states (clean, a
    /// `..data` or user-visible name planted as a symlink leading out, absolutely and
    /// relatively): each is refused or written inside its target, and nothing outside
    /// is created, changed or removed.
    #[test]
    fn no_generated_payload_path_escapes_the_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("keep")).expect("mkdir");
        fs::write(outside.join("secret"), "host secret").expect("write");
        let snapshot = |root: &Path| {
            let mut all = BTreeSet::new();
            // Gone (removed through a planted link): an empty set, which the assert names.
            let _ = walk(root, root, &mut all);
            let contents: Vec<String> = all
                .iter()
                .map(|p| fs::read_to_string(root.join(p)).unwrap_or_default())
                .collect();
            (all, contents)
        };
        // A directory holding only what the payloads hold: were it taken for the old
        // payload directory, nothing would stop its removal.
        let decoy = dir.path().join("decoy");
        fs::create_dir(&decoy).expect("mkdir");
        fs::write(decoy.join("b"), "decoy").expect("write");
        let outside_before = (snapshot(&outside), snapshot(&decoy));
        // Symlinks planted in the target: name, and whether they lead to the decoy
        // (else to outside/) by an absolute path (else a relative one).
        let plants: [&[(&str, bool, bool)]; 5] = [
            &[],
            &[("..data", true, true)],
            &[("..data", true, false)],
            &[("abs_out", false, true)],
            &[("rel_out", false, false)],
        ];
        let segments = [
            "..",
            ".",
            "a",
            "abs_out",
            "rel_out",
            "..data",
            "..data_tmp",
            "x/y",
            "...",
            "..2024",
        ];
        let variants = kubelet_test_support::path_variants(&segments, 2);
        let (mut written, mut refused) = (0, 0);
        for (i, variant) in variants.iter().enumerate() {
            let target = dir.path().join("targets").join(i.to_string());
            fs::create_dir_all(&target).expect("mkdir");
            let plant = plants[i % plants.len()];
            for (name, to_decoy, absolute) in plant {
                let leaf = if *to_decoy { "decoy" } else { "outside" };
                let link = if *absolute {
                    dir.path().join(leaf)
                } else {
                    Path::new("../..").join(leaf)
                };
                std::os::unix::fs::symlink(link, target.join(name)).expect("plant");
            }
            let writer = AtomicWriter::new(&target, "traversal").expect("writer");
            for (round, other) in [(0, "b"), (1, "c")] {
                let files = payload(&[(variant, "1"), (other, "2")]);
                match writer.write(&files, None) {
                    Ok(_) => written += 1,
                    Err(_) => refused += 1,
                }
                assert_eq!(
                    (snapshot(&outside), snapshot(&decoy)),
                    outside_before,
                    "payload path {variant:?}, plants {plant:?}, round {round}"
                );
            }
            let mut inside = BTreeSet::new();
            walk(&target, &target, &mut inside).expect("walk");
            let planted: BTreeSet<&str> = plant.iter().map(|(name, ..)| *name).collect();
            for path in inside.iter().filter(|p| !planted.contains(p.as_str())) {
                if let Ok(real) = fs::canonicalize(target.join(path)) {
                    assert!(
                        real.starts_with(fs::canonicalize(&target).expect("target")),
                        "{path} of payload path {variant:?} leads to {}",
                        real.display()
                    );
                }
            }
        }
        assert_eq!(
            fs::read_dir(dir.path()).expect("list").count(),
            3,
            "only outside/, decoy/ and targets/ next to each other"
        );
        assert!(written > 0 && refused > 0);
        assert!(variants.len() >= 200, "{}", variants.len());
        eprintln!(
            "atomic writer traversal: {} payload paths x 2 writes; {written} writes done inside, {refused} refused",
            variants.len()
        );
    }
}
