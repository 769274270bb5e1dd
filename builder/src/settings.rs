//! The settings a kubelet runs with: a validated `KubeletConfiguration` and its values in
//! the types the libraries take.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use kubelet_core::config::feature_gates::FeatureGates;
use kubelet_core::config::{
    API_VERSION, GoDuration, HostFacts, KIND, KubeletConfiguration, validate, validate_host,
};

use kubelet_pod_manager::admission::SysctlAllowlist;

use crate::{Error, Result, non_empty};

/// The settings the kubelet runs with: the resolved configuration, and its values in
/// the types the libraries take.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The resolved configuration, as `/configz` shows it.
    pub config: KubeletConfiguration,
    /// Where it came from, for messages (`--config`, `--config-dir`, flags).
    pub sources: String,
    /// Files of `--config-dir` skipped for not ending in `.conf`.
    pub skipped_drop_ins: Vec<PathBuf>,
    /// The host the configuration was checked against.
    pub host: HostFacts,
    /// `containerRuntimeEndpoint`.
    pub container_runtime_endpoint: String,
    /// `imageServiceEndpoint`, when set.
    pub image_service_endpoint: Option<String>,
    /// `runtimeRequestTimeout`.
    pub runtime_request_timeout: Duration,
    /// `staticPodPath`, when set.
    pub static_pod_path: Option<PathBuf>,
    /// `staticPodURL`, when set.
    pub static_pod_url: Option<String>,
    /// `staticPodURLHeader`, one pair per value.
    pub static_pod_url_headers: Vec<(String, String)>,
    /// `fileCheckFrequency`.
    pub file_check_frequency: Duration,
    /// `httpCheckFrequency`.
    pub http_check_frequency: Duration,
    /// `syncFrequency`.
    pub sync_frequency: Duration,
    /// `volumeStatsAggPeriod`: how often volume usage is measured; `None` when 0
    /// (not measured).
    pub volume_stats_agg_period: Option<Duration>,
    /// `address` of the read-only endpoints.
    pub address: IpAddr,
    /// `readOnlyPort`; `None` when 0 (disabled).
    pub read_only_port: Option<u16>,
    /// `port`, published in the Node's `daemonEndpoints`.
    pub port: u16,
    /// `clusterDNS`.
    pub cluster_dns: Vec<IpAddr>,
    /// `clusterDomain`.
    pub cluster_domain: String,
    /// `resolvConf`; `None` when set to `""` (host DNS disabled for pods).
    pub resolv_conf: Option<PathBuf>,
    /// `podLogsDir`.
    pub pod_logs_dir: PathBuf,
    /// `containerLogMaxSize` in bytes.
    pub container_log_max_size: u64,
    /// `containerLogMaxFiles`.
    pub container_log_max_files: usize,
    /// `containerLogMonitorInterval`.
    pub container_log_monitor_interval: Duration,
    /// `registerNode`.
    pub register_node: bool,
    /// `registerWithTaints`.
    pub register_with_taints: Vec<Taint>,
    /// `maxPods`, at most `podsPerCore` per core when that is set.
    pub max_pods: u32,
    /// `nodeStatusMaxImages`; `None` (-1) lists every image.
    pub node_status_max_images: Option<usize>,
    /// `nodeStatusUpdateFrequency`.
    pub node_status_update_frequency: Duration,
    /// `nodeStatusReportFrequency`.
    pub node_status_report_frequency: Duration,
    /// The sysctls pods may set: the safe ones for the host's kernel and
    /// `allowedUnsafeSysctls`.
    pub sysctls: SysctlAllowlist,
    /// `nodeLeaseDurationSeconds`.
    pub node_lease_duration_seconds: i32,
    /// `kubeReserved` (`--kube-reserved`).
    pub kube_reserved: kubelet_core::NodeResources,
    /// `systemReserved` (`--system-reserved`).
    pub system_reserved: kubelet_core::NodeResources,
    /// Whether `enforceNodeAllocatable` has `pods`: `/kubepods` is sized to allocatable.
    pub enforce_pods_allocatable: bool,
    /// The eviction thresholds and timing.
    pub eviction: kubelet_eviction::EvictionConfig,
    /// When unused images are removed.
    pub image_gc: kubelet_images::ImageGcPolicy,
    /// `logging.verbosity` (`-v`).
    pub verbosity: u32,
}

impl Settings {
    /// Checks `config` (upstream's validation, its checks against `host`, then the
    /// values this kubelet converts) and converts it; every problem is reported at once.
    pub fn new(config: KubeletConfiguration, sources: String, host: &HostFacts) -> Result<Self> {
        let mut errors = validate(&config);
        errors.extend(validate_host(&config, host));
        if !config.image_service_endpoint.is_empty()
            && config.image_service_endpoint != config.container_runtime_endpoint
        {
            errors.push(format!(
                "imageServiceEndpoint {:?} differs from containerRuntimeEndpoint; a separate \
                 image service is not supported yet",
                config.image_service_endpoint
            ));
        }
        if config.system_cgroups == "/" {
            // Upstream's container manager refuses it when it starts.
            errors.push("system container cannot be root (\"/\")".to_owned());
        }
        let mut fail = |field: &str, reason: String| {
            errors.push(format!("invalid configuration: {field}: {reason}"));
        };
        let volume_stats_agg_period = match config.volume_stats_agg_period.to_std() {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => {
                fail(
                    "volumeStatsAggPeriod",
                    format!("{} must not be negative", config.volume_stats_agg_period),
                );
                None
            }
        };
        let mut period = |field: &str, value: GoDuration| match value.to_std() {
            Some(d) if !d.is_zero() => d,
            _ => {
                fail(field, format!("{value} must be greater than 0"));
                Duration::from_secs(1)
            }
        };
        let runtime_request_timeout =
            period("runtimeRequestTimeout", config.runtime_request_timeout);
        let file_check_frequency = period("fileCheckFrequency", config.file_check_frequency);
        let http_check_frequency = period("httpCheckFrequency", config.http_check_frequency);
        let sync_frequency = period("syncFrequency", config.sync_frequency);
        let node_status_update_frequency = period(
            "nodeStatusUpdateFrequency",
            config.node_status_update_frequency,
        );
        let node_status_report_frequency = period(
            "nodeStatusReportFrequency",
            config.node_status_report_frequency,
        );
        // validate() holds it to at least 3s.
        let container_log_monitor_interval = config
            .container_log_monitor_interval
            .and_then(GoDuration::to_std)
            .unwrap_or(Duration::from_secs(10));
        let address = config.address.parse().unwrap_or_else(|_| {
            fail(
                "address",
                format!("{:?} is not an IP address", config.address),
            );
            IpAddr::from([127, 0, 0, 1])
        });
        let mut cluster_dns = Vec::new();
        for (i, ip) in config.cluster_dns.iter().enumerate() {
            match ip.trim().parse() {
                Ok(ip) => cluster_dns.push(ip),
                Err(_) => fail(
                    &format!("clusterDNS[{i}]"),
                    format!("{ip:?} is not an IP address"),
                ),
            }
        }
        let container_log_max_size = match config
            .container_log_max_size
            .parse::<kubelet_core::Quantity>()
        {
            Ok(q) if q.value() >= 0 => u64::try_from(q.value()).unwrap_or_default(),
            Ok(_) => {
                fail("containerLogMaxSize", "must not be negative".into());
                0
            }
            Err(e) => {
                fail("containerLogMaxSize", e.to_string());
                0
            }
        };
        let register_with_taints = config
            .register_with_taints
            .iter()
            .map(|t| Taint {
                key: t.key.clone(),
                value: (!t.value.is_empty()).then(|| t.value.clone()),
                effect: t.effect.clone(),
                time_added: None,
            })
            .collect();
        let sysctls = SysctlAllowlist::new(host.kernel, &config.allowed_unsafe_sysctls)
            .unwrap_or_else(|reason| {
                fail("allowedUnsafeSysctls", reason);
                SysctlAllowlist::default()
            });
        let kube_reserved = crate::allocatable::parse_reserved(&config.kube_reserved)
            .unwrap_or_else(|reason| {
                fail("kubeReserved", reason);
                Default::default()
            });
        let system_reserved = crate::allocatable::parse_reserved(&config.system_reserved)
            .unwrap_or_else(|reason| {
                fail("systemReserved", reason);
                Default::default()
            });
        // Checked here too so that a suite rustls cannot offer stops the kubelet before
        // it touches the runtime.
        if let Err(e) = kubelet_server::TlsOptions::from_config(
            &config.tls_min_version,
            &config.tls_cipher_suites,
            &config.tls_curve_preferences,
        ) {
            errors.push(format!("invalid configuration: {e}"));
        }
        let eviction = kubelet_eviction::EvictionConfig::from_kubelet_config(&config)
            .unwrap_or_else(|e| {
                errors.push(format!("invalid configuration: {e}"));
                Default::default()
            });
        let image_gc = kubelet_images::ImageGcPolicy {
            high_threshold_percent: config.image_gc_high_threshold_percent.unwrap_or(85),
            low_threshold_percent: config.image_gc_low_threshold_percent.unwrap_or(80),
            min_age: config.image_minimum_gc_age.to_std().unwrap_or_default(),
            max_age: config.image_maximum_gc_age.to_std().unwrap_or_default(),
        };
        if let Err(e) = image_gc.validate() {
            errors.push(format!(
                "invalid configuration: image garbage collection: {e}"
            ));
        }
        if !errors.is_empty() {
            return Err(Error::InvalidConfig {
                sources,
                problems: errors,
            });
        }
        Ok(Self {
            host: *host,
            container_runtime_endpoint: config.container_runtime_endpoint.clone(),
            image_service_endpoint: non_empty(&config.image_service_endpoint),
            runtime_request_timeout,
            static_pod_path: non_empty(&config.static_pod_path).map(PathBuf::from),
            static_pod_url: non_empty(&config.static_pod_url),
            static_pod_url_headers: config
                .static_pod_url_header
                .iter()
                .flat_map(|(name, values)| values.iter().map(|v| (name.clone(), v.clone())))
                .collect(),
            file_check_frequency,
            http_check_frequency,
            sync_frequency,
            volume_stats_agg_period,
            address,
            // Validated to 0..=65535 above.
            read_only_port: u16::try_from(config.read_only_port)
                .ok()
                .filter(|p| *p != 0),
            port: u16::try_from(config.port).unwrap_or(10250),
            cluster_dns,
            cluster_domain: config.cluster_domain.clone(),
            resolv_conf: config
                .resolv_conf
                .as_deref()
                .and_then(non_empty)
                .map(PathBuf::from),
            pod_logs_dir: PathBuf::from(&config.pod_logs_dir),
            container_log_max_size,
            container_log_max_files: usize::try_from(
                config.container_log_max_files.unwrap_or_default(),
            )
            .unwrap_or(5),
            container_log_monitor_interval,
            register_node: config.register_node.unwrap_or(true),
            register_with_taints,
            max_pods: max_pods(&config, crate::host::milli_cpus() / 1000),
            node_status_max_images: usize::try_from(config.node_status_max_images.unwrap_or(50))
                .ok(),
            node_status_update_frequency,
            node_status_report_frequency,
            sysctls,
            node_lease_duration_seconds: config.node_lease_duration_seconds,
            kube_reserved,
            system_reserved,
            enforce_pods_allocatable: config
                .enforce_node_allocatable
                .as_ref()
                .is_some_and(|keys| keys.iter().any(|k| k == "pods")),
            eviction,
            image_gc,
            verbosity: config.logging.verbosity,
            config,
            sources,
            skipped_drop_ins: Vec::new(),
        })
    }

    /// What the configuration asks for that this kubelet does not do, one line each, for
    /// the log at start-up.
    pub fn unsupported(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !matches!(self.config.cgroup_root.as_str(), "" | "/") {
            notes.push(format!(
                "cgroupRoot {:?} is not supported yet: pod cgroups are under /kubepods",
                self.config.cgroup_root
            ));
        }
        notes.extend(kubelet_eviction::EvictionConfig::notes(&self.config));
        notes.extend(crate::support::not_supported(&self.config));
        if self.config.gate("MemoryQoS") && !self.host.cgroup_v1 {
            notes.push(
                "feature gate MemoryQoS is not supported yet: memory.min and memory.high are \
                 not set on cgroup v2"
                    .to_owned(),
            );
        }
        if let Ok(gates) = FeatureGates::new(&self.config.feature_gates) {
            let ignored: Vec<String> = gates
                .changed()
                .filter(|(name, _)| !ACTED_ON_FEATURE_GATES.contains(name))
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            if !ignored.is_empty() {
                notes.push(format!(
                    "feature gates not acted on by this kubelet (it behaves as with their \
                     defaults): {}",
                    ignored.join(", ")
                ));
            }
        }
        if self.config.logging.format == "json" {
            notes.push("logging.format json is not supported yet: logging as text".to_owned());
        }
        notes
    }
}

/// `maxPods`, or `podsPerCore` times the machine's cores when that is less (upstream's
/// pod capacity).
fn max_pods(config: &KubeletConfiguration, cores: u64) -> u32 {
    let max = u32::try_from(config.max_pods).unwrap_or_default();
    match u64::try_from(config.pods_per_core) {
        Ok(per_core) if per_core > 0 => {
            u32::try_from(per_core.saturating_mul(cores).min(u64::from(max))).unwrap_or(max)
        }
        _ => max,
    }
}

/// The feature gates this kubelet consults; setting any other gate away from its default
/// is reported at start-up.
pub const ACTED_ON_FEATURE_GATES: [&str; 11] = [
    "CustomCPUCFSQuotaPeriod",
    "DefaultPodSysctls",
    "GracefulNodeShutdown",
    "GracefulNodeShutdownBasedOnPodPriority",
    "ImageMaximumGCAge",
    "KubeletCrashLoopBackOffMax",
    "KubeletEnsureSecretPulledImages",
    "MemoryQoS",
    "NodeLogQuery",
    "NodeSwap",
    "RotateKubeletServerCertificate",
];

/// The configuration as upstream's `/configz` serves it: `{"kubeletconfig": {...}}`
/// with the v1beta1 field names, `apiVersion` and `kind` (Kubernetes 1.37 stamps them;
/// older kubelets left them out). The values of `staticPodURLHeader` are masked, as
/// upstream masks them in its start-up log, because this endpoint is unauthenticated.
pub fn configz_json(effective: &Settings) -> serde_json::Value {
    let mut config = effective.config.clone();
    config.api_version = API_VERSION.into();
    config.kind = KIND.into();
    for values in config.static_pod_url_header.values_mut() {
        *values = vec!["<masked>".into()];
    }
    let config = serde_json::to_value(&config).unwrap_or_else(
        |e| serde_json::json!({"error": format!("marshalling the configuration: {e}")}),
    );
    serde_json::json!({ "kubeletconfig": config })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_per_core_caps_max_pods() {
        let mut c = KubeletConfiguration::defaulted();
        assert_eq!(max_pods(&c, 2), 110);
        c.pods_per_core = 10;
        assert_eq!(max_pods(&c, 2), 20);
        assert_eq!(max_pods(&c, 64), 110);
    }
}
