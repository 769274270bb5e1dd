//! `v1.PodResourcesLister` (upstream `server_v1.go`) and its socket.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use kubelet_core::TokenBucket;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::proto::v1::pod_resources_lister_client::PodResourcesListerClient;
use crate::proto::v1::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};
use crate::proto::v1::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerResources,
    GetPodResourcesRequest, GetPodResourcesResponse, ListPodResourcesRequest,
    ListPodResourcesResponse, PodResources,
};
use crate::{Error, PodResourcesProvider, Result};

/// Upstream `podresources.DefaultQPS` and `DefaultBurstTokens`.
const QPS: f64 = 100.0;
const BURST: u32 = 10;

/// How long a client waits for the socket to accept.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The `server_api_version` label.
const V1: &str = "v1";

/// The PodResources v1 service over a [`PodResourcesProvider`].
pub struct PodResourcesService {
    provider: Arc<dyn PodResourcesProvider>,
    limit: std::sync::Mutex<TokenBucket>,
    metrics: Arc<KubeletMetrics>,
}

impl std::fmt::Debug for PodResourcesService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodResourcesService")
            .finish_non_exhaustive()
    }
}

impl PodResourcesService {
    /// The service, with upstream's request limit.
    pub fn new(provider: Arc<dyn PodResourcesProvider>) -> Self {
        Self {
            provider,
            limit: std::sync::Mutex::new(TokenBucket::new(QPS, BURST)),
            metrics: Arc::new(KubeletMetrics::new()),
        }
    }

    /// Counts requests and errors in `metrics`' `kubelet_pod_resources_endpoint_*` (by
    /// default a registry of the service's own).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// As a tonic service, to add to a server.
    pub fn into_server(self) -> PodResourcesListerServer<Self> {
        PodResourcesListerServer::new(self)
    }

    fn admit(&self) -> Result<(), Status> {
        let admitted = self
            .limit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .try_take(tokio::time::Instant::now().into_std());
        if admitted {
            Ok(())
        } else {
            Err(Status::resource_exhausted("rejected by rate limit"))
        }
    }

    /// A pod as upstream lists it: its restartable init containers (sidecars), then its
    /// regular containers, each with what is assigned to it.
    fn pod_resources(&self, pod: &Pod) -> PodResources {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let sidecars = spec
            .into_iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let regular = spec.into_iter().flat_map(|s| s.containers.iter());
        PodResources {
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            containers: sidecars
                .chain(regular)
                .map(|c| self.container_resources(uid, c))
                .collect(),
            // Pod-level CPU and memory assignments come from the static managers
            // behind the PodLevelResourceManagers gate (alpha, off).
            cpu_ids: Vec::new(),
            memory: Vec::new(),
        }
    }

    fn container_resources(&self, pod_uid: &str, container: &Container) -> ContainerResources {
        ContainerResources {
            name: container.name.clone(),
            devices: self.provider.container_devices(pod_uid, &container.name),
            // The none CPU and memory manager policies assign nothing exclusively.
            cpu_ids: Vec::new(),
            memory: Vec::new(),
            // Dynamic resource allocation (DRA) is not built: no claims are prepared.
            dynamic_resources: Vec::new(),
        }
    }
}

#[tonic::async_trait]
impl PodResourcesLister for PodResourcesService {
    async fn list(
        &self,
        _request: Request<ListPodResourcesRequest>,
    ) -> Result<Response<ListPodResourcesResponse>, Status> {
        self.admit()?;
        self.metrics.pod_resources_requests_total.inc(&[V1]);
        self.metrics.pod_resources_requests_list.inc(&[V1]);
        let pods = self.provider.active_pods().await;
        Ok(Response::new(ListPodResourcesResponse {
            pod_resources: pods.iter().map(|p| self.pod_resources(p)).collect(),
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _request: Request<AllocatableResourcesRequest>,
    ) -> Result<Response<AllocatableResourcesResponse>, Status> {
        self.admit()?;
        self.metrics.pod_resources_requests_total.inc(&[V1]);
        self.metrics
            .pod_resources_requests_get_allocatable
            .inc(&[V1]);
        Ok(Response::new(AllocatableResourcesResponse {
            devices: self.provider.allocatable_devices(),
            // The none policies keep no CPUs or memory for exclusive assignment.
            cpu_ids: Vec::new(),
            memory: Vec::new(),
        }))
    }

    async fn get(
        &self,
        request: Request<GetPodResourcesRequest>,
    ) -> Result<Response<GetPodResourcesResponse>, Status> {
        self.admit()?;
        self.metrics.pod_resources_requests_total.inc(&[V1]);
        self.metrics.pod_resources_requests_get.inc(&[V1]);
        let request = request.into_inner();
        let Some(pod) = self
            .provider
            .pod(&request.pod_namespace, &request.pod_name)
            .await
        else {
            self.metrics.pod_resources_errors_get.inc(&[V1]);
            // A plain Go error from upstream's handler: gRPC code Unknown.
            return Err(Status::unknown(format!(
                "pod {} in namespace {} not found",
                request.pod_name, request.pod_namespace
            )));
        };
        Ok(Response::new(GetPodResourcesResponse {
            pod_resources: Some(self.pod_resources(&pod)),
        }))
    }
}

/// A client of the PodResources API on the unix socket `path` (upstream's
/// `podresources.GetV1Client`), connected when first used.
pub fn connect(path: &Path) -> PodResourcesListerClient<Channel> {
    PodResourcesListerClient::new(kubelet_grpc_uds::connect(path, CONNECT_TIMEOUT))
}

/// Serves `service` (the PodResources API) on the unix socket `path` (its directory
/// made 0750 if missing, a stale socket removed first) until the future is dropped. Go
/// clients that send the socket path as `:authority` are served too.
///
/// # Errors
///
/// When the socket cannot be made or the server fails.
pub async fn serve(path: &Path, service: PodResourcesService) -> Result<()> {
    let listener = kubelet_grpc_uds::listen(path)
        .await
        .map_err(|source| Error::Socket {
            path: path.to_owned(),
            source,
        })?;
    info!(endpoint = %path.display(), "Starting to serve the podresources API");
    tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming(kubelet_grpc_uds::incoming(listener))
        .await?;
    Ok(())
}
