//! Test scaffolding shared by the integration tests that run the kubelet against the
//! real control plane (`cargo xtask env up --control-plane`): the cluster's variables,
//! kubectl, a kubelet process with a KubeletConfiguration, namespaces removed at the end.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kubelet_cri_client::TestEnv;
use serde_json::Value;

/// One kubelet at a time: all tests share the node name and containerd.
pub static NODE: Mutex<()> = Mutex::new(());

/// The kubelet API as the test reaches it (the node's InternalIP).
pub const API: &str = "https://10.88.0.1:10250";

pub struct Cluster {
    pub kubectl: String,
    pub node_kubeconfig: String,
    pub node: String,
    pub ca_file: PathBuf,
    pub busybox: String,
}

impl Cluster {
    pub fn from_env(test: &str) -> Option<(TestEnv, Self)> {
        let env = TestEnv::from_env(test)?;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let names = [
            "KUBELET_TEST_KUBECONFIG",
            "KUBELET_TEST_NODE_KUBECONFIG",
            "KUBELET_TEST_KUBECTL",
            "KUBELET_TEST_NODE_NAME",
            "KUBELET_TEST_CA_FILE",
        ];
        let missing: Vec<_> = names.iter().filter(|n| var(n).is_none()).collect();
        if !missing.is_empty() {
            let reason = format!(
                "{test}: SKIPPED: no control plane ({missing:?} unset); run `cargo xtask test` \
                 or `eval \"$(cargo xtask env up --control-plane)\"` first"
            );
            assert!(
                std::env::var("KUBELET_TEST_REQUIRE_ENV").as_deref() != Ok("1"),
                "{reason}"
            );
            eprintln!("{reason}");
            return None;
        }
        let get = |name: &str| var(name).unwrap_or_default();
        let cluster = Self {
            kubectl: get("KUBELET_TEST_KUBECTL"),
            node_kubeconfig: get("KUBELET_TEST_NODE_KUBECONFIG"),
            node: get("KUBELET_TEST_NODE_NAME"),
            ca_file: PathBuf::from(get("KUBELET_TEST_CA_FILE")),
            busybox: env.busybox.clone(),
        };
        Some((env, cluster))
    }

    pub fn kubectl_command(&self) -> Command {
        let mut command = Command::new(&self.kubectl);
        // kubectl reads the admin kubeconfig from KUBECONFIG.
        command.env(
            "KUBECONFIG",
            std::env::var("KUBELET_TEST_KUBECONFIG").unwrap_or_default(),
        );
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

    pub fn kubectl(&self, args: &[&str]) -> String {
        self.try_kubectl(args, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn apply(&self, yaml: &str) {
        self.try_kubectl(&["apply", "-f", "-"], Some(yaml))
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        match self.try_kubectl(&all, None) {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Starts the kubelet with the API server's authentication and authorization: the
    /// cluster CA's client certificates, TokenReview, SubjectAccessReview.
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
        let config = root.join("kubelet.yaml");
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
        let log = root.join("kubelet.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kubelet"))
            .arg("--config")
            .arg(&config)
            .args(["--kubeconfig", &self.node_kubeconfig])
            .args(["--hostname-override", &self.node, "--node-ip", "10.88.0.1"])
            .arg("--root-dir")
            .arg(root.join("root"))
            .args(["--node-status-update-frequency", "2s"])
            .env("RUST_LOG", "info,kube_client=warn,kube_runtime=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the kubelet");
        Kubelet { child, log }
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
}

/// A namespace for one test, deleted (pods included) when the test ends, pass or fail,
/// while its kubelet still runs: declare it after the kubelet.
pub struct Namespace<'a> {
    cluster: &'a Cluster,
    pub name: &'static str,
}

impl<'a> Namespace<'a> {
    pub fn create(cluster: &'a Cluster, name: &'static str) -> Self {
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

pub struct Kubelet {
    child: Child,
    log: PathBuf,
}

impl Kubelet {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
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

pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
}

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    NODE.lock().unwrap_or_else(|p| p.into_inner())
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
