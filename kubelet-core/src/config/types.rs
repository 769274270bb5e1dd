//! `KubeletConfiguration` of `kubelet.config.k8s.io/v1beta1` with upstream's field names,
//! and upstream's defaulting (`SetDefaults_KubeletConfiguration`).
//!
//! Fields mirror the Go type: a Go pointer is an `Option`, a Go value field with
//! `omitempty` is a plain value left out of the JSON when zero, and a struct (a
//! `metav1.Duration`, `authentication`, ...) is always written, as `encoding/json` does.
//! That keeps `/configz` and the drop-in merge (a JSON merge patch over the marshalled
//! configuration) the same as upstream's. Every struct refuses unknown fields.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::duration::GoDuration;

/// The `apiVersion` a configuration file must carry.
pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// The `kind` a configuration file must carry.
pub const KIND: &str = "KubeletConfiguration";

/// Upstream's `eviction.DefaultEvictionHard` (Linux), used when `evictionHard` is unset.
pub const DEFAULT_EVICTION_HARD: [(&str, &str); 5] = [
    ("imagefs.available", "15%"),
    ("imagefs.inodesFree", "5%"),
    ("memory.available", "100Mi"),
    ("nodefs.available", "10%"),
    ("nodefs.inodesFree", "5%"),
];

/// Upstream's `ports.KubeletReadOnlyPort`, the `--read-only-port` flag's default.
pub const LEGACY_READ_ONLY_PORT: i32 = 10255;

/// Address of the kubelet API (and of the read-only port, when on) when `address` is
/// unset: upstream's `0.0.0.0`.
pub const DEFAULT_ADDRESS: &str = "0.0.0.0";

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Go's `omitempty` on a map or slice that may be nil or empty.
fn is_none_or_empty<T: Default + PartialEq>(value: &Option<T>) -> bool {
    value.as_ref().is_none_or(is_default)
}

/// A resource quantity as the configuration writes it (`"100Mi"`, `"0"`); like
/// upstream's `resource.Quantity` it is also accepted as a JSON number. Kept as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantityValue(pub String);

impl QuantityValue {
    /// The parsed quantity.
    pub fn parse(&self) -> Result<crate::Quantity, crate::QuantityError> {
        self.0.parse()
    }
}

impl fmt::Display for QuantityValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for QuantityValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for QuantityValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = QuantityValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as \"100Mi\" or 0")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<QuantityValue, E> {
                let value = QuantityValue(text.to_owned());
                value.parse().map_err(E::custom)?;
                Ok(value)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<QuantityValue, E> {
                Ok(QuantityValue(n.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<QuantityValue, E> {
                Ok(QuantityValue(n.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<QuantityValue, E> {
                self.visit_str(&n.to_string())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `logging.flushFrequency`: a duration string, or (for old files) an integer of
/// nanoseconds; written back the way it was read, as upstream's `TimeOrMetaDuration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushFrequency {
    /// The duration.
    pub duration: GoDuration,
    /// Whether it is written as a string (`"5s"`) rather than nanoseconds.
    pub as_string: bool,
}

impl Serialize for FlushFrequency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.as_string {
            self.duration.serialize(serializer)
        } else {
            serializer.serialize_i64(self.duration.as_nanos())
        }
    }
}

impl<'de> Deserialize<'de> for FlushFrequency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FlushFrequency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"5s\" or an integer of nanoseconds")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<FlushFrequency, E> {
                Ok(FlushFrequency {
                    duration: text.parse().map_err(E::custom)?,
                    as_string: true,
                })
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<FlushFrequency, E> {
                Ok(FlushFrequency {
                    duration: GoDuration::from_nanos(n),
                    as_string: false,
                })
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<FlushFrequency, E> {
                let n = i64::try_from(n).map_err(|_| E::custom("duration out of range"))?;
                self.visit_i64(n)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The kubelet's configuration file, `kubelet.config.k8s.io/v1beta1`
/// `KubeletConfiguration`. Fields this kubelet does not act on yet are accepted with
/// upstream's names and defaults, so upstream configuration files load unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletConfiguration {
    /// `kind`: `KubeletConfiguration`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: String,
    /// `apiVersion`: `kubelet.config.k8s.io/v1beta1`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub api_version: String,
    /// Whether the kubelet's secured server runs (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_server: Option<bool>,
    /// Directory (or file) of static pod manifests (`--pod-manifest-path`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub static_pod_path: String,
    /// Root of the pod log directories (default `/var/log/pods`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub pod_logs_dir: String,
    /// How often each pod is synced without an event (default 1m).
    #[serde(default)]
    pub sync_frequency: GoDuration,
    /// How often the static pod path is re-read (default 20s).
    #[serde(default)]
    pub file_check_frequency: GoDuration,
    /// How often the static pod URL is re-read (default 20s).
    #[serde(default, rename = "httpCheckFrequency")]
    pub http_check_frequency: GoDuration,
    /// URL of static pod manifests (`--manifest-url`).
    #[serde(default, rename = "staticPodURL", skip_serializing_if = "is_default")]
    pub static_pod_url: String,
    /// HTTP headers of static pod URL requests (`--manifest-url-header`).
    #[serde(
        default,
        rename = "staticPodURLHeader",
        skip_serializing_if = "is_default"
    )]
    pub static_pod_url_header: BTreeMap<String, Vec<String>>,
    /// Address the kubelet serves on (default `0.0.0.0`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub address: String,
    /// Port of the kubelet's secured server (default 10250).
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: i32,
    /// Port of the unauthenticated read-only server; 0 disables it (default 0).
    #[serde(default, skip_serializing_if = "is_default")]
    pub read_only_port: i32,
    /// Serving certificate file.
    #[serde(default, rename = "tlsCertFile", skip_serializing_if = "is_default")]
    pub tls_cert_file: String,
    /// Serving key file.
    #[serde(
        default,
        rename = "tlsPrivateKeyFile",
        skip_serializing_if = "is_default"
    )]
    pub tls_private_key_file: String,
    /// Allowed TLS cipher suites.
    #[serde(
        default,
        rename = "tlsCipherSuites",
        skip_serializing_if = "is_default"
    )]
    pub tls_cipher_suites: Vec<String>,
    /// TLS curve preferences.
    #[serde(
        default,
        rename = "tlsCurvePreferences",
        skip_serializing_if = "is_default"
    )]
    pub tls_curve_preferences: Vec<i32>,
    /// Minimum TLS version.
    #[serde(default, rename = "tlsMinVersion", skip_serializing_if = "is_default")]
    pub tls_min_version: String,
    /// Whether client certificates are rotated.
    #[serde(default, skip_serializing_if = "is_default")]
    pub rotate_certificates: bool,
    /// Whether the serving certificate is requested from the API server.
    #[serde(
        default,
        rename = "serverTLSBootstrap",
        skip_serializing_if = "is_default"
    )]
    pub server_tls_bootstrap: bool,
    /// Authentication of the secured server.
    #[serde(default)]
    pub authentication: KubeletAuthentication,
    /// Authorization of the secured server.
    #[serde(default)]
    pub authorization: KubeletAuthorization,
    /// Image pull QPS limit (default 5).
    #[serde(
        default,
        rename = "registryPullQPS",
        skip_serializing_if = "Option::is_none"
    )]
    pub registry_pull_qps: Option<i32>,
    /// Image pull burst (default 10).
    #[serde(default, skip_serializing_if = "is_default")]
    pub registry_burst: i32,
    /// Credential verification of pulled images (default `NeverVerifyPreloadedImages`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub image_pull_credentials_verification_policy: String,
    /// Images exempt from credential verification.
    #[serde(default, skip_serializing_if = "is_default")]
    pub preloaded_images_verification_allowlist: Vec<String>,
    /// Event QPS limit (default 50).
    #[serde(
        default,
        rename = "eventRecordQPS",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_record_qps: Option<i32>,
    /// Event burst (default 100).
    #[serde(default, skip_serializing_if = "is_default")]
    pub event_burst: i32,
    /// Whether logs and exec are served (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_debugging_handlers: Option<bool>,
    /// Lock contention profiling.
    #[serde(default, skip_serializing_if = "is_default")]
    pub enable_contention_profiling: bool,
    /// Port of the localhost healthz endpoint (default 10248).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthz_port: Option<i32>,
    /// Address of the healthz endpoint (default `127.0.0.1`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub healthz_bind_address: String,
    /// The kubelet process's oom_score_adj (default -999).
    #[serde(
        default,
        rename = "oomScoreAdj",
        skip_serializing_if = "Option::is_none"
    )]
    pub oom_score_adj: Option<i32>,
    /// The cluster's DNS domain.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cluster_domain: String,
    /// DNS server IPs for pods with dnsPolicy ClusterFirst.
    #[serde(default, rename = "clusterDNS", skip_serializing_if = "is_default")]
    pub cluster_dns: Vec<String>,
    /// Idle timeout of streaming connections (default 4h).
    #[serde(default)]
    pub streaming_connection_idle_timeout: GoDuration,
    /// How often the node status is computed (default 10s).
    #[serde(default)]
    pub node_status_update_frequency: GoDuration,
    /// How often an unchanged node status is posted (default 5m).
    #[serde(default)]
    pub node_status_report_frequency: GoDuration,
    /// Duration of the node Lease (default 40).
    #[serde(default, skip_serializing_if = "is_default")]
    pub node_lease_duration_seconds: i32,
    /// Minimum age of an unused image before garbage collection (default 2m).
    #[serde(default, rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: GoDuration,
    /// Maximum age of an unused image (default 0: none).
    #[serde(default, rename = "imageMaximumGCAge")]
    pub image_maximum_gc_age: GoDuration,
    /// Disk usage above which image GC runs (default 85).
    #[serde(
        default,
        rename = "imageGCHighThresholdPercent",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_gc_high_threshold_percent: Option<i32>,
    /// Disk usage image GC frees down to (default 80).
    #[serde(
        default,
        rename = "imageGCLowThresholdPercent",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_gc_low_threshold_percent: Option<i32>,
    /// How often volume usage is computed (default 1m).
    #[serde(default)]
    pub volume_stats_agg_period: GoDuration,
    /// Cgroup of the kubelet.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kubelet_cgroups: String,
    /// Cgroup of non-kernel processes not in a container.
    #[serde(default, skip_serializing_if = "is_default")]
    pub system_cgroups: String,
    /// Root cgroup of pods.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cgroup_root: String,
    /// Whether QoS cgroups are made (default true).
    #[serde(
        default,
        rename = "cgroupsPerQOS",
        skip_serializing_if = "Option::is_none"
    )]
    pub cgroups_per_qos: Option<bool>,
    /// `cgroupfs` or `systemd` (default `cgroupfs`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub cgroup_driver: String,
    /// CPU manager policy (default `none`).
    #[serde(
        default,
        rename = "cpuManagerPolicy",
        skip_serializing_if = "is_default"
    )]
    pub cpu_manager_policy: String,
    /// Whether an OOM kills a single process rather than the whole container.
    #[serde(
        default,
        rename = "singleProcessOOMKill",
        skip_serializing_if = "Option::is_none"
    )]
    pub single_process_oom_kill: Option<bool>,
    /// CPU manager policy options.
    #[serde(
        default,
        rename = "cpuManagerPolicyOptions",
        skip_serializing_if = "is_default"
    )]
    pub cpu_manager_policy_options: BTreeMap<String, String>,
    /// CPU manager reconcile period (default 10s).
    #[serde(default, rename = "cpuManagerReconcilePeriod")]
    pub cpu_manager_reconcile_period: GoDuration,
    /// Memory manager policy (default `None`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub memory_manager_policy: String,
    /// Topology manager policy (default `none`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub topology_manager_policy: String,
    /// Topology manager scope (default `container`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub topology_manager_scope: String,
    /// Topology manager policy options.
    #[serde(default, skip_serializing_if = "is_default")]
    pub topology_manager_policy_options: BTreeMap<String, String>,
    /// Memory reserved per QoS tier, in percent.
    #[serde(default, rename = "qosReserved", skip_serializing_if = "is_default")]
    pub qos_reserved: BTreeMap<String, String>,
    /// Timeout of runtime requests except long-running ones (default 2m).
    #[serde(default)]
    pub runtime_request_timeout: GoDuration,
    /// Hairpin mode (default `promiscuous-bridge`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub hairpin_mode: String,
    /// Most pods this node runs (default 110).
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_pods: i32,
    /// Pod CIDR of standalone mode.
    #[serde(default, rename = "podCIDR", skip_serializing_if = "is_default")]
    pub pod_cidr: String,
    /// Most PIDs in a pod (default -1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_pids_limit: Option<i64>,
    /// Resolver configuration pods with dnsPolicy Default inherit; `""` disables it
    /// (default `/etc/resolv.conf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<String>,
    /// Run once and exit (deprecated; rejected).
    #[serde(default, skip_serializing_if = "is_default")]
    pub run_once: bool,
    /// Whether CPU limits are enforced with CFS quota (default true).
    #[serde(
        default,
        rename = "cpuCFSQuota",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_cfs_quota: Option<bool>,
    /// CFS quota period (default 100ms).
    #[serde(
        default,
        rename = "cpuCFSQuotaPeriod",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_cfs_quota_period: Option<GoDuration>,
    /// Most images reported in the node status (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_status_max_images: Option<i32>,
    /// Open file limit of the kubelet (default 1000000).
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_open_files: i64,
    /// Content type of API requests (default protobuf).
    #[serde(default, skip_serializing_if = "is_default")]
    pub content_type: String,
    /// API request QPS (default 50).
    #[serde(
        default,
        rename = "kubeAPIQPS",
        skip_serializing_if = "Option::is_none"
    )]
    pub kube_api_qps: Option<i32>,
    /// API request burst (default 100).
    #[serde(default, rename = "kubeAPIBurst", skip_serializing_if = "is_default")]
    pub kube_api_burst: i32,
    /// Whether images are pulled one at a time (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serialize_image_pulls: Option<bool>,
    /// Most parallel image pulls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_image_pulls: Option<i32>,
    /// Hard eviction thresholds (default in a configuration file: upstream's
    /// `DefaultEvictionHard`; an explicit `{}` turns them off).
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub eviction_hard: Option<BTreeMap<String, String>>,
    /// Soft eviction thresholds.
    #[serde(default, skip_serializing_if = "is_default")]
    pub eviction_soft: BTreeMap<String, String>,
    /// Grace periods of the soft thresholds.
    #[serde(default, skip_serializing_if = "is_default")]
    pub eviction_soft_grace_period: BTreeMap<String, String>,
    /// How long a pressure condition is held (default 5m).
    #[serde(default)]
    pub eviction_pressure_transition_period: GoDuration,
    /// Longest grace period of a pod evicted by a soft threshold.
    #[serde(default, skip_serializing_if = "is_default")]
    pub eviction_max_pod_grace_period: i32,
    /// Least reclaimed when evicting.
    #[serde(default, skip_serializing_if = "is_default")]
    pub eviction_minimum_reclaim: BTreeMap<String, String>,
    /// Whether unset `evictionHard` keys take the defaults (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_default_eviction_settings: Option<bool>,
    /// Most pods per core.
    #[serde(default, skip_serializing_if = "is_default")]
    pub pods_per_core: i32,
    /// Whether the attach/detach controller manages volumes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_controller_attach_detach: Option<bool>,
    /// Fail when kernel tunables differ from the kubelet's defaults.
    #[serde(default, skip_serializing_if = "is_default")]
    pub protect_kernel_defaults: bool,
    /// Whether the iptables utility chains are made (default true).
    #[serde(
        default,
        rename = "makeIPTablesUtilChains",
        skip_serializing_if = "Option::is_none"
    )]
    pub make_ip_tables_util_chains: Option<bool>,
    /// The SNAT mark bit (default 14).
    #[serde(
        default,
        rename = "iptablesMasqueradeBit",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_masquerade_bit: Option<i32>,
    /// The drop mark bit (default 15).
    #[serde(
        default,
        rename = "iptablesDropBit",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_drop_bit: Option<i32>,
    /// Feature gates by name.
    #[serde(default, skip_serializing_if = "is_default")]
    pub feature_gates: BTreeMap<String, bool>,
    /// Fail to start when swap is on (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_swap_on: Option<bool>,
    /// Swap use of workloads.
    #[serde(default)]
    pub memory_swap: MemorySwapConfiguration,
    /// Largest container log before rotation (default `10Mi`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub container_log_max_size: String,
    /// Most log files per container (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_log_max_files: Option<i32>,
    /// Concurrent log rotation workers (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_log_max_workers: Option<i32>,
    /// How often container logs are checked for rotation (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_log_monitor_interval: Option<GoDuration>,
    /// How ConfigMap and Secret changes are noticed (default `Watch`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub config_map_and_secret_change_detection_strategy: String,
    /// Resources reserved for the system.
    #[serde(default, skip_serializing_if = "is_default")]
    pub system_reserved: BTreeMap<String, String>,
    /// Resources reserved for Kubernetes daemons.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kube_reserved: BTreeMap<String, String>,
    /// CPUs reserved for the system.
    #[serde(
        default,
        rename = "reservedSystemCPUs",
        skip_serializing_if = "is_default"
    )]
    pub reserved_system_cpus: String,
    /// Hidden metrics to show.
    #[serde(default, skip_serializing_if = "is_default")]
    pub show_hidden_metrics_for_version: String,
    /// Cgroup of `systemReserved`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub system_reserved_cgroup: String,
    /// Cgroup of `kubeReserved`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kube_reserved_cgroup: String,
    /// Node allocatable enforcement levels (default `["pods"]`; an explicit `[]` is
    /// kept).
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub enforce_node_allocatable: Option<Vec<String>>,
    /// Unsafe sysctls pods may use.
    #[serde(default, skip_serializing_if = "is_default")]
    pub allowed_unsafe_sysctls: Vec<String>,
    /// Sysctls every pod gets.
    #[serde(default, skip_serializing_if = "is_default")]
    pub default_pod_sysctls: BTreeMap<String, String>,
    /// Flex volume plugin directory.
    #[serde(default, skip_serializing_if = "is_default")]
    pub volume_plugin_dir: String,
    /// The node's provider ID.
    #[serde(default, rename = "providerID", skip_serializing_if = "is_default")]
    pub provider_id: String,
    /// Use kernel memcg notifications for eviction.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kernel_memcg_notification: bool,
    /// Logging options.
    #[serde(default)]
    pub logging: LoggingConfiguration,
    /// Whether `/logs` is served (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_system_log_handler: Option<bool>,
    /// Whether `/logs` takes queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_system_log_query: Option<bool>,
    /// Graceful node shutdown delay.
    #[serde(default)]
    pub shutdown_grace_period: GoDuration,
    /// Part of the shutdown delay kept for critical pods.
    #[serde(default)]
    pub shutdown_grace_period_critical_pods: GoDuration,
    /// Shutdown grace periods per pod priority.
    #[serde(default, skip_serializing_if = "is_default")]
    pub shutdown_grace_period_by_pod_priority: Vec<ShutdownGracePeriodByPodPriority>,
    /// CrashLoopBackOff options.
    #[serde(default)]
    pub crash_loop_back_off: CrashLoopBackOffConfig,
    /// Memory reserved per NUMA node.
    #[serde(default, skip_serializing_if = "is_default")]
    pub reserved_memory: Vec<MemoryReservation>,
    /// Whether `/debug/pprof` is served (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_profiling_handler: Option<bool>,
    /// Whether `/debug/flags/v` is served (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_debug_flags_handler: Option<bool>,
    /// Whether `RuntimeDefault` is every container's seccomp profile (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_default: Option<bool>,
    /// MemoryQoS throttling factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_throttling_factor: Option<f64>,
    /// MemoryQoS reservation policy (default `None`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub memory_reservation_policy: String,
    /// Taints the node registers with.
    #[serde(default, skip_serializing_if = "is_default")]
    pub register_with_taints: Vec<ConfigTaint>,
    /// Whether the node registers itself (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_node: Option<bool>,
    /// OpenTelemetry tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfiguration>,
    /// Local ephemeral storage isolation (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_storage_capacity_isolation: Option<bool>,
    /// The container runtime's endpoint (default
    /// `unix:///run/containerd/containerd.sock`).
    #[serde(default)]
    pub container_runtime_endpoint: String,
    /// The image service's endpoint; defaults to `containerRuntimeEndpoint`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub image_service_endpoint: String,
    /// Refuse to start on cgroup v1 (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_cgroup_v1: Option<bool>,
    /// User namespace options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespaces: Option<UserNamespaces>,
}

/// `authentication`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletAuthentication {
    /// Client certificate authentication.
    #[serde(default)]
    pub x509: KubeletX509Authentication,
    /// Bearer token authentication through TokenReview.
    #[serde(default)]
    pub webhook: KubeletWebhookAuthentication,
    /// Anonymous requests.
    #[serde(default)]
    pub anonymous: KubeletAnonymousAuthentication,
}

/// `authentication.x509`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletX509Authentication {
    /// CA bundle of client certificates.
    #[serde(default, rename = "clientCAFile", skip_serializing_if = "is_default")]
    pub client_ca_file: String,
}

/// `authentication.webhook`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletWebhookAuthentication {
    /// Whether bearer tokens are checked (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long results are cached (default 2m).
    #[serde(default, rename = "cacheTTL")]
    pub cache_ttl: GoDuration,
}

/// `authentication.anonymous`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletAnonymousAuthentication {
    /// Whether anonymous requests are allowed (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `authorization`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletAuthorization {
    /// `AlwaysAllow` or `Webhook` (default `Webhook`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: String,
    /// SubjectAccessReview caching.
    #[serde(default)]
    pub webhook: KubeletWebhookAuthorization,
}

/// `authorization.webhook`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletWebhookAuthorization {
    /// How long allowed requests are cached (default 5m).
    #[serde(default, rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: GoDuration,
    /// How long denied requests are cached (default 30s).
    #[serde(default, rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: GoDuration,
}

/// `memorySwap`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemorySwapConfiguration {
    /// `NoSwap` or `LimitedSwap`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub swap_behavior: String,
}

/// `crashLoopBackOff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CrashLoopBackOffConfig {
    /// Longest CrashLoopBackOff delay (default 300s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_container_restart_period: Option<GoDuration>,
}

/// An entry of `shutdownGracePeriodByPodPriority`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShutdownGracePeriodByPodPriority {
    /// Lowest priority of the class.
    pub priority: i32,
    /// Shutdown grace period of the class.
    pub shutdown_grace_period_seconds: i64,
}

/// An entry of `reservedMemory`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryReservation {
    /// The NUMA node.
    pub numa_node: i32,
    /// Reserved memory and huge pages.
    pub limits: BTreeMap<String, QuantityValue>,
}

/// A taint of `registerWithTaints` (a core/v1 `Taint`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigTaint {
    /// The taint key.
    pub key: String,
    /// The taint value.
    #[serde(default, skip_serializing_if = "is_default")]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
    /// Must be unset in the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<String>,
}

/// `tracing`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TracingConfiguration {
    /// The collector's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Sampled spans per million.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_rate_per_million: Option<i32>,
}

/// `userNamespaces`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserNamespaces {
    /// UIDs and GIDs per pod (a multiple of 65536).
    #[serde(default, rename = "idsPerPod", skip_serializing_if = "Option::is_none")]
    pub ids_per_pod: Option<i64>,
}

/// `logging` (component-base `LoggingConfiguration`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoggingConfiguration {
    /// `text` (default) or `json`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub format: String,
    /// How often logs are flushed (default 5s).
    #[serde(default)]
    pub flush_frequency: FlushFrequency,
    /// Log verbosity (`-v`).
    #[serde(default)]
    pub verbosity: u32,
    /// Verbosity per file pattern.
    #[serde(default, skip_serializing_if = "is_default")]
    pub vmodule: Vec<VModuleItem>,
    /// Options per format.
    #[serde(default)]
    pub options: FormatOptions,
}

/// An entry of `logging.vmodule`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VModuleItem {
    /// File name pattern.
    pub file_pattern: String,
    /// Its verbosity.
    pub verbosity: u32,
}

/// `logging.options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatOptions {
    /// Options of the text format.
    #[serde(default)]
    pub text: OutputRoutingOptions,
    /// Options of the JSON format.
    #[serde(default)]
    pub json: OutputRoutingOptions,
}

/// `logging.options.text` and `logging.options.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutputRoutingOptions {
    /// Errors to stderr, info to stdout.
    #[serde(default, skip_serializing_if = "is_default")]
    pub split_stream: bool,
    /// Buffer of the info stream (default `"0"`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub info_buffer_size: QuantityValue,
}

impl KubeletConfiguration {
    /// Whether the feature gate is on: `featureGates` (with `AllAlpha`/`AllBeta`), else
    /// its 1.37 default.
    pub fn gate(&self, name: &str) -> bool {
        super::feature_gates::enabled_in(&self.feature_gates, name)
    }

    /// A configuration with every field at upstream's default (an empty file).
    pub fn defaulted() -> Self {
        let mut config = Self::default();
        config.set_defaults();
        config
    }

    /// The configuration a kubelet without `--config` starts from: the defaults plus
    /// this kubelet's `--cluster-domain` default, `cluster.local` (upstream's is empty).
    ///
    /// Deliberately safer than upstream's legacy flag defaults (`applyLegacyDefaults`:
    /// anonymous requests, no token webhook, `AlwaysAllow`, `readOnlyPort` 10255): the
    /// kubelet API keeps the file defaults — anonymous requests refused, tokens checked
    /// through TokenReview, Webhook authorization, no unauthenticated read-only port —
    /// so that reaching the node never gives anyone its pods and logs.
    /// `--anonymous-auth`, `--authentication-token-webhook`, `--authorization-mode` and
    /// `--read-only-port` change them.
    pub fn flag_defaults() -> Self {
        let mut config = Self::defaulted();
        config.cluster_domain = "cluster.local".into();
        config.authentication.anonymous.enabled = Some(false);
        config.authentication.webhook.enabled = Some(true);
        config.authorization.mode = "Webhook".into();
        config
    }

    /// Fills unset fields as upstream's `SetDefaults_KubeletConfiguration` does.
    /// Idempotent.
    pub fn set_defaults(&mut self) {
        fn or_secs(d: &mut GoDuration, secs: i64) {
            if d.is_zero() {
                *d = GoDuration::from_secs(secs);
            }
        }
        fn or_str(s: &mut String, value: &str) {
            if s.is_empty() {
                value.clone_into(s);
            }
        }
        fn or_i32(n: &mut i32, value: i32) {
            if *n == 0 {
                *n = value;
            }
        }
        self.enable_server.get_or_insert(true);
        or_secs(&mut self.sync_frequency, 60);
        or_secs(&mut self.file_check_frequency, 20);
        or_secs(&mut self.http_check_frequency, 20);
        or_str(&mut self.address, DEFAULT_ADDRESS);
        or_i32(&mut self.port, 10250);
        self.authentication.anonymous.enabled.get_or_insert(false);
        self.authentication.webhook.enabled.get_or_insert(true);
        or_secs(&mut self.authentication.webhook.cache_ttl, 120);
        or_str(&mut self.authorization.mode, "Webhook");
        or_secs(&mut self.authorization.webhook.cache_authorized_ttl, 300);
        or_secs(&mut self.authorization.webhook.cache_unauthorized_ttl, 30);
        self.registry_pull_qps.get_or_insert(5);
        or_i32(&mut self.registry_burst, 10);
        self.event_record_qps.get_or_insert(50);
        or_i32(&mut self.event_burst, 100);
        self.enable_debugging_handlers.get_or_insert(true);
        self.healthz_port.get_or_insert(10248);
        or_str(&mut self.healthz_bind_address, "127.0.0.1");
        self.oom_score_adj.get_or_insert(-999);
        or_secs(&mut self.streaming_connection_idle_timeout, 4 * 3600);
        if self.node_status_report_frequency.is_zero() {
            // Upstream: an explicit update frequency is also the report frequency.
            self.node_status_report_frequency = if self.node_status_update_frequency.is_zero() {
                GoDuration::from_secs(300)
            } else {
                self.node_status_update_frequency
            };
        }
        or_secs(&mut self.node_status_update_frequency, 10);
        or_i32(&mut self.node_lease_duration_seconds, 40);
        or_secs(&mut self.image_minimum_gc_age, 120);
        self.image_gc_high_threshold_percent.get_or_insert(85);
        self.image_gc_low_threshold_percent.get_or_insert(80);
        or_secs(&mut self.volume_stats_agg_period, 60);
        self.cgroups_per_qos.get_or_insert(true);
        or_str(&mut self.cgroup_driver, "cgroupfs");
        or_str(&mut self.cpu_manager_policy, "none");
        or_secs(&mut self.cpu_manager_reconcile_period, 10);
        or_str(&mut self.memory_manager_policy, "None");
        or_str(&mut self.topology_manager_policy, "none");
        or_str(&mut self.topology_manager_scope, "container");
        or_secs(&mut self.runtime_request_timeout, 120);
        or_str(&mut self.hairpin_mode, "promiscuous-bridge");
        or_i32(&mut self.max_pods, 110);
        if self.pod_pids_limit.is_none_or(|limit| limit < 0) {
            self.pod_pids_limit = Some(-1);
        }
        self.resolv_conf
            .get_or_insert_with(|| "/etc/resolv.conf".into());
        self.cpu_cfs_quota.get_or_insert(true);
        self.cpu_cfs_quota_period
            .get_or_insert(GoDuration::from_millis(100));
        self.node_status_max_images.get_or_insert(50);
        if self.max_open_files == 0 {
            self.max_open_files = 1_000_000;
        }
        or_str(
            &mut self.content_type,
            "application/vnd.kubernetes.protobuf",
        );
        self.kube_api_qps.get_or_insert(50);
        or_i32(&mut self.kube_api_burst, 100);
        if self.serialize_image_pulls.is_none() {
            // Serial unless more than one parallel pull is asked for.
            let parallel = self.max_parallel_image_pulls.is_some_and(|n| n >= 2);
            self.serialize_image_pulls = Some(!parallel);
        }
        or_secs(&mut self.eviction_pressure_transition_period, 300);
        self.merge_default_eviction_settings.get_or_insert(false);
        self.enable_controller_attach_detach.get_or_insert(true);
        self.make_ip_tables_util_chains.get_or_insert(true);
        self.iptables_masquerade_bit.get_or_insert(14);
        self.iptables_drop_bit.get_or_insert(15);
        self.fail_swap_on.get_or_insert(true);
        or_str(&mut self.container_log_max_size, "10Mi");
        self.container_log_max_files.get_or_insert(5);
        self.container_log_max_workers.get_or_insert(1);
        self.container_log_monitor_interval
            .get_or_insert(GoDuration::from_secs(10));
        or_str(
            &mut self.config_map_and_secret_change_detection_strategy,
            "Watch",
        );
        self.enforce_node_allocatable
            .get_or_insert_with(|| vec!["pods".into()]);
        or_str(
            &mut self.volume_plugin_dir,
            "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/",
        );
        or_str(&mut self.logging.format, "text");
        if self.logging.flush_frequency.duration.is_zero() {
            self.logging.flush_frequency = FlushFrequency {
                duration: GoDuration::from_secs(5),
                as_string: true,
            };
        }
        for options in [
            &mut self.logging.options.text,
            &mut self.logging.options.json,
        ] {
            if options.info_buffer_size.0.is_empty() {
                options.info_buffer_size = QuantityValue("0".into());
            }
        }
        self.enable_system_log_handler.get_or_insert(true);
        // Not in defaults.go: upstream's internal type holds a plain bool, so the
        // configuration it converts back (and serves at /configz) always has it.
        self.enable_system_log_query.get_or_insert(false);
        self.enable_profiling_handler.get_or_insert(true);
        self.enable_debug_flags_handler.get_or_insert(true);
        self.seccomp_default.get_or_insert(false);
        self.fail_cgroup_v1.get_or_insert(true);
        or_str(&mut self.memory_reservation_policy, "None");
        self.register_node.get_or_insert(true);
        self.local_storage_capacity_isolation.get_or_insert(true);
        or_str(
            &mut self.container_runtime_endpoint,
            "unix:///run/containerd/containerd.sock",
        );
        or_str(&mut self.pod_logs_dir, "/var/log/pods");
        if self.gate("KubeletCrashLoopBackOffMax") {
            self.crash_loop_back_off
                .max_container_restart_period
                .get_or_insert(GoDuration::from_secs(300));
        }
        if self.gate("KubeletEnsureSecretPulledImages") {
            or_str(
                &mut self.image_pull_credentials_verification_policy,
                "NeverVerifyPreloadedImages",
            );
        }
    }

    /// `evictionHard` as upstream's `loadConfigFile` fills it (configuration files only):
    /// the OS defaults when unset, or the missing keys when
    /// `mergeDefaultEvictionSettings` is true.
    pub fn set_eviction_defaults(&mut self) {
        let hard = self.eviction_hard.get_or_insert_with(|| {
            DEFAULT_EVICTION_HARD
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        });
        if self.merge_default_eviction_settings == Some(true) {
            for (k, v) in DEFAULT_EVICTION_HARD {
                hard.entry(k.to_owned()).or_insert_with(|| v.to_owned());
            }
        }
    }

    /// The paths upstream resolves against the configuration file's directory when
    /// relative (`KubeletConfigurationPathRefs`).
    pub fn path_refs(&mut self) -> Vec<&mut String> {
        let mut paths = vec![
            &mut self.static_pod_path,
            &mut self.authentication.x509.client_ca_file,
            &mut self.tls_cert_file,
            &mut self.tls_private_key_file,
            &mut self.volume_plugin_dir,
            &mut self.pod_logs_dir,
        ];
        if let Some(resolv_conf) = self.resolv_conf.as_mut() {
            paths.push(resolv_conf);
        }
        paths
    }
}
