//! Filesystem capacity (statvfs) and disk usage of directory trees (as `du`).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::summary::FsStats;
use crate::time::Time;

/// Capacity of the filesystem holding a path, as cAdvisor reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsInfo {
    /// When measured.
    pub time: Time,
    /// Size in bytes.
    pub capacity: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
    /// Bytes in use (size minus free blocks).
    pub used: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

impl FsInfo {
    /// Capacity and availability as [`FsStats`], without usage (upstream's
    /// `rootFsInfoToFsStats`): the base of log, volume and ephemeral storage stats.
    pub fn capacity_stats(&self) -> FsStats {
        FsStats {
            time: self.time,
            available_bytes: Some(self.available),
            capacity_bytes: Some(self.capacity),
            inodes_free: Some(self.inodes_free),
            inodes: Some(self.inodes),
            ..Default::default()
        }
    }

    /// The whole filesystem as [`FsStats`], usage included (the node's `fs`).
    pub fn full_stats(&self) -> FsStats {
        FsStats {
            used_bytes: Some(self.used),
            inodes_used: Some(self.inodes.saturating_sub(self.inodes_free)),
            ..self.capacity_stats()
        }
    }
}

/// statvfs of the filesystem holding `path`.
pub fn fs_info(path: &Path) -> Result<FsInfo> {
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(|e| Error::io(path, std::io::Error::from_raw_os_error(e as i32)))?;
    // The field widths differ between targets: widen each to u64.
    #[allow(clippy::useless_conversion)]
    let (frsize, blocks, bfree, bavail, files, ffree) = (
        u64::from(st.fragment_size()),
        u64::from(st.blocks()),
        u64::from(st.blocks_free()),
        u64::from(st.blocks_available()),
        u64::from(st.files()),
        u64::from(st.files_free()),
    );
    Ok(FsInfo {
        time: Time::now(),
        capacity: blocks.saturating_mul(frsize),
        available: bavail.saturating_mul(frsize),
        used: blocks.saturating_sub(bfree).saturating_mul(frsize),
        inodes: files,
        inodes_free: ffree,
    })
}

/// Space and inodes used by a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Allocated bytes (blocks × 512), as `du`.
    pub bytes: u64,
    /// Inodes, each counted once, the top directory included.
    pub inodes: u64,
}

/// Disk usage of a tree as upstream's `fs.DiskUsage`: allocated blocks of every inode,
/// hard links counted once, symlinks not followed, other filesystems not entered.
/// Entries that vanish during the walk are skipped.
pub fn disk_usage(path: &Path) -> Result<DiskUsage> {
    let top = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    let dev = top.dev();
    let mut usage = DiskUsage::default();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut stack = vec![(path.to_path_buf(), top)];
    while let Some((p, meta)) = stack.pop() {
        if meta.dev() != dev {
            continue;
        }
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
            continue;
        }
        usage.bytes = usage
            .bytes
            .saturating_add(meta.blocks().saturating_mul(512));
        usage.inodes += 1;
        if meta.is_dir() {
            let entries = match std::fs::read_dir(&p) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&p, e)),
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(&p, e)),
                };
                let child = entry.path();
                match std::fs::symlink_metadata(&child) {
                    Ok(m) => stack.push((child, m)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&child, e)),
                }
            }
        }
    }
    Ok(usage)
}

/// Usage of the regular files directly in a directory (subdirectories are skipped),
/// as upstream's `fileMetricsByDir`: a container's log directory, or a pod's.
pub fn files_usage(dir: &Path) -> Result<DiskUsage> {
    let mut usage = DiskUsage::default();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            continue;
        }
        usage.bytes = usage
            .bytes
            .saturating_add(meta.blocks().saturating_mul(512));
        usage.inodes += 1;
    }
    Ok(usage)
}

/// `base` with usage added (upstream's `metricsByPathToFsStats`).
pub fn usage_stats(base: &FsInfo, usage: DiskUsage, time: Time) -> FsStats {
    FsStats {
        time: base.time.max(time),
        used_bytes: Some(usage.bytes),
        inodes_used: Some(usage.inodes),
        ..base.capacity_stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_hard_links_once_and_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("a"), vec![1u8; 10_000]).expect("write");
        std::fs::hard_link(root.join("a"), root.join("sub/a-link")).expect("link");
        std::fs::write(root.join("sub/b"), vec![2u8; 5000]).expect("write");
        // A symlink to a big tree outside must count as the link only.
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("big"), vec![3u8; 1_000_000]).expect("write");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");

        let usage = disk_usage(&root).expect("du");
        // vol, sub, a, b, link: the hard link is the same inode as a.
        assert_eq!(usage.inodes, 5);
        let a = std::fs::metadata(root.join("a")).expect("stat").blocks() * 512;
        let b = std::fs::metadata(root.join("sub/b"))
            .expect("stat")
            .blocks()
            * 512;
        assert!(usage.bytes >= a + b, "{usage:?}");
        assert!(usage.bytes < 1_000_000, "followed the symlink: {usage:?}");
        assert!(disk_usage(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn files_usage_skips_directories_and_statvfs_reports_capacity() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("0.log"), vec![b'x'; 8192]).expect("write");
        std::fs::write(dir.path().join("0.log.20240101-000000"), b"y").expect("write");
        std::fs::create_dir(dir.path().join("nested")).expect("mkdir");
        let usage = files_usage(dir.path()).expect("usage");
        assert_eq!(usage.inodes, 2);
        assert!(usage.bytes >= 8192, "{usage:?}");

        let info = fs_info(dir.path()).expect("statvfs");
        assert!(info.capacity > 0 && info.capacity >= info.available);
        assert!(info.inodes >= info.inodes_free);
        let stats = usage_stats(&info, usage, Time::now());
        assert_eq!(stats.used_bytes, Some(usage.bytes));
        assert_eq!(stats.capacity_bytes, Some(info.capacity));
    }
}
