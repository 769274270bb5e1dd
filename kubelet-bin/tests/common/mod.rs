//! Test scaffolding shared by the integration tests that run the kubelet against the
//! real control plane (`cargo xtask env up --control-plane`): the cluster's variables,
//! kubectl as the admin, a kubelet process (flags, or a KubeletConfiguration with the
//! cluster's authentication), namespaces removed when a test ends, and one lock for the
//! node all tests share.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kubelet_cri_client::TestEnv;
use serde_json::Value;

/// One kubelet at a time within a test binary: all tests share the node name and
/// containerd. (Binaries run one after another.)
static NODE: Mutex<()> = Mutex::new(());

/// The kubelet API as the tests reach it (the node's InternalIP).
pub const API: &str = "https://10.88.0.1:10250";

/// The node's address: the CNI bridge, where the API server listens too.
pub const NODE_IP: &str = "10.88.0.1";

/// Takes the node for the rest of the test.
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    NODE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The control plane of `cargo xtask env up --control-plane`, from its variables.
pub struct Cluster {
    pub kubectl: String,
    pub admin_kubeconfig: String,
    pub node_kubeconfig: String,
    pub node: String,
    pub ca_file: PathBuf,
    pub control_plane: PathBuf,
    pub apiserver: String,
    pub busybox: String,
}

impl Cluster {
    /// The cluster, or `None` (the test is skipped, or fails under
    /// `KUBELET_TEST_REQUIRE_ENV=1`) when the environment is not up.
    pub fn from_env(test: &str) -> Option<(TestEnv, Self)> {
        let env = TestEnv::from_env(test)?;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let names = [
            "KUBELET_TEST_KUBECONFIG",
            "KUBELET_TEST_NODE_KUBECONFIG",
            "KUBELET_TEST_KUBECTL",
            "KUBELET_TEST_NODE_NAME",
            "KUBELET_TEST_CA_FILE",
            "KUBELET_TEST_CONTROL_PLANE_DIR",
            "KUBELET_TEST_APISERVER",
        ];
        let missing: Vec<_> = names.iter().filter(|n| var(n).is_none()).collect();
        if !missing.is_empty() {
            kubelet_test_support::skip(
                test,
                format!(
                    "no control plane ({missing:?} unset); run `cargo xtask test` or \
                     `eval \"$(cargo xtask env up --control-plane)\"` first"
                ),
            );
            return None;
        }
        let get = |name: &str| var(name).unwrap_or_default();
        let cluster = Self {
            kubectl: get("KUBELET_TEST_KUBECTL"),
            admin_kubeconfig: get("KUBELET_TEST_KUBECONFIG"),
            node_kubeconfig: get("KUBELET_TEST_NODE_KUBECONFIG"),
            node: get("KUBELET_TEST_NODE_NAME"),
            ca_file: PathBuf::from(get("KUBELET_TEST_CA_FILE")),
            control_plane: PathBuf::from(get("KUBELET_TEST_CONTROL_PLANE_DIR")),
            apiserver: get("KUBELET_TEST_APISERVER"),
            busybox: env.busybox.clone(),
        };
        Some((env, cluster))
    }

    /// kubectl as the cluster admin.
    pub fn kubectl_command(&self) -> Command {
        let mut command = Command::new(&self.kubectl);
        command.env("KUBECONFIG", &self.admin_kubeconfig);
        command
    }

    /// Runs kubectl as the cluster admin; the output, or the failure with its stderr.
    pub fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = self
            .kubectl_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write to kubectl");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl output");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs kubectl; panics with its stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.try_kubectl(args, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `kubectl apply` of a manifest.
    pub fn apply(&self, yaml: &str) {
        self.try_kubectl(&["apply", "-f", "-"], Some(yaml))
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    }

    /// `kubectl ... -o json`, or `Null` when it fails (e.g. not found).
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        match self.try_kubectl(&all, None) {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Starts the kubelet binary as this node (node IP, status every 2 s, its root dir and
    /// log under `root`) with `args` and `env`.
    pub fn spawn_kubelet(&self, root: &Path, args: &[&str], env: &[(&str, &str)]) -> Kubelet {
        self.spawn_kubelet_logging_to(root, "kubelet.log", args, env)
    }

    /// [`Cluster::spawn_kubelet`] with its log in `root/<log_name>`.
    pub fn spawn_kubelet_logging_to(
        &self,
        root: &Path,
        log_name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Kubelet {
        let log = root.join(log_name);
        let stderr = std::fs::File::create(&log).expect("log file");
        let started = std::time::SystemTime::now();
        let child = Command::new(env!("CARGO_BIN_EXE_kubelet"))
            .args(["--hostname-override", &self.node, "--node-ip", NODE_IP])
            .arg("--root-dir")
            .arg(root.join("root"))
            .args(["--node-status-update-frequency", "2s"])
            // This VM mounts cgroup v1, where upstream refuses to start by default.
            .arg("--fail-cgroupv1=false")
            .args(args)
            .env("RUST_LOG", "info,kube_client=warn,kube_runtime=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the kubelet");
        Kubelet {
            child,
            log,
            started,
        }
    }

    /// Starts the kubelet with the node's kubeconfig and a KubeletConfiguration with the
    /// API server's authentication and authorization (the cluster CA's client
    /// certificates, TokenReview, SubjectAccessReview).
    pub fn start_kubelet(&self, root: &Path) -> Kubelet {
        self.start_kubelet_with(root, "", &[])
    }

    /// [`Cluster::start_kubelet`] with more configuration fields (YAML lines) and
    /// environment variables.
    pub fn start_kubelet_with(
        &self,
        root: &Path,
        more_config: &str,
        env: &[(&str, &str)],
    ) -> Kubelet {
        self.start_kubelet_on(root, &self.node_kubeconfig, more_config, env)
    }

    /// [`Cluster::start_kubelet_with`] reaching the API server through `kubeconfig`.
    pub fn start_kubelet_on(
        &self,
        root: &Path,
        kubeconfig: &str,
        more_config: &str,
        env: &[(&str, &str)],
    ) -> Kubelet {
        self.start_kubelet_with_flags(root, kubeconfig, more_config, &[], env)
    }

    /// [`Cluster::start_kubelet_on`] with more flags.
    pub fn start_kubelet_with_flags(
        &self,
        root: &Path,
        kubeconfig: &str,
        more_config: &str,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Kubelet {
        let config = root.join("kubelet.yaml");
        // Test nodes keep upstream's memory threshold but no disk thresholds and no
        // image GC: this machine's disk may be nearly full, and DiskPressure would evict
        // the pods under test (the eviction tests set their own).
        let mut more_config = more_config.to_owned();
        if !more_config.contains("evictionHard:") {
            more_config.push_str("evictionHard: {memory.available: 100Mi}\n");
        }
        if !more_config.contains("imageGCHighThresholdPercent:") {
            more_config.push_str("imageGCHighThresholdPercent: 100\n");
        }
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 address: 0.0.0.0\nreadOnlyPort: 0\nclusterDomain: cluster.local\n\
                 authentication:\n  x509:\n    clientCAFile: {}\n  webhook:\n    enabled: true\n    cacheTTL: 10s\n  anonymous:\n    enabled: false\n\
                 authorization:\n  mode: Webhook\n{more_config}",
                self.ca_file.display()
            ),
        )
        .expect("kubelet configuration");
        let config = config.to_string_lossy().into_owned();
        let mut args = vec!["--config", &config, "--kubeconfig", kubeconfig];
        args.extend_from_slice(flags);
        self.spawn_kubelet(root, &args, env)
    }

    /// Starts the upstream kubelet (`binary`) as this node with the configuration file
    /// (`root/kubelet.yaml`) and root directory ([`Cluster::start_kubelet_with`] wrote),
    /// its status every 2 s as this kubelet's, logging to `root/upstream-kubelet.log`.
    pub fn start_upstream_kubelet(&self, binary: &str, root: &Path) -> Kubelet {
        let log = root.join("upstream-kubelet.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let started = std::time::SystemTime::now();
        let child = Command::new(binary)
            .arg("--config")
            .arg(root.join("kubelet.yaml"))
            .args(["--kubeconfig", &self.node_kubeconfig])
            .args(["--hostname-override", &self.node, "--node-ip", NODE_IP])
            .arg("--root-dir")
            .arg(root.join("root"))
            .args(["--node-status-update-frequency", "2s", "-v", "2"])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the upstream kubelet");
        Kubelet {
            child,
            log,
            started,
        }
    }

    /// Waits until `check` passes on what `args` returns, up to `secs`.
    pub fn wait_json(
        &self,
        what: &str,
        args: &[&str],
        secs: u64,
        kubelet: &Kubelet,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let value = self.json(args);
            if check(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached within {secs}s; last: {value:#}\nkubelet log:\n{}",
                kubelet.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits up to a minute for the node to be Ready.
    /// Waits until the node is Ready as this kubelet reported it (not an earlier one:
    /// its Ready heartbeat is not older than this kubelet).
    pub fn wait_node_ready(&self, kubelet: &Kubelet) -> Value {
        let started = kubelet
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let heartbeat = |n: &Value| -> Option<u64> {
            let ready = n["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?;
            let time: k8s_openapi::jiff::Timestamp =
                ready["lastHeartbeatTime"].as_str()?.parse().ok()?;
            u64::try_from(time.as_second()).ok()
        };
        self.wait_json(
            "node Ready",
            &["get", "node", &self.node],
            60,
            kubelet,
            |n| {
                condition(n, "Ready") == Some("True")
                    && heartbeat(n).is_some_and(|at| at >= started)
            },
        )
    }

    /// Runs a kubelet from flags under `root`, with a steady pod and one that finishes
    /// while the API server is stopped for `outage`; then checks that the steady pod kept
    /// its container, the finisher's end is reported, and the node is Ready again. A
    /// third pod's container starts during the outage: when the outage is shorter than
    /// the event writer's tries (12, 10 s apart), its `Started` event is written after
    /// it, as upstream's event broadcaster holds events the API server did not answer.
    pub fn api_server_outage_loses_no_pod(
        &self,
        root: &Path,
        namespace: &'static str,
        outage: Duration,
    ) {
        let kubelet = self.spawn_kubelet(root, &["--kubeconfig", &self.node_kubeconfig], &[]);
        self.wait_node_ready(&kubelet);
        let namespace = Namespace::create(self, namespace);
        let ns = namespace.name;
        self.apply(&format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: steady, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 2
  containers:
  - {{name: main, image: {image}, imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: finisher, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  restartPolicy: Never
  containers:
  - {{name: main, image: {image}, imagePullPolicy: IfNotPresent, command: ["sh", "-c", "sleep 30; exit 0"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: late, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 2
  initContainers:
  - {{name: wait, image: {image}, imagePullPolicy: IfNotPresent, command: ["sleep", "{half}"]}}
  containers:
  - {{name: main, image: {image}, imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}}
"#,
            image = self.busybox,
            half = outage.as_secs() / 2
        ));
        let phase = |l: &Value, name: &str| {
            l["items"]
                .as_array()
                .and_then(|i| i.iter().find(|p| p["metadata"]["name"] == name))
                .map(|p| p["status"]["phase"].clone())
        };
        let before = self.wait_json(
            "steady and finisher Running",
            &["get", "pods", "-n", ns],
            90,
            &kubelet,
            |l| {
                phase(l, "steady") == Some("Running".into())
                    && phase(l, "finisher") == Some("Running".into())
            },
        );
        let steady_id = before["items"]
            .as_array()
            .and_then(|i| i.iter().find(|p| p["metadata"]["name"] == "steady"))
            .map(|p| p["status"]["containerStatuses"][0]["containerID"].clone())
            .unwrap_or_default();

        // The API server is away; the finisher exits meanwhile.
        self.script("stop-kube-apiserver.sh");
        std::thread::sleep(outage);
        self.script("start-kube-apiserver.sh");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .try_kubectl(&["get", "--raw", "/readyz"], None)
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the API server did not come back"
            );
            std::thread::sleep(Duration::from_millis(500));
        }

        let after = self.wait_json(
            "statuses after the outage",
            &["get", "pods", "-n", ns],
            90,
            &kubelet,
            |l| {
                phase(l, "steady") == Some("Running".into())
                    && phase(l, "finisher") == Some("Succeeded".into())
                    && phase(l, "late") == Some("Running".into())
            },
        );
        let steady = after["items"]
            .as_array()
            .and_then(|i| i.iter().find(|p| p["metadata"]["name"] == "steady"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            steady["status"]["containerStatuses"][0]["containerID"], steady_id,
            "the steady pod's container was not replaced"
        );
        assert_eq!(steady["status"]["containerStatuses"][0]["restartCount"], 0);
        if outage < Duration::from_secs(90) {
            self.wait_json(
                "the Started event of a container started during the outage",
                &[
                    "get",
                    "events",
                    "-n",
                    ns,
                    "--field-selector",
                    "involvedObject.name=late,reason=Started",
                ],
                30,
                &kubelet,
                |l| {
                    l["items"].as_array().is_some_and(|i| {
                        i.iter()
                            .any(|e| e["involvedObject"]["fieldPath"] == "spec.containers{main}")
                    })
                },
            );
        }
        self.wait_node_ready(&kubelet);

        // The controller-manager's and scheduler's informers can take minutes to catch up
        // after the outage (the ReplicaSet controller then refuses to act on a stale cache);
        // later tests start from fresh ones rather than depend on that recovery.
        for program in ["kube-controller-manager", "kube-scheduler"] {
            self.script(&format!("stop-{program}.sh"));
            self.script(&format!("start-{program}.sh"));
        }
    }

    /// Starts pod `talker` in `namespace` on this node (container `talker` logging
    /// `tick-N` every second) and waits until it runs.
    pub fn run_talker(&self, namespace: &str, kubelet: &Kubelet) {
        self.apply(&format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: talker, namespace: {namespace}}}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: talker
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done"]
"#,
            node = self.node,
            image = self.busybox
        ));
        self.wait_json(
            "talker Running",
            &["get", "pod", "-n", namespace, "talker"],
            90,
            kubelet,
            |p| p["status"]["phase"] == "Running",
        );
    }

    /// A token of ServiceAccount `account` in `namespace` (retried while the account is
    /// being made), as an `Authorization: Bearer` header.
    pub fn bearer_token(&self, namespace: &str, account: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_kubectl(&["create", "token", account, "-n", namespace], None) {
                Ok(token) => break format!("Authorization: Bearer {}", token.trim()),
                Err(e) => {
                    assert!(Instant::now() < deadline, "{e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    /// Deletes a namespace and waits until it is gone (its pods included), while the
    /// kubelet still runs so it can finish them.
    pub fn delete_namespace(&self, namespace: &str) {
        let _ = self.try_kubectl(
            &[
                "delete",
                "namespace",
                namespace,
                "--wait=true",
                "--timeout=120s",
            ],
            None,
        );
    }

    /// Runs one of the control plane's `start-*.sh`/`stop-*.sh` scripts.
    pub fn script(&self, name: &str) {
        let status = Command::new("sh")
            .arg(self.control_plane.join(name))
            .status()
            .expect("run a control plane script");
        assert!(status.success(), "{name} failed");
    }
}

/// A namespace for one test, deleted (pods included) when the test ends, pass or fail,
/// while its kubelet still runs: declare it after the kubelet.
pub struct Namespace<'a> {
    cluster: &'a Cluster,
    pub name: &'static str,
}

impl<'a> Namespace<'a> {
    /// Creates the namespace (after removing a leftover one).
    pub fn create(cluster: &'a Cluster, name: &'static str) -> Self {
        // A leftover's pods may have no kubelet left to finish them (a test that failed
        // with its namespace dropped after its kubelet): the namespace would stay
        // terminating for ever. They are an earlier run's: nothing waits for them.
        let _ = cluster.try_kubectl(
            &[
                "delete",
                "pods",
                "--all",
                "-n",
                name,
                "--force",
                "--grace-period=0",
            ],
            None,
        );
        cluster.delete_namespace(name);
        cluster.kubectl(&["create", "namespace", name]);
        Self { cluster, name }
    }
}

impl Drop for Namespace<'_> {
    fn drop(&mut self) {
        self.cluster.delete_namespace(self.name);
    }
}

/// A running kubelet, stopped with SIGTERM (then SIGKILL) on drop.
pub struct Kubelet {
    pub child: Child,
    pub log: PathBuf,
    /// When it was started: a node status older than this is an earlier kubelet's.
    pub started: std::time::SystemTime,
}

impl Kubelet {
    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the kubelet to exit by itself, up to `secs`; its status, or `None` (it
    /// is killed by drop) when it still runs.
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` passes, up to `secs`; fails naming `what`, with `log()` (the
/// kubelet's log, or what else explains it).
pub fn wait_until(what: &str, secs: u64, log: impl Fn() -> String, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs}s\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The status of a condition of an object (`"True"`, `"False"`).
pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
}

/// `curl` of `url` with `args`: the HTTP status and the body.
pub fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The program the variable `var` names (one `cargo xtask env up --control-plane`
/// builds), or `None` after a visible skip (a failure under `KUBELET_TEST_REQUIRE_ENV=1`).
pub fn env_program(test: &str, var: &str) -> Option<String> {
    let program = std::env::var(var).ok().filter(|p| Path::new(p).is_file());
    if program.is_none() {
        kubelet_test_support::skip(
            test,
            format!("{var} names no program; `cargo xtask env up --control-plane` builds it"),
        );
    }
    program
}

/// A helper process of a test (a device plugin, a CSI driver), killed when dropped.
pub struct Helper(pub Child);

impl Helper {
    /// Starts `command` with its output in `log`.
    pub fn spawn(mut command: Command, log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("helper log");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("helper log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Self(child)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
