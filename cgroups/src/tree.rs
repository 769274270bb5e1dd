//! The pod cgroup tree, as upstream's node, QoS and pod
//! container managers keep it: `/kubepods` sized to the node's allocatable resources,
//! `/kubepods/burstable` and `/kubepods/besteffort` below it, and one cgroup per pod with
//! the pod's CPU shares, CFS quota, memory and pids limits, made before its sandbox so
//! that runc puts the pod's containers under limits that hold for the whole pod.

use std::io;

use kubelet_core::QosClass;

use crate::system::ensure_cgroup;
use crate::{CgroupManager, Cgroupfs};
use crate::{
    KUBEPODS_CGROUP, MIN_SHARES, milli_cpu_to_quota, milli_cpu_to_shares, shares_to_weight,
};

/// Resource settings of one cgroup (upstream's `ResourceConfig`); `None` leaves a
/// setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceConfig {
    /// `cpu.shares` (v2: the equivalent `cpu.weight`).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; -1 for none.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Most processes.
    pub pids_limit: Option<i64>,
}

/// What a pod asks for, summed as upstream's `PodRequests` and `PodLimits` sum it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodResources {
    /// The pod's CPU request in millicores.
    pub cpu_request_milli: u64,
    /// The pod's CPU limit in millicores (0: none).
    pub cpu_limit_milli: u64,
    /// The pod's memory limit in bytes (0: none).
    pub memory_limit: i64,
    /// Every container has a CPU limit (or the pod has a pod-level one).
    pub cpu_limits_declared: bool,
    /// Every container has a memory limit (or the pod has a pod-level one).
    pub memory_limits_declared: bool,
}

/// The pod cgroup's settings, as upstream's `ResourceConfigForPod`: Guaranteed pods get
/// shares, quota and memory limit; Burstable ones shares, and quota or memory limit only
/// when every container declares that limit; BestEffort ones the minimum shares.
/// `pids_limit` is `podPidsLimit` when positive.
pub fn pod_resource_config(
    qos: QosClass,
    pod: &PodResources,
    cpu_cfs_quota: bool,
    cpu_period: u64,
    pids_limit: Option<i64>,
) -> ResourceConfig {
    let shares = milli_cpu_to_shares(pod.cpu_request_milli);
    let quota = if cpu_cfs_quota {
        i64::try_from(milli_cpu_to_quota(pod.cpu_limit_milli, cpu_period)).unwrap_or(i64::MAX)
    } else {
        -1
    };
    // Upstream writes 0 (no quota) as it computes it; the kernel reads -1 as none.
    let quota = if quota == 0 { -1 } else { quota };
    let mut config = ResourceConfig {
        pids_limit: pids_limit.filter(|l| *l > 0),
        ..ResourceConfig::default()
    };
    match qos {
        QosClass::Guaranteed => {
            config.cpu_shares = Some(shares);
            config.cpu_quota = Some(quota);
            config.cpu_period = Some(cpu_period);
            config.memory = Some(pod.memory_limit);
        }
        QosClass::Burstable => {
            config.cpu_shares = Some(shares);
            if pod.cpu_limits_declared {
                config.cpu_quota = Some(quota);
                config.cpu_period = Some(cpu_period);
            }
            if pod.memory_limits_declared {
                config.memory = Some(pod.memory_limit);
            }
        }
        QosClass::BestEffort => config.cpu_shares = Some(MIN_SHARES),
    }
    config
}

/// The QoS tier cgroup of a class: Guaranteed pods live directly in `/kubepods`.
pub fn qos_cgroup(qos: QosClass) -> String {
    match qos {
        QosClass::Guaranteed => format!("/{KUBEPODS_CGROUP}"),
        QosClass::Burstable => format!("/{KUBEPODS_CGROUP}/burstable"),
        QosClass::BestEffort => format!("/{KUBEPODS_CGROUP}/besteffort"),
    }
}

/// Creates `/kubepods` with `allocatable` (CPU shares of the allocatable CPU, memory and
/// pids limits) and the Burstable and BestEffort tiers below it, BestEffort with the
/// minimum shares, as upstream's node and QoS container managers do at start.
pub(crate) fn ensure_qos_tree(
    cg: &(impl CgroupManager + ?Sized),
    allocatable: &ResourceConfig,
) -> io::Result<()> {
    cg.apply(&qos_cgroup(QosClass::Guaranteed), allocatable)?;
    cg.apply(&qos_cgroup(QosClass::Burstable), &ResourceConfig::default())?;
    cg.apply(
        &qos_cgroup(QosClass::BestEffort),
        &ResourceConfig {
            cpu_shares: Some(MIN_SHARES),
            ..ResourceConfig::default()
        },
    )
}

/// Sets the Burstable tier's CPU shares to the sum of its pods' CPU requests (at least
/// the minimum), as upstream's `UpdateCgroups` does on every pod sync.
pub(crate) fn update_burstable_shares(
    cg: &(impl CgroupManager + ?Sized),
    total_request_milli: u64,
) -> io::Result<()> {
    cg.apply(
        &qos_cgroup(QosClass::Burstable),
        &ResourceConfig {
            cpu_shares: Some(milli_cpu_to_shares(total_request_milli)),
            ..ResourceConfig::default()
        },
    )
}

/// Creates cgroup `name` (absolute, e.g. `/kubepods/burstable/pod<uid>`) in every
/// hierarchy and writes `config` into it, with cgroup v1 or v2 file names.
pub(crate) fn apply(cg: &Cgroupfs, name: &str, config: &ResourceConfig) -> io::Result<()> {
    let root = cg.root();
    ensure_cgroup(cg, name)?;
    let v2 = cg.is_v2();
    let relative = name.trim_matches('/');
    let dir = |controller: &str| {
        if v2 {
            root.join(relative)
        } else {
            root.join(controller).join(relative)
        }
    };
    let write = |controller: &str, file: &str, value: String| -> io::Result<()> {
        let path = dir(controller).join(file);
        std::fs::write(&path, &value).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing {value:?} to {}: {e}", path.display()),
            )
        })
    };
    if v2 {
        if let Some(shares) = config.cpu_shares {
            write("cpu", "cpu.weight", shares_to_weight(shares).to_string())?;
        }
        if config.cpu_quota.is_some() || config.cpu_period.is_some() {
            let quota = match config.cpu_quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_owned(),
            };
            let period = config.cpu_period.unwrap_or(crate::QUOTA_PERIOD_US);
            write("cpu", "cpu.max", format!("{quota} {period}"))?;
        }
        if let Some(memory) = config.memory {
            write("memory", "memory.max", limit_text(memory))?;
        }
        if let Some(pids) = config.pids_limit {
            write("pids", "pids.max", limit_text(pids))?;
        }
        return Ok(());
    }
    if let Some(shares) = config.cpu_shares {
        write("cpu", "cpu.shares", shares.to_string())?;
    }
    // The period first: the kernel checks a quota against the period in place.
    if let Some(period) = config.cpu_period {
        write("cpu", "cpu.cfs_period_us", period.to_string())?;
    }
    if let Some(quota) = config.cpu_quota {
        write("cpu", "cpu.cfs_quota_us", quota.max(-1).to_string())?;
    }
    if let Some(memory) = config.memory {
        let value = if memory > 0 {
            memory.to_string()
        } else {
            "-1".to_owned()
        };
        write("memory", "memory.limit_in_bytes", value)?;
    }
    if let Some(pids) = config.pids_limit
        && dir("pids").is_dir()
    {
        write("pids", "pids.max", limit_text(pids))?;
    }
    Ok(())
}

/// A v2 limit (or v1 `pids.max`): the number, or `max` for none.
fn limit_text(value: i64) -> String {
    if value > 0 {
        value.to_string()
    } else {
        "max".to_owned()
    }
}

/// Whether cgroup `name` exists (in the memory hierarchy on v1).
pub(crate) fn exists(cg: &Cgroupfs, name: &str) -> bool {
    let root = cg.root();
    let relative = name.trim_matches('/');
    if cg.is_v2() {
        root.join(relative).is_dir()
    } else {
        root.join("memory").join(relative).is_dir()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fake_v1(root: &Path) {
        for controller in ["cpu,cpuacct", "memory", "pids"] {
            std::fs::create_dir_all(root.join(controller)).expect("mkdir");
        }
        std::os::unix::fs::symlink(root.join("cpu,cpuacct"), root.join("cpu")).expect("alias");
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn pod_configs_follow_the_qos_class() {
        let pod = PodResources {
            cpu_request_milli: 250,
            cpu_limit_milli: 500,
            memory_limit: 128 << 20,
            cpu_limits_declared: true,
            memory_limits_declared: true,
        };
        let guaranteed = pod_resource_config(QosClass::Guaranteed, &pod, true, 100_000, None);
        assert_eq!(
            guaranteed,
            ResourceConfig {
                cpu_shares: Some(256),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                memory: Some(128 << 20),
                pids_limit: None,
            }
        );
        let partly = PodResources {
            cpu_limits_declared: false,
            ..pod
        };
        let burstable =
            pod_resource_config(QosClass::Burstable, &partly, true, 100_000, Some(1024));
        assert_eq!(burstable.cpu_shares, Some(256));
        assert_eq!(burstable.cpu_quota, None, "not every container limits CPU");
        assert_eq!(burstable.memory, Some(128 << 20));
        assert_eq!(burstable.pids_limit, Some(1024));
        let no_quota = pod_resource_config(QosClass::Guaranteed, &pod, false, 100_000, Some(-1));
        assert_eq!(no_quota.cpu_quota, Some(-1), "cpuCFSQuota false");
        assert_eq!(no_quota.pids_limit, None);
        let best_effort = pod_resource_config(
            QosClass::BestEffort,
            &PodResources::default(),
            true,
            100_000,
            None,
        );
        assert_eq!(
            best_effort,
            ResourceConfig {
                cpu_shares: Some(2),
                ..ResourceConfig::default()
            }
        );
    }

    #[test]
    fn the_qos_tree_and_a_pod_cgroup_on_cgroup_v1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fake_v1(root);
        let allocatable = ResourceConfig {
            cpu_shares: Some(2048),
            memory: Some(8 << 30),
            pids_limit: Some(4_194_304),
            ..ResourceConfig::default()
        };
        ensure_qos_tree(&Cgroupfs::detect(root), &allocatable).expect("tree");
        assert_eq!(read(&root.join("cpu/kubepods/cpu.shares")), "2048");
        assert_eq!(
            read(&root.join("memory/kubepods/memory.limit_in_bytes")),
            (8u64 << 30).to_string()
        );
        assert_eq!(read(&root.join("pids/kubepods/pids.max")), "4194304");
        assert_eq!(read(&root.join("cpu/kubepods/besteffort/cpu.shares")), "2");
        assert!(root.join("memory/kubepods/burstable").is_dir());
        update_burstable_shares(&Cgroupfs::detect(root), 1500).expect("burstable");
        assert_eq!(
            read(&root.join("cpu/kubepods/burstable/cpu.shares")),
            "1536"
        );

        let pod = "/kubepods/burstable/podu-1";
        let config = ResourceConfig {
            cpu_shares: Some(256),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory: Some(64 << 20),
            pids_limit: Some(100),
        };
        apply(&Cgroupfs::detect(root), pod, &config).expect("pod");
        let cpu = root.join("cpu,cpuacct/kubepods/burstable/podu-1");
        assert_eq!(read(&cpu.join("cpu.shares")), "256");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(
            read(&root.join("memory/kubepods/burstable/podu-1/memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read(&root.join("pids/kubepods/burstable/podu-1/pids.max")),
            "100"
        );
        assert!(exists(&Cgroupfs::detect(root), pod));
        assert!(!exists(
            &Cgroupfs::detect(root),
            "/kubepods/burstable/podu-2"
        ));
    }

    #[test]
    fn cgroup_v2_file_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").expect("v2");
        let config = ResourceConfig {
            cpu_shares: Some(1024),
            cpu_quota: Some(-1),
            cpu_period: Some(100_000),
            memory: Some(0),
            pids_limit: Some(50),
        };
        apply(&Cgroupfs::detect(root), "/kubepods/podu-3", &config).expect("pod");
        let pod = root.join("kubepods/podu-3");
        assert_eq!(read(&pod.join("cpu.weight")), "39");
        assert_eq!(read(&pod.join("cpu.max")), "max 100000");
        assert_eq!(read(&pod.join("memory.max")), "max");
        assert_eq!(read(&pod.join("pids.max")), "50");
        assert!(exists(&Cgroupfs::detect(root), "/kubepods/podu-3"));
    }
}
