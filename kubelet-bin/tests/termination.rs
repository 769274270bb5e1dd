//! Graceful deletion on the real control plane and containerd: while a deleted pod's
//! containers stop (a preStop hook taking its time), readiness probes keep running and
//! their changes reach the API, so Ready goes False before the pod is gone, as
//! upstream's terminating pods do.

mod common;

use common::{Namespace, condition, lock};

#[test]
fn readiness_is_published_while_a_pod_terminates() {
    let Some((_env, c)) =
        common::Cluster::from_env("readiness_is_published_while_a_pod_terminates")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "terminating-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: draining, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    readinessProbe:
      exec: {{command: ["cat", "/tmp/ready"]}}
      periodSeconds: 1
      failureThreshold: 1
    lifecycle:
      preStop:
        exec: {{command: ["sh", "-c", "rm /tmp/ready; sleep 15"]}}
"#,
        image = c.busybox
    ));
    let args = ["get", "pods", "-n", ns];
    c.wait_json("the pod Ready", &args, 90, &kubelet, |l| {
        l["items"][0]["status"]["phase"] == "Running"
            && condition(&l["items"][0], "Ready") == Some("True")
    });
    c.kubectl(&["delete", "pod", "draining", "-n", ns, "--wait=false"]);
    // The preStop hook runs for 15 s: Ready must go False well before the pod is gone.
    let draining = c.wait_json("Ready False while terminating", &args, 12, &kubelet, |l| {
        let pod = &l["items"][0];
        pod["metadata"]["deletionTimestamp"].is_string() && condition(pod, "Ready") == Some("False")
    });
    let pod = &draining["items"][0];
    assert_eq!(condition(pod, "ContainersReady"), Some("False"), "{pod:#}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["ready"], false,
        "{pod:#}"
    );
    assert!(
        pod["status"]["containerStatuses"][0]["state"]["running"].is_object(),
        "still running its preStop hook: {pod:#}"
    );
    c.wait_json("the pod gone", &args, 60, &kubelet, |l| {
        l["items"].as_array().is_some_and(Vec::is_empty)
    });
}
