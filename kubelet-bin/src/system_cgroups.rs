//! The kubelet's cgroups: the pod cgroup tree made at start (`cgroupsPerQOS`), and the
//! system cgroups, kept as upstream's container manager keeps them at start and every
//! five minutes: the host's other processes in `systemCgroups`, the
//! kubelet in `kubeletCgroups`, and what the summary API reports as the `kubelet`,
//! `runtime` (`--runtime-cgroups`) and `misc` system containers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kubelet_cgroups::system::{move_process, move_root_processes, process_cgroup};
use kubelet_cgroups::tree::{ResourceConfig, ensure_qos_tree};
use kubelet_pod_manager::pod_cgroup::PodCgroupSettings;
use kubelet_stats::{StatsProvider, SystemCgroups};
use tracing::{debug, info, warn};

/// Upstream's container manager period for its system containers and periodic tasks.
const PERIOD: Duration = Duration::from_secs(300);

/// The configured system cgroups, by absolute name; `None` when not set.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `kubeletCgroups`.
    pub kubelet: Option<String>,
    /// `systemCgroups`.
    pub system: Option<String>,
    /// `--runtime-cgroups`: only reported, the runtime runs where its service put it.
    pub runtime: Option<String>,
}

/// With `cgroupsPerQOS` (the default): makes `/kubepods` with the node's allocatable
/// CPU, memory and pids and the QoS tiers below it, as upstream does before it runs
/// pods (failing start-up when it cannot), and returns how pod cgroups are to be made.
pub fn pod_cgroups(
    config: &kubelet_core::config::KubeletConfiguration,
    allocatable_milli_cpu: u64,
    allocatable_memory: u64,
) -> anyhow::Result<Option<PodCgroupSettings>> {
    if !config.cgroups_per_qos.unwrap_or(true) {
        return Ok(None);
    }
    let root = Path::new(crate::CGROUP_ROOT);
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let allocatable = ResourceConfig {
        cpu_shares: Some(kubelet_cgroups::milli_cpu_to_shares(allocatable_milli_cpu)),
        memory: i64::try_from(allocatable_memory).ok(),
        pids_limit: pid_max,
        ..ResourceConfig::default()
    };
    ensure_qos_tree(root, &allocatable).context("failed to initialize top level QOS containers")?;
    let period = config
        .cpu_cfs_quota_period
        .and_then(kubelet_core::config::GoDuration::to_std)
        .map_or(kubelet_cgroups::QUOTA_PERIOD_US, |d| {
            u64::try_from(d.as_micros()).unwrap_or(kubelet_cgroups::QUOTA_PERIOD_US)
        });
    Ok(Some(PodCgroupSettings {
        root: root.to_owned(),
        cpu_cfs_quota: config.cpu_cfs_quota.unwrap_or(true),
        cpu_cfs_quota_period_us: period,
        pod_pids_limit: config.pod_pids_limit.unwrap_or(-1),
    }))
}

/// Keeps the system cgroups and tells `stats` which to report, now and every five
/// minutes, on a blocking thread.
pub fn spawn(config: Config, stats: Arc<StatsProvider>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tick.tick().await;
            let config = config.clone();
            match tokio::task::spawn_blocking(move || ensure(&config)).await {
                Ok(system) => stats.set_system_cgroups(system),
                Err(e) => warn!(error = %e, "keeping the system cgroups"),
            }
        }
    })
}

/// One round: moves the processes, then names the cgroups to report.
fn ensure(config: &Config) -> SystemCgroups {
    let root = Path::new(crate::CGROUP_ROOT);
    let proc_root = Path::new("/proc");
    if let Some(system) = &config.system {
        match move_root_processes(root, proc_root, system) {
            Ok(0) => {}
            Ok(moved) => {
                info!(moved, cgroup = %system, "moved the host's processes into systemCgroups")
            }
            Err(e) => {
                warn!(cgroup = %system, error = %e, "moving the host's processes into systemCgroups")
            }
        }
    }
    let current = process_cgroup(root, proc_root, "self");
    let kubelet = match (&config.kubelet, current) {
        (Some(name), Ok(current)) if current == *name => Some(name.clone()),
        (Some(name), _) => {
            match move_process(root, name, std::process::id()) {
                Ok(()) => info!(cgroup = %name, "the kubelet runs in kubeletCgroups"),
                Err(e) => {
                    warn!(cgroup = %name, error = %e, "moving the kubelet into kubeletCgroups")
                }
            }
            Some(name.clone())
        }
        // Not configured: report the cgroup the kubelet runs in, when CPU and memory are
        // accounted there together (upstream's getContainer).
        (None, Ok(current)) => Some(current),
        (None, Err(e)) => {
            debug!(error = %e, "no kubelet system container");
            None
        }
    };
    SystemCgroups {
        kubelet,
        runtime: config.runtime.clone(),
        misc: config.system.clone(),
    }
}
