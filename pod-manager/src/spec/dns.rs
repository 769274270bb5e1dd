//! A pod's DNS configuration (upstream `pkg/kubelet/network/dns`, `GetPodDNS`).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};
use kubelet_core::DnsConfig;

use super::{NodeContext, node_ips, pod_spec, spec_error, uses_host_network};
use crate::Result;

/// Options every ClusterFirst pod gets.
const CLUSTER_FIRST_OPTIONS: &[&str] = &["ndots:5"];
/// Upstream's validation limits (`MaxDNSNameservers`, `MaxDNSSearchPaths`,
/// `MaxDNSSearchListChars`, `DNS1123SubdomainMaxLength`).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_LINE_CHARS: usize = 2048;
const MAX_SEARCH_PATH_CHARS: usize = 253;
/// Upstream reads at most 10 MiB of resolv.conf.
const MAX_RESOLV_CONF_BYTES: usize = 10 << 20;

/// Where a pod's DNS settings start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DnsType {
    /// The cluster DNS service, with the cluster's search path.
    Cluster,
    /// The node's resolv.conf.
    Host,
    /// Nothing: only the pod's dnsConfig.
    None,
}

/// The DNS configuration of `pod`'s sandbox, as upstream `GetPodDNS` builds it.
///
/// - `ClusterFirst` (on the pod network) and `ClusterFirstWithHostNet`: the cluster DNS
///   servers only, searches `<ns>.svc.<domain> svc.<domain> <domain>` then the node's,
///   options `ndots:5`. Without `clusterDNS` configured, upstream falls back to `Default`.
/// - `Default`, and `ClusterFirst` with hostNetwork: the node's resolv.conf; when the
///   kubelet's `resolvConf` is empty, a localhost nameserver per node IP family and
///   search `.`.
/// - `None`: nothing but the pod's dnsConfig.
///
/// The pod's `dnsConfig` is then merged in (duplicates dropped, options by name) and the
/// result cut to 3 nameservers, 32 search paths of at most 253 characters and a search
/// line of at most 2048 characters, with a warning, as upstream does. An unknown policy
/// is treated as ClusterFirst. The node's resolv.conf is parsed for every policy, so a
/// `nameserver` line without an address fails every pod, as upstream.
pub fn pod_dns_config(pod: &Pod, ctx: &NodeContext) -> Result<DnsConfig> {
    let mut config = if ctx.resolv_conf_disabled {
        DnsConfig::default()
    } else {
        parse_resolv_conf(&ctx.host_resolv_conf).map_err(|reason| {
            spec_error(
                pod,
                "",
                format!("Encountered error while parsing resolv conf file. Error: {reason}"),
            )
        })?
    };

    let spec = pod_spec(pod);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let dns_type = match spec.dns_policy.as_deref() {
        Some("None") => DnsType::None,
        Some("ClusterFirstWithHostNet") => DnsType::Cluster,
        Some("ClusterFirst") if !uses_host_network(&spec) => DnsType::Cluster,
        // ClusterFirst on the host network cannot reach the cluster DNS service's IP
        // through the pod network, so it uses the node's settings.
        Some("ClusterFirst" | "Default") => DnsType::Host,
        policy => {
            tracing::warn!(
                pod = %kubelet_core::PodRef::of(pod),
                ?policy,
                "invalid dnsPolicy, falling back to ClusterFirst"
            );
            DnsType::Cluster
        }
    };

    match dns_type {
        DnsType::None => config = DnsConfig::default(),
        DnsType::Cluster if !ctx.cluster_dns.is_empty() => {
            config.servers = ctx.cluster_dns.iter().map(IpAddr::to_string).collect();
            config.searches = cluster_searches(&config.searches, namespace, ctx);
            config.options = CLUSTER_FIRST_OPTIONS
                .iter()
                .map(|o| (*o).to_owned())
                .collect();
        }
        DnsType::Cluster | DnsType::Host => {
            if dns_type == DnsType::Cluster {
                tracing::warn!(
                    pod = %kubelet_core::PodRef::of(pod),
                    "kubelet does not have ClusterDNS IP configured and cannot create Pod \
                     using \"ClusterFirst\" policy. Falling back to \"Default\" policy."
                );
            }
            if ctx.resolv_conf_disabled {
                // A localhost nameserver is what a resolver without nameservers would use.
                for ip in node_ips(ctx) {
                    let loopback = if ip.is_ipv6() { "::1" } else { "127.0.0.1" };
                    config.servers.push(loopback.to_owned());
                }
                if config.servers.is_empty() {
                    config.servers.push("127.0.0.1".to_owned());
                }
                config.searches = vec![".".to_owned()];
            }
        }
    }

    if let Some(pod_config) = &spec.dns_config {
        append_pod_dns_config(&mut config, pod_config);
    }
    fit_limits(pod, &mut config);
    Ok(config)
}

/// `<ns>.svc.<domain> svc.<domain> <domain>` followed by the node's searches, without
/// duplicates; just the node's when no cluster domain is configured.
fn cluster_searches(host: &[String], namespace: &str, ctx: &NodeContext) -> Vec<String> {
    if ctx.cluster_domain.is_empty() {
        return host.to_vec();
    }
    let domain = &ctx.cluster_domain;
    let cluster = [
        format!("{namespace}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.clone(),
    ];
    without_duplicates(cluster.into_iter().chain(host.iter().cloned()))
}

fn without_duplicates(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

/// Merges the pod's dnsConfig (upstream `appendDNSConfig`).
fn append_pod_dns_config(config: &mut DnsConfig, pod_config: &PodDNSConfig) {
    config.servers = without_duplicates(
        config
            .servers
            .drain(..)
            .chain(pod_config.nameservers.iter().flatten().cloned()),
    );
    config.searches = without_duplicates(
        config
            .searches
            .drain(..)
            .chain(pod_config.searches.iter().flatten().cloned()),
    );
    // Options merge by name, the pod's value winning; upstream rebuilds them from a Go
    // map (random order), here they keep the order names first appear in.
    let mut options: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match options.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_owned(),
        None => options.push((name.to_owned(), value.to_owned())),
    };
    for option in &config.options {
        let (name, value) = option.split_once(':').unwrap_or((option, ""));
        set(name, value);
    }
    for option in pod_config.options.iter().flatten() {
        set(
            option.name.as_deref().unwrap_or_default(),
            option.value.as_deref().unwrap_or_default(),
        );
    }
    config.options = options
        .into_iter()
        .map(|(name, value)| {
            if value.is_empty() {
                name
            } else {
                format!("{name}:{value}")
            }
        })
        .collect();
}

/// Cuts nameservers and searches to what resolvers accept (upstream
/// `formDNSConfigFitsLimits`), warning when something is dropped.
fn fit_limits(pod: &Pod, config: &mut DnsConfig) {
    if config.servers.len() > MAX_NAMESERVERS {
        config.servers.truncate(MAX_NAMESERVERS);
        tracing::warn!(
            pod = %kubelet_core::PodRef::of(pod),
            "Nameserver limits were exceeded, some nameservers have been omitted, the \
             applied nameserver line is: {}",
            config.servers.join(" ")
        );
    }

    let mut exceeded = false;
    if config.searches.len() > MAX_SEARCH_PATHS {
        config.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    // Some resolvers (glibc 2.28) abort on a search path longer than 255 characters.
    let before = config.searches.len();
    config.searches.retain(|s| s.len() <= MAX_SEARCH_PATH_CHARS);
    exceeded |= config.searches.len() != before;
    let line_len = config.searches.join(" ").len();
    if line_len > MAX_SEARCH_LINE_CHARS {
        // Drop whole domains from the end until the line fits.
        let mut cut = 0;
        let mut kept = config.searches.len();
        while kept > 0 {
            cut += config.searches[kept - 1].len() + 1;
            kept -= 1;
            if line_len - cut.min(line_len) <= MAX_SEARCH_LINE_CHARS {
                break;
            }
        }
        config.searches.truncate(kept);
        exceeded = true;
    }
    if exceeded {
        tracing::warn!(
            pod = %kubelet_core::PodRef::of(pod),
            "Search Line limits were exceeded, some search paths have been omitted, the \
             applied search line is: {}",
            config.searches.join(" ")
        );
    }
}

/// Parses a resolv.conf as upstream `parseResolvConf`: `nameserver` lines accumulate, the
/// last `search` line wins (without `.` entries and trailing dots), `options` accumulate
/// with a later option replacing an earlier one of the same name. Lines starting with
/// `#` are comments.
fn parse_resolv_conf(text: &str) -> std::result::Result<DnsConfig, String> {
    if text.len() > MAX_RESOLV_CONF_BYTES {
        return Err("the read limit is reached".to_owned());
    }
    let mut config = DnsConfig::default();
    let mut empty_nameserver = false;
    for line in text.split('\n') {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["nameserver", server, ..] => config.servers.push((*server).to_owned()),
            ["nameserver"] => empty_nameserver = true,
            ["search", searches @ ..] => {
                // The same domain with and without a trailing dot counts once.
                config.searches = searches
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.strip_suffix('.').unwrap_or(s).to_owned())
                    .collect();
            }
            ["options", options @ ..] => {
                for option in options {
                    let name = option.split(':').next().unwrap_or_default();
                    match config
                        .options
                        .iter_mut()
                        .find(|o| o.split(':').next().unwrap_or_default() == name)
                    {
                        Some(existing) => *existing = (*option).to_owned(),
                        None => config.options.push((*option).to_owned()),
                    }
                }
            }
            _ => {}
        }
    }
    if empty_nameserver {
        // Upstream's aggregate of identical errors prints one.
        return Err("nameserver list is empty ".to_owned());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_parses_like_upstream() {
        let text = "# comment\n\
                    nameserver 10.0.0.1\n\
                    search a.example. b.example\n\
                    nameserver   10.0.0.2  extra\n\
                    options ndots:2 timeout:1\n\
                    search c.example . d.example.\n\
                    \toptions ndots:3 rotate\n\
                    domain ignored.example\n";
        let config = parse_resolv_conf(text).expect("valid resolv.conf");
        assert_eq!(config.servers, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(config.searches, ["c.example", "d.example"]);
        assert_eq!(config.options, ["ndots:3", "timeout:1", "rotate"]);

        assert_eq!(parse_resolv_conf(""), Ok(DnsConfig::default()));
        assert_eq!(
            parse_resolv_conf("nameserver\nnameserver\n"),
            Err("nameserver list is empty ".to_owned())
        );
    }

    #[test]
    fn pod_options_merge_by_name() {
        let mut config = DnsConfig {
            options: vec!["ndots:5".into(), "edns0".into(), "timeout:".into()],
            ..Default::default()
        };
        let pod_config = PodDNSConfig {
            options: Some(vec![
                k8s_openapi::api::core::v1::PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                k8s_openapi::api::core::v1::PodDNSConfigOption {
                    name: Some("single-request".into()),
                    value: None,
                },
            ]),
            ..Default::default()
        };
        append_pod_dns_config(&mut config, &pod_config);
        assert_eq!(
            config.options,
            ["ndots:2", "edns0", "timeout", "single-request"]
        );
    }
}
