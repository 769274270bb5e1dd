//! The whole-node benchmark, this kubelet beside the upstream kubelet v1.37.2 on the same
//! control plane, containerd and KubeletConfiguration, one after the other: `cargo xtask
//! bench --node` (`cargo test --release -p kubelet-bin --test node_bench`; the target is
//! `test = false`, so the default test run leaves it out). It reports, it asserts only
//! that the runs worked: CI does not gate on absolute times.
//!
//! The CRI floor, the physical limit, is measured with no kubelet running:
//! RunPodSandbox + CreateContainer + StartContainer straight through the cri-client, for
//! pods one after the other and for 100 pods at once (the kubelet starts every pod in a
//! worker of its own, so all 100 concurrently). The runtime's speed drifts over a run (its
//! sequential p50 moved from 171 to 242 ms within one run here), so each kubelet's "above
//! the floor" figures are against floors measured right before its own measurements.
//!
//! The API floor is what any kubelet pays above the CRI floor however fast it is itself:
//! measured with no kubelet and no runtime, pods created one after the other are each
//! answered by one status write saying they are Running and Ready, created -> Ready as
//! the same kind of watch sees it (the pod's delivery to a watcher, one status write, its
//! delivery back). "Above both floors" is what is left of a kubelet's start-up latency:
//! its own steps, and the runtime slowed by everything else working during the start.
//!
//! Each kubelet is started with no sandbox of the benchmark's namespace in the runtime,
//! and each measurement runs on a quiet node (it starts once the runtime has no ready
//! sandbox of that namespace left from the one before):
//! - 20 pods one after the other, created -> Ready as one `kubectl get -w` sees both
//!   events: p50 / p90 / p99. They are taken in 4 rounds of 5 pods, each kubelet started
//!   afresh for each round after a floor of 5 pods of its own, the two kubelets taking
//!   turns at going first, so that a drift of the runtime's speed weighs on both alike;
//! - then, after a floor of 100 pods at once, 100 pods created at once (through the API, up to 25 requests in flight: `kubectl
//!   apply` would send them one after the other over seconds): until all are Running and
//!   Ready, and the CPU seconds the node's busy processes (the runtime with its shims,
//!   runc and CNI plugins; the API server; etcd; the kubelet; kubectl) spent meanwhile,
//!   beside the same for the floor's burst;
//! - its RSS and CPU from /proc, idle and then steady with the 100 pods, over
//!   `KUBELET_BENCH_SAMPLE_SECS` (default 60) each;
//! - a restart (SIGTERM, then started again): until the Node is reported Ready, and until
//!   the kubelet's `kubelet_running_pods` says 100 again (every pod re-confirmed from the
//!   runtime);
//! - the stripped binary's size.
//!
//! The last line is `ours/upstream: startup p50 R, burst R, rss idle R, rss 100 pods R,
//! cpu 100 pods R`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Kubelet, Namespace, lock};
use kubelet_core::{
    ContainerConfig, ContainerMetadata, ImageService, LinuxSandboxConfig, Runtime,
    RuntimeInventory, SandboxConfig, SandboxFilter, SandboxMetadata, SandboxState, SecurityProfile,
};
use kubelet_cri_client::{CriClient, Timeouts};

const SEQUENTIAL: usize = 20;
/// The sequential pods are taken in this many rounds, `SEQUENTIAL / ROUNDS` pods each.
const ROUNDS: usize = 4;
const BURST: usize = 100;

fn pod_yaml(ns: &str, node: &str, image: &str, name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#
    )
}

/// When a watch first saw each pod and first saw it Running and Ready.
#[derive(Default)]
struct Seen {
    created: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
}

/// `kubectl get -w` in the background, one line per event.
struct Watch {
    /// The running `kubectl get -w`, `None` once the watch is dropped.
    child: Arc<Mutex<Option<Child>>>,
    seen: Arc<Mutex<Seen>>,
}

impl Watch {
    /// Watches the pods of `ns`. A `kubectl get -w` whose watch ends (the API server
    /// may close it) is started again: it lists the pods first, so none is missed; a
    /// pod first seen Ready then counts from that moment, later than it was.
    fn pods(c: &Cluster, ns: &str) -> Self {
        let (kubectl, kubeconfig, ns) =
            (c.kubectl.clone(), c.admin_kubeconfig.clone(), ns.to_owned());
        let spawn = move || {
            Command::new(&kubectl)
                .env("KUBECONFIG", &kubeconfig)
                .args(["get", "pods", "-n", &ns, "-w", "-o"])
                .arg(
                    "jsonpath={.metadata.name} {.status.phase} \
                     {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}",
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("kubectl get -w")
        };
        let child = Arc::new(Mutex::new(Some(spawn())));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (shared, running) = (seen.clone(), child.clone());
        std::thread::spawn(move || {
            loop {
                let stdout = {
                    let mut running = running.lock().expect("watch");
                    match running.as_mut() {
                        Some(child) => child.stdout.take(),
                        None => return,
                    }
                };
                for line in BufReader::new(stdout.expect("stdout")).lines() {
                    let Ok(line) = line else { break };
                    let now = Instant::now();
                    let mut fields = line.split_whitespace();
                    let (Some(name), phase, ready) = (fields.next(), fields.next(), fields.next())
                    else {
                        continue;
                    };
                    let mut seen = shared.lock().expect("seen");
                    seen.created.entry(name.to_owned()).or_insert(now);
                    if phase == Some("Running") && ready == Some("True") {
                        seen.ready.entry(name.to_owned()).or_insert(now);
                    }
                }
                let mut running = running.lock().expect("watch");
                let Some(ended) = running.as_mut() else {
                    return;
                };
                let _ = ended.wait();
                eprintln!("the pod watch ended; watching again");
                *ended = spawn();
            }
        });
        // The watch lists first (nothing) and then watches; give it that moment.
        std::thread::sleep(Duration::from_secs(1));
        Self { child, seen }
    }

    fn created_to_ready(&self, name: &str) -> Option<Duration> {
        let seen = self.seen.lock().expect("seen");
        Some(
            seen.ready
                .get(name)?
                .duration_since(*seen.created.get(name)?),
        )
    }

    fn ready_count(&self) -> usize {
        self.seen.lock().expect("seen").ready.len()
    }

    fn ready_at(&self, name: &str) -> Option<Instant> {
        self.seen.lock().expect("seen").ready.get(name).copied()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().expect("watch").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The kernel's CPU time unit, per second.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The node's processes a burst of pods keeps busy, by the name the kernel gives them
/// (`comm`, cut at 15 bytes), and the group each counts in.
const BUSY_PROCESSES: [(&str, &str); 6] = [
    ("containerd", "runtime"),
    ("containerd-shim", "runtime"),
    ("kube-apiserver", "API server"),
    ("etcd", "etcd"),
    ("kubelet", "kubelet"),
    ("kubectl", "kubectl"),
];

/// The CPU ticks of each process of [`BUSY_PROCESSES`] alive now, the children it
/// reaped (runc, CNI plugins) included, by pid.
fn process_ticks() -> HashMap<u32, (&'static str, u64)> {
    let mut ticks = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head.split_once(" (").map_or("", |(_, comm)| comm);
        let Some(&(_, group)) = BUSY_PROCESSES.iter().find(|(name, _)| *name == comm) else {
            continue;
        };
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // utime, stime, cutime and cstime: the 12th to 15th fields after the name.
        let spent = fields.get(11..15).map_or(0, |f| f.iter().sum());
        ticks.insert(pid, (group, spent));
    }
    ticks
}

/// The CPU seconds each group of [`BUSY_PROCESSES`] spent since `before` was taken
/// ([`process_ticks`]); a process started since counts whole.
fn cpu_since(before: &HashMap<u32, (&'static str, u64)>) -> BTreeMap<&'static str, f64> {
    let per_second = clock_ticks();
    let mut spent = BTreeMap::new();
    for (pid, (group, now)) in process_ticks() {
        let then = before.get(&pid).map_or(0, |(_, then)| *then);
        *spent.entry(group).or_insert(0.0) += now.saturating_sub(then) as f64 / per_second;
    }
    spent
}

/// Mean RSS (MiB) and CPU (% of one core) of `pid` over `secs`.
fn sample(pid: u32, secs: u64) -> (f64, f64) {
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are
        // the 12th and 13th.
        let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
    };
    let rss_kib = |pid: u32| -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0)
    };
    let clock_ticks = clock_ticks();
    let start = Instant::now();
    let first = ticks(pid);
    let mut rss = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        rss.push(rss_kib(pid));
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = (ticks(pid) - first) as f64 / clock_ticks / start.elapsed().as_secs_f64() * 100.0;
    let mean = rss.iter().sum::<f64>() / rss.len().max(1) as f64 / 1024.0;
    (mean, cpu)
}

/// `kubelet_running_pods` as the kubelet's /metrics reports it.
fn running_pods(c: &Cluster) -> Option<u64> {
    let pki = c.control_plane.join("pki");
    let cert = pki.join("apiserver-kubelet-client.crt");
    let key = pki.join("apiserver-kubelet-client.key");
    let (code, body) = common::curl(
        "https://127.0.0.1:10250/metrics",
        &[
            "--cert",
            &cert.to_string_lossy(),
            "--key",
            &key.to_string_lossy(),
        ],
    );
    if code != 200 {
        return None;
    }
    body.lines()
        .find_map(|l| l.strip_prefix("kubelet_running_pods "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// A client of the API server with the cluster's admin credentials.
async fn admin_client(c: &Cluster) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&c.admin_kubeconfig).expect("admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("admin kubeconfig");
    kube::Client::try_from(config).expect("API client")
}

/// Creates pods `burst-0`..`burst-<count-1>` through the API with many requests in
/// flight, as near to at once as the API server allows.
fn create_at_once(c: &Cluster, ns: &str, count: usize) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let pods: kube::Api<Pod> = kube::Api::namespaced(admin_client(c).await, ns);
        let created: Vec<_> = futures::stream::iter(0..count)
            .map(|i| {
                let yaml = pod_yaml(ns, &c.node, &c.busybox, &format!("burst-{i}"));
                let pod: Pod = serde_yaml::from_str(&yaml).expect("pod");
                let pods = pods.clone();
                async move { pods.create(&Default::default(), &pod).await }
            })
            .buffer_unordered(25)
            .collect()
            .await;
        for result in created {
            result.expect("create a burst pod");
        }
    });
}

/// The API floor, measured with no kubelet and no runtime: `count` pods created one after
/// the other as the rounds create them, each answered by nothing but one status write
/// saying it is Running and Ready, created -> Ready as one watch sees both events. It is
/// what any kubelet pays above the CRI floor however fast it is itself: the pod's watch
/// delivery to it, one status write, and that write's delivery to the measuring watch.
fn api_floor(c: &Cluster, ns: &str, count: usize) -> Vec<Duration> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    use kube::runtime::watcher::{self, Event};
    use std::sync::atomic::{AtomicUsize, Ordering};
    static FLOORS: AtomicUsize = AtomicUsize::new(0);
    let floor = FLOORS.fetch_add(1, Ordering::Relaxed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pods: kube::Api<Pod> = kube::Api::namespaced(runtime.block_on(admin_client(c)), ns);
    let (listed, watching) = tokio::sync::oneshot::channel();
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", c.node));
    let mut stream = watcher::watcher(pods.clone(), config).boxed();
    let answers = pods.clone();
    let answering = runtime.spawn(async move {
        let mut listed = Some(listed);
        let ready = serde_json::json!({"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
        }});
        while let Some(event) = stream.next().await {
            let pod = match event {
                Ok(Event::InitDone) => {
                    if let Some(listed) = listed.take() {
                        let _ = listed.send(());
                    }
                    continue;
                }
                Ok(Event::Apply(pod)) => pod,
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("API floor: watching pods: {e}");
                    continue;
                }
            };
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            if phase != Some("Running")
                && let Err(e) = answers
                    .patch_status(name, &PatchParams::default(), &Patch::Strategic(&ready))
                    .await
            {
                eprintln!("API floor: answering {name}: {e}");
            }
        }
    });
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), watching).await })
        .expect("the API floor's watch lists within 60 s")
        .expect("the API floor's watch");
    // A connection for the answers, as a running kubelet has one: the watch holds its own.
    runtime
        .block_on(pods.get_opt("api-floor-warm-up"))
        .expect("the API floor's client");
    let took = one_after_the_other(c, ns, &format!("api-{floor}"), count, String::new);
    answering.abort();
    // No kubelet finishes their deletion.
    c.kubectl(&[
        "delete",
        "pods",
        "--all",
        "-n",
        ns,
        "--grace-period=0",
        "--force",
        "--wait=true",
    ]);
    took
}

/// What the runtime alone takes: the start-up latencies of pods started one after the
/// other, and the time until all of a burst run; and what the API alone takes.
#[derive(Default)]
struct Floor {
    sequential: Vec<Duration>,
    /// The API floor of pods created one after the other ([`api_floor`]).
    api: Vec<Duration>,
    /// CPU seconds of the node's busy processes during the burst ([`cpu_since`]).
    burst_cpu: BTreeMap<&'static str, f64>,
    /// Of each sequential pod: RunPodSandbox, CreateContainer, StartContainer.
    steps: Vec<[Duration; 3]>,
    burst: Duration,
}

impl Floor {
    /// Adds the sequential pods of `other`, a floor of another round.
    fn add_sequential(&mut self, other: Floor) {
        self.sequential.extend(other.sequential);
        self.api.extend(other.api);
        self.steps.extend(other.steps);
    }
}

/// Parent cgroup of the floor's pods (the kubelet would use its own under kubepods).
const FLOOR_CGROUP: &str = "kubelet-rs-bench-floor";

/// The UID of the floor's pod `name` (its cgroup is `FLOOR_CGROUP/pod<uid>`).
fn floor_uid(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// One pod as a kubelet starts it, nothing more: its sandbox (CNI networking, a pod
/// cgroup, and the runtime's default seccomp profile on the pause container, which both
/// kubelets ask for whatever the pod says, upstream since kubernetes#84623), then one
/// container created and started. Returns the sandbox id and each call's time.
async fn floor_pod(
    client: &CriClient,
    image: &str,
    name: &str,
    log_root: &Path,
) -> (String, [Duration; 3]) {
    let uid = floor_uid(name);
    let log_directory = log_root.join(format!("bench_{name}_{uid}"));
    std::fs::create_dir_all(&log_directory).expect("log directory");
    let sandbox = SandboxConfig {
        metadata: SandboxMetadata {
            name: name.into(),
            namespace: "bench-floor".into(),
            uid: uid.clone(),
            attempt: 0,
        },
        hostname: name.into(),
        log_directory: log_directory.display().to_string(),
        linux: LinuxSandboxConfig {
            cgroup_parent: format!("/{FLOOR_CGROUP}/pod{uid}"),
            seccomp: Some(SecurityProfile::RuntimeDefault),
            ..Default::default()
        },
        ..Default::default()
    };
    let container = ContainerConfig {
        metadata: ContainerMetadata {
            name: "main".into(),
            attempt: 0,
        },
        image: image.to_owned(),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "main/0.log".into(),
        ..Default::default()
    };
    // The `Runtime` calls the kubelet makes (CriClient's own methods take CRI messages).
    let runtime: &dyn Runtime = client;
    let started = Instant::now();
    let id = runtime.run_sandbox(&sandbox).await.expect("RunPodSandbox");
    let ran = started.elapsed();
    let container = runtime
        .create_container(&id, &container, &sandbox)
        .await
        .expect("CreateContainer");
    let created = started.elapsed();
    runtime
        .start_container(&container)
        .await
        .expect("StartContainer");
    let steps = [ran, created - ran, started.elapsed() - created];
    (id, steps)
}

/// The CRI floor, measured with no kubelet running: `sequential` pods one after the
/// other, then `burst` pods at once; everything it started is removed.
fn cri_floor(endpoint: &str, image: &str, sequential_pods: usize, burst_pods: usize) -> Floor {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Each floor's pods are named apart from the floors before it.
    static FLOORS: AtomicUsize = AtomicUsize::new(0);
    let floor = FLOORS.fetch_add(1, Ordering::Relaxed);
    let seq_name = |i: usize| format!("seq-{floor}-{i}");
    let burst_name = |i: usize| format!("burst-{floor}-{i}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let log_root = kubelet_test_support::TestDir::new();
    runtime.block_on(async {
        let timeouts = Timeouts {
            request: Duration::from_secs(120),
            pull: Duration::from_secs(300),
            ..Timeouts::default()
        };
        let client = CriClient::new(endpoint, timeouts).expect("CRI endpoint");
        let images: &dyn ImageService = &client;
        if images
            .image_status(image)
            .await
            .expect("ImageStatus")
            .is_none()
        {
            images
                .pull_image(image, None, None)
                .await
                .expect("PullImage");
        }
        let mut sandboxes = Vec::new();
        let mut sequential = Vec::new();
        let mut steps = Vec::new();
        for i in 0..sequential_pods {
            let started = Instant::now();
            let (id, took) = floor_pod(&client, image, &seq_name(i), log_root.path()).await;
            sequential.push(started.elapsed());
            sandboxes.push(id);
            steps.push(took);
        }
        let before = process_ticks();
        let started = Instant::now();
        let burst = futures::future::join_all((0..burst_pods).map(|i| {
            let name = burst_name(i);
            let (client, log_root) = (&client, log_root.path());
            async move { floor_pod(client, image, &name, log_root).await }
        }))
        .await;
        let burst_time = started.elapsed();
        let burst_cpu = cpu_since(&before);
        sandboxes.extend(burst.into_iter().map(|(id, _)| id));
        futures::future::join_all(sandboxes.iter().map(|id| {
            let client = &client;
            async move {
                let runtime: &dyn Runtime = client;
                if let Err(e) = runtime.stop_sandbox(id).await {
                    eprintln!("cleanup: {e}");
                }
                if let Err(e) = runtime.remove_sandbox(id).await {
                    eprintln!("cleanup: {e}");
                }
            }
        }))
        .await;
        // runc creates the pod cgroups as parents of the containers; removing them is the
        // kubelet's job, so the floor's too.
        use kubelet_cgroups::CgroupManager;
        let cgroups = kubelet_cgroups::Cgroupfs::host();
        for name in (0..sequential_pods)
            .map(seq_name)
            .chain((0..burst_pods).map(burst_name))
        {
            let pod = format!("{FLOOR_CGROUP}/pod{}", floor_uid(&name));
            if let Err(e) = cgroups.remove(&pod) {
                eprintln!("cleanup: {e}");
            }
        }
        if let Err(e) = cgroups.remove(FLOOR_CGROUP) {
            eprintln!("cleanup: {e}");
        }
        Floor {
            sequential,
            steps,
            burst: burst_time,
            burst_cpu,
            api: Vec::new(),
        }
    })
}

/// What one kubelet measured.
#[derive(Debug, Default, Clone)]
struct Figures {
    startup: Vec<Duration>,
    burst: Duration,
    /// How long the API server took to create the burst's pods.
    burst_apply: Duration,
    /// CPU seconds of the node's busy processes during the burst ([`cpu_since`]).
    burst_cpu: BTreeMap<&'static str, f64>,
    rss_idle: f64,
    cpu_idle: f64,
    rss_pods: f64,
    cpu_pods: f64,
    restart_ready: Duration,
    restart_pods: Duration,
    binary_mib: f64,
}

fn stripped_size(binary: &Path) -> f64 {
    let copy = std::env::temp_dir().join(format!("kubelet-bench-strip-{}", std::process::id()));
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&copy)
        .arg(binary)
        .status()
        .is_ok_and(|s| s.success());
    let path = if stripped { copy.as_path() } else { binary };
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&copy);
    size as f64 / (1 << 20) as f64
}

/// Runs `work` with a CRI client of `endpoint`, on a runtime of its own.
fn with_cri<T, F: std::future::Future<Output = T>>(
    endpoint: &str,
    work: impl FnOnce(CriClient) -> F,
) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let client = CriClient::new(endpoint, Timeouts::default()).expect("CRI endpoint");
        work(client).await
    })
}

fn namespace_sandboxes(ns: &str, state: Option<SandboxState>) -> SandboxFilter {
    SandboxFilter {
        state,
        labels: [("io.kubernetes.pod.namespace".to_owned(), ns.to_owned())].into(),
        ..SandboxFilter::default()
    }
}

/// Waits until the runtime has no ready sandbox of namespace `ns` left: a kubelet tears
/// deleted pods down after the API server has forgotten them, and that teardown
/// (StopPodSandbox's network clean-up above all) must not run into the next measurement.
fn wait_quiet(endpoint: &str, ns: &str) {
    with_cri(endpoint, |client| async move {
        let filter = namespace_sandboxes(ns, Some(SandboxState::Ready));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = client
                .list_sandboxes(&filter)
                .await
                .expect("ListPodSandbox");
            if ready.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} sandboxes of {ns} still ready after 120 s",
                ready.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Removes every sandbox of namespace `ns` (and so its containers) from the runtime, so
/// that a kubelet starts on a clean node: the upstream kubelet leaves its deleted pods'
/// stopped sandboxes to a garbage collection that runs a minute later, which the next
/// kubelet would otherwise find and clean up while it is measured.
fn clear_namespace(endpoint: &str, ns: &str) {
    with_cri(endpoint, |client| async move {
        let all = namespace_sandboxes(ns, None);
        for sandbox in client.list_sandboxes(&all).await.expect("ListPodSandbox") {
            let _ = client.stop_sandbox(&sandbox.id).await;
            if let Err(e) = client.remove_sandbox(&sandbox.id).await {
                eprintln!("removing sandbox {}: {e}", sandbox.id);
            }
        }
    });
}

/// One pod started and deleted, not measured: the kubelet's first pod, and the image in
/// containerd for either kubelet.
fn warm_up(c: &Cluster, endpoint: &str, ns: &str, kubelet: &Kubelet) {
    c.apply(&pod_yaml(ns, &c.node, &c.busybox, "warm-up"));
    c.wait_json(
        "warm-up pod Running",
        &["get", "pod", "-n", ns, "warm-up"],
        120,
        kubelet,
        |p| p["status"]["phase"] == "Running",
    );
    c.kubectl(&["delete", "pod", "warm-up", "-n", ns, "--wait=true"]);
    wait_quiet(endpoint, ns);
}

/// Start-up work of a kubelet (image GC's first pass, certificate checks, upstream's
/// cAdvisor) is left to settle this long before it is measured.
const SETTLE: Duration = Duration::from_secs(10);

/// A kubelet `start` makes, started with no sandbox of `ns` in the runtime, its Node
/// Ready and its start-up work settled.
fn start_settled(c: &Cluster, endpoint: &str, ns: &str, start: &dyn Fn() -> Kubelet) -> Kubelet {
    clear_namespace(endpoint, ns);
    let kubelet = start();
    c.wait_node_ready(&kubelet);
    std::thread::sleep(SETTLE);
    kubelet
}

/// Round `round` of the start-up measurement with a kubelet `start` makes, started on a
/// clean node: after a warm-up pod, `count` pods one after the other, each created ->
/// Ready as one watch sees both events. Every pod is deleted and the kubelet stopped
/// after.
fn startup_round(
    c: &Cluster,
    endpoint: &str,
    ns: &str,
    round: usize,
    count: usize,
    start: &dyn Fn() -> Kubelet,
) -> Vec<Duration> {
    let kubelet = start_settled(c, endpoint, ns, start);
    warm_up(c, endpoint, ns, &kubelet);
    let startup = one_after_the_other(c, ns, &format!("seq-{round}"), count, || kubelet.log());
    c.kubectl(&["delete", "pods", "--all", "-n", ns, "--wait=true"]);
    wait_quiet(endpoint, ns);
    drop(kubelet);
    clear_namespace(endpoint, ns);
    startup
}

/// Creates `count` pods `<prefix>-<i>` one after the other, each once the one before is
/// Ready; each one's created -> Ready as one watch sees both events. `log` explains a
/// pod not Ready within a minute.
fn one_after_the_other(
    c: &Cluster,
    ns: &str,
    prefix: &str,
    count: usize,
    log: impl Fn() -> String,
) -> Vec<Duration> {
    let watch = Watch::pods(c, ns);
    let mut took = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        c.apply(&pod_yaml(ns, &c.node, &c.busybox, &name));
        common::wait_until(&format!("{name} Ready"), 60, &log, || {
            watch.ready_at(&name).is_some()
        });
        took.push(
            watch
                .created_to_ready(&name)
                .expect("seen created and ready"),
        );
    }
    took
}

/// Appends the log `from`, when there is one, to `to` and removes it: a kubelet started
/// again in the same directory would replace it.
fn keep_log(from: &Path, to: &Path) {
    use std::io::Write;
    let Ok(text) = std::fs::read(from) else {
        return;
    };
    let mut kept = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(to)
        .expect("kept log");
    kept.write_all(&text).expect("kept log");
    let _ = std::fs::remove_file(from);
}

/// Runs the burst, footprint and restart measurements with kubelets `start` makes (the
/// same one again for the restart), on namespace `ns`.
fn measure(
    c: &Cluster,
    endpoint: &str,
    ns: &str,
    binary: &Path,
    sample_secs: u64,
    start: &dyn Fn() -> Kubelet,
) -> Figures {
    let mut figures = Figures {
        binary_mib: stripped_size(binary),
        ..Figures::default()
    };
    let kubelet = start_settled(c, endpoint, ns, start);
    (figures.rss_idle, figures.cpu_idle) = sample(kubelet.child.id(), sample_secs);
    warm_up(c, endpoint, ns, &kubelet);

    let watch = Watch::pods(c, ns);
    let before = watch.ready_count();
    let busy_before = process_ticks();
    let started = Instant::now();
    create_at_once(c, ns, BURST);
    figures.burst_apply = started.elapsed();
    common::wait_until(
        "100 pods Ready",
        300,
        || {
            let unseen: Vec<String> = (0..BURST)
                .map(|i| format!("burst-{i}"))
                .filter(|name| watch.ready_at(name).is_none())
                .collect();
            format!(
                "{}\nnot seen Running and Ready by the watch: {unseen:?}\nthe API server has:\n{}",
                kubelet.log(),
                c.try_kubectl(&["get", "pods", "-n", ns, "-o", "wide"], None)
                    .unwrap_or_else(|e| e)
            )
        },
        || watch.ready_count() >= before + BURST,
    );
    figures.burst_cpu = cpu_since(&busy_before);
    figures.burst = (0..BURST)
        .filter_map(|i| watch.ready_at(&format!("burst-{i}")))
        .max()
        .map_or(Duration::ZERO, |last| last.duration_since(started));
    drop(watch);
    (figures.rss_pods, figures.cpu_pods) = sample(kubelet.child.id(), sample_secs);

    drop(kubelet);
    let restarted = Instant::now();
    let kubelet = start();
    c.wait_node_ready(&kubelet);
    figures.restart_ready = restarted.elapsed();
    common::wait_until(
        "100 running pods re-confirmed",
        120,
        || kubelet.log(),
        || running_pods(c) == Some(BURST as u64),
    );
    figures.restart_pods = restarted.elapsed();
    c.kubectl(&["delete", "pods", "--all", "-n", ns, "--wait=true"]);
    wait_quiet(endpoint, ns);
    drop(kubelet);
    clear_namespace(endpoint, ns);
    figures
}

/// One kubelet being measured: its binary, how it starts, what it measured and the CRI
/// floors measured right before its measurements.
struct Side<'a> {
    binary: &'a Path,
    start: &'a dyn Fn() -> Kubelet,
    figures: Figures,
    floor: Floor,
}

impl<'a> Side<'a> {
    fn new(binary: &'a Path, start: &'a dyn Fn() -> Kubelet) -> Self {
        Self {
            binary,
            start,
            figures: Figures::default(),
            floor: Floor::default(),
        }
    }
}

/// Prints a floor's figures; returns its sequential p50 and its API floor's p50.
fn print_floor(when: &str, floor: &Floor) -> (Duration, Duration) {
    let mut sorted = floor.sequential.clone();
    sorted.sort();
    let p50 = percentile(&sorted, 0.5);
    println!(
        "\nCRI floor {when} (no kubelet; RunPodSandbox + CreateContainer + StartContainer): \
         {SEQUENTIAL} sequential pods (in {ROUNDS} rounds, each right before that kubelet's) \
         p50 / p90 / p99 {} / {} / {} ms, {BURST} pods at once {} ms",
        p50.as_millis(),
        percentile(&sorted, 0.9).as_millis(),
        percentile(&sorted, 0.99).as_millis(),
        floor.burst.as_millis(),
    );
    let cpu: Vec<String> = floor
        .burst_cpu
        .iter()
        .map(|(group, seconds)| format!("{group} {seconds:.1}"))
        .collect();
    println!("  CPU seconds during its burst: {}", cpu.join(", "));
    let step_p50 = |i: usize| {
        let mut step: Vec<Duration> = floor.steps.iter().map(|s| s[i]).collect();
        step.sort();
        percentile(&step, 0.5).as_secs_f64() * 1000.0
    };
    println!(
        "  its steps' p50: RunPodSandbox {:.1} ms, CreateContainer {:.1} ms, StartContainer {:.1} ms",
        step_p50(0),
        step_p50(1),
        step_p50(2),
    );
    let mut api = floor.api.clone();
    api.sort();
    let api_p50 = percentile(&api, 0.5);
    println!(
        "API floor {when} (no kubelet, no runtime; one status write answers each pod's \
         creation): created -> Ready p50 / p90 {:.1} / {:.1} ms",
        api_p50.as_secs_f64() * 1000.0,
        percentile(&api, 0.9).as_secs_f64() * 1000.0,
    );
    (p50, api_p50)
}

fn ratio(ours: f64, upstream: f64) -> String {
    if upstream > 0.0 {
        format!("{:.2}", ours / upstream)
    } else {
        "-".to_owned()
    }
}

#[test]
fn node_bench() {
    let test = "node_bench";
    let Some((env, c)) = Cluster::from_env(test) else {
        return;
    };
    let Some(upstream) = common::env_program(test, "KUBELET_TEST_UPSTREAM_KUBELET") else {
        return;
    };
    let sample_secs = std::env::var("KUBELET_BENCH_SAMPLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let _node = lock();
    let namespace = Namespace::create(&c, "bench");
    let ns = namespace.name;
    let ours_dir = kubelet_test_support::TestDir::new();
    // `KUBELET_BENCH_RUST_LOG=kubelet_pod_manager=debug,...` logs each pod start step's
    // time; the logs of all its runs are kept as `target/node-bench-kubelet.log`.
    let rust_log = std::env::var("KUBELET_BENCH_RUST_LOG")
        .unwrap_or_else(|_| "info,kube_client=warn,kube_runtime=warn".to_owned());
    let all_logs = ours_dir.path().join("kubelet.all.log");
    let start_ours = || {
        keep_log(&ours_dir.path().join("kubelet.log"), &all_logs);
        c.start_kubelet_with(
            ours_dir.path(),
            "failCgroupV1: false\n",
            &[("RUST_LOG", &rust_log)],
        )
    };
    let theirs_dir = kubelet_test_support::TestDir::new();
    std::fs::create_dir_all(theirs_dir.path()).expect("directory");
    let start_theirs = || {
        // Upstream reads the configuration file ours was given (ours runs first).
        std::fs::copy(
            ours_dir.path().join("kubelet.yaml"),
            theirs_dir.path().join("kubelet.yaml"),
        )
        .expect("ours' configuration, written when ours started");
        c.start_upstream_kubelet(&upstream, theirs_dir.path())
    };

    let ours_binary = Path::new(env!("CARGO_BIN_EXE_kubelet"));
    let mut sides = [
        Side::new(ours_binary, &start_ours),
        Side::new(Path::new(&upstream), &start_theirs),
    ];
    for round in 0..ROUNDS {
        let count = SEQUENTIAL / ROUNDS;
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let side = &mut sides[i];
            side.floor
                .add_sequential(cri_floor(&env.endpoint, &c.busybox, count, 0));
            side.floor.api.extend(api_floor(&c, ns, count));
            let startup = startup_round(&c, &env.endpoint, ns, round, count, side.start);
            side.figures.startup.extend(startup);
        }
    }
    for side in &mut sides {
        let floor = cri_floor(&env.endpoint, &c.busybox, 0, BURST);
        (side.floor.burst, side.floor.burst_cpu) = (floor.burst, floor.burst_cpu);
        side.figures = Figures {
            startup: std::mem::take(&mut side.figures.startup),
            ..measure(&c, &env.endpoint, ns, side.binary, sample_secs, side.start)
        };
    }
    keep_log(&ours_dir.path().join("kubelet.log"), &all_logs);
    let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/node-bench-kubelet.log");
    if let Err(e) = std::fs::copy(&all_logs, &kept) {
        eprintln!("keeping the kubelet's log as {}: {e}", kept.display());
    }
    let [
        Side {
            figures: ours,
            floor: floor_ours,
            ..
        },
        Side {
            figures: theirs,
            floor: floor_theirs,
            ..
        },
    ] = sides;

    let summary = |f: &Figures| {
        let mut sorted = f.startup.clone();
        sorted.sort();
        (
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.9),
            percentile(&sorted, 0.99),
        )
    };
    let (o50, o90, o99) = summary(&ours);
    let (u50, u90, u99) = summary(&theirs);
    let (f50_ours, a50_ours) = print_floor("beside ours", &floor_ours);
    let (f50_theirs, a50_theirs) = print_floor("beside upstream", &floor_theirs);
    let per_floor =
        |d: Duration, floor: &Floor| d.as_secs_f64() / floor.burst.as_secs_f64().max(f64::EPSILON);
    // (figure, ours, upstream, decimals): durations are shown in milliseconds.
    let cpu = |group: &str| {
        let spent = |f: &Figures| f.burst_cpu.get(group).copied().unwrap_or_default();
        (
            format!("  CPU seconds during it: {group}"),
            spent(&ours),
            spent(&theirs),
            1,
        )
    };
    let time = |figure: String, o: Duration, u: Duration| {
        (
            figure,
            o.as_secs_f64() * 1000.0,
            u.as_secs_f64() * 1000.0,
            0,
        )
    };
    let rows = [
        time(
            format!("{SEQUENTIAL} sequential pods, created -> Ready, p50 (ms)"),
            o50,
            u50,
        ),
        time(
            "  p50 above the CRI floor's p50 (ms)".into(),
            o50.saturating_sub(f50_ours),
            u50.saturating_sub(f50_theirs),
        ),
        time(
            "  p50 above the CRI and API floors' p50s (ms)".into(),
            o50.saturating_sub(f50_ours + a50_ours),
            u50.saturating_sub(f50_theirs + a50_theirs),
        ),
        time("  p90 (ms)".into(), o90, u90),
        time("  p99 (ms)".into(), o99, u99),
        time(
            format!("{BURST} pods at once, until all Running and Ready (ms)"),
            ours.burst,
            theirs.burst,
        ),
        time(
            "  of which the API server creating them (ms)".into(),
            ours.burst_apply,
            theirs.burst_apply,
        ),
        (
            "  times the CRI floor's burst".into(),
            per_floor(ours.burst, &floor_ours),
            per_floor(theirs.burst, &floor_theirs),
            2,
        ),
        cpu("runtime"),
        cpu("API server"),
        cpu("etcd"),
        cpu("kubelet"),
        cpu("kubectl"),
        ("RSS idle (MiB)".into(), ours.rss_idle, theirs.rss_idle, 1),
        (
            format!("RSS with {BURST} pods (MiB)"),
            ours.rss_pods,
            theirs.rss_pods,
            1,
        ),
        (
            "CPU idle (% of a core)".into(),
            ours.cpu_idle,
            theirs.cpu_idle,
            2,
        ),
        (
            format!("CPU with {BURST} pods (% of a core)"),
            ours.cpu_pods,
            theirs.cpu_pods,
            2,
        ),
        time(
            "restart -> Node Ready (ms)".into(),
            ours.restart_ready,
            theirs.restart_ready,
        ),
        time(
            format!("restart -> {BURST} running pods re-confirmed (ms)"),
            ours.restart_pods,
            theirs.restart_pods,
        ),
        (
            "stripped binary (MiB)".into(),
            ours.binary_mib,
            theirs.binary_mib,
            1,
        ),
    ];
    println!(
        "\n{:<56} {:>10} {:>10} {:>6}",
        "figure", "ours", "upstream", "ratio"
    );
    for (figure, o, u, decimals) in &rows {
        println!(
            "{figure:<56} {o:>10.decimals$} {u:>10.decimals$} {:>6}",
            ratio(*o, *u)
        );
    }
    println!(
        "ours/upstream: startup p50 {}, burst {}, rss idle {}, rss 100 pods {}, cpu 100 pods {}",
        ratio(o50.as_secs_f64(), u50.as_secs_f64()),
        ratio(ours.burst.as_secs_f64(), theirs.burst.as_secs_f64()),
        ratio(ours.rss_idle, theirs.rss_idle),
        ratio(ours.rss_pods, theirs.rss_pods),
        ratio(ours.cpu_pods, theirs.cpu_pods),
    );
    assert_eq!(floor_ours.sequential.len(), SEQUENTIAL);
    assert_eq!(floor_theirs.sequential.len(), SEQUENTIAL);
    assert_eq!(floor_ours.api.len(), SEQUENTIAL);
    assert_eq!(ours.startup.len(), SEQUENTIAL);
    assert_eq!(theirs.startup.len(), SEQUENTIAL);
    drop(namespace);
}
