//! TLS bootstrapping (`--bootstrap-kubeconfig`, `--cert-dir`) against the real control
//! plane of `cargo xtask env up --control-plane`: a bootstrap token Secret as `kubeadm
//! token create` makes it, the kubelet's CertificateSigningRequest approved and signed by
//! the real kube-controller-manager (kubeadm's RBAC applied by xtask), the written
//! kubeconfig and certificate, the node registered with that identity, the kubeconfig
//! reused on the next start, and a wrong token failing start-up.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Cluster, Kubelet, condition, lock};
use serde_json::Value;

/// What the bootstrap tests ask of the cluster beyond the common scaffolding.
trait Bootstrap {
    fn csrs_of(&self, token: &Token) -> Vec<Value>;
    fn start_bootstrapping_kubelet(&self, dir: &Path, bootstrap: &Path, log_name: &str) -> Kubelet;
    fn write_bootstrap_kubeconfig(&self, path: &Path, token: &str);
}

impl Bootstrap for Cluster {
    /// The CertificateSigningRequests a bootstrap token's user made.
    fn csrs_of(&self, token: &Token) -> Vec<Value> {
        let user = format!("system:bootstrap:{}", token.id);
        self.json(&["get", "csr"])["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|c| c["spec"]["username"] == user.as_str())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts the kubelet with a bootstrap kubeconfig, the kubeconfig to write and the
    /// cert dir, all under `dir`.
    fn start_bootstrapping_kubelet(&self, dir: &Path, bootstrap: &Path, log_name: &str) -> Kubelet {
        let bootstrap = bootstrap.to_string_lossy().into_owned();
        let kubeconfig = dir.join("kubelet.conf").to_string_lossy().into_owned();
        let cert_dir = dir.join("pki").to_string_lossy().into_owned();
        self.spawn_kubelet_logging_to(
            dir,
            log_name,
            &[
                "--bootstrap-kubeconfig",
                &bootstrap,
                "--kubeconfig",
                &kubeconfig,
                "--cert-dir",
                &cert_dir,
            ],
            &[],
        )
    }

    /// Writes a bootstrap kubeconfig with the token, as kubeadm's `bootstrap-kubelet.conf`.
    fn write_bootstrap_kubeconfig(&self, path: &Path, token: &str) {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    \
                 server: {}\n    certificate-authority: {}\nusers:\n- name: tls-bootstrap-token-user\n  \
                 user:\n    token: {token}\ncontexts:\n- name: tls-bootstrap-token-user@kubernetes\n  \
                 context:\n    cluster: kubernetes\n    user: tls-bootstrap-token-user\n\
                 current-context: tls-bootstrap-token-user@kubernetes\n",
                self.apiserver,
                self.ca_file.display()
            ),
        )
        .expect("bootstrap kubeconfig");
    }
}

/// Waits until `check` passes on what `probe` returns, up to `secs`.
fn wait<T: std::fmt::Debug>(
    what: &str,
    secs: u64,
    kubelet: &Kubelet,
    probe: impl Fn() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let value = probe();
        if check(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {secs}s; last: {value:#?}\nkubelet log:\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A bootstrap token Secret in kube-system, as `kubeadm token create` makes it; deleted
/// with the CertificateSigningRequests its user made when the test ends.
struct Token<'a> {
    cluster: &'a Cluster,
    id: String,
    secret: String,
}

impl<'a> Token<'a> {
    fn create(cluster: &'a Cluster) -> Self {
        // [a-z0-9]{6}.[a-z0-9]{16}, from the clock and the pid: unique enough per run.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
            ^ (u128::from(std::process::id()) << 64);
        let chars = |mut n: u128, len: usize| {
            let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
            (0..len)
                .map(|_| {
                    let c = alphabet[(n % 36) as usize] as char;
                    n = n / 36 + 7919;
                    c
                })
                .collect::<String>()
        };
        let token = Self {
            cluster,
            id: chars(seed, 6),
            secret: chars(seed.rotate_left(37), 16),
        };
        let manifest = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-{id}\n  \
             namespace: kube-system\ntype: bootstrap.kubernetes.io/token\nstringData:\n  \
             description: kubelet-rs bootstrap test\n  token-id: {id}\n  token-secret: {secret}\n  \
             usage-bootstrap-authentication: \"true\"\n  usage-bootstrap-signing: \"true\"\n  \
             auth-extra-groups: system:bootstrappers:kubeadm:default-node-token\n",
            id = token.id,
            secret = token.secret
        );
        cluster
            .try_kubectl(&["apply", "-f", "-"], Some(&manifest))
            .unwrap_or_else(|e| panic!("{e}"));
        token
    }

    fn value(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl Drop for Token<'_> {
    fn drop(&mut self) {
        for csr in self.cluster.csrs_of(self) {
            if let Some(name) = csr["metadata"]["name"].as_str() {
                let _ = self.cluster.try_kubectl(&["delete", "csr", name], None);
            }
        }
        let secret = format!("bootstrap-token-{}", self.id);
        let _ = self.cluster.try_kubectl(
            &[
                "delete",
                "secret",
                "-n",
                "kube-system",
                &secret,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

fn issued(csr: &Value) -> bool {
    condition(csr, "Approved") == Some("True")
        && csr["status"]["certificate"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
}

#[test]
fn kubelet_bootstraps_its_client_certificate_with_a_token() {
    let Some((_env, c)) =
        Cluster::from_env("kubelet_bootstraps_its_client_certificate_with_a_token")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let token = Token::create(&c);
    let bootstrap = dir.path().join("bootstrap-kubelet.conf");
    c.write_bootstrap_kubeconfig(&bootstrap, &token.value());
    let kubeconfig = dir.path().join("kubelet.conf");
    let current = dir.path().join("pki/kubelet-client-current.pem");
    assert!(!kubeconfig.exists());
    // A fresh registration, so that the Node is created with the bootstrapped identity.
    let _ = c.try_kubectl(&["delete", "node", &c.node, "--wait=true"], None);

    let kubelet = c.start_bootstrapping_kubelet(dir.path(), &bootstrap, "kubelet.log");
    // The request: made by the token's user, for the node, approved and signed by the
    // controller-manager.
    let csrs = wait(
        "CSR approved and issued",
        60,
        &kubelet,
        || c.csrs_of(&token),
        |csrs| csrs.len() == 1 && issued(&csrs[0]),
    );
    let csr = &csrs[0];
    assert!(
        csr["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("node-csr-")),
        "{csr:#}"
    );
    assert_eq!(
        csr["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert_eq!(
        csr["spec"]["usages"],
        serde_json::json!(["digital signature", "client auth"])
    );
    let groups = csr["spec"]["groups"].to_string();
    assert!(
        groups.contains("system:bootstrappers:kubeadm:default-node-token"),
        "{groups}"
    );
    let approved = csr["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|x| x["type"] == "Approved"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(approved["reason"], "AutoApproved", "{csr:#}");

    // The files: the kubeconfig and the current pair, private.
    wait(
        "kubeconfig written",
        30,
        &kubelet,
        || kubeconfig.exists() && current.exists(),
        |written| *written,
    );
    use std::os::unix::fs::PermissionsExt;
    for file in [&kubeconfig, &current] {
        let mode = std::fs::metadata(file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    let target = std::fs::read_link(&current).expect("kubelet-client-current.pem is a symlink");
    assert!(
        target
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("kubelet-client-20") && n.ends_with(".pem")),
        "{}",
        target.display()
    );
    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    let pair = current.to_string_lossy();
    assert!(
        text.contains(&format!("client-certificate: {pair}"))
            && text.contains(&format!("client-key: {pair}"))
            && text.contains(&format!("server: {}", c.apiserver))
            && text.contains(&format!("certificate-authority: {}", c.ca_file.display())),
        "{text}"
    );
    assert!(!dir.path().join("pki/kubelet-client.key.tmp").exists());

    // The node registers and is Ready, as system:node:<node> in system:nodes.
    wait(
        "node Ready",
        60,
        &kubelet,
        || c.json(&["get", "node", &c.node]),
        |n| condition(n, "Ready") == Some("True"),
    );
    let kubeconfig_arg = kubeconfig.to_string_lossy().into_owned();
    let whoami: Value = serde_json::from_str(
        &c.try_kubectl(
            &[
                "--kubeconfig",
                &kubeconfig_arg,
                "auth",
                "whoami",
                "-o",
                "json",
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}")),
    )
    .expect("whoami json");
    let user = &whoami["status"]["userInfo"];
    assert_eq!(user["username"], format!("system:node:{}", c.node).as_str());
    assert!(
        user["groups"].to_string().contains("\"system:nodes\""),
        "{user}"
    );
    let log = kubelet.log();
    assert!(log.contains("client certificate issued"), "{log}");
    drop(kubelet);

    // The second start keeps the kubeconfig and its certificate: no new request. Its
    // Lease renewals show it talks to the API server as the node.
    let lease_args = ["get", "lease", "-n", "kube-node-lease", c.node.as_str()];
    let renewed = c.json(&lease_args)["spec"]["renewTime"].clone();
    let kubelet = c.start_bootstrapping_kubelet(dir.path(), &bootstrap, "kubelet-2.log");
    wait(
        "lease renewed by the second kubelet",
        60,
        &kubelet,
        || c.json(&lease_args)["spec"]["renewTime"].clone(),
        |t| t.is_string() && *t != renewed,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.csrs_of(&token).len(), 1, "a second CSR was made");
    assert_eq!(
        std::fs::read_link(&current).expect("symlink"),
        target,
        "the pair was replaced"
    );
    let log = kubelet.log();
    assert!(!log.contains("client certificate issued"), "{log}");
    assert!(kubelet_still_runs(kubelet), "the second kubelet stopped");
}

/// Whether the kubelet still runs (then it is stopped).
fn kubelet_still_runs(mut kubelet: Kubelet) -> bool {
    matches!(kubelet.child.try_wait(), Ok(None))
}

#[test]
fn a_wrong_bootstrap_token_fails_start_up() {
    let Some((_env, c)) = Cluster::from_env("a_wrong_bootstrap_token_fails_start_up") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let token = Token::create(&c);
    let bootstrap = dir.path().join("bootstrap-kubelet.conf");
    // The right token id with the wrong secret.
    c.write_bootstrap_kubeconfig(&bootstrap, &format!("{}.0123456789abcdef", token.id));

    let mut kubelet = c.start_bootstrapping_kubelet(dir.path(), &bootstrap, "kubelet.log");
    let status = kubelet.wait_exit(60);
    let log = kubelet.log();
    let status = status.unwrap_or_else(|| panic!("the kubelet still runs after 60s:\n{log}"));
    assert!(!status.success(), "{status}\n{log}");
    assert!(
        log.contains("TLS bootstrapping with --bootstrap-kubeconfig")
            && log.contains("certificate signing request node-csr-")
            && log.contains("Unauthorized"),
        "{log}"
    );
    assert!(!dir.path().join("kubelet.conf").exists());
    assert!(c.csrs_of(&token).is_empty());
}
