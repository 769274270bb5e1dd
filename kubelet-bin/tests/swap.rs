//! Swapping this kubelet for the upstream kubelet v1.37.2 and back on one node, with the
//! same KubeletConfiguration file, kubeconfig and root directory, against the real
//! control plane and containerd (`cargo xtask env up --control-plane` builds the
//! upstream kubelet from its Go module): the pods one started keep running under the
//! other with the same containers and no restart, the other deletes them cleanly (their
//! volume mounts included, which needs the root directory to be a shared mount as
//! upstream makes it), and new pods start. A static pod keeps running too: both kubelets
//! give its manifest the same UID (upstream's hash of its spew dump).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Cluster, Kubelet, Namespace, lock};
use serde_json::Value;

/// The configuration both kubelets read (beyond the test defaults of `common`).
fn config(manifests: &std::path::Path) -> String {
    format!(
        "failCgroupV1: false\nstaticPodPath: {}\n",
        manifests.display()
    )
}

/// A static pod with what upstream's UID hash covers beyond names: quantities, a probe
/// with a named port, an emptyDir, labels.
fn static_pod_yaml(ns: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: static
  namespace: {ns}
  labels: {{tier: control-plane, component: static}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8099 -h /www"]
    ports: [{{name: probe, containerPort: 8099}}]
    readinessProbe:
      tcpSocket: {{port: probe}}
      periodSeconds: 2
    resources:
      requests: {{cpu: 10m, memory: 16Mi}}
      limits: {{memory: 64Mi}}
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  volumes:
  - name: scratch
    emptyDir: {{sizeLimit: 8Mi}}
"#
    )
}

/// Each container's ID and restart count, by pod.
fn containers(c: &Cluster, ns: &str) -> BTreeMap<String, Vec<(String, i64)>> {
    let pods = c.json(&["get", "pods", "-n", ns]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let statuses = p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    (
                        s["containerID"].as_str().unwrap_or_default().to_owned(),
                        s["restartCount"].as_i64().unwrap_or(-1),
                    )
                })
                .collect();
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                statuses,
            )
        })
        .collect()
}

fn pod_yaml(ns: &str, node: &str, image: &str, name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "cat /cfg/greeting; echo; sleep 3600"]
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
    - {{name: scratch, mountPath: /scratch}}
  volumes:
  - name: cfg
    configMap: {{name: cfg}}
  - name: scratch
    emptyDir: {{}}
"#
    )
}

/// Waits until the pods are Running and Ready.
fn wait_running(c: &Cluster, ns: &str, names: &[&str], kubelet: &Kubelet) {
    for name in names {
        c.wait_json(
            &format!("{name} Running and Ready"),
            &["get", "pod", "-n", ns, name],
            90,
            kubelet,
            |p| p["status"]["phase"] == "Running" && common::condition(p, "Ready") == Some("True"),
        );
    }
}

/// Deletes a pod and waits until the kubelet has finished it and the object is gone.
fn delete_pod(c: &Cluster, ns: &str, name: &str, kubelet: &Kubelet) {
    if let Err(e) = c.try_kubectl(
        &[
            "delete",
            "pod",
            "-n",
            ns,
            name,
            "--wait=true",
            "--timeout=90s",
        ],
        None,
    ) {
        panic!("deleting {name}: {e}\n{}", kubelet.log());
    }
    let left = c.try_kubectl(&["get", "pod", "-n", ns, name], None);
    assert!(left.is_err(), "{name} still there: {left:?}");
}

/// Lets the new kubelet sync what it adopted, then checks that no container of `pods`
/// changed or restarted.
fn assert_adopted(
    c: &Cluster,
    ns: &str,
    before: &BTreeMap<String, Vec<(String, i64)>>,
    pods: &[&str],
    kubelet: &Kubelet,
) {
    // Several sync periods of the new kubelet (status every 2 s, relist every 1 s).
    std::thread::sleep(Duration::from_secs(20));
    wait_running(c, ns, pods, kubelet);
    let after = containers(c, ns);
    for pod in pods {
        assert_eq!(
            after.get(*pod),
            before.get(*pod),
            "{pod}: containers changed after the swap\n{}",
            kubelet.log()
        );
        assert!(
            after[*pod]
                .iter()
                .all(|(id, restarts)| !id.is_empty() && *restarts == 0),
            "{pod}: {:?}",
            after[*pod]
        );
    }
}

#[test]
fn pods_survive_a_swap_to_the_upstream_kubelet_and_back() {
    let test = "pods_survive_a_swap_to_the_upstream_kubelet_and_back";
    let Some((_env, c)) = Cluster::from_env(test) else {
        return;
    };
    let Some(upstream) = common::env_program(test, "KUBELET_TEST_UPSTREAM_KUBELET") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let (node, image) = (&c.node, &c.busybox);
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifest directory");
    let config = config(&manifests);

    // Ours starts three pods with configMap and emptyDir volumes, and a static pod.
    let namespace = Namespace::create(&c, "swap");
    let ns = namespace.name;
    std::fs::write(manifests.join("static.yaml"), static_pod_yaml(ns, image))
        .expect("static pod manifest");
    let mirror = format!("static-{node}");
    let ours = c.start_kubelet_with(dir.path(), &config, &[]);
    c.wait_node_ready(&ours);
    c.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: {ns}}}\ndata: {{greeting: hello}}\n"
    ));
    for name in ["web", "keeper", "plain"] {
        c.apply(&pod_yaml(ns, node, image, name));
    }
    wait_running(&c, ns, &["web", "keeper", "plain", &mirror], &ours);
    let before = containers(&c, ns);
    drop(ours);

    // Upstream adopts them, deletes two (tearing down the mounts ours made), starts one.
    let theirs = c.start_upstream_kubelet(&upstream, dir.path());
    c.wait_node_ready(&theirs);
    assert_adopted(
        &c,
        ns,
        &before,
        &["web", "keeper", "plain", &mirror],
        &theirs,
    );
    delete_pod(&c, ns, "web", &theirs);
    delete_pod(&c, ns, "plain", &theirs);
    c.apply(&pod_yaml(ns, node, image, "born-upstream"));
    wait_running(&c, ns, &["born-upstream"], &theirs);
    let logs = c.kubectl(&["logs", "-n", ns, "born-upstream"]);
    assert_eq!(logs, "hello\n", "{}", theirs.log());
    let before = containers(&c, ns);
    drop(theirs);

    // Ours adopts them again, deletes upstream's (its mounts), starts a new one.
    let ours = c.start_kubelet_with(dir.path(), &config, &[]);
    c.wait_node_ready(&ours);
    assert_adopted(
        &c,
        ns,
        &before,
        &["keeper", "born-upstream", &mirror],
        &ours,
    );
    delete_pod(&c, ns, "born-upstream", &ours);
    c.apply(&pod_yaml(ns, node, image, "born-again"));
    wait_running(&c, ns, &["born-again"], &ours);
    let pods: Value = c.json(&["get", "pods", "-n", ns]);
    let names: Vec<&str> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["born-again", "keeper", mirror.as_str()]);

    // The static pod goes with its manifest.
    std::fs::remove_file(manifests.join("static.yaml")).expect("remove the manifest");
    c.wait_json(
        "the mirror pod gone",
        &["get", "pods", "-n", ns],
        60,
        &ours,
        |pods| {
            !pods["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["metadata"]["name"] == mirror.as_str())
        },
    );
    drop(namespace);
    drop(ours);
}
