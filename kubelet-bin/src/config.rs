//! The kubelet's configuration: `--config FILE` (a `KubeletConfiguration`), the
//! `--config-dir DIR` drop-ins, and the command line, resolved into the [`Settings`]
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
mod more_flags;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::ArgMatches;
use clap::parser::ValueSource;

pub use kubelet_builder::Settings;
pub use kubelet_core::config::{
    ConfigTaint, GoDuration, HostFacts, KubeletConfiguration, parse_duration_flag,
};
pub use load::{load_file, merge_drop_ins};
pub use more_flags::MoreFlags;

use crate::Flags;

/// Resolves the configuration from `--config`, `--config-dir` and the flags typed on
/// the command line, and checks it, against this machine.
pub fn resolve(flags: &Flags, matches: &ArgMatches, more: &MoreFlags) -> anyhow::Result<Settings> {
    resolve_on(flags, matches, more, &host_facts())
}

/// [`resolve`] for a host described by `host`.
fn resolve_on(
    flags: &Flags,
    matches: &ArgMatches,
    more: &MoreFlags,
    host: &HostFacts,
) -> anyhow::Result<Settings> {
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
    if !more.patch.is_empty() {
        let mut value = serde_json::to_value(&config).context("marshalling the configuration")?;
        load::merge_patch(&mut value, serde_json::Value::Object(more.patch.clone()));
        config = load::decode(value).context("flags")?;
        config.set_defaults();
    }
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    apply_flags(&mut config, flags, given)?;
    sources.push("flags".into());
    let mut effective = Settings::new(config, sources.join(", "), host)?;
    effective.skipped_drop_ins = skipped;
    Ok(effective)
}

/// A boolean as Go's `strconv.ParseBool` reads flag values (`1`, `t`, `TRUE`, `false`,
/// ...); `None` for anything else.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The facts of this machine that upstream's host-dependent validation looks at.
fn host_facts() -> HostFacts {
    HostFacts {
        cgroup_v1: kubelet_cgroups::CgroupVersion::detect(Path::new(kubelet_cgroups::CGROUP_ROOT))
            == kubelet_cgroups::CgroupVersion::V1,
        kernel: kubelet_builder::kernel_version(),
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
    if given("cgroup_driver") {
        config.cgroup_driver.clone_from(&flags.cgroup_driver);
    }
    if given("fail_cgroupv1") {
        config.fail_cgroup_v1 = Some(flags.fail_cgroupv1);
    }
    if given("allowed_unsafe_sysctls") {
        config
            .allowed_unsafe_sysctls
            .clone_from(&flags.allowed_unsafe_sysctls);
    }
    if given("seccomp_default") {
        config.seccomp_default = Some(flags.seccomp_default);
    }
    if given("feature_gates") {
        // As upstream: the flag's gates win, the file's other gates stay.
        config
            .feature_gates
            .extend(flags.feature_gates.iter().flatten().cloned());
    }
    apply_eviction_flags(config, flags, &given);
    apply_server_flags(config, flags, &given);
    Ok(())
}

/// The eviction and node allocatable flags (`--eviction-*`, `--kube-reserved`,
/// `--system-reserved`, `--enforce-node-allocatable`).
fn apply_eviction_flags(
    config: &mut KubeletConfiguration,
    flags: &Flags,
    given: impl Fn(&str) -> bool,
) {
    let map = |pairs: &[(String, String)]| pairs.iter().cloned().collect();
    // An empty list is the flag's default: the configuration's (or upstream's) stays.
    if given("eviction_hard") && !flags.eviction_hard.is_empty() {
        config.eviction_hard = Some(map(&flags.eviction_hard));
    }
    for (id, pairs, field) in [
        (
            "eviction_soft",
            &flags.eviction_soft,
            &mut config.eviction_soft,
        ),
        (
            "eviction_soft_grace_period",
            &flags.eviction_soft_grace_period,
            &mut config.eviction_soft_grace_period,
        ),
        (
            "eviction_minimum_reclaim",
            &flags.eviction_minimum_reclaim,
            &mut config.eviction_minimum_reclaim,
        ),
        (
            "kube_reserved",
            &flags.kube_reserved,
            &mut config.kube_reserved,
        ),
        (
            "system_reserved",
            &flags.system_reserved,
            &mut config.system_reserved,
        ),
    ] {
        if given(id) {
            *field = map(pairs);
        }
    }
    if let Some(period) = flags.eviction_pressure_transition_period {
        config.eviction_pressure_transition_period = period;
    }
    if let Some(seconds) = flags.eviction_max_pod_grace_period {
        config.eviction_max_pod_grace_period = seconds;
    }
    if given("enforce_node_allocatable") {
        // `--enforce-node-allocatable=` (nothing) enforces nothing, as upstream.
        config.enforce_node_allocatable = Some(
            flags
                .enforce_node_allocatable
                .iter()
                .filter(|k| !k.is_empty())
                .cloned()
                .collect(),
        );
    }
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
    if given("fail_swap_on") {
        config.fail_swap_on = Some(flags.fail_swap_on);
    }
    if given("oom_score_adj") {
        config.oom_score_adj = Some(flags.oom_score_adj);
    }
    if given("max_open_files") {
        config.max_open_files = flags.max_open_files;
    }
    if given("pods_per_core") {
        config.pods_per_core = flags.pods_per_core;
    }
    if given("rotate_certificates") {
        config.rotate_certificates = flags.rotate_certificates;
    }
    if given("tls_cipher_suites") {
        config
            .tls_cipher_suites
            .clone_from(&flags.tls_cipher_suites);
    }
    if given("tls_min_version") {
        config.tls_min_version = flags.tls_min_version.clone().unwrap_or_default();
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
