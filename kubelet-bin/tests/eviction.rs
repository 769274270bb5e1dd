//! Node pressure on the real control plane and containerd: allocatable less the
//! reservations and hard thresholds, a memory hog evicted under `evictionHard`
//! (status, event, `MemoryPressure`, its taint and its transition period), a BestEffort
//! pod refused while the node is under memory pressure, a pod forking processes evicted
//! under `pid.available`, disk pressure reclaiming then evicting, and local storage
//! limits.

mod common;

use common::{Cluster, Kubelet, Namespace, condition, lock};
use serde_json::Value;

const MI: i64 = 1024 * 1024;

/// `<n>Ki` or plain bytes, as the Node reports memory.
fn bytes(quantity: &Value) -> i64 {
    let text = quantity.as_str().unwrap_or_default();
    match text.strip_suffix("Ki") {
        Some(ki) => ki.parse::<i64>().unwrap_or_default() * 1024,
        None => text.parse().unwrap_or_default(),
    }
}

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|p| p["metadata"]["name"] == name))
}

#[test]
fn a_memory_hog_is_evicted_under_eviction_hard_and_best_effort_pods_are_refused() {
    let Some((_env, c)) = Cluster::from_env(
        "a_memory_hog_is_evicted_under_eviction_hard_and_best_effort_pods_are_refused",
    ) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();

    // What memory.available reads now, from a kubelet without memory thresholds.
    let available = {
        let kubelet =
            c.start_kubelet_with(dir.path(), "kubeReserved: {cpu: 100m, memory: 64Mi}\n", &[]);
        let node = c.wait_node_ready(&kubelet);
        let capacity = bytes(&node["status"]["capacity"]["memory"]);
        let allocatable = bytes(&node["status"]["allocatable"]["memory"]);
        // Upstream's default evictionHard memory.available is 100Mi.
        assert_eq!(allocatable, capacity - 64 * MI - 100 * MI, "{node:#}");
        assert_eq!(
            node["status"]["allocatable"]["cpu"]
                .as_str()
                .map(str::to_owned),
            node["status"]["capacity"]["cpu"].as_str().map(|cpu| {
                let cores: i64 = cpu.parse().unwrap_or_default();
                format!("{}m", cores * 1000 - 100)
            }),
            "{node:#}"
        );
        let summary = node_summary(&c);
        summary["node"]["memory"]["availableBytes"]
            .as_i64()
            .expect("node memory availableBytes")
    };

    // The threshold sits 400Mi under that; the hog takes 900Mi.
    let threshold = available - 400 * MI;
    let kubelet = start_with_threshold(
        &c,
        dir.path(),
        ("memory.available", threshold),
        "",
        "MemoryPressure",
    );
    let namespace = Namespace::create(&c, "eviction-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hog, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero bs=900M count=1 | sleep 3600"]
"#,
        image = c.busybox
    ));
    let (hog, message) = wait_evicted(&c, &kubelet, ns, "hog", 120, "memory");
    assert!(
        message.contains("Container main was using ")
            && message.ends_with("request is 0, has larger consumption of memory. "),
        "{message}"
    );
    assert_eq!(condition(&hog, "DisruptionTarget"), Some("True"), "{hog:#}");
    let disruption = hog["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionTarget"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(disruption["reason"], "TerminationByKubelet");
    let terminated = &hog["status"]["containerStatuses"][0]["state"]["terminated"];
    assert!(
        terminated.is_object(),
        "the hog's container was killed: {hog:#}"
    );
    let events = c.json(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "involvedObject.name=hog,reason=Evicted",
    ]);
    assert_eq!(
        events["items"][0]["message"].as_str(),
        Some(message.as_str()),
        "{events:#}"
    );

    // Under memory pressure a BestEffort pod is refused, a Burstable one is not.
    let node = c.wait_json(
        "MemoryPressure True",
        &["get", "node", &c.node],
        30,
        &kubelet,
        |n| condition(n, "MemoryPressure") == Some("True"),
    );
    let pressure = node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "MemoryPressure"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(pressure["reason"], "KubeletHasInsufficientMemory");
    // The condition drives upstream's taint (the node lifecycle controller's
    // TaintNodesByCondition), and the kubelet said so in a node event.
    c.wait_json(
        "the memory-pressure taint",
        &["get", "node", &c.node],
        30,
        &kubelet,
        |n| {
            n["spec"]["taints"].as_array().is_some_and(|taints| {
                taints.iter().any(|t| {
                    t["key"] == "node.kubernetes.io/memory-pressure" && t["effect"] == "NoSchedule"
                })
            })
        },
    );
    let node_events = c.json(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        &format!(
            "involvedObject.kind=Node,involvedObject.name={},reason=NodeHasInsufficientMemory",
            c.node
        ),
    ]);
    assert!(
        node_events["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty()),
        "{node_events:#}"
    );
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: best-effort, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  nodeName: {node}
  containers:
  - {{name: main, image: {image}, imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: burstable, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources: {{requests: {{memory: 8Mi}}}}
"#,
        image = c.busybox,
        node = c.node
    ));
    let pods = c.wait_json(
        "the BestEffort pod refused, the Burstable one running",
        &["get", "pods", "-n", ns],
        60,
        &kubelet,
        |l| {
            find(l, "best-effort").is_some_and(|p| p["status"]["phase"] == "Failed")
                && find(l, "burstable").is_some_and(|p| p["status"]["phase"] == "Running")
        },
    );
    let refused = find(&pods, "best-effort").cloned().unwrap_or_default();
    assert_eq!(refused["status"]["reason"], "Evicted", "{refused:#}");
    assert_eq!(
        refused["status"]["message"],
        "Pod was rejected: The node had condition: [MemoryPressure]. "
    );
    let metrics = c.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/metrics", c.node),
    ]);
    for series in [
        "kubelet_admission_rejections_total{reason=\"Evicted\"}",
        "kubelet_evictions{eviction_signal=\"memory.available\"}",
    ] {
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<f64>().ok());
        assert!(value.is_some_and(|v| v >= 1.0), "{series} in {metrics}");
    }

    // The hog's memory is back: the condition clears after the transition period.
    let node = c.wait_json(
        "MemoryPressure False again",
        &["get", "node", &c.node],
        60,
        &kubelet,
        |n| condition(n, "MemoryPressure") == Some("False"),
    );
    assert_eq!(condition(&node, "Ready"), Some("True"));
    assert!(
        kubelet.log().contains("evicting pod"),
        "the kubelet logged the eviction"
    );
}

#[test]
fn a_pod_forking_processes_is_evicted_under_pid_pressure() {
    let Some((_env, c)) =
        Cluster::from_env("a_pod_forking_processes_is_evicted_under_pid_pressure")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    // What pid.available reads now: the node's maxpid less its scheduling entities.
    let available = {
        let kubelet = c.start_kubelet_with(dir.path(), "", &[]);
        c.wait_node_ready(&kubelet);
        let summary = node_summary(&c);
        let rlimit = &summary["node"]["rlimit"];
        rlimit["maxpid"].as_i64().expect("maxpid") - rlimit["curproc"].as_i64().expect("curproc")
    };
    // The threshold sits 300 processes under that; the pod starts 600.
    let threshold = available - 300;
    let kubelet = start_with_threshold(
        &c,
        dir.path(),
        ("pid.available", threshold),
        "",
        "PIDPressure",
    );
    let namespace = Namespace::create(&c, "pid-pressure-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: forker, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "for i in $(seq 600); do sleep 3600 & done; wait"]
"#,
        image = c.busybox
    ));
    wait_evicted(&c, &kubelet, ns, "forker", 120, "pids");
    // Its processes are gone: the condition clears after the transition period.
    c.wait_json(
        "PIDPressure True",
        &["get", "node", &c.node],
        30,
        &kubelet,
        |n| condition(n, "PIDPressure") == Some("True"),
    );
    c.wait_json(
        "PIDPressure False again",
        &["get", "node", &c.node],
        90,
        &kubelet,
        |n| condition(n, "PIDPressure") == Some("False"),
    );
}

/// Starts the kubelet with one hard threshold `(signal, value)`, a 15 s pressure
/// transition period and `extra` configuration; waits until it reports the node Ready
/// with `pressure` False.
fn start_with_threshold(
    c: &Cluster,
    root: &std::path::Path,
    (signal, value): (&str, i64),
    extra: &str,
    pressure: &str,
) -> Kubelet {
    let kubelet = c.start_kubelet_with(
        root,
        &format!(
            "evictionHard: {{{signal}: \"{value}\"}}\n\
             evictionPressureTransitionPeriod: 15s\n{extra}"
        ),
        &[],
    );
    let node = c.wait_node_ready(&kubelet);
    assert_eq!(condition(&node, pressure), Some("False"), "{node:#}");
    kubelet
}

/// The kubelet's stats summary now, through the API server's node proxy.
fn node_summary(c: &Cluster) -> Value {
    let path = format!("/api/v1/nodes/{}/proxy/stats/summary", c.node);
    serde_json::from_str(&c.kubectl(&["get", "--raw", &path])).expect("summary JSON")
}

/// Waits up to `secs` for the pod `name` in `ns` to be evicted for `resource`: phase
/// Failed, reason Evicted, upstream's message; returns the pod and its message.
fn wait_evicted(
    c: &Cluster,
    kubelet: &Kubelet,
    ns: &str,
    name: &str,
    secs: u64,
    resource: &str,
) -> (Value, String) {
    let pods = c.wait_json(
        &format!("the {name} evicted"),
        &["get", "pods", "-n", ns],
        secs,
        kubelet,
        |l| find(l, name).is_some_and(|p| p["status"]["reason"] == "Evicted"),
    );
    let pod = find(&pods, name).cloned().unwrap_or_default();
    assert_eq!(pod["status"]["phase"], "Failed", "{pod:#}");
    let message = pod["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with(&format!(
            "The node was low on resource: {resource}. Threshold quantity: "
        )),
        "{message}"
    );
    (pod, message)
}

/// `nodefs.available` of the node now, as a kubelet reads it (its summary).
fn node_fs_available(c: &Cluster) -> i64 {
    let summary = node_summary(c);
    summary["node"]["fs"]["availableBytes"]
        .as_i64()
        .expect("node fs availableBytes")
}

/// Pulls `image` into the runtime outside any pod (an unused image).
fn pull_unused_image(endpoint: &str, image: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let client =
            kubelet_cri_client::CriClient::new(endpoint, Default::default()).expect("CRI client");
        kubelet_core::ImageService::pull_image(&client, image, None, None)
            .await
            .expect("pull");
    });
}

/// How many containers and sandboxes of the pod with `uid` the runtime has.
fn runtime_objects_of(endpoint: &str, uid: &str) -> usize {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        use kubelet_core::RuntimeInventory;
        let client =
            kubelet_cri_client::CriClient::new(endpoint, Default::default()).expect("CRI client");
        let labels: kubelet_core::StringMap = [(
            kubelet_core::labels::POD_UID_LABEL.to_owned(),
            uid.to_owned(),
        )]
        .into();
        let containers = RuntimeInventory::list_containers(
            &client,
            &kubelet_core::ContainerFilter {
                labels: labels.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("list containers");
        let sandboxes = RuntimeInventory::list_sandboxes(
            &client,
            &kubelet_core::SandboxFilter {
                labels,
                ..Default::default()
            },
        )
        .await
        .expect("list sandboxes");
        containers.len() + sandboxes.len()
    })
}

fn image_present(endpoint: &str, image: &str) -> bool {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let client =
            kubelet_cri_client::CriClient::new(endpoint, Default::default()).expect("CRI client");
        kubelet_core::ImageService::image_status(&client, image)
            .await
            .expect("image status")
            .is_some()
    })
}

#[test]
fn disk_pressure_reclaims_finished_containers_and_unused_images_then_evicts_the_filler() {
    let Some((env, c)) = Cluster::from_env(
        "disk_pressure_reclaims_finished_containers_and_unused_images_then_evicts_the_filler",
    ) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let unused = format!("{}/busybox-gc:b", env.registry);
    pull_unused_image(&env.endpoint, &unused);

    let available = {
        let kubelet = c.start_kubelet_with(dir.path(), "", &[]);
        c.wait_node_ready(&kubelet);
        node_fs_available(&c)
    };
    // The threshold sits 500Mi under what is free; the pod writes 1200Mi.
    let threshold = available - 500 * MI;
    let kubelet = start_with_threshold(
        &c,
        dir.path(),
        ("nodefs.available", threshold),
        "imageMinimumGCAge: 1s\n",
        "DiskPressure",
    );
    let namespace = Namespace::create(&c, "disk-pressure-test");
    let ns = namespace.name;
    // A finished pod keeps its container and sandbox (for its status and logs) until the
    // node needs the disk.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: done, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  restartPolicy: Never
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["true"]
"#,
        image = c.busybox
    ));
    let pods = c.wait_json(
        "the finished pod Succeeded",
        &["get", "pods", "-n", ns],
        90,
        &kubelet,
        |l| find(l, "done").is_some_and(|p| p["status"]["phase"] == "Succeeded"),
    );
    let done_uid = find(&pods, "done").expect("done")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    assert_eq!(runtime_objects_of(&env.endpoint, &done_uid), 2);
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: filler, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  volumes: [{{name: data, emptyDir: {{}}}}]
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero of=/data/fill bs=1M count=1200; sleep 3600"]
    volumeMounts: [{{name: data, mountPath: /data}}]
"#,
        image = c.busybox
    ));
    wait_evicted(&c, &kubelet, ns, "filler", 180, "ephemeral-storage");
    assert!(
        !image_present(&env.endpoint, &unused),
        "the unused image was reclaimed before evicting: {}",
        kubelet.log()
    );
    assert_eq!(
        runtime_objects_of(&env.endpoint, &done_uid),
        0,
        "the finished pod's container and sandbox were reclaimed: {}",
        kubelet.log()
    );
    assert!(
        kubelet
            .log()
            .contains("eviction manager: attempting to reclaim resource=ephemeral-storage"),
        "{}",
        kubelet.log()
    );
    // The evicted pod's emptyDir is gone with its volumes: the pressure ends.
    c.wait_json(
        "DiskPressure True",
        &["get", "node", &c.node],
        30,
        &kubelet,
        |n| condition(n, "DiskPressure") == Some("True"),
    );
    c.wait_json(
        "DiskPressure False again",
        &["get", "node", &c.node],
        90,
        &kubelet,
        |n| condition(n, "DiskPressure") == Some("False"),
    );
}

#[test]
fn an_emptydir_over_its_size_limit_and_a_container_over_its_storage_limit_are_evicted() {
    let Some((_env, c)) = Cluster::from_env(
        "an_emptydir_over_its_size_limit_and_a_container_over_its_storage_limit_are_evicted",
    ) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet_with(dir.path(), "", &[]);
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "local-storage-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: sized, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  volumes: [{{name: data, emptyDir: {{sizeLimit: 1Mi}}}}]
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero of=/data/fill bs=1M count=8; sleep 3600"]
    volumeMounts: [{{name: data, mountPath: /data}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: limited, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero of=/fill bs=1M count=8; sleep 3600"]
    resources: {{limits: {{ephemeral-storage: 2Mi}}}}
"#,
        image = c.busybox
    ));
    let pods = c.wait_json(
        "both evicted",
        &["get", "pods", "-n", ns],
        150,
        &kubelet,
        |l| {
            ["sized", "limited"]
                .iter()
                .all(|n| find(l, n).is_some_and(|p| p["status"]["reason"] == "Evicted"))
        },
    );
    let message = |name: &str| {
        find(&pods, name)
            .and_then(|p| p["status"]["message"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        message("sized"),
        "Usage of EmptyDir volume \"data\" exceeds the limit \"1Mi\". "
    );
    // The pod's total over the sum of its containers' limits is checked first, as upstream.
    assert!(
        [
            "Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. ",
            "Container main exceeded its local ephemeral storage limit \"2Mi\". ",
        ]
        .contains(&message("limited").as_str()),
        "{}",
        message("limited")
    );
    for name in ["sized", "limited"] {
        let pod = find(&pods, name).cloned().unwrap_or_default();
        assert_eq!(pod["status"]["phase"], "Failed", "{pod:#}");
        assert_eq!(condition(&pod, "DisruptionTarget"), Some("True"), "{pod:#}");
    }
}

#[test]
fn system_reserved_is_enforced_on_its_cgroup_and_taken_out_of_allocatable() {
    let test = "system_reserved_is_enforced_on_its_cgroup_and_taken_out_of_allocatable";
    let Some((_env, c)) = Cluster::from_env(test) else {
        return;
    };
    let cgroup_root = std::path::Path::new("/sys/fs/cgroup");
    if cgroup_root.join("cgroup.controllers").exists() {
        return kubelet_test_support::skip(
            test,
            "reads cgroup v1 files (this VM's); the v2 writes are kubelet-cgroups' unit tests",
        );
    }
    let _node = lock();
    let name = "kubelet-test-system-reserved";
    let controllers = ["cpu", "memory", "pids"];
    let remove = || {
        for controller in controllers {
            let _ = std::fs::remove_dir(cgroup_root.join(controller).join(name));
        }
    };
    let read = |path: String| {
        std::fs::read_to_string(cgroup_root.join(&path))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .to_owned()
    };
    let config = format!(
        "systemReserved: {{cpu: 200m, memory: 256Mi, pid: \"1000\"}}\n\
         systemReservedCgroup: /{name}\n\
         enforceNodeAllocatable: [pods, system-reserved]\n"
    );

    // The cgroup must exist: upstream refuses to create it.
    remove();
    let dir = kubelet_test_support::TestDir::new();
    let mut refused = c.start_kubelet_with(dir.path(), &config, &[]);
    let status = refused.wait_exit(30).expect("the kubelet stops");
    assert!(!status.success());
    assert!(
        refused.log().contains(&format!(
            "systemReservedCgroup: Failed to enforce System Reserved Cgroup Limits on \"/{name}\": cgroup \"/{name}\" does not exist"
        )),
        "{}",
        refused.log()
    );

    for controller in controllers {
        std::fs::create_dir_all(cgroup_root.join(controller).join(name)).expect("cgroup");
    }
    let kubelet = c.start_kubelet_with(dir.path(), &config, &[]);
    c.wait_node_ready(&kubelet);
    // Allocatable leaves out the reservation and the harness's 100Mi hard threshold.
    let node = c.wait_json(
        "allocatable less the reservation",
        &["get", "node", &c.node],
        60,
        &kubelet,
        |n| {
            bytes(&n["status"]["allocatable"]["memory"])
                == bytes(&n["status"]["capacity"]["memory"]) - 256 * MI - 100 * MI
        },
    );
    let capacity = bytes(&node["status"]["capacity"]["memory"]);
    let shares = read(format!("cpu/{name}/cpu.shares"));
    let limit = read(format!("memory/{name}/memory.limit_in_bytes"));
    let pids = read(format!("pids/{name}/pids.max"));
    let kubepods = read("memory/kubepods/memory.limit_in_bytes".to_owned());
    drop(kubelet);
    remove();
    assert_eq!(shares, "204");
    assert_eq!(limit, (256 * MI).to_string());
    assert_eq!(pids, "1000");
    // /kubepods leaves out only the reservation.
    let kubepods: i64 = kubepods.parse().unwrap_or_default();
    // The node reports whole KiB; the cgroup holds what the kubelet computed from bytes.
    assert!(
        (kubepods - (capacity - 256 * MI)).abs() < 1024 * 4,
        "kubepods {kubepods} vs capacity {capacity}"
    );
}
