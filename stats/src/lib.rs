//! Node, pod and container statistics from the runtime's CRI stats, cgroups (v1 and v2),
//! /proc and the filesystems, served as upstream's `/stats/summary` document and its
//! `/metrics/resource` Prometheus metrics.
//!
//! - [`StatsProvider`] gathers everything: one `ListPodSandbox`, one `ListContainers`
//!   and one `ListContainerStats` per request whatever the number of pods, the cgroup,
//!   /proc and filesystem reads on a blocking thread. [`StatsProvider::summary`] returns
//!   the [`Summary`]; [`StatsProvider::resource_metrics`] the text of `/metrics/resource`.
//! - [`summary`] holds the serde types of upstream's `stats/v1alpha1` API with its JSON
//!   names (`podRef`, `ephemeral-storage`, `process_stats`, ...), times as
//!   `metav1.Time` writes them ([`Time`]).
//! - The readers are public functions over a root path so they can be pointed at a
//!   fake tree: [`Cgroups`] (CPU, memory, swap, processes and pod cgroup discovery for
//!   both cgroup versions and both drivers), [`procfs`] (meminfo, net/dev, rlimit, boot
//!   time), [`fs`] (statvfs and `du`-like walks), [`volumes`] (pod volumes and their
//!   usage cache, refreshed once per [`VOLUME_STATS_PERIOD`]) and [`CpuUsageCache`]
//!   (`usageNanoCores` from two samples).
//!
//! # Example
//!
//! The kubelet binary builds one provider over its runtime and serves it:
//!
//! ```no_run
//! use std::sync::Arc;
//! use kubelet_core::{ImageService, Runtime};
//! use kubelet_stats::{StatsPaths, StatsProvider};
//!
//! async fn serve(runtime: Arc<dyn Runtime>, images: Arc<dyn ImageService>) -> kubelet_stats::Result<()> {
//!     let stats = Arc::new(StatsProvider::new(
//!         runtime,
//!         images,
//!         StatsPaths {
//!             root_dir: "/var/lib/kubelet".into(),
//!             ..StatsPaths::default()
//!         },
//!         "node-1".to_owned(),
//!     ));
//!     // GET /stats/summary
//!     let summary = stats.summary(false).await?;
//!     let body = serde_json::to_string(&summary).unwrap_or_default();
//!     println!("{body}");
//!     // GET /metrics/resource, served with kubelet_stats::metrics::CONTENT_TYPE
//!     let text = stats.resource_metrics().await?;
//!     print!("{text}");
//!     Ok(())
//! }
//! ```

mod cgroup;
mod cpu;
mod error;
pub mod fs;
pub mod metrics;
pub mod procfs;
mod provider;
pub mod summary;
mod time;
pub mod volumes;

pub use cgroup::{CgroupSample, CgroupVersion, Cgroups, MemorySample};
pub use cpu::{CpuUsageCache, MIN_CPU_WINDOW_NANOS};
pub use error::{Error, Result};
pub use provider::{StatsPaths, StatsProvider, SystemCgroups};
pub use summary::Summary;
pub use time::Time;
pub use volumes::VOLUME_STATS_PERIOD;

#[cfg(test)]
mod tests;
