//! In-place pod resize on the real control plane and containerd: the `resize`
//! subresource changes a running pod's resources, the kubelet admits the change against
//! the node, applies it to the containers' and the pod's cgroups without a restart (or
//! restarts the container whose `resizePolicy` asks for it), reports `resources` and
//! `allocatedResources` in the container statuses, and keeps a resize that does not fit
//! pending (`PodResizePending`, `Deferred`) until room is made.

mod common;

use common::{Cluster, Namespace, condition, lock};
use serde_json::Value;

/// The pod's cgroup directory of `controller` on this host (cgroup v1 or v2), or one
/// of its containers'.
fn cgroup_file(pod: &Value, container_id: Option<&str>, controller: &str, file: &str) -> String {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let qos = pod["status"]["qosClass"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup");
    let v2 = dir.join("cgroup.controllers").exists();
    if !v2 {
        dir.push(controller);
    }
    dir.push("kubepods");
    if qos != "guaranteed" {
        dir.push(qos);
    }
    dir.push(format!("pod{uid}"));
    if let Some(id) = container_id {
        dir.push(id.trim_start_matches("containerd://"));
    }
    let path = dir.join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn event_reasons(c: &Cluster, ns: &str, pod: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={pod}");
    c.json(&["get", "events", "-n", ns, "--field-selector", &selector])["items"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|e| e["reason"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_running_pod_is_resized_in_place() {
    let Some((_env, c)) = Cluster::from_env("a_running_pod_is_resized_in_place") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "resize-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: grow, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources: {{requests: {{cpu: 100m, memory: 32Mi}}, limits: {{cpu: 200m, memory: 64Mi}}}}
  - name: strict
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resizePolicy: [{{resourceName: memory, restartPolicy: RestartContainer}}]
    resources: {{requests: {{memory: 32Mi}}, limits: {{memory: 64Mi}}}}
"#,
        image = c.busybox
    ));
    let pod_args = ["get", "pod", "grow", "-n", ns];
    let pod = c.wait_json("the pod Running", &pod_args, 90, &kubelet, |p| {
        condition(p, "Ready") == Some("True")
    });
    let main = container(&pod, "main");
    assert_eq!(main["allocatedResources"]["cpu"], "100m", "{main:#}");
    assert_eq!(main["resources"]["limits"]["cpu"], "200m", "{main:#}");
    assert_eq!(main["resources"]["requests"]["memory"], "32Mi", "{main:#}");
    let main_id = main["containerID"].as_str().unwrap_or_default().to_owned();
    let strict_id = container(&pod, "strict")["containerID"].clone();
    let quota = |pod: &Value| cgroup_file(pod, Some(&main_id), "cpu", "cpu.cfs_quota_us");
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !v2 {
        assert_eq!(quota(&pod), "20000");
        assert_eq!(
            cgroup_file(&pod, None, "memory", "memory.limit_in_bytes"),
            (128u64 << 20).to_string(),
            "the pod cgroup's memory limit: both containers' limits"
        );
    }

    // CPU of one container and memory of the other, whose policy restarts it.
    c.kubectl(&[
        "patch", "pod", "grow", "-n", ns, "--subresource", "resize", "--patch",
        r#"{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"150m"},"limits":{"cpu":"300m"}}},{"name":"strict","resources":{"requests":{"memory":"48Mi"},"limits":{"memory":"96Mi"}}}]}}"#,
    ]);
    let pod = c.wait_json("the resize applied", &pod_args, 60, &kubelet, |p| {
        let (main, strict) = (container(p, "main"), container(p, "strict"));
        main["resources"]["limits"]["cpu"] == "300m"
            && main["allocatedResources"]["cpu"] == "150m"
            && strict["resources"]["limits"]["memory"] == "96Mi"
            && strict["state"]["running"].is_object()
            && condition(p, "PodResizeInProgress").is_none()
            && condition(p, "PodResizePending").is_none()
    });
    let (main, strict) = (container(&pod, "main"), container(&pod, "strict"));
    assert_eq!(
        main["containerID"],
        main_id.as_str(),
        "resized in place: {main:#}"
    );
    assert_eq!(main["restartCount"], 0, "{main:#}");
    assert_ne!(
        strict["containerID"], strict_id,
        "RestartContainer: {strict:#}"
    );
    assert_eq!(strict["restartCount"], 1, "{strict:#}");
    assert_eq!(strict["allocatedResources"]["memory"], "48Mi", "{strict:#}");
    if !v2 {
        assert_eq!(quota(&pod), "30000", "the container's CFS quota follows");
        assert_eq!(
            cgroup_file(&pod, Some(&main_id), "cpu", "cpu.shares"),
            "153",
            "150m of CPU in shares"
        );
        assert_eq!(
            cgroup_file(&pod, None, "memory", "memory.limit_in_bytes"),
            (160u64 << 20).to_string(),
            "the pod cgroup grew with its containers"
        );
    }
    let reasons = event_reasons(&c, ns, "grow");
    for wanted in ["ResizeStarted", "ResizeCompleted"] {
        assert!(
            reasons.iter().any(|r| r == wanted),
            "{wanted} in {reasons:?}"
        );
    }

    // A resize the node has no room for now waits, and goes through once room is made.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hog, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources: {{requests: {{cpu: 1500m}}}}
"#,
        image = c.busybox
    ));
    c.wait_json(
        "the hog Running",
        &["get", "pod", "hog", "-n", ns],
        90,
        &kubelet,
        |p| condition(p, "Ready") == Some("True"),
    );
    c.kubectl(&[
        "patch", "pod", "grow", "-n", ns, "--subresource", "resize", "--patch",
        r#"{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"1"},"limits":{"cpu":"1"}}}]}}"#,
    ]);
    let pending = c.wait_json("the resize deferred", &pod_args, 60, &kubelet, |p| {
        condition(p, "PodResizePending").is_some()
    });
    let deferred = pending["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == "PodResizePending"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(deferred["reason"], "Deferred", "{deferred:#}");
    assert!(
        deferred["message"]
            .as_str()
            .is_some_and(|m| m.contains("cpu")),
        "{deferred:#}"
    );
    let main = container(&pending, "main");
    assert_eq!(
        main["allocatedResources"]["cpu"], "150m",
        "still the old allocation"
    );
    assert!(
        event_reasons(&c, ns, "grow")
            .iter()
            .any(|r| r == "ResizeDeferred")
    );

    c.kubectl(&["delete", "pod", "hog", "-n", ns, "--wait=false"]);
    let pod = c.wait_json(
        "the deferred resize applied",
        &pod_args,
        90,
        &kubelet,
        |p| {
            let main = container(p, "main");
            main["allocatedResources"]["cpu"] == "1"
                && main["resources"]["limits"]["cpu"] == "1"
                && condition(p, "PodResizePending").is_none()
                && condition(p, "PodResizeInProgress").is_none()
        },
    );
    assert_eq!(container(&pod, "main")["restartCount"], 0);
    if !v2 {
        assert_eq!(quota(&pod), "100000");
        assert_eq!(
            cgroup_file(&pod, Some(&main_id), "cpu", "cpu.shares"),
            "1024"
        );
    }

    // A memory limit below what the container uses is not applied: the resize stays in
    // progress with the error, and the container keeps running with its old limit.
    c.kubectl(&[
        "patch", "pod", "grow", "-n", ns, "--subresource", "resize", "--patch",
        r#"{"spec":{"containers":[{"name":"main","resources":{"requests":{"memory":"100Ki"},"limits":{"memory":"100Ki"}}}]}}"#,
    ]);
    let failed = c.wait_json("the resize error", &pod_args, 60, &kubelet, |p| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == "PodResizeInProgress"))
            .is_some_and(|c| c["reason"] == "Error")
    });
    let in_progress = failed["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == "PodResizeInProgress"))
        .cloned()
        .unwrap_or_default();
    assert!(
        in_progress["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot decrease memory limits")),
        "{in_progress:#}"
    );
    let main = container(&failed, "main");
    assert_eq!(main["allocatedResources"]["memory"], "100Ki", "{main:#}");
    assert_eq!(main["resources"]["limits"]["memory"], "64Mi", "{main:#}");
    assert!(main["state"]["running"].is_object(), "{main:#}");
    assert!(
        event_reasons(&c, ns, "grow")
            .iter()
            .any(|r| r == "ResizeError")
    );
}
