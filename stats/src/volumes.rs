//! Pod volume usage, measured by walking the volume directories and cached per volume.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fs::{DiskUsage, disk_usage, fs_info, usage_stats};
use crate::summary::VolumeStats;
use crate::time::Time;

/// How long a measured volume usage is served before the tree is walked again
/// (upstream's `volumeStatsAggPeriod` default).
pub const VOLUME_STATS_PERIOD: Duration = Duration::from_secs(60);

/// Volume plugins whose directories are measured by walking them (upstream's
/// `MetricsDu` volumes). Other plugins (hostPath, CSI, ...) are not measured here.
const MEASURED_PLUGINS: [&str; 6] = [
    "kubernetes.io~empty-dir",
    "kubernetes.io~configmap",
    "kubernetes.io~secret",
    "kubernetes.io~projected",
    "kubernetes.io~downward-api",
    "kubernetes.io~git-repo",
];

/// One volume directory of a pod: `<root-dir>/pods/<uid>/volumes/<plugin>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodVolume {
    /// Volume name from the pod spec.
    pub name: String,
    /// Plugin directory name, e.g. `kubernetes.io~empty-dir`.
    pub plugin: String,
    /// The directory.
    pub path: PathBuf,
    /// Counts toward the pod's ephemeral storage (upstream's `IsLocalEphemeralVolume`:
    /// emptyDir on disk, configMap, gitRepo; tmpfs-backed emptyDirs do not).
    pub local_ephemeral: bool,
}

/// The measurable volumes of a pod, sorted by name (none when the pod has no volume
/// directory).
pub fn list_pod_volumes(root_dir: &Path, pod_uid: &str) -> Vec<PodVolume> {
    let base = root_dir.join("pods").join(pod_uid).join("volumes");
    let mut volumes = Vec::new();
    for plugin in MEASURED_PLUGINS {
        let plugin_dir = base.join(plugin);
        let Ok(entries) = std::fs::read_dir(&plugin_dir) else {
            continue;
        };
        let plugin_dev = std::fs::metadata(&plugin_dir).map(|m| m.dev()).ok();
        for entry in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // A mount of its own (tmpfs) is memory, not local disk.
            let on_disk = plugin_dev == Some(meta.dev());
            let local_ephemeral = match plugin {
                "kubernetes.io~empty-dir" => on_disk,
                "kubernetes.io~configmap" | "kubernetes.io~git-repo" => true,
                _ => false,
            };
            volumes.push(PodVolume {
                name,
                plugin: plugin.to_owned(),
                path: entry.path(),
                local_ephemeral,
            });
        }
    }
    volumes.sort_by(|a, b| {
        b.local_ephemeral
            .cmp(&a.local_ephemeral)
            .then_with(|| a.name.cmp(&b.name))
    });
    volumes
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    usage: DiskUsage,
    time: Time,
    measured: Instant,
    refreshing: bool,
}

/// Volume usage cache: each volume tree is walked at most once per period. A stale
/// entry is served while a background task walks the tree again; only a volume never
/// measured before is walked by the caller.
#[derive(Debug, Clone)]
pub struct VolumeCache {
    period: Duration,
    entries: Arc<Mutex<HashMap<PathBuf, Entry>>>,
}

impl Default for VolumeCache {
    fn default() -> Self {
        Self::new(VOLUME_STATS_PERIOD)
    }
}

impl VolumeCache {
    /// A cache refreshing entries older than `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            entries: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        // A panic while holding the lock leaves only plain data behind.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stats of one volume. Blocking: call from a blocking thread. `refresh` is called
    /// with a closure to run elsewhere (a blocking task) when a stale entry must be
    /// measured again; it is called at most once per stale entry.
    pub fn volume_stats(
        &self,
        volume: &PodVolume,
        refresh: &mut dyn FnMut(Box<dyn FnOnce() + Send>),
    ) -> Option<VolumeStats> {
        let info = fs_info(&volume.path).ok()?;
        let cached = self.lock().get(&volume.path).copied();
        let (usage, time) = match cached {
            Some(entry) => {
                if entry.measured.elapsed() >= self.period && !entry.refreshing {
                    if let Some(e) = self.lock().get_mut(&volume.path) {
                        e.refreshing = true;
                    }
                    let cache = self.clone();
                    let path = volume.path.clone();
                    refresh(Box::new(move || cache.measure(&path)));
                }
                (entry.usage, entry.time)
            }
            None => {
                self.measure(&volume.path);
                let entry = self.lock().get(&volume.path).copied()?;
                (entry.usage, entry.time)
            }
        };
        Some(VolumeStats {
            fs: usage_stats(&info, usage, time),
            name: volume.name.clone(),
            pvc_ref: None,
        })
    }

    /// Walks a volume tree and stores the result (drops the entry if it is gone).
    pub fn measure(&self, path: &Path) {
        match disk_usage(path) {
            Ok(usage) => {
                self.lock().insert(
                    path.to_path_buf(),
                    Entry {
                        usage,
                        time: Time::now(),
                        measured: Instant::now(),
                        refreshing: false,
                    },
                );
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "volume usage");
                self.lock().remove(path);
            }
        }
    }

    /// Forgets volumes not in `keep` (pods and volumes that are gone).
    pub fn retain(&self, keep: &HashSet<PathBuf>) {
        self.lock().retain(|path, _| keep.contains(path));
    }

    /// Number of cached volumes.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_tree(root: &Path) -> PathBuf {
        let vols = root.join("pods/uid-1/volumes");
        std::fs::create_dir_all(vols.join("kubernetes.io~empty-dir/cache")).expect("mkdir");
        std::fs::create_dir_all(vols.join("kubernetes.io~configmap/config")).expect("mkdir");
        std::fs::create_dir_all(vols.join("kubernetes.io~secret/token")).expect("mkdir");
        std::fs::create_dir_all(vols.join("kubernetes.io~host-path/ignored")).expect("mkdir");
        std::fs::write(
            vols.join("kubernetes.io~empty-dir/cache/data"),
            vec![0u8; 40_000],
        )
        .expect("write");
        vols.join("kubernetes.io~empty-dir/cache")
    }

    #[test]
    fn lists_measurable_volumes_ephemeral_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        pod_tree(dir.path());
        let volumes = list_pod_volumes(dir.path(), "uid-1");
        let names: Vec<_> = volumes
            .iter()
            .map(|v| (v.name.as_str(), v.local_ephemeral))
            .collect();
        assert_eq!(names, [("cache", true), ("config", true), ("token", false)]);
        assert!(list_pod_volumes(dir.path(), "other").is_empty());
    }

    #[test]
    fn walks_a_volume_once_per_period_and_refreshes_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = pod_tree(dir.path());
        let volumes = list_pod_volumes(dir.path(), "uid-1");
        let cache_vol = &volumes[0];
        let cache = VolumeCache::new(Duration::from_millis(200));
        let mut refreshes: Vec<Box<dyn FnOnce() + Send>> = Vec::new();

        let first = cache
            .volume_stats(cache_vol, &mut |f| refreshes.push(f))
            .expect("stats");
        assert_eq!(first.name, "cache");
        assert_eq!(first.fs.inodes_used, Some(2));
        let used = first.fs.used_bytes.expect("used");
        assert!(used >= 40_000, "{first:?}");
        assert!(first.fs.capacity_bytes.is_some());

        // Within the period a new file is not seen: the tree is not walked again.
        std::fs::write(cache_dir.join("more"), vec![0u8; 40_000]).expect("write");
        let second = cache
            .volume_stats(cache_vol, &mut |f| refreshes.push(f))
            .expect("stats");
        assert_eq!(second.fs.used_bytes, Some(used));
        assert!(refreshes.is_empty());

        // Once stale: the old value is served and one refresh is asked for.
        std::thread::sleep(Duration::from_millis(250));
        let third = cache
            .volume_stats(cache_vol, &mut |f| refreshes.push(f))
            .expect("stats");
        assert_eq!(third.fs.used_bytes, Some(used));
        let _ = cache.volume_stats(cache_vol, &mut |f| refreshes.push(f));
        assert_eq!(refreshes.len(), 1, "one refresh per stale entry");
        for refresh in refreshes.drain(..) {
            refresh();
        }
        let fourth = cache
            .volume_stats(cache_vol, &mut |f| refreshes.push(f))
            .expect("stats");
        assert_eq!(fourth.fs.inodes_used, Some(3));
        assert!(fourth.fs.used_bytes.expect("used") >= used + 40_000);

        cache.retain(&HashSet::new());
        assert!(cache.is_empty());
    }
}
