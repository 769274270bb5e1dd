//! An in-memory CRI runtime served in process, for tests of code that uses [`CriClient`].
//!
//! It speaks real gRPC over `tokio::io::duplex` pipes, so the real client code (request
//! building, deadlines, error mapping) runs unchanged. Its behaviour follows containerd's
//! where tests depend on it: ids are unique hex strings, unknown ids are `NotFound`,
//! creating a container needs its image present, a sandbox must be stopped before its
//! removal is meaningful, removing a sandbox removes its containers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Endpoint, Server, Uri};
use tonic::{Request, Response, Status};

use crate::client::{CriClient, Timeouts};

type Reply<T> = Result<Response<T>, Status>;
type ExecHandler = dyn Fn(&str, &[String]) -> cri::ExecSyncResponse + Send + Sync;

/// An image a fake registry can serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeImage {
    /// Reference, e.g. `localhost:5000/busybox:latest`.
    pub name: String,
    /// Size reported after pulling.
    pub size: u64,
    /// `(username, password)` the registry requires, `None` for a public image.
    pub credentials: Option<(String, String)>,
}

impl FakeImage {
    /// A public image of 1 MiB.
    pub fn public(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            size: 1 << 20,
            credentials: None,
        }
    }
}

#[derive(Default)]
struct State {
    /// The runtime's clock for timestamps; the machine's unless a test gives one.
    clock: Option<Arc<dyn kubelet_core::Clock>>,
    next_id: u64,
    sandboxes: BTreeMap<String, cri::PodSandboxStatus>,
    containers: BTreeMap<String, (String, cri::ContainerStatus)>,
    images: BTreeMap<String, cri::Image>,
    registry: BTreeMap<String, FakeImage>,
    failures: HashMap<String, VecDeque<Status>>,
    delays: HashMap<String, Duration>,
    calls: Vec<String>,
    network_ready: bool,
    events_supported: bool,
    /// What `Status` reports as the runtime's handlers.
    handlers: Vec<cri::RuntimeHandler>,
    /// The configuration each container was created with.
    container_configs: BTreeMap<String, cri::ContainerConfig>,
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:064x}", self.next_id)
    }
}

/// Handle on a running fake runtime: make clients, arrange behaviour, inspect calls.
#[derive(Clone)]
pub struct FakeCriServer {
    state: Arc<Mutex<State>>,
    exec: Arc<Mutex<Option<Arc<ExecHandler>>>>,
    events: broadcast::Sender<cri::ContainerEventResponse>,
    connections: mpsc::Sender<tokio::io::DuplexStream>,
}

impl std::fmt::Debug for FakeCriServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCriServer").finish_non_exhaustive()
    }
}

fn nanos_since_epoch(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl State {
    fn now_nanos(&self) -> i64 {
        nanos_since_epoch(
            self.clock
                .as_ref()
                .map_or_else(SystemTime::now, |c| c.now()),
        )
    }
}

impl FakeCriServer {
    /// Stamps what the fake runtime does (created, started, finished, stats) with
    /// `clock`, e.g. one that follows tokio's paused time, as the kubelet under test does.
    pub fn with_clock(self, clock: Arc<dyn kubelet_core::Clock>) -> Self {
        self.lock().clock = Some(clock);
        self
    }

    /// Starts the fake on the current tokio runtime.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            network_ready: true,
            events_supported: true,
            ..Default::default()
        }));
        let exec: Arc<Mutex<Option<Arc<ExecHandler>>>> = Arc::default();
        let (events, _) = broadcast::channel(256);
        let service = Service {
            state: state.clone(),
            exec: exec.clone(),
            events: events.clone(),
        };
        let (connections, incoming) = mpsc::channel(16);
        let incoming = ReceiverStream::new(incoming).map(Ok::<_, std::io::Error>);
        tokio::spawn(async move {
            let served = Server::builder()
                .add_service(RuntimeServiceServer::new(service.clone()))
                .add_service(ImageServiceServer::new(service))
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "fake CRI server stopped");
            }
        });
        Self {
            state,
            exec,
            events,
            connections,
        }
    }

    /// A real [`CriClient`] connected to this fake.
    pub fn client(&self, timeouts: Timeouts) -> CriClient {
        let connections = self.connections.clone();
        let channel = Endpoint::from_static("http://fake-cri").connect_with_connector_lazy(
            tower::service_fn(move |_: Uri| {
                let connections = connections.clone();
                async move {
                    let (client, server) = tokio::io::duplex(1 << 20);
                    connections.send(server).await.map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::ConnectionRefused,
                            "fake CRI server stopped",
                        )
                    })?;
                    Ok::<_, std::io::Error>(TokioIo::new(client))
                }
            }),
        );
        CriClient::from_channel(channel, timeouts, "fake://cri")
    }

    /// Runs `pod` through `client` as the kubelet would: a sandbox and each of its
    /// containers (from `image`, already present) created and started with upstream's
    /// labels. Returns the sandbox id and each container's name and id.
    ///
    /// # Errors
    ///
    /// When the fake refuses a call (e.g. `image` is not present).
    pub async fn run_pod(
        client: &CriClient,
        pod: &kubelet_core::k8s_openapi::api::core::v1::Pod,
        image: &str,
    ) -> kubelet_core::Result<(String, Vec<(String, String)>)> {
        use kubelet_core::labels::{container_labels, sandbox_labels};
        use kubelet_core::{
            ContainerConfig, ContainerMetadata, Runtime, SandboxConfig, SandboxMetadata,
        };
        let meta = &pod.metadata;
        let sandbox = SandboxConfig {
            metadata: SandboxMetadata {
                name: meta.name.clone().unwrap_or_default(),
                namespace: meta.namespace.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
                attempt: 0,
            },
            labels: sandbox_labels(pod),
            ..Default::default()
        };
        let sandbox_id = client.run_sandbox(&sandbox).await?;
        let mut containers = Vec::new();
        for container in pod.spec.iter().flat_map(|s| &s.containers) {
            let config = ContainerConfig {
                metadata: ContainerMetadata {
                    name: container.name.clone(),
                    attempt: 0,
                },
                image: image.to_owned(),
                labels: container_labels(container, pod),
                ..Default::default()
            };
            let id = Runtime::create_container(client, &sandbox_id, &config, &sandbox).await?;
            Runtime::start_container(client, &id).await?;
            containers.push((container.name.clone(), id));
        }
        Ok((sandbox_id, containers))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Makes `image` pullable.
    pub fn add_registry_image(&self, image: FakeImage) {
        self.lock().registry.insert(image.name.clone(), image);
    }

    /// Puts `name` in the image store as if already pulled.
    pub fn add_local_image(&self, name: &str) {
        let mut state = self.lock();
        let id = format!("sha256:{}", state.new_id());
        state.images.insert(
            name.to_owned(),
            cri::Image {
                id,
                repo_tags: vec![name.to_owned()],
                size: 1 << 20,
                ..Default::default()
            },
        );
    }

    /// The next call of `rpc` (e.g. `"StartContainer"`) fails with `status`; queued.
    pub fn fail_next(&self, rpc: &str, status: Status) {
        self.lock()
            .failures
            .entry(rpc.to_owned())
            .or_default()
            .push_back(status);
    }

    /// Every call of `rpc` waits `delay` before answering (a slow or hung runtime).
    pub fn delay(&self, rpc: &str, delay: Duration) {
        self.lock().delays.insert(rpc.to_owned(), delay);
    }

    /// How `ExecSync` answers; by default it echoes the command on stdout with exit 0.
    pub fn on_exec(
        &self,
        handler: impl Fn(&str, &[String]) -> cri::ExecSyncResponse + Send + Sync + 'static,
    ) {
        *lock(&self.exec) = Some(Arc::new(handler));
    }

    /// Reports the network as not ready in `Status`, like a runtime without CNI config.
    pub fn set_network_ready(&self, ready: bool) {
        self.lock().network_ready = ready;
    }

    /// Makes a running container exit with `exit_code`, as if its process ended.
    pub fn exit_container(&self, container_id: &str, exit_code: i32) -> bool {
        let mut state = self.lock();
        let now = state.now_nanos();
        let Some((_, status)) = state.containers.get_mut(container_id) else {
            return false;
        };
        status.state = cri::ContainerState::ContainerExited as i32;
        status.exit_code = exit_code;
        status.finished_at = now;
        status.reason = if exit_code == 0 { "Completed" } else { "Error" }.to_owned();
        emit(
            &self.events,
            &state,
            container_id,
            cri::ContainerEventType::ContainerStoppedEvent,
        );
        true
    }

    /// The runtime handlers `Status` reports, with their features (none by default,
    /// like containerd 1.6).
    pub fn set_runtime_handlers(&self, handlers: Vec<cri::RuntimeHandler>) {
        self.lock().handlers = handlers;
    }

    /// The configuration a container was created with.
    pub fn container_config(&self, container_id: &str) -> Option<cri::ContainerConfig> {
        self.lock().container_configs.get(container_id).cloned()
    }

    /// Whether `GetContainerEvents` streams events (the default) or is unimplemented,
    /// like containerd before 1.7.
    pub fn set_events_supported(&self, supported: bool) {
        self.lock().events_supported = supported;
    }

    /// The RPCs received so far, in order, each as `Name object`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Ids of the sandboxes that exist.
    pub fn sandbox_ids(&self) -> Vec<String> {
        self.lock().sandboxes.keys().cloned().collect()
    }

    /// Ids of the containers that exist.
    pub fn container_ids(&self) -> Vec<String> {
        self.lock().containers.keys().cloned().collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge every other user of the fake.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone)]
struct Service {
    state: Arc<Mutex<State>>,
    exec: Arc<Mutex<Option<Arc<ExecHandler>>>>,
    events: broadcast::Sender<cri::ContainerEventResponse>,
}

/// Sends a container event to every subscriber; none listening is fine.
fn emit(
    events: &broadcast::Sender<cri::ContainerEventResponse>,
    state: &State,
    container_id: &str,
    kind: cri::ContainerEventType,
) {
    let sandbox = state
        .containers
        .get(container_id)
        .and_then(|(sandbox_id, _)| state.sandboxes.get(sandbox_id))
        .cloned();
    let _ = events.send(cri::ContainerEventResponse {
        container_id: container_id.to_owned(),
        container_event_type: kind as i32,
        created_at: state.now_nanos(),
        pod_sandbox_status: sandbox,
        containers_statuses: Vec::new(),
    });
}

fn not_found(what: &str, id: &str) -> Status {
    Status::not_found(format!("{what} {id:?} not found"))
}

fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl Service {
    /// Records the call, applies an injected delay or failure.
    async fn enter(&self, rpc: &str, object: &str) -> Result<(), Status> {
        let (delay, failure) = {
            let mut state = lock(&self.state);
            state.calls.push(format!("{rpc} {object}"));
            let delay = state.delays.get(rpc).copied();
            let failure = state.failures.get_mut(rpc).and_then(VecDeque::pop_front);
            (delay, failure)
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        failure.map_or(Ok(()), Err)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn image_of(spec: Option<&cri::ImageSpec>) -> String {
    spec.map(|s| s.image.clone()).unwrap_or_default()
}

#[tonic::async_trait]
impl RuntimeService for Service {
    async fn version(&self, _: Request<cri::VersionRequest>) -> Reply<cri::VersionResponse> {
        self.enter("Version", "-").await?;
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "0.0.1".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Reply<cri::RunPodSandboxResponse> {
        let request = request.into_inner();
        let config = request.config.unwrap_or_default();
        let meta = config.metadata.clone().unwrap_or_default();
        self.enter(
            "RunPodSandbox",
            &format!("{}/{}", meta.namespace, meta.name),
        )
        .await?;
        let mut state = self.state();
        let duplicate = state.sandboxes.values().any(|s| {
            s.metadata.as_ref().is_some_and(|m| {
                m.uid == meta.uid && m.name == meta.name && m.attempt == meta.attempt
            })
        });
        if duplicate {
            return Err(Status::already_exists(format!(
                "sandbox name {:?} attempt {} is reserved",
                meta.name, meta.attempt
            )));
        }
        let id = state.new_id();
        let host_network = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network == cri::NamespaceMode::Node as i32);
        let ip = if host_network {
            String::new()
        } else {
            format!(
                "10.88.{}.{}",
                (state.next_id >> 8) & 0xff,
                state.next_id & 0xff
            )
        };
        let namespace_options = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        let created_at = state.now_nanos();
        state.sandboxes.insert(
            id.clone(),
            cri::PodSandboxStatus {
                id: id.clone(),
                metadata: Some(meta),
                state: cri::PodSandboxState::SandboxReady as i32,
                created_at,
                network: Some(cri::PodSandboxNetworkStatus {
                    ip,
                    additional_ips: Vec::new(),
                }),
                linux: Some(cri::LinuxPodSandboxStatus {
                    namespaces: Some(cri::Namespace {
                        options: namespace_options,
                    }),
                }),
                labels: config.labels,
                annotations: config.annotations,
                runtime_handler: request.runtime_handler,
            },
        );
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Reply<cri::StopPodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        self.enter("StopPodSandbox", &id).await?;
        let mut state = self.state();
        // Like containerd: stopping an unknown sandbox is not an error.
        if let Some(sandbox) = state.sandboxes.get_mut(&id) {
            sandbox.state = cri::PodSandboxState::SandboxNotready as i32;
            sandbox.network = None;
        }
        let finished = state.now_nanos();
        for (sandbox_id, status) in state.containers.values_mut() {
            if *sandbox_id == id && status.state == cri::ContainerState::ContainerRunning as i32 {
                status.state = cri::ContainerState::ContainerExited as i32;
                status.exit_code = 137;
                status.finished_at = finished;
                status.reason = "Error".into();
            }
        }
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Reply<cri::RemovePodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        self.enter("RemovePodSandbox", &id).await?;
        let mut state = self.state();
        if let Some(sandbox) = state.sandboxes.get(&id)
            && sandbox.state == cri::PodSandboxState::SandboxReady as i32
        {
            return Err(Status::failed_precondition(format!(
                "sandbox {id:?} is still running, stop it first"
            )));
        }
        state.sandboxes.remove(&id);
        state
            .containers
            .retain(|_, (sandbox_id, _)| *sandbox_id != id);
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Reply<cri::PodSandboxStatusResponse> {
        let id = request.into_inner().pod_sandbox_id;
        self.enter("PodSandboxStatus", &id).await?;
        let state = self.state();
        let status = state
            .sandboxes
            .get(&id)
            .cloned()
            .ok_or_else(|| not_found("sandbox", &id))?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(status),
            timestamp: state.now_nanos(),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Reply<cri::ListPodSandboxResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        self.enter("ListPodSandbox", "-").await?;
        let state = self.state();
        let items = state
            .sandboxes
            .values()
            .filter(|s| filter.id.is_empty() || s.id == filter.id)
            .filter(|s| filter.state.is_none_or(|f| f.state == s.state))
            .filter(|s| labels_match(&filter.label_selector, &s.labels))
            .map(|s| cri::PodSandbox {
                id: s.id.clone(),
                metadata: s.metadata.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
                runtime_handler: s.runtime_handler.clone(),
            })
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Reply<cri::CreateContainerResponse> {
        let request = request.into_inner();
        let config = request.config.unwrap_or_default();
        let meta = config.metadata.clone().unwrap_or_default();
        let sandbox_id = request.pod_sandbox_id;
        self.enter("CreateContainer", &format!("{sandbox_id}/{}", meta.name))
            .await?;
        let mut state = self.state();
        match state.sandboxes.get(&sandbox_id) {
            None => return Err(not_found("sandbox", &sandbox_id)),
            Some(s) if s.state != cri::PodSandboxState::SandboxReady as i32 => {
                return Err(Status::failed_precondition(format!(
                    "sandbox {sandbox_id:?} is not ready"
                )));
            }
            Some(_) => {}
        }
        let image = image_of(config.image.as_ref());
        // By name or by id, as containerd resolves it (the kubelet creates containers
        // from the pulled image's id).
        let image_ref = state
            .images
            .get(&image)
            .or_else(|| state.images.values().find(|i| i.id == image))
            .map(|i| i.id.clone())
            .ok_or_else(|| not_found("image", &image))?;
        let id = state.new_id();
        // Like containerd: the log path is relative to the sandbox's log directory.
        let log_path = match request.sandbox_config.as_ref() {
            Some(sandbox) if !config.log_path.is_empty() => {
                format!("{}/{}", sandbox.log_directory, config.log_path)
            }
            _ => String::new(),
        };
        let created_at = state.now_nanos();
        state.container_configs.insert(id.clone(), config.clone());
        state.containers.insert(
            id.clone(),
            (
                sandbox_id,
                cri::ContainerStatus {
                    id: id.clone(),
                    metadata: Some(meta),
                    state: cri::ContainerState::ContainerCreated as i32,
                    created_at,
                    image: config.image,
                    image_ref,
                    labels: config.labels,
                    annotations: config.annotations,
                    mounts: config.mounts,
                    log_path,
                    ..Default::default()
                },
            ),
        );
        emit(
            &self.events,
            &state,
            &id,
            cri::ContainerEventType::ContainerCreatedEvent,
        );
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Reply<cri::StartContainerResponse> {
        let id = request.into_inner().container_id;
        self.enter("StartContainer", &id).await?;
        let mut state = self.state();
        let now = state.now_nanos();
        let (_, status) = state
            .containers
            .get_mut(&id)
            .ok_or_else(|| not_found("container", &id))?;
        if status.state != cri::ContainerState::ContainerCreated as i32 {
            return Err(Status::failed_precondition(format!(
                "container {id:?} is not in created state"
            )));
        }
        status.state = cri::ContainerState::ContainerRunning as i32;
        status.started_at = now;
        emit(
            &self.events,
            &state,
            &id,
            cri::ContainerEventType::ContainerStartedEvent,
        );
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Reply<cri::StopContainerResponse> {
        let id = request.into_inner().container_id;
        self.enter("StopContainer", &id).await?;
        let mut state = self.state();
        let now = state.now_nanos();
        let (_, status) = state
            .containers
            .get_mut(&id)
            .ok_or_else(|| not_found("container", &id))?;
        if status.state == cri::ContainerState::ContainerRunning as i32 {
            status.state = cri::ContainerState::ContainerExited as i32;
            status.exit_code = 143;
            status.finished_at = now;
            status.reason = "Error".into();
            emit(
                &self.events,
                &state,
                &id,
                cri::ContainerEventType::ContainerStoppedEvent,
            );
        }
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Reply<cri::RemoveContainerResponse> {
        let id = request.into_inner().container_id;
        self.enter("RemoveContainer", &id).await?;
        let mut state = self.state();
        if let Some((_, status)) = state.containers.get(&id)
            && status.state == cri::ContainerState::ContainerRunning as i32
        {
            return Err(Status::failed_precondition(format!(
                "container {id:?} is running, stop it first"
            )));
        }
        if state.containers.contains_key(&id) {
            emit(
                &self.events,
                &state,
                &id,
                cri::ContainerEventType::ContainerDeletedEvent,
            );
        }
        state.containers.remove(&id);
        state.container_configs.remove(&id);
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Reply<cri::ListContainersResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        self.enter("ListContainers", "-").await?;
        let state = self.state();
        let containers = state
            .containers
            .values()
            .filter(|(_, c)| filter.id.is_empty() || c.id == filter.id)
            .filter(|(s, _)| filter.pod_sandbox_id.is_empty() || *s == filter.pod_sandbox_id)
            .filter(|(_, c)| filter.state.is_none_or(|f| f.state == c.state))
            .filter(|(_, c)| labels_match(&filter.label_selector, &c.labels))
            .map(|(sandbox_id, c)| cri::Container {
                id: c.id.clone(),
                pod_sandbox_id: sandbox_id.clone(),
                metadata: c.metadata.clone(),
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Reply<cri::ContainerStatusResponse> {
        let id = request.into_inner().container_id;
        self.enter("ContainerStatus", &id).await?;
        let state = self.state();
        let (_, status) = state
            .containers
            .get(&id)
            .ok_or_else(|| not_found("container", &id))?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(status.clone()),
            ..Default::default()
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Reply<cri::UpdateContainerResourcesResponse> {
        let request = request.into_inner();
        self.enter("UpdateContainerResources", &request.container_id)
            .await?;
        let mut state = self.state();
        let (_, status) = state
            .containers
            .get_mut(&request.container_id)
            .ok_or_else(|| not_found("container", &request.container_id))?;
        status.resources = Some(cri::ContainerResources {
            linux: request.linux,
            ..Default::default()
        });
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Reply<cri::ReopenContainerLogResponse> {
        let id = request.into_inner().container_id;
        self.enter("ReopenContainerLog", &id).await?;
        self.running(&id)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Reply<cri::ExecSyncResponse> {
        let request = request.into_inner();
        self.enter("ExecSync", &request.container_id).await?;
        self.running(&request.container_id)?;
        let handler = lock(&self.exec).clone();
        let response = match handler {
            Some(handler) => handler(&request.container_id, &request.cmd),
            None => cri::ExecSyncResponse {
                stdout: request.cmd.join(" ").into_bytes(),
                stderr: Vec::new(),
                exit_code: 0,
            },
        };
        Ok(Response::new(response))
    }

    async fn exec(&self, request: Request<cri::ExecRequest>) -> Reply<cri::ExecResponse> {
        let id = request.into_inner().container_id;
        self.enter("Exec", &id).await?;
        self.running(&id)?;
        Ok(Response::new(cri::ExecResponse {
            url: format!("http://127.0.0.1:0/exec/{id}"),
        }))
    }

    async fn attach(&self, request: Request<cri::AttachRequest>) -> Reply<cri::AttachResponse> {
        let id = request.into_inner().container_id;
        self.enter("Attach", &id).await?;
        self.running(&id)?;
        Ok(Response::new(cri::AttachResponse {
            url: format!("http://127.0.0.1:0/attach/{id}"),
        }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Reply<cri::PortForwardResponse> {
        let id = request.into_inner().pod_sandbox_id;
        self.enter("PortForward", &id).await?;
        if !self.state().sandboxes.contains_key(&id) {
            return Err(not_found("sandbox", &id));
        }
        Ok(Response::new(cri::PortForwardResponse {
            url: format!("http://127.0.0.1:0/portforward/{id}"),
        }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Reply<cri::ContainerStatsResponse> {
        let id = request.into_inner().container_id;
        self.enter("ContainerStats", &id).await?;
        let state = self.state();
        let (_, status) = state
            .containers
            .get(&id)
            .ok_or_else(|| not_found("container", &id))?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(fake_stats(status, state.now_nanos())),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Reply<cri::ListContainerStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        self.enter("ListContainerStats", "-").await?;
        let state = self.state();
        let stats = state
            .containers
            .values()
            .filter(|(_, c)| filter.id.is_empty() || c.id == filter.id)
            .filter(|(s, _)| filter.pod_sandbox_id.is_empty() || *s == filter.pod_sandbox_id)
            .filter(|(_, c)| labels_match(&filter.label_selector, &c.labels))
            .map(|(_, c)| fake_stats(c, state.now_nanos()))
            .collect();
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Reply<cri::PodSandboxStatsResponse> {
        let id = request.into_inner().pod_sandbox_id;
        self.enter("PodSandboxStats", &id).await?;
        let state = self.state();
        let sandbox = state
            .sandboxes
            .get(&id)
            .ok_or_else(|| not_found("sandbox", &id))?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(sandbox_stats(&state, sandbox)),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Reply<cri::ListPodSandboxStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        self.enter("ListPodSandboxStats", "-").await?;
        let state = self.state();
        let stats = state
            .sandboxes
            .values()
            .filter(|s| filter.id.is_empty() || s.id == filter.id)
            .filter(|s| labels_match(&filter.label_selector, &s.labels))
            .map(|s| sandbox_stats(&state, s))
            .collect();
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        _: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Reply<cri::UpdateRuntimeConfigResponse> {
        self.enter("UpdateRuntimeConfig", "-").await?;
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, _: Request<cri::StatusRequest>) -> Reply<cri::StatusResponse> {
        self.enter("Status", "-").await?;
        let network_ready = self.state().network_ready;
        let condition = |kind: &str, ready: bool, reason: &str| cri::RuntimeCondition {
            r#type: kind.to_owned(),
            status: ready,
            reason: if ready {
                String::new()
            } else {
                reason.to_owned()
            },
            message: if ready {
                String::new()
            } else {
                "Network plugin returns error: cni plugin not initialized".to_owned()
            },
        };
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    condition("RuntimeReady", true, ""),
                    condition("NetworkReady", network_ready, "NetworkPluginNotReady"),
                ],
            }),
            runtime_handlers: self.state().handlers.clone(),
            ..Default::default()
        }))
    }

    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> Reply<cri::CheckpointContainerResponse> {
        self.enter("CheckpointContainer", "-").await?;
        Err(Status::unimplemented(
            "the fake runtime does not checkpoint",
        ))
    }

    type GetContainerEventsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>,
    >;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        self.enter("GetContainerEvents", "-").await?;
        if !self.state().events_supported {
            return Err(Status::unimplemented(
                "method GetContainerEvents not implemented",
            ));
        }
        let events = tokio_stream::wrappers::BroadcastStream::new(self.events.subscribe())
            // A subscriber that fell behind skips what it missed; the relist covers it.
            .filter_map(|event| event.ok().map(Ok));
        Ok(Response::new(Box::pin(events)))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Reply<cri::ListMetricDescriptorsResponse> {
        self.enter("ListMetricDescriptors", "-").await?;
        Ok(Response::new(cri::ListMetricDescriptorsResponse::default()))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Reply<cri::ListPodSandboxMetricsResponse> {
        self.enter("ListPodSandboxMetrics", "-").await?;
        Ok(Response::new(cri::ListPodSandboxMetricsResponse::default()))
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> Reply<cri::RuntimeConfigResponse> {
        self.enter("RuntimeConfig", "-").await?;
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}

impl Service {
    fn running(&self, id: &str) -> Result<(), Status> {
        let state = self.state();
        let (_, status) = state
            .containers
            .get(id)
            .ok_or_else(|| not_found("container", id))?;
        if status.state == cri::ContainerState::ContainerRunning as i32 {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "container {id:?} is not running"
            )))
        }
    }
}

fn fake_stats(c: &cri::ContainerStatus, timestamp: i64) -> cri::ContainerStats {
    let running = c.state == cri::ContainerState::ContainerRunning as i32;
    let value = |v: u64| Some(cri::UInt64Value { value: v });
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: c.metadata.clone(),
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
        }),
        cpu: Some(cri::CpuUsage {
            timestamp,
            usage_core_nano_seconds: value(if running { 1_000_000 } else { 0 }),
            usage_nano_cores: value(if running { 1_000 } else { 0 }),
        }),
        memory: Some(cri::MemoryUsage {
            timestamp,
            working_set_bytes: value(if running { 1 << 20 } else { 0 }),
            usage_bytes: value(if running { 1 << 20 } else { 0 }),
            rss_bytes: value(if running { 512 << 10 } else { 0 }),
            ..Default::default()
        }),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp,
            used_bytes: value(4096),
            inodes_used: value(1),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sandbox_stats(state: &State, sandbox: &cri::PodSandboxStatus) -> cri::PodSandboxStats {
    let containers = state
        .containers
        .values()
        .filter(|(s, _)| *s == sandbox.id)
        .map(|(_, c)| fake_stats(c, state.now_nanos()))
        .collect();
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: sandbox.id.clone(),
            metadata: sandbox.metadata.clone(),
            labels: sandbox.labels.clone(),
            annotations: sandbox.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            containers,
            ..Default::default()
        }),
        windows: None,
    }
}

#[tonic::async_trait]
impl ImageService for Service {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Reply<cri::ListImagesResponse> {
        let filter = image_of(
            request
                .into_inner()
                .filter
                .as_ref()
                .and_then(|f| f.image.as_ref()),
        );
        self.enter("ListImages", "-").await?;
        let state = self.state();
        let images = state
            .images
            .iter()
            .filter(|(name, _)| filter.is_empty() || **name == filter)
            .map(|(_, image)| image.clone())
            .collect();
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Reply<cri::ImageStatusResponse> {
        let name = image_of(request.into_inner().image.as_ref());
        self.enter("ImageStatus", &name).await?;
        let state = self.state();
        let image = state
            .images
            .get(&name)
            .or_else(|| state.images.values().find(|i| i.id == name))
            .cloned();
        Ok(Response::new(cri::ImageStatusResponse {
            image,
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Reply<cri::PullImageResponse> {
        let request = request.into_inner();
        let name = image_of(request.image.as_ref());
        self.enter("PullImage", &name).await?;
        let mut state = self.state();
        let Some(image) = state.registry.get(&name).cloned() else {
            return Err(Status::not_found(format!(
                "failed to pull and unpack image {name:?}: failed to resolve reference {name:?}: {name}: not found"
            )));
        };
        if let Some((user, password)) = &image.credentials {
            let given = request.auth.unwrap_or_default();
            if given.username != *user || given.password != *password {
                return Err(Status::unknown(format!(
                    "failed to pull and unpack image {name:?}: failed to authorize: 401 Unauthorized"
                )));
            }
        }
        let id = match state.images.get(&name) {
            Some(existing) => existing.id.clone(),
            None => format!("sha256:{}", state.new_id()),
        };
        state.images.insert(
            name.clone(),
            cri::Image {
                id: id.clone(),
                repo_tags: vec![name],
                size: image.size,
                ..Default::default()
            },
        );
        Ok(Response::new(cri::PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Reply<cri::RemoveImageResponse> {
        let name = image_of(request.into_inner().image.as_ref());
        self.enter("RemoveImage", &name).await?;
        let mut state = self.state();
        let before = state.images.len();
        state
            .images
            .retain(|tag, image| *tag != name && image.id != name);
        if state.images.len() == before {
            return Err(not_found("image", &name));
        }
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Reply<cri::ImageFsInfoResponse> {
        self.enter("ImageFsInfo", "-").await?;
        let state = self.state();
        let used: u64 = state.images.values().map(|i| i.size).sum();
        let count = u64::try_from(state.images.len()).unwrap_or(u64::MAX);
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp: state.now_nanos(),
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: "/var/lib/fake-cri".into(),
                }),
                used_bytes: Some(cri::UInt64Value { value: used }),
                inodes_used: Some(cri::UInt64Value { value: count }),
            }],
            container_filesystems: Vec::new(),
        }))
    }
}
