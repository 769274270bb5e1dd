//! The eviction manager of a Rust kubelet, as upstream's `pkg/kubelet/eviction`: it
//! watches the node's memory, disk and process headroom against the configured
//! thresholds, reports `MemoryPressure`, `DiskPressure` and `PIDPressure`, refuses new
//! pods under pressure (through the pod manager's admission), and evicts pods one at a
//! time, ranked as upstream ranks them, when a threshold is met.
//!
//! - [`EvictionConfig`]: the thresholds of `evictionHard`, `evictionSoft`,
//!   `evictionSoftGracePeriod` and `evictionMinimumReclaim`, parsed and validated as
//!   upstream's `ParseThresholdConfig`, and the reservation the hard thresholds take out
//!   of the node's allocatable ([`EvictionConfig::hard_reservation`]).
//! - [`observe`]: the signals (`memory.available`, `allocatableMemory.available`,
//!   `nodefs.*`, `imagefs.*`, `containerfs.*`, `pid.available`) read from the stats
//!   summary.
//! - [`EvictionManager`]: the loop. Each round publishes the pressure conditions into a
//!   [`NodePressure`](kubelet_pod_manager::pressure::NodePressure) (kept for
//!   `evictionPressureTransitionPeriod` after the threshold was last met), evicts pods
//!   over their local storage limits, then at most one pod for the most urgent threshold
//!   whose grace period has passed: phase `Failed`, reason `Evicted`, upstream's message,
//!   a `DisruptionTarget` condition and an `Evicted` event; `kubelet_evictions` counts
//!   them.
//!
//! For disk signals, a [`NodeReclaimer`] (the containers of finished pods, then unused
//! images) runs first, and no pod is evicted when that resolves the pressure. Not done
//! here: memcg threshold notifications (`kernelMemcgNotification`); the signals are read
//! every 10 seconds.
//!
//! `cargo xtask bench` runs `examples/bench_housekeeping.rs`: the cost of a round at 110
//! pods, with no threshold met and with every pod ranked for a memory eviction.
//!
//! # Example
//!
//! ```
//! use kubelet_core::config::KubeletConfiguration;
//! use kubelet_eviction::EvictionConfig;
//!
//! let mut config = KubeletConfiguration::default();
//! config.eviction_hard = Some([("memory.available".to_owned(), "100Mi".to_owned())].into());
//! let eviction = EvictionConfig::from_kubelet_config(&config).unwrap();
//! assert_eq!(eviction.hard_reservation(1 << 30, 0), (100 << 20, 0));
//!
//! config.eviction_hard = Some([("nodefs.available".to_owned(), "120%".to_owned())].into());
//! let error = EvictionConfig::from_kubelet_config(&config).unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "evictionHard: eviction percentage threshold nodefs.available must be <= 100%: 120%"
//! );
//! ```

mod error;
mod local_storage;
mod manager;
mod rank;
mod signals;
mod threshold;

pub use error::{Error, Result};
pub use manager::{
    EvictionManager, MONITORING_PERIOD, NodeReclaimer, PodEvictor, Round, SummarySource,
};
pub use signals::{Observation, Observations, format_quantity, observe};
pub use threshold::{EvictionConfig, Resource, Signal, Threshold, ThresholdValue};
