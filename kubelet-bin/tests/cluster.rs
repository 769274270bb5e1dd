//! The `kubelet` binary joining a real control plane (etcd, kube-apiserver with
//! Node,RBAC and NodeRestriction, controller-manager, scheduler from `cargo xtask env up
//! --control-plane`), driven with the real kubectl: node registration and status, the
//! Lease, a Deployment scheduled onto the node, env from a ConfigMap and service links,
//! events, mirror pods, graceful deletion, re-registration, and an API server outage.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Cluster, Kubelet, Namespace, condition, lock};
use serde_json::Value;

/// Starts the kubelet from flags alone, with the node's kubeconfig, plus `extra`.
fn start_kubelet(c: &Cluster, root: &std::path::Path, extra: &[&str]) -> Kubelet {
    let mut args = vec!["--kubeconfig", c.node_kubeconfig.as_str()];
    args.extend_from_slice(extra);
    c.spawn_kubelet(root, &args, &[])
}

/// GET `path` of an HTTP server in a pod; the body.
fn http_get(ip: &str, port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect((ip, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn running_pods(list: &Value) -> Vec<&Value> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| {
                    p["status"]["phase"] == "Running" && condition(p, "Ready") == Some("True")
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn node_joins_and_runs_a_deployment() {
    let Some((env, c)) = Cluster::from_env("node_joins_and_runs_a_deployment") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifest dir");
    std::fs::write(
        manifests.join("static.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\n  namespace: default\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: web\n    image: {}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n",
            c.busybox
        ),
    )
    .expect("static pod manifest");
    // A fresh registration, so the taint, labels and provider ID given at start-up are
    // applied.
    let _ = c.try_kubectl(&["delete", "node", &c.node, "--wait=true"], None);
    let manifest_flag = manifests.to_string_lossy().into_owned();
    let kubelet = start_kubelet(
        &c,
        dir.path(),
        &[
            "--pod-manifest-path",
            &manifest_flag,
            "--file-check-frequency",
            "2s",
            "--node-labels",
            "example.com/role=test",
            "--register-with-taints",
            "example.com/soft=yes:PreferNoSchedule",
            "--provider-id",
            "kubelet-rs-test://vm",
        ],
    );

    // The Node: Ready, labelled, sized and described as upstream.
    let node = c.wait_node_ready(&kubelet);
    assert_eq!(
        node["spec"]["providerID"], "kubelet-rs-test://vm",
        "{node:#}"
    );
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], c.node.as_str());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string(), "{labels}");
    assert_eq!(labels["example.com/role"], "test");
    assert_eq!(
        node["spec"]["taints"][0]["key"], "example.com/soft",
        "{node:#}"
    );
    let status = &node["status"];
    assert_eq!(status["capacity"]["pods"], "110");
    assert_eq!(status["allocatable"]["pods"], "110");
    assert!(status["capacity"]["cpu"].is_string() && status["capacity"]["memory"].is_string());
    assert!(
        status["capacity"]["ephemeral-storage"].is_string(),
        "{status:#}"
    );
    let info = &status["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("containerd://")),
        "{info}"
    );
    assert!(
        info["kubeletVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.37."))
    );
    assert!(
        !info["bootID"].as_str().unwrap_or_default().is_empty(),
        "{info}"
    );
    assert!(
        status["addresses"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == "10.88.0.1")),
        "{status:#}"
    );
    for (kind, reason) in [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
        ("Ready", "KubeletReady"),
    ] {
        let found = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|x| x["type"] == kind))
            .unwrap_or_else(|| panic!("condition {kind} missing: {status:#}"));
        assert_eq!(found["reason"], reason);
    }
    assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);

    // Node events, as upstream records them against the new Node (found by its UID, as
    // `kubectl describe node` finds them).
    let uid = node["metadata"]["uid"]
        .as_str()
        .expect("node uid")
        .to_owned();
    let selector = format!(
        "involvedObject.kind=Node,involvedObject.name={},involvedObject.uid={uid}",
        c.node
    );
    let node_events = &[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        &selector,
    ];
    let has = |reason: &'static str| {
        move |list: &Value| {
            list["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|e| e["reason"] == reason))
        }
    };
    let mut wanted = vec![
        "Starting",
        "NodeHasSufficientMemory",
        "NodeHasNoDiskPressure",
        "NodeHasSufficientPID",
    ];
    let cgroup_v1 = !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if cgroup_v1 {
        wanted.push("CgroupV1");
    }
    let events = c.wait_json("node events", node_events, 30, &kubelet, |list| {
        wanted.iter().all(|reason| has(reason)(list))
    });
    for e in events["items"].as_array().into_iter().flatten() {
        assert_eq!(e["source"]["component"], "kubelet", "{e:#}");
        assert_eq!(e["involvedObject"]["namespace"], Value::Null, "{e:#}");
        let (reason, message) = (e["reason"].as_str().unwrap_or_default(), &e["message"]);
        match reason {
            "Starting" => {
                assert_eq!(message, "Starting kubelet.");
                assert_eq!(e["type"], "Normal");
            }
            "CgroupV1" => {
                assert!(
                    message
                        .as_str()
                        .is_some_and(|m| m.starts_with("cgroup v1 detected."))
                );
                assert_eq!(e["type"], "Warning");
            }
            _ if reason.starts_with("NodeHas") => {
                assert_eq!(message, &format!("Node {} status is now: {reason}", c.node));
                assert_eq!(e["type"], "Normal");
            }
            _ => {}
        }
    }
    assert!(
        !has("NodeReady")(&events),
        "a new node's first Ready is no transition: {events:#}"
    );
    // Cordoned and uncordoned: seen within a status update period.
    c.kubectl(&["cordon", &c.node]);
    c.wait_json(
        "NodeNotSchedulable event",
        node_events,
        30,
        &kubelet,
        has("NodeNotSchedulable"),
    );
    c.kubectl(&["uncordon", &c.node]);
    c.wait_json(
        "NodeSchedulable event",
        node_events,
        30,
        &kubelet,
        has("NodeSchedulable"),
    );

    // The Lease, renewed.
    let lease = c.wait_json(
        "node lease",
        &["get", "lease", "-n", "kube-node-lease", &c.node],
        30,
        &kubelet,
        |l| l["spec"]["holderIdentity"] == c.node.as_str(),
    );
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    let owner = &lease["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node", "{lease:#}");
    assert_eq!(owner["uid"], node["metadata"]["uid"], "{lease:#}");
    // An owner lost (as an old kubelet could leave it) is restored on renewal.
    c.kubectl(&[
        "patch",
        "lease",
        &c.node,
        "-n",
        "kube-node-lease",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
    ]);
    let lease = c.wait_json(
        "lease owner restored",
        &["get", "lease", "-n", "kube-node-lease", &c.node],
        30,
        &kubelet,
        |l| l["metadata"]["ownerReferences"][0]["kind"] == "Node",
    );
    let first_renew = lease["spec"]["renewTime"].clone();
    c.wait_json(
        "lease renewed",
        &["get", "lease", "-n", "kube-node-lease", &c.node],
        30,
        &kubelet,
        |l| l["spec"]["renewTime"] != first_renew,
    );

    // The static pod's mirror pod, with its status.
    let mirror_name = format!("static-web-{}", c.node);
    let mirror = c.wait_json(
        "mirror pod Running",
        &["get", "pod", "-n", "default", &mirror_name],
        60,
        &kubelet,
        |p| p["status"]["phase"] == "Running",
    );
    assert!(
        mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string(),
        "{mirror:#}"
    );
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");

    // A Deployment of 3 replicas, with env from a ConfigMap and service links.
    let namespace = Namespace::create(&c, "join-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{greeting: hello-from-configmap}}
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: {ns}}}
spec:
  ports: [{{name: http, port: 8080}}]
  selector: {{app: none}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 3
      containers:
      - name: web
        image: {image}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir /www && echo \"$GREETING $BACKEND_SERVICE_PORT $KUBERNETES_SERVICE_HOST\" > /www/index.html && exec httpd -f -p 8080 -h /www"]
        env:
        - name: GREETING
          valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}
"#,
        image = c.busybox
    ));
    let pods = c.wait_json(
        "3 replicas Running and Ready",
        &["get", "pods", "-n", ns, "-l", "app=web"],
        120,
        &kubelet,
        |list| running_pods(list).len() == 3,
    );
    let pods = running_pods(&pods);
    for pod in &pods {
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(ip.starts_with("10.88."), "pod IP {ip:?}");
        assert_eq!(pod["status"]["hostIP"], "10.88.0.1");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }
    let ip = pods[0]["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some(body) = http_get(&ip, 8080, "/") {
            break body;
        }
        assert!(Instant::now() < deadline, "no answer from {ip}:8080");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        body.trim(),
        "hello-from-configmap 8080 10.96.0.1",
        "env in the pod"
    );

    // Events of one pod, as `kubectl describe` shows them.
    let name = pods[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let selector = format!("involvedObject.name={name}");
    let events = c.wait_json(
        "events",
        &["get", "events", "-n", ns, "--field-selector", &selector],
        30,
        &kubelet,
        |e| {
            let reasons: Vec<&Value> = e["items"]
                .as_array()
                .map(|i| i.iter().map(|e| &e["reason"]).collect())
                .unwrap_or_default();
            ["Created", "Started"]
                .iter()
                .all(|r| reasons.iter().any(|x| *x == r))
        },
    );
    let started = events["items"]
        .as_array()
        .and_then(|i| i.iter().find(|e| e["reason"] == "Started"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(started["source"]["component"], "kubelet");
    assert_eq!(
        started["involvedObject"]["fieldPath"],
        "spec.containers{web}"
    );
    assert_eq!(started["message"], "Container started");

    // Graceful deletion: kubectl delete returns once the kubelet has stopped the pod
    // and issued the final delete, within the 3 s grace period (plus slack).
    let begun = Instant::now();
    c.kubectl(&[
        "delete",
        "pod",
        "-n",
        ns,
        &name,
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(
        begun.elapsed() < Duration::from_secs(20),
        "deletion took {:?}",
        begun.elapsed()
    );
    let killing = c.json(&["get", "events", "-n", ns, "--field-selector", &selector]);
    assert!(
        killing["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|e| e["reason"] == "Killing")),
        "{killing:#}"
    );
    c.wait_json(
        "replacement replica Running",
        &["get", "pods", "-n", ns, "-l", "app=web"],
        90,
        &kubelet,
        |list| running_pods(list).len() == 3,
    );

    // A pod bound to the node directly that the node cannot admit: rejected with
    // upstream's reason, never run.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: misfit, namespace: {ns}}}
spec:
  nodeName: {node}
  nodeSelector: {{example.com/role: other}}
  automountServiceAccountToken: false
  containers:
  - {{name: main, image: {image}, command: ["sleep", "3600"]}}
"#,
        node = c.node,
        image = c.busybox
    ));
    let misfit = c.wait_json(
        "misfit rejected",
        &["get", "pod", "-n", ns, "misfit"],
        60,
        &kubelet,
        |p| p["status"]["phase"] == "Failed",
    );
    assert_eq!(misfit["status"]["reason"], "NodeAffinity", "{misfit:#}");
    assert!(
        misfit["status"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Pod was rejected: ")),
        "{misfit:#}"
    );
    assert!(
        misfit["status"]["containerStatuses"].is_null(),
        "{misfit:#}"
    );

    // Pod security through the API: a RuntimeClass selects containerd's second handler,
    // a class deleted before its pod is bound fails the sandbox with upstream's event
    // (the API server refuses pods naming a missing class, so the pod waits unscheduled
    // while its class is deleted), a forbidden sysctl is rejected with upstream's reason.
    let class = format!("{ns}-handler");
    let gone = format!("{ns}-gone");
    c.apply(&format!(
        r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {{name: {class}}}
handler: {handler}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {{name: {gone}}}
handler: {handler}
---
apiVersion: v1
kind: Pod
metadata: {{name: classed, namespace: {ns}}}
spec:
  nodeName: {node}
  runtimeClassName: {class}
  automountServiceAccountToken: false
  containers:
  - {{name: main, image: {image}, command: ["sleep", "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: classless, namespace: {ns}}}
spec:
  schedulerName: nobody
  runtimeClassName: {gone}
  automountServiceAccountToken: false
  containers:
  - {{name: main, image: {image}, command: ["sleep", "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: sysctl, namespace: {ns}}}
spec:
  nodeName: {node}
  securityContext:
    sysctls: [{{name: kernel.sem, value: "1 2 3 4"}}]
  automountServiceAccountToken: false
  containers:
  - {{name: main, image: {image}, command: ["sleep", "3600"]}}
"#,
        handler = env.runtime_handler,
        node = c.node,
        image = c.busybox
    ));
    c.kubectl(&["delete", "runtimeclass", &gone, "--wait=true"]);
    c.try_kubectl(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/{ns}/pods/classless/binding"),
            "-f",
            "-",
        ],
        Some(&format!(
            r#"{{"apiVersion": "v1", "kind": "Binding", "metadata": {{"name": "classless"}},
                "target": {{"apiVersion": "v1", "kind": "Node", "name": "{}"}}}}"#,
            c.node
        )),
    )
    .expect("binding the pod");
    let classed = c.wait_json(
        "RuntimeClass pod running",
        &["get", "pod", "-n", ns, "classed"],
        60,
        &kubelet,
        |p| p["status"]["phase"] == "Running",
    );
    let classed_uid = classed["metadata"]["uid"].as_str().unwrap_or_default();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let _in_runtime = rt.enter();
    let cri =
        kubelet_cri_client::CriClient::new(&env.endpoint, Default::default()).expect("CRI client");
    let filter = kubelet_cri_client::proto::PodSandboxFilter {
        label_selector: [(
            kubelet_core::labels::POD_UID_LABEL.to_owned(),
            classed_uid.to_owned(),
        )]
        .into(),
        ..Default::default()
    };
    let sandboxes = rt
        .block_on(cri.list_pod_sandbox(Some(filter)))
        .expect("list sandboxes");
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    assert_eq!(sandboxes[0].runtime_handler, env.runtime_handler);
    let selector = "involvedObject.name=classless,reason=FailedCreatePodSandBox";
    let failed = c.wait_json(
        "missing RuntimeClass event",
        &["get", "events", "-n", ns, "--field-selector", selector],
        60,
        &kubelet,
        |e| e["items"].as_array().is_some_and(|i| !i.is_empty()),
    );
    assert_eq!(
        failed["items"][0]["message"],
        format!("Failed to create pod sandbox: runtimeclass.node.k8s.io \"{gone}\" not found"),
        "{failed:#}"
    );
    let sysctl = c.wait_json(
        "forbidden sysctl rejected",
        &["get", "pod", "-n", ns, "sysctl"],
        60,
        &kubelet,
        |p| p["status"]["phase"] == "Failed",
    );
    assert_eq!(sysctl["status"]["reason"], "SysctlForbidden", "{sysctl:#}");
    assert_eq!(
        sysctl["status"]["message"],
        "Pod was rejected: forbidden sysctl: \"kernel.sem\" not allowlisted",
        "{sysctl:#}"
    );
    c.kubectl(&["delete", "runtimeclass", &class]);

    // Readiness gates: Ready waits for the gate's condition, with upstream's reason and
    // message, and follows at once when a controller sets it (leaving no stale reason).
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: gated, namespace: {ns}}}
spec:
  nodeName: {node}
  readinessGates: [{{conditionType: example.com/gate}}]
  automountServiceAccountToken: false
  containers:
  - {{name: main, image: {image}, command: ["sleep", "3600"]}}
"#,
        node = c.node,
        image = c.busybox
    ));
    let ready_of = |p: &Value| -> Value {
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default()
    };
    let gated = c.wait_json(
        "gated pod running, not ready",
        &["get", "pod", "-n", ns, "gated"],
        60,
        &kubelet,
        |p| p["status"]["phase"] == "Running" && condition(p, "ContainersReady") == Some("True"),
    );
    let ready = ready_of(&gated);
    assert_eq!(ready["status"], "False", "{gated:#}");
    assert_eq!(ready["reason"], "ReadinessGatesNotReady", "{gated:#}");
    assert_eq!(
        ready["message"],
        "corresponding condition of pod readiness gate \"example.com/gate\" does not exist.",
        "{gated:#}"
    );
    c.kubectl(&[
        "patch",
        "pod",
        "gated",
        "-n",
        ns,
        "--subresource=status",
        "--type=strategic",
        "-p",
        r#"{"status":{"conditions":[{"type":"example.com/gate","status":"True"}]}}"#,
    ]);
    let gated = c.wait_json(
        "gated pod ready once its gate is True",
        &["get", "pod", "-n", ns, "gated"],
        30,
        &kubelet,
        |p| condition(p, "Ready") == Some("True"),
    );
    let ready = ready_of(&gated);
    assert!(
        ready.get("reason").is_none() && ready.get("message").is_none(),
        "no stale reason or message on a condition that turned True: {gated:#}"
    );

    // kubectl debug: an ephemeral container in the target's PID namespace, its status and
    // its logs.
    c.kubectl(&[
        "debug",
        "gated",
        "-n",
        ns,
        "--image",
        &c.busybox,
        "--image-pull-policy=IfNotPresent",
        "--target=main",
        "-c",
        "debugger",
        "--attach=false",
        "--",
        "sh",
        "-c",
        "ps; echo listed",
    ]);
    let debugged = c.wait_json(
        "the ephemeral container ran",
        &["get", "pod", "-n", ns, "gated"],
        60,
        &kubelet,
        |p| p["status"]["ephemeralContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0,
    );
    // Read where the kubelet wrote it (this kubelet serves no client CA, so the API
    // server cannot fetch logs from it).
    let uid = debugged["metadata"]["uid"].as_str().unwrap_or_default();
    let logs = std::fs::read_to_string(format!("/var/log/pods/{ns}_gated_{uid}/debugger/0.log"))
        .unwrap_or_default();
    assert!(
        logs.contains("listed") && logs.contains("sleep 3600"),
        "the target's processes seen from the debugger: {logs}"
    );

    // A deleted Node object is registered again.
    c.kubectl(&["delete", "node", &c.node, "--wait=true"]);
    c.wait_node_ready(&kubelet);

    // The static pod removed: its mirror pod goes too.
    std::fs::remove_file(manifests.join("static.yaml")).expect("remove manifest");
    c.wait_json(
        "mirror pod deleted",
        &[
            "get",
            "pods",
            "-n",
            "default",
            "--field-selector",
            &format!("metadata.name={mirror_name}"),
        ],
        60,
        &kubelet,
        |l| l["items"].as_array().is_some_and(Vec::is_empty),
    );
}

#[test]
fn api_server_outage_loses_no_pod() {
    let Some((_env, c)) = Cluster::from_env("api_server_outage_loses_no_pod") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    c.api_server_outage_loses_no_pod(dir.path(), "outage-test", Duration::from_secs(60));
}

#[test]
fn volumes_of_every_type() {
    let Some((_env, c)) = Cluster::from_env("volumes_of_every_type") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let host_dir = dir.path().join("host-dir");
    let host_file = dir.path().join("host-file.txt");
    std::fs::write(&host_file, "from-the-host").expect("host file");
    // Left by an earlier kubelet for a pod that no longer exists anywhere.
    let orphan = dir
        .path()
        .join("root/pods/00000000-0000-0000-0000-00000000dead");
    std::fs::create_dir_all(orphan.join("volumes/kubernetes.io~empty-dir/old"))
        .expect("orphan pod dir");
    let kubelet = start_kubelet(&c, dir.path(), &[]);
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "vol-test");
    let ns = namespace.name;
    // The ServiceAccount admission refuses pods until the controller made `default`.
    c.wait_json(
        "default service account",
        &["get", "serviceaccount", "-n", ns, "default"],
        60,
        &kubelet,
        |sa| sa["metadata"]["name"] == "default",
    );
    c.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: files, namespace: {ns}}}
data: {{a: alpha, b: beta}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: {ns}}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata:
  name: all
  namespace: {ns}
  labels: {{app: vol, tier: x}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{fsGroup: 2000}}
  containers:
  - name: web
    image: {busybox}
    command: ["httpd", "-f", "-p", "8080", "-h", "/"]
    env:
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    resources:
      limits: {{cpu: 250m, memory: 64Mi}}
    volumeMounts:
    - {{name: scratch, mountPath: /scratch}}
    - {{name: scratch, mountPath: /per-pod, subPathExpr: "$(POD_NAME)"}}
    - {{name: memory, mountPath: /memory}}
    - {{name: host-dir, mountPath: /host-dir}}
    - {{name: host-file, mountPath: /host-file.txt, readOnly: true}}
    - {{name: files, mountPath: /files}}
    - {{name: files, mountPath: /only-a, subPath: a}}
    - {{name: creds, mountPath: /creds}}
    - {{name: maybe, mountPath: /maybe}}
    - {{name: info, mountPath: /info}}
  volumes:
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: memory, emptyDir: {{medium: Memory, sizeLimit: 16Mi}}}}
  - {{name: host-dir, hostPath: {{path: "{host_dir}", type: DirectoryOrCreate}}}}
  - {{name: host-file, hostPath: {{path: "{host_file}", type: File}}}}
  - name: files
    configMap:
      name: files
      items: [{{key: a, path: a}}, {{key: b, path: sub/b, mode: 0600}}]
  - {{name: creds, secret: {{secretName: creds, defaultMode: 0400}}}}
  - {{name: maybe, secret: {{secretName: absent, optional: true}}}}
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{path: cpu, resourceFieldRef: {{containerName: web, resource: limits.cpu, divisor: 1m}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: missing-secret, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  containers:
  - {{name: main, image: {busybox}, command: ["sleep", "3600"], volumeMounts: [{{name: creds, mountPath: /creds}}]}}
  volumes:
  - {{name: creds, secret: {{secretName: absent}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: missing-dir, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  containers:
  - {{name: main, image: {busybox}, command: ["sleep", "3600"], volumeMounts: [{{name: d, mountPath: /d}}]}}
  volumes:
  - {{name: d, hostPath: {{path: /nonexistent-kubelet-test-dir, type: Directory}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: escape, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  initContainers:
  - {{name: plant, image: {busybox}, command: ["ln", "-s", "/", "/work/escape"], volumeMounts: [{{name: work, mountPath: /work}}]}}
  containers:
  - {{name: main, image: {busybox}, command: ["sleep", "3600"], volumeMounts: [{{name: work, mountPath: /escaped, subPath: escape}}]}}
  volumes:
  - {{name: work, emptyDir: {{}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: short-token, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: web, image: {busybox}, command: ["httpd", "-f", "-p", "8080", "-h", "/"], volumeMounts: [{{name: t, mountPath: /t}}]}}
  volumes:
  - name: t
    projected:
      sources:
      - serviceAccountToken: {{path: token, audience: example.com, expirationSeconds: 600}}
"#,
        busybox = c.busybox,
        host_dir = host_dir.display(),
        host_file = host_file.display(),
    ));

    let pod = c.wait_json(
        "pod with every volume type Running",
        &["get", "pod", "-n", ns, "all"],
        120,
        &kubelet,
        |p| p["status"]["phase"] == "Running" && condition(p, "Ready") == Some("True"),
    );
    let ip = pod["status"]["podIP"].as_str().expect("pod IP").to_owned();
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_owned();
    let read = |path: &str| http_get(&ip, 8080, path).unwrap_or_default();
    assert_eq!(read("/files/a"), "alpha");
    assert_eq!(read("/files/sub/b"), "beta");
    assert_eq!(read("/only-a"), "alpha");
    assert_eq!(read("/creds/password"), "s3cret");
    assert_eq!(read("/host-file.txt"), "from-the-host");
    assert_eq!(read("/info/name"), "all");
    assert_eq!(read("/info/cpu"), "250");
    assert!(
        read("/info/labels").contains("app=\"vol\""),
        "{}",
        read("/info/labels")
    );
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(read(&format!("{sa}/namespace")), ns);
    assert!(read(&format!("{sa}/ca.crt")).starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(read(&format!("{sa}/token")).split('.').count(), 3, "a JWT");
    assert!(
        host_dir.is_dir(),
        "hostPath DirectoryOrCreate made the directory"
    );

    // On the host: the memory-backed emptyDir and the secret are tmpfs mounts, the
    // emptyDir sized by its sizeLimit; the subPathExpr directory exists in the volume.
    let pod_dir = dir.path().join("root/pods").join(&uid);
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    let mount_of = |volume: &str| {
        mounts
            .lines()
            .find(|l| l.contains(&format!("/pods/{uid}/volumes/")) && l.contains(volume))
            .map(str::to_owned)
    };
    let memory = mount_of("kubernetes.io~empty-dir/memory").expect("memory emptyDir mounted");
    assert!(
        memory.starts_with("tmpfs ") && memory.contains("size=16384k"),
        "{memory}"
    );
    let secret = mount_of("kubernetes.io~secret/creds").expect("secret volume mounted");
    assert!(secret.starts_with("tmpfs "), "{secret}");
    assert!(
        pod_dir
            .join("volumes/kubernetes.io~empty-dir/scratch/all")
            .is_dir(),
        "subPathExpr made its directory"
    );
    // fsGroup: the volumes belong to the group, directories setgid.
    use std::os::unix::fs::MetadataExt;
    let scratch = std::fs::metadata(pod_dir.join("volumes/kubernetes.io~empty-dir/scratch"))
        .expect("emptyDir on the host");
    assert_eq!(scratch.gid(), 2000);
    assert_eq!(
        scratch.mode() & 0o2000,
        0o2000,
        "setgid: {:o}",
        scratch.mode()
    );

    // Updates reach the running container: the ConfigMap's data (alone, so its watch
    // is what brings it), then the pod's labels.
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(150);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} not seen: a={:?} labels={:?}\nkubelet log:\n{}",
                read("/files/a"),
                read("/info/labels"),
                kubelet.log()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    };
    c.kubectl(&[
        "patch",
        "configmap",
        "-n",
        ns,
        "files",
        "-p",
        r#"{"data":{"a":"alpha-2"}}"#,
    ]);
    wait_for("configMap update", &|| read("/files/a") == "alpha-2");
    assert_eq!(
        read("/only-a"),
        "alpha",
        "a subPath mount does not follow updates, as upstream"
    );
    c.kubectl(&["label", "pod", "-n", ns, "all", "tier=y", "--overwrite"]);
    wait_for("label update", &|| {
        read("/info/labels").contains("tier=\"y\"")
    });

    // A required secret that does not exist, a hostPath of the wrong type: the pod
    // waits in ContainerCreating with a FailedMount event naming the volume.
    for (pod, message) in [
        (
            "missing-secret",
            r#"MountVolume.SetUp failed for volume "creds" : secret "absent" not found"#,
        ),
        (
            "missing-dir",
            r#"MountVolume.SetUp failed for volume "d" : hostPath type check failed, /nonexistent-kubelet-test-dir is not a directory, unable to determine its type: path "/nonexistent-kubelet-test-dir" does not exist"#,
        ),
    ] {
        let selector = format!("involvedObject.name={pod},reason=FailedMount");
        let events = c.wait_json(
            "FailedMount event",
            &["get", "events", "-n", ns, "--field-selector", &selector],
            60,
            &kubelet,
            |e| e["items"].as_array().is_some_and(|i| !i.is_empty()),
        );
        assert_eq!(events["items"][0]["message"], message, "{events:#}");
        let status = c.json(&["get", "pod", "-n", ns, pod]);
        assert_eq!(status["status"]["phase"], "Pending", "{status:#}");
        assert_eq!(
            status["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating",
            "{status:#}"
        );
    }

    // A subPath that a symlink turns into the host's root is refused.
    let escape = c.wait_json(
        "subPath escape refused",
        &["get", "pod", "-n", ns, "escape"],
        90,
        &kubelet,
        |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CreateContainerConfigError"
        },
    );
    let message = escape["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("subPath"), "{escape:#}");

    // A token with the shortest lifetime the API server grants (10 minutes) is renewed
    // at 80% of it, as upstream's token manager does.
    let short = c.wait_json(
        "short-token pod Running",
        &["get", "pod", "-n", ns, "short-token"],
        60,
        &kubelet,
        |p| p["status"]["phase"] == "Running" && condition(p, "Ready") == Some("True"),
    );
    let short_ip = short["status"]["podIP"]
        .as_str()
        .expect("pod IP")
        .to_owned();
    let token = || http_get(&short_ip, 8080, "/t/token").unwrap_or_default();
    let first = token();
    assert_eq!(first.split('.').count(), 3, "a JWT: {first:?}");
    let deadline = Instant::now() + Duration::from_secs(600);
    while token() == first {
        assert!(
            Instant::now() < deadline,
            "token not renewed\nkubelet log:\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_secs(5));
    }
    assert_eq!(token().split('.').count(), 3, "the renewed token is a JWT");

    assert!(!orphan.exists(), "the orphaned pod directory was removed");

    // Deleting the pod tears its volumes down: no mount and no directory left.
    c.kubectl(&[
        "delete",
        "pod",
        "-n",
        ns,
        "all",
        "--wait=true",
        "--timeout=60s",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
        if !mounts.contains(&uid) && !pod_dir.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "volumes of the deleted pod left behind: {mounts}\nkubelet log:\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The GETs of Node objects the API server has answered.
fn node_gets(c: &Cluster) -> u64 {
    kubelet_test_support::node_gets(&c.kubectl(&["get", "--raw", "/metrics"]))
}

/// The status loop learns of its Node object from a watch: with a status update every
/// second and nothing to post, it reads no Node, also past the heartbeat client's 10 s
/// read timeout (a quiet watch through that client would break, and every break costs
/// reads until it lists again).
#[test]
fn node_status_updates_read_no_node_object() {
    let Some((_env, c)) = Cluster::from_env("node_status_updates_read_no_node_object") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    // A status update every second, posted only when it changes (without the report
    // frequency, it would follow the update frequency and post every second).
    let kubelet = c.start_kubelet_with(
        dir.path(),
        "nodeStatusUpdateFrequency: 1s\nnodeStatusReportFrequency: 5m\n",
        &[],
    );
    c.wait_node_ready(&kubelet);
    std::thread::sleep(Duration::from_secs(3));
    let before = node_gets(&c);
    std::thread::sleep(Duration::from_secs(25));
    let gets = node_gets(&c) - before;
    // A read at every update would be 25; the watch through the heartbeat client broke
    // every 10 s and cost 9. One read is allowed: two runs in seven saw a single GET of
    // a Node in the window, from a source not yet found.
    assert!(
        gets <= 1,
        "{gets} GETs of Node objects in 25 s of status updates every second\nkubelet log:\n{}",
        kubelet.log()
    );
}

/// `defaultPodSysctls` (with its feature gate) reaches every pod's sandbox through the
/// runtime: a pod sees the defaults in its own IPC and network namespaces, and one that
/// sets a sysctl itself sees its own value.
#[test]
fn default_pod_sysctls_reach_the_pods() {
    let Some((_env, c)) = Cluster::from_env("default_pod_sysctls_reach_the_pods") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet_with(
        dir.path(),
        "featureGates: {DefaultPodSysctls: true}\n\
         defaultPodSysctls: {kernel.shmmni: \"1000\", net.ipv4.ip_unprivileged_port_start: \"900\"}\n",
        &[],
    );
    let namespace = Namespace::create(&c, "default-sysctls");
    let ns = namespace.name;
    c.wait_node_ready(&kubelet);
    let show =
        "cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_unprivileged_port_start; sleep 3600";
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: defaults, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - {{name: main, image: {image}, imagePullPolicy: IfNotPresent, command: ["sh", "-c", "{show}"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: own, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  securityContext:
    sysctls: [{{name: net.ipv4.ip_unprivileged_port_start, value: "1000"}}]
  containers:
  - {{name: main, image: {image}, imagePullPolicy: IfNotPresent, command: ["sh", "-c", "{show}"]}}
"#,
        node = c.node,
        image = c.busybox
    ));
    for (pod, port_start) in [("defaults", "900"), ("own", "1000")] {
        c.wait_json(
            &format!("{pod} Running"),
            &["get", "pod", "-n", ns, pod],
            60,
            &kubelet,
            |p| p["status"]["phase"] == "Running",
        );
        let logs = || c.kubectl(&["logs", "-n", ns, pod]);
        common::wait_until(
            &format!("{pod} logged its sysctls"),
            10,
            || kubelet.log(),
            || !logs().is_empty(),
        );
        let logs = logs();
        let seen: Vec<&str> = logs.split_whitespace().collect();
        assert_eq!(seen, ["1000", port_start], "{pod}: {logs}");
    }
}

/// The kernel settings upstream's container manager wants: a kubelet started with
/// `protectKernelDefaults` refuses to run while one differs, naming it, and leaves it
/// alone; one started without (the default) sets it. The setting changed here is
/// `kernel/keys/root_maxkeys`, harmless to move for the moment the test takes, and put
/// back however the test ends.
#[test]
fn kernel_settings_are_set_unless_protected() {
    let Some((_env, c)) = Cluster::from_env("kernel_settings_are_set_unless_protected") else {
        return;
    };
    let _node = lock();
    const SETTING: &str = "/proc/sys/kernel/keys/root_maxkeys";
    let read = || {
        std::fs::read_to_string(SETTING)
            .expect("read the setting")
            .trim()
            .to_owned()
    };
    struct PutBack(String);
    impl Drop for PutBack {
        fn drop(&mut self) {
            let _ = std::fs::write(SETTING, &self.0);
        }
    }
    let _put_back = PutBack(read());
    std::fs::write(SETTING, "999999").expect("change the setting");

    let dir = kubelet_test_support::TestDir::new();
    let mut refused = c.start_kubelet_with(dir.path(), "protectKernelDefaults: true\n", &[]);
    let status = refused.wait_exit(30).expect("the kubelet stops");
    assert!(!status.success(), "{}", refused.log());
    assert!(
        refused.log().contains(
            "invalid kernel flag: kernel/keys/root_maxkeys, expected value: 1000000, actual value: 999999"
        ),
        "{}",
        refused.log()
    );
    assert_eq!(read(), "999999", "protected: left alone");

    let kubelet = c.start_kubelet_with(dir.path(), "", &[]);
    c.wait_node_ready(&kubelet);
    assert_eq!(read(), "1000000");
    assert!(
        kubelet
            .log()
            .contains("kernel setting kernel/keys/root_maxkeys set to 1000000 (was 999999)"),
        "{}",
        kubelet.log()
    );
}

/// Pod status PATCHes the API server has served, from its metrics (only kubelets patch
/// the status of pods bound to a node).
fn pod_status_patches(c: &Cluster) -> u64 {
    let metrics = c.kubectl(&["get", "--raw", "/metrics"]);
    kubelet_test_support::api_requests(&metrics, "pods", "status", "PATCH")
}

/// `kubeAPIQPS` and `kubeAPIBurst` hold the kubelet's requests to a client-side rate, as
/// upstream's: at 1 a second after a burst of 1, eight pods started at once get their
/// status patches no faster than that (without the limit they come within a second or
/// two), and all of them still run and are reported.
#[test]
fn kube_api_qps_holds_the_status_writes_to_its_rate() {
    let Some((_env, c)) = Cluster::from_env("kube_api_qps_holds_the_status_writes_to_its_rate")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet_with(dir.path(), "kubeAPIQPS: 1\nkubeAPIBurst: 1\n", &[]);
    let namespace = Namespace::create(&c, "api-qps");
    let ns = namespace.name;
    c.wait_node_ready(&kubelet);
    let pods: String = (0..8)
        .map(|i| {
            format!(
                r#"---
apiVersion: v1
kind: Pod
metadata: {{name: p{i}, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - {{name: main, image: {image}, imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}}
"#,
                node = c.node,
                image = c.busybox
            )
        })
        .collect();
    let start = Instant::now();
    let mut samples = vec![(Duration::ZERO, pod_status_patches(&c))];
    c.apply(&pods);
    let all_ready = |c: &Cluster| {
        let list = c.json(&["get", "pods", "-n", ns]);
        list["items"].as_array().is_some_and(|items| {
            items.len() == 8 && items.iter().all(|p| condition(p, "Ready") == Some("True"))
        })
    };
    while !all_ready(&c) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the pods were not all Ready within 120 s\n{}",
            kubelet.log()
        );
        samples.push((start.elapsed(), pod_status_patches(&c)));
    }
    samples.push((start.elapsed(), pod_status_patches(&c)));
    let total = samples.last().map_or(0, |s| s.1) - samples[0].1;
    assert!(total >= 8, "{total} status patches for 8 pods: {samples:?}");
    // Within any second: the burst's token and at most one more, and one for a sample
    // taken while a patch was being counted.
    for (i, (at, count)) in samples.iter().enumerate() {
        for (later, later_count) in &samples[i + 1..] {
            if *later - *at <= Duration::from_secs(1) {
                assert!(
                    later_count - count <= 3,
                    "{} status patches between {at:?} and {later:?}: {samples:?}",
                    later_count - count
                );
            }
        }
    }
}

/// A kubelet started again takes its pods' statuses back as the API server shows them:
/// a Ready pod whose readiness probe takes 3 s stays Ready while the new kubelet waits for
/// that probe (upstream's restart grace: the container ran before the kubelet started),
/// its conditions keep their transition times and the pod its start time, and nothing of
/// it is written again. Then a condition of the kubelet's that someone else changes is
/// set back.
#[test]
fn a_restarted_kubelet_keeps_its_pods_status() {
    let test = "a_restarted_kubelet_keeps_its_pods_status";
    let Some((_env, c)) = Cluster::from_env(test) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let mut kubelet = c.start_kubelet_with(dir.path(), "", &[]);
    let namespace = Namespace::create(&c, "restart");
    let ns = namespace.name;
    c.wait_node_ready(&kubelet);
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: keep, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    readinessProbe:
      exec: {{command: ["sleep", "3"]}}
      periodSeconds: 5
      timeoutSeconds: 10
"#,
        node = c.node,
        image = c.busybox
    ));
    c.wait_json(
        "keep Ready",
        &["get", "pod", "-n", ns, "keep"],
        90,
        &kubelet,
        |p| condition(p, "Ready") == Some("True"),
    );
    // Older than the restart grace (10 s): the next kubelet adopts a running container.
    std::thread::sleep(Duration::from_secs(11));
    let before = c.json(&["get", "pod", "-n", ns, "keep"]);

    // Every Ready value the API server shows from now on.
    let mut watch = c
        .kubectl_command()
        .args(["get", "pod", "keep", "-n", ns, "-w", "-o"])
        .arg("jsonpath={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watch.stdout.take().expect("stdout");
    let seen = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    drop(kubelet);
    kubelet = c.start_kubelet_with(dir.path(), "", &[]);
    c.wait_node_ready(&kubelet);
    // The new kubelet's first readiness probe of the pod: until it ends, 3 s after the
    // kubelet took the pod back, only what the API showed could keep the pod Ready.
    let uid = before["metadata"]["uid"].as_str().unwrap_or_default();
    let series = format!(
        r#"prober_probe_total{{probe_type="Readiness",result="successful",container="main",pod="keep",namespace="{ns}",pod_uid="{uid}"}} "#
    );
    let probes = format!("/api/v1/nodes/{}/proxy/metrics/probes", c.node);
    common::wait_until(
        "the restarted kubelet's first readiness probe",
        60,
        || kubelet.log(),
        || {
            c.try_kubectl(&["get", "--raw", &probes], None)
                .is_ok_and(|text| text.lines().any(|l| l.starts_with(&series)))
        },
    );
    // A status written after the probe would have reached the API server by now.
    std::thread::sleep(Duration::from_secs(2));
    let after = c.json(&["get", "pod", "-n", ns, "keep"]);
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = seen.join().expect("watch reader");
    assert!(
        !seen.is_empty() && seen.iter().all(|ready| ready == "True"),
        "Ready as the API server showed it across the restart: {seen:?}\n{}",
        kubelet.log()
    );
    assert_eq!(
        after["status"],
        before["status"],
        "the pod's status across the restart\n{}",
        kubelet.log()
    );
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"],
        "the restarted kubelet wrote the pod again\n{}",
        kubelet.log()
    );

    // A condition of the kubelet's changed by someone else is set back (upstream's
    // status reconcile, every 10 s).
    c.kubectl(&[
        "patch",
        "pod",
        "keep",
        "-n",
        ns,
        "--subresource=status",
        "--type=strategic",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Elsewhere"}]}}"#,
    ]);
    c.wait_json(
        "keep Ready again",
        &["get", "pod", "-n", ns, "keep"],
        30,
        &kubelet,
        |p| condition(p, "Ready") == Some("True"),
    );
    drop(namespace);
    drop(kubelet);
}
