//! Pods, run the way the upstream kubelet runs them, through `kubelet_core::Runtime`.
//!
//! - [`source`]: where pods come from: a manifest directory (static pods), a manifest
//!   URL, and a channel for API pods. Each source sends full snapshots
//!   ([`SourceUpdate`]).
//! - [`spec`]: turning a pod and its containers into runtime configurations (sandbox,
//!   container, environment, DNS, hosts file, security context).
//! - [`PodManager`]: one worker per pod syncing it through the runtime (sandbox, init
//!   containers, sidecars, app containers, restarts with back-off, hooks, termination),
//!   a relist of the runtime every second plus the runtime's container events that wake
//!   the workers of changed pods and find pods nobody wants, and pod status as upstream
//!   computes it ([`status`]).
//! - [`logs`]: container logs rotated by size, as upstream's log manager
//!   ([`LogRotation`]), and read for `/containerLogs` (tail, limit, since, follow).
//! - [`LocalPods`]: the latest pods and statuses, for `/pods` and `/containerLogs`.
//! - [`admission`]: whether a new pod fits the node (resources, node affinity, node
//!   name, host ports, NoExecute taints) and whether the node can confine it as it asks
//!   (sysctls, AppArmor), with upstream's rejection reasons and the Failed status of a
//!   rejected pod.
//! - [`RuntimeClasses`]: where a pod's `runtimeClassName` is turned into the runtime
//!   handler its sandbox runs on.
//!
//! # Example
//!
//! Standalone mode: the static pods of a directory, on any runtime.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kubelet_pod_manager::{LocalPods, ManagerConfig, PodManager, SyncContext};
//! use kubelet_pod_manager::source::FileSource;
//!
//! async fn run(ctx: SyncContext) -> kubelet_pod_manager::Result<()> {
//!     let (updates, rx) = tokio::sync::mpsc::channel(16);
//!     tokio::spawn(FileSource::new("/etc/kubernetes/manifests", "node-1").run(updates));
//!     let pods = Arc::new(LocalPods::new());
//!     PodManager::new(Arc::new(ctx), pods, ManagerConfig::default()).run(rx).await?;
//!     Ok(())
//! }
//! ```

pub mod admission;
pub mod allocation;
mod clock;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gc;
mod health;
mod hooks;
pub mod kill;
mod local;
pub mod logs;
mod manager;
pub mod pod_cgroup;
pub mod pressure;
mod probing;
pub mod pull_records;
mod pull_secrets;
mod resize;
pub mod restart;
mod runtime_class;
pub mod shutdown;
mod snapshot;
pub mod source;
pub mod spec;
pub mod status;
pub mod streaming;
mod sync;
pub mod userns;

pub use clock::TokioClock;
pub use error::{Error, Result};
pub use gc::{ContainerGc, ContainerGcPolicy};
pub use health::SyncLoopMonitor;
pub use local::LocalPods;
pub use logs::LogRotation;
pub use manager::{ManagerConfig, PodManager, PodPoker};
pub use probing::ProbeVerdict;
pub use runtime_class::{NoRuntimeClasses, RuntimeClasses, runtime_handler};
pub use snapshot::pod_snapshot;
pub use sync::{SyncContext, grace_period};

use k8s_openapi::api::core::v1::Pod;

/// Where a pod came from, as in upstream's `kubernetes.io/config.source` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PodSource {
    /// A manifest file in the static pod directory.
    File,
    /// The manifest URL.
    Http,
    /// The API server.
    Api,
}

impl PodSource {
    /// The annotation value upstream uses: `file`, `http` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Http => "http",
            Self::Api => "api",
        }
    }
}

/// What a source wants now: all its pods, replacing its previous snapshot, or only what
/// changed since its last update ([`UpdateKind`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceUpdate {
    /// The source.
    pub source: PodSource,
    /// Its pods, defaulted and validated; pods that failed are in `rejected` instead.
    /// All of them in a [`UpdateKind::Snapshot`], the added and changed ones in
    /// [`UpdateKind::Changes`].
    pub pods: Vec<Pod>,
    /// Manifests that were rejected, each with its path and reason (a snapshot's; left as
    /// they were by [`UpdateKind::Changes`]).
    pub rejected: Vec<RejectedManifest>,
    /// Whether `pods` are all of the source's pods or only what changed.
    pub kind: UpdateKind,
}

/// How a [`SourceUpdate`] relates to the source's previous ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpdateKind {
    /// Every pod the source has (upstream's SET): pods it no longer lists are gone. A
    /// source's first update is a snapshot.
    #[default]
    Snapshot,
    /// Only the pods added or changed since the last update, and the UIDs of those
    /// removed; the source's other pods stay as they were. A watch-fed source sends one
    /// per event, so a node with many pods is not compared pod by pod on every event.
    Changes {
        /// UIDs of the pods the source no longer has.
        removed: Vec<String>,
    },
}

/// A manifest a source could not turn into a pod; the other pods are unaffected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedManifest {
    /// File path or URL.
    pub path: String,
    /// Why, e.g. the parse error with its line, or the failed validation.
    pub reason: String,
}
