//! A whole kubelet, assembled from the workspace's libraries: [`Kubelet::builder`] takes
//! the [`Settings`] (a validated `KubeletConfiguration`), the node's identity, a
//! container runtime and, optionally, volume plugins, a prober and a status reporter,
//! and [`Kubelet::run`] runs it until it is asked to stop or a part it cannot run
//! without fails.
//!
//! - [`Settings`]: the configuration checked as upstream checks it, in the types the
//!   libraries take; [`configz_json`] is what `/configz` serves.
//! - [`KubeletBuilder`]: the wiring of upstream's `RunKubelet`: TLS bootstrapping, the
//!   runtime's readiness, the pod cgroup tree, pod sources (static pod directory and
//!   URL, the API server), the pod manager, the node agent (registration, status,
//!   Lease), graceful node shutdown, the system cgroups, and the kubelet API servers.
//! - [`Kubelet::run`]: every background task is supervised; one that panics or ends
//!   when it must not ends the kubelet with an error naming it (systemd restarts the
//!   kubelet), and dropping the kubelet stops its tasks. Pods keep running either way:
//!   the next kubelet adopts them.
//! - [`host`]: the machine's name, addresses and size.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use kubelet_builder::{Kubelet, Settings};
//! use kubelet_core::config::{HostFacts, KubeletConfiguration};
//! use kubelet_core::{ImageService, Runtime};
//!
//! async fn run(runtime: Arc<dyn Runtime>, images: Arc<dyn ImageService>) -> kubelet_builder::Result<()> {
//!     let mut config = KubeletConfiguration::defaulted();
//!     config.static_pod_path = "/etc/kubernetes/manifests".into();
//!     let settings = Settings::new(config, "example".into(), &HostFacts::default())?;
//!     let kubelet = Kubelet::builder(settings)
//!         .hostname_override("node-1")
//!         .runtime(runtime, images)
//!         .build()
//!         .await?;
//!     kubelet.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! }
//! ```

pub mod allocatable;
mod cluster;
pub mod container_manager;
mod credentials;
mod error;
pub mod host;
mod settings;
mod supervise;
pub mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubelet_cgroups::CgroupManager;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{
    Backoff, ImageService, NoEvents, NoVolumeSources, NodeResources, Prober, Runtime,
    RuntimeHealth, RuntimeVersion, StatusReporter, SystemClock, VolumePlugin, VolumeSources,
};
use kubelet_eviction::{EvictionManager, NodeReclaimer};
use kubelet_images::{ImageGc, RuntimeContainers, RuntimeImageFs};
use kubelet_node_agent::ShutdownManager;
use kubelet_pod_manager::pressure::NodePressure;
use kubelet_pod_manager::shutdown::{ShutdownPeriod, shutdown_periods};
use kubelet_pod_manager::source::{FileSource, UrlSource};
use kubelet_pod_manager::spec::{EnvObjects, NoEnvObjects, NodeContext, NodeSecurity};
use kubelet_pod_manager::{
    LocalPods, LogRotation, ManagerConfig, NoRuntimeClasses, PodManager, PodSource, SourceUpdate,
    SyncContext,
};
use kubelet_probes::KubeletProber;
use kubelet_stats::{StatsPaths, StatsProvider};
use tokio::sync::mpsc;

pub use error::{Error, Result};
pub use kubelet_node_agent::KUBELET_VERSION;
pub use kubelet_pod_manager::ContainerGcPolicy;
pub use kubelet_pod_manager::admission::kernel_version;
pub use kubelet_server::VerbositySetter;
pub use settings::{Settings, configz_json};

use cluster::Cluster;
use supervise::{Role, Supervisor};

/// Where the kubelet keeps its state when not told otherwise (`--root-dir`).
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kubelet";
/// Where node logs are served from (`/logs/`).
const NODE_LOGS_DIR: &str = "/var/log";

/// What identifies the node and where it keeps its state: the parts of upstream's
/// kubelet flags that are not in the `KubeletConfiguration`.
#[derive(Debug, Clone)]
pub(crate) struct NodeOptions {
    pub(crate) hostname_override: Option<String>,
    pub(crate) node_ips: Option<String>,
    pub(crate) node_labels: Vec<(String, String)>,
    pub(crate) root_dir: PathBuf,
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) bootstrap_kubeconfig: Option<PathBuf>,
    pub(crate) cert_dir: PathBuf,
    pub(crate) device_plugin_dir: PathBuf,
    pub(crate) runtime_cgroups: Option<String>,
    pub(crate) container_gc: kubelet_pod_manager::ContainerGcPolicy,
}

/// The container restart back-off: `crashLoopBackOff.maxContainerRestartPeriod` caps it
/// when the KubeletCrashLoopBackOffMax gate is on (defaulting sets it to 300 s).
fn crash_loop_backoff(config: &kubelet_core::config::KubeletConfiguration) -> Backoff {
    match config
        .crash_loop_back_off
        .max_container_restart_period
        .and_then(|d| d.to_std())
        .filter(|d| !d.is_zero() && config.gate("KubeletCrashLoopBackOffMax"))
    {
        Some(max) => Backoff::crash_loop_up_to(max),
        None => Backoff::crash_loop(),
    }
}

/// Assembles a [`Kubelet`]; see the crate documentation.
pub struct KubeletBuilder {
    settings: Settings,
    node: NodeOptions,
    runtime: Option<(Arc<dyn Runtime>, Arc<dyn ImageService>)>,
    prober: Option<Arc<dyn Prober>>,
    status: Option<Arc<dyn StatusReporter>>,
    volume_plugins: Vec<Arc<dyn VolumePlugin>>,
    set_verbosity: Option<kubelet_server::VerbositySetter>,
    /// `--image-credential-provider-config` and `--image-credential-provider-bin-dir`.
    credential_provider: Option<(PathBuf, PathBuf)>,
    metrics: Arc<KubeletMetrics>,
}

impl std::fmt::Debug for KubeletBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletBuilder")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl KubeletBuilder {
    /// The node's name (`--hostname-override`); the host name by default.
    pub fn hostname_override(mut self, name: impl Into<String>) -> Self {
        self.node.hostname_override = Some(name.into());
        self
    }

    /// The node's IPs, comma-separated (`--node-ip`); by default the address of the
    /// interface with the default route.
    pub fn node_ips(mut self, ips: impl Into<String>) -> Self {
        self.node.node_ips = Some(ips.into());
        self
    }

    /// Labels the Node is registered with (`--node-labels`).
    pub fn node_labels(mut self, labels: impl IntoIterator<Item = (String, String)>) -> Self {
        self.node.node_labels = labels.into_iter().collect();
        self
    }

    /// Where pods' volumes and the kubelet's certificates live (`--root-dir`,
    /// [`DEFAULT_ROOT_DIR`] by default).
    pub fn root_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.node.root_dir = dir.into();
        self
    }

    /// Joins the cluster with this kubeconfig (`--kubeconfig`); standalone without.
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.node.kubeconfig = Some(path.into());
        self
    }

    /// Where the client certificate is kept (`--cert-dir`): bootstrapped and rotated
    /// certificates, `kubelet-client-current.pem`.
    pub fn cert_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.node.cert_dir = dir.into();
        self
    }

    /// Where device plugins register (upstream's fixed
    /// `/var/lib/kubelet/device-plugins`, whatever the root directory; tests move it).
    pub fn device_plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.node.device_plugin_dir = dir.into();
        self
    }

    /// Bootstraps the client certificate with this kubeconfig (`--bootstrap-kubeconfig`)
    /// into `cert_dir` (`--cert-dir`) when the kubeconfig's certificate is missing or
    /// expired.
    pub fn bootstrap_kubeconfig(
        mut self,
        path: impl Into<PathBuf>,
        cert_dir: impl Into<PathBuf>,
    ) -> Self {
        self.node.bootstrap_kubeconfig = Some(path.into());
        self.node.cert_dir = cert_dir.into();
        self
    }

    /// The runtime's cgroup, reported as the `runtime` system container
    /// (`--runtime-cgroups`).
    pub fn runtime_cgroups(mut self, cgroup: impl Into<String>) -> Self {
        self.node.runtime_cgroups = Some(cgroup.into()).filter(|c| !c.is_empty());
        self
    }

    /// Which dead containers are kept (the deprecated `--minimum-container-ttl-duration`,
    /// `--maximum-dead-containers-per-container`, `--maximum-dead-containers`).
    pub fn container_gc(mut self, policy: kubelet_pod_manager::ContainerGcPolicy) -> Self {
        self.node.container_gc = policy;
        self
    }

    /// The container runtime and its image service (e.g. both a `CriClient`).
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>, images: Arc<dyn ImageService>) -> Self {
        self.runtime = Some((runtime, images));
        self
    }

    /// The prober of liveness, readiness and startup probes; `KubeletProber` over the
    /// runtime by default.
    pub fn prober(mut self, prober: Arc<dyn Prober>) -> Self {
        self.prober = Some(prober);
        self
    }

    /// Where pod statuses go besides the kubelet's own view (standalone only: joined to
    /// a cluster they go to the API server, and `build` refuses a second destination
    /// rather than dropping either).
    pub fn status_reporter(mut self, status: Arc<dyn StatusReporter>) -> Self {
        self.status = Some(status);
        self
    }

    /// A volume plugin beside the built-in ones.
    pub fn volume_plugin(mut self, plugin: Arc<dyn VolumePlugin>) -> Self {
        self.volume_plugins.push(plugin);
        self
    }

    /// How the log verbosity is changed while the kubelet runs (`PUT /debug/flags/v` on
    /// the kubelet API, when `enableDebugFlagsHandler`); without it that endpoint says
    /// the verbosity cannot be changed.
    pub fn log_verbosity_setter(mut self, set: kubelet_server::VerbositySetter) -> Self {
        self.set_verbosity = Some(set);
        self
    }

    /// Image credential provider plugins: the `CredentialProviderConfig` at `config` (a
    /// file or a directory, `--image-credential-provider-config`) naming plugins in
    /// `bin_dir` (`--image-credential-provider-bin-dir`). `build` refuses an invalid
    /// configuration or a missing plugin.
    pub fn image_credential_provider(
        mut self,
        config: impl Into<PathBuf>,
        bin_dir: impl Into<PathBuf>,
    ) -> Self {
        self.credential_provider = Some((config.into(), bin_dir.into()));
        self
    }

    /// The registry every part of the kubelet records its metrics in, and the kubelet
    /// API serves (`/metrics`, `/metrics/probes`, `/metrics/slis`); by default one of
    /// the kubelet's own. Give the runtime client the same one (for example
    /// `CriClient::with_metrics`) to see its `kubelet_runtime_operations_*` there too.
    pub fn metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Assembles the kubelet: bootstraps the client certificate, waits for the runtime,
    /// makes the pod cgroup tree and connects to the API server, as upstream does before
    /// it runs pods. Nothing runs until [`Kubelet::run`].
    pub async fn build(self) -> Result<Kubelet> {
        let Self {
            settings: cfg,
            node: options,
            runtime,
            prober,
            status,
            volume_plugins,
            set_verbosity,
            credential_provider,
            metrics,
        } = self;
        // A broken credential provider configuration stops the kubelet before it starts
        // anything, naming the file and the field.
        let credential_providers = match &credential_provider {
            Some((config, bin_dir)) => Some(
                kubelet_credential_provider::CredentialProviders::load(
                    config,
                    bin_dir,
                    None,
                    metrics.clone(),
                )
                .await
                .map_err(|source| Error::CredentialProvider {
                    path: config.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        if status.is_some() && options.kubeconfig.is_some() {
            return Err(Error::Config {
                field: "--kubeconfig",
                reason: "a kubelet joined to a cluster reports pod status to the API server; \
                         it cannot also take a status reporter"
                    .to_owned(),
            });
        }
        let (runtime, images) = runtime.ok_or(Error::NoRuntime)?;
        host::check_swap(
            cfg.config.fail_swap_on.unwrap_or(true),
            Path::new("/proc/swaps"),
        )
        .await?;
        {
            let root_dir = options.root_dir.clone();
            let prepared =
                tokio::task::spawn_blocking(move || kubelet_volumes::prepare_root_dir(&root_dir))
                    .await
                    .map_err(|e| Error::Host {
                        what: "preparing the root directory",
                        source: std::io::Error::other(e),
                    })?;
            match prepared {
                Ok(true) => {
                    tracing::info!(dir = %options.root_dir.display(), "bind-mounted the root directory with shared mount propagation")
                }
                Ok(false) => {}
                Err(source) => {
                    return Err(Error::RootDir {
                        path: options.root_dir.clone(),
                        source,
                    });
                }
            }
        }
        // serializeImagePulls, maxParallelImagePulls, registryPullQPS/registryBurst.
        let images: Arc<dyn ImageService> = Arc::new(kubelet_images::LimitedPulls::new(
            images,
            kubelet_images::PullLimits::from_config(&cfg.config),
        ));
        let node_name = host::node_name(options.hostname_override.as_deref())?;
        let host_ips = host::node_ips(options.node_ips.as_deref())?;
        // As upstream, the client certificate is bootstrapped before the runtime is needed.
        if let Some(bootstrap) = &options.bootstrap_kubeconfig {
            let kubeconfig = options.kubeconfig.as_deref().ok_or(Error::Config {
                field: "--bootstrap-kubeconfig",
                reason: "needs --kubeconfig: the path where the kubeconfig of the \
                         bootstrapped client certificate is written"
                    .to_owned(),
            })?;
            kubelet_node_agent::load_client_cert(
                kubeconfig,
                bootstrap,
                &options.cert_dir,
                &node_name,
            )
            .await
            .map_err(|source| Error::Bootstrap {
                path: bootstrap.clone(),
                source,
            })?;
        }
        let host_resolv_conf = match &cfg.resolv_conf {
            Some(path) => tokio::fs::read_to_string(path).await.unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "cannot read resolvConf; pods get no host DNS");
                String::new()
            }),
            None => String::new(),
        };

        let version = wait_for_runtime(runtime.as_ref(), &cfg.container_runtime_endpoint).await;
        tracing::info!(
            runtime = %version.runtime_name,
            version = %version.runtime_version,
            api = %version.runtime_api_version,
            node = %node_name,
            ips = ?host_ips,
            "connected to the container runtime"
        );
        match runtime.status().await {
            Ok(status) => {
                for condition in status.conditions.iter().filter(|c| !c.status) {
                    tracing::warn!(condition = %condition.condition_type, reason = %condition.reason, message = %condition.message, "runtime not ready");
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the runtime's status"),
        }

        let mut server_settings = kubelet_server::Settings::from_config(
            &cfg.config,
            SocketAddr::new(cfg.address, cfg.port),
            &options.root_dir,
            &node_name,
            &host_ips,
        )?;
        let capacity = node_capacity(&options.root_dir);
        let reserved = cfg.kube_reserved.plus(cfg.system_reserved);
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let (eviction_memory, eviction_storage) = cfg
            .eviction
            .hard_reservation(signed(capacity.memory), signed(capacity.ephemeral_storage));
        let allocatable_reservation = reserved.plus(NodeResources {
            memory: u64::try_from(eviction_memory).unwrap_or(0),
            ephemeral_storage: u64::try_from(eviction_storage).unwrap_or(0),
            ..NodeResources::default()
        });
        let over = allocatable::reservation_over_capacity(&allocatable_reservation, &capacity);
        if !over.is_empty() {
            return Err(Error::Config {
                field: "kubeReserved, systemReserved and evictionHard",
                reason: format!("invalid Node Allocatable configuration. {}", over.join(" ")),
            });
        }
        let pressure = NodePressure::default();
        let mut cluster = match &options.kubeconfig {
            Some(path) => Some(
                Cluster::start(
                    path,
                    &options,
                    &cfg,
                    &node_name,
                    &host_ips,
                    runtime.clone(),
                    images.clone(),
                )
                .await?,
            ),
            None => None,
        };
        // serverTLSBootstrap: the serving certificate is requested from the API server for
        // the node's host name and IPs, and served once issued.
        if cfg.config.server_tls_bootstrap {
            let cluster = cluster.as_mut().ok_or(Error::Config {
                field: "serverTLSBootstrap",
                reason: "needs --kubeconfig: the serving certificate is requested from the \
                         API server"
                    .to_owned(),
            })?;
            let hostname = match options.hostname_override {
                Some(_) => node_name.clone(),
                None => host::node_name(None).unwrap_or_else(|_| node_name.clone()),
            };
            let certificate = kubelet_node_agent::rotation::RotatingCertificate::load_serving(
                &options.cert_dir,
                &node_name,
                vec![hostname],
                host_ips.clone(),
            )
            .await
            .map_err(|source| Error::Cluster {
                what: "serverTLSBootstrap",
                source,
            })?;
            server_settings.serving = kubelet_server::ServingCert::Requested(
                kubelet_server::ServingResolver(certificate.clone()),
            );
            cluster.rotate_serving_certificate(certificate, &options.cert_dir, metrics.clone());
        }
        if let kubelet_server::ServingCert::SelfSigned {
            dir,
            node_name,
            ips,
        } = &server_settings.serving
        {
            // Made at start-up, as upstream's InitializeTLS: a kubelet that cannot serve
            // TLS does not start.
            kubelet_node_agent::ensure_self_signed(dir, node_name, ips)
                .await
                .map_err(Error::ServingCertificate)?;
        }
        if let Some(c) = cluster.as_mut() {
            c.size(capacity, allocatable_reservation);
        }
        let configured_driver =
            kubelet_core::CgroupDriver::parse(&cfg.config.cgroup_driver).unwrap_or_default();
        let cgroup_driver =
            container_manager::cgroup_driver(runtime.as_ref(), configured_driver).await?;
        let cgroups = container_manager::node_cgroups(cgroup_driver).await?;
        // /kubepods gets capacity less the reservations when enforcing `pods`; the eviction
        // thresholds stay inside it so evictions come before the cgroup's OOM killer.
        let pods_cgroup_size = if cfg.enforce_pods_allocatable {
            capacity.less(reserved)
        } else {
            capacity
        };
        let reserved_pids = if cfg.enforce_pods_allocatable {
            reserved.pids
        } else {
            0
        };
        // Off the async threads: cgroup and /proc/sys files, and with systemd a wait for
        // each job.
        let (pod_cgroups, enforced, tunables) = {
            let (cgroups, config) = (cgroups.clone(), cfg.config.clone());
            tokio::task::spawn_blocking(move || -> Result<_> {
                let tunables = container_manager::setup_kernel_tunables(
                    Path::new("/proc/sys"),
                    config.protect_kernel_defaults,
                )?;
                let pod_cgroups = container_manager::pod_cgroups(
                    cgroups.as_ref(),
                    &config,
                    &pods_cgroup_size,
                    reserved_pids,
                )?;
                let enforced =
                    container_manager::enforce_reserved_cgroups(cgroups.as_ref(), &config)?;
                Ok((pod_cgroups, enforced, tunables))
            })
            .await
            .map_err(|e| Error::Cgroups {
                what: "making the node's cgroups",
                source: std::io::Error::other(e.to_string()),
            })??
        };
        for changed in tunables {
            tracing::info!("kernel setting {changed}");
        }
        for enforced in enforced {
            tracing::info!("{enforced}");
        }
        let allocatable = capacity.less(allocatable_reservation);
        let user_namespaces = {
            let ids_per_pod = cfg
                .config
                .user_namespaces
                .as_ref()
                .and_then(|u| u.ids_per_pod)
                .filter(|ids| *ids != 0)
                .map_or(Ok(kubelet_pod_manager::userns::IDS_PER_POD), u32::try_from)
                .unwrap_or(u32::MAX);
            let max_pods = cfg.max_pods;
            let pods_dir = options.root_dir.join("pods");
            tokio::task::spawn_blocking(move || {
                let (first, length) = kubelet_pod_manager::userns::kubelet_share(ids_per_pod)
                    .map_err(|e| format!("kubelet mappings: {e}"))?;
                kubelet_pod_manager::userns::UserNamespaces::new(
                    &pods_dir,
                    ids_per_pod,
                    first,
                    length,
                    max_pods,
                )
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|made| made)
            .map_err(|reason| Error::Config {
                field: "userNamespaces",
                reason,
            })?
        };
        let node = NodeContext {
            node_name: node_name.clone(),
            host_ips,
            pod_logs_root: cfg.pod_logs_dir.clone(),
            container_logs_dir: kubelet_pod_manager::spec::DEFAULT_CONTAINER_LOGS_DIR.into(),
            pods_dir: options.root_dir.join("pods"),
            cluster_dns: cfg.cluster_dns.clone(),
            cluster_domain: cfg.cluster_domain.clone(),
            host_resolv_conf,
            resolv_conf_disabled: cfg.resolv_conf.is_none(),
            allocatable,
            capacity,
            thermal_throttle_paths: kubelet_pod_manager::spec::host_thermal_throttle_paths(),
            pod_cgroups: pod_cgroups.clone(),
            cgroup_driver: cgroups.driver(),
            security: NodeSecurity {
                seccomp_default: cfg.config.seccomp_default.unwrap_or(false),
                seccomp_profile_root: options.root_dir.join("seccomp"),
                apparmor_enabled: kubelet_pod_manager::spec::host_apparmor_enabled(),
                sysctls: cfg.sysctls.clone(),
                // Validation refuses them without the gate; checked again so that a
                // configuration built in code cannot apply them without it.
                default_sysctls: if cfg.config.gate("DefaultPodSysctls") {
                    cfg.config.default_pod_sysctls.clone()
                } else {
                    Default::default()
                },
                selinux_enabled: kubelet_pod_manager::spec::host_selinux_enabled(),
            },
            pressure: pressure.clone(),
            container_gc: options.container_gc,
            allocations: kubelet_pod_manager::allocation::Allocations::persisted(&options.root_dir)
                .await,
            user_namespaces,
        };
        let (volume_sources, env_objects): (Arc<dyn VolumeSources>, Arc<dyn EnvObjects>) =
            match &cluster {
                Some(c) => (Arc::new(c.objects.clone()), Arc::new(c.objects.clone())),
                None => (Arc::new(NoVolumeSources), Arc::new(NoEnvObjects)),
            };
        let csi_objects: Arc<dyn kubelet_csi::CsiObjects> = match &cluster {
            Some(c) => Arc::new(c.csi_objects()),
            None => Arc::new(kubelet_csi::NoCsiObjects),
        };
        let csi_drivers = Arc::new(kubelet_csi::Drivers::new(csi_objects));
        let csi = Arc::new(
            kubelet_csi::CsiPlugin::new(
                csi_drivers.clone(),
                volume_sources.clone(),
                &options.root_dir,
                &node_name,
            )
            .with_metrics(metrics.clone()),
        );
        if let Some(c) = cluster.as_mut() {
            c.report_volumes_in_use(csi.clone());
        }
        let mut volumes =
            kubelet_volumes::VolumeManager::new(node.pods_dir.clone(), volume_sources)
                .with_node_allocatable(node.allocatable)
                .with_plugin(csi.clone());
        for plugin in volume_plugins {
            volumes = volumes.with_plugin(plugin);
        }
        let volumes = Arc::new(volumes);
        // KubeletEnsureSecretPulledImages: images on the node are used only by pods that
        // could pull them, per imagePullCredentialsVerificationPolicy.
        let pull_records = if cfg.config.gate("KubeletEnsureSecretPulledImages") {
            let policy = kubelet_pod_manager::pull_records::VerificationPolicy::parse(
                &cfg.config.image_pull_credentials_verification_policy,
                &cfg.config.preloaded_images_verification_allowlist,
            )
            .map_err(|reason| Error::Config {
                field: "imagePullCredentialsVerificationPolicy",
                reason,
            })?;
            Some(Arc::new(
                kubelet_pod_manager::pull_records::PullRecords::new(&options.root_dir, policy),
            ))
        } else {
            None
        };
        let image_credentials: Arc<dyn kubelet_core::ImageCredentials> =
            match (credential_providers, &cluster) {
                (Some(providers), Some(c)) => Arc::new(providers.with_service_accounts(Arc::new(
                    credentials::ClusterServiceAccounts {
                        objects: c.objects.clone(),
                        volumes: volumes.clone(),
                    },
                ))),
                (Some(providers), None) => Arc::new(providers),
                (None, _) => Arc::new(kubelet_core::NoImageCredentials),
            };
        let stats = Arc::new(
            StatsProvider::new(
                runtime.clone(),
                images.clone(),
                StatsPaths {
                    root_dir: options.root_dir.clone(),
                    pods_log_dir: cfg.pod_logs_dir.clone(),
                    ..StatsPaths::default()
                },
                node_name.clone(),
            )
            .with_cgroups(cgroups.as_ref())
            .with_volume_stats_period(cfg.volume_stats_agg_period)
            .with_measured_volumes(csi.clone()),
        );
        let devices = kubelet_device_manager::DeviceManager::open(
            &options.device_plugin_dir,
            metrics.clone(),
        )
        .await
        .map_err(Error::Devices)?;
        if let Some(c) = cluster.as_mut() {
            c.report_extended_resources(devices.clone());
        }
        let ctx = SyncContext {
            runtime: runtime.clone(),
            images,
            node,
            env_objects,
            runtime_name: version.runtime_name.clone(),
            crash_backoff: Mutex::new(crash_loop_backoff(&cfg.config)),
            image_backoff: Mutex::new(Backoff::image_pull()),
            prober: Some(prober.unwrap_or_else(|| Arc::new(KubeletProber::new(runtime.clone())))),
            events: match &cluster {
                Some(c) => Arc::new(c.events.clone()),
                None => Arc::new(NoEvents),
            },
            volumes,
            clock: Arc::new(SystemClock),
            cgroups: Some(cgroups.clone()),
            runtime_classes: match &cluster {
                Some(c) => Arc::new(c.objects.clone()),
                None => Arc::new(NoRuntimeClasses),
            },
            image_credentials,
            pull_records,
            devices: Some(devices.clone()),
            metrics,
            started: std::time::SystemTime::now(),
        };
        let status = status.or_else(|| {
            cluster
                .as_ref()
                .map(|c| Arc::new(c.status.clone()) as Arc<dyn StatusReporter>)
        });
        let pods = Arc::new(match status {
            Some(status) => LocalPods::forwarding_to(status),
            None => LocalPods::new(),
        });
        Ok(Kubelet {
            node_name,
            cfg,
            options,
            ctx,
            pods,
            stats,
            runtime,
            cluster,
            server_settings,
            devices,
            csi_drivers,
            csi,
            cgroups,
            qos_cgroups: pod_cgroups.is_some(),
            set_verbosity,
        })
    }
}

/// A kubelet ready to run; see the crate documentation.
pub struct Kubelet {
    node_name: String,
    cfg: Settings,
    options: NodeOptions,
    ctx: SyncContext,
    pods: Arc<LocalPods>,
    stats: Arc<StatsProvider>,
    runtime: Arc<dyn Runtime>,
    cluster: Option<Cluster>,
    server_settings: kubelet_server::Settings,
    devices: Arc<kubelet_device_manager::DeviceManager>,
    /// The registered CSI drivers, the plugin manager's handler of `CSIPlugin`.
    csi_drivers: Arc<kubelet_csi::Drivers>,
    /// The CSI volume plugin, whose volumes are measured every `volumeStatsAggPeriod`.
    csi: Arc<kubelet_csi::CsiPlugin>,
    cgroups: Arc<dyn CgroupManager>,
    /// Whether the QoS tiers are the kubelet's to keep (`cgroupsPerQOS`).
    qos_cgroups: bool,
    set_verbosity: Option<kubelet_server::VerbositySetter>,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl Kubelet {
    /// A builder for a kubelet with `settings`.
    pub fn builder(settings: Settings) -> KubeletBuilder {
        KubeletBuilder {
            settings,
            node: NodeOptions {
                hostname_override: None,
                node_ips: None,
                node_labels: Vec::new(),
                root_dir: PathBuf::from(DEFAULT_ROOT_DIR),
                kubeconfig: None,
                bootstrap_kubeconfig: None,
                cert_dir: Path::new(DEFAULT_ROOT_DIR).join("pki"),
                device_plugin_dir: PathBuf::from(kubelet_device_manager::DEVICE_PLUGIN_DIR),
                runtime_cgroups: None,
                container_gc: kubelet_pod_manager::ContainerGcPolicy::default(),
            },
            runtime: None,
            prober: None,
            status: None,
            volume_plugins: Vec::new(),
            set_verbosity: None,
            credential_provider: None,
            metrics: Arc::new(KubeletMetrics::new()),
        }
    }

    /// The node's name, as registered.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Runs the kubelet until `stop` resolves (`Ok`), every pod source has closed
    /// (`Ok`), or a part it cannot run without fails (the error names it). Pods keep
    /// running when it returns, and when the future is dropped: the next kubelet adopts
    /// them.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<()> {
        let Self {
            node_name,
            cfg,
            options,
            ctx,
            pods,
            stats,
            runtime,
            mut cluster,
            server_settings,
            devices,
            csi_drivers,
            csi,
            cgroups,
            qos_cgroups,
            set_verbosity,
        } = self;
        let mut tasks = Supervisor::default();
        tasks.spawn(
            "system cgroups",
            Role::Essential,
            container_manager::keep_system_cgroups(
                cgroups.clone(),
                container_manager::Config {
                    kubelet: non_empty(&cfg.config.kubelet_cgroups),
                    system: non_empty(&cfg.config.system_cgroups),
                    runtime: options.runtime_cgroups.clone(),
                },
                stats.clone(),
            ),
        );
        let metrics = ctx.metrics.clone();
        metrics.node_name.set(&[&node_name], 1.0);

        let (updates, updates_rx) = mpsc::channel(16);
        let source_kinds = spawn_sources(
            &mut tasks,
            &cfg,
            &node_name,
            cluster.as_ref(),
            &ctx.node.allocations,
            &updates,
            &metrics,
        )?;
        drop(updates);
        if qos_cgroups {
            tasks.spawn(
                "QoS cgroups",
                Role::Essential,
                container_manager::update_qos_cgroups(cgroups, pods.clone()),
            );
        }
        let pressure = ctx.node.pressure.clone();
        let events = ctx.events.clone();
        let images = ctx.images.clone();
        let clock = ctx.clock.clone();
        let manager = PodManager::new(
            Arc::new(ctx),
            pods.clone(),
            ManagerConfig {
                resync_period: cfg.sync_frequency,
                sources: source_kinds,
                log_rotation: Some(LogRotation {
                    max_size: cfg.container_log_max_size,
                    max_files: cfg.container_log_max_files,
                    interval: cfg.container_log_monitor_interval,
                }),
                ..ManagerConfig::default()
            },
        );
        if let Some(c) = &cluster {
            c.objects.poke_pods_on_change(manager.poker());
        }
        let node_shutdown = manager.node_shutdown();
        for (name, role, sender) in cluster
            .as_mut()
            .map(Cluster::take_senders)
            .unwrap_or_default()
        {
            tasks.spawn(name, role, sender);
        }
        if let Some(rotation) = cluster
            .as_mut()
            .and_then(|c| c.take_rotation(metrics.clone()))
        {
            tasks.spawn_fallible("client certificate rotation", Role::Essential, async move {
                rotation.await.map_err(|source| Error::Cluster {
                    what: "rotateCertificates",
                    source,
                })
            });
        }
        if let Some(rotation) = cluster.as_mut().and_then(Cluster::take_serving_rotation) {
            tasks.spawn_fallible(
                "serving certificate rotation",
                Role::Essential,
                async move {
                    rotation.await.map_err(|source| Error::Cluster {
                        what: "serverTLSBootstrap",
                        source,
                    })
                },
            );
        }
        if let Some(agent) = cluster.as_mut().and_then(Cluster::take_node_agent) {
            tasks.spawn(
                "node status",
                Role::Essential,
                agent
                    .with_shutdown(node_shutdown.clone())
                    .with_pressure(pressure.clone())
                    .with_clock(clock.clone())
                    .run(),
            );
        }
        let image_gc = Arc::new(
            ImageGc::new(
                images.clone(),
                Arc::new(RuntimeContainers(runtime.clone())),
                Arc::new(RuntimeImageFs::new(images)),
                events.clone(),
                cfg.image_gc,
            )
            .with_metrics(metrics.clone()),
        );
        tasks.spawn(
            "image garbage collection",
            Role::Essential,
            image_gc.clone().run(),
        );
        tasks.spawn(
            "eviction manager",
            Role::Essential,
            EvictionManager::new(
                cfg.eviction.clone(),
                pressure,
                stats.clone(),
                Arc::new(manager.pod_killer()),
                events,
            )
            .with_metrics(metrics.clone())
            .with_reclaimer(Arc::new(DiskReclaim {
                containers: manager.container_gc(),
                images: image_gc,
            }))
            .run(),
        );
        let periods = node_shutdown_periods(&cfg);
        if !periods.is_empty() {
            tasks.spawn(
                "node shutdown",
                Role::MayEnd,
                ShutdownManager::new(periods, node_shutdown).run(),
            );
        }
        let healthz = {
            let (monitor, clock, resync) = (
                manager.sync_loop_monitor(),
                clock.clone(),
                cfg.sync_frequency,
            );
            kubelet_server::Healthz::kubelet(
                Arc::new(move || monitor.check(clock.now(), resync)),
                metrics.clone(),
            )
        };
        {
            let socket = options
                .root_dir
                .join("pod-resources")
                .join(kubelet_pod_resources::SOCKET_NAME);
            let provider = Arc::new(ManagedPods {
                pods: manager.pod_killer(),
                devices: devices.clone(),
            });
            devices.set_active_pods(provider.clone());
            let registration = devices.clone();
            tasks.spawn_fallible("device plugin registration", Role::Essential, async move {
                registration.serve().await.map_err(Error::Devices)
            });
            let plugins = kubelet_plugin_manager::PluginManager::new(
                options
                    .root_dir
                    .join(kubelet_plugin_manager::PLUGINS_REGISTRY_DIR),
            )
            .with_handler(kubelet_plugin_manager::CSI_PLUGIN, csi_drivers)
            .with_handler(kubelet_plugin_manager::DEVICE_PLUGIN, devices.clone());
            tasks.spawn_fallible("plugin registration", Role::Essential, async move {
                plugins.run().await.map_err(Error::Plugins)
            });
            if let Some(period) = cfg.volume_stats_agg_period {
                tasks.spawn("CSI volume stats", Role::Essential, async move {
                    csi.run_volume_stats(period).await;
                });
            }
            let pod_resources_metrics = metrics.clone();
            tasks.spawn_fallible("podresources API", Role::Essential, async move {
                let service = kubelet_pod_resources::PodResourcesService::new(provider)
                    .with_metrics(pod_resources_metrics);
                kubelet_pod_resources::serve(&socket, service)
                    .await
                    .map_err(Error::from)
            });
        }
        tasks.spawn_fallible("pod manager", Role::Main, async move {
            manager.run(updates_rx).await.map_err(|e| Error::TaskEnded {
                task: "pod manager",
                how: format!("failed: {e}"),
            })
        });

        let endpoints = kubelet_server::Endpoints {
            pods,
            configz: Arc::new(configz_json(&cfg).to_string()),
            runtime,
            pod_logs_dir: cfg.pod_logs_dir.clone(),
            stats,
            node_logs_dir: PathBuf::from(NODE_LOGS_DIR),
            stream_idle_timeout: cfg
                .config
                .streaming_connection_idle_timeout
                .to_std()
                .filter(|d| !d.is_zero()),
            handlers: kubelet_server::Handlers::from_config(&cfg.config),
            set_verbosity,
            healthz,
            metrics: metrics.clone(),
        };
        if let Some(port) = cfg.read_only_port {
            tasks.spawn_fallible(
                "read-only port",
                Role::Essential,
                server_task(kubelet_server::serve_read_only(
                    SocketAddr::new(cfg.address, port),
                    endpoints.clone(),
                )),
            );
        }
        if let Some(address) = server_settings.healthz {
            tasks.spawn_fallible(
                "healthz server",
                Role::Essential,
                server_task(kubelet_server::serve_healthz(address, metrics.clone())),
            );
        }
        if server_settings.address.is_some() {
            let client = cluster.as_ref().map(Cluster::client);
            tasks.spawn_fallible(
                "kubelet API",
                Role::Essential,
                server_task(kubelet_server::serve_api(
                    server_settings,
                    endpoints,
                    client,
                )),
            );
        }

        let outcome = tokio::select! {
            () = stop => Ok(()),
            ended = tasks.wait() => ended,
        };
        // Dropping the supervisor stops every task; the pods keep running.
        tracing::info!("stopping; pods keep running");
        drop(tasks);
        outcome
    }
}

/// The eviction manager's disk reclaim, in upstream's order: the containers of finished
/// pods (which may free their images), then unused images.
struct DiskReclaim {
    containers: kubelet_pod_manager::ContainerGc,
    images: Arc<ImageGc>,
}

#[async_trait::async_trait]
impl NodeReclaimer for DiskReclaim {
    async fn reclaim_disk(&self) {
        self.containers.delete_all_unused_containers().await;
        if let Err(e) = self.images.delete_unused_images().await {
            tracing::warn!(error = %e, "deleting unused images to reclaim disk");
        }
    }
}

/// The node's capacity: CPUs, memory, and the size of the filesystem holding the root
/// directory (its nearest existing ancestor before the directory is made).
fn node_capacity(root_dir: &Path) -> NodeResources {
    let probe = root_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    NodeResources {
        milli_cpu: host::milli_cpus(),
        memory: host::memory_bytes(),
        ephemeral_storage: kubelet_stats::fs::fs_info(probe).map_or(0, |info| info.capacity),
        pids: 0,
    }
}

/// Starts the configured pod sources; returns their kinds, for the pod manager to know
/// when all have reported.
fn spawn_sources(
    tasks: &mut Supervisor,
    cfg: &Settings,
    node_name: &str,
    cluster: Option<&Cluster>,
    allocations: &kubelet_pod_manager::allocation::Allocations,
    updates: &mpsc::Sender<SourceUpdate>,
    metrics: &Arc<KubeletMetrics>,
) -> Result<Vec<PodSource>> {
    let mut kinds = Vec::new();
    if let Some(path) = &cfg.static_pod_path {
        let source = FileSource::new(path.clone(), node_name.to_owned())
            .with_check_frequency(cfg.file_check_frequency);
        tasks.spawn(
            "static pod directory",
            Role::MayEnd,
            source.run(updates.clone()),
        );
        kinds.push(PodSource::File);
    }
    if let Some(url) = &cfg.static_pod_url {
        let pod_source = |source| Error::PodSource {
            what: "staticPodURL (--manifest-url)".to_owned(),
            source,
        };
        let mut source = UrlSource::new(url.clone(), node_name.to_owned())
            .map_err(pod_source)?
            .with_check_frequency(cfg.http_check_frequency);
        for (name, value) in &cfg.static_pod_url_headers {
            source = source
                .with_header(name, value)
                .map_err(|source| Error::PodSource {
                    what: format!("staticPodURLHeader (--manifest-url-header) {name:?}"),
                    source,
                })?;
        }
        tasks.spawn("static pod URL", Role::MayEnd, source.run(updates.clone()));
        kinds.push(PodSource::Http);
    }
    if let Some(c) = cluster {
        tasks.spawn(
            "API pod source",
            Role::MayEnd,
            c.pod_source(allocations.clone(), metrics.clone())
                .run(updates.clone()),
        );
        kinds.push(PodSource::Api);
    }
    if kinds.is_empty() {
        tracing::warn!(
            "no pod source configured (--kubeconfig, staticPodPath, staticPodURL): no pods will run"
        );
    }
    Ok(kinds)
}

/// The classes of graceful node shutdown from `shutdownGracePeriod`,
/// `shutdownGracePeriodCriticalPods` and `shutdownGracePeriodByPodPriority`.
fn node_shutdown_periods(cfg: &Settings) -> Vec<ShutdownPeriod> {
    let c = &cfg.config;
    shutdown_periods(
        c.shutdown_grace_period.to_std().unwrap_or_default(),
        c.shutdown_grace_period_critical_pods
            .to_std()
            .unwrap_or_default(),
        &c.shutdown_grace_period_by_pod_priority
            .iter()
            .map(|p| ShutdownPeriod {
                priority: p.priority,
                grace_seconds: p.shutdown_grace_period_seconds,
            })
            .collect::<Vec<_>>(),
    )
}

/// The pod manager and the device manager as the PodResources API and the device
/// manager's pruning see them.
struct ManagedPods {
    pods: kubelet_pod_manager::kill::PodKiller,
    devices: Arc<kubelet_device_manager::DeviceManager>,
}

/// Device ids by resource as the PodResources API lists them.
fn pod_resources_devices(
    devices: Vec<(String, Vec<String>)>,
) -> Vec<kubelet_pod_resources::proto::v1::ContainerDevices> {
    devices
        .into_iter()
        .map(
            |(resource_name, device_ids)| kubelet_pod_resources::proto::v1::ContainerDevices {
                resource_name,
                device_ids,
                topology: None,
            },
        )
        .collect()
}

#[async_trait::async_trait]
impl kubelet_pod_resources::PodResourcesProvider for ManagedPods {
    async fn active_pods(&self) -> Vec<kubelet_core::k8s_openapi::api::core::v1::Pod> {
        self.pods.active_pods().await
    }

    async fn pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<kubelet_core::k8s_openapi::api::core::v1::Pod> {
        self.pods.wanted_pods().await.into_iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.metadata.name.as_deref() == Some(name)
        })
    }

    fn container_devices(
        &self,
        pod_uid: &str,
        container: &str,
    ) -> Vec<kubelet_pod_resources::proto::v1::ContainerDevices> {
        pod_resources_devices(self.devices.assigned(pod_uid, container))
    }

    fn allocatable_devices(&self) -> Vec<kubelet_pod_resources::proto::v1::ContainerDevices> {
        pod_resources_devices(self.devices.devices())
    }
}

#[async_trait::async_trait]
impl kubelet_device_manager::ActivePods for ManagedPods {
    async fn active_pod_uids(&self) -> std::collections::HashSet<String> {
        // Wanted pods, finished ones too, and pods being removed: a pod that may run
        // again, or whose containers may still run, keeps its devices.
        self.pods
            .wanted_pods()
            .await
            .into_iter()
            .filter_map(|p| p.metadata.uid)
            .collect()
    }
}

/// A server's future as a supervised task.
async fn server_task(serve: impl Future<Output = kubelet_server::Result<()>>) -> Result<()> {
    serve.await.map_err(Error::from)
}

/// `s`, unless empty (an unset configuration string).
pub(crate) fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Waits until the runtime answers, logging why it does not; a runtime that is down at
/// start is a reason to wait, not to exit.
async fn wait_for_runtime(runtime: &dyn RuntimeHealth, endpoint: &str) -> RuntimeVersion {
    let mut delay = Duration::from_millis(500);
    loop {
        match runtime.version().await {
            Ok(version) => return version,
            Err(e) => {
                tracing::error!(endpoint, error = %e, "container runtime not available, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The futures a caller spawns must be `Send`.
    fn run_is_send(kubelet: Kubelet) {
        fn is_send<T: Send>(_: T) {}
        is_send(kubelet.run(async {}));
    }

    fn build_is_send(builder: KubeletBuilder) {
        fn is_send<T: Send>(_: T) {}
        is_send(builder.build());
    }

    #[test]
    fn public_futures_are_send() {
        let _ = (
            run_is_send as fn(Kubelet),
            build_is_send as fn(KubeletBuilder),
        );
    }

    fn default_settings() -> Settings {
        Settings::new(
            kubelet_core::config::KubeletConfiguration::defaulted(),
            "test".into(),
            &kubelet_core::config::HostFacts::default(),
        )
        .expect("valid")
    }

    #[tokio::test]
    async fn a_cluster_kubelet_takes_no_second_status_reporter() {
        let settings = default_settings();
        let err = Kubelet::builder(settings)
            .kubeconfig("/etc/kubernetes/kubelet.conf")
            .status_reporter(Arc::new(LocalPods::new()))
            .build()
            .await
            .expect_err("two status destinations");
        assert!(err.to_string().starts_with("--kubeconfig: "), "{err}");
    }

    #[tokio::test]
    async fn a_kubelet_needs_a_runtime() {
        let settings = default_settings();
        let err = Kubelet::builder(settings)
            .build()
            .await
            .expect_err("no runtime");
        assert!(matches!(err, Error::NoRuntime), "{err}");
    }
}
