//! The node agent: what a kubelet does for its node beside running pods. The API server
//! side of a kubelet started with `--kubeconfig` (with kube-rs on k8s-openapi types) and
//! graceful node shutdown; the pods themselves are `kubelet-pod-manager`'s.
//!
//! - [`ApiPodSource`]: a watch of the pods bound to this node (`spec.nodeName`), re-listed
//!   after a broken watch, fed to the pod manager as [`SourceUpdate`](kubelet_pod_manager::SourceUpdate)s;
//!   mirror pods are kept in the shared [`PodView`] but never run.
//! - [`ApiStatus`]: a [`StatusReporter`](kubelet_core::StatusReporter) that patches pod
//!   status (latest per pod, sent by a background task so no pod worker waits), creates
//!   and updates mirror pods for static pods, and issues the final delete of a pod being
//!   deleted once its containers are gone.
//! - [`ApiEvents`]: an [`EventRecorder`](kubelet_core::EventRecorder) writing core/v1
//!   Events, with repeats counted on the first event as upstream's correlator does.
//! - [`ApiObjects`]: ConfigMaps and Secrets the node's pods reference, each watched by name
//!   (what the Node authorizer allows), and the Services for service-link variables.
//! - [`NodeAgent`]: registers the Node, keeps its status and its Lease fresh.
//! - [`bootstrap`]: TLS bootstrapping of the client certificate (`--bootstrap-kubeconfig`):
//!   [`load_client_cert`] requests it with a CertificateSigningRequest and writes the
//!   kubeconfig that uses it.
//! - [`ShutdownManager`]: graceful node shutdown with a systemd-logind inhibitor lock
//!   ([`logind`]), killing pods class by class through the pod manager's
//!   [`NodeShutdown`](kubelet_pod_manager::shutdown::NodeShutdown).
//!
//! # Example
//!
//! Register a node and keep its status and Lease fresh:
//!
//! ```no_run
//! use std::sync::Arc;
//! use kubelet_core::{ImageService, RuntimeHealth};
//! use kubelet_node_agent::{ClientOptions, NodeAgent, NodeConfig, client_from_kubeconfig};
//!
//! async fn run(runtime: Arc<dyn RuntimeHealth>, images: Arc<dyn ImageService>) -> kubelet_node_agent::Result<()> {
//!     let options = ClientOptions::default();
//!     let kubeconfig = "/etc/kubernetes/kubelet.conf".as_ref();
//!     let client = client_from_kubeconfig(kubeconfig, &options).await?;
//!     let node = NodeConfig::new("node-1");
//!     // A failed heartbeat closes every connection of the client, as upstream's.
//!     NodeAgent::new(client, node, runtime, images)
//!         .with_connections(options.connections)
//!         .run()
//!         .await;
//!     Ok(())
//! }
//! ```

pub mod bootstrap;
mod client;
mod connections;
mod csi;
mod deadline;
mod error;
mod events;
#[cfg(test)]
mod fake_api;
mod lease;
pub mod logind;
mod node;
mod objects;
mod pods;
pub mod rotation;
mod serving_cert;
mod shutdown;
mod status;
mod throttle;

pub use bootstrap::{Bootstrapped, load_client_cert};
pub use client::{ClientOptions, RequestBound, client_from_kubeconfig};
pub use connections::Connections;
pub use csi::{ApiCsiObjects, NODE_ID_ANNOTATION};
pub use deadline::{Deadline, DeadlineBody, DeadlineLayer};
pub use error::{Error, Result};
pub use events::ApiEvents;
pub use node::{KUBELET_VERSION, NodeAgent, NodeConfig, NodeFactsHandle};
pub use objects::ApiObjects;
pub use pods::{ApiPodSource, PodView};
pub use serving_cert::{ensure_self_signed, self_signed};
pub use shutdown::ShutdownManager;
pub use status::ApiStatus;
pub use throttle::{Throttle, ThrottleLayer, Throttled};

/// How long a request to the API server may wait for its whole answer before it and its
/// connection are given up; without a bound, a half-open connection holds the caller
/// for the ~15 minutes TCP takes to notice.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether an API error is a 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is a 409 (already exists, or a conflict).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether a request failed without an answer from the API server (its deadline passed,
/// its connection failed), rather than being answered with an error.
pub(crate) fn is_unanswered(e: &kube::Error) -> bool {
    matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_))
}

/// A uniformly distributed number in 0..1 for spreading retries and renewals, from the
/// standard library's randomly keyed hasher (a fresh one each time).
pub(crate) fn random_unit() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    // The top 53 bits as the mantissa of a number in 0..1.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The current time as an API timestamp.
pub(crate) fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}
