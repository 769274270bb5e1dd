//! Joining a cluster (`--kubeconfig`): the API server client and the parts that use it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{ImageService, Runtime};
use kubelet_node_agent::rotation::{
    ClientCertificate, RotatingCertificate, client_with_certificate, rotate,
};
use kubelet_node_agent::{
    ApiEvents, ApiObjects, ApiPodSource, ApiStatus, ClientOptions, Connections, NodeAgent,
    NodeConfig, NodeFactsHandle, PodView, RequestBound, Throttle, client_from_kubeconfig,
};
use kubelet_pod_manager::allocation::Allocations;

use crate::settings::Settings;
use crate::supervise::Role;
use crate::{Error, NodeOptions, Result};

/// The least time a Lease or node status call may take (the Lease's renewal period).
const HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connections the general client keeps open between requests: one for each status
/// patch the pod status sender has in flight at once; fewer would close and reopen
/// connections, each with a TLS handshake, between the waves of a pod burst. (The event
/// writer, one event at a time, has a client of its own.)
const IDLE_CONNECTIONS: usize = ApiStatus::PARALLEL_PATCHES;

/// Upstream's `CgroupV1DeprecatedWarning`, recorded as a `CgroupV1` node event.
const CGROUP_V1_DEPRECATED_WARNING: &str = "cgroup v1 detected. cgroup v1 support is deprecated and will be removed in a future release. Please migrate to cgroup v2. More information at https://git.k8s.io/enhancements/keps/sig-node/5573-remove-cgroup-v1";

/// The API server connection and the cluster-side parts wired to it.
pub struct Cluster {
    /// Requests, each bounded by `REQUEST_TIMEOUT`.
    client: kube::Client,
    /// Watches (the node's pods, the objects pods reference).
    watch_client: kube::Client,
    node_name: String,
    node_agent: Option<NodeAgent>,
    node_facts: NodeFactsHandle,
    view: Arc<PodView>,
    /// Pod status, mirror pods and final deletes.
    pub status: ApiStatus,
    /// Pod and node events.
    pub events: ApiEvents,
    /// ConfigMaps, Secrets and Services for the pods.
    pub objects: ApiObjects,
    /// The client certificate, rotated when `rotateCertificates`, and where it is
    /// stored.
    client_certificate: Option<(Arc<ClientCertificate>, PathBuf)>,
    /// Every connection of the four clients: closed together when a heartbeat gets no
    /// answer and when the client certificate rotates, as upstream's `closeAllConns`.
    connections: Connections,
    /// The serving certificate's requests and rotation, when `serverTLSBootstrap`.
    serving_rotation: Option<RotationTask>,
    /// The tasks that write pod status and events, until taken to be run.
    senders: Vec<(&'static str, Role, BackgroundTask)>,
}

/// A task that runs for as long as the kubelet does.
pub(crate) type BackgroundTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The task rotating the client certificate.
pub type RotationTask =
    std::pin::Pin<Box<dyn std::future::Future<Output = kubelet_node_agent::Result<()>> + Send>>;

impl Cluster {
    /// CSIDriver, VolumeAttachment and CSINode access for the CSI plugin.
    pub fn csi_objects(&self) -> kubelet_node_agent::ApiCsiObjects {
        kubelet_node_agent::ApiCsiObjects::new(
            self.client.clone(),
            self.watch_client.clone(),
            &self.node_name,
        )
    }

    /// Connects with the kubeconfig and starts the reporters.
    pub async fn start(
        kubeconfig: &Path,
        options: &NodeOptions,
        cfg: &Settings,
        node_name: &str,
        node_ips: &[IpAddr],
        runtime: Arc<dyn Runtime>,
        images: Arc<dyn ImageService>,
    ) -> Result<Self> {
        let cluster_error = |source| Error::Cluster {
            what: "--kubeconfig",
            source,
        };
        // With rotateCertificates every client presents the certificate manager's
        // current certificate, as upstream's rotating transport.
        let rotated = if cfg.config.rotate_certificates {
            Some(
                ClientCertificate::load(kubeconfig, &options.cert_dir, node_name)
                    .await
                    .map_err(cluster_error)?,
            )
        } else {
            None
        };
        let connections = Connections::new();
        let connect = |bound, throttle| {
            let options = ClientOptions {
                bound,
                connections: connections.clone(),
                throttle,
            };
            let rotated = rotated.clone();
            async move {
                match rotated {
                    Some(certificate) => {
                        client_with_certificate(kubeconfig, &options, certificate).await
                    }
                    None => client_from_kubeconfig(kubeconfig, &options).await,
                }
                .map_err(cluster_error)
            }
        };
        // Four clients, as upstream keeps a heartbeat client apart: the Lease and node
        // status bounded so that a stuck call is retried before the Lease runs out
        // (upstream bounds them by nodeStatusUpdateFrequency; at least 10 s here, the
        // Lease's renewal period), on one connection kept from one renewal to the next,
        // so a connection gone half-open costs one failed call; other requests bounded;
        // watches unbounded (their idle timeout finds dead connections). The requests and
        // watches share one rate limit (kubeAPIQPS, kubeAPIBurst), as upstream's kubelet
        // client; the heartbeat has none, as upstream's.
        let heartbeat = connect(
            Some(RequestBound {
                deadline: cfg.node_status_update_frequency.max(HEARTBEAT_TIMEOUT),
                idle_connections: 1,
            }),
            None,
        )
        .await?;
        let throttle = Throttle::kube_api(
            cfg.config.kube_api_qps.unwrap_or_default(),
            cfg.config.kube_api_burst,
        );
        let client = connect(
            Some(RequestBound {
                deadline: kubelet_node_agent::REQUEST_TIMEOUT,
                idle_connections: IDLE_CONNECTIONS,
            }),
            Some(throttle.clone()),
        )
        .await?;
        let watch_client = connect(None, Some(throttle)).await?;
        // Events keep to eventRecordQPS alone, as upstream's event client.
        let event_client = connect(
            Some(RequestBound {
                deadline: kubelet_node_agent::REQUEST_TIMEOUT,
                idle_connections: 1,
            }),
            None,
        )
        .await?;
        let hostname = crate::host::node_name(None).unwrap_or_else(|_| node_name.to_owned());
        let mut node = NodeConfig::new(node_name);
        node.hostname = if options.hostname_override.is_some() {
            node_name.to_owned()
        } else {
            hostname
        };
        node.node_ips = node_ips.to_vec();
        node.labels = options.node_labels.iter().cloned().collect();
        node.taints = cfg.register_with_taints.clone();
        node.provider_id = Some(cfg.config.provider_id.clone()).filter(|id| !id.is_empty());
        node.register = cfg.register_node;
        node.max_pods = cfg.max_pods;
        node.max_images = cfg.node_status_max_images;
        node.root_dir = options.root_dir.clone();
        node.port = i32::from(cfg.port);
        node.status_update_frequency = cfg.node_status_update_frequency;
        node.status_report_frequency = cfg.node_status_report_frequency;
        node.lease_duration_seconds = cfg.node_lease_duration_seconds;
        if cfg.host.cgroup_v1 {
            node.start_warnings.push((
                "CgroupV1".to_owned(),
                CGROUP_V1_DEPRECATED_WARNING.to_owned(),
            ));
        }
        let view = Arc::new(PodView::new());
        let (events, event_writer) = ApiEvents::new(
            event_client,
            node_name,
            ApiEvents::rate_limit(
                cfg.config.event_record_qps.unwrap_or_default(),
                cfg.config.event_burst,
            ),
        );
        let (status, status_sender) = ApiStatus::new(client.clone(), node_name, view.clone());
        let agent = NodeAgent::new(heartbeat, node, runtime, images)
            .with_watch_client(watch_client.clone())
            .with_connections(connections.clone())
            .with_events(Arc::new(events.clone()));
        Ok(Self {
            client_certificate: rotated.map(|certificate| (certificate, options.cert_dir.clone())),
            connections,
            serving_rotation: None,
            status,
            senders: vec![
                (
                    "pod status sender",
                    Role::Essential,
                    Box::pin(status_sender) as BackgroundTask,
                ),
                // Returns once no recorder is left, which is the kubelet ending.
                ("event writer", Role::MayEnd, Box::pin(event_writer)),
            ],
            events,
            objects: ApiObjects::start(watch_client.clone()),
            client,
            watch_client,
            node_name: node_name.to_owned(),
            node_facts: agent.facts(),
            node_agent: Some(agent),
            view,
        })
    }

    /// The API server client (for the kubelet API's TokenReview and
    /// SubjectAccessReview).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The watch of the pods bound to this node, with node-side admission recording
    /// each pod's resources in `allocations` (and deciding their resizes), rejections
    /// counted in `metrics`.
    pub fn pod_source(
        &self,
        allocations: Allocations,
        metrics: Arc<KubeletMetrics>,
    ) -> ApiPodSource {
        ApiPodSource::new(
            self.watch_client.clone(),
            &self.node_name,
            self.view.clone(),
        )
        .with_admission(
            self.node_facts.clone(),
            Arc::new(self.status.clone()),
            Arc::new(self.events.clone()),
            allocations,
            metrics,
        )
    }

    /// Reports the device plugins' resources on the Node.
    pub fn report_extended_resources(
        &mut self,
        extended: Arc<dyn kubelet_core::ExtendedResources>,
    ) {
        self.node_agent = self
            .node_agent
            .take()
            .map(|a| a.with_extended_resources(extended));
    }

    /// Reports the volumes in use in the node status.
    pub fn report_volumes_in_use(&mut self, volumes: Arc<dyn kubelet_core::VolumesInUse>) {
        self.node_agent = self
            .node_agent
            .take()
            .map(|a| a.with_volumes_in_use(volumes));
    }

    /// Sets the Node's capacity and what its allocatable leaves out of it.
    pub fn size(
        &mut self,
        capacity: kubelet_core::NodeResources,
        reserved: kubelet_core::NodeResources,
    ) {
        self.node_agent = self
            .node_agent
            .take()
            .map(|a| a.with_resources(capacity, reserved));
    }

    /// Requests and rotates `certificate`, the serving certificate, through this
    /// cluster's API server (the task is taken with [`Self::take_serving_rotation`]),
    /// its TTL and rotations recorded in `metrics`.
    pub fn rotate_serving_certificate(
        &mut self,
        certificate: Arc<RotatingCertificate>,
        cert_dir: &Path,
        metrics: Arc<KubeletMetrics>,
    ) {
        self.serving_rotation = Some(Box::pin(rotate(
            certificate,
            self.watch_client.clone(),
            cert_dir.to_owned(),
            self.node_name.clone(),
            metrics,
            None,
        )));
    }

    /// The serving certificate's rotation (once), when `serverTLSBootstrap`.
    pub fn take_serving_rotation(&mut self) -> Option<RotationTask> {
        self.serving_rotation.take()
    }

    /// The client certificate's rotation (once), when `rotateCertificates`, its TTL
    /// and renewal errors recorded in `metrics`.
    pub fn take_rotation(&mut self, metrics: Arc<KubeletMetrics>) -> Option<RotationTask> {
        let (certificate, cert_dir) = self.client_certificate.take()?;
        Some(Box::pin(rotate(
            certificate,
            self.watch_client.clone(),
            cert_dir,
            self.node_name.clone(),
            metrics,
            Some(self.connections.clone()),
        )))
    }

    /// The tasks that patch pod status and write events, by name (once): without them
    /// nothing reported reaches the API server.
    pub(crate) fn take_senders(&mut self) -> Vec<(&'static str, Role, BackgroundTask)> {
        std::mem::take(&mut self.senders)
    }

    /// The Node's registration, status and Lease (once).
    pub fn take_node_agent(&mut self) -> Option<NodeAgent> {
        self.node_agent.take()
    }
}
