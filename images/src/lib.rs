//! Images on a node, as the upstream kubelet manages them (`pkg/kubelet/images`): their
//! garbage collection, and the limits on pulls ([`LimitedPulls`]: `serializeImagePulls`,
//! `maxParallelImagePulls`, `registryPullQPS`, `registryBurst`).
//!
//! [`ImageGc`] removes the images no container uses (exited containers count as users)
//! and the runtime does not pin (the sandbox image), least recently used first: every
//! five minutes those unused for longer than `imageMaximumGCAge`, and, when the image
//! filesystem is at or above `imageGCHighThresholdPercent`, as many as it takes to bring
//! it down to `imageGCLowThresholdPercent`, never one detected less than
//! `imageMinimumGCAge` ago. Not freeing enough records a `FreeDiskSpaceFailed` node
//! event; repeated failures `ImageGCFailed`; removals count in
//! `kubelet_image_garbage_collected_total{reason="space"|"age"}`.
//! [`ImageGc::delete_unused_images`] is what the eviction manager calls to reclaim disk
//! before evicting pods.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use kubelet_core::{NoEvents, ImageService, Runtime};
//! use kubelet_images::{ImageGc, ImageGcPolicy, RuntimeContainers, RuntimeImageFs};
//!
//! async fn run(runtime: Arc<dyn Runtime>, images: Arc<dyn ImageService>) {
//!     let policy = ImageGcPolicy::default();
//!     policy.validate().expect("a valid policy");
//!     let gc = ImageGc::new(
//!         images.clone(),
//!         Arc::new(RuntimeContainers(runtime)),
//!         Arc::new(RuntimeImageFs::new(images)),
//!         Arc::new(NoEvents),
//!         policy,
//!     );
//!     Arc::new(gc).run().await;
//! }
//! ```

mod error;
mod gc;
mod pulls;

pub use error::{Error, Result};
pub use gc::{
    FsSpace, IMAGE_GC_PERIOD, ImageFs, ImageGc, ImageGcPolicy, ImagesInUse, RuntimeContainers,
    RuntimeImageFs,
};
pub use pulls::{LimitedPulls, PullLimits};
