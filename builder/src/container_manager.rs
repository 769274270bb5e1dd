//! The kubelet's cgroups: the pod cgroup tree made at start (`cgroupsPerQOS`), and the
//! system cgroups, kept as upstream's container manager keeps them at start and every
//! five minutes: the host's other processes in `systemCgroups`, the
//! kubelet in `kubeletCgroups`, and what the summary API reports as the `kubelet`,
//! `runtime` (`--runtime-cgroups`) and `misc` system containers; and the kernel
//! settings upstream's container manager sets at start (checks, with
//! `protectKernelDefaults`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kubelet_cgroups::tree::ResourceConfig;
use kubelet_cgroups::{CgroupManager, Cgroupfs, Systemd};
use kubelet_core::CgroupDriver;
use kubelet_pod_manager::LocalPods;
use kubelet_pod_manager::pod_cgroup::PodCgroupSettings;
use kubelet_stats::{StatsProvider, SystemCgroups};
use tracing::{debug, info, warn};

use crate::{Error, Result};

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

/// The kernel settings the kubelet wants, by path under `/proc/sys`, as upstream's
/// container manager (`setupKernelTunables`): memory overcommitted always, the OOM
/// killer rather than a panic on OOM, a reboot 10 s after a panic, a panic on an oops,
/// and room for the keys of many containers.
pub const KERNEL_TUNABLES: [(&str, i64); 6] = [
    ("vm/overcommit_memory", 1),
    ("vm/panic_on_oom", 0),
    ("kernel/panic", 10),
    ("kernel/panic_on_oops", 1),
    ("kernel/keys/root_maxkeys", 1_000_000),
    ("kernel/keys/root_maxbytes", 25_000_000),
];

/// Brings the [`KERNEL_TUNABLES`] under `proc_sys` (`/proc/sys`) to their values, as
/// upstream's container manager does at start: with `protect` (`protectKernelDefaults`)
/// a setting that differs is an error instead of being changed. Returns what was
/// changed, one line each.
///
/// # Errors
///
/// Every setting that could not be read, differs while protected, or could not be
/// written, in one [`Error::KernelTunables`]: the kubelet does not start.
pub fn setup_kernel_tunables(proc_sys: &Path, protect: bool) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    let mut problems = Vec::new();
    for (flag, expected) in KERNEL_TUNABLES {
        let path = proc_sys.join(flag);
        let actual = match std::fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<i64>() {
                Ok(value) => value,
                Err(e) => {
                    problems.push(format!("{flag}: {:?} is not a number: {e}", text.trim()));
                    continue;
                }
            },
            Err(e) => {
                problems.push(format!("reading {flag}: {e}"));
                continue;
            }
        };
        if actual == expected {
            continue;
        }
        if protect {
            problems.push(format!(
                "invalid kernel flag: {flag}, expected value: {expected}, actual value: {actual}"
            ));
            continue;
        }
        match std::fs::write(&path, expected.to_string()) {
            Ok(()) => changed.push(format!("{flag} set to {expected} (was {actual})")),
            Err(e) => problems.push(format!("setting {flag} to {expected} (was {actual}): {e}")),
        }
    }
    if problems.is_empty() {
        Ok(changed)
    } else {
        Err(Error::KernelTunables { problems })
    }
}

/// The driver the node's cgroups are made with, as upstream's `getCgroupDriverFromCRI`:
/// the runtime's own (CRI `RuntimeConfig`) when it says, else `configured`
/// (`cgroupDriver`). A runtime that fails the call is asked three times, two seconds
/// apart, before start-up stops.
///
/// # Errors
///
/// The runtime failed to answer three times.
pub async fn cgroup_driver(
    runtime: &dyn kubelet_core::Runtime,
    configured: CgroupDriver,
) -> Result<CgroupDriver> {
    let mut failure = None;
    for attempt in 0..3 {
        match runtime.cgroup_driver().await {
            Ok(Some(driver)) => {
                info!(cgroup_driver = %driver, "Using cgroup driver setting received from the CRI runtime");
                return Ok(driver);
            }
            Ok(None) => {
                info!(
                    cgroup_driver = %configured,
                    "CRI implementation should be updated to support RuntimeConfig. Falling back to using cgroupDriver from kubelet config."
                );
                return Ok(configured);
            }
            Err(e) => {
                failure = Some(e);
                if attempt < 2 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
    Err(Error::Config {
        field: "cgroupDriver",
        reason: format!(
            "asking the container runtime for its cgroup driver (CRI RuntimeConfig): {}",
            failure.map_or_else(String::new, |e| e.to_string())
        ),
    })
}

/// The node's cgroups with `driver`: directories, or slices through systemd on the
/// system bus.
///
/// # Errors
///
/// With `systemd`, the system bus cannot be reached.
pub async fn node_cgroups(driver: CgroupDriver) -> Result<Arc<dyn CgroupManager>> {
    let host = Cgroupfs::host();
    Ok(match driver {
        CgroupDriver::Cgroupfs => Arc::new(host),
        CgroupDriver::Systemd => {
            Arc::new(
                Systemd::connect(host)
                    .await
                    .map_err(|source| Error::Cgroups {
                        what: "cgroupDriver systemd needs systemd on the D-Bus system bus",
                        source,
                    })?,
            )
        }
    })
}

/// With `cgroupsPerQOS` (the default): makes `/kubepods` with `size`'s CPU and memory and
/// the node's pids less `reserved_pids`, and the QoS tiers below it, as upstream does
/// before it runs pods (failing start-up when it cannot), and returns how pod cgroups are
/// to be made.
pub fn pod_cgroups(
    cgroups: &dyn CgroupManager,
    config: &kubelet_core::config::KubeletConfiguration,
    size: &kubelet_core::NodeResources,
    reserved_pids: u64,
) -> Result<Option<PodCgroupSettings>> {
    if !config.cgroups_per_qos.unwrap_or(true) {
        return Ok(None);
    }
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .map(|max| {
            max.saturating_sub(i64::try_from(reserved_pids).unwrap_or(0))
                .max(0)
        });
    let allocatable = ResourceConfig {
        cpu_shares: Some(kubelet_cgroups::milli_cpu_to_shares(size.milli_cpu)),
        memory: i64::try_from(size.memory).ok(),
        pids_limit: pid_max,
        ..ResourceConfig::default()
    };
    cgroups
        .ensure_qos_tree(&allocatable)
        .map_err(|source| Error::Cgroups {
            what: "failed to initialize top level QOS containers",
            source,
        })?;
    let period = config
        .cpu_cfs_quota_period
        .and_then(kubelet_core::config::GoDuration::to_std)
        .map_or(kubelet_cgroups::QUOTA_PERIOD_US, |d| {
            u64::try_from(d.as_micros()).unwrap_or(kubelet_cgroups::QUOTA_PERIOD_US)
        });
    Ok(Some(PodCgroupSettings {
        cpu_cfs_quota: config.cpu_cfs_quota.unwrap_or(true),
        cpu_cfs_quota_period_us: period,
        pod_pids_limit: config.pod_pids_limit.unwrap_or(-1),
    }))
}

/// Upstream's `enforceNodeAllocatableCgroups` for the reserved cgroups: with
/// `system-reserved` (`kube-reserved`) in `enforceNodeAllocatable`, the existing
/// `systemReservedCgroup` (`kubeReservedCgroup`) is limited to the reservation's CPU
/// shares, memory and pids (CPU shares only with the `-compressible` keys). Only the
/// resources the reservation names are set. Returns what was enforced, one line each,
/// for the log.
///
/// # Errors
///
/// A missing cgroup, or one that cannot be written, stops start-up with upstream's
/// message (`Failed to enforce System Reserved Cgroup Limits on "/system.slice": ...`).
pub fn enforce_reserved_cgroups(
    cgroups: &dyn CgroupManager,
    config: &kubelet_core::config::KubeletConfiguration,
) -> Result<Vec<String>> {
    let keys = config.enforce_node_allocatable.clone().unwrap_or_default();
    let mut done = Vec::new();
    for (key, field, cgroup, reserved, what) in [
        (
            "system-reserved",
            "systemReservedCgroup",
            &config.system_reserved_cgroup,
            &config.system_reserved,
            "System Reserved",
        ),
        (
            "kube-reserved",
            "kubeReservedCgroup",
            &config.kube_reserved_cgroup,
            &config.kube_reserved,
            "Kube Reserved",
        ),
    ] {
        for compressible in [false, true] {
            let wanted = if compressible {
                format!("{key}-compressible")
            } else {
                key.to_owned()
            };
            if !keys.contains(&wanted) {
                continue;
            }
            let limits = reserved_cgroup_config(reserved, compressible);
            let kind = if compressible {
                format!("{what} Compressible")
            } else {
                what.to_owned()
            };
            let fail = |reason: String| Error::Config {
                field,
                reason: format!("Failed to enforce {kind} Cgroup Limits on {cgroup:?}: {reason}"),
            };
            if !cgroups.exists(cgroup) {
                return Err(fail(format!("cgroup {cgroup:?} does not exist")));
            }
            cgroups
                .apply(cgroup, &limits)
                .map_err(|e| fail(e.to_string()))?;
            done.push(format!(
                "Updated limits on {} cgroup {cgroup}",
                what.to_lowercase()
            ));
        }
    }
    Ok(done)
}

/// Upstream's `getCgroupConfigInternal`: the reservation's CPU as shares, memory and
/// pids (only CPU when `compressible_only`); what it does not name stays unset.
fn reserved_cgroup_config(
    reserved: &std::collections::BTreeMap<String, String>,
    compressible_only: bool,
) -> ResourceConfig {
    let quantity = |name: &str| {
        reserved
            .get(name)
            .and_then(|text| kubelet_core::Quantity::parse(text).ok())
    };
    let mut config = ResourceConfig {
        cpu_shares: quantity("cpu").map(|q| {
            kubelet_cgroups::milli_cpu_to_shares(u64::try_from(q.milli_value()).unwrap_or(0))
        }),
        ..ResourceConfig::default()
    };
    if !compressible_only {
        config.memory = quantity("memory").map(|q| q.value());
        config.pids_limit = quantity("pid").map(|q| q.value());
    }
    config
}

/// How often the Burstable tier's CPU shares are brought up to date.
const QOS_UPDATE_PERIOD: Duration = Duration::from_secs(10);

/// Keeps the Burstable tier's CPU shares at the sum of the CPU requests of the Burstable
/// pods not yet finished (upstream's `UpdateCgroups`, at least the minimum shares),
/// writing only when the sum changes.
pub async fn update_qos_cgroups(cgroups: Arc<dyn CgroupManager>, pods: Arc<LocalPods>) {
    let mut written: Option<u64> = None;
    let mut tick = tokio::time::interval(QOS_UPDATE_PERIOD);
    loop {
        tick.tick().await;
        let total = burstable_cpu_requests(&pods.pods());
        if written == Some(total) {
            continue;
        }
        let cgroups = cgroups.clone();
        let done =
            tokio::task::spawn_blocking(move || cgroups.update_burstable_shares(total)).await;
        match done {
            Ok(Ok(())) => written = Some(total),
            Ok(Err(e)) => warn!(error = %e, "updating the burstable QoS cgroup"),
            Err(e) => warn!(error = %e, "updating the burstable QoS cgroup"),
        }
    }
}

/// The CPU requests in millicores of the Burstable pods that are not finished.
fn burstable_cpu_requests(pods: &[k8s_openapi::api::core::v1::Pod]) -> u64 {
    pods.iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
                && kubelet_core::pod_qos(p) == kubelet_core::QosClass::Burstable
        })
        .filter_map(|p| kubelet_pod_manager::admission::pod_requests(p).ok())
        .filter_map(|r| {
            r.get("cpu")
                .map(|q| u64::try_from(q.milli_value()).unwrap_or(0))
        })
        .sum()
}

/// Keeps the system cgroups and tells `stats` which to report, now and every five
/// minutes, on a blocking thread.
pub async fn keep_system_cgroups(
    cgroups: Arc<dyn CgroupManager>,
    config: Config,
    stats: Arc<StatsProvider>,
) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        let (cgroups, config) = (cgroups.clone(), config.clone());
        match tokio::task::spawn_blocking(move || ensure(cgroups.as_ref(), &config)).await {
            Ok(system) => stats.set_system_cgroups(system),
            Err(e) => warn!(error = %e, "keeping the system cgroups"),
        }
    }
}

/// One round: moves the processes, then names the cgroups to report.
fn ensure(cgroups: &dyn CgroupManager, config: &Config) -> SystemCgroups {
    let proc_root = Path::new("/proc");
    if let Some(system) = &config.system {
        match cgroups.move_root_processes(proc_root, system) {
            Ok(0) => {}
            Ok(moved) => {
                info!(moved, cgroup = %system, "moved the host's processes into systemCgroups")
            }
            Err(e) => {
                warn!(cgroup = %system, error = %e, "moving the host's processes into systemCgroups")
            }
        }
    }
    let current = cgroups.process_cgroup(proc_root, "self");
    let kubelet = match (&config.kubelet, current) {
        (Some(name), Ok(current)) if current == *name => Some(name.clone()),
        (Some(name), _) => {
            match cgroups.move_process(name, std::process::id()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_runtimes_cgroup_driver_overrides_the_configured_one() {
        // The fake runtime answers RuntimeConfig as a cgroupfs runtime.
        let fake = kubelet_cri_client::FakeCriServer::start();
        let client = fake.client(kubelet_cri_client::Timeouts::default());
        assert_eq!(
            cgroup_driver(&client, CgroupDriver::Systemd)
                .await
                .expect("driver"),
            CgroupDriver::Cgroupfs
        );
    }

    #[test]
    fn reserved_cgroups_get_the_reservations_they_name_and_must_exist() {
        use kubelet_cgroups::{CgroupVersion, Cgroupfs};
        let root = tempfile::tempdir().expect("tempdir");
        for controller in ["cpu", "memory", "pids", "cpuset", "cpuacct", "hugetlb"] {
            std::fs::create_dir_all(root.path().join(controller).join("system.slice"))
                .expect("controller dir");
        }
        let cgroups = Cgroupfs::new(root.path(), CgroupVersion::V1);
        let mut config = kubelet_core::config::KubeletConfiguration {
            enforce_node_allocatable: Some(vec!["pods".into(), "system-reserved".into()]),
            system_reserved_cgroup: "/system.slice".into(),
            system_reserved: [
                ("cpu".to_owned(), "500m".to_owned()),
                ("memory".to_owned(), "1Gi".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let done = enforce_reserved_cgroups(&cgroups, &config).expect("enforced");
        assert_eq!(
            done,
            vec!["Updated limits on system reserved cgroup /system.slice"]
        );
        let read = |controller: &str, file: &str| {
            std::fs::read_to_string(root.path().join(controller).join("system.slice").join(file))
                .unwrap_or_default()
        };
        assert_eq!(read("cpu", "cpu.shares").trim(), "512");
        assert_eq!(read("memory", "memory.limit_in_bytes").trim(), "1073741824");
        // pid is not reserved: no pids limit is written.
        assert_eq!(read("pids", "pids.max"), "");

        config.enforce_node_allocatable = Some(vec!["kube-reserved-compressible".into()]);
        config.kube_reserved_cgroup = "/kube.slice".into();
        let err = enforce_reserved_cgroups(&cgroups, &config).expect_err("missing cgroup");
        assert_eq!(
            err.to_string(),
            "kubeReservedCgroup: Failed to enforce Kube Reserved Compressible Cgroup Limits on \"/kube.slice\": cgroup \"/kube.slice\" does not exist"
        );
    }

    /// A `/proc/sys` with the tunables at `values` (in [`KERNEL_TUNABLES`]'s order).
    fn proc_sys(values: [i64; 6]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for ((flag, _), value) in KERNEL_TUNABLES.iter().zip(values) {
            let path = dir.path().join(flag);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(path, format!("{value}\n")).expect("write");
        }
        dir
    }

    fn read(dir: &Path, flag: &str) -> String {
        std::fs::read_to_string(dir.join(flag)).expect("read")
    }

    #[test]
    fn kernel_tunables_are_set_unless_protected() {
        let wanted = KERNEL_TUNABLES.map(|(_, v)| v);
        let right = proc_sys(wanted);
        assert_eq!(
            setup_kernel_tunables(right.path(), true).expect("nothing to do"),
            Vec::<String>::new()
        );
        assert_eq!(read(right.path(), "kernel/panic"), "10\n", "left alone");

        let mut wrong = wanted;
        wrong[0] = 0; // vm/overcommit_memory
        wrong[2] = 0; // kernel/panic
        let dir = proc_sys(wrong);
        let Err(Error::KernelTunables { problems }) = setup_kernel_tunables(dir.path(), true)
        else {
            panic!("protected settings that differ stop the kubelet");
        };
        assert_eq!(
            problems,
            [
                "invalid kernel flag: vm/overcommit_memory, expected value: 1, actual value: 0",
                "invalid kernel flag: kernel/panic, expected value: 10, actual value: 0",
            ]
        );
        assert_eq!(
            read(dir.path(), "kernel/panic"),
            "0\n",
            "protected: not changed"
        );

        let changed = setup_kernel_tunables(dir.path(), false).expect("set");
        assert_eq!(
            changed,
            [
                "vm/overcommit_memory set to 1 (was 0)",
                "kernel/panic set to 10 (was 0)"
            ]
        );
        assert_eq!(read(dir.path(), "kernel/panic"), "10");
        assert_eq!(read(dir.path(), "vm/overcommit_memory"), "1");

        // A setting that cannot be read is an error naming it.
        std::fs::remove_file(dir.path().join("vm/panic_on_oom")).expect("remove");
        let Err(e) = setup_kernel_tunables(dir.path(), false) else {
            panic!("an unreadable setting stops the kubelet");
        };
        assert!(e.to_string().contains("reading vm/panic_on_oom"), "{e}");
    }

    #[test]
    fn burstable_requests_of_unfinished_pods_add_up() {
        let pod = |cpu: &str,
                   limit: Option<&str>,
                   phase: &str|
         -> k8s_openapi::api::core::v1::Pod {
            let limits = limit.map_or(String::new(), |l| {
                format!(", limits: {{cpu: {l}, memory: 1Mi}}")
            });
            let requests = if limit.is_some() {
                format!("{{cpu: {cpu}, memory: 1Mi}}")
            } else {
                format!("{{cpu: {cpu}}}")
            };
            serde_yaml::from_str(&format!(
                "spec:\n  containers:\n  - name: a\n    resources: {{requests: {requests}{limits}}}\nstatus: {{phase: {phase}}}\n"
            ))
            .expect("pod")
        };
        let pods = [
            pod("100m", None, "Running"),
            pod("250m", None, "Pending"),
            pod("400m", None, "Succeeded"),
            // Requests equal to limits: Guaranteed, in /kubepods itself.
            pod("500m", Some("500m"), "Running"),
        ];
        assert_eq!(burstable_cpu_requests(&pods), 350);
        assert_eq!(burstable_cpu_requests(&[]), 0);
    }
}
