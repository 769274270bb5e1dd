//! The Node object: registration, status and the Lease (upstream
//! `kubelet_node_status.go`, `nodestatus/setters.go`, the node lease controller).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeRuntimeHandler, NodeRuntimeHandlerFeatures, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{GetParams, Patch, PatchParams, PostParams};
use kubelet_core::{
    Clock, EventRecorder, EventType, ImageService, NoEvents, NodeEvent, RuntimeHealth,
    RuntimeStatus, SystemClock,
};
use kubelet_pod_manager::pressure::PressureCondition;
use tracing::{debug, info, warn};

use super::Connections;
use super::connections::heartbeat_failed;
use super::lease::LeaseController;
use super::{is_conflict, is_not_found, now};

/// The version this kubelet reports in `nodeInfo.kubeletVersion`: the upstream release
/// whose behaviour it follows, with this crate's version as build metadata.
pub const KUBELET_VERSION: &str = concat!("v1.37.2+kubelet-rs.", env!("CARGO_PKG_VERSION"));

/// Upstream's `nodeStatusMaxImages`.
const MAX_IMAGES: usize = 50;

/// The latest Node object this kubelet registered or updated; admission reads its labels,
/// taints and allocatable.
pub type NodeFactsHandle = Arc<RwLock<Option<Node>>>;

/// What the kubelet knows about its node, with upstream's defaults where there are any.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node name.
    pub name: String,
    /// The machine's host name (the `Hostname` address).
    pub hostname: String,
    /// The node's IPs (`--node-ip`), the `InternalIP` addresses.
    pub node_ips: Vec<IpAddr>,
    /// Labels to add at registration (`--node-labels`).
    pub labels: BTreeMap<String, String>,
    /// Taints to register with (`registerWithTaints`).
    pub taints: Vec<Taint>,
    /// The Node's `spec.providerID` at registration (`providerID`, `--provider-id`): how
    /// a cloud provider or the cluster autoscaler names the machine. A Node registered
    /// before keeps its own, as upstream's.
    pub provider_id: Option<String>,
    /// Whether to create the Node object (`registerNode`, default true).
    pub register: bool,
    /// `maxPods` (default 110; with `podsPerCore`, at most that many per core).
    pub max_pods: u32,
    /// `nodeStatusMaxImages`: the most images listed in the status (default 50);
    /// `None` lists all.
    pub max_images: Option<usize>,
    /// The node's CPU and memory capacity (its ephemeral storage is measured at each
    /// status, as the filesystem holding `root_dir` may change size).
    pub capacity: kubelet_core::NodeResources,
    /// Where ephemeral storage lives (`--root-dir`), measured for its capacity.
    pub root_dir: PathBuf,
    /// The kubelet's HTTPS port, published in `daemonEndpoints` (default 10250).
    pub port: i32,
    /// `nodeStatusUpdateFrequency` (default 10 s).
    pub status_update_frequency: Duration,
    /// `nodeStatusReportFrequency` (default 5 min): unchanged status is posted this often.
    pub status_report_frequency: Duration,
    /// `nodeLeaseDurationSeconds` (default 40); the lease is renewed every quarter.
    pub lease_duration_seconds: i32,
    /// Warnings to record as node events once the node is registered, as upstream
    /// records `CgroupV1` on a cgroup v1 host: (reason, message).
    pub start_warnings: Vec<(String, String)>,
    /// What allocatable leaves out of capacity (`kubeReserved`, `systemReserved` and the
    /// hard eviction thresholds), as upstream's `GetNodeAllocatableReservation`.
    pub reserved: kubelet_core::NodeResources,
}

impl NodeConfig {
    /// A configuration with upstream's defaults for a node of this name.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            hostname: name.to_owned(),
            node_ips: Vec::new(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            provider_id: None,
            register: true,
            max_pods: 110,
            max_images: Some(MAX_IMAGES),
            capacity: kubelet_core::NodeResources::default(),
            root_dir: PathBuf::from("/var/lib/kubelet"),
            port: 10250,
            status_update_frequency: Duration::from_secs(10),
            status_report_frequency: Duration::from_secs(300),
            lease_duration_seconds: 40,
            start_warnings: Vec::new(),
            reserved: kubelet_core::NodeResources::default(),
        }
    }
}

/// Registers the node, then keeps its status and Lease fresh.
pub struct NodeAgent {
    client: kube::Client,
    /// The client of the watch of the Node object: one without a request deadline, as
    /// a watch's answer lasts as long as the watch (the heartbeat client bounds every
    /// request's whole answer).
    watch_client: kube::Client,
    config: NodeConfig,
    runtime: Arc<dyn RuntimeHealth>,
    images: Arc<dyn ImageService>,
    facts: NodeFactsHandle,
    shutdown: kubelet_pod_manager::shutdown::NodeShutdown,
    pressure: kubelet_pod_manager::pressure::NodePressure,
    events: Arc<dyn EventRecorder>,
    clock: Arc<dyn Clock>,
    extended: Option<Arc<dyn kubelet_core::ExtendedResources>>,
    volumes_in_use: Option<Arc<dyn kubelet_core::VolumesInUse>>,
    /// Closed when a heartbeat fails on the way to the API server.
    connections: Option<Connections>,
    /// What does not change while the machine runs (cadvisor's machine info), read once.
    machine: Machine,
    /// The runtime's images as last listed: upstream lists them every 30 s for the node
    /// status, not on every update.
    image_list: Reused<Vec<ContainerImage>>,
    /// The runtime's name and version, asked as seldom.
    runtime_version: Reused<kubelet_core::RuntimeVersion>,
}

/// A value read from the runtime, reused for [`RUNTIME_FACTS_PERIOD`] rather than read
/// again on every status update.
#[derive(Debug, Default)]
struct Reused<T>(std::sync::Mutex<Option<(Instant, T)>>);

impl<T: Clone> Reused<T> {
    /// The value, if it was read less than the period ago.
    fn fresh(&self) -> Option<T> {
        self.lock()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < RUNTIME_FACTS_PERIOD)
            .map(|(_, value)| value.clone())
    }

    /// Keeps a value just read.
    fn keep(&self, value: T) {
        *self.lock() = Some((Instant::now(), value));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, T)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The node facts read once at start.
#[derive(Debug, Clone)]
struct Machine {
    /// nodeInfo without the runtime's version.
    info: NodeSystemInfo,
    /// The huge page sizes the kernel offers.
    hugepages: Vec<String>,
}

/// How long the node status reuses the runtime's image list and version (upstream's
/// image cache refresh period).
const RUNTIME_FACTS_PERIOD: Duration = Duration::from_secs(30);

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl NodeAgent {
    /// An agent for the node `config.name`.
    pub fn new(
        client: kube::Client,
        config: NodeConfig,
        runtime: Arc<dyn RuntimeHealth>,
        images: Arc<dyn ImageService>,
    ) -> Self {
        Self {
            watch_client: client.clone(),
            client,
            config,
            runtime,
            images,
            facts: NodeFactsHandle::default(),
            shutdown: kubelet_pod_manager::shutdown::NodeShutdown::never(),
            pressure: kubelet_pod_manager::pressure::NodePressure::default(),
            events: Arc::new(NoEvents),
            clock: Arc::new(SystemClock),
            extended: None,
            volumes_in_use: None,
            connections: None,
            machine: Machine {
                info: system_info(),
                hugepages: hugepage_sizes(),
            },
            image_list: Reused::default(),
            runtime_version: Reused::default(),
        }
    }

    /// Watches the Node object through `client` instead of the one given to
    /// [`NodeAgent::new`]: give it a client without a request deadline when that one
    /// has one (a heartbeat client), or the watch breaks each time it has lasted that
    /// long.
    pub fn with_watch_client(mut self, client: kube::Client) -> Self {
        self.watch_client = client;
        self
    }

    /// Closes `connections` (those of the kubelet's API clients) whenever a Lease renewal
    /// or node status update fails on the way to the API server, as upstream's
    /// `OnHeartbeatFailure`: requests and watches waiting on connections gone half-open
    /// move to new ones at once instead of at their own deadlines.
    pub fn with_connections(mut self, connections: Connections) -> Self {
        self.connections = Some(connections);
        self
    }

    /// Reports the device plugins' resources in capacity and allocatable.
    pub fn with_extended_resources(
        mut self,
        extended: Arc<dyn kubelet_core::ExtendedResources>,
    ) -> Self {
        self.extended = Some(extended);
        self
    }

    /// Reports these volumes in `status.volumesInUse`.
    pub fn with_volumes_in_use(mut self, volumes: Arc<dyn kubelet_core::VolumesInUse>) -> Self {
        self.volumes_in_use = Some(volumes);
        self
    }

    /// The clock of the Lease's `renewTime` (the machine's without this).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records upstream's node events: `Starting`, the condition events
    /// (`NodeHasSufficientMemory`, `NodeReady`, ...), `NodeSchedulable` /
    /// `NodeNotSchedulable`, `Rebooted` and `NodeShutdown`.
    pub fn with_events(mut self, events: Arc<dyn EventRecorder>) -> Self {
        self.events = events;
        self
    }

    /// Reports the node NotReady ("node is shutting down") while `shutdown` says so,
    /// posting the status at once when that changes.
    pub fn with_shutdown(mut self, shutdown: kubelet_pod_manager::shutdown::NodeShutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Reports `capacity` (CPU and memory; the ephemeral storage is measured) and
    /// allocatable as capacity less `reserved`.
    pub fn with_resources(
        mut self,
        capacity: kubelet_core::NodeResources,
        reserved: kubelet_core::NodeResources,
    ) -> Self {
        self.config.capacity = capacity;
        self.config.reserved = reserved;
        self
    }

    /// Reports `MemoryPressure`, `DiskPressure` and `PIDPressure` as the eviction
    /// manager sets them in `pressure` (all False without one).
    pub fn with_pressure(mut self, pressure: kubelet_pod_manager::pressure::NodePressure) -> Self {
        self.pressure = pressure;
        self
    }

    /// The Node object as last written, shared with admission.
    pub fn facts(&self) -> NodeFactsHandle {
        self.facts.clone()
    }

    /// Runs until the task is dropped: registration (retried), the lease, and a status
    /// update every `status_update_frequency` (and at once on start).
    ///
    /// The lease runs in this task rather than a task of its own, so that its panic is
    /// this task's (the kubelet's supervisor stops the kubelet) instead of a node that
    /// keeps reporting status without a heartbeat.
    pub async fn run(self) {
        let lease = LeaseController::new(
            self.client.clone(),
            &self.config.name,
            self.config.lease_duration_seconds,
            self.clock.clone(),
            self.connections.clone(),
        );
        tokio::select! {
            () = lease.run() => warn!(node = %self.config.name, "the node lease controller ended"),
            () = self.status_loop() => {}
        }
    }

    /// Registration and status updates, for as long as it is polled.
    async fn status_loop(&self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut registered = false;
        let mut last_posted: Option<(NodeStatus, Instant)> = None;
        let mut previous_conditions: Vec<NodeCondition> = Vec::new();
        let mut watch = EventWatch::default();
        let (mut own, _own_watch) =
            watch_own_node(Api::all(self.watch_client.clone()), &self.config.name);
        let mut tick = tokio::time::interval(self.config.status_update_frequency);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.shutdown.changed() => {}
            }
            if !registered {
                registered = self.register(&nodes).await;
                if !registered {
                    continue;
                }
                last_posted = None;
                if !watch.started {
                    watch.started = true;
                    self.record_start_events();
                }
            }
            if let Some(event) = watch.shutdown_event(self.shutdown.is_shutting_down()) {
                self.record(event);
            }
            let status = self.status(&previous_conditions).await;
            let changed = last_posted.as_ref().is_none_or(|(old, at)| {
                !same_ignoring_heartbeats(old, &status)
                    || at.elapsed() >= self.config.status_report_frequency
            });
            if !changed {
                // Nothing new to post, unless the Node object says otherwise (the node
                // lifecycle controller marked it Unknown while this kubelet could not
                // reach the API server): upstream compares with the object it reads.
                // Also notice a deleted Node object and register again.
                // The object is what the watch of this Node delivered; with nothing
                // delivered since the last look it still holds what was posted, so no
                // read is needed. Only while the watch is not listed (starting, or
                // broken) is it read, from the API server's cache (resourceVersion 0)
                // as upstream reads it: a read every status update must not reach etcd.
                // (A watch task that ended delivers nothing more: read again.)
                let delivered = own.has_changed();
                let watched = match (&*own.borrow_and_update(), delivered) {
                    (Some(_), Ok(false)) => continue,
                    (Some(node), Ok(true)) => Some(node.clone()),
                    (None, _) | (_, Err(_)) => None,
                };
                let read = match watched {
                    Some(node) => Ok(node),
                    None => match nodes.get_with(&self.config.name, &GetParams::any()).await {
                        Ok(node) => Ok(Some(node)),
                        Err(e) if is_not_found(&e) => Ok(None),
                        Err(e) => Err(e),
                    },
                };
                match read {
                    Ok(None) if self.config.register => {
                        warn!(node = %self.config.name, "the Node object is gone, registering again");
                        registered = false;
                        tick.reset_immediately();
                        continue;
                    }
                    Ok(Some(node)) => {
                        let differs = !same_conditions(node.status.as_ref(), &status);
                        self.observe(&mut watch, node);
                        if !differs {
                            continue;
                        }
                        info!(node = %self.config.name, "the Node's conditions differ from this kubelet's: posting its status");
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        debug!(node = %self.config.name, error = %e, "checking the Node object");
                        heartbeat_failed(self.connections.as_ref(), &e);
                        continue;
                    }
                }
            }
            let before = self.node_object();
            let patch = serde_json::json!({ "status": status });
            match nodes
                .patch_status(
                    &self.config.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(node) => {
                    debug!(node = %self.config.name, "node status updated");
                    let before = before.as_ref().and_then(|n| n.status.as_ref());
                    for event in watch.status_events(&self.config.name, before, &status) {
                        self.record(event);
                    }
                    previous_conditions = status.conditions.clone().unwrap_or_default();
                    last_posted = Some((status, Instant::now()));
                    self.observe(&mut watch, node);
                }
                Err(e) if is_not_found(&e) && self.config.register => {
                    warn!(node = %self.config.name, "the Node object is gone, registering again");
                    registered = false;
                    tick.reset_immediately();
                }
                Err(e) => {
                    warn!(node = %self.config.name, error = %e, "updating node status");
                    heartbeat_failed(self.connections.as_ref(), &e);
                }
            }
        }
    }

    /// The Node object as last read or written.
    fn node_object(&self) -> Option<Node> {
        self.facts.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps `node` as the latest Node object and records a schedulability change.
    fn observe(&self, watch: &mut EventWatch, node: Node) {
        if let Some(event) = watch.schedulable_event(&self.config.name, &node) {
            self.record(event);
        }
        *self.facts.write().unwrap_or_else(|p| p.into_inner()) = Some(node);
    }

    /// `Starting kubelet.` and the start warnings, once the Node's UID is known (so that
    /// `kubectl describe node` finds them).
    fn record_start_events(&self) {
        self.record((
            EventType::Normal,
            "Starting".into(),
            "Starting kubelet.".to_owned(),
        ));
        for (reason, message) in &self.config.start_warnings {
            self.record((EventType::Warning, reason.clone().into(), message.clone()));
        }
    }

    fn record(&self, (event_type, reason, message): NodeEventParts) {
        let node_uid = self
            .facts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|n| n.metadata.uid.clone());
        self.events.record_node(NodeEvent {
            node_uid,
            event_type,
            reason,
            message,
        });
    }

    /// Creates the Node, or adopts the existing one and brings its default labels up to
    /// date, as upstream `registerWithAPIServer`. True when the node exists.
    async fn register(&self, nodes: &Api<Node>) -> bool {
        if !self.config.register {
            return match nodes.get(&self.config.name).await {
                Ok(node) => {
                    *self.facts.write().unwrap_or_else(|p| p.into_inner()) = Some(node);
                    true
                }
                Err(e) => {
                    debug!(node = %self.config.name, error = %e, "waiting for the Node object (registerNode is false)");
                    false
                }
            };
        }
        let node = self.initial_node();
        match nodes.create(&PostParams::default(), &node).await {
            Ok(created) => {
                info!(node = %self.config.name, "node registered");
                *self.facts.write().unwrap_or_else(|p| p.into_inner()) = Some(created);
                true
            }
            Err(e) if is_conflict(&e) => {
                let existing = match nodes.get(&self.config.name).await {
                    Ok(existing) => existing,
                    Err(e) => {
                        warn!(node = %self.config.name, error = %e, "reading the existing Node");
                        return false;
                    }
                };
                let wanted = self.default_labels();
                let have = existing.metadata.labels.clone().unwrap_or_default();
                let stale: BTreeMap<&String, &String> = wanted
                    .iter()
                    .filter(|(k, v)| have.get(*k) != Some(*v))
                    .collect();
                if !stale.is_empty() {
                    let patch = serde_json::json!({ "metadata": { "labels": stale } });
                    if let Err(e) = nodes
                        .patch(
                            &self.config.name,
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                    {
                        warn!(node = %self.config.name, error = %e, "updating the node's labels");
                    }
                }
                info!(node = %self.config.name, "node already registered, adopting it");
                *self.facts.write().unwrap_or_else(|p| p.into_inner()) = Some(existing);
                true
            }
            Err(e) => {
                warn!(node = %self.config.name, error = %e, "registering the node, will retry");
                false
            }
        }
    }

    /// The labels upstream sets on its own node (`updateDefaultLabels`).
    fn default_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "kubernetes.io/hostname".to_owned(),
                self.config.hostname.clone(),
            ),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("kubernetes.io/arch".to_owned(), go_arch().to_owned()),
            ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("beta.kubernetes.io/arch".to_owned(), go_arch().to_owned()),
        ])
    }

    /// The Node to create (upstream `initialNode`).
    fn initial_node(&self) -> Node {
        let mut labels = self.default_labels();
        labels.extend(self.config.labels.clone());
        let annotations = BTreeMap::from([(
            "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
            "true".to_owned(),
        )]);
        Node {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: (!self.config.taints.is_empty()).then(|| self.config.taints.clone()),
                provider_id: self.config.provider_id.clone(),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    /// The node's status now; transition times carry over from `previous` while a
    /// condition's status holds.
    async fn status(&self, previous: &[NodeCondition]) -> NodeStatus {
        let c = &self.config;
        let storage = filesystem_bytes(&c.root_dir);
        let size = kubelet_core::NodeResources {
            ephemeral_storage: storage.unwrap_or(0),
            ..c.capacity
        };
        let hugepages = &self.machine.hugepages;
        let resources = |amounts: kubelet_core::NodeResources| {
            let mut list = BTreeMap::from([
                (
                    "cpu".to_owned(),
                    Quantity(format_milli_cpu(amounts.milli_cpu)),
                ),
                ("memory".to_owned(), Quantity(format_bytes(amounts.memory))),
                ("pods".to_owned(), Quantity(c.max_pods.to_string())),
            ]);
            if storage.is_some() {
                list.insert(
                    "ephemeral-storage".to_owned(),
                    Quantity(format_bytes(amounts.ephemeral_storage)),
                );
            }
            for page in hugepages {
                list.insert(format!("hugepages-{page}"), Quantity("0".to_owned()));
            }
            list
        };
        let mut capacity = resources(size);
        let mut allocatable = resources(size.less(c.reserved));

        // Device plugins' resources: all devices in capacity, the healthy ones in
        // allocatable (zero once a plugin is long gone).
        for (name, resource) in self.extended.iter().flat_map(|e| e.extended_resources()) {
            capacity.insert(name.clone(), Quantity(resource.capacity.to_string()));
            allocatable.insert(name, Quantity(resource.allocatable.to_string()));
        }

        let runtime_status = self.runtime.status().await;
        let version = match self.runtime_version.fresh() {
            Some(version) => Some(version),
            None => {
                let version = self.runtime.version().await.ok();
                if let Some(version) = &version {
                    self.runtime_version.keep(version.clone());
                }
                version
            }
        };
        let heartbeat = Time(now());
        let condition = |type_: &str, ok: bool, reason: &str, message: String| {
            let status = if ok { "True" } else { "False" };
            let transition = previous
                .iter()
                .find(|p| p.type_ == type_ && p.status == status)
                .and_then(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| heartbeat.clone());
            NodeCondition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: Some(reason.to_owned()),
                message: Some(message),
                last_heartbeat_time: Some(heartbeat.clone()),
                last_transition_time: Some(transition),
            }
        };
        let mut not_ready = ready_errors(runtime_status.as_ref().ok());
        if self.shutdown.is_shutting_down() {
            not_ready.push(kubelet_pod_manager::shutdown::NODE_SHUTTING_DOWN.to_owned());
        }
        let ready = if not_ready.is_empty() {
            condition(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status".to_owned(),
            )
        } else {
            let message = if not_ready.len() == 1 {
                not_ready[0].clone()
            } else {
                format!("[{}]", not_ready.join(", "))
            };
            condition("Ready", false, "KubeletNotReady", message)
        };
        let pressure = &self.pressure;
        let conditions = vec![
            pressure_condition(pressure, PressureCondition::Memory, &condition),
            pressure_condition(pressure, PressureCondition::Disk, &condition),
            pressure_condition(pressure, PressureCondition::Pid, &condition),
            ready,
        ];

        let mut addresses: Vec<NodeAddress> = c
            .node_ips
            .iter()
            .map(|ip| NodeAddress {
                type_: "InternalIP".to_owned(),
                address: ip.to_string(),
            })
            .collect();
        addresses.push(NodeAddress {
            type_: "Hostname".to_owned(),
            address: c.hostname.clone(),
        });

        NodeStatus {
            capacity: Some(capacity),
            allocatable: Some(allocatable),
            conditions: Some(conditions),
            addresses: Some(addresses),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: c.port }),
            }),
            node_info: Some(NodeSystemInfo {
                container_runtime_version: version
                    .map(|v| format!("{}://{}", v.runtime_name, v.runtime_version))
                    .unwrap_or_default(),
                ..self.machine.info.clone()
            }),
            images: Some(self.images().await),
            runtime_handlers: runtime_status.as_ref().ok().and_then(runtime_handlers),
            volumes_in_use: match &self.volumes_in_use {
                Some(v) => Some(v.volumes_in_use().await),
                None => None,
            },
            ..NodeStatus::default()
        }
    }

    /// The largest images, as upstream reports them (at most `nodeStatusMaxImages`),
    /// from a list at most [`RUNTIME_FACTS_PERIOD`] old.
    async fn images(&self) -> Vec<ContainerImage> {
        if let Some(images) = self.image_list.fresh() {
            return images;
        }
        let mut images = match self.images.list_images().await {
            Ok(images) => images,
            Err(e) => {
                debug!(error = %e, "listing images for node status");
                return Vec::new();
            }
        };
        images.sort_by_key(|i| std::cmp::Reverse(i.size));
        let images: Vec<ContainerImage> = images
            .into_iter()
            .take(self.config.max_images.unwrap_or(usize::MAX))
            .map(|image| {
                let mut names = image.repo_digests.clone();
                names.extend(image.repo_tags.iter().cloned());
                ContainerImage {
                    names: Some(names),
                    size_bytes: i64::try_from(image.size).ok(),
                }
            })
            .collect();
        self.image_list.keep(images.clone());
        images
    }
}

/// The runtime's handlers and their features as upstream's `RuntimeHandlers` setter
/// reports them; `None` when the runtime names none (containerd 1.6).
fn runtime_handlers(status: &RuntimeStatus) -> Option<Vec<NodeRuntimeHandler>> {
    let handlers: Vec<NodeRuntimeHandler> = status
        .handlers
        .iter()
        .map(|h| NodeRuntimeHandler {
            name: Some(h.name.clone()),
            features: Some(NodeRuntimeHandlerFeatures {
                recursive_read_only_mounts: Some(h.recursive_read_only_mounts),
                user_namespaces: Some(h.user_namespaces),
            }),
        })
        .collect();
    (!handlers.is_empty()).then_some(handlers)
}

/// Why the node is not ready (upstream `runtimeErrors` + `networkErrors`); empty when it
/// is.
fn ready_errors(status: Option<&RuntimeStatus>) -> Vec<String> {
    let Some(status) = status else {
        return vec!["container runtime is down".to_owned()];
    };
    let describe = |name: &str| match status.condition(name) {
        Some(c) => format!(
            "{}={} reason:{} message:{}",
            c.condition_type, c.status, c.reason, c.message
        ),
        None => "<nil>".to_owned(),
    };
    let mut errors = Vec::new();
    if !status
        .condition(RuntimeStatus::RUNTIME_READY)
        .is_some_and(|c| c.status)
    {
        errors.push(format!(
            "container runtime not ready: {}",
            describe(RuntimeStatus::RUNTIME_READY)
        ));
    }
    if !status
        .condition(RuntimeStatus::NETWORK_READY)
        .is_some_and(|c| c.status)
    {
        errors.push(format!(
            "container runtime network not ready: {}",
            describe(RuntimeStatus::NETWORK_READY)
        ));
    }
    errors
}

/// An event's type, reason and message.
type NodeEventParts = (EventType, std::borrow::Cow<'static, str>, String);

/// What upstream's node event recorders remember between status updates.
#[derive(Debug, Default)]
struct EventWatch {
    /// `Starting` recorded.
    started: bool,
    /// `lastNodeUnschedulable`: false until the Node says otherwise.
    last_unschedulable: bool,
    /// The shutdown manager's state at the last look.
    shutting_down: bool,
    /// `Rebooted` recorded (upstream records it once per process).
    reboot_recorded: bool,
}

impl EventWatch {
    /// `NodeShutdown` when the shutdown manager's state changed.
    fn shutdown_event(&mut self, shutting_down: bool) -> Option<NodeEventParts> {
        if shutting_down == self.shutting_down {
            return None;
        }
        self.shutting_down = shutting_down;
        let message = if shutting_down {
            "Shutdown manager detected shutdown event"
        } else {
            "Shutdown manager detected shutdown cancellation"
        };
        Some((EventType::Normal, "NodeShutdown".into(), message.to_owned()))
    }

    /// `NodeNotSchedulable` / `NodeSchedulable` when `spec.unschedulable` changed, as
    /// upstream's `recordNodeSchedulableEvent`.
    fn schedulable_event(&mut self, node_name: &str, node: &Node) -> Option<NodeEventParts> {
        let unschedulable = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if unschedulable == self.last_unschedulable {
            return None;
        }
        self.last_unschedulable = unschedulable;
        let event = if unschedulable {
            "NodeNotSchedulable"
        } else {
            "NodeSchedulable"
        };
        Some(status_is_now(node_name, event))
    }

    /// The events upstream's status setters record when `after` replaces the status of
    /// the Node object `before`: `Rebooted` for a new boot ID; for a pressure condition
    /// that is new or changed, `NodeHasSufficientMemory` / `NodeHasInsufficientMemory`,
    /// `NodeHasNoDiskPressure` / `NodeHasDiskPressure`, `NodeHasSufficientPID` /
    /// `NodeHasInsufficientPID`; for a Ready condition that changed (not a new one),
    /// `NodeReady` / `NodeNotReady`.
    fn status_events(
        &mut self,
        node_name: &str,
        before: Option<&NodeStatus>,
        after: &NodeStatus,
    ) -> Vec<NodeEventParts> {
        let mut events = Vec::new();
        let boot_id = |s: Option<&NodeStatus>| {
            s.and_then(|s| s.node_info.as_ref())
                .map(|i| i.boot_id.clone())
                .unwrap_or_default()
        };
        let (old_boot, new_boot) = (boot_id(before), boot_id(Some(after)));
        if !self.reboot_recorded && !old_boot.is_empty() && old_boot != new_boot {
            self.reboot_recorded = true;
            events.push((
                EventType::Warning,
                "Rebooted".into(),
                format!("Node {node_name} has been rebooted, boot id: {new_boot}"),
            ));
        }
        let status_of = |s: Option<&NodeStatus>, type_: &str| {
            s.and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == type_))
                .map(|c| c.status.clone())
        };
        for condition in after.conditions.iter().flatten() {
            let old = status_of(before, &condition.type_);
            let is_true = condition.status == "True";
            let event = match condition.type_.as_str() {
                "Ready" if old.is_none() => None,
                "Ready" => Some(if is_true { "NodeReady" } else { "NodeNotReady" }),
                "MemoryPressure" => Some(if is_true {
                    "NodeHasInsufficientMemory"
                } else {
                    "NodeHasSufficientMemory"
                }),
                "DiskPressure" => Some(if is_true {
                    "NodeHasDiskPressure"
                } else {
                    "NodeHasNoDiskPressure"
                }),
                "PIDPressure" => Some(if is_true {
                    "NodeHasInsufficientPID"
                } else {
                    "NodeHasSufficientPID"
                }),
                _ => None,
            };
            if let Some(event) = event
                && old.as_deref() != Some(condition.status.as_str())
            {
                events.push(status_is_now(node_name, event));
            }
        }
        events
    }
}

/// Upstream's `recordNodeStatusEvent`: a Normal event whose reason is the new state.
fn status_is_now(node_name: &str, event: &'static str) -> NodeEventParts {
    (
        EventType::Normal,
        event.into(),
        format!("Node {node_name} status is now: {event}"),
    )
}

/// This node's Node object as a watch last delivered it (upstream's node informer,
/// selected by name as the Node authorizer allows): `Some(None)` when it does not
/// exist, `None` until the watch has listed it and again from an error until it has
/// listed anew.
type WatchedNode = Option<Option<Node>>;

/// Watches the Node `name` for as long as the returned task handle is kept.
fn watch_own_node(
    nodes: Api<Node>,
    name: &str,
) -> (
    tokio::sync::watch::Receiver<WatchedNode>,
    tokio_util::task::AbortOnDropHandle<()>,
) {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};

    let (tx, rx) = tokio::sync::watch::channel(None);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        // kube's watcher resumes a broken watch from its last resource version without
        // listing again, so nothing would say when the state is known again: after an
        // error the watch starts over with a list instead (after a pause that doubles
        // while errors repeat, up to 30 s), and the status loop reads the Node meanwhile.
        let mut pause = Duration::from_secs(1);
        loop {
            let mut stream = watcher::watcher(nodes.clone(), config.clone()).boxed();
            let mut listed: Option<Node> = None;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Init) => listed = None,
                    Ok(Event::InitApply(node)) => listed = Some(node),
                    Ok(Event::InitDone) => {
                        tx.send_replace(Some(listed.take()));
                        pause = Duration::from_secs(1);
                    }
                    Ok(Event::Apply(node)) => {
                        tx.send_replace(Some(Some(node)));
                    }
                    Ok(Event::Delete(_)) => {
                        tx.send_replace(Some(None));
                    }
                    Err(e) => {
                        debug!(node = %name, error = %e, "watching the Node object");
                        tx.send_replace(None);
                        break;
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    });
    (rx, tokio_util::task::AbortOnDropHandle::new(task))
}

/// Whether the Node object's conditions have the types, statuses and reasons of `ours`.
fn same_conditions(theirs: Option<&NodeStatus>, ours: &NodeStatus) -> bool {
    let key = |s: Option<&NodeStatus>| {
        let mut conditions: Vec<(String, String, Option<String>)> = s
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect();
        conditions.sort();
        conditions
    };
    key(theirs) == key(Some(ours))
}

/// Two statuses equal but for the conditions' heartbeat times.
fn same_ignoring_heartbeats(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

/// The architecture as Go names it (`GOARCH`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// CPU capacity as a quantity: whole cores when whole, else millicores.
fn format_milli_cpu(milli: u64) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// A pressure condition as upstream's node status setters (`MemoryPressureCondition`,
/// ...) write it.
fn pressure_condition(
    pressure: &kubelet_pod_manager::pressure::NodePressure,
    which: PressureCondition,
    condition: &impl Fn(&str, bool, &str, String) -> NodeCondition,
) -> NodeCondition {
    let under = pressure.has(which);
    let (reason, message) = match (which, under) {
        (PressureCondition::Memory, false) => (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (PressureCondition::Memory, true) => (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
        (PressureCondition::Disk, false) => {
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")
        }
        (PressureCondition::Disk, true) => ("KubeletHasDiskPressure", "kubelet has disk pressure"),
        (PressureCondition::Pid, false) => (
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        (PressureCondition::Pid, true) => (
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        ),
    };
    condition(which.as_str(), under, reason, message.to_owned())
}

/// Bytes as upstream prints a node's memory and storage: whole KiB (`1024Ki`) when they
/// divide, else plain bytes.
fn format_bytes(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

fn filesystem_bytes(path: &std::path::Path) -> Option<u64> {
    let probe = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(std::path::Path::new("/"));
    let stat = nix::sys::statvfs::statvfs(probe).ok()?;
    // fsblkcnt_t and c_ulong are 32 bits wide on some targets.
    #[allow(clippy::useless_conversion)]
    Some(u64::from(stat.blocks()).saturating_mul(u64::from(stat.fragment_size())))
}

/// Huge page sizes the kernel offers, as quantity suffixes (`2Mi`, `1Gi`).
fn hugepage_sizes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = dir
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(if kb.is_multiple_of(1024 * 1024) {
                format!("{}Gi", kb / (1024 * 1024))
            } else if kb.is_multiple_of(1024) {
                format!("{}Mi", kb / 1024)
            } else {
                format!("{kb}Ki")
            })
        })
        .collect();
    sizes.sort();
    sizes
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// nodeInfo (upstream `VersionInfo` + `MachineInfo` setters) but the runtime's version.
fn system_info() -> NodeSystemInfo {
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| "Linux".to_owned());
    NodeSystemInfo {
        architecture: go_arch().to_owned(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: String::new(),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        kube_proxy_version: String::new(),
        kubelet_version: KUBELET_VERSION.to_owned(),
        machine_id: read_trimmed("/etc/machine-id"),
        operating_system: "linux".to_owned(),
        os_image,
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        swap: None,
        running_in_user_namespace: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_core::RuntimeCondition;

    fn status_with(conditions: &[(&str, &str)], boot_id: &str) -> NodeStatus {
        NodeStatus {
            conditions: Some(
                conditions
                    .iter()
                    .map(|(type_, status)| NodeCondition {
                        type_: (*type_).into(),
                        status: (*status).into(),
                        ..NodeCondition::default()
                    })
                    .collect(),
            ),
            node_info: Some(NodeSystemInfo {
                boot_id: boot_id.into(),
                ..NodeSystemInfo::default()
            }),
            ..NodeStatus::default()
        }
    }

    fn reasons(events: &[NodeEventParts]) -> Vec<&str> {
        events
            .iter()
            .map(|(_, reason, _)| reason.as_ref())
            .collect()
    }

    const HEALTHY: [(&str, &str); 4] = [
        ("MemoryPressure", "False"),
        ("DiskPressure", "False"),
        ("PIDPressure", "False"),
        ("Ready", "True"),
    ];

    #[test]
    fn a_new_node_gets_the_pressure_events_but_not_node_ready() {
        let mut watch = EventWatch::default();
        let fresh = NodeStatus::default();
        let events = watch.status_events("vm", Some(&fresh), &status_with(&HEALTHY, "b1"));
        assert_eq!(
            reasons(&events),
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID"
            ]
        );
        assert_eq!(events[0].0, EventType::Normal);
        assert_eq!(
            events[0].2,
            "Node vm status is now: NodeHasSufficientMemory"
        );
        // The same status again: nothing.
        let events = watch.status_events(
            "vm",
            Some(&status_with(&HEALTHY, "b1")),
            &status_with(&HEALTHY, "b1"),
        );
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn transitions_of_ready_and_of_conditions_marked_unknown_are_recorded() {
        let mut watch = EventWatch::default();
        let not_ready = [
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
            ("PIDPressure", "False"),
            ("Ready", "False"),
        ];
        let events = watch.status_events(
            "vm",
            Some(&status_with(&HEALTHY, "b1")),
            &status_with(&not_ready, "b1"),
        );
        assert_eq!(reasons(&events), ["NodeNotReady"]);
        // The node lifecycle controller marked every condition Unknown.
        let unknown = [
            ("MemoryPressure", "Unknown"),
            ("DiskPressure", "Unknown"),
            ("PIDPressure", "Unknown"),
            ("Ready", "Unknown"),
        ];
        let events = watch.status_events(
            "vm",
            Some(&status_with(&unknown, "b1")),
            &status_with(&HEALTHY, "b1"),
        );
        assert_eq!(
            reasons(&events),
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID",
                "NodeReady"
            ]
        );
    }

    #[test]
    fn runtime_facts_are_reused_once_read() {
        let version: Reused<kubelet_core::RuntimeVersion> = Reused::default();
        assert_eq!(version.fresh(), None, "nothing read yet");
        let read = kubelet_core::RuntimeVersion {
            runtime_name: "containerd".into(),
            ..Default::default()
        };
        version.keep(read.clone());
        assert_eq!(version.fresh(), Some(read));
        *version.lock() = Some((Instant::now() - RUNTIME_FACTS_PERIOD, Default::default()));
        assert_eq!(version.fresh(), None, "read a period ago: asked again");
    }

    #[test]
    fn a_new_boot_id_is_a_reboot_warning_once() {
        let mut watch = EventWatch::default();
        let events = watch.status_events(
            "vm",
            Some(&status_with(&HEALTHY, "b1")),
            &status_with(&HEALTHY, "b2"),
        );
        assert_eq!(
            events,
            [(
                EventType::Warning,
                "Rebooted".into(),
                "Node vm has been rebooted, boot id: b2".to_owned()
            )]
        );
        let again = watch.status_events(
            "vm",
            Some(&status_with(&HEALTHY, "b1")),
            &status_with(&HEALTHY, "b2"),
        );
        assert!(again.is_empty());
    }

    #[test]
    fn cordon_uncordon_and_shutdown_events() {
        let mut watch = EventWatch::default();
        let node = |unschedulable: Option<bool>| Node {
            spec: Some(NodeSpec {
                unschedulable,
                ..NodeSpec::default()
            }),
            ..Node::default()
        };
        assert_eq!(watch.schedulable_event("vm", &node(None)), None);
        let cordoned = watch.schedulable_event("vm", &node(Some(true)));
        assert_eq!(
            cordoned,
            Some((
                EventType::Normal,
                "NodeNotSchedulable".into(),
                "Node vm status is now: NodeNotSchedulable".to_owned()
            ))
        );
        assert_eq!(watch.schedulable_event("vm", &node(Some(true))), None);
        let uncordoned = watch.schedulable_event("vm", &node(Some(false)));
        assert_eq!(
            reasons(&uncordoned.into_iter().collect::<Vec<_>>()),
            ["NodeSchedulable"]
        );

        assert_eq!(watch.shutdown_event(false), None);
        let shutdown = watch.shutdown_event(true).expect("shutdown");
        assert_eq!(shutdown.1, "NodeShutdown");
        assert_eq!(shutdown.2, "Shutdown manager detected shutdown event");
        assert_eq!(watch.shutdown_event(true), None);
        let cancelled = watch.shutdown_event(false).expect("cancellation");
        assert_eq!(
            cancelled.2,
            "Shutdown manager detected shutdown cancellation"
        );
    }

    #[test]
    fn conditions_set_by_the_node_controller_count_as_a_difference() {
        let condition = |status: &str, reason: &str| NodeCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: Some(reason.into()),
            last_heartbeat_time: Some(Time(now())),
            ..NodeCondition::default()
        };
        let ours = NodeStatus {
            conditions: Some(vec![condition("True", "KubeletReady")]),
            ..NodeStatus::default()
        };
        let mut theirs = ours.clone();
        theirs.conditions = Some(vec![NodeCondition {
            last_heartbeat_time: None,
            ..condition("True", "KubeletReady")
        }]);
        assert!(
            same_conditions(Some(&theirs), &ours),
            "heartbeats do not count"
        );
        theirs.conditions = Some(vec![condition("Unknown", "NodeStatusUnknown")]);
        assert!(!same_conditions(Some(&theirs), &ours));
        assert!(!same_conditions(None, &ours));
    }

    #[test]
    fn ready_errors_as_upstream_words_them() {
        assert_eq!(ready_errors(None), vec!["container runtime is down"]);
        let ok = RuntimeStatus {
            conditions: vec![
                RuntimeCondition {
                    condition_type: "RuntimeReady".into(),
                    status: true,
                    ..Default::default()
                },
                RuntimeCondition {
                    condition_type: "NetworkReady".into(),
                    status: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert!(ready_errors(Some(&ok)).is_empty());
        assert_eq!(
            runtime_handlers(&ok),
            None,
            "a runtime that names no handlers"
        );
        let with_handlers = RuntimeStatus {
            handlers: vec![
                kubelet_core::RuntimeHandler {
                    name: String::new(),
                    recursive_read_only_mounts: true,
                    user_namespaces: false,
                },
                kubelet_core::RuntimeHandler {
                    name: "kata".into(),
                    recursive_read_only_mounts: false,
                    user_namespaces: true,
                },
            ],
            ..ok.clone()
        };
        let reported = runtime_handlers(&with_handlers).expect("handlers");
        assert_eq!(reported.len(), 2);
        assert_eq!(reported[1].name.as_deref(), Some("kata"));
        assert_eq!(
            reported[1].features,
            Some(NodeRuntimeHandlerFeatures {
                recursive_read_only_mounts: Some(false),
                user_namespaces: Some(true),
            })
        );
        let mut no_network = ok.clone();
        no_network.conditions[1] = RuntimeCondition {
            condition_type: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: "Network plugin returns error: cni plugin not initialized".into(),
        };
        assert_eq!(
            ready_errors(Some(&no_network)),
            vec![
                "container runtime network not ready: NetworkReady=false \
                 reason:NetworkPluginNotReady message:Network plugin returns error: \
                 cni plugin not initialized"
            ]
        );
    }

    #[test]
    fn capacity_formats() {
        assert_eq!(format_milli_cpu(2000), "2");
        assert_eq!(format_milli_cpu(1500), "1500m");
        assert!(
            [
                "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"
            ]
            .contains(&go_arch()),
            "{}",
            go_arch()
        );
    }

    #[test]
    fn heartbeats_do_not_count_as_change() {
        let condition = |beat: i64| NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_heartbeat_time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(beat).expect("time"),
            )),
            ..Default::default()
        };
        let a = NodeStatus {
            conditions: Some(vec![condition(1)]),
            ..Default::default()
        };
        let b = NodeStatus {
            conditions: Some(vec![condition(2)]),
            ..Default::default()
        };
        assert!(same_ignoring_heartbeats(&a, &b));
    }
}
