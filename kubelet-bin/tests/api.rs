//! The kubelet API on :10250 against the real control plane (`cargo xtask env up
//! --control-plane`): the API server reaches it with its kubelet client certificate
//! (`system:masters`) for `kubectl logs` (all, `--tail`, `-f`, `--previous`), and
//! direct requests are refused without credentials (401), refused for a ServiceAccount
//! token the SubjectAccessReview denies (403), and served with the admin's client
//! certificate (200). Also `/healthz` on 127.0.0.1:10248.
//!
//! The kubelet runs with a KubeletConfiguration file: client certificates of the
//! cluster CA, webhook token authentication and Webhook authorization.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{API, Cluster, Namespace, condition, curl, lock, wait_until};
use serde_json::Value;

/// The cgroup the stats test runs its kubelet in.
const KUBELET_CGROUP: &str = "/kubelet-rs-test";

/// The `tick-N` numbers in `text`.
fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("tick-")?.parse().ok())
        .collect()
}

#[test]
fn kubelet_api_serves_logs_and_checks_callers() {
    let Some((_env, c)) = Cluster::from_env("kubelet_api_serves_logs_and_checks_callers") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "api-test");
    let ns = namespace.name;
    let (node, image) = (&c.node, &c.busybox);
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: restarter, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: restarter
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo run-started; sleep 2; exit 1"]
"#
    ));
    c.run_talker(ns, &kubelet);

    // Direct requests: who may ask.
    let (status, body) = curl(&format!("{API}/pods"), &[]);
    assert_eq!(
        (status, body.as_str()),
        (401, "Unauthorized\n"),
        "{}",
        kubelet.log()
    );
    let bearer = c.bearer_token(ns, "default");
    let (status, body) = curl(&format!("{API}/pods"), &["-H", &bearer]);
    assert_eq!(
        (status, body.as_str()),
        (
            403,
            "Forbidden (user=system:serviceaccount:api-test:default, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
        ),
        "{}",
        kubelet.log()
    );
    let (status, _) = curl(
        &format!("{API}/pods"),
        &["-H", "Authorization: Bearer not-a-token"],
    );
    assert_eq!(status, 401);
    let pki = c.ca_file.parent().expect("pki directory");
    let (cert, key) = (pki.join("admin.crt"), pki.join("admin.key"));
    let admin = [
        "--cert",
        cert.to_str().expect("path"),
        "--key",
        key.to_str().expect("path"),
    ];
    let (status, body) = curl(&format!("{API}/pods"), &admin);
    assert_eq!(status, 200, "{body}\n{}", kubelet.log());
    let list: Value = serde_json::from_str(&body).expect("a PodList");
    assert_eq!(list["kind"], "PodList");
    assert!(
        list["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|p| p["metadata"]["name"] == "talker")),
        "{list:#}"
    );
    let (status, body) = curl(&format!("{API}/healthz"), &admin);
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = curl(
        &format!("{API}/containerLogs/{ns}/talker/talker?tailLines=1"),
        &admin,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(ticks(&body).len(), 1, "{body:?}");
    let (status, body) = curl("http://127.0.0.1:10248/healthz", &[]);
    assert_eq!((status, body.as_str()), (200, "ok"));
    // The verbosity changes while the kubelet runs, as upstream's /debug/flags/v.
    let put = [&admin[..], &["-X", "PUT", "--data", "5"]].concat();
    let (status, body) = curl(&format!("{API}/debug/flags/v"), &put);
    assert_eq!(
        (status, body.as_str()),
        (200, "successfully set klog.logging.verbosity to 5"),
        "{}",
        kubelet.log()
    );
    wait_until(
        "the verbosity change logged",
        10,
        || kubelet.log(),
        || kubelet.log().contains("log verbosity changed"),
    );

    // kubectl logs, through the API server and its kubelet client certificate.
    std::thread::sleep(Duration::from_secs(2));
    let all = c.kubectl(&["logs", "-n", ns, "talker"]);
    let seen = ticks(&all);
    assert!(
        seen.len() >= 2 && seen[0] == 1,
        "{all:?}\n{}",
        kubelet.log()
    );
    let tail = c.kubectl(&["logs", "-n", ns, "talker", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail:?}");
    assert!(ticks(&tail)[0] >= *seen.last().expect("ticks"), "{tail:?}");
    let stamped = c.kubectl(&["logs", "-n", ns, "talker", "--tail=1", "--timestamps"]);
    assert!(
        stamped
            .split(' ')
            .next()
            .is_some_and(|t| t.len() >= 30 && t.contains('T')),
        "{stamped:?}"
    );

    // kubectl logs -f streams the lines written after it started.
    let last_seen = *ticks(&c.kubectl(&["logs", "-n", ns, "talker", "--tail=1"]))
        .last()
        .expect("a tick");
    let mut follow = c
        .kubectl_command()
        .args(["logs", "-f", "-n", ns, "talker", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let (lines, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut streamed = Vec::new();
    while !ticks(&streamed.join("\n"))
        .iter()
        .any(|t| *t > last_seen + 1)
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match got.recv_timeout(left) {
            Ok(line) => streamed.push(line),
            Err(_) => panic!(
                "kubectl logs -f streamed no new line after tick-{last_seen}: {streamed:?}\n{}",
                kubelet.log()
            ),
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();

    // --previous: none yet for talker; the last run's log for a restarted container.
    let err = c
        .try_kubectl(&["logs", "-n", ns, "talker", "--previous"], None)
        .expect_err("no previous container");
    assert!(
        err.contains("previous terminated container \"talker\" in pod \"talker\" not found"),
        "{err}"
    );
    c.wait_json(
        "restarter restarted",
        &["get", "pod", "-n", ns, "restarter"],
        90,
        &kubelet,
        |p| p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1),
    );
    let previous = c.kubectl(&["logs", "-n", ns, "restarter", "--previous"]);
    assert_eq!(previous, "run-started\n");

    drop(namespace);
    drop(kubelet);
}

/// Reads lines of `reader` into a channel, on a thread.
fn line_channel(reader: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (lines, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    got
}

/// Waits for a line of `got` that `check` accepts, up to `secs`; the lines seen.
fn wait_line(
    got: &std::sync::mpsc::Receiver<String>,
    secs: u64,
    check: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match got.recv_timeout(left) {
            Ok(line) if check(&line) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => return Err(seen),
        }
    }
}

#[test]
fn kubectl_exec_attach_and_port_forward_reach_the_container() {
    let Some((_env, c)) =
        Cluster::from_env("kubectl_exec_attach_and_port_forward_reach_the_container")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "stream-test");
    let ns = namespace.name;
    let (node, image) = (&c.node, &c.busybox);
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo served-by-busybox > /www/index.html && exec httpd -f -p 8080 -h /www"]
  - name: talker
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done"]
"#
    ));
    c.wait_json(
        "web Running",
        &["get", "pod", "-n", ns, "web"],
        90,
        &kubelet,
        |p| p["status"]["phase"] == "Running",
    );

    // kubectl exec with stdin, and the command's exit code.
    let mut exec = c
        .kubectl_command()
        .args(["exec", "-i", "-n", ns, "web", "-c", "httpd", "--"])
        .args(["sh", "-c", "tr a-z A-Z; echo to-stderr >&2; exit 3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl exec");
    exec.stdin
        .take()
        .expect("stdin")
        .write_all(b"hello from stdin\n")
        .expect("write stdin");
    let out = exec.wait_with_output().expect("kubectl exec output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HELLO FROM STDIN\n",
        "stderr: {stderr}\n{}",
        kubelet.log()
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("to-stderr"), "{stderr}");
    let hostname = c.kubectl(&["exec", "-n", ns, "web", "-c", "talker", "--", "hostname"]);
    assert_eq!(hostname, "web\n");

    // kubectl attach: the running container's output.
    let mut attach = c
        .kubectl_command()
        .args(["attach", "-n", ns, "web", "-c", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl attach");
    let got = line_channel(attach.stdout.take().expect("stdout"));
    let attached = wait_line(&got, 20, |l| l.starts_with("tick-"));
    let _ = attach.kill();
    let _ = attach.wait();
    assert!(attached.is_ok(), "{attached:?}\n{}", kubelet.log());

    // kubectl port-forward to the busybox httpd.
    let mut forward = c
        .kubectl_command()
        .args(["port-forward", "-n", ns, "pod/web", ":8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let got = line_channel(forward.stdout.take().expect("stdout"));
    let ready = wait_line(&got, 20, |l| l.starts_with("Forwarding from 127.0.0.1:"));
    let port = ready.as_ref().ok().and_then(|l| {
        l.strip_prefix("Forwarding from 127.0.0.1:")?
            .split_whitespace()
            .next()
            .map(str::to_owned)
    });
    let responses: Vec<(u16, String)> = port
        .iter()
        .flat_map(|port| {
            // Two requests: each opens its own forwarded stream.
            (0..2).map(move |_| curl(&format!("http://127.0.0.1:{port}/index.html"), &[]))
        })
        .collect();
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(port.is_some(), "{ready:?}\n{}", kubelet.log());
    assert_eq!(
        responses,
        vec![
            (200, "served-by-busybox\n".to_owned()),
            (200, "served-by-busybox\n".to_owned())
        ],
        "{}",
        kubelet.log()
    );

    // Direct requests: an exec that does not upgrade, and a pod that is not here.
    let pki = c.ca_file.parent().expect("pki directory");
    let (cert, key) = (pki.join("admin.crt"), pki.join("admin.key"));
    let admin = [
        "--cert",
        cert.to_str().expect("path"),
        "--key",
        key.to_str().expect("path"),
        "-X",
        "POST",
    ];
    let (status, body) = curl(
        &format!("{API}/exec/{ns}/web/talker?command=true&output=1"),
        &admin,
    );
    assert_eq!((status, body.as_str()), (500, "Upgrade request required\n"));
    let (status, body) = curl(
        &format!("{API}/exec/{ns}/absent/talker?command=true&output=1"),
        &admin,
    );
    assert_eq!((status, body.as_str()), (404, "pod does not exist"));
    let (status, body) = curl(
        &format!("{API}/exec/{ns}/web/nope?command=true&output=1"),
        &admin,
    );
    assert_eq!(
        (status, body.as_str()),
        (500, "container not found (\"nope\")")
    );
    let (status, body) = curl(&format!("{API}/exec/{ns}/web/talker?command=true"), &admin);
    assert_eq!(
        (status, body.as_str()),
        (400, "you must specify at least 1 of stdin, stdout, stderr")
    );

    // A WebSocket client straight to the kubelet (kubectl's requests reach it as SPDY
    // through the API server): the upgrade passes through to the runtime, which answers
    // with the negotiated sub-protocol and streams the command's output in frames.
    let out = std::process::Command::new("curl")
        .args(["-sk", "-i", "--http1.1", "--max-time", "10"])
        .args(&admin[..4])
        .args(["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"])
        .args(["-H", "Sec-WebSocket-Version: 13"])
        .args(["-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])
        .args(["-H", "Sec-WebSocket-Protocol: v4.channel.k8s.io"])
        .arg(format!(
            "{API}/exec/{ns}/web/talker?command=echo&command=over-websocket&output=1"
        ))
        .output()
        .expect("curl");
    let answer = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        answer.starts_with("http/1.1 101")
            && answer.contains("sec-websocket-protocol: v4.channel.k8s.io")
            && answer.contains("over-websocket"),
        "{answer:?}\n{}",
        kubelet.log()
    );

    drop(namespace);
    drop(kubelet);
}

#[test]
fn summary_metrics_and_kubectl_top_work_through_the_api_server() {
    let Some((_env, c)) =
        Cluster::from_env("summary_metrics_and_kubectl_top_work_through_the_api_server")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    // The kubelet in a cgroup of its own (kubeletCgroups), reported as the `kubelet`
    // system container of the summary.
    let _cgroup = RemoveCgroup(KUBELET_CGROUP);
    let kubelet = c.start_kubelet_with(
        dir.path(),
        &format!("kubeletCgroups: {KUBELET_CGROUP}\n"),
        &[],
    );
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "stats-api-test");
    let ns = namespace.name;
    let (node, image) = (&c.node, &c.busybox);
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: busy, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  volumes:
  - name: scratch
    emptyDir: {{}}
  containers:
  - name: burner
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "head -c 4000000 /dev/urandom > /scratch/blob; head -c 16000000 /dev/zero > /dev/shm/held; while true; do echo tick; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1; done"]
    volumeMounts:
    - {{name: scratch, mountPath: /scratch}}
    readinessProbe:
      exec: {{command: ["true"]}}
      periodSeconds: 1
"#
    ));
    c.wait_json(
        "busy Ready",
        &["get", "pod", "-n", ns, "busy"],
        90,
        &kubelet,
        |p| condition(p, "Ready") == Some("True"),
    );
    let proxy = |path: &str| {
        c.try_kubectl(
            &[
                "get",
                "--raw",
                &format!("/api/v1/nodes/{}/proxy{path}", c.node),
            ],
            None,
        )
    };

    // The summary API: node and pod figures, read after a few seconds of CPU use.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (summary, pod) = loop {
        let summary: Value = proxy("/stats/summary")
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let pod = summary["pods"].as_array().and_then(|pods| {
            pods.iter()
                .find(|p| p["podRef"]["name"] == "busy" && p["podRef"]["namespace"] == ns)
                .cloned()
        });
        let ready = pod.as_ref().is_some_and(|p| {
            p["cpu"]["usageNanoCores"].as_u64() > Some(0)
                && p["volume"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|v| v["usedBytes"].as_u64() > Some(3_000_000)))
        });
        if ready {
            break (summary, pod.expect("pod"));
        }
        assert!(
            Instant::now() < deadline,
            "no summary with the pod's figures: {summary:#}\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let node_stats = &summary["node"];
    assert_eq!(node_stats["nodeName"], c.node.as_str());
    for figure in [
        &node_stats["cpu"]["usageCoreNanoSeconds"],
        &node_stats["memory"]["workingSetBytes"],
        &node_stats["fs"]["capacityBytes"],
        &node_stats["fs"]["usedBytes"],
        &node_stats["runtime"]["imageFs"]["capacityBytes"],
    ] {
        assert!(figure.as_u64() > Some(0), "{node_stats:#}");
    }
    assert!(
        pod["memory"]["workingSetBytes"].as_u64() > Some(0),
        "{pod:#}"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "burner", "{pod:#}");
    assert!(
        container["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{pod:#}"
    );
    assert!(container["logs"]["usedBytes"].as_u64() > Some(0), "{pod:#}");
    assert!(
        pod["ephemeral-storage"]["usedBytes"].as_u64() > Some(3_000_000),
        "{pod:#}"
    );
    let system = |name: &str| {
        node_stats["systemContainers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} system container: {node_stats:#}"))
    };
    let own_cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", kubelet.child.id()))
        .expect("the kubelet's cgroups");
    assert!(
        own_cgroups.contains(&format!(":memory:{KUBELET_CGROUP}\n")),
        "{own_cgroups}"
    );
    for name in ["kubelet", "pods"] {
        let container = system(name);
        assert!(
            container["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0)
                && container["memory"]["workingSetBytes"].as_u64() > Some(0)
                && container["startTime"].is_string(),
            "{container:#}"
        );
    }
    assert!(system("kubelet")["memory"]["availableBytes"].is_null());
    let cpu_only: Value =
        serde_json::from_str(&proxy("/stats/summary?only_cpu_and_memory=true").expect("summary"))
            .expect("JSON");
    assert!(cpu_only["node"]["fs"].is_null(), "{cpu_only:#}");

    // /metrics/resource, as metrics-server scrapes it.
    let resource = proxy("/metrics/resource").expect("/metrics/resource");
    let pod_labels = format!(r#"container="burner",namespace="{ns}",pod="busy""#);
    assert!(
        resource.contains(&format!(
            "container_cpu_usage_seconds_total{{{pod_labels}}}"
        )) && resource.contains(&format!(
            "container_memory_working_set_bytes{{{pod_labels}}}"
        )) && resource.contains("node_cpu_usage_seconds_total ")
            && resource.contains("resource_scrape_error 0"),
        "{resource}"
    );

    // /metrics and /metrics/probes.
    let component = proxy("/metrics").expect("/metrics");
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    assert!(
        value(&component, "kubelet_running_pods ") >= Some(1.0),
        "{component}"
    );
    assert!(
        value(
            &component,
            r#"kubelet_running_containers{container_state="running"} "#
        ) >= Some(1.0),
        "{component}"
    );
    assert!(
        value(
            &component,
            r#"kubelet_runtime_operations_total{operation_type="run_podsandbox"} "#
        ) >= Some(1.0),
        "{component}"
    );
    assert!(
        value(&component, r#"kubelet_node_name{node="vm"} "#) == Some(1.0) || c.node != "vm",
        "{component}"
    );
    for family in [
        "kubelet_pod_worker_duration_seconds_bucket{operation_type=\"create\",le=\"+Inf\"}",
        "kubelet_pod_start_sli_duration_seconds_count",
        "kubelet_pod_start_duration_seconds_count",
        "kubelet_pleg_relist_duration_seconds_count",
        "kubelet_started_containers_total{container_type=\"container\"}",
    ] {
        assert!(
            value(&component, family).is_some_and(|v| v >= 1.0),
            "{family}\n{component}"
        );
    }
    let probes = proxy("/metrics/probes").expect("/metrics/probes");
    let uid = c.json(&["get", "pod", "-n", ns, "busy"])["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let series = format!(
        r#"prober_probe_total{{probe_type="Readiness",result="successful",container="burner",pod="busy",namespace="{ns}",pod_uid="{uid}"}} "#
    );
    assert!(value(&probes, &series) >= Some(1.0), "{series}\n{probes}");

    // /runningpods and /logs.
    let running: Value =
        serde_json::from_str(&proxy("/runningpods/").expect("/runningpods")).expect("JSON");
    assert!(
        running["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|p| p["metadata"]["name"] == "busy"
                && p["spec"]["containers"][0]["name"] == "burner")),
        "{running:#}"
    );
    let listing = proxy("/logs/").expect("/logs/");
    assert!(listing.contains("<a href=\"pods/\">pods/</a>"), "{listing}");
    let pod_dir = format!("{ns}_busy_{uid}");
    let log = proxy(&format!("/logs/pods/{pod_dir}/burner/0.log")).expect("a container log");
    assert!(log.contains("stdout F tick"), "{log}");
    let escape = proxy("/logs/../../etc/passwd");
    assert!(escape.is_err(), "{escape:?}");

    // kubectl top, through metrics-server scraping /metrics/resource every 10 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (top_node, top_pod) = loop {
        let top_node = c.try_kubectl(&["top", "node", &c.node, "--no-headers"], None);
        let top_pod = c.try_kubectl(&["top", "pod", "-n", ns, "busy", "--no-headers"], None);
        if let (Ok(node_line), Ok(pod_line)) = (&top_node, &top_pod)
            && node_line.starts_with(c.node.as_str())
            && pod_line.starts_with("busy")
        {
            break (node_line.clone(), pod_line.clone());
        }
        assert!(
            Instant::now() < deadline,
            "kubectl top: {top_node:?} {top_pod:?}\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_secs(3));
    };
    // `vm 68m 3% 4441Mi 18%`, `busy 12m 16Mi`: non-zero memory for both (the pod holds
    // 16 MB in /dev/shm).
    let memory = |line: &str, column: usize| -> u64 {
        line.split_whitespace()
            .nth(column)
            .and_then(|m| m.strip_suffix("Mi"))
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    };
    assert!(memory(&top_node, 3) > 0, "{top_node}");
    assert!(memory(&top_pod, 2) > 0, "{top_pod}");

    drop(namespace);
    drop(kubelet);
}

/// Removes a cgroup the test made the kubelet create, once the kubelet is gone (declared
/// before the kubelet's guard, so dropped after it, panics included).
struct RemoveCgroup(&'static str);

impl Drop for RemoveCgroup {
    fn drop(&mut self) {
        use kubelet_cgroups::CgroupManager;
        if let Err(e) = kubelet_cgroups::Cgroupfs::host().remove(self.0) {
            eprintln!("removing cgroup {}: {e}", self.0);
        }
    }
}

#[test]
fn debugging_handlers_off_refuse_logs_and_exec() {
    let Some((_env, c)) = Cluster::from_env("debugging_handlers_off_refuse_logs_and_exec") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet_with(dir.path(), "enableDebuggingHandlers: false\n", &[]);
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "no-debug");
    let ns = namespace.name;
    let (node, image) = (&c.node, &c.busybox);
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: quiet, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: quiet
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo hello; sleep 3600"]
"#
    ));
    c.wait_json(
        "quiet Running",
        &["get", "pod", "-n", ns, "quiet"],
        90,
        &kubelet,
        |p| p["status"]["phase"] == "Running",
    );
    for args in [
        &["logs", "-n", ns, "quiet"][..],
        &["exec", "-n", ns, "quiet", "--", "true"][..],
    ] {
        // The API server turns the kubelet's 405 into its own MethodNotAllowed.
        let err = c.try_kubectl(args, None).expect_err("refused");
        assert!(
            err.contains("MethodNotAllowed") || err.contains("Debug endpoints are disabled"),
            "{args:?}: {err}"
        );
    }
    let pki = c.ca_file.parent().expect("pki directory");
    let (cert, key) = (pki.join("admin.crt"), pki.join("admin.key"));
    let admin = [
        "--cert",
        cert.to_str().expect("path"),
        "--key",
        key.to_str().expect("path"),
    ];
    assert_eq!(curl(&format!("{API}/pods"), &admin).0, 200);
    assert_eq!(curl(&format!("{API}/configz"), &admin).0, 404);
    assert_eq!(
        curl(&format!("{API}/runningpods/"), &admin),
        (405, "Debug endpoints are disabled.\n".to_owned())
    );
    drop(namespace);
    drop(kubelet);
}
