use std::collections::HashSet;
use std::sync::Mutex;

use kubelet_core::{FilesystemUsage, Image, NodeEvent, PodEvent, RegistryAuth, SandboxConfig};

use super::*;

const MB: u64 = 1_000_000;

#[derive(Default)]
struct Node {
    images: Mutex<Vec<Image>>,
    in_use: Mutex<HashSet<String>>,
    removed: Mutex<Vec<String>>,
    /// Bytes used on a 1000 MB filesystem besides the images.
    other: u64,
    events: Mutex<Vec<String>>,
}

impl Node {
    fn with_images(images: &[(&str, u64, bool)], other: u64) -> Arc<Self> {
        Arc::new(Self {
            images: Mutex::new(
                images
                    .iter()
                    .map(|(id, size, pinned)| Image {
                        id: (*id).to_owned(),
                        size: *size,
                        pinned: *pinned,
                        ..Image::default()
                    })
                    .collect(),
            ),
            other,
            ..Self::default()
        })
    }

    fn use_image(&self, id: &str, used: bool) {
        let mut in_use = self.in_use.lock().expect("lock");
        if used {
            in_use.insert(id.to_owned());
        } else {
            in_use.remove(id);
        }
    }

    fn removed(&self) -> Vec<String> {
        self.removed.lock().expect("lock").clone()
    }
}

#[async_trait]
impl ImageService for Node {
    async fn pull_image(
        &self,
        image: &str,
        _auth: Option<&RegistryAuth>,
        _sandbox: Option<&SandboxConfig>,
    ) -> kubelet_core::Result<String> {
        Ok(image.to_owned())
    }
    async fn image_status(&self, _image: &str) -> kubelet_core::Result<Option<Image>> {
        Ok(None)
    }
    async fn list_images(&self) -> kubelet_core::Result<Vec<Image>> {
        Ok(self.images.lock().expect("lock").clone())
    }
    async fn remove_image(&self, image: &str) -> kubelet_core::Result<()> {
        self.images.lock().expect("lock").retain(|i| i.id != image);
        self.removed.lock().expect("lock").push(image.to_owned());
        Ok(())
    }
    async fn image_fs_info(&self) -> kubelet_core::Result<Vec<FilesystemUsage>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl ImagesInUse for Node {
    async fn images_in_use(&self) -> Result<HashSet<String>> {
        Ok(self.in_use.lock().expect("lock").clone())
    }
}

#[async_trait]
impl ImageFs for Node {
    async fn space(&self) -> Result<FsSpace> {
        let images: u64 = self
            .images
            .lock()
            .expect("lock")
            .iter()
            .map(|i| i.size)
            .sum();
        Ok(FsSpace {
            capacity: 1000 * MB,
            available: 1000 * MB - images - self.other,
        })
    }
}

impl EventRecorder for Node {
    fn record(&self, _event: PodEvent) {}
    fn record_node(&self, event: NodeEvent) {
        self.events
            .lock()
            .expect("lock")
            .push(format!("{}: {}", event.reason, event.message));
    }
}

fn gc(node: &Arc<Node>, policy: ImageGcPolicy) -> ImageGc {
    ImageGc::new(
        node.clone(),
        node.clone(),
        node.clone(),
        node.clone(),
        policy,
    )
}

fn policy(high: i32, low: i32) -> ImageGcPolicy {
    ImageGcPolicy {
        high_threshold_percent: high,
        low_threshold_percent: low,
        min_age: Duration::from_secs(120),
        max_age: Duration::ZERO,
    }
}

#[tokio::test]
async fn over_the_high_threshold_the_least_recently_used_go_first_down_to_the_low_one() {
    // 300 MB of images + 600 MB else = 90% used; the low threshold 80% needs 100 MB freed.
    let node = Node::with_images(
        &[
            ("sha256:old", 60 * MB, false),
            ("sha256:newer", 60 * MB, false),
            ("sha256:used", 60 * MB, false),
            ("sha256:pause", 60 * MB, true),
            ("sha256:newest", 60 * MB, false),
        ],
        600 * MB,
    );
    let gc = gc(&node, policy(85, 80));
    let start = Instant::now();
    // First seen all at once, then each used at a different time.
    node.use_image("sha256:old", true);
    node.use_image("sha256:newer", true);
    node.use_image("sha256:newest", true);
    gc.garbage_collect(start).await.ok();
    assert!(
        node.removed().is_empty(),
        "images younger than imageMinimumGCAge stay"
    );
    node.use_image("sha256:old", false);
    gc.garbage_collect(start + Duration::from_secs(60))
        .await
        .ok();
    node.use_image("sha256:newer", false);
    gc.garbage_collect(start + Duration::from_secs(90))
        .await
        .ok();
    node.use_image("sha256:newest", false);
    node.use_image("sha256:used", true);
    gc.garbage_collect(start + Duration::from_secs(300))
        .await
        .expect("frees enough");
    assert_eq!(node.removed(), vec!["sha256:old", "sha256:newer"]);
    assert_eq!(
        gc.metrics.image_garbage_collected_total.value(&["space"]),
        Some(2.0)
    );
}

#[tokio::test]
async fn in_use_and_pinned_images_are_kept_and_not_freeing_enough_is_an_event() {
    let node = Node::with_images(
        &[
            ("sha256:used", 100 * MB, false),
            ("sha256:pause", 100 * MB, true),
            ("sha256:spare", 10 * MB, false),
        ],
        700 * MB,
    );
    node.use_image("sha256:used", true);
    let gc = gc(&node, policy(85, 80));
    let start = Instant::now();
    gc.garbage_collect(start).await.ok();
    let error = gc
        .garbage_collect(start + Duration::from_secs(300))
        .await
        .expect_err("cannot free enough");
    assert_eq!(node.removed(), vec!["sha256:spare"]);
    let events = node.events.lock().expect("lock").clone();
    // The first pass freed nothing (every image too young): an event each time.
    assert_eq!(events.len(), 2);
    assert!(
        events[1].starts_with(
            "FreeDiskSpaceFailed: Insufficient free disk space on the node's image filesystem (91% of 953.7 MiB used). \
             Failed to free sufficient space by deleting unused images (freed 10000000 bytes)."
        ),
        "{events:?}"
    );
    assert!(matches!(error, Error::FreeDiskSpaceFailed(_)));
}

#[tokio::test]
async fn below_the_high_threshold_nothing_goes_but_images_past_their_max_age_do() {
    let node = Node::with_images(
        &[
            ("sha256:stale", 10 * MB, false),
            ("sha256:fresh", 10 * MB, false),
        ],
        0,
    );
    let mut p = policy(85, 80);
    p.max_age = Duration::from_secs(600);
    let gc = gc(&node, p);
    let start = gc.began;
    node.use_image("sha256:fresh", true);
    gc.garbage_collect(start + Duration::from_secs(10))
        .await
        .expect("ok");
    assert!(node.removed().is_empty());
    gc.garbage_collect(start + Duration::from_secs(500))
        .await
        .expect("ok");
    node.use_image("sha256:fresh", false);
    // The kubelet has not run for imageMaximumGCAge yet.
    assert!(node.removed().is_empty());
    gc.garbage_collect(start + Duration::from_secs(700))
        .await
        .expect("ok");
    assert_eq!(node.removed(), vec!["sha256:stale"]);
    gc.garbage_collect(start + Duration::from_secs(1200))
        .await
        .expect("ok");
    assert_eq!(node.removed(), vec!["sha256:stale", "sha256:fresh"]);
}

#[tokio::test]
async fn delete_unused_images_removes_every_unused_unpinned_image_old_enough() {
    let node = Node::with_images(
        &[
            ("sha256:a", 10 * MB, false),
            ("sha256:b", 20 * MB, false),
            ("sha256:pause", 5 * MB, true),
        ],
        0,
    );
    let mut p = policy(85, 80);
    p.min_age = Duration::ZERO;
    let gc = gc(&node, p);
    let freed = gc.delete_unused_images().await.expect("ok");
    assert_eq!(freed, 30 * MB as i64);
    let mut removed = node.removed();
    removed.sort();
    assert_eq!(removed, vec!["sha256:a", "sha256:b"]);
}

#[test]
fn policies_are_checked_as_upstream() {
    assert!(policy(85, 80).validate().is_ok());
    assert_eq!(
        policy(101, 80).validate().expect_err("bad").to_string(),
        "invalid HighThresholdPercent 101, must be in range [0-100]"
    );
    assert_eq!(
        policy(70, 80).validate().expect_err("bad").to_string(),
        "LowThresholdPercent 80 can not be higher than HighThresholdPercent 70"
    );
    assert!(!policy(100, 80).enabled());
    assert_eq!(format_size(512), "512 B");
    assert_eq!(format_size(1536), "1.5 KiB");
    assert_eq!(format_size(20 * 1024 * 1024 * 1024), "20.0 GiB");
}
