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
