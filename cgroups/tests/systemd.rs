//! The systemd cgroup driver on this machine's real cgroup hierarchy, with systemd played
//! by a fake on a private D-Bus daemon (this VM runs no systemd; with systemd the driver
//! talks to it the same way over the system bus): the QoS slices and a pod's slice are
//! made as units with upstream's properties, their limits reach both systemd and the
//! kernel's files, and removal stops the unit and removes the directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubelet_cgroups::testing::{FakeSystemd, Property};
use kubelet_cgroups::tree::ResourceConfig;
use kubelet_cgroups::{CgroupManager, CgroupVersion, Cgroupfs, Systemd};
use kubelet_core::CgroupDriver;

const POD: &str = "/kubepods/burstable/pod5e1f-test";
const POD_SLICE: &str = "kubepods-burstable-pod5e1f_test.slice";
const POD_PATH: &str =
    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5e1f_test.slice";

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Runs a blocking cgroup call as the kubelet does, off the async threads.
async fn blocking<T: Send + 'static>(
    cgroups: &Arc<Systemd>,
    call: impl FnOnce(&Systemd) -> T + Send + 'static,
) -> T {
    let cgroups = cgroups.clone();
    tokio::task::spawn_blocking(move || call(&cgroups))
        .await
        .expect("blocking call")
}

fn writable_v1_hierarchy() -> Result<(), String> {
    let root = Path::new(kubelet_cgroups::CGROUP_ROOT);
    if Cgroupfs::host().version() != CgroupVersion::V1 {
        return Err("the host's cgroups are not v1 (this test reads v1 files)".into());
    }
    let probe = root.join("memory/kubelet-systemd-driver-probe");
    std::fs::create_dir(&probe)
        .and_then(|()| std::fs::remove_dir(&probe))
        .map_err(|e| format!("cannot make cgroups under {}: {e}", root.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_driver_makes_limits_and_removes_slices_through_systemd() {
    const TEST: &str = "systemd_driver_makes_limits_and_removes_slices_through_systemd";
    if let Err(reason) = writable_v1_hierarchy() {
        return kubelet_test_support::skip(TEST, reason);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = match kubelet_test_support::PrivateBus::start(dir.path()) {
        Ok(bus) => bus,
        Err(reason) => return kubelet_test_support::skip(TEST, reason),
    };
    let systemd = FakeSystemd::serve(bus.address())
        .await
        .expect("fake systemd");
    let connection = zbus::connection::Builder::address(bus.address())
        .expect("address")
        .build()
        .await
        .expect("client connection");
    let cgroups = Arc::new(
        Systemd::with_connection(Cgroupfs::host(), connection)
            .await
            .expect("driver"),
    );
    assert_eq!(cgroups.driver(), CgroupDriver::Systemd);
    let root = Path::new(kubelet_cgroups::CGROUP_ROOT);

    // The QoS tree, as at start-up: kubepods.slice sized to allocatable, the tiers below.
    let allocatable = ResourceConfig {
        cpu_shares: Some(2048),
        memory: Some(1 << 30),
        pids_limit: Some(4096),
        ..ResourceConfig::default()
    };
    blocking(&cgroups, move |c| c.ensure_qos_tree(&allocatable))
        .await
        .expect("QoS tree");
    let units = systemd.units();
    let kubepods = &units["kubepods.slice"];
    assert_eq!(kubepods["Wants"], Property::Strs(vec!["-.slice".into()]));
    assert_eq!(
        kubepods["Description"],
        Property::Str("libcontainer container kubepods.slice".into())
    );
    for accounting in [
        "MemoryAccounting",
        "CPUAccounting",
        "BlockIOAccounting",
        "TasksAccounting",
    ] {
        assert_eq!(kubepods[accounting], Property::Bool(true), "{accounting}");
    }
    assert_eq!(kubepods["DefaultDependencies"], Property::Bool(false));
    assert_eq!(kubepods["CPUShares"], Property::U64(2048));
    assert_eq!(kubepods["MemoryLimit"], Property::U64(1 << 30));
    assert_eq!(kubepods["TasksMax"], Property::U64(4096));
    assert_eq!(
        units["kubepods-burstable.slice"]["Wants"],
        Property::Strs(vec!["kubepods.slice".into()])
    );
    assert_eq!(
        units["kubepods-besteffort.slice"]["CPUShares"],
        Property::U64(2)
    );
    // The kernel's files hold the same.
    assert_eq!(read(root.join("cpu/kubepods.slice/cpu.shares")), "2048");
    assert_eq!(
        read(root.join("memory/kubepods.slice/memory.limit_in_bytes")),
        (1u64 << 30).to_string()
    );
    assert_eq!(
        read(root.join("cpu/kubepods.slice/kubepods-besteffort.slice/cpu.shares")),
        "2"
    );

    // A Burstable pod limited to 333m CPU and 64 MiB: systemd keeps whole percents, so
    // the quota is rounded up to 34ms per 100ms in both places.
    let pod = ResourceConfig {
        cpu_shares: Some(340),
        cpu_quota: Some(33_300),
        cpu_period: Some(100_000),
        memory: Some(64 << 20),
        pids_limit: Some(-1),
    };
    assert!(!blocking(&cgroups, |c| c.exists(POD)).await);
    blocking(&cgroups, move |c| c.apply(POD, &pod))
        .await
        .expect("pod slice");
    assert!(blocking(&cgroups, |c| c.exists(POD)).await);
    let units = systemd.units();
    let slice = &units[POD_SLICE];
    assert_eq!(
        slice["Wants"],
        Property::Strs(vec!["kubepods-burstable.slice".into()])
    );
    assert_eq!(slice["CPUShares"], Property::U64(340));
    assert_eq!(slice["CPUQuotaPeriodUSec"], Property::U64(100_000));
    assert_eq!(slice["CPUQuotaPerSecUSec"], Property::U64(340_000));
    assert_eq!(slice["MemoryLimit"], Property::U64(64 << 20));
    assert_eq!(slice["TasksMax"], Property::U64(u64::MAX), "no pids limit");
    assert_eq!(
        read(root.join("cpu").join(POD_PATH).join("cpu.cfs_quota_us")),
        "34000"
    );
    assert_eq!(
        read(
            root.join("memory")
                .join(POD_PATH)
                .join("memory.limit_in_bytes")
        ),
        (64u64 << 20).to_string()
    );
    assert!(root.join("pids").join(POD_PATH).is_dir());

    // Updating an existing slice (the Burstable tier's shares on every pod sync).
    blocking(&cgroups, |c| c.update_burstable_shares(1500))
        .await
        .expect("burstable shares");
    assert_eq!(
        systemd.units()["kubepods-burstable.slice"]["CPUShares"],
        Property::U64(1536)
    );
    assert_eq!(
        read(root.join("cpu/kubepods.slice/kubepods-burstable.slice/cpu.shares")),
        "1536"
    );

    // Removal stops the unit and removes every directory; twice is harmless.
    blocking(&cgroups, |c| c.remove(POD))
        .await
        .expect("removed");
    assert!(!systemd.units().contains_key(POD_SLICE));
    for controller in ["cpu", "memory", "pids"] {
        assert!(
            !root.join(controller).join(POD_PATH).exists(),
            "{controller} left"
        );
    }
    blocking(&cgroups, |c| c.remove(POD)).await.expect("again");
    let calls = systemd.calls();
    assert!(
        calls.contains(&format!("StopUnit {POD_SLICE}")),
        "{calls:?}"
    );

    for tier in ["/kubepods/burstable", "/kubepods/besteffort", "/kubepods"] {
        blocking(&cgroups, move |c| c.remove(tier))
            .await
            .unwrap_or_else(|e| panic!("removing {tier}: {e}"));
    }
    assert!(systemd.units().is_empty(), "{:?}", systemd.units());
    assert!(!root.join("memory/kubepods.slice").exists());
}
