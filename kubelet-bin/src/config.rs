//! The kubelet's configuration: `--config FILE` (a `KubeletConfiguration`), the
//! `--config-dir DIR` drop-ins, and the command line, resolved into the [`Effective`]
//! settings the rest of the binary uses.
//!
//! Precedence is upstream's: defaults < config file < drop-ins (`*.conf`, lexical order)
//! < flags typed on the command line. Without `--config` and `--config-dir` the starting
//! point is the flags' defaults (upstream's legacy defaults: `readOnlyPort` 10255, ...).
//!
//! Unlike upstream, which falls back to lenient decoding of v1beta1 files with a
//! warning, a file with an unknown field or a value of the wrong type is refused: a typo
//! in a node's configuration should stop the kubelet, not be ignored.

mod load;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::ArgMatches;
use clap::parser::ValueSource;
use k8s_openapi::api::core::v1::Taint;

pub use kubelet_core::config::{
    API_VERSION, ConfigTaint, GoDuration, HostFacts, KIND, KubeletConfiguration,
    parse_duration_flag, validate, validate_host,
};
pub use load::{load_file, merge_drop_ins};

use crate::Flags;

/// The settings the kubelet runs with: the resolved configuration, and its values in
/// the types the libraries take.
#[derive(Debug, Clone)]
pub struct Effective {
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
    /// `maxPods`.
    pub max_pods: u32,
    /// `nodeStatusUpdateFrequency`.
    pub node_status_update_frequency: Duration,
    /// `nodeStatusReportFrequency`.
    pub node_status_report_frequency: Duration,
    /// `nodeLeaseDurationSeconds`.
    pub node_lease_duration_seconds: i32,
    /// `logging.verbosity` (`-v`).
    pub verbosity: u32,
}

/// Resolves the configuration from `--config`, `--config-dir` and the flags typed on
/// the command line, and checks it, against this machine.
pub fn resolve(flags: &Flags, matches: &ArgMatches) -> anyhow::Result<Effective> {
    resolve_on(flags, matches, &host_facts())
}

/// [`resolve`] for a host described by `host`.
fn resolve_on(flags: &Flags, matches: &ArgMatches, host: &HostFacts) -> anyhow::Result<Effective> {
    let mut config = match &flags.config {
        Some(path) => load_file(path)?,
        None => KubeletConfiguration::flag_defaults(),
    };
    let mut sources = Vec::new();
    if let Some(path) = &flags.config {
        sources.push(format!("--config {}", path.display()));
    }
    let mut skipped = Vec::new();
    if let Some(dir) = &flags.config_dir {
        (config, skipped) = merge_drop_ins(&config, dir)?;
        sources.push(format!("--config-dir {}", dir.display()));
    }
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    apply_flags(&mut config, flags, given)?;
    sources.push("flags".into());
    let mut effective = Effective::new(config, sources.join(", "), host)?;
    effective.skipped_drop_ins = skipped;
    Ok(effective)
}

/// The facts of this machine that upstream's host-dependent validation looks at.
fn host_facts() -> HostFacts {
    HostFacts {
        cgroup_v1: !kubelet_cgroups::system::is_unified(Path::new(kubelet_cgroups::CGROUP_ROOT)),
    }
}

/// Writes the flags for which `given(id)` holds into `config`, as upstream re-parses the
/// command line over the loaded file (`kubeletConfigFlagPrecedence`).
fn apply_flags(
    config: &mut KubeletConfiguration,
    flags: &Flags,
    given: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let path_text = |p: &Path| p.to_string_lossy().into_owned();
    if given("container_runtime_endpoint") {
        config
            .container_runtime_endpoint
            .clone_from(&flags.container_runtime_endpoint);
    }
    if given("image_service_endpoint") {
        config.image_service_endpoint = flags.image_service_endpoint.clone().unwrap_or_default();
    }
    if given("runtime_request_timeout") {
        config.runtime_request_timeout = flags.runtime_request_timeout;
    }
    if given("pod_manifest_path") {
        config.static_pod_path = flags
            .pod_manifest_path
            .as_deref()
            .map(path_text)
            .unwrap_or_default();
    }
    if given("manifest_url") {
        config.static_pod_url = flags.manifest_url.clone().unwrap_or_default();
    }
    if given("manifest_url_header") {
        config.static_pod_url_header.clear();
        for header in &flags.manifest_url_header {
            let (name, value) = header.split_once(':').with_context(|| {
                format!("--manifest-url-header {header:?}: expected Name:Value")
            })?;
            config
                .static_pod_url_header
                .entry(name.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    if given("file_check_frequency") {
        config.file_check_frequency = flags.file_check_frequency;
    }
    if given("http_check_frequency") {
        config.http_check_frequency = flags.http_check_frequency;
    }
    if given("sync_frequency") {
        config.sync_frequency = flags.sync_frequency;
    }
    if given("cluster_dns") {
        config.cluster_dns = flags.cluster_dns.iter().map(IpAddr::to_string).collect();
    }
    if given("cluster_domain") {
        config.cluster_domain.clone_from(&flags.cluster_domain);
    }
    if given("resolv_conf") {
        config.resolv_conf = Some(path_text(&flags.resolv_conf));
    }
    if given("container_log_max_size") {
        config
            .container_log_max_size
            .clone_from(&flags.container_log_max_size);
    }
    if given("container_log_max_files") {
        config.container_log_max_files = Some(i32::from(flags.container_log_max_files));
    }
    if given("address") {
        config.address = flags.address.to_string();
    }
    if given("read_only_port") {
        config.read_only_port = i32::from(flags.read_only_port);
    }
    if given("register_node") {
        config.register_node = Some(flags.register_node);
    }
    if given("register_with_taints") {
        config
            .register_with_taints
            .clone_from(&flags.register_with_taints);
    }
    if given("max_pods") {
        config.max_pods = i32::try_from(flags.max_pods).context("--max-pods is too large")?;
    }
    if given("node_status_update_frequency") {
        config.node_status_update_frequency = flags.node_status_update_frequency;
    }
    if given("verbosity") {
        config.logging.verbosity = u32::from(flags.verbosity);
    }
    for (id, value, field) in [
        (
            "kubelet_cgroups",
            &flags.kubelet_cgroups,
            &mut config.kubelet_cgroups,
        ),
        (
            "system_cgroups",
            &flags.system_cgroups,
            &mut config.system_cgroups,
        ),
        ("cgroup_root", &flags.cgroup_root, &mut config.cgroup_root),
    ] {
        if given(id) {
            field.clone_from(value.as_ref().unwrap_or(&String::new()));
        }
    }
    if given("fail_cgroupv1") {
        config.fail_cgroup_v1 = Some(flags.fail_cgroupv1);
    }
    apply_server_flags(config, flags, &given);
    Ok(())
}

/// The flags of the kubelet API server (`--port`, `--healthz-*`, `--tls-*`, and the
/// authentication and authorization flags).
fn apply_server_flags(
    config: &mut KubeletConfiguration,
    flags: &Flags,
    given: impl Fn(&str) -> bool,
) {
    let path_text = |p: &Option<PathBuf>| {
        p.as_deref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if given("port") {
        config.port = i32::from(flags.port);
    }
    if given("healthz_port") {
        config.healthz_port = Some(i32::from(flags.healthz_port));
    }
    if given("healthz_bind_address") {
        config.healthz_bind_address = flags.healthz_bind_address.to_string();
    }
    if given("tls_cert_file") {
        config.tls_cert_file = path_text(&flags.tls_cert_file);
    }
    if given("tls_private_key_file") {
        config.tls_private_key_file = path_text(&flags.tls_private_key_file);
    }
    if given("client_ca_file") {
        config.authentication.x509.client_ca_file = path_text(&flags.client_ca_file);
    }
    if given("anonymous_auth") {
        config.authentication.anonymous.enabled = Some(flags.anonymous_auth);
    }
    if given("authentication_token_webhook") {
        config.authentication.webhook.enabled = Some(flags.authentication_token_webhook);
    }
    if given("authorization_mode") {
        config
            .authorization
            .mode
            .clone_from(&flags.authorization_mode);
    }
}

impl Effective {
    /// Checks `config` (upstream's validation, its checks against `host`, then the
    /// values this kubelet converts) and converts it; every problem is reported at once.
    pub fn new(
        config: KubeletConfiguration,
        sources: String,
        host: &HostFacts,
    ) -> anyhow::Result<Self> {
        let mut errors = validate(&config);
        errors.extend(validate_host(&config, host));
        if config.system_cgroups == "/" {
            // Upstream's container manager refuses it when it starts.
            errors.push("system container cannot be root (\"/\")".to_owned());
        }
        let mut fail = |field: &str, reason: String| {
            errors.push(format!("invalid configuration: {field}: {reason}"));
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
        if !errors.is_empty() {
            anyhow::bail!(
                "the configuration ({sources}) is invalid:\n  {}",
                errors.join("\n  ")
            );
        }
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
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
            max_pods: u32::try_from(config.max_pods).unwrap_or_default(),
            node_status_update_frequency,
            node_status_report_frequency,
            node_lease_duration_seconds: config.node_lease_duration_seconds,
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
        if self.config.cgroup_driver == "systemd" {
            notes.push(
                "cgroupDriver systemd is not supported yet: pod cgroups use cgroupfs paths"
                    .to_owned(),
            );
        }
        if !matches!(self.config.cgroup_root.as_str(), "" | "/") {
            notes.push(format!(
                "cgroupRoot {:?} is not supported yet: pod cgroups are under /kubepods",
                self.config.cgroup_root
            ));
        }
        if self.config.logging.format == "json" {
            notes.push("logging.format json is not supported yet: logging as text".to_owned());
        }
        notes
    }
}

/// The configuration as upstream's `/configz` serves it: `{"kubeletconfig": {...}}`
/// with the v1beta1 field names, `apiVersion` and `kind` (Kubernetes 1.37 stamps them;
/// older kubelets left them out). The values of `staticPodURLHeader` are masked, as
/// upstream masks them in its start-up log, because this endpoint is unauthenticated.
pub fn configz_json(effective: &Effective) -> serde_json::Value {
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

/// Parses a `--container-log-max-size` value: a quantity, kept as written.
pub fn parse_quantity_flag(text: &str) -> Result<String, String> {
    let quantity: kubelet_core::Quantity = text.parse().map_err(|e| format!("{e}"))?;
    if quantity.value() < 0 {
        return Err(format!("{text:?} must not be negative"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests;
