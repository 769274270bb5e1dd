//! A pod's hostname and domain (upstream `GeneratePodHostNameAndDomain`) and its
//! Kubernetes-managed `/etc/hosts` (upstream `makeHostsMount`, `ensureHostsFile`).

use std::fmt::Write as _;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, HostAlias, Pod};
use kubelet_core::{Mount, MountPropagation, PodRef};

use super::{NodeContext, pod_spec, spec_error, uses_host_network};
use crate::Result;
use kubelet_core::validation::{
    dns1123_label_errors as is_dns1123_label, dns1123_subdomain_errors as is_dns1123_subdomain,
};

/// Where the managed hosts file goes in a container.
const ETC_HOSTS: &str = "/etc/hosts";
/// The Linux nodename field holds 64 bytes with the terminating NUL.
const HOSTNAME_MAX_LEN: usize = 63;
const FQDN_MAX_LEN: usize = 64;

/// The pod's short hostname and its domain, as upstream `GeneratePodHostNameAndDomain`:
///
/// - `hostnameOverride`, when set, must be a DNS subdomain; it is the hostname and the
///   domain is empty;
/// - otherwise the hostname is `spec.hostname` (a DNS label) or the pod name, and the
///   domain `<subdomain>.<namespace>.svc.<clusterDomain>` when `spec.subdomain` (a DNS
///   label) is set.
///
/// Hostnames longer than 63 characters are truncated, then stripped of trailing `-` and
/// `.`.
pub fn pod_hostname_and_domain(pod: &Pod, ctx: &NodeContext) -> Result<(String, String)> {
    let spec = pod_spec(pod);
    let PodRef {
        namespace, name, ..
    } = PodRef::of(pod);
    if let Some(hostname) = spec.hostname_override.as_deref() {
        let errors = is_dns1123_subdomain(hostname);
        if !errors.is_empty() {
            return Err(spec_error(
                pod,
                "",
                format!(
                    "pod HostnameOverride {hostname:?} is not a valid DNS subdomain: {}",
                    errors.join(";")
                ),
            ));
        }
        return Ok((truncate_hostname(pod, hostname)?, String::new()));
    }

    let mut hostname = name.as_str();
    if let Some(requested) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        let errors = is_dns1123_label(requested);
        if !errors.is_empty() {
            return Err(spec_error(
                pod,
                "",
                format!(
                    "pod Hostname {requested:?} is not a valid DNS label: {}",
                    errors.join(";")
                ),
            ));
        }
        hostname = requested;
    }
    let hostname = truncate_hostname(pod, hostname)?;

    let mut domain = String::new();
    if let Some(subdomain) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        let errors = is_dns1123_label(subdomain);
        if !errors.is_empty() {
            return Err(spec_error(
                pod,
                "",
                format!(
                    "pod Subdomain {subdomain:?} is not a valid DNS label: {}",
                    errors.join(";")
                ),
            ));
        }
        domain = format!("{subdomain}.{namespace}.svc.{}", ctx.cluster_domain);
    }
    Ok((hostname, domain))
}

/// Caps a hostname at 63 characters (upstream `truncatePodHostnameIfNeeded`).
fn truncate_hostname(pod: &Pod, hostname: &str) -> Result<String> {
    if hostname.len() <= HOSTNAME_MAX_LEN {
        return Ok(hostname.to_owned());
    }
    // Validated names are ASCII; `get` keeps a non-ASCII one from panicking.
    let truncated = hostname
        .get(..HOSTNAME_MAX_LEN)
        .unwrap_or(hostname)
        .trim_end_matches(['-', '.']);
    tracing::warn!(
        pod = %PodRef::of(pod),
        truncated,
        "hostname for pod was too long, truncated it"
    );
    if truncated.is_empty() {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        return Err(spec_error(
            pod,
            "",
            format!("hostname for pod {name:?} was invalid: {hostname:?}"),
        ));
    }
    Ok(truncated.to_owned())
}

/// The kernel nodename of the sandbox (upstream `GetNodenameForKernel`): the FQDN
/// `<hostname>.<domain>` when the pod sets setHostnameAsFQDN and has a domain, else the
/// short hostname.
pub(super) fn node_name_for_kernel(pod: &Pod, hostname: String, domain: &str) -> Result<String> {
    let spec = pod_spec(pod);
    if domain.is_empty() || spec.set_hostname_as_fqdn != Some(true) {
        return Ok(hostname);
    }
    let fqdn = format!("{hostname}.{domain}");
    if fqdn.len() > FQDN_MAX_LEN {
        return Err(spec_error(
            pod,
            "",
            format!(
                "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} \
                 is too long ({FQDN_MAX_LEN} characters is the max, {} characters requested)",
                fqdn.len()
            ),
        ));
    }
    Ok(fqdn)
}

/// Whether the managed hosts file is mounted into `container` (upstream
/// `shouldMountHostsFile` and `makeMounts`): for host-network pods always, for other pods
/// once the sandbox has an IP, and never when the container mounts a volume at
/// `/etc/hosts` itself.
pub fn should_mount_hosts_file(pod: &Pod, container: &Container, pod_ips: &[String]) -> bool {
    let spec = pod_spec(pod);
    let pod_ready = !pod_ips.is_empty() || uses_host_network(&spec);
    pod_ready
        && !container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == ETC_HOSTS)
}

/// Where the pod's managed hosts file lives on the node: `<pods_dir>/<uid>/etc-hosts`.
pub fn hosts_file_path(pod: &Pod, ctx: &NodeContext) -> PathBuf {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    ctx.pods_dir.join(uid).join("etc-hosts")
}

/// The bind mount of the managed hosts file at `/etc/hosts`, read-write and relabelled
/// for SELinux as upstream mounts it (upstream clears the relabel flag when SELinux is
/// disabled on the node; the runtime ignores it then).
pub fn hosts_file_mount(pod: &Pod, ctx: &NodeContext) -> Mount {
    Mount {
        container_path: ETC_HOSTS.to_owned(),
        host_path: hosts_file_path(pod, ctx).display().to_string(),
        readonly: false,
        selinux_relabel: true,
        propagation: MountPropagation::Private,
    }
}

/// The contents of the pod's managed hosts file (upstream `ensureHostsFile`); the caller
/// writes it to [`hosts_file_path`] with mode 0644.
///
/// A host-network pod gets the node's hosts file (`node_hosts_file`, the caller reads
/// `/etc/hosts`) under a header; any other pod gets localhost entries and one line per
/// pod IP naming its hostname (and FQDN when it has a subdomain). Both end with the
/// pod's hostAliases.
pub fn hosts_file_content(
    pod: &Pod,
    pod_ips: &[String],
    ctx: &NodeContext,
    node_hosts_file: &str,
) -> Result<String> {
    let spec = pod_spec(pod);
    let aliases = spec.host_aliases.as_deref().unwrap_or_default();
    let mut text = String::new();
    if uses_host_network(&spec) {
        text.push_str("# Kubernetes-managed hosts file (host network).\n");
        text.push_str(node_hosts_file);
    } else {
        let (hostname, domain) = pod_hostname_and_domain(pod, ctx)?;
        text.push_str("# Kubernetes-managed hosts file.\n");
        text.push_str("127.0.0.1\tlocalhost\n");
        text.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
        text.push_str("fe00::0\tip6-localnet\n");
        text.push_str("fe00::0\tip6-mcastprefix\n");
        text.push_str("fe00::1\tip6-allnodes\n");
        text.push_str("fe00::2\tip6-allrouters\n");
        for ip in pod_ips {
            if domain.is_empty() {
                let _ = writeln!(text, "{ip}\t{hostname}");
            } else {
                let _ = writeln!(text, "{ip}\t{hostname}.{domain}\t{hostname}");
            }
        }
    }
    push_host_aliases(&mut text, aliases);
    Ok(text)
}

fn push_host_aliases(text: &mut String, aliases: &[HostAlias]) {
    if aliases.is_empty() {
        return;
    }
    text.push_str("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        let names = alias.hostnames.as_deref().unwrap_or_default().join("\t");
        let _ = writeln!(text, "{}\t{names}", alias.ip);
    }
}
