//! `cgroupDriver: systemd` on the real control plane and containerd, with systemd played by
//! a fake on a private D-Bus daemon reached through `DBUS_SYSTEM_BUS_ADDRESS` (this VM
//! runs no systemd). containerd 1.6 cannot say which driver it uses (no CRI
//! `RuntimeConfig`), so the kubelet falls back to its configuration as upstream does;
//! it then makes the QoS slices and each pod's slice with the pod's limits through
//! systemd before the sandbox, hands the runtime the slice as the sandbox's cgroup
//! parent, and stops the slice when the pod is gone.
//!
//! Not covered here: containerd itself in systemd mode (`SystemdCgroup = true`), which
//! needs a real systemd to place the containers' scopes in the pod's slice.

mod common;

use std::path::Path;

use common::{Namespace, lock, wait_until};
use kubelet_cgroups::testing::{FakeSystemd, Property};

/// Removes the QoS slices' directories the kubelet leaves behind (as upstream, it keeps
/// them when it stops), so that other tests see the node as before.
fn remove_qos_slices() {
    let root = Path::new(kubelet_cgroups::CGROUP_ROOT);
    let Ok(hierarchies) = std::fs::read_dir(root) else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let kubepods = hierarchy.path().join("kubepods.slice");
        for tier in ["kubepods-burstable.slice", "kubepods-besteffort.slice"] {
            let _ = std::fs::remove_dir(kubepods.join(tier));
        }
        let _ = std::fs::remove_dir(&kubepods);
    }
}

#[test]
fn systemd_cgroup_driver_makes_pod_slices_through_systemd() {
    const TEST: &str = "systemd_cgroup_driver_makes_pod_slices_through_systemd";
    let Some((env, c)) = common::Cluster::from_env(TEST) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let bus = match kubelet_test_support::PrivateBus::start(dir.path()) {
        Ok(bus) => bus,
        Err(reason) => return kubelet_test_support::skip(TEST, reason),
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let systemd = runtime
        .block_on(FakeSystemd::serve(bus.address()))
        .expect("fake systemd");

    let kubelet = c.start_kubelet_with(
        dir.path(),
        "cgroupDriver: systemd\n",
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus.address())],
    );
    c.wait_node_ready(&kubelet);
    let log = kubelet.log();
    assert!(
        log.contains("Falling back to using cgroupDriver from kubelet config"),
        "{log}"
    );
    assert!(
        !log.contains("cgroupDriver systemd is not supported"),
        "{log}"
    );
    let units = systemd.units();
    for slice in [
        "kubepods.slice",
        "kubepods-burstable.slice",
        "kubepods-besteffort.slice",
    ] {
        assert!(units.contains_key(slice), "{slice} missing: {units:?}");
    }
    assert_eq!(
        units["kubepods.slice"]["Wants"],
        Property::Strs(vec!["-.slice".into()])
    );
    let root = Path::new(kubelet_cgroups::CGROUP_ROOT);
    assert!(
        root.join("memory/kubepods.slice/kubepods-burstable.slice")
            .is_dir()
    );

    let namespace = Namespace::create(&c, "systemd-driver-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: sliced, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources:
      requests: {{cpu: 100m, memory: 32Mi}}
      limits: {{memory: 64Mi}}
"#,
        image = c.busybox
    ));
    let running = c.wait_json(
        "the pod Running",
        &["get", "pod", "sliced", "-n", ns],
        90,
        &kubelet,
        |p| p["status"]["phase"] == "Running",
    );
    let uid = running["metadata"]["uid"].as_str().expect("uid").to_owned();
    let unit = format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_"));
    let units = systemd.units();
    let slice = units
        .get(&unit)
        .unwrap_or_else(|| panic!("{unit} missing: {units:?}"));
    assert_eq!(
        slice["Wants"],
        Property::Strs(vec!["kubepods-burstable.slice".into()])
    );
    assert_eq!(slice["CPUShares"], Property::U64(102), "100m");
    assert_eq!(slice["MemoryLimit"], Property::U64(64 << 20));
    let memory_dir = root
        .join("memory/kubepods.slice/kubepods-burstable.slice")
        .join(&unit);
    assert_eq!(
        std::fs::read_to_string(memory_dir.join("memory.limit_in_bytes"))
            .expect("pod slice memory limit")
            .trim(),
        (64u64 << 20).to_string()
    );

    // The sandbox was given the slice as its cgroup parent.
    let parent = runtime.block_on(async {
        let cri = kubelet_cri_client::CriClient::new(&env.endpoint, Default::default())
            .expect("CRI client");
        let sandboxes = cri.list_pod_sandbox(None).await.expect("sandboxes");
        let sandbox = sandboxes
            .iter()
            .find(|s| s.metadata.as_ref().is_some_and(|m| m.uid == uid))
            .expect("the pod's sandbox");
        let status = cri
            .pod_sandbox_status(&sandbox.id, true)
            .await
            .expect("sandbox status");
        let info: serde_json::Value =
            serde_json::from_str(status.info.get("info").map_or("{}", String::as_str))
                .expect("verbose info");
        info["config"]["linux"]["cgroup_parent"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    assert_eq!(
        parent,
        format!("/kubepods.slice/kubepods-burstable.slice/{unit}")
    );

    c.kubectl(&["delete", "pod", "sliced", "-n", ns, "--wait=true"]);
    wait_until(
        "the pod's slice stopped",
        60,
        || format!("{:?}\n{}", systemd.calls(), kubelet.log()),
        || !systemd.units().contains_key(&unit),
    );
    assert!(!memory_dir.exists(), "{} left", memory_dir.display());
    drop(kubelet);
    remove_qos_slices();
}
