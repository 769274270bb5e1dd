//! Turning a pod and its containers into runtime configurations, as the upstream kubelet
//! (v1.37) does in `generatePodSandboxConfig` and `generateContainerConfig`.
//!
//! - [`sandbox_config`]: identity, hostname, log directory, DNS ([`pod_dns_config`]),
//!   ports, labels, cgroup parent per QoS class, pod security context, sysctls.
//! - [`container_config`]: image, command and arguments with `$(VAR)` expansion
//!   ([`expand`]), environment ([`container_env`] from the [`PodObjects`] read before,
//!   with the service links of [`service_env`]), log path, labels, resources
//!   ([`container_resources`], [`oom_score_adj`]), merged security context.
//! - Around them, what the caller needs before or after: [`verify_run_as_non_root`] and
//!   [`apply_image_user`] once the image's user is known, and the Kubernetes-managed
//!   `/etc/hosts` ([`should_mount_hosts_file`], [`hosts_file_content`],
//!   [`hosts_file_mount`]).
//!
//! Everything here is pure: the caller reads files (the node's `/etc/hosts`), creates
//! directories and writes the hosts file.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EphemeralContainer, Pod, PodSpec, Secret, Service,
};
use kubelet_core::{
    ContainerConfig, ContainerMetadata, Mount, NamespaceOptions, ObjectSource, PodRef, PortMapping,
    Protocol, SandboxConfig, SandboxMetadata, labels,
};

use crate::{Error, Result};

mod dns;
mod env;
mod hosts;
mod resources;
mod security;
mod service_env;

pub use dns::pod_dns_config;
pub use env::{PodObjects, container_env, env_references, expand};
pub use hosts::{
    hosts_file_content, hosts_file_mount, hosts_file_path, pod_hostname_and_domain,
    should_mount_hosts_file,
};
pub use resources::{container_resources, oom_score_adj};
pub use security::{
    NodeSecurity, apply_image_user, host_apparmor_enabled, host_selinux_enabled,
    host_thermal_throttle_paths, verify_run_as_non_root,
};
pub(crate) use security::{format_pod, validate_apparmor};
pub use service_env::service_env;

/// Upstream's directory of container log symlinks (`ContainerLogsDir`).
pub const DEFAULT_CONTAINER_LOGS_DIR: &str = "/var/log/containers";

/// What the translation needs to know about the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeContext {
    /// Node name (lower case), as registered.
    pub node_name: String,
    /// The node's IP addresses, primary first (for `status.hostIP` references).
    pub host_ips: Vec<IpAddr>,
    /// Root of pod log directories, upstream `/var/log/pods`.
    pub pod_logs_root: PathBuf,
    /// Where upstream's `<pod>_<namespace>_<container>-<id>.log` symlinks to container
    /// logs go, for log collectors that read them ([`DEFAULT_CONTAINER_LOGS_DIR`] in a
    /// kubelet); empty makes no symlinks, so tests never touch the host's directory.
    pub container_logs_dir: PathBuf,
    /// Root of per-pod directories, upstream `/var/lib/kubelet/pods`.
    pub pods_dir: PathBuf,
    /// `clusterDNS` from the kubelet configuration.
    pub cluster_dns: Vec<IpAddr>,
    /// `clusterDomain` from the kubelet configuration.
    pub cluster_domain: String,
    /// Contents of the node's resolv.conf (`resolvConf`), for dnsPolicy Default.
    pub host_resolv_conf: String,
    /// The node's allocatable: the value of unset CPU, memory and ephemeral-storage
    /// limits in resourceFieldRef.
    pub allocatable: kubelet_core::NodeResources,
    /// The machine's capacity: a Burstable container's memory request sets its
    /// `oom_score_adj` against its memory (0 falls back to the allocatable memory).
    pub capacity: kubelet_core::NodeResources,
    /// True when the kubelet's `resolvConf` is the empty string: `host_resolv_conf` is
    /// then ignored and pods with host DNS get a localhost nameserver and search `.`.
    pub resolv_conf_disabled: bool,
    /// The host's `/sys/devices/system/cpu/cpu<N>/thermal_throttle` paths, masked in
    /// every container after the default masked paths (see
    /// [`host_thermal_throttle_paths`]).
    pub thermal_throttle_paths: Vec<String>,
    /// How each pod's own cgroup is made before its sandbox (`cgroupsPerQOS`); `None`
    /// leaves the pod cgroup to the runtime.
    pub pod_cgroups: Option<crate::pod_cgroup::PodCgroupSettings>,
    /// How the node's cgroups are named, so that each sandbox's cgroup parent is the pod
    /// cgroup in the form the runtime expects (a systemd slice or a cgroupfs path).
    pub cgroup_driver: kubelet_core::CgroupDriver,
    /// How pods are confined: seccomp, AppArmor, sysctls.
    pub security: NodeSecurity,
    /// The node's resource pressure (set by the eviction manager): admission refuses
    /// new pods under it as upstream.
    pub pressure: crate::pressure::NodePressure,
    /// How many dead containers are kept (upstream's container GC policy).
    pub container_gc: crate::gc::ContainerGcPolicy,
    /// The resources allocated to each pod and actuated on its containers (in-place
    /// resize); shared with admission, which records the allocations.
    pub allocations: crate::allocation::Allocations,
    /// The user namespace ranges of pods with `hostUsers: false`.
    pub user_namespaces: crate::userns::UserNamespaces,
}

/// What a pod's environment and image pull secrets are made of: the ConfigMaps and
/// Secrets of the [`ObjectSource`] (the same source as its volumes'), the Services for the
/// service link variables, and when to start and stop knowing a pod's objects.
/// Standalone mode has none ([`NoEnvObjects`]).
#[async_trait::async_trait]
pub trait EnvObjects: ObjectSource {
    /// Every Service the kubelet knows, in all namespaces, for the service link
    /// environment; `None` when there is no API server (standalone mode), where
    /// upstream adds no service variables at all.
    fn services(&self) -> Option<Vec<Service>> {
        None
    }
    /// Called before a pod is synced: starts fetching the objects it references and waits
    /// (briefly) until they are known, as upstream's watch-based managers do.
    async fn prepare(&self, _pod: &Pod) {}
    /// Called when a pod is gone: its objects need not be kept any more.
    fn release(&self, _pod_uid: &str) {}
}

/// No API objects (standalone mode).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnvObjects;

/// Every object is missing: a reference fails unless it is optional (unlike
/// `NoVolumeSources`, whose errors an optional reference does not tolerate).
#[async_trait::async_trait]
impl ObjectSource for NoEnvObjects {
    async fn config_map(&self, _: &str, _: &str) -> kubelet_core::Result<Option<ConfigMap>> {
        Ok(None)
    }
    async fn secret(&self, _: &str, _: &str) -> kubelet_core::Result<Option<Secret>> {
        Ok(None)
    }
}

impl EnvObjects for NoEnvObjects {}

/// The pod's log directory: `<root>/<namespace>_<name>_<uid>`.
pub fn pod_log_dir(pod: &Pod, ctx: &NodeContext) -> PathBuf {
    let PodRef {
        namespace,
        name,
        uid,
    } = PodRef::of(pod);
    ctx.pod_logs_root.join(format!("{namespace}_{name}_{uid}"))
}

/// The sandbox configuration of `pod`, attempt `attempt`, on `runtime_handler` (empty
/// for the runtime's default).
///
/// Fails when the pod asks for its own user namespace (`hostUsers: false`) and has no
/// range in [`NodeContext::user_namespaces`], when the node's resolv.conf has a `nameserver` line without
/// an address, when the pod's hostname, subdomain or hostnameOverride is not a valid DNS
/// name, or when setHostnameAsFQDN makes a name longer than 64 characters, as upstream
/// does.
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    runtime_handler: &str,
    ctx: &NodeContext,
) -> Result<SandboxConfig> {
    let PodRef {
        namespace,
        name,
        uid,
    } = PodRef::of(pod);
    let spec = pod_spec(pod);
    let user_namespace = security::user_namespace(pod, ctx)?;
    // Upstream computes DNS before the hostname, so its errors come first.
    let dns = pod_dns_config(pod, ctx)?;
    let hostname = if uses_host_network(&spec) {
        // The runtime must leave the host's name alone.
        String::new()
    } else {
        let (hostname, domain) = pod_hostname_and_domain(pod, ctx)?;
        hosts::node_name_for_kernel(pod, hostname, &domain)?
    };
    Ok(SandboxConfig {
        metadata: SandboxMetadata {
            name,
            namespace,
            uid,
            attempt,
        },
        hostname,
        log_directory: pod_log_dir(pod, ctx).display().to_string(),
        dns: Some(dns),
        port_mappings: port_mappings(&spec),
        labels: labels::sandbox_labels(pod),
        annotations: labels::sandbox_annotations(pod),
        linux: security::sandbox_linux_config(
            pod,
            ctx.cgroup_driver,
            user_namespace,
            &ctx.security.default_sysctls,
        ),
        runtime_handler: runtime_handler.to_owned(),
    })
}

/// The configuration of `container` of `pod` for its `restart_count`-th run.
///
/// `pod_ips` are the sandbox's IPs as the runtime reported them; `mounts` are the
/// container's bind mounts in order (volumes, then the managed hosts file when
/// [`should_mount_hosts_file`] says so, then the termination log). The image's user is
/// not known here: call [`verify_run_as_non_root`] before creating the container and
/// [`apply_image_user`] on the result, as upstream does with the image status.
///
/// Fails, naming the object, when the environment references a ConfigMap, Secret or key
/// that does not exist and is not optional, an unsupported field or resource, or when a
/// resource quantity does not parse.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
    pod_ips: &[String],
    ctx: &NodeContext,
    objects: &PodObjects,
    mounts: Vec<Mount>,
) -> Result<ContainerConfig> {
    let envs = container_env(pod, container, pod_ips, ctx, objects)?;
    // Command and arguments see the final environment, not the one being built.
    let vars: BTreeMap<&str, &str> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |name: &str| vars.get(name).map(|v| (*v).to_owned());
    let expand_all = |items: &Option<Vec<String>>| -> Vec<String> {
        items
            .iter()
            .flatten()
            .map(|item| expand(item, lookup))
            .collect()
    };
    Ok(ContainerConfig {
        metadata: ContainerMetadata {
            name: container.name.clone(),
            attempt: restart_count,
        },
        image: container.image.clone().unwrap_or_default(),
        user_specified_image: container.image.clone().unwrap_or_default(),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs,
        mounts,
        // Device plugins' devices are added by the sync, which asks the device manager.
        devices: Vec::new(),
        cdi_devices: Vec::new(),
        labels: labels::container_labels(container, pod),
        annotations: labels::container_annotations(container, pod, restart_count),
        log_path: container_log_path(&container.name, restart_count),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        resources: Some(container_resources(pod, container, ctx)?),
        security: security::container_security(pod, container, ctx)?,
    })
}

/// `<name>/<restartCount>.log`, relative to the pod's log directory (upstream
/// `buildContainerLogsPath`, a `filepath.Join`).
fn container_log_path(name: &str, restart_count: u32) -> String {
    if name.is_empty() {
        format!("{restart_count}.log")
    } else {
        format!("{name}/{restart_count}.log")
    }
}

/// The port mappings of the pod's regular containers (upstream `MakePortMappings`): a
/// port whose name (or, unnamed, whose family, protocol, host IP and ports) repeats an
/// earlier one of the same container is dropped.
fn port_mappings(spec: &PodSpec) -> Vec<PortMapping> {
    let mut mappings = Vec::new();
    for container in &spec.containers {
        let mut seen = std::collections::HashSet::new();
        for port in container.ports.iter().flatten() {
            let protocol = port.protocol.as_deref().unwrap_or_default();
            let host_ip = port.host_ip.as_deref().unwrap_or_default();
            let host_port = port.host_port.unwrap_or(0);
            let name = match port.name.as_deref() {
                Some(name) if !name.is_empty() => name.to_owned(),
                _ => {
                    // The family keeps identical v4 and v6 rules apart.
                    let family = if host_ip.is_empty() {
                        "any"
                    } else if is_ipv6_string(host_ip) {
                        "v6"
                    } else {
                        "v4"
                    };
                    format!(
                        "{family}-{protocol}-{host_ip}:{}:{host_port}",
                        port.container_port
                    )
                }
            };
            if !seen.insert(name) {
                tracing::info!(
                    container = %container.name,
                    port = port.container_port,
                    "port name conflicted, it is defined more than once"
                );
                continue;
            }
            mappings.push(PortMapping {
                protocol: match protocol {
                    "UDP" => Protocol::Udp,
                    "SCTP" => Protocol::Sctp,
                    // Upstream defaults unknown protocols to TCP.
                    _ => Protocol::Tcp,
                },
                container_port: port.container_port,
                host_port,
                host_ip: host_ip.to_owned(),
            });
        }
    }
    mappings
}

/// The pod's spec, or an empty one for a pod without spec.
fn pod_spec(pod: &Pod) -> Cow<'_, PodSpec> {
    pod.spec
        .as_ref()
        .map_or_else(|| Cow::Owned(PodSpec::default()), Cow::Borrowed)
}

fn uses_host_network(spec: &PodSpec) -> bool {
    spec.host_network.unwrap_or(false)
}

/// The namespaces the pod's sandbox and containers share with the host.
fn namespace_options(spec: &PodSpec) -> NamespaceOptions {
    NamespaceOptions {
        host_network: uses_host_network(spec),
        host_pid: spec.host_pid.unwrap_or(false),
        host_ipc: spec.host_ipc.unwrap_or(false),
        share_process_namespace: spec.share_process_namespace.unwrap_or(false),
        user_namespace: None,
    }
}

/// The pod's IPs as upstream reports them (`generateAPIPodStatus`) and hands to env,
/// the downward API, hooks and probes: the sandbox's IP, or for a host-network pod the
/// node's IPs (primary first, then the other family).
pub fn pod_ips(pod: &Pod, sandbox_ip: &str, ctx: &NodeContext) -> Vec<String> {
    if uses_host_network(&pod_spec(pod)) {
        node_ips(ctx).iter().map(IpAddr::to_string).collect()
    } else if sandbox_ip.is_empty() {
        Vec::new()
    } else {
        vec![sandbox_ip.to_owned()]
    }
}

/// The first of [`pod_ips`], empty when the pod has none yet.
pub fn pod_ip(pod: &Pod, sandbox_ip: &str, ctx: &NodeContext) -> String {
    pod_ips(pod, sandbox_ip, ctx)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// The node's IPs as upstream uses them: the primary and the first of the other family,
/// if any (upstream `GetNodeHostIPs`, and the dual-stack pair of `--node-ip`).
fn node_ips(ctx: &NodeContext) -> Vec<IpAddr> {
    let ips: Vec<IpAddr> = ctx.host_ips.iter().map(IpAddr::to_canonical).collect();
    let Some(primary) = ips.first().copied() else {
        return Vec::new();
    };
    let secondary = ips.iter().find(|ip| ip.is_ipv6() != primary.is_ipv6());
    std::iter::once(primary).chain(secondary.copied()).collect()
}

/// Go's `net.ParseIP` as Kubernetes uses it (`ParseIPSloppy`): IPv4 octets may carry
/// leading zeros (read as decimal), and IPv4-mapped IPv6 addresses are IPv4.
fn parse_ip_sloppy(text: &str) -> Option<IpAddr> {
    let ip = text.parse::<IpAddr>().ok().or_else(|| {
        let octets: Vec<u8> = text
            .split('.')
            .map(|part| {
                if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                part.parse::<u8>().ok()
            })
            .collect::<Option<_>>()?;
        let octets: [u8; 4] = octets.try_into().ok()?;
        Some(IpAddr::from(octets))
    })?;
    Some(ip.to_canonical())
}

/// Upstream `IsIPv6String`: parses and is not IPv4 (mapped addresses count as IPv4).
fn is_ipv6_string(text: &str) -> bool {
    matches!(parse_ip_sloppy(text), Some(IpAddr::V6(_)))
}

/// An ephemeral container as the container it runs as: the same fields (upstream's
/// `EphemeralContainerCommon`), and never restarted.
pub fn ephemeral_as_container(ephemeral: &EphemeralContainer) -> Container {
    let mut container: Container = serde_json::to_value(ephemeral)
        .ok()
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_else(|| Container {
            name: ephemeral.name.clone(),
            ..Default::default()
        });
    container.restart_policy = Some(crate::restart::NEVER.to_owned());
    container
}

/// The pod's init and regular containers, in that order. Ephemeral containers are not
/// run by this kubelet, so they have no settings to check.
fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
}

/// An [`Error::Spec`] about `pod` (and `container`, empty for the sandbox).
fn spec_error(pod: &Pod, container: &str, reason: impl Into<String>) -> Error {
    Error::Spec {
        pod: PodRef::of(pod).to_string(),
        container: container.to_owned(),
        reason: reason.into(),
    }
}

/// The field path of a container of `pod`, e.g. `spec.containers[0]`, for errors.
fn container_field(pod: &Pod, name: &str) -> String {
    let spec = pod_spec(pod);
    let position = |list: &[Container]| list.iter().position(|c| c.name == name);
    if let Some(i) = position(&spec.containers) {
        format!("spec.containers[{i}]")
    } else if let Some(i) = position(spec.init_containers.as_deref().unwrap_or_default()) {
        format!("spec.initContainers[{i}]")
    } else if let Some(i) = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .position(|c| c.name == name)
    {
        format!("spec.ephemeralContainers[{i}]")
    } else {
        format!("container {name:?}")
    }
}

#[cfg(test)]
mod tests;
