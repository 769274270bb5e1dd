//! The API server side of a node: what a kubelet started with `--kubeconfig` does beside
//! running pods, with kube-rs on k8s-openapi types.
//!
//! - [`ApiPodSource`]: a watch of the pods bound to this node (`spec.nodeName`), re-listed
//!   after a broken watch, fed to the pod manager as [`SourceUpdate`](crate::SourceUpdate)s;
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

pub mod bootstrap;
mod events;
mod node;
mod objects;
mod pods;
mod status;

use std::path::Path;

pub use bootstrap::{Bootstrapped, load_client_cert};
pub use events::ApiEvents;
pub use node::{KUBELET_VERSION, NodeAgent, NodeConfig, NodeFactsHandle};
pub use objects::ApiObjects;
pub use pods::{ApiPodSource, PodView};
pub use status::ApiStatus;

use crate::{Error, Result};

/// A client for the API server from a kubeconfig file (client certificates, tokens and
/// the CA as written there).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| Error::Kubeconfig {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    kube::Client::try_from(config).map_err(|e| Error::Kubeconfig {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Whether an API error is a 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is a 409 (already exists, or a conflict).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The current time as an API timestamp.
pub(crate) fn now() -> k8s_openapi::jiff::Timestamp {
    crate::manager::now()
}
