//! The CRI client: one channel to the runtime's socket, every RPC with its deadline.

use kubelet_core::metrics::kubelet::{self as metrics, KubeletMetrics};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::Instrument;

use crate::error::{Error, Result, required};

/// Largest message accepted from the runtime; the upstream kubelet uses 16 MiB too, so
/// that listing thousands of containers works.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Default endpoint of containerd's CRI plugin, the upstream kubelet's default.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// Deadlines of CRI calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Deadline of ordinary calls (upstream `runtimeRequestTimeout`, 2 minutes).
    pub request: Duration,
    /// Deadline of `PullImage`, which may download gigabytes.
    pub pull: Duration,
    /// How long to wait for the socket to accept a connection.
    pub connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(120),
            pull: Duration::from_secs(30 * 60),
            connect: Duration::from_secs(5),
        }
    }
}

/// Extra time given to a call that carries its own runtime-side timeout (ExecSync,
/// StopContainer), so that the runtime's answer arrives before our deadline fires.
const RUNTIME_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// A client of a CRI v1 runtime (`runtime.v1.RuntimeService` and
/// `runtime.v1.ImageService`) over a unix socket.
///
/// Cheap to clone: clones share one HTTP/2 connection. The connection is made on first use
/// and remade after the runtime restarts, so a client can be created before the runtime is
/// up. Each method applies a deadline and maps failures to [`Error`] naming the RPC and
/// its object.
#[derive(Debug, Clone)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    timeouts: Timeouts,
    endpoint: String,
    metrics: Arc<KubeletMetrics>,
}

/// Turns `unix:///path` or `/path` into the socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if endpoint.starts_with('/') {
        endpoint
    } else {
        let reason = match endpoint.split_once("://") {
            Some((scheme, _)) => format!("scheme {scheme:?} is not supported, use unix://"),
            None => "expected unix:///path/to/socket".to_owned(),
        };
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason,
        });
    };
    if !path.starts_with('/') {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "the socket path must be absolute".to_owned(),
        });
    }
    Ok(PathBuf::from(path))
}

impl CriClient {
    /// A client for the runtime at `endpoint` (`unix:///run/containerd/containerd.sock`).
    ///
    /// Does not connect yet: the first call does, and a runtime that is down makes that
    /// call fail with [`Error::Unavailable`] instead of failing here. Must be called
    /// within a tokio runtime, which runs the connection.
    pub fn new(endpoint: &str, timeouts: Timeouts) -> Result<Self> {
        let path = socket_path(endpoint)?;
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(timeouts.connect)
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    UnixStream::connect(&path)
                        .await
                        .map(TokioIo::new)
                        .map_err(|e| {
                            std::io::Error::new(
                                e.kind(),
                                format!("connect to {}: {e}", path.display()),
                            )
                        })
                }
            }));
        Ok(Self::from_channel(channel, timeouts, endpoint))
    }

    /// A client over an existing channel (for example an in-process fake server).
    pub fn from_channel(channel: Channel, timeouts: Timeouts, endpoint: &str) -> Self {
        Self {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            timeouts,
            endpoint: endpoint.to_owned(),
            metrics: Arc::new(KubeletMetrics::new()),
        }
    }

    /// Records every call's `kubelet_runtime_operations_*` into `metrics` (by default a
    /// registry of the client's own).
    pub fn with_metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The deadlines in use.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    async fn runtime_call<Req, Resp, F, Fut>(
        &self,
        call: &'static str,
        object: &str,
        timeout: Duration,
        request: Req,
        rpc: F,
    ) -> Result<Resp>
    where
        F: FnOnce(RuntimeServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        invoke(&self.metrics, call, object, timeout, request, |r| {
            rpc(self.runtime.clone(), r)
        })
        .await
    }

    async fn image_call<Req, Resp, F, Fut>(
        &self,
        call: &'static str,
        object: &str,
        timeout: Duration,
        request: Req,
        rpc: F,
    ) -> Result<Resp>
    where
        F: FnOnce(ImageServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        invoke(&self.metrics, call, object, timeout, request, |r| {
            rpc(self.images.clone(), r)
        })
        .await
    }

    // ---- RuntimeService -------------------------------------------------------------

    /// `Version`: runtime name and versions.
    pub async fn version(&self) -> Result<cri::VersionResponse> {
        let request = cri::VersionRequest {
            version: "v1".to_owned(),
        };
        self.runtime_call(
            "Version",
            "-",
            self.timeouts.request,
            request,
            |mut c, r| async move { c.version(r).await },
        )
        .await
    }

    /// `RunPodSandbox`: creates and starts a sandbox; returns its id.
    pub async fn run_pod_sandbox(
        &self,
        config: cri::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let object = config
            .metadata
            .as_ref()
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_else(|| "-".to_owned());
        let request = cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime_handler.to_owned(),
        };
        let response = self
            .runtime_call(
                "RunPodSandbox",
                &object,
                self.timeouts.request,
                request,
                |mut c, r| async move { c.run_pod_sandbox(r).await },
            )
            .await?;
        Ok(response.pod_sandbox_id)
    }

    /// `StopPodSandbox`.
    pub async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let request = cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
        };
        self.runtime_call(
            "StopPodSandbox",
            sandbox_id,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.stop_pod_sandbox(r).await },
        )
        .await
        .map(drop)
    }

    /// `RemovePodSandbox`.
    pub async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let request = cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
        };
        self.runtime_call(
            "RemovePodSandbox",
            sandbox_id,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.remove_pod_sandbox(r).await },
        )
        .await
        .map(drop)
    }

    /// `PodSandboxStatus`.
    pub async fn pod_sandbox_status(
        &self,
        sandbox_id: &str,
        verbose: bool,
    ) -> Result<cri::PodSandboxStatusResponse> {
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            verbose,
        };
        self.runtime_call(
            "PodSandboxStatus",
            sandbox_id,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.pod_sandbox_status(r).await },
        )
        .await
    }

    /// `ListPodSandbox`.
    pub async fn list_pod_sandbox(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>> {
        let request = cri::ListPodSandboxRequest { filter };
        let response = self
            .runtime_call(
                "ListPodSandbox",
                "-",
                self.timeouts.request,
                request,
                |mut c, r| async move { c.list_pod_sandbox(r).await },
            )
            .await?;
        Ok(response.items)
    }

    /// `CreateContainer`: creates a container in a sandbox; returns its id.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.as_str())
            .unwrap_or("-");
        let object = format!("{sandbox_id}/{name}");
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let response = self
            .runtime_call(
                "CreateContainer",
                &object,
                self.timeouts.request,
                request,
                |mut c, r| async move { c.create_container(r).await },
            )
            .await?;
        Ok(response.container_id)
    }

    /// `StartContainer`.
    pub async fn start_container(&self, container_id: &str) -> Result<()> {
        let request = cri::StartContainerRequest {
            container_id: container_id.to_owned(),
        };
        self.runtime_call(
            "StartContainer",
            container_id,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.start_container(r).await },
        )
        .await
        .map(drop)
    }

    /// `StopContainer`: asks the runtime to stop the container, killing it after `grace`.
    pub async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<()> {
        let request = cri::StopContainerRequest {
            container_id: container_id.to_owned(),
            timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        };
        // The runtime waits up to `grace` before killing, so our deadline must exceed it.
        let deadline = self.timeouts.request + grace + RUNTIME_TIMEOUT_MARGIN;
        self.runtime_call(
            "StopContainer",
            container_id,
            deadline,
            request,
            |mut c, r| async move { c.stop_container(r).await },
        )
        .await
        .map(drop)
    }

    /// `RemoveContainer`.
    pub async fn remove_container(&self, container_id: &str) -> Result<()> {
        let request = cri::RemoveContainerRequest {
            container_id: container_id.to_owned(),
        };
        self.runtime_call(
            "RemoveContainer",
            container_id,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.remove_container(r).await },
        )
        .await
        .map(drop)
    }

    /// `ListContainers`.
    pub async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>> {
        let request = cri::ListContainersRequest { filter };
        let response = self
            .runtime_call(
                "ListContainers",
                "-",
                self.timeouts.request,
                request,
                |mut c, r| async move { c.list_containers(r).await },
            )
            .await?;
        Ok(response.containers)
    }

    /// `ContainerStatus`.
    pub async fn container_status(
        &self,
        container_id: &str,
        verbose: bool,
    ) -> Result<cri::ContainerStatusResponse> {
        let request = cri::ContainerStatusRequest {
            container_id: container_id.to_owned(),
            verbose,
        };
        self.runtime_call(
            "ContainerStatus",
            container_id,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.container_status(r).await },
        )
        .await
    }

    /// `UpdateContainerResources`.
    pub async fn update_container_resources(
        &self,
        container_id: &str,
        linux: Option<cri::LinuxContainerResources>,
    ) -> Result<()> {
        let request = cri::UpdateContainerResourcesRequest {
            container_id: container_id.to_owned(),
            linux,
            ..Default::default()
        };
        self.runtime_call(
            "UpdateContainerResources",
            container_id,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.update_container_resources(r).await },
        )
        .await
        .map(drop)
    }

    /// `ReopenContainerLog`: after the kubelet rotated the log file.
    pub async fn reopen_container_log(&self, container_id: &str) -> Result<()> {
        let request = cri::ReopenContainerLogRequest {
            container_id: container_id.to_owned(),
        };
        self.runtime_call(
            "ReopenContainerLog",
            container_id,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.reopen_container_log(r).await },
        )
        .await
        .map(drop)
    }

    /// `ExecSync`: runs `cmd` to completion; the runtime kills it after `timeout`
    /// (zero means no runtime-side limit, bounded by the client's request deadline).
    pub async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<cri::ExecSyncResponse> {
        let request = cri::ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd,
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        let deadline = if timeout.is_zero() {
            self.timeouts.request
        } else {
            timeout + RUNTIME_TIMEOUT_MARGIN
        };
        self.runtime_call(
            "ExecSync",
            container_id,
            deadline,
            request,
            |mut c, r| async move { c.exec_sync(r).await },
        )
        .await
    }

    /// `Exec`: prepares a streaming exec; returns the URL to connect to.
    pub async fn exec(&self, request: cri::ExecRequest) -> Result<String> {
        let object = request.container_id.clone();
        let response = self
            .runtime_call(
                "Exec",
                &object,
                self.timeouts.request,
                request,
                |mut c, r| async move { c.exec(r).await },
            )
            .await?;
        Ok(response.url)
    }

    /// `Attach`: prepares a streaming attach; returns the URL to connect to.
    pub async fn attach(&self, request: cri::AttachRequest) -> Result<String> {
        let object = request.container_id.clone();
        let response = self
            .runtime_call(
                "Attach",
                &object,
                self.timeouts.request,
                request,
                |mut c, r| async move { c.attach(r).await },
            )
            .await?;
        Ok(response.url)
    }

    /// `PortForward`: prepares a port-forward into a sandbox; returns the URL.
    pub async fn port_forward(&self, sandbox_id: &str, ports: Vec<i32>) -> Result<String> {
        let request = cri::PortForwardRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            port: ports,
        };
        let response = self
            .runtime_call(
                "PortForward",
                sandbox_id,
                self.timeouts.request,
                request,
                |mut c, r| async move { c.port_forward(r).await },
            )
            .await?;
        Ok(response.url)
    }

    /// `ContainerStats`.
    pub async fn container_stats(&self, container_id: &str) -> Result<cri::ContainerStats> {
        let request = cri::ContainerStatsRequest {
            container_id: container_id.to_owned(),
        };
        let response = self
            .runtime_call(
                "ContainerStats",
                container_id,
                self.timeouts.request,
                request,
                |mut c, r| async move { c.container_stats(r).await },
            )
            .await?;
        required(response.stats, "ContainerStats", container_id, "stats")
    }

    /// `ListContainerStats`.
    pub async fn list_container_stats(
        &self,
        filter: Option<cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>> {
        let request = cri::ListContainerStatsRequest { filter };
        let response = self
            .runtime_call(
                "ListContainerStats",
                "-",
                self.timeouts.request,
                request,
                |mut c, r| async move { c.list_container_stats(r).await },
            )
            .await?;
        Ok(response.stats)
    }

    /// `PodSandboxStats`.
    pub async fn pod_sandbox_stats(&self, sandbox_id: &str) -> Result<cri::PodSandboxStats> {
        let request = cri::PodSandboxStatsRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
        };
        let response = self
            .runtime_call(
                "PodSandboxStats",
                sandbox_id,
                self.timeouts.request,
                request,
                |mut c, r| async move { c.pod_sandbox_stats(r).await },
            )
            .await?;
        required(response.stats, "PodSandboxStats", sandbox_id, "stats")
    }

    /// `ListPodSandboxStats`.
    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<cri::PodSandboxStatsFilter>,
    ) -> Result<Vec<cri::PodSandboxStats>> {
        let request = cri::ListPodSandboxStatsRequest { filter };
        let response = self
            .runtime_call(
                "ListPodSandboxStats",
                "-",
                self.timeouts.request,
                request,
                |mut c, r| async move { c.list_pod_sandbox_stats(r).await },
            )
            .await?;
        Ok(response.stats)
    }

    /// `UpdateRuntimeConfig`: hands the node's pod CIDR to the runtime.
    pub async fn update_runtime_config(&self, pod_cidr: &str) -> Result<()> {
        let request = cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: pod_cidr.to_owned(),
                }),
            }),
        };
        self.runtime_call(
            "UpdateRuntimeConfig",
            pod_cidr,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.update_runtime_config(r).await },
        )
        .await
        .map(drop)
    }

    /// `RuntimeConfig`: how the runtime is configured for Linux (its cgroup driver).
    pub async fn runtime_config(&self) -> Result<cri::RuntimeConfigResponse> {
        self.runtime_call(
            "RuntimeConfig",
            "-",
            self.timeouts.request,
            cri::RuntimeConfigRequest {},
            |mut c, r| async move { c.runtime_config(r).await },
        )
        .await
    }

    /// `Status`: runtime and network conditions.
    pub async fn status(&self, verbose: bool) -> Result<cri::StatusResponse> {
        let request = cri::StatusRequest { verbose };
        self.runtime_call(
            "Status",
            "-",
            self.timeouts.request,
            request,
            |mut c, r| async move { c.status(r).await },
        )
        .await
    }

    /// `GetContainerEvents`: a stream of container events. It has no deadline: a runtime
    /// may send its response headers only with the first event, so the call itself can
    /// wait as long as the node is quiet. A runtime that is down still fails at once.
    pub async fn get_container_events(
        &self,
    ) -> Result<tonic::Streaming<cri::ContainerEventResponse>> {
        self.runtime
            .clone()
            .get_container_events(cri::GetEventsRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| {
                Error::from_status("GetContainerEvents", "-", &status, Duration::ZERO)
            })
    }

    // ---- ImageService ---------------------------------------------------------------

    /// `ListImages`.
    pub async fn list_images(&self, filter: Option<cri::ImageFilter>) -> Result<Vec<cri::Image>> {
        let request = cri::ListImagesRequest { filter };
        let response = self
            .image_call(
                "ListImages",
                "-",
                self.timeouts.request,
                request,
                |mut c, r| async move { c.list_images(r).await },
            )
            .await?;
        Ok(response.images)
    }

    /// `ImageStatus`: `None` when the runtime does not have the image.
    pub async fn image_status(
        &self,
        image: &str,
        verbose: bool,
    ) -> Result<cri::ImageStatusResponse> {
        let request = cri::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose,
        };
        self.image_call(
            "ImageStatus",
            image,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.image_status(r).await },
        )
        .await
    }

    /// `PullImage`, with registry credentials if given; returns the image reference.
    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<cri::AuthConfig>,
        sandbox_config: Option<cri::PodSandboxConfig>,
    ) -> Result<String> {
        let request = cri::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config,
        };
        let response = self
            .image_call(
                "PullImage",
                image,
                self.timeouts.pull,
                request,
                |mut c, r| async move { c.pull_image(r).await },
            )
            .await?;
        Ok(response.image_ref)
    }

    /// `RemoveImage`.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let request = cri::RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        self.image_call(
            "RemoveImage",
            image,
            self.timeouts.request,
            request,
            |mut c, r| async move { c.remove_image(r).await },
        )
        .await
        .map(drop)
    }

    /// `ImageFsInfo`: usage of the image and container filesystems.
    pub async fn image_fs_info(&self) -> Result<cri::ImageFsInfoResponse> {
        self.image_call(
            "ImageFsInfo",
            "-",
            self.timeouts.request,
            cri::ImageFsInfoRequest {},
            |mut c, r| async move { c.image_fs_info(r).await },
        )
        .await
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

/// Runs one RPC with a deadline both sent to the runtime (`grpc-timeout`) and enforced
/// locally, so a runtime that accepts the connection but never answers cannot hang us.
async fn invoke<Req, Resp, F, Fut>(
    metrics: &KubeletMetrics,
    call: &'static str,
    object: &str,
    timeout: Duration,
    request: Req,
    rpc: F,
) -> Result<Resp>
where
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
{
    let span = tracing::debug_span!("cri", rpc = call, object);
    async move {
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout);
        let operation = [metrics::runtime_operation(call)];
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(timeout, rpc(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(call, object, &status, timeout)),
            Err(_elapsed) => Err(Error::DeadlineExceeded {
                call,
                object: object.to_owned(),
                timeout,
            }),
        };
        metrics.runtime_operations_total.inc(&operation);
        metrics
            .runtime_operations_duration
            .observe(&operation, started.elapsed().as_secs_f64());
        if let Err(err) = &outcome {
            metrics.runtime_operations_errors_total.inc(&operation);
            tracing::debug!(error = %err, "CRI call failed");
        }
        outcome
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").ok(),
            Some(PathBuf::from("/run/containerd/containerd.sock"))
        );
        assert_eq!(
            socket_path("/run/crio/crio.sock").ok(),
            Some(PathBuf::from("/run/crio/crio.sock"))
        );
        let err = socket_path("tcp://127.0.0.1:1234")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid CRI endpoint \"tcp://127.0.0.1:1234\": scheme \"tcp\" is not supported, use unix://"
            )
        );
        assert!(socket_path("unix://relative.sock").is_err());
        assert!(socket_path("containerd.sock").is_err());
    }

    #[tokio::test]
    async fn missing_socket_is_unavailable_not_a_hang() {
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoint = format!("unix://{}/none.sock", dir.path().display());
        let client = CriClient::new(&endpoint, Timeouts::default()).expect("client");
        let err = client.version().await.expect_err("no runtime listens");
        assert!(err.is_unavailable(), "{err}");
        assert_eq!(err.call(), Some("Version"));
    }
}
