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

/// Upstream's `failSwapOn` check: with it (the default) a node whose `/proc/swaps` lists
/// a swap device does not start, with upstream's message.
pub(crate) async fn check_swap(fail_swap_on: bool, proc_swaps: &Path) -> Result<()> {
    if !fail_swap_on {
        return Ok(());
    }
    let swaps = match tokio::fs::read_to_string(proc_swaps).await {
        Ok(text) => text,
        // No swap accounting in this kernel: no swap.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Host {
                what: "reading /proc/swaps",
                source,
            });
        }
    };
    let devices: Vec<&str> = swaps
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if devices.is_empty() {
        return Ok(());
    }
    Err(Error::Config {
        field: "failSwapOn (--fail-swap-on)",
        reason: format!(
            "running with swap on is not supported, please disable swap or set --fail-swap-on \
             flag to false. /proc/swaps contained: {devices:?}"
        ),
    })
}

#[cfg(test)]
mod swap_tests {
    use super::*;

    #[tokio::test]
    async fn swap_on_stops_start_up_unless_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let swaps = dir.path().join("swaps");
        std::fs::write(&swaps, "Filename\tType\tSize\tUsed\tPriority\n").expect("write");
        check_swap(true, &swaps).await.expect("no swap");
        std::fs::write(
            &swaps,
            "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1024 0 -2\n",
        )
        .expect("write");
        let err = check_swap(true, &swaps).await.expect_err("swap on");
        assert!(
            err.to_string()
                .contains("running with swap on is not supported"),
            "{err}"
        );
        check_swap(false, &swaps).await.expect("allowed");
        check_swap(true, &dir.path().join("none"))
            .await
            .expect("no file");
    }
}
