//! The `kubelet` binary in standalone mode (`--pod-manifest-path`, no API server) on real
//! containerd: manifests are picked up, edited and removed while it runs, a bad manifest
//! does not stop the good ones, and a killed kubelet adopts its pods when restarted.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubelet_core::labels::POD_UID_LABEL;
use kubelet_core::{ContainerFilter, RuntimeInventory, SandboxFilter};
use kubelet_cri_client::{CriClient, TestEnv, Timeouts};
use serde_json::Value;

struct Kubelet {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Kubelet {
    fn start(manifests: &Path, root: &Path, port: u16, log: PathBuf) -> Self {
        Self::start_with(manifests, root, port, log, &[])
    }

    /// [`Kubelet::start`] with more flags.
    fn start_with(manifests: &Path, root: &Path, port: u16, log: PathBuf, extra: &[&str]) -> Self {
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kubelet"))
            .arg("--pod-manifest-path")
            .arg(manifests)
            .arg("--root-dir")
            .arg(root)
            .args(["--hostname-override", "Test-Node", "--node-ip", "10.88.0.1"])
            // This VM mounts cgroup v1, where upstream refuses to start by default.
            .arg("--fail-cgroupv1=false")
            .args(["--file-check-frequency", "2s", "--read-only-port"])
            .arg(port.to_string())
            // Tests run side by side: each its own kubelet API port, no /healthz port.
            .args(["--port", &free_port().to_string(), "--healthz-port", "0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the kubelet");
        Self { child, port, log }
    }

    /// GET `path` on the read-only port: the status line and the body.
    fn get(&self, path: &str) -> Option<(String, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.lines().next().unwrap_or_default().to_owned();
        Some((status, body.to_owned()))
    }

    fn pods(&self) -> Vec<Value> {
        let Some((_, body)) = self.get("/pods") else {
            return Vec::new();
        };
        let list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(list.is_null() || list["kind"] == "PodList", "{list}");
        list["items"].as_array().cloned().unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let pods = self.pods();
            if check(&pods) {
                return pods;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached; pods: {pods:#?}\nkubelet log:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        self.child.wait().expect("wait for the kubelet")
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One kubelet on the runtime at a time: each kills the pods its sources do not want,
/// the other's included.
static NODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    NODE.lock().unwrap_or_else(|p| p.into_inner())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn find<'a>(pods: &'a [Value], name: &str) -> Option<&'a Value> {
    pods.iter().find(|p| p["metadata"]["name"] == name)
}

fn running(pods: &[Value], name: &str) -> bool {
    find(pods, name).is_some_and(|p| p["status"]["phase"] == "Running")
}

fn manifest(image: &str, name: &str, message: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", \"echo {message}; exec sleep 3600\"]\n"
    )
}

fn container_ids(runtime: &CriClient, uid: &str, rt: &tokio::runtime::Runtime) -> Vec<String> {
    containers_where(runtime, uid, None, rt)
}

/// Ids of the pod `uid`'s containers (in `state`, if given), sorted.
fn containers_where(
    runtime: &CriClient,
    uid: &str,
    state: Option<kubelet_core::ContainerState>,
    rt: &tokio::runtime::Runtime,
) -> Vec<String> {
    let filter = ContainerFilter {
        labels: [(POD_UID_LABEL.to_owned(), uid.to_owned())].into(),
        state,
        ..Default::default()
    };
    let mut ids: Vec<String> = rt
        .block_on(RuntimeInventory::list_containers(runtime, &filter))
        .expect("list containers")
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

fn sandboxes(runtime: &CriClient, uid: &str, rt: &tokio::runtime::Runtime) -> usize {
    let filter = SandboxFilter {
        labels: [(POD_UID_LABEL.to_owned(), uid.to_owned())].into(),
        ..Default::default()
    };
    rt.block_on(RuntimeInventory::list_sandboxes(runtime, &filter))
        .expect("list sandboxes")
        .len()
}

#[test]
fn standalone_mode_runs_edits_adopts_and_removes_static_pods() {
    let Some(env) = TestEnv::from_env("standalone_mode_runs_edits_adopts_and_removes_static_pods")
    else {
        return;
    };
    let _node = lock();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    // The client's lazy channel spawns its connection task on the current runtime.
    let _entered = rt.enter();
    let runtime = CriClient::new(&env.endpoint, Timeouts::default()).expect("client");
    let dir = kubelet_test_support::TestDir::new();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("manifest dir");
    std::fs::write(
        manifests.join("alpha.yaml"),
        manifest(&env.busybox, "alpha", "v1"),
    )
    .expect("write");
    std::fs::write(
        manifests.join("broken.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: [not, a, map\n",
    )
    .expect("write");
    let port = free_port();
    let kubelet = Kubelet::start(
        &manifests,
        &dir.path().join("root"),
        port,
        dir.path().join("kubelet-1.log"),
    );

    // The good manifest runs as a static pod named after the node; the bad one is
    // reported with its file name and does not disturb it.
    let pods = kubelet.wait_for("alpha running", |pods| running(pods, "alpha-test-node"));
    assert_eq!(pods.len(), 1, "{pods:#?}");
    let alpha = find(&pods, "alpha-test-node").expect("alpha");
    assert_eq!(alpha["metadata"]["namespace"], "default");
    assert_eq!(alpha["spec"]["nodeName"], "test-node");
    let uid = alpha["metadata"]["uid"].as_str().expect("uid").to_owned();
    assert_eq!(
        alpha["metadata"]["annotations"]["kubernetes.io/config.hash"],
        uid.as_str()
    );
    assert_eq!(
        alpha["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );
    let log = kubelet.stderr();
    assert!(
        log.contains("broken.yaml"),
        "the bad manifest is named:\n{log}"
    );

    // The read-only port serves upstream's default handlers, not the debugging ones.
    let (status, body) = kubelet.get("/metrics/resource").expect("/metrics/resource");
    assert!(
        status.contains("200") && body.contains("node_cpu_usage_seconds_total"),
        "{status}\n{body}"
    );
    let (status, body) = kubelet.get("/stats/summary").expect("/stats/summary");
    let summary: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert!(
        status.contains("200") && summary["node"]["nodeName"] == "test-node",
        "{status}\n{body}"
    );
    // Debugging paths answer as upstream's disabled debugging handlers; /configz is not
    // there (upstream installs it with the authorized handlers only).
    let (status, body) = kubelet
        .get("/containerLogs/default/alpha-test-node/main")
        .expect("/containerLogs");
    assert!(
        status.contains("405") && body == "Debug endpoints are disabled.\n",
        "{status}\n{body}"
    );
    let (status, _) = kubelet.get("/configz").expect("/configz");
    assert!(status.contains("404"), "{status}");

    // SIGKILL, then a new kubelet: it adopts the pod instead of starting a duplicate.
    let before = container_ids(&runtime, &uid, &rt);
    assert_eq!(before.len(), 1);
    kubelet.kill("-KILL");
    let kubelet = Kubelet::start(
        &manifests,
        &dir.path().join("root"),
        port,
        dir.path().join("kubelet-2.log"),
    );
    kubelet.wait_for("alpha adopted", |pods| running(pods, "alpha-test-node"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        container_ids(&runtime, &uid, &rt),
        before,
        "no duplicate, no restart"
    );
    assert_eq!(sandboxes(&runtime, &uid, &rt), 1);

    // Editing the manifest replaces the pod (a new UID); the old one goes away.
    std::fs::write(
        manifests.join("alpha.yaml"),
        manifest(&env.busybox, "alpha", "v2"),
    )
    .expect("edit");
    let pods = kubelet.wait_for("alpha replaced", |pods| {
        find(pods, "alpha-test-node").is_some_and(|p| {
            p["metadata"]["uid"] != uid.as_str() && p["status"]["phase"] == "Running"
        })
    });
    let new_uid = find(&pods, "alpha-test-node")
        .and_then(|p| p["metadata"]["uid"].as_str())
        .expect("uid")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sandboxes(&runtime, &uid, &rt) > 0 {
        assert!(
            Instant::now() < deadline,
            "the old pod's sandbox is still there"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        kubelet_test_support::skip(
            "standalone_mode_runs_edits_adopts_and_removes_static_pods",
            "the pod cgroup checks read cgroup v1 files (this VM's); v2 is covered by \
             kubelet-cgroups' unit tests",
        );
    } else {
        // Pod cgroups: the QoS tiers, and each pod's own cgroup with the pod's limits, made
        // before its sandbox (cgroupsPerQOS); removed with the pod.
        let cgroup = |path: &str| {
            std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(path))
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .trim()
                .to_owned()
        };
        assert_eq!(cgroup("cpu/kubepods/besteffort/cpu.shares"), "2");
        assert!(
            cgroup("memory/kubepods/memory.limit_in_bytes")
                .parse::<u64>()
                .is_ok_and(|l| l > 0)
        );
        assert_eq!(
            cgroup(&format!("cpu/kubepods/besteffort/pod{new_uid}/cpu.shares")),
            "2"
        );
        std::fs::write(
            manifests.join("sized.yaml"),
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sized\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n    resources:\n      requests: {{cpu: 250m, memory: 16Mi}}\n      limits: {{cpu: 500m, memory: 64Mi}}\n",
                env.busybox
            ),
        )
        .expect("write");
        let pods = kubelet.wait_for("sized running", |pods| running(pods, "sized-test-node"));
        let sized_uid = find(&pods, "sized-test-node")
            .and_then(|p| p["metadata"]["uid"].as_str())
            .expect("uid")
            .to_owned();
        // Guaranteed would need requests equal to limits: this pod is Burstable.
        let pod_cgroup = format!("kubepods/burstable/pod{sized_uid}");
        assert_eq!(cgroup(&format!("cpu/{pod_cgroup}/cpu.shares")), "256");
        assert_eq!(
            cgroup(&format!("cpu/{pod_cgroup}/cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(
            cgroup(&format!("memory/{pod_cgroup}/memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        // The Burstable tier's shares follow its pods' CPU requests.
        let wait_shares = |want: &str| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while cgroup("cpu/kubepods/burstable/cpu.shares") != want {
                assert!(
                    Instant::now() < deadline,
                    "burstable cpu.shares not {want}:\n{}",
                    kubelet.stderr()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        };
        wait_shares("256");
        std::fs::remove_file(manifests.join("sized.yaml")).expect("remove");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Path::new("/sys/fs/cgroup/memory")
            .join(&pod_cgroup)
            .exists()
        {
            assert!(
                Instant::now() < deadline,
                "the pod cgroup is still there:\n{}",
                kubelet.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        wait_shares("2");
    }

    // SIGTERM: the kubelet exits cleanly and leaves the pod running.
    let status = kubelet.kill("-TERM");
    assert!(status.success(), "{status:?}");
    assert_eq!(container_ids(&runtime, &new_uid, &rt).len(), 1);
    assert_eq!(sandboxes(&runtime, &new_uid, &rt), 1);

    // A kubelet whose manifests are gone stops and removes the pod.
    std::fs::remove_file(manifests.join("alpha.yaml")).expect("remove");
    let kubelet = Kubelet::start(
        &manifests,
        &dir.path().join("root"),
        port,
        dir.path().join("kubelet-3.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while sandboxes(&runtime, &new_uid, &rt) > 0 {
        assert!(
            Instant::now() < deadline,
            "the pod was not removed:\n{}",
            kubelet.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(container_ids(&runtime, &new_uid, &rt).is_empty());
    assert!(kubelet.pods().is_empty());
}

#[test]
fn maximum_dead_containers_per_container_keeps_more_dead_instances() {
    let Some(env) =
        TestEnv::from_env("maximum_dead_containers_per_container_keeps_more_dead_instances")
    else {
        return;
    };
    let _node = lock();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let _entered = rt.enter();
    let runtime = CriClient::new(&env.endpoint, Timeouts::default()).expect("client");
    let dir = kubelet_test_support::TestDir::new();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("manifest dir");
    std::fs::write(
        manifests.join("crash.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: crash\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", \"exit 1\"]\n",
            env.busybox
        ),
    )
    .expect("write");
    let kubelet = Kubelet::start_with(
        &manifests,
        &dir.path().join("root"),
        free_port(),
        dir.path().join("kubelet.log"),
        &["--maximum-dead-containers-per-container=2"],
    );
    let pods = kubelet.wait_for("the crash pod restarted once", |pods| {
        find(pods, "crash-test-node").is_some_and(|p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 1)
        })
    });
    let uid = find(&pods, "crash-test-node").expect("crash")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    // Its second exit: both exited instances stay (upstream's default keeps one), and
    // stay over several syncs (the next start is 20 s of back-off away).
    let deadline = Instant::now() + Duration::from_secs(30);
    while containers_where(
        &runtime,
        &uid,
        Some(kubelet_core::ContainerState::Exited),
        &rt,
    )
    .len()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "two exited instances:\n{}",
            kubelet.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        containers_where(
            &runtime,
            &uid,
            Some(kubelet_core::ContainerState::Exited),
            &rt
        )
        .len(),
        2,
        "{}",
        kubelet.stderr()
    );
    assert!(
        kubelet.stderr().contains(
            "Flag --maximum-dead-containers-per-container has been deprecated, Use --eviction-hard or --eviction-soft instead."
        ),
        "{}",
        kubelet.stderr()
    );

    std::fs::remove_file(manifests.join("crash.yaml")).expect("remove");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sandboxes(&runtime, &uid, &rt) > 0 || !container_ids(&runtime, &uid, &rt).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the pod was not removed:\n{}",
            kubelet.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
