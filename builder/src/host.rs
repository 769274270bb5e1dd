//! Facts about this machine the kubelet needs: its name, addresses and size.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::{Error, Result};

/// The node name: `--hostname-override`, else the host name, lower-cased as upstream.
pub fn node_name(hostname_override: Option<&str>) -> Result<String> {
    let name = match hostname_override.filter(|h| !h.trim().is_empty()) {
        Some(name) => name.trim().to_owned(),
        None => nix::unistd::gethostname()
            .map_err(|e| Error::Host {
                what: "reading the host name (set --hostname-override)",
                source: e.into(),
            })?
            .to_string_lossy()
            .into_owned(),
    };
    Ok(name.to_lowercase())
}

/// The node's addresses: `--node-ip`, else the IPv4 address of the interface holding the
/// default route, else of the first non-loopback interface.
pub fn node_ips(node_ip: Option<&str>) -> Result<Vec<IpAddr>> {
    if let Some(list) = node_ip.filter(|s| !s.is_empty()) {
        return list
            .split(',')
            .map(|ip| {
                ip.trim().parse().map_err(|_| Error::Config {
                    field: "--node-ip",
                    reason: format!("{ip:?} is not an IP address"),
                })
            })
            .collect();
    }
    let default_interface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|routes| {
            routes.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(1) == Some(&"00000000")).then(|| fields[0].to_owned())
            })
        });
    let addresses: Vec<(String, Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .map_err(|e| Error::Host {
            what: "listing network interfaces (set --node-ip)",
            source: e.into(),
        })?
        .filter_map(|ifa| {
            let ip = ifa.address?.as_sockaddr_in()?.ip();
            (!ip.is_loopback()).then_some((ifa.interface_name, ip))
        })
        .collect();
    let chosen = default_interface
        .and_then(|name| addresses.iter().find(|(n, _)| *n == name))
        .or_else(|| addresses.first())
        .map(|(_, ip)| IpAddr::V4(*ip));
    Ok(chosen.into_iter().collect())
}

/// CPU of the machine in millicores.
pub fn milli_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| u64::try_from(n.get()).unwrap_or(1) * 1000)
        .unwrap_or(1000)
}

/// Memory of the machine in bytes, from /proc/meminfo (0 when it cannot be read).
pub fn memory_bytes() -> u64 {
    kubelet_stats::procfs::read_meminfo(Path::new("/proc")).map_or(0, |m| m.mem_total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_is_lower_case_override() {
        assert_eq!(node_name(Some("Node-A")).ok().as_deref(), Some("node-a"));
    }

    #[test]
    fn node_ip_flag_is_parsed_and_checked() {
        let ips = node_ips(Some("10.88.0.1,fd00::1")).expect("valid");
        assert_eq!(ips.len(), 2);
        let err = node_ips(Some("10.88.0.300")).expect_err("invalid");
        assert!(err.to_string().contains("--node-ip"), "{err}");
    }

    #[test]
    fn machine_size_is_read() {
        assert!(milli_cpus() >= 1000);
        assert!(memory_bytes() > 0);
    }
}
