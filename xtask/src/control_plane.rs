//! `env up --control-plane`: a loopback Kubernetes control plane for integration tests:
//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from upstream's
//! Go modules ([`crate::gobuild`]), with client-certificate authentication ([`crate::pki`])
//! and the Node and RBAC authorizers, as on a real cluster. Nodes may also join with a
//! bootstrap token (TLS bootstrapping): the controller-manager signs and approves node
//! client certificates, with kubeadm's RBAC for it applied at `up`.
//!
//! The apiserver listens on the CNI bridge's own address (10.88.0.1), not on 127.0.0.1,
//! so that pods reach it as well as the host. Each program has, next to its pid file, a
//! `start-<program>.sh` and a `stop-<program>.sh`, so that a test can stop the apiserver
//! and start it again exactly as xtask does.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::daemon::{Daemon, DaemonState};
use crate::gobuild;
use crate::layout::{APISERVER_PORT, BRIDGE, BRIDGE_ADDR, BRIDGE_ADDR_CIDR, CLUSTER_NAME, Layout};
use crate::pki::Pki;
use crate::progress;
use crate::util;

/// The service network (the `kubernetes` Service gets its first address, 10.96.0.1).
const SERVICE_CIDR: &str = "10.96.0.0/16";
/// etcd's client address.
const ETCD_CLIENT: &str = "127.0.0.1:2379";
/// etcd's peer address.
const ETCD_PEER: &str = "127.0.0.1:2380";
/// The controller-manager's secure port (its default) on 127.0.0.1.
const KCM_PORT: u16 = 10257;
/// The scheduler's secure port (its default) on 127.0.0.1.
const SCHEDULER_PORT: u16 = 10259;
/// How long a program may take to become healthy after its start.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the programs get to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One program of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Component {
    /// etcd.
    Etcd,
    /// kube-apiserver.
    Apiserver,
    /// kube-controller-manager.
    ControllerManager,
    /// kube-scheduler.
    Scheduler,
    /// metrics-server (the `metrics.k8s.io` aggregated API behind `kubectl top`), run
    /// on the host and registered through a selector-less Service.
    MetricsServer,
}

/// The programs in the order they start (and the reverse of the order they stop).
const COMPONENTS: [Component; 5] = [
    Component::Etcd,
    Component::Apiserver,
    Component::ControllerManager,
    Component::Scheduler,
    Component::MetricsServer,
];

/// metrics-server's secure port on the bridge address.
const METRICS_SERVER_PORT: u16 = 4443;

impl Component {
    /// The program's name (its binary in the cache).
    fn program(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::Apiserver => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
            Component::MetricsServer => "metrics-server",
        }
    }

    /// The address it serves on, to tell when something else holds it.
    fn addr(self) -> String {
        match self {
            Component::Etcd => ETCD_CLIENT.to_string(),
            Component::Apiserver => format!("{BRIDGE_ADDR}:{APISERVER_PORT}"),
            Component::ControllerManager => format!("127.0.0.1:{KCM_PORT}"),
            Component::Scheduler => format!("127.0.0.1:{SCHEDULER_PORT}"),
            Component::MetricsServer => format!("{BRIDGE_ADDR}:{METRICS_SERVER_PORT}"),
        }
    }

    /// Its command-line flags.
    fn args(self, cp: &ControlPlane) -> Vec<String> {
        let p = |path: PathBuf| path.to_string_lossy().into_owned();
        let pki = &cp.pki;
        let flags: Vec<(&str, String)> = match self {
            Component::Etcd => vec![
                ("name", CLUSTER_NAME.into()),
                ("data-dir", p(cp.l.etcd_data_dir())),
                ("listen-client-urls", format!("http://{ETCD_CLIENT}")),
                ("advertise-client-urls", format!("http://{ETCD_CLIENT}")),
                ("listen-peer-urls", format!("http://{ETCD_PEER}")),
                ("initial-advertise-peer-urls", format!("http://{ETCD_PEER}")),
                (
                    "initial-cluster",
                    format!("{CLUSTER_NAME}=http://{ETCD_PEER}"),
                ),
                // The data is thrown away by `env down`; fsync only slows tests down.
                ("unsafe-no-fsync", "true".into()),
            ],
            Component::Apiserver => vec![
                ("bind-address", BRIDGE_ADDR.into()),
                ("advertise-address", BRIDGE_ADDR.into()),
                ("secure-port", APISERVER_PORT.to_string()),
                ("etcd-servers", format!("http://{ETCD_CLIENT}")),
                ("authorization-mode", "Node,RBAC".into()),
                ("enable-admission-plugins", "NodeRestriction".into()),
                ("client-ca-file", p(pki.ca_crt())),
                ("tls-cert-file", p(pki.crt("apiserver"))),
                ("tls-private-key-file", p(pki.key("apiserver"))),
                (
                    "kubelet-client-certificate",
                    p(pki.crt("apiserver-kubelet-client")),
                ),
                ("kubelet-client-key", p(pki.key("apiserver-kubelet-client"))),
                (
                    "service-account-issuer",
                    "https://kubernetes.default.svc.cluster.local".into(),
                ),
                ("service-account-key-file", p(pki.sa_pub())),
                ("service-account-signing-key-file", p(pki.sa_key())),
                ("service-cluster-ip-range", SERVICE_CIDR.into()),
                ("allow-privileged", "true".into()),
                ("enable-bootstrap-token-auth", "true".into()),
                // On SIGTERM, wait 2 s instead of 60 for the open watches (which get a
                // GOAWAY) before exiting: tests stop and start the apiserver.
                ("shutdown-send-retry-after", "true".into()),
                // As kubeadm: the node's hostname may resolve to loopback, which the
                // node proxy refuses.
                (
                    "kubelet-preferred-address-types",
                    "InternalIP,ExternalIP,Hostname".into(),
                ),
                // The aggregation layer, for metrics-server (`kubectl top`): the
                // apiserver proxies to it with the front-proxy client certificate, to
                // the Service's endpoint directly (there is no kube-proxy).
                ("requestheader-client-ca-file", p(pki.ca_crt())),
                ("requestheader-allowed-names", "front-proxy-client".into()),
                ("requestheader-username-headers", "X-Remote-User".into()),
                ("requestheader-group-headers", "X-Remote-Group".into()),
                (
                    "requestheader-extra-headers-prefix",
                    "X-Remote-Extra-".into(),
                ),
                ("proxy-client-cert-file", p(pki.crt("front-proxy-client"))),
                ("proxy-client-key-file", p(pki.key("front-proxy-client"))),
                ("enable-aggregator-routing", "true".into()),
            ],
            Component::ControllerManager => {
                let kc = p(cp.kubeconfig("controller-manager"));
                vec![
                    ("kubeconfig", kc.clone()),
                    ("authentication-kubeconfig", kc.clone()),
                    ("authorization-kubeconfig", kc),
                    ("service-account-private-key-file", p(pki.sa_key())),
                    ("root-ca-file", p(pki.ca_crt())),
                    ("cluster-signing-cert-file", p(pki.ca_crt())),
                    ("cluster-signing-key-file", p(pki.ca_key())),
                    ("use-service-account-credentials", "true".into()),
                    ("controllers", "*,bootstrapsigner,tokencleaner".into()),
                    ("cluster-name", CLUSTER_NAME.into()),
                    ("leader-elect", "false".into()),
                    ("bind-address", "127.0.0.1".into()),
                ]
            }
            Component::Scheduler => {
                let kc = p(cp.kubeconfig("scheduler"));
                vec![
                    ("kubeconfig", kc.clone()),
                    ("authentication-kubeconfig", kc.clone()),
                    ("authorization-kubeconfig", kc),
                    ("leader-elect", "false".into()),
                    ("bind-address", "127.0.0.1".into()),
                ]
            }
            Component::MetricsServer => {
                let kc = p(cp.kubeconfig("metrics-server"));
                vec![
                    ("kubeconfig", kc.clone()),
                    ("authentication-kubeconfig", kc.clone()),
                    ("authorization-kubeconfig", kc),
                    ("bind-address", BRIDGE_ADDR.into()),
                    ("secure-port", METRICS_SERVER_PORT.to_string()),
                    ("cert-dir", p(cp.dir().join("metrics-server-certs"))),
                    ("kubelet-preferred-address-types", "InternalIP".into()),
                    // The kubelet's serving certificate is self-signed, as on most
                    // clusters without serving-certificate rotation.
                    ("kubelet-insecure-tls", "true".into()),
                    // Its smallest resolution; scrapes must finish within it.
                    ("metric-resolution", "10s".into()),
                    ("kubelet-request-timeout", "5s".into()),
                ]
            }
        };
        flags
            .into_iter()
            .map(|(k, v)| format!("--{k}={v}"))
            .collect()
    }
}

/// The control plane of one environment.
pub struct ControlPlane {
    /// The environment.
    l: Layout,
    /// Its certificates.
    pki: Pki,
}

impl ControlPlane {
    /// The control plane of the environment, for the node named after this machine.
    pub fn new(l: &Layout) -> Result<Self> {
        Ok(ControlPlane {
            l: l.clone(),
            pki: Pki::new(l, &node_name()?),
        })
    }

    /// The directory of pid files, scripts, kubeconfigs and etcd's data.
    fn dir(&self) -> PathBuf {
        self.l.control_plane_dir()
    }

    /// The kubeconfig of one user (`admin`, `node`, `controller-manager`, `scheduler`).
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir().join(format!("{user}.kubeconfig"))
    }

    /// The apiserver's URL.
    pub fn server() -> String {
        format!("https://{BRIDGE_ADDR}:{APISERVER_PORT}")
    }

    /// A program as a [`Daemon`].
    fn daemon(&self, c: Component) -> Daemon {
        Daemon {
            pidfile: self.dir().join(format!("{}.pid", c.program())),
            log: self.l.logs_dir().join(format!("{}.log", c.program())),
            program: gobuild::binary(&self.l, c.program())
                .to_string_lossy()
                .into_owned(),
            args: c.args(self),
            marker: self.dir().to_string_lossy().into_owned(),
        }
    }

    /// The script that starts a program as xtask does.
    fn start_script(&self, c: Component) -> PathBuf {
        self.dir().join(format!("start-{}.sh", c.program()))
    }

    /// The script that stops a program.
    fn stop_script(&self, c: Component) -> PathBuf {
        self.dir().join(format!("stop-{}.sh", c.program()))
    }

    /// Tells whether `up` ran since the last `down` (it writes the scripts).
    pub fn started(&self) -> bool {
        self.start_script(Component::Etcd).exists()
    }

    /// kubectl with the admin kubeconfig.
    fn kubectl(&self, args: &[&str]) -> std::process::Command {
        let mut c = util::cmd(&gobuild::binary(&self.l, "kubectl").to_string_lossy());
        c.arg("--kubeconfig")
            .arg(self.kubeconfig("admin"))
            .arg("--request-timeout=5s")
            .args(args);
        c
    }

    /// Writes a kubeconfig with the CA, the server and a user's certificate embedded.
    fn write_kubeconfig(&self, user: &str, cert: &str) -> Result<bool> {
        let b64 = |p: PathBuf| -> Result<String> {
            Ok(util::base64(
                &fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?,
            ))
        };
        let context = format!("{user}@{CLUSTER_NAME}");
        let text = format!(
            "# Written by `cargo xtask env up --control-plane`.\n\
             apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: {CLUSTER_NAME}\n  cluster:\n    server: {server}\n    \
             certificate-authority-data: {ca}\n\
             users:\n\
             - name: {user}\n  user:\n    client-certificate-data: {crt}\n    \
             client-key-data: {key}\n\
             contexts:\n\
             - name: {context}\n  context:\n    cluster: {CLUSTER_NAME}\n    user: {user}\n\
             current-context: {context}\n",
            server = Self::server(),
            ca = b64(self.pki.ca_crt())?,
            crt = b64(self.pki.crt(cert))?,
            key = b64(self.pki.key(cert))?,
        );
        let path = self.kubeconfig(user);
        let changed = util::write_if_changed(&path, text.as_bytes())?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        Ok(changed)
    }

    /// Brings the control plane up (idempotent) and returns the variables for the tests.
    pub fn up(&self) -> Result<Vec<(String, String)>> {
        gobuild::ensure(&self.l)?;
        gobuild::ensure_metrics_server(&self.l)?;
        gobuild::ensure_sample_device_plugin(&self.l)?;
        gobuild::ensure_csi_mock_driver(&self.l)?;
        let start = Instant::now();
        util::mkdir(&self.dir())?;
        let mut changed = self.pki.ensure()?;
        ensure_bridge()?;
        for (user, cert) in [
            ("admin", "admin"),
            ("node", "node"),
            ("controller-manager", "controller-manager"),
            ("scheduler", "scheduler"),
            ("metrics-server", "metrics-server"),
        ] {
            changed |= self.write_kubeconfig(user, cert)?;
        }
        for c in COMPONENTS {
            if c == Component::MetricsServer {
                // Its RBAC and APIService must exist before it serves.
                self.register_metrics_server()?;
                self.register_node_bootstrap()?;
            }
            // A program that read a certificate that changed since must read it again.
            self.ensure_running(c, changed)?;
        }
        self.wait_default_service_account()?;
        progress!(
            "control plane up in {:.1}s: {} (node {})",
            start.elapsed().as_secs_f64(),
            Self::server(),
            self.pki.node_name
        );
        Ok(self.variables())
    }

    /// The variables that tell tests where the control plane is.
    pub fn variables(&self) -> Vec<(String, String)> {
        let p = |path: PathBuf| path.to_string_lossy().into_owned();
        let admin = p(self.kubeconfig("admin"));
        let node = p(self.kubeconfig("node"));
        [
            ("KUBECONFIG", admin.clone()),
            ("NODE_KUBECONFIG", node.clone()),
            ("KUBELET_TEST_KUBECONFIG", admin),
            ("KUBELET_TEST_NODE_KUBECONFIG", node),
            ("KUBELET_TEST_NODE_NAME", self.pki.node_name.clone()),
            (
                "KUBELET_TEST_KUBECTL",
                p(gobuild::binary(&self.l, "kubectl")),
            ),
            (
                "KUBELET_TEST_UPSTREAM_KUBELET",
                p(gobuild::binary(&self.l, "kubelet")),
            ),
            (
                "KUBELET_TEST_SAMPLE_DEVICE_PLUGIN",
                p(gobuild::binary(&self.l, "sample-device-plugin")),
            ),
            (
                "KUBELET_TEST_CSI_MOCK_DRIVER",
                p(gobuild::binary(&self.l, "csi-mock-driver")),
            ),
            ("KUBELET_TEST_CA_FILE", p(self.pki.ca_crt())),
            ("KUBELET_TEST_CONTROL_PLANE_DIR", p(self.dir())),
            ("KUBELET_TEST_APISERVER", Self::server()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Makes sure one program runs and is healthy: keeps it when it does, restarts it when
    /// its command line or its certificates changed, starts it otherwise.
    fn ensure_running(&self, c: Component, certs_changed: bool) -> Result<()> {
        let d = self.daemon(c);
        let script = self.start_script(c);
        let mut changed = write_script(&script, &d.start_script())?;
        write_script(&self.stop_script(c), &d.stop_script(STOP_GRACE))?;
        changed |= certs_changed && c != Component::Etcd;
        if let DaemonState::Running(pid) = d.state() {
            if !changed {
                self.wait_healthy(c, &d, pid)?;
                progress!("{} already running (pid {pid})", c.program());
                return Ok(());
            }
            progress!(
                "{}: command line or certificates changed: restarting it (pid {pid})",
                c.program()
            );
            d.stop(STOP_GRACE);
        }
        if let Ok(sock) = c.addr().parse::<SocketAddr>()
            && TcpStream::connect_timeout(&sock, Duration::from_secs(1)).is_ok()
        {
            bail!(
                "something else already listens on {sock}: not the {} started by xtask (no \
                 matching pid file {}); find it with `ss -tlnp | grep {}` and stop it",
                c.program(),
                d.pidfile.display(),
                sock.port()
            );
        }
        if c == Component::Etcd {
            util::mkdir(&self.l.etcd_data_dir())?;
            fs::set_permissions(self.l.etcd_data_dir(), fs::Permissions::from_mode(0o700))?;
        }
        progress!("starting {} (log: {})", c.program(), d.log.display());
        let started = Instant::now();
        util::run(util::cmd("sh").arg(&script))?;
        // The script may exit before its child has exec'd the program; until then the
        // child's command line is the shell's or setsid's, or empty during the exec.
        util::wait_until(Duration::from_secs(5), || {
            matches!(d.state(), DaemonState::Running(_) | DaemonState::Dead(_))
        });
        let pid = match d.state() {
            DaemonState::Running(pid) => pid,
            state => bail!(
                "{} did not start ({state}); last lines of {}:\n{}",
                c.program(),
                d.log.display(),
                util::tail(&d.log, 30)
            ),
        };
        self.wait_healthy(c, &d, pid)?;
        progress!(
            "{} is up (pid {pid}, {:.1}s)",
            c.program(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Tells whether a program answers its health check.
    fn healthy(&self, c: Component) -> bool {
        match c {
            Component::Etcd => util::http_request(ETCD_CLIENT, "GET", "/health", &[])
                .is_ok_and(|r| r.status == 200),
            Component::Apiserver => says_ok(&mut self.kubectl(&["get", "--raw", "/readyz"])),
            // Their /healthz needs no credentials (--authorization-always-allow-paths).
            Component::ControllerManager | Component::Scheduler => {
                says_ok(util::cmd("curl").args([
                    "-sk",
                    "--max-time",
                    "3",
                    &format!("https://{}/healthz", c.addr()),
                ]))
            }
            // Its /livez needs no credentials; /readyz waits for a first scrape.
            Component::MetricsServer => says_ok(util::cmd("curl").args([
                "-sk",
                "--max-time",
                "3",
                &format!("https://{}/livez", c.addr()),
            ])),
        }
    }

    /// Waits until a program is healthy; fails with its log when it exits or takes too long.
    fn wait_healthy(&self, c: Component, d: &Daemon, pid: u32) -> Result<()> {
        let ok = util::wait_until(START_TIMEOUT, || {
            !util::process_alive(pid) || self.healthy(c)
        });
        if ok && util::process_alive(pid) {
            return Ok(());
        }
        bail!(
            "{} (pid {pid}) {} within {}s; last lines of {}:\n{}",
            c.program(),
            if util::process_alive(pid) {
                "did not become healthy"
            } else {
                "exited"
            },
            START_TIMEOUT.as_secs(),
            d.log.display(),
            util::tail(&d.log, 30)
        )
    }

    /// Registers metrics-server as upstream's manifests do (its RBAC, the
    /// `v1beta1.metrics.k8s.io` APIService), with a Service without selector whose
    /// endpoint is the host process on the bridge address.
    fn register_metrics_server(&self) -> Result<()> {
        self.apply("metrics-server", &metrics_server_manifest())
    }

    /// Lets nodes join with a bootstrap token as kubeadm does (`kubeadm init` phase
    /// `bootstrap-token`): its ClusterRoleBindings let the `system:bootstrappers` group
    /// create CertificateSigningRequests and have their node client certificates
    /// approved automatically, and nodes (`system:nodes`) renew theirs. The
    /// controller-manager's csrsigning controller signs them with the cluster CA
    /// (`--cluster-signing-cert-file`).
    fn register_node_bootstrap(&self) -> Result<()> {
        self.apply("node-bootstrap", NODE_BOOTSTRAP_MANIFEST)
    }

    /// Writes a manifest as `<name>.yaml` in the control plane's directory and applies it
    /// with kubectl, retrying for 30 s while the apiserver settles.
    fn apply(&self, name: &str, manifest: &str) -> Result<()> {
        let path = self.dir().join(format!("{name}.yaml"));
        fs::write(&path, manifest)?;
        let ok = util::wait_until(Duration::from_secs(30), || {
            util::succeeds(
                &mut self.kubectl(&["apply", "-f", &path.to_string_lossy()]),
                Duration::from_secs(15),
            )
        });
        if !ok {
            let out =
                match util::output(&mut self.kubectl(&["apply", "-f", &path.to_string_lossy()])) {
                    Ok(out) => out,
                    Err(e) => format!("{e:#}"),
                };
            bail!("applying {name} ({}) failed: {out}", path.display());
        }
        Ok(())
    }

    /// Waits until the controller-manager made the `default` ServiceAccount of namespace
    /// default: pods cannot be created before it exists.
    fn wait_default_service_account(&self) -> Result<()> {
        let ok = util::wait_until(START_TIMEOUT, || {
            util::succeeds(
                &mut self.kubectl(&["-n", "default", "get", "serviceaccount", "default"]),
                Duration::from_secs(10),
            )
        });
        if !ok {
            bail!(
                "the default ServiceAccount did not appear within {}s; see {}",
                START_TIMEOUT.as_secs(),
                self.daemon(Component::ControllerManager).log.display()
            );
        }
        Ok(())
    }

    /// Stops the programs and removes their state (etcd's data, pid files, scripts and
    /// kubeconfigs); keeps the PKI and the binary cache.
    pub fn down(&self) -> Result<()> {
        for c in COMPONENTS.iter().rev() {
            let d = self.daemon(*c);
            match d.state() {
                DaemonState::Running(pid) => {
                    progress!("stopping {} (pid {pid})", c.program());
                    d.stop(STOP_GRACE);
                }
                DaemonState::NotOurs(pid) => {
                    progress!(
                        "{}: pid {pid} of {} is another program: leaving it",
                        c.program(),
                        d.pidfile.display()
                    );
                    let _ = fs::remove_file(&d.pidfile);
                }
                DaemonState::Dead(_) | DaemonState::NoPidfile => {
                    let _ = fs::remove_file(&d.pidfile);
                }
            }
        }
        let dir = self.dir();
        let Ok(rd) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for e in rd.flatten() {
            let path = e.path();
            if path == self.pki.dir {
                continue;
            }
            let result = if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            result.with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }

    /// Reports each program through `line(name, ok, detail)`; says so in one line, without
    /// counting it as a failure, when the control plane was not started.
    pub fn status(&self, mut line: impl FnMut(&str, bool, String)) {
        if !self.started() {
            println!(
                "{:<25} not started (`cargo xtask env up --control-plane` starts it)",
                "control plane:"
            );
            return;
        }
        for c in COMPONENTS {
            let d = self.daemon(c);
            match d.state() {
                DaemonState::Running(pid) => {
                    if self.healthy(c) {
                        line(
                            c.program(),
                            true,
                            format!("pid {pid}, {} healthy", c.addr()),
                        );
                    } else {
                        line(
                            c.program(),
                            false,
                            format!("pid {pid} runs but {} is not healthy", c.addr()),
                        );
                    }
                }
                state => line(c.program(), false, state.to_string()),
            }
        }
    }
}

/// Tells whether a health check command succeeds and prints `ok`.
fn says_ok(c: &mut std::process::Command) -> bool {
    util::output_timeout(c, Duration::from_secs(10))
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok")
}

/// Writes an executable script; returns true when its content changed.
fn write_script(path: &Path, text: &str) -> Result<bool> {
    let changed = util::write_if_changed(path, text.as_bytes())?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(changed)
}

/// The node's name: the host name, lower-cased, as our kubelet and upstream's choose it.
pub fn node_name() -> Result<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the host name from /proc/sys/kernel/hostname")?;
    let name = name.trim().to_lowercase();
    if name.is_empty() {
        bail!("the host name is empty");
    }
    Ok(name)
}

/// Creates the CNI bridge with the pod network's gateway address, up, unless it exists:
/// the apiserver binds that address before any pod made the bridge. CNI's bridge plugin
/// takes an existing bridge as it is when it already holds the gateway address.
fn ensure_bridge() -> Result<()> {
    if !crate::cni::link_exists(BRIDGE) {
        util::run(util::cmd("ip").args(["link", "add", "name", BRIDGE, "type", "bridge"]))?;
        progress!("created bridge {BRIDGE}");
    }
    let addrs = util::output(util::cmd("ip").args(["-4", "-o", "addr", "show", "dev", BRIDGE]))?;
    let has_addr = addrs
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "inet" && w[1] == BRIDGE_ADDR_CIDR);
    if !has_addr {
        util::run(util::cmd("ip").args(["addr", "add", BRIDGE_ADDR_CIDR, "dev", BRIDGE]))?;
    }
    util::run(util::cmd("ip").args(["link", "set", BRIDGE, "up"]))
}

/// kubeadm's RBAC for TLS bootstrapping (`kubeadm init` phase `bootstrap-token`, names as
/// kubeadm's).
const NODE_BOOTSTRAP_MANIFEST: &str = r#"# Written by `cargo xtask env up --control-plane`.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubeadm:kubelet-bootstrap
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node-bootstrapper}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:bootstrappers}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubeadm:node-autoapprove-bootstrap
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:certificates.k8s.io:certificatesigningrequests:nodeclient
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:bootstrappers}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubeadm:node-autoapprove-certificate-rotation
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:certificates.k8s.io:certificatesigningrequests:selfnodeclient
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:nodes}
"#;

/// metrics-server's registration: upstream's RBAC (v0.8.0 `components.yaml`) bound to the
/// user of its client certificate, a selector-less Service with the host as endpoint, and
/// the APIService.
fn metrics_server_manifest() -> String {
    format!(
        r#"# Written by `cargo xtask env up --control-plane`.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:metrics-server
  labels: {{k8s-app: metrics-server}}
rules:
- apiGroups: [""]
  resources: [nodes/metrics]
  verbs: [get]
- apiGroups: [""]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:metrics-server
  labels: {{k8s-app: metrics-server}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:metrics-server}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:metrics-server}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: metrics-server:system:auth-delegator
  labels: {{k8s-app: metrics-server}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:metrics-server}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: metrics-server-auth-reader
  namespace: kube-system
  labels: {{k8s-app: metrics-server}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:metrics-server}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:aggregated-metrics-reader
  labels:
    k8s-app: metrics-server
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: [metrics.k8s.io]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
  labels: {{k8s-app: metrics-server}}
spec:
  ports:
  - {{name: https, port: 443, protocol: TCP, targetPort: {METRICS_SERVER_PORT}}}
---
apiVersion: v1
kind: Endpoints
metadata:
  name: metrics-server
  namespace: kube-system
  labels: {{k8s-app: metrics-server}}
subsets:
- addresses: [{{ip: {BRIDGE_ADDR}}}]
  ports: [{{name: https, port: {METRICS_SERVER_PORT}, protocol: TCP}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
  labels: {{k8s-app: metrics-server}}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {{name: metrics-server, namespace: kube-system, port: 443}}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> ControlPlane {
        let l = Layout {
            workspace: "/w".into(),
            state: "/w/target/env".into(),
        };
        ControlPlane {
            pki: Pki::new(&l, "vm"),
            l,
        }
    }

    #[test]
    fn apiserver_listens_on_the_bridge_with_node_and_rbac() {
        let args = Component::Apiserver.args(&cp());
        for want in [
            "--bind-address=10.88.0.1",
            "--advertise-address=10.88.0.1",
            "--secure-port=6443",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--client-ca-file=/w/target/env/control-plane/pki/ca.crt",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing in {args:?}");
        }
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--kubelet-certificate-authority"))
        );
    }

    #[test]
    fn controller_manager_signs_and_approves_node_certificates() {
        let args = Component::ControllerManager.args(&cp());
        for want in [
            "--cluster-signing-cert-file=/w/target/env/control-plane/pki/ca.crt",
            "--cluster-signing-key-file=/w/target/env/control-plane/pki/ca.key",
            "--controllers=*,bootstrapsigner,tokencleaner",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing in {args:?}");
        }
        for binding in [
            "kubeadm:kubelet-bootstrap",
            "kubeadm:node-autoapprove-bootstrap",
            "kubeadm:node-autoapprove-certificate-rotation",
        ] {
            assert!(
                NODE_BOOTSTRAP_MANIFEST.contains(&format!("name: {binding}\n")),
                "{binding}"
            );
        }
    }

    #[test]
    fn variables_name_the_kubeconfigs() {
        let vars = cp().variables();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("KUBECONFIG"),
            Some("/w/target/env/control-plane/admin.kubeconfig")
        );
        assert_eq!(
            get("NODE_KUBECONFIG"),
            Some("/w/target/env/control-plane/node.kubeconfig")
        );
        assert_eq!(
            get("KUBELET_TEST_APISERVER"),
            Some("https://10.88.0.1:6443")
        );
        assert_eq!(get("KUBELET_TEST_NODE_NAME"), Some("vm"));
    }
}
