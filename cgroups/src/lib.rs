//! Pod and container cgroups for a Rust kubelet: QoS tiers, limits, cgroup v1 and v2.
//!
//! This first part holds the arithmetic every cgroup backend shares and that must match
//! the upstream kubelet exactly, because containerd compares the values the kubelet
//! sends with the ones it wrote before: CPU requests to `cpu.shares`, CPU limits to a CFS
//! quota, and shares to the cgroup v2 `cpu.weight`; and the cgroupfs path of a pod's
//! cgroup ([`pod_cgroupfs_path`]). [`tree`] keeps the pod cgroup tree (`/kubepods`, the
//! QoS tiers and each pod's cgroup with its limits). [`CgroupManager`] is the seam the rest
//! of the kubelet uses: pod cgroups, the QoS tree, removal, and the system cgroups
//! (`kubeletCgroups`, `systemCgroups`, the cgroup a process is accounted in); [`Cgroupfs`]
//! implements it for the cgroupfs driver on cgroup v1 and v2, with the hierarchy detected
//! once, and [`Systemd`] for the systemd driver (slices made through systemd's D-Bus API,
//! named as [`systemd_path`] names them).
//!
//! # Example
//!
//! ```
//! use kubelet_cgroups::{milli_cpu_to_quota, milli_cpu_to_shares, shares_to_weight, QUOTA_PERIOD_US};
//!
//! // A container requesting 250m and limited to 500m CPU:
//! assert_eq!(milli_cpu_to_shares(250), 256);
//! assert_eq!(milli_cpu_to_quota(500, QUOTA_PERIOD_US), 50_000);
//! assert_eq!(shares_to_weight(256), 10);
//! ```

use kubelet_core::{CgroupDriver, QosClass};

mod manager;
mod system;
mod systemd;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tree;

pub use manager::{CgroupManager, CgroupVersion, Cgroupfs};
pub use systemd::{Systemd, expand_slice, systemd_path};

/// Smallest `cpu.shares` the kernel accepts; also what a container without a CPU request
/// gets.
pub const MIN_SHARES: u64 = 2;
/// Largest `cpu.shares` the kernel accepts.
pub const MAX_SHARES: u64 = 262_144;
/// `cpu.shares` of one whole CPU.
pub const SHARES_PER_CPU: u64 = 1024;
/// Millicores in one CPU.
pub const MILLI_CPU_PER_CPU: u64 = 1000;
/// Default CFS period in microseconds (100 ms), as upstream.
pub const QUOTA_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota the kernel accepts, in microseconds.
pub const MIN_QUOTA_PERIOD_US: u64 = 1000;

/// Name of the cgroup under which the kubelet puts every pod (upstream
/// `defaultNodeAllocatableCgroupName`).
pub const KUBEPODS_CGROUP: &str = "kubepods";

/// The cgroupfs path of a pod's cgroup, the sandbox's cgroup parent, as upstream's
/// `GetPodContainerName` names it with the cgroupfs driver and the default cgroup root:
/// Guaranteed pods sit directly under `/kubepods`, the others under their QoS tier's
/// cgroup (`/kubepods/burstable`, `/kubepods/besteffort`); the pod's own cgroup is
/// `pod<uid>`.
pub fn pod_cgroupfs_path(qos: QosClass, pod_uid: &str) -> String {
    match qos {
        QosClass::Guaranteed => format!("/{KUBEPODS_CGROUP}/pod{pod_uid}"),
        QosClass::Burstable => format!("/{KUBEPODS_CGROUP}/burstable/pod{pod_uid}"),
        QosClass::BestEffort => format!("/{KUBEPODS_CGROUP}/besteffort/pod{pod_uid}"),
    }
}

/// The path in the cgroup hierarchy that `driver` gives cgroup `name` (upstream's
/// `CgroupManager.Name`): `name` itself with cgroupfs, its slice path with systemd
/// ([`systemd_path`]). This is what the runtime is handed as a sandbox's cgroup parent.
pub fn driver_path(driver: CgroupDriver, name: &str) -> String {
    match driver {
        CgroupDriver::Cgroupfs => name.to_owned(),
        CgroupDriver::Systemd => systemd_path(name),
    }
}

/// A pod's cgroup as `driver` names it: the sandbox's cgroup parent.
pub fn pod_cgroup_parent(driver: CgroupDriver, qos: QosClass, pod_uid: &str) -> String {
    driver_path(driver, &pod_cgroupfs_path(qos, pod_uid))
}

/// `cpu.shares` for a CPU request in millicores (upstream `MilliCPUToShares`).
pub fn milli_cpu_to_shares(milli_cpu: u64) -> u64 {
    if milli_cpu == 0 {
        return MIN_SHARES;
    }
    let shares = milli_cpu.saturating_mul(SHARES_PER_CPU) / MILLI_CPU_PER_CPU;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// CFS quota in microseconds for a CPU limit in millicores over `period_us`
/// (upstream `milliCPUToQuota`); 0 means no limit.
pub fn milli_cpu_to_quota(milli_cpu: u64, period_us: u64) -> u64 {
    if milli_cpu == 0 {
        return 0;
    }
    let quota = milli_cpu.saturating_mul(period_us) / MILLI_CPU_PER_CPU;
    quota.max(MIN_QUOTA_PERIOD_US)
}

/// cgroup v2 `cpu.weight` (1..=10000) for v1 `cpu.shares` (2..=262144), the conversion
/// runc and the upstream kubelet use.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_upstream() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(1_000_000), MAX_SHARES);
    }

    #[test]
    fn quota_follows_upstream() {
        assert_eq!(milli_cpu_to_quota(0, QUOTA_PERIOD_US), 0);
        assert_eq!(milli_cpu_to_quota(1, QUOTA_PERIOD_US), MIN_QUOTA_PERIOD_US);
        assert_eq!(milli_cpu_to_quota(10, QUOTA_PERIOD_US), 1000);
        assert_eq!(milli_cpu_to_quota(1500, QUOTA_PERIOD_US), 150_000);
        assert_eq!(
            milli_cpu_to_quota(u64::MAX, QUOTA_PERIOD_US),
            u64::MAX / 1000
        );
    }

    #[test]
    fn pod_cgroups_follow_the_qos_tiers() {
        assert_eq!(
            pod_cgroupfs_path(QosClass::Guaranteed, "u-1"),
            "/kubepods/podu-1"
        );
        assert_eq!(
            pod_cgroupfs_path(QosClass::Burstable, "u-1"),
            "/kubepods/burstable/podu-1"
        );
        assert_eq!(
            pod_cgroupfs_path(QosClass::BestEffort, "u-1"),
            "/kubepods/besteffort/podu-1"
        );
    }

    #[test]
    fn the_systemd_driver_names_pod_cgroups_as_slices() {
        assert_eq!(
            pod_cgroup_parent(CgroupDriver::Systemd, QosClass::Burstable, "u-1"),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu_1.slice"
        );
        assert_eq!(
            pod_cgroup_parent(CgroupDriver::Systemd, QosClass::Guaranteed, "u-1"),
            "/kubepods.slice/kubepods-podu_1.slice"
        );
        assert_eq!(
            pod_cgroup_parent(CgroupDriver::Cgroupfs, QosClass::BestEffort, "u-1"),
            "/kubepods/besteffort/podu-1"
        );
    }

    #[test]
    fn removes_the_pod_cgroup_from_every_hierarchy() {
        let root = tempfile::tempdir().expect("temp dir");
        let pod = "kubepods/besteffort/podu1";
        // v1, hybrid: each controller, and the unified tree mounted beside them.
        for controller in ["memory", "cpu", "pids", "unified"] {
            std::fs::create_dir_all(root.path().join(controller).join(pod)).expect("mkdir");
        }
        // A hierarchy without the pod is fine.
        std::fs::create_dir_all(root.path().join("freezer")).expect("mkdir");
        let cgroups = Cgroupfs::detect(root.path());
        assert_eq!(cgroups.version(), CgroupVersion::V1);
        cgroups
            .remove("/kubepods/besteffort/podu1")
            .expect("removed");
        for hierarchy in ["memory", "cpu", "pids", "unified"] {
            let dir = root.path().join(hierarchy).join(pod);
            assert!(!dir.exists(), "{} left", dir.display());
            assert!(
                dir.parent().is_some_and(|p| p.exists()),
                "the QoS cgroup stays"
            );
        }
        // Repeating is harmless.
        cgroups
            .remove("/kubepods/besteffort/podu1")
            .expect("idempotent");

        // v2: the one unified tree.
        let v2 = tempfile::tempdir().expect("temp dir");
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory\n").expect("v2");
        std::fs::create_dir_all(v2.path().join(pod)).expect("mkdir");
        let cgroups = Cgroupfs::detect(v2.path());
        assert_eq!(cgroups.version(), CgroupVersion::V2);
        cgroups
            .remove("/kubepods/besteffort/podu1")
            .expect("removed");
        assert!(!v2.path().join(pod).exists());
    }

    #[test]
    fn a_busy_pod_cgroup_is_an_error_naming_it() {
        let root = tempfile::tempdir().expect("temp dir");
        let busy = root.path().join("memory/kubepods/podu2/container");
        std::fs::create_dir_all(&busy).expect("mkdir");
        let err = Cgroupfs::detect(root.path())
            .remove("/kubepods/podu2")
            .expect_err("not empty");
        assert!(err.to_string().contains("memory/kubepods/podu2"), "{err}");
    }

    #[test]
    fn weight_spans_the_v2_range() {
        assert_eq!(shares_to_weight(MIN_SHARES), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(MAX_SHARES), 10_000);
        assert_eq!(shares_to_weight(0), 0);
    }
}
