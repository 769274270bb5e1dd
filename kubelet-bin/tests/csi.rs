//! CSI on the real control plane and containerd, with upstream's CSI mock driver
//! (`test/e2e/storage/drivers/csi-test`, served and registered by the small main `cargo
//! xtask env up --control-plane` builds, which bind-mounts a data directory per volume
//! at each published target as a real driver mounts its storage): the driver registers
//! through `<root-dir>/plugins_registry` (CSINode, node annotation and topology label);
//! an inline ephemeral volume, a PersistentVolume and a generic ephemeral volume are
//! published (the last two only once their VolumeAttachment says attached, staged
//! first), measured, survive a kubelet restart, and are unpublished and unstaged when
//! their pods go.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Helper, Namespace, lock};

const DRIVER: &str = "io.kubernetes.storage.mock";
const PV: &str = "kubelet-rs-csi-test-pv";
/// The PersistentVolume a generic ephemeral volume's claim binds to.
const EPHEMERAL_PV: &str = "kubelet-rs-csi-test-ephemeral-pv";
/// A raw block PersistentVolume.
const BLOCK_PV: &str = "kubelet-rs-csi-test-block-pv";

/// The CSI calls the driver logged, in order: (method, request JSON).
fn calls(log: &str) -> Vec<(String, serde_json::Value)> {
    log.lines()
        .filter_map(|l| l.strip_prefix("gRPCCall: "))
        .filter_map(|l| {
            let (method, rest) = l.split_once(' ')?;
            let request = rest.split(" error: ").next().unwrap_or(rest);
            Some((
                method.rsplit('/').next()?.to_owned(),
                serde_json::from_str(request).ok()?,
            ))
        })
        .collect()
}

fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap_or_default()))
}

#[test]
fn csi_volumes_are_staged_published_and_undone_across_a_restart() {
    let test = "csi_volumes_are_staged_published_and_undone_across_a_restart";
    let Some((_env, c)) = common::Cluster::from_env(test) else {
        return;
    };
    let Some(driver_binary) = common::env_program(test, "KUBELET_TEST_CSI_MOCK_DRIVER") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let root = dir.path().join("root");
    let kubelet = c.start_kubelet_with(dir.path(), "volumeStatsAggPeriod: 2s\n", &[]);
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "csi-test");
    let ns = namespace.name;
    let cleanup = || {
        let _ = c.try_kubectl(
            &[
                "delete",
                "pv",
                PV,
                EPHEMERAL_PV,
                BLOCK_PV,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
        let _ = c.try_kubectl(&["delete", "csidriver", DRIVER, "--ignore-not-found"], None);
    };
    cleanup();

    // The driver and its registration, as node-driver-registrar lays them out.
    let driver_dir = root.join("plugins").join(DRIVER);
    std::fs::create_dir_all(&driver_dir).expect("driver dir");
    let data = dir.path().join("csi-data");
    let log_path = dir.path().join("driver.log");
    let mut command = Command::new(&driver_binary);
    command
        .arg("--endpoint")
        .arg(driver_dir.join("csi.sock"))
        .arg("--registration")
        .arg(
            root.join("plugins_registry")
                .join(format!("{DRIVER}-reg.sock")),
        )
        .arg("--data-dir")
        .arg(&data);
    let driver = Helper::spawn(command, &log_path);
    let driver_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let logs = || format!("{}\ndriver:\n{}", kubelet.log(), driver_log());
    // Waits for an object to pass `check`, showing both logs when it does not.
    let wait = |what: &str,
                args: &[&str],
                secs,
                logs: &dyn Fn() -> String,
                check: &dyn Fn(&serde_json::Value) -> bool| {
        common::wait_until(what, secs, logs, || check(&c.json(args)));
        c.json(args)
    };
    wait(
        "the driver in the CSINode object",
        &["get", "node", c.node.as_str()],
        60,
        &logs,
        &|n| {
            n["metadata"]["labels"][format!("{DRIVER}/node")] == "some-mock-node"
                && n["metadata"]["annotations"]["csi.volume.kubernetes.io/nodeid"]
                    .as_str()
                    .is_some_and(|a| a.contains(&format!("\"{DRIVER}\":\"{DRIVER}\"")))
        },
    );
    let csi_node = c.json(&["get", "csinode", c.node.as_str()]);
    let drivers = csi_node["spec"]["drivers"].as_array().expect("drivers");
    let entry = drivers
        .iter()
        .find(|d| d["name"] == DRIVER)
        .expect("our driver");
    assert_eq!(entry["nodeID"], DRIVER, "{csi_node}");
    assert_eq!(entry["topologyKeys"][0], format!("{DRIVER}/node"));
    assert_eq!(csi_node["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert!(
        driver_log().contains("registration status: registered=true"),
        "{}",
        logs()
    );

    c.apply(&format!(
        r#"
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {{name: {DRIVER}}}
spec:
  attachRequired: true
  podInfoOnMount: true
  volumeLifecycleModes: [Persistent, Ephemeral]
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {PV}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  csi: {{driver: {DRIVER}, volumeHandle: "1"}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: claim, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: {PV}
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {EPHEMERAL_PV}, labels: {{disk: csi-scratch}}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: kubelet-rs-csi-test
  csi: {{driver: {DRIVER}, volumeHandle: "2"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: ephemeral, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo ephemeral > /scratch/hello && sleep 3600"]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  volumes:
  - name: scratch
    ephemeral:
      volumeClaimTemplate:
        spec:
          accessModes: [ReadWriteOnce]
          storageClassName: kubelet-rs-csi-test
          selector: {{matchLabels: {{disk: csi-scratch}}}}
          resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {BLOCK_PV}}}
spec:
  capacity: {{storage: 16Mi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  volumeMode: Block
  csi: {{driver: {DRIVER}, volumeHandle: "3"}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: raw, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeMode: Block
  volumeName: {BLOCK_PV}
  resources: {{requests: {{storage: 16Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: raw, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo block | dd of=/dev/xvda bs=512 count=1 conv=sync && sleep 3600"]
    volumeDevices: [{{name: raw, devicePath: /dev/xvda}}]
  volumes:
  - name: raw
    persistentVolumeClaim: {{claimName: raw}}
---
apiVersion: v1
kind: Pod
metadata: {{name: inline, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo inline > /data/hello && sleep 3600"]
    volumeMounts: [{{name: scratch, mountPath: /data}}]
  volumes:
  - name: scratch
    csi: {{driver: {DRIVER}, volumeAttributes: {{size: small}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: claimed, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo persistent > /data/hello && sleep 3600"]
    volumeMounts: [{{name: disk, mountPath: /data}}]
  volumes:
  - name: disk
    persistentVolumeClaim: {{claimName: claim}}
"#,
        image = c.busybox
    ));
    let running =
        |p: &serde_json::Value| p["status"]["containerStatuses"][0]["state"]["running"].is_object();
    // The controller-manager makes the VolumeAttachment of a PersistentVolume scheduled
    // here; the test answers as the driver's attacher would, with `device` as the
    // attachment's metadata.
    let attachment_made = |handle: &str, pv: &str| {
        let name = kubelet_csi::attachment_name(handle, DRIVER, &c.node);
        wait(
            &format!("the VolumeAttachment of {pv}"),
            &["get", "volumeattachment", &name],
            120,
            &logs,
            &|va| va["spec"]["source"]["persistentVolumeName"] == pv,
        );
        name
    };
    let mark_attached = |attachment: &str, device: &str| {
        let status = serde_json::json!({
            "status": {"attached": true, "attachmentMetadata": {"device": device}}
        });
        c.kubectl(&[
            "patch",
            "volumeattachment",
            attachment,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    };

    // The inline volume: published with the pod's information, no staging.
    let inline = wait(
        "inline Running",
        &["get", "pod", "-n", ns, "inline"],
        90,
        &logs,
        &running,
    );
    let uid = inline["metadata"]["uid"].as_str().expect("uid");
    let handle = kubelet_csi::ephemeral_volume_handle(uid, "scratch");
    let published = calls(&driver_log());
    let (_, request) = published
        .iter()
        .find(|(m, r)| m == "NodePublishVolume" && r["volume_id"] == handle.as_str())
        .unwrap_or_else(|| panic!("NodePublishVolume of {handle}\n{}", logs()));
    assert_eq!(
        request["volume_context"]["csi.storage.k8s.io/ephemeral"],
        "true"
    );
    assert_eq!(
        request["volume_context"]["csi.storage.k8s.io/pod.name"],
        "inline"
    );
    assert_eq!(request["volume_context"]["size"], "small");
    let inline_target = root
        .join("pods")
        .join(uid)
        .join("volumes/kubernetes.io~csi/scratch/mount");
    assert_eq!(
        request["target_path"],
        inline_target.to_str().expect("utf-8")
    );
    common::wait_until("inline's file on the driver's storage", 30, logs, || {
        std::fs::read_to_string(data.join(&handle).join("hello")).is_ok_and(|t| t == "inline\n")
    });

    // The PersistentVolume waits for its attachment, which the controller-manager asks
    // for and the test answers as the driver's attacher would.
    let attachment = attachment_made("1", PV);
    wait(
        "claimed waiting for its attachment",
        &[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.name=claimed",
        ],
        60,
        &logs,
        &|events| {
            events["items"].as_array().is_some_and(|items| {
                items.iter().any(|e| {
                    e["reason"] == "FailedMount"
                        && e["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("is not attached"))
                })
            })
        },
    );
    assert!(
        !calls(&driver_log())
            .iter()
            .any(|(m, r)| m == "NodeStageVolume" && r["volume_id"] == "1"),
        "staged before the attachment\n{}",
        logs()
    );
    mark_attached(&attachment, "/dev/mock");
    let claimed = wait(
        "claimed Running",
        &["get", "pod", "-n", ns, "claimed"],
        120,
        &logs,
        &running,
    );
    let claimed_uid = claimed["metadata"]["uid"].as_str().expect("uid").to_owned();
    let log = calls(&driver_log());
    let stage = log
        .iter()
        .position(|(m, r)| m == "NodeStageVolume" && r["volume_id"] == "1")
        .unwrap_or_else(|| panic!("NodeStageVolume\n{}", logs()));
    let publish = log
        .iter()
        .position(|(m, r)| m == "NodePublishVolume" && r["volume_id"] == "1")
        .unwrap_or_else(|| panic!("NodePublishVolume\n{}", logs()));
    assert!(stage < publish, "staged after publishing\n{}", logs());
    assert_eq!(log[stage].1["publish_context"]["device"], "/dev/mock");
    assert_eq!(log[publish].1["publish_context"]["device"], "/dev/mock");
    let staging = log[stage].1["staging_target_path"]
        .as_str()
        .expect("staging path")
        .to_owned();
    assert!(
        staging.starts_with(
            root.join("plugins/kubernetes.io/csi")
                .join(DRIVER)
                .to_str()
                .expect("utf-8")
        ) && staging.ends_with("/globalmount"),
        "{staging}"
    );
    assert_eq!(log[publish].1["staging_target_path"], staging.as_str());
    let claimed_target = root
        .join("pods")
        .join(&claimed_uid)
        .join(format!("volumes/kubernetes.io~csi/{PV}/mount"));
    assert!(
        is_mounted(&claimed_target),
        "{} not mounted",
        claimed_target.display()
    );
    let in_use = format!("kubernetes.io/csi/{DRIVER}^1");
    wait(
        "the volume in the node's volumesInUse",
        &["get", "node", c.node.as_str()],
        60,
        &logs,
        &|n| {
            n["status"]["volumesInUse"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == in_use.as_str()))
        },
    );
    // Measured by the driver (the mock reports its 100 GiB capacity): in the summary
    // with the claim, and in the claim's kubelet_volume_stats_*.
    let proxy = format!("/api/v1/nodes/{}/proxy", c.node);
    let summary_path = format!("{proxy}/stats/summary");
    common::wait_until("claimed's volume in the summary", 60, logs, || {
        let summary: serde_json::Value = c
            .try_kubectl(&["get", "--raw", &summary_path], None)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        summary["pods"].as_array().is_some_and(|pods| {
            pods.iter().any(|p| {
                p["podRef"]["name"] == "claimed"
                    && p["volume"].as_array().is_some_and(|volumes| {
                        volumes.iter().any(|v| {
                            v["name"] == "disk"
                                && v["pvcRef"]["name"] == "claim"
                                && v["pvcRef"]["namespace"] == ns
                                && v["capacityBytes"] == 107_374_182_400_u64
                        })
                    })
            })
        })
    });
    let metrics_path = format!("{proxy}/metrics");
    let series = format!(
        "kubelet_volume_stats_capacity_bytes{{namespace=\"{ns}\",persistentvolumeclaim=\"claim\"}} 1.073741824e+11"
    );
    let metrics = c.kubectl(&["get", "--raw", &metrics_path]);
    assert!(metrics.contains(&series), "{series} not in\n{metrics}");
    common::wait_until("claimed's file on the driver's storage", 30, logs, || {
        std::fs::read_to_string(data.join("1").join("hello")).is_ok_and(|t| t == "persistent\n")
    });

    // The generic ephemeral volume: its pod-owned claim bound to the other CSI
    // PersistentVolume, attached and published the same way.
    let ephemeral_attachment = attachment_made("2", EPHEMERAL_PV);
    mark_attached(&ephemeral_attachment, "/dev/mock2");
    wait(
        "ephemeral Running",
        &["get", "pod", "-n", ns, "ephemeral"],
        120,
        &logs,
        &running,
    );
    let claim = c.json(&["get", "pvc", "-n", ns, "ephemeral-scratch"]);
    assert_eq!(
        claim["metadata"]["ownerReferences"][0]["name"], "ephemeral",
        "{claim}"
    );
    assert_eq!(claim["spec"]["volumeName"], EPHEMERAL_PV);
    common::wait_until("ephemeral's file on the driver's storage", 30, logs, || {
        std::fs::read_to_string(data.join("2").join("hello")).is_ok_and(|t| t == "ephemeral\n")
    });

    // The raw block volume: staged and published as a block device, which the
    // container writes to.
    let block_attachment = attachment_made("3", BLOCK_PV);
    mark_attached(&block_attachment, "/dev/mock3");
    let raw = wait(
        "raw Running",
        &["get", "pod", "-n", ns, "raw"],
        120,
        &logs,
        &running,
    );
    let raw_uid = raw["metadata"]["uid"].as_str().expect("uid").to_owned();
    let log = calls(&driver_log());
    let (_, publish) = log
        .iter()
        .find(|(m, r)| m == "NodePublishVolume" && r["volume_id"] == "3")
        .unwrap_or_else(|| panic!("NodePublishVolume of the block volume\n{}", logs()));
    assert!(
        publish["volume_capability"]["AccessType"]["Block"].is_object(),
        "{publish}"
    );
    assert_eq!(
        publish["target_path"],
        root.join("plugins/kubernetes.io/csi/volumeDevices/publish")
            .join(BLOCK_PV)
            .join(&raw_uid)
            .to_str()
            .expect("utf-8")
    );
    assert!(
        log.iter()
            .any(|(m, r)| m == "NodeStageVolume" && r["volume_id"] == "3"),
        "the block volume staged\n{}",
        logs()
    );
    common::wait_until("raw's write on the block device", 30, logs, || {
        std::fs::read(data.join("3.img")).is_ok_and(|b| b.starts_with(b"block\n"))
    });

    // A restarted kubelet adopts both without restarting them, and finds the driver
    // registered again from its socket.
    drop(kubelet);
    let kubelet = c.start_kubelet_with(dir.path(), "volumeStatsAggPeriod: 2s\n", &[]);
    c.wait_node_ready(&kubelet);
    common::wait_until(
        "the driver registering with the new kubelet",
        60,
        || format!("{}\ndriver:\n{}", kubelet.log(), driver_log()),
        || {
            driver_log()
                .matches("registration status: registered=true")
                .count()
                >= 2
        },
    );
    for name in ["inline", "claimed", "ephemeral", "raw"] {
        let pod = c.json(&["get", "pod", "-n", ns, name]);
        assert_eq!(
            pod["status"]["containerStatuses"][0]["restartCount"], 0,
            "{name}: {pod}"
        );
    }

    // Gone: unpublished, then (no other pod publishes it) unstaged; mounts removed.
    let before = calls(&driver_log()).len();
    c.kubectl(&[
        "delete",
        "pod",
        "-n",
        ns,
        "claimed",
        "inline",
        "ephemeral",
        "raw",
        "--wait=true",
        "--timeout=90s",
    ]);
    let logs = || format!("{}\ndriver:\n{}", kubelet.log(), driver_log());
    common::wait_until("NodeUnstageVolume", 60, logs, || {
        calls(&driver_log())[before..]
            .iter()
            .any(|(m, r)| m == "NodeUnstageVolume" && r["volume_id"] == "1")
            && calls(&driver_log())[before..]
                .iter()
                .any(|(m, r)| m == "NodeUnstageVolume" && r["volume_id"] == "2")
            && calls(&driver_log())[before..]
                .iter()
                .any(|(m, r)| m == "NodeUnstageVolume" && r["volume_id"] == "3")
    });
    let log = calls(&driver_log());
    let after = &log[before..];
    let unpublish = after
        .iter()
        .position(|(m, r)| m == "NodeUnpublishVolume" && r["volume_id"] == "1")
        .unwrap_or_else(|| panic!("NodeUnpublishVolume\n{}", logs()));
    let unstage = after
        .iter()
        .position(|(m, r)| m == "NodeUnstageVolume" && r["volume_id"] == "1")
        .expect("unstaged");
    assert!(unpublish < unstage, "{}", logs());
    assert_eq!(after[unstage].1["staging_target_path"], staging.as_str());
    assert!(
        after
            .iter()
            .any(|(m, r)| m == "NodeUnpublishVolume" && r["volume_id"] == handle.as_str()),
        "inline unpublished\n{}",
        logs()
    );
    common::wait_until("the pods' directories removed", 60, logs, || {
        !root.join("pods").join(uid).exists() && !root.join("pods").join(&claimed_uid).exists()
    });
    assert!(
        !Path::new(&staging).exists(),
        "staging directory left: {staging}"
    );
    common::wait_until("the volume out of volumesInUse", 60, logs, || {
        !c.json(&["get", "node", c.node.as_str()])["status"]["volumesInUse"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v == in_use.as_str()))
    });
    // The storage keeps the data, as a real driver's would.
    assert_eq!(
        std::fs::read_to_string(data.join("1").join("hello")).expect("data kept"),
        "persistent\n"
    );

    drop(namespace);
    drop(kubelet);
    drop(driver);
    cleanup();
    let _ = c.try_kubectl(
        &[
            "delete",
            "volumeattachment",
            &attachment,
            &ephemeral_attachment,
            &block_attachment,
            "--ignore-not-found",
            "--wait=false",
        ],
        None,
    );
}
