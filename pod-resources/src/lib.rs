//! The PodResources API of a Rust kubelet, as the upstream kubelet serves it
//! (`pkg/kubelet/apis/podresources`): gRPC service `v1.PodResourcesLister` on the unix
//! socket `<root-dir>/pod-resources/kubelet.sock`, for node agents (device monitoring,
//! topology-aware schedulers) that need to know which pod holds which node resources.
//!
//! - [`PodResourcesService`]: `List` (the active pods, each with its regular containers
//!   and restartable init containers), `Get` (one pod by namespace and name; upstream's
//!   `pod <name> in namespace <ns> not found` otherwise) and `GetAllocatableResources`,
//!   limited to 100 requests a second with bursts of 10 (`ResourceExhausted`, `rejected
//!   by rate limit`), counted in upstream's `kubelet_pod_resources_endpoint_*` metrics;
//! - [`PodResourcesProvider`]: where the pods and the devices assigned to their
//!   containers come from (the pod manager and the device manager of the kubelet
//!   embedding this crate);
//! - [`serve`]: the service on its socket (a stale socket file is replaced), and
//!   [`connect`], a client of it;
//! - [`proto`]: the messages, server and client generated from upstream's
//!   `api.proto`.
//!
//! CPU and memory assignments are empty: they are made only by upstream's static CPU
//! and memory manager policies, and a kubelet of this workspace runs the `none` ones.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use kubelet_core::k8s_openapi::api::core::v1::Pod;
//! use kubelet_pod_resources::{PodResourcesProvider, PodResourcesService, serve};
//!
//! struct NoPods;
//!
//! #[async_trait::async_trait]
//! impl PodResourcesProvider for NoPods {
//!     async fn active_pods(&self) -> Vec<Pod> {
//!         Vec::new()
//!     }
//!     async fn pod(&self, _namespace: &str, _name: &str) -> Option<Pod> {
//!         None
//!     }
//! }
//!
//! # async fn run() -> Result<(), kubelet_pod_resources::Error> {
//! let service = PodResourcesService::new(Arc::new(NoPods));
//! serve("/var/lib/kubelet/pod-resources/kubelet.sock".as_ref(), service).await?;
//! # Ok(())
//! # }
//! ```

mod error;
mod service;

pub use error::{Error, Result};
pub use service::{PodResourcesService, connect, serve};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

/// The socket's file name in `<root-dir>/pod-resources` (upstream `podresources.Socket`).
pub const SOCKET_NAME: &str = "kubelet.sock";

/// The generated gRPC code of upstream's `podresources/v1/api.proto`.
pub mod proto {
    /// Package `v1`: the messages, `pod_resources_lister_server` and
    /// `pod_resources_lister_client`.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("v1");
    }
}

/// Where the service reads the pods and what is assigned to them.
#[async_trait]
pub trait PodResourcesProvider: Send + Sync {
    /// The pods the kubelet runs now, not finished (upstream's `GetActivePods`).
    async fn active_pods(&self) -> Vec<Pod>;

    /// The pod `namespace/name` the kubelet knows, finished or not.
    async fn pod(&self, namespace: &str, name: &str) -> Option<Pod>;

    /// The devices of device plugins assigned to `container` of pod `pod_uid`.
    fn container_devices(
        &self,
        pod_uid: &str,
        container: &str,
    ) -> Vec<proto::v1::ContainerDevices> {
        let _ = (pod_uid, container);
        Vec::new()
    }

    /// Every device the node's device plugins offer, healthy or not.
    fn allocatable_devices(&self) -> Vec<proto::v1::ContainerDevices> {
        Vec::new()
    }
}

const _: Option<&dyn PodResourcesProvider> = None;
