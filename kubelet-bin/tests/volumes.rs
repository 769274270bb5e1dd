//! Volumes of running pods on the real control plane and containerd: a configMap volume
//! whose source goes away keeps its last contents, and the pod's containers keep
//! restarting with it (a `FailedMount` event says the refresh failed), as upstream's
//! volume manager keeps a mounted volume mounted.

mod common;

use common::{Namespace, lock};

fn restarts(pod: &serde_json::Value) -> i64 {
    pod["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn a_running_pod_keeps_restarting_when_its_config_map_goes() {
    let Some((_env, c)) =
        common::Cluster::from_env("a_running_pod_keeps_restarting_when_its_config_map_goes")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "volume-refresh-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{greeting: hello}}
---
apiVersion: v1
kind: Pod
metadata: {{name: reader, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "cat /config/greeting; sleep 3; exit 1"]
    volumeMounts: [{{name: config, mountPath: /config}}]
  volumes:
  - name: config
    configMap: {{name: settings}}
"#,
        image = c.busybox
    ));
    let args = ["get", "pod", "reader", "-n", ns];
    c.wait_json("the pod Running", &args, 90, &kubelet, |p| {
        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    c.kubectl(&["delete", "configmap", "settings", "-n", ns]);
    // The kubelet sees the configMap gone (its refresh fails) ...
    let failed_mount = |events: &serde_json::Value| {
        events["items"].as_array().is_some_and(|items| {
            items.iter().filter_map(|e| e["message"].as_str()).any(|m| {
                m.contains("MountVolume.SetUp failed for volume \"config\"")
                    && m.contains("configmap \"settings\" not found")
            })
        })
    };
    let events = [
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "involvedObject.name=reader,reason=FailedMount",
    ];
    c.wait_json("the FailedMount event", &events, 60, &kubelet, failed_mount);
    // ... and still restarts the container when it exits (every 3 s, after back-off).
    let before = restarts(&c.json(&args));
    let restarted = c.wait_json(
        "a restart without the configMap",
        &args,
        90,
        &kubelet,
        |p| {
            restarts(p) > before
                && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        },
    );
    assert!(restarts(&restarted) > before, "{restarted:#}");
    // The restarted container read the volume's last contents.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let logs = c.kubectl(&["logs", "reader", "-n", ns, "-c", "main"]);
        if logs.contains("hello") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the last contents stay: {logs:?}\n{}",
            kubelet.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn bidirectional_mounts_reach_the_node_and_the_other_container() {
    let Some((_env, c)) =
        common::Cluster::from_env("bidirectional_mounts_reach_the_node_and_the_other_container")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "propagation-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: propagation, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: mounter
    image: {image}
    imagePullPolicy: IfNotPresent
    securityContext: {{privileged: true}}
    command: ["sh", "-c", "mkdir -p /shared/inner && mount -t tmpfs tmpfs /shared/inner && echo from-mounter > /shared/inner/file && sleep 3600"]
    volumeMounts:
    - {{name: shared, mountPath: /shared, mountPropagation: Bidirectional}}
  - name: watcher
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "until cat /seen/inner/file; do sleep 1; done; sleep 3600"]
    volumeMounts:
    - {{name: shared, mountPath: /seen, mountPropagation: HostToContainer}}
  volumes:
  - name: shared
    emptyDir: {{}}
"#,
        node = c.node,
        image = c.busybox,
    ));
    let pod = c.wait_json(
        "propagation Running",
        &["get", "pod", "-n", ns, "propagation"],
        90,
        &kubelet,
        |p| p["status"]["phase"] == "Running",
    );
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_owned();
    common::wait_until(
        "the watcher sees the mounter's tmpfs",
        60,
        || kubelet.log(),
        || {
            c.try_kubectl(&["logs", "-n", ns, "propagation", "-c", "watcher"], None)
                .is_ok_and(|l| l == "from-mounter\n")
        },
    );
    // The node sees it too, in the emptyDir's directory under the root directory.
    let on_node = dir
        .path()
        .join("root/pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/shared/inner/file");
    assert_eq!(
        std::fs::read_to_string(&on_node).ok().as_deref(),
        Some("from-mounter\n"),
        "{}",
        on_node.display()
    );
    // A mount the pod made must be undone by it before the emptyDir can go, as upstream.
    c.kubectl(&[
        "exec",
        "-n",
        ns,
        "propagation",
        "-c",
        "mounter",
        "--",
        "umount",
        "/shared/inner",
    ]);
    drop(namespace);
    drop(kubelet);
}

/// Where a pod's log says it found or wrote its mark.
fn pod_log(c: &common::Cluster, ns: &str, pod: &str) -> String {
    c.try_kubectl(&["logs", "-n", ns, pod], None)
        .unwrap_or_default()
}

#[test]
fn a_stateful_set_finds_its_data_again_on_a_local_persistent_volume() {
    let Some((_env, c)) = common::Cluster::from_env(
        "a_stateful_set_finds_its_data_again_on_a_local_persistent_volume",
    ) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "local-pv-test");
    let ns = namespace.name;
    // Cluster-scoped: named for the test, removed before and after.
    let remove_cluster_objects = || {
        let _ = c.try_kubectl(
            &[
                "delete",
                "pv,storageclass",
                "local-pv-test-data",
                "local-pv-test-scratch",
                "local-pv-test",
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
    };
    remove_cluster_objects();
    let disks = dir.path().join("disks");
    for disk in ["data", "scratch"] {
        std::fs::create_dir_all(disks.join(disk)).expect("disk directory");
    }
    let pv = |name: &str| {
        format!(
            r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: local-pv-test-{name}, labels: {{disk: {name}}}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-pv-test
  local: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [{node}]}}
"#,
            path = disks.join(name).display(),
            node = c.node,
        )
    };
    c.apply(&format!(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: local-pv-test}}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---{data}---{scratch}---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web, namespace: {ns}}}
spec:
  serviceName: web
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      securityContext: {{fsGroup: 2345}}
      containers:
      - name: app
        image: {image}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "if [ -f /data/mark ]; then echo found $(cat /data/mark); else echo $HOSTNAME > /data/mark && echo wrote; fi; sleep 3600"]
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: local-pv-test
      selector: {{matchLabels: {{disk: data}}}}
      resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: scratch, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo ephemeral > /scratch/file && cat /scratch/file && sleep 3600"]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  volumes:
  - name: scratch
    ephemeral:
      volumeClaimTemplate:
        spec:
          accessModes: [ReadWriteOnce]
          storageClassName: local-pv-test
          selector: {{matchLabels: {{disk: scratch}}}}
          resources: {{requests: {{storage: 1Gi}}}}
"#,
        data = pv("data"),
        scratch = pv("scratch"),
        image = c.busybox,
    ));
    let running =
        |p: &serde_json::Value| p["status"]["containerStatuses"][0]["state"]["running"].is_object();
    let first = c.wait_json(
        "web-0 Running",
        &["get", "pod", "-n", ns, "web-0"],
        120,
        &kubelet,
        running,
    );
    let first_uid = first["metadata"]["uid"].as_str().expect("uid").to_owned();
    common::wait_until(
        "web-0 wrote its mark",
        30,
        || kubelet.log(),
        || pod_log(&c, ns, "web-0") == "wrote\n",
    );
    // Written through the bind mount into the PV's directory, with the pod's fsGroup.
    let mark = disks.join("data/mark");
    assert_eq!(
        std::fs::read_to_string(&mark).ok().as_deref(),
        Some("web-0\n")
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(disks.join("data")).expect("disk").gid(),
        2345
    );
    // The generic ephemeral volume: its claim, owned by the pod, bound to the other PV.
    c.wait_json(
        "scratch Running",
        &["get", "pod", "-n", ns, "scratch"],
        120,
        &kubelet,
        running,
    );
    common::wait_until(
        "scratch wrote",
        30,
        || kubelet.log(),
        || {
            std::fs::read_to_string(disks.join("scratch/file"))
                .ok()
                .as_deref()
                == Some("ephemeral\n")
        },
    );

    // The pod goes; the StatefulSet makes it again, and it finds its data.
    c.kubectl(&["delete", "pod", "-n", ns, "web-0", "--wait=true"]);
    let mount_of_first = dir
        .path()
        .join("root/pods")
        .join(&first_uid)
        .join("volumes/kubernetes.io~local-volume/local-pv-test-data");
    assert!(
        !mount_of_first.exists(),
        "the first pod's mount is gone: {}",
        mount_of_first.display()
    );
    let second = c.wait_json(
        "web-0 Running again",
        &["get", "pod", "-n", ns, "web-0"],
        120,
        &kubelet,
        |p| p["metadata"]["uid"].as_str() != Some(first_uid.as_str()) && running(p),
    );
    assert_ne!(second["metadata"]["uid"], first["metadata"]["uid"]);
    common::wait_until(
        "web-0 found its mark",
        30,
        || kubelet.log(),
        || pod_log(&c, ns, "web-0") == "found web-0\n",
    );
    drop(namespace);
    remove_cluster_objects();
    // The data outlives the pods and their claims (Retain).
    assert_eq!(
        std::fs::read_to_string(&mark).ok().as_deref(),
        Some("web-0\n"),
        "{}",
        kubelet.log()
    );
    drop(kubelet);
}

/// A loop device over a file, detached when dropped.
struct LoopDevice(String);

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.0])
            .status();
    }
}

#[test]
fn a_local_block_persistent_volume_is_given_to_the_container_as_its_device() {
    let test = "a_local_block_persistent_volume_is_given_to_the_container_as_its_device";
    let Some((_env, c)) = common::Cluster::from_env(test) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(8 << 20))
        .expect("disk image");
    let attached = std::process::Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image)
        .output()
        .ok()
        .filter(|o| o.status.success());
    let Some(attached) = attached else {
        return kubelet_test_support::skip(test, "losetup cannot attach a loop device here");
    };
    let device = LoopDevice(String::from_utf8_lossy(&attached.stdout).trim().to_owned());
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "local-block-test");
    let ns = namespace.name;
    let remove_pv = || {
        let _ = c.try_kubectl(
            &[
                "delete",
                "pv",
                "local-block-test",
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
    };
    remove_pv();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: local-block-test}}
spec:
  capacity: {{storage: 8Mi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  volumeMode: Block
  local: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [{node}]}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: raw, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeMode: Block
  volumeName: local-block-test
  resources: {{requests: {{storage: 8Mi}}}}
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
    command: ["sh", "-c", "echo local-block | dd of=/dev/xvdb bs=512 count=1 conv=sync && sleep 3600"]
    volumeDevices: [{{name: raw, devicePath: /dev/xvdb}}]
  volumes:
  - name: raw
    persistentVolumeClaim: {{claimName: raw}}
"#,
        path = device.0,
        node = c.node,
        image = c.busybox,
    ));
    c.wait_json(
        "raw Running",
        &["get", "pod", "-n", ns, "raw"],
        90,
        &kubelet,
        |p| p["status"]["containerStatuses"][0]["state"]["running"].is_object(),
    );
    common::wait_until(
        "the container's write on the node's device",
        30,
        || kubelet.log(),
        || std::fs::read(&image).is_ok_and(|b| b.starts_with(b"local-block\n")),
    );
    drop(namespace);
    remove_pv();
    drop(kubelet);
    drop(device);
}
