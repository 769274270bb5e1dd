//! Readers of `/proc` files. Each takes the proc root so tests can use a fake tree.

use std::path::Path;

use crate::error::{Error, Result};
use crate::summary::{InterfaceStats, NetworkStats, RlimitStats};
use crate::time::Time;

/// The interface whose counters upstream puts inline in [`NetworkStats`].
pub const DEFAULT_INTERFACE: &str = "eth0";

/// Interfaces cAdvisor leaves out of network stats: loopback and the host ends of
/// container links.
const IGNORED_INTERFACE_PREFIXES: [&str; 4] = ["lo", "veth", "docker", "nerdctl"];

/// Memory and swap of the machine, from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub mem_total: u64,
    /// `MemFree`.
    pub mem_free: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
}

pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Parses `<proc_root>/meminfo`.
pub fn read_meminfo(proc_root: &Path) -> Result<MemInfo> {
    let path = proc_root.join("meminfo");
    let text = read_to_string(&path)?;
    let mut info = MemInfo::default();
    let mut found_total = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let mut parts = value.split_whitespace();
        let Some(Ok(number)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => number.saturating_mul(1024),
            _ => number,
        };
        match key {
            "MemTotal" => {
                info.mem_total = bytes;
                found_total = true;
            }
            "MemFree" => info.mem_free = bytes,
            "SwapTotal" => info.swap_total = bytes,
            "SwapFree" => info.swap_free = bytes,
            _ => {}
        }
    }
    if !found_total {
        return Err(Error::parse(path, "no MemTotal line"));
    }
    Ok(info)
}

/// Parses a `net/dev` file (`<proc_root>/net/dev` for the host,
/// `<proc_root>/<pid>/net/dev` for a process's network namespace) into network stats:
/// every interface but loopback and container link ends, with `eth0` inline.
pub fn read_net_dev(path: &Path, time: Time) -> Result<NetworkStats> {
    let text = read_to_string(path)?;
    parse_net_dev(&text, time).map_err(|reason| Error::parse(path, reason))
}

fn parse_net_dev(text: &str, time: Time) -> Result<NetworkStats, String> {
    let mut stats = NetworkStats {
        time,
        ..Default::default()
    };
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if IGNORED_INTERFACE_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            continue;
        }
        let fields: Vec<u64> = counters
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("interface {name}: {e}"))?;
        if fields.len() < 16 {
            return Err(format!(
                "interface {name}: {} counters, expected 16",
                fields.len()
            ));
        }
        let iface = InterfaceStats {
            name: name.to_owned(),
            rx_bytes: Some(fields[0]),
            rx_errors: Some(fields[2]),
            tx_bytes: Some(fields[8]),
            tx_errors: Some(fields[10]),
        };
        if name == DEFAULT_INTERFACE {
            stats.default_interface = iface.clone();
        }
        stats.interfaces.push(iface);
    }
    Ok(stats)
}

/// Process limits as upstream's `pidlimit.Stats`: `maxpid` is the smaller of
/// `sys/kernel/pid_max` and `sys/kernel/threads-max`, `curproc` the number of
/// scheduling entities from `loadavg`.
pub fn read_rlimit(proc_root: &Path, time: Time) -> Result<RlimitStats> {
    let mut max_pid: Option<i64> = None;
    for name in ["sys/kernel/pid_max", "sys/kernel/threads-max"] {
        if let Ok(text) = std::fs::read_to_string(proc_root.join(name))
            && let Ok(limit) = text.trim().parse::<i64>()
        {
            max_pid = Some(max_pid.map_or(limit, |m| m.min(limit)));
        }
    }
    let path = proc_root.join("loadavg");
    let text = read_to_string(&path)?;
    let current = text
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split_once('/'))
        .and_then(|(_, total)| total.parse::<i64>().ok())
        .ok_or_else(|| Error::parse(&path, "no running/total field"))?;
    Ok(RlimitStats {
        time,
        max_pid,
        num_of_running_processes: Some(current),
    })
}

/// Boot time of the machine, from the `btime` line of `<proc_root>/stat`.
pub fn read_boot_time(proc_root: &Path) -> Result<Time> {
    let path = proc_root.join("stat");
    let text = read_to_string(&path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|secs| Time::from_unix_nanos(secs.saturating_mul(1_000_000_000)))
        .ok_or_else(|| Error::parse(path, "no btime line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456    100    2    0    0     0          0         0    654321    90    3    0    0     0       0          0
vethab12:  5      1    0    0    0     0          0         0        5       1    0    0    0     0       0          0
  ens3: 999       9    1    0    0     0          0         0      888       8    4    0    0     0       0          0
";

    #[test]
    fn net_dev_skips_loopback_and_puts_eth0_inline() {
        let stats = parse_net_dev(NET_DEV, Time::from_unix_nanos(1)).expect("parse");
        assert_eq!(stats.default_interface.name, "eth0");
        assert_eq!(stats.default_interface.rx_bytes, Some(123_456));
        assert_eq!(stats.default_interface.rx_errors, Some(2));
        assert_eq!(stats.default_interface.tx_bytes, Some(654_321));
        assert_eq!(stats.default_interface.tx_errors, Some(3));
        let names: Vec<_> = stats.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "ens3"]);
        assert!(parse_net_dev("h\nh\neth0: 1 2 x\n", Time::default()).is_err());
    }

    #[test]
    fn reads_meminfo_rlimit_and_boot_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::write(
            p.join("meminfo"),
            "MemTotal:        2048 kB\nMemFree:  1024 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .expect("write");
        std::fs::create_dir_all(p.join("sys/kernel")).expect("mkdir");
        std::fs::write(p.join("sys/kernel/pid_max"), "4194304\n").expect("write");
        std::fs::write(p.join("sys/kernel/threads-max"), "31447\n").expect("write");
        std::fs::write(p.join("loadavg"), "0.08 0.03 0.01 2/182 12345\n").expect("write");
        std::fs::write(p.join("stat"), "cpu 1 2 3\nbtime 1700000000\n").expect("write");

        let mem = read_meminfo(p).expect("meminfo");
        assert_eq!(mem.mem_total, 2048 * 1024);
        assert_eq!(mem.mem_free, 1024 * 1024);
        let rlimit = read_rlimit(p, Time::from_unix_nanos(5)).expect("rlimit");
        assert_eq!(rlimit.max_pid, Some(31_447));
        assert_eq!(rlimit.num_of_running_processes, Some(182));
        assert_eq!(
            read_boot_time(p).expect("btime"),
            Time::from_unix_nanos(1_700_000_000_000_000_000)
        );
    }
}
