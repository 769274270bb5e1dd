//! Turning a pod and its containers into runtime configurations.
//!
//! PROVISIONAL: a minimal translation (identity, labels, command, args, log path) so the
//! pod workers can be built against the final signatures; the complete translation
//! (environment, DNS, hosts file, security context, resources) replaces it.

use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kubelet_core::{
    ContainerConfig, ContainerMetadata, LinuxSandboxConfig, Mount, NamespaceOptions, SandboxConfig,
    SandboxMetadata, labels,
};

use crate::Result;

/// What the translation needs to know about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContext {
    /// Node name (lower case), as registered.
    pub node_name: String,
    /// The node's IP addresses, primary first (for `status.hostIP` references).
    pub host_ips: Vec<IpAddr>,
    /// Root of pod log directories, upstream `/var/log/pods`.
    pub pod_logs_root: PathBuf,
    /// Root of per-pod directories, upstream `/var/lib/kubelet/pods`.
    pub pods_dir: PathBuf,
    /// `clusterDNS` from the kubelet configuration.
    pub cluster_dns: Vec<IpAddr>,
    /// `clusterDomain` from the kubelet configuration.
    pub cluster_domain: String,
    /// Contents of the node's resolv.conf (`resolvConf`), for dnsPolicy Default.
    pub host_resolv_conf: String,
    /// Node allocatable CPU in millicores, the value of unset CPU limits in
    /// resourceFieldRef.
    pub allocatable_milli_cpu: u64,
    /// Node allocatable memory in bytes, the value of unset memory limits.
    pub allocatable_memory: u64,
}

/// ConfigMaps and Secrets that environment variables may reference; standalone mode has
/// none.
pub trait EnvObjects: Send + Sync {
    /// The ConfigMap `namespace/name`, if available.
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap>;
    /// The Secret `namespace/name`, if available.
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret>;
}

/// No API objects (standalone mode).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnvObjects;

impl EnvObjects for NoEnvObjects {
    fn config_map(&self, _: &str, _: &str) -> Option<ConfigMap> {
        None
    }
    fn secret(&self, _: &str, _: &str) -> Option<Secret> {
        None
    }
}

fn meta(pod: &Pod) -> (String, String, String) {
    let m = &pod.metadata;
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    )
}

/// The pod's log directory: `<root>/<namespace>_<name>_<uid>`.
pub fn pod_log_dir(pod: &Pod, ctx: &NodeContext) -> PathBuf {
    let (namespace, name, uid) = meta(pod);
    ctx.pod_logs_root.join(format!("{namespace}_{name}_{uid}"))
}

/// The sandbox configuration of `pod`, attempt `attempt`.
pub fn sandbox_config(pod: &Pod, attempt: u32, ctx: &NodeContext) -> Result<SandboxConfig> {
    let (namespace, name, uid) = meta(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    Ok(SandboxConfig {
        metadata: SandboxMetadata {
            name: name.clone(),
            namespace,
            uid,
            attempt,
        },
        hostname: if host_network {
            String::new()
        } else {
            spec.hostname.unwrap_or(name)
        },
        log_directory: pod_log_dir(pod, ctx).display().to_string(),
        labels: labels::sandbox_labels(pod),
        annotations: labels::sandbox_annotations(pod),
        linux: LinuxSandboxConfig {
            namespaces: NamespaceOptions {
                host_network,
                host_pid: spec.host_pid.unwrap_or(false),
                host_ipc: spec.host_ipc.unwrap_or(false),
                share_process_namespace: spec.share_process_namespace.unwrap_or(false),
            },
            ..Default::default()
        },
        ..Default::default()
    })
}

/// The configuration of `container` of `pod` for its `restart_count`-th run.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
    _pod_ips: &[String],
    _ctx: &NodeContext,
    _env_objects: &dyn EnvObjects,
    mounts: Vec<Mount>,
) -> Result<ContainerConfig> {
    let spec = pod.spec.clone().unwrap_or_default();
    Ok(ContainerConfig {
        metadata: ContainerMetadata {
            name: container.name.clone(),
            attempt: restart_count,
        },
        image: container.image.clone().unwrap_or_default(),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect(),
        mounts,
        labels: labels::container_labels(container, pod),
        annotations: labels::container_annotations(container, pod, restart_count),
        log_path: format!("{}/{restart_count}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        security: kubelet_core::ContainerSecurity {
            namespaces: NamespaceOptions {
                host_network: spec.host_network.unwrap_or(false),
                host_pid: spec.host_pid.unwrap_or(false),
                host_ipc: spec.host_ipc.unwrap_or(false),
                share_process_namespace: spec.share_process_namespace.unwrap_or(false),
            },
            ..Default::default()
        },
        ..Default::default()
    })
}
