//! Image garbage collection, as upstream's `realImageGCManager`
//! (`pkg/kubelet/images/image_gc_manager.go`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{ContainerFilter, EventRecorder, EventType, ImageService, NodeEvent, Runtime};
use tracing::{debug, info, warn};

use crate::{Error, Result};

/// Upstream's `ImageGCPeriod`: how often image GC runs.
pub const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);

/// When images are removed (`imageGCHighThresholdPercent`, `imageGCLowThresholdPercent`,
/// `imageMinimumGCAge`, `imageMaximumGCAge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    /// Disk usage (percent of the image filesystem) from which unused images are removed
    /// (default 85; 100 turns image GC off).
    pub high_threshold_percent: i32,
    /// Disk usage GC brings the filesystem down to (default 80).
    pub low_threshold_percent: i32,
    /// An image detected more recently than this is never removed (default 2m).
    pub min_age: Duration,
    /// An image unused for longer than this is removed whatever the disk usage (0: never).
    pub max_age: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        Self {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
            max_age: Duration::ZERO,
        }
    }
}

impl ImageGcPolicy {
    /// Upstream's `NewImageGCManager` checks: both percentages within 0-100, low not
    /// above high.
    ///
    /// # Errors
    ///
    /// [`Error::Policy`] with upstream's message.
    pub fn validate(&self) -> Result<()> {
        let (high, low) = (self.high_threshold_percent, self.low_threshold_percent);
        if !(0..=100).contains(&high) {
            return Err(Error::Policy(format!(
                "invalid HighThresholdPercent {high}, must be in range [0-100]"
            )));
        }
        if !(0..=100).contains(&low) {
            return Err(Error::Policy(format!(
                "invalid LowThresholdPercent {low}, must be in range [0-100]"
            )));
        }
        if low > high {
            return Err(Error::Policy(format!(
                "LowThresholdPercent {low} can not be higher than HighThresholdPercent {high}"
            )));
        }
        Ok(())
    }

    /// Whether image GC runs at all (upstream turns it off at 100%).
    pub fn enabled(&self) -> bool {
        self.high_threshold_percent < 100
    }
}

/// Size and free space of the filesystem holding images, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    /// Total bytes.
    pub capacity: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
}

/// Where image GC reads the image filesystem's space.
#[async_trait]
pub trait ImageFs: Send + Sync {
    /// The image filesystem's space now.
    async fn space(&self) -> Result<FsSpace>;
}

/// The image filesystem the runtime reports (CRI `ImageFsInfo`), measured with statvfs.
pub struct RuntimeImageFs {
    images: Arc<dyn ImageService>,
}

impl RuntimeImageFs {
    /// The filesystem of `images`' runtime.
    pub fn new(images: Arc<dyn ImageService>) -> Self {
        Self { images }
    }
}

#[async_trait]
impl ImageFs for RuntimeImageFs {
    async fn space(&self) -> Result<FsSpace> {
        let filesystems = self.images.image_fs_info().await?;
        let Some(mountpoint) = filesystems
            .into_iter()
            .map(|f| f.mountpoint)
            .find(|m| !m.is_empty())
        else {
            return Err(Error::NoImageFs);
        };
        let path = PathBuf::from(&mountpoint);
        let info = tokio::task::spawn_blocking(move || kubelet_stats::fs::fs_info(&path))
            .await
            .map_err(|e| Error::Stat {
                path: mountpoint.clone(),
                reason: e.to_string(),
            })?
            .map_err(|e| Error::Stat {
                path: mountpoint,
                reason: e.to_string(),
            })?;
        Ok(FsSpace {
            capacity: info.capacity,
            available: info.available,
        })
    }
}

/// Which images containers use (of every state: an exited container keeps its image).
#[async_trait]
pub trait ImagesInUse: Send + Sync {
    /// The image ids (`image_ref`) of the node's containers.
    async fn images_in_use(&self) -> Result<HashSet<String>>;
}

/// The containers a runtime lists.
pub struct RuntimeContainers(pub Arc<dyn Runtime>);

#[async_trait]
impl ImagesInUse for RuntimeContainers {
    async fn images_in_use(&self) -> Result<HashSet<String>> {
        let containers = self.0.list_containers(&ContainerFilter::default()).await?;
        Ok(containers.into_iter().map(|c| c.image_ref).collect())
    }
}

/// What GC knows of one image.
#[derive(Debug, Clone, Copy)]
struct Record {
    first_detected: Instant,
    /// When a container was last seen using it (`None`: never seen in use).
    last_used: Option<Instant>,
    size: u64,
    pinned: bool,
}

/// A candidate for removal, in eviction order.
#[derive(Debug, Clone)]
struct Candidate {
    id: String,
    record: Record,
}

/// The image garbage collector. Its records hold one entry per image on the node, so
/// they are bounded by what the runtime stores.
pub struct ImageGc {
    in_use: Arc<dyn ImagesInUse>,
    images: Arc<dyn ImageService>,
    fs: Arc<dyn ImageFs>,
    events: Arc<dyn EventRecorder>,
    policy: ImageGcPolicy,
    began: Instant,
    records: Mutex<HashMap<String, Record>>,
    metrics: Arc<KubeletMetrics>,
}

impl std::fmt::Debug for ImageGc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageGc")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ImageGc {
    /// A collector removing `images`' unused images by `policy`; what `in_use` lists is
    /// never removed.
    pub fn new(
        images: Arc<dyn ImageService>,
        in_use: Arc<dyn ImagesInUse>,
        fs: Arc<dyn ImageFs>,
        events: Arc<dyn EventRecorder>,
        policy: ImageGcPolicy,
    ) -> Self {
        Self {
            in_use,
            images,
            fs,
            events,
            policy,
            began: Instant::now(),
            records: Mutex::new(HashMap::new()),
            metrics: Arc::new(KubeletMetrics::new()),
        }
    }

    /// Counts removed images in `kubelet_image_garbage_collected_total` of `metrics` (by
    /// default a registry of the collector's own).
    pub fn with_metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs forever, as upstream's image manager and `StartGarbageCollection`: the
    /// node's images are detected at once and every five minutes (their age counts from
    /// then), and a GC pass runs every [`IMAGE_GC_PERIOD`] after the first (none when the
    /// policy turns GC off); a pass failing twice in a row records an `ImageGCFailed`
    /// event.
    pub async fn run(self: Arc<Self>) {
        if !self.policy.enabled() {
            info!("imageGCHighThresholdPercent is 100: image garbage collection is off");
        }
        let mut failed_before = false;
        let mut tick = tokio::time::interval(IMAGE_GC_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            tick.tick().await;
            if first || !self.policy.enabled() {
                first = false;
                if let Err(e) = self.candidates(Instant::now()).await {
                    info!(error = %e, "failed to monitor images");
                }
                continue;
            }
            match self.garbage_collect(Instant::now()).await {
                Ok(()) => failed_before = false,
                Err(e) => {
                    if failed_before {
                        warn!(error = %e, "image garbage collection failed multiple times in a row");
                        self.record_node_warning("ImageGCFailed", e.to_string());
                    } else {
                        warn!(error = %e, "image garbage collection failed once; stats initialization may not have completed yet");
                    }
                    failed_before = true;
                }
            }
        }
    }

    /// One pass at `now`, as upstream's `GarbageCollect`: images unused for longer than
    /// `max_age` go first; then, when the filesystem is at or above the high threshold,
    /// unused images (least recently used first, none younger than `min_age`, never a
    /// pinned one) until it is down to the low threshold. Not freeing enough records a
    /// `FreeDiskSpaceFailed` event.
    ///
    /// # Errors
    ///
    /// The runtime failing, a capacity of 0, removals failing, or not enough freed.
    pub async fn garbage_collect(&self, now: Instant) -> Result<()> {
        let candidates = self.candidates(now).await?;
        let candidates = self.free_old_images(candidates, now).await?;
        let space = self.fs.space().await?;
        let capacity = i64::try_from(space.capacity).unwrap_or(i64::MAX);
        let available = i64::try_from(space.available)
            .unwrap_or(i64::MAX)
            .min(capacity);
        if capacity == 0 {
            let e = Error::InvalidCapacity;
            self.record_node_warning("InvalidDiskCapacity", e.to_string());
            return Err(e);
        }
        let usage_percent = 100 - available * 100 / capacity;
        if usage_percent < i64::from(self.policy.high_threshold_percent) {
            return Ok(());
        }
        let to_free =
            capacity * i64::from(100 - self.policy.low_threshold_percent) / 100 - available;
        info!(
            usage = usage_percent,
            high_threshold = self.policy.high_threshold_percent,
            to_free,
            low_threshold = self.policy.low_threshold_percent,
            "disk usage on the image filesystem is over the high threshold, trying to free bytes down to the low threshold"
        );
        let freed = self.free_space(to_free, candidates, now).await?;
        if freed < to_free {
            let message = format!(
                "Insufficient free disk space on the node's image filesystem ({usage_percent}% of {} used). \
                 Failed to free sufficient space by deleting unused images (freed {freed} bytes). \
                 Investigate disk usage, as it could be used by active images, logs, volumes, or other data.",
                format_size(capacity)
            );
            self.record_node_warning("FreeDiskSpaceFailed", message.clone());
            return Err(Error::FreeDiskSpaceFailed(message));
        }
        Ok(())
    }

    /// Removes every unused image old enough (upstream's `DeleteUnusedImages`, what the
    /// eviction manager calls under disk pressure); returns the bytes freed.
    ///
    /// # Errors
    ///
    /// The runtime failing, or removals failing.
    pub async fn delete_unused_images(&self) -> Result<i64> {
        let now = Instant::now();
        info!("attempting to delete unused images");
        let candidates = self.candidates(now).await?;
        self.free_space(i64::MAX, candidates, now).await
    }

    /// Upstream's `detectImages` and `imagesInEvictionOrder`: refreshes the records
    /// (new images detected now, images in use used now, gone images forgotten) and
    /// returns the unused, unpinned ones, least recently used first.
    async fn candidates(&self, now: Instant) -> Result<Vec<Candidate>> {
        let images = self.images.list_images().await?;
        let in_use = self.in_use.images_in_use().await?;
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let current: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        records.retain(|id, _| current.contains(id.as_str()));
        for image in &images {
            let record = records.entry(image.id.clone()).or_insert(Record {
                first_detected: now,
                last_used: None,
                size: image.size,
                pinned: image.pinned,
            });
            if in_use.contains(&image.id) {
                record.last_used = Some(now);
            }
            record.size = image.size;
            record.pinned = image.pinned;
        }
        let mut candidates: Vec<Candidate> = records
            .iter()
            .filter(|(id, r)| !in_use.contains(*id) && !r.pinned)
            .map(|(id, r)| Candidate {
                id: id.clone(),
                record: *r,
            })
            .collect();
        // Least recently used first (never used counts as oldest), ties by detection.
        candidates.sort_by(|a, b| {
            a.record
                .last_used
                .cmp(&b.record.last_used)
                .then(a.record.first_detected.cmp(&b.record.first_detected))
        });
        Ok(candidates)
    }

    /// Upstream's `freeOldImages`: images unused for longer than `max_age` (counted from
    /// the kubelet's start for images never seen in use), once the kubelet has run that
    /// long.
    async fn free_old_images(
        &self,
        candidates: Vec<Candidate>,
        now: Instant,
    ) -> Result<Vec<Candidate>> {
        let max_age = self.policy.max_age;
        if max_age.is_zero() || now.saturating_duration_since(self.began) <= max_age {
            return Ok(candidates);
        }
        let mut remaining = Vec::new();
        let mut errors = Vec::new();
        for candidate in candidates {
            let last_used = candidate.record.last_used.unwrap_or(self.began);
            if now.saturating_duration_since(last_used) > max_age {
                if let Err(e) = self.free_image(&candidate, "age").await {
                    errors.push(e.to_string());
                    remaining.push(candidate);
                }
                continue;
            }
            remaining.push(candidate);
        }
        if !errors.is_empty() {
            return Err(Error::Removal(format!(
                "wanted to free images older than {max_age:?}, encountered errors in image deletion: [{}]",
                errors.join(", ")
            )));
        }
        Ok(remaining)
    }

    /// Upstream's `freeSpace`: removes candidates in order until `to_free` bytes are
    /// freed; returns the bytes freed.
    async fn free_space(
        &self,
        to_free: i64,
        candidates: Vec<Candidate>,
        now: Instant,
    ) -> Result<i64> {
        let mut freed: i64 = 0;
        let mut errors = Vec::new();
        for candidate in candidates {
            if candidate.record.last_used.is_some_and(|used| used >= now) {
                debug!(image = %candidate.id, "image was used too recently");
                continue;
            }
            if now.saturating_duration_since(candidate.record.first_detected) < self.policy.min_age
            {
                debug!(image = %candidate.id, "image is younger than imageMinimumGCAge");
                continue;
            }
            if let Err(e) = self.free_image(&candidate, "space").await {
                errors.push(e.to_string());
                continue;
            }
            freed = freed.saturating_add(i64::try_from(candidate.record.size).unwrap_or(i64::MAX));
            if freed >= to_free {
                break;
            }
        }
        if !errors.is_empty() {
            return Err(Error::Removal(format!(
                "wanted to free {to_free} bytes, but freed {freed} bytes space with errors in image deletion: [{}]",
                errors.join(", ")
            )));
        }
        Ok(freed)
    }

    async fn free_image(&self, candidate: &Candidate, reason: &'static str) -> Result<()> {
        info!(image = %candidate.id, size = candidate.record.size, reason, "removing image to free bytes");
        self.images.remove_image(&candidate.id).await?;
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&candidate.id);
        self.metrics.image_garbage_collected_total.inc(&[reason]);
        Ok(())
    }

    fn record_node_warning(&self, reason: &'static str, message: String) {
        self.events.record_node(NodeEvent {
            node_uid: None,
            event_type: EventType::Warning,
            reason: reason.into(),
            message,
        });
    }
}

/// Upstream's `formatSize`: `512 B`, `1.5 KiB`, `20.0 GiB`.
#[allow(clippy::cast_precision_loss)]
fn format_size(bytes: i64) -> String {
    const KIB: f64 = 1024.0;
    let size = bytes as f64;
    if size < KIB {
        format!("{bytes} B")
    } else if size < KIB * KIB {
        format!("{:.1} KiB", size / KIB)
    } else if size < KIB * KIB * KIB {
        format!("{:.1} MiB", size / (KIB * KIB))
    } else if size < KIB * KIB * KIB * KIB {
        format!("{:.1} GiB", size / (KIB * KIB * KIB))
    } else {
        format!("{:.1} TiB", size / (KIB * KIB * KIB * KIB))
    }
}

#[cfg(test)]
mod tests;
