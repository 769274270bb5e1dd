//! Client certificate rotation (`rotateCertificates`) against the real control plane:
//! a certificate issued for ten minutes by the controller-manager's signer is replaced
//! by the kubelet before it expires, through a CSR the controller-manager approves
//! (`selfnodeclient`), while the node stays Ready.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{API, Cluster, condition, curl, lock, wait_until};
use k8s_openapi::jiff::Timestamp;

/// A key and a certificate for `CN=system:node:<node>, O=system:nodes` issued through
/// the CertificateSigningRequest `name` for `seconds`, approved as the admin; the PEM
/// certificate and key.
fn issue_node_certificate(c: &Cluster, name: &str, seconds: u32) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{}", c.node));
    let request = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .expect("certificate request");
    let request = base64::engine::general_purpose::STANDARD.encode(request);
    c.apply(&format!(
        r#"
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {{name: {name}}}
spec:
  request: {request}
  signerName: kubernetes.io/kube-apiserver-client-kubelet
  expirationSeconds: {seconds}
  usages: [digital signature, client auth]
"#
    ));
    c.kubectl(&["certificate", "approve", name]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let csr = c.json(&["get", "csr", name]);
        if let Some(cert) = csr["status"]["certificate"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(cert)
                .expect("base64 certificate");
            return (String::from_utf8(pem).expect("PEM"), key.serialize_pem());
        }
        assert!(Instant::now() < deadline, "{name} not issued: {csr:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The validity of the first certificate in a PEM file.
fn validity(pem: &[u8]) -> (Timestamp, Timestamp) {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).expect("PEM");
    let cert = block.parse_x509().expect("certificate");
    let at = |t: i64| Timestamp::from_second(t).expect("time");
    (
        at(cert.validity().not_before.timestamp()),
        at(cert.validity().not_after.timestamp()),
    )
}

/// Writes a kubeconfig using the client certificate and key in `pair`.
fn write_kubeconfig(c: &Cluster, path: &Path, pair: &Path) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    \
             server: {}\n    certificate-authority: {}\nusers:\n- name: node\n  user:\n    \
             client-certificate: {pair}\n    client-key: {pair}\ncontexts:\n- name: node\n  \
             context:\n    cluster: kubernetes\n    user: node\ncurrent-context: node\n",
            c.apiserver,
            c.ca_file.display(),
            pair = pair.display()
        ),
    )
    .expect("kubeconfig");
}

#[test]
fn a_ten_minute_client_certificate_is_rotated_before_it_expires() {
    let Some((_env, c)) =
        Cluster::from_env("a_ten_minute_client_certificate_is_rotated_before_it_expires")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let cert_dir = dir.path().join("pki");
    std::fs::create_dir_all(&cert_dir).expect("cert dir");
    let csr = format!(
        "rotation-test-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let (cert, key) = issue_node_certificate(&c, &csr, 600);
    let _ = c.try_kubectl(&["delete", "csr", &csr], None);
    let first = cert_dir.join("kubelet-client-test.pem");
    std::fs::write(&first, format!("{cert}{key}")).expect("pair");
    let current = cert_dir.join("kubelet-client-current.pem");
    std::os::unix::fs::symlink(&first, &current).expect("symlink");
    let (not_before, not_after) = validity(cert.as_bytes());
    assert!(
        not_after.duration_since(Timestamp::now()).as_secs() <= 600,
        "a ten-minute certificate: {not_before} - {not_after}"
    );
    let kubeconfig = dir.path().join("kubelet.conf");
    write_kubeconfig(&c, &kubeconfig, &current);

    let kubelet = c.start_kubelet_with_flags(
        dir.path(),
        &kubeconfig.to_string_lossy(),
        "rotateCertificates: true\n",
        &["--cert-dir", &cert_dir.to_string_lossy()],
        &[],
    );
    c.wait_node_ready(&kubelet);
    assert!(
        kubelet
            .log()
            .contains("certificate rotation deadline determined certificate=\"client\""),
        "{}",
        kubelet.log()
    );

    // 70-90% of the 15 minutes since notBefore (the signer backdates it 5 minutes):
    // between about 5.5 and 8.5 minutes from now, well before expiry.
    wait_until(
        "the client certificate rotated",
        600,
        || kubelet.log(),
        || std::fs::read_link(&current).is_ok_and(|target| target != first),
    );
    let rotated_at = Timestamp::now();
    assert!(rotated_at < not_after, "rotated before expiry");
    let rotated = std::fs::read(&current).expect("rotated pair");
    let (_, new_not_after) = validity(&rotated);
    assert!(
        new_not_after.duration_since(not_after).as_secs() > 3600,
        "the new certificate is the signer's default lifetime: {new_not_after}"
    );
    let log = kubelet.log();
    assert!(
        log.contains("certificate rotated certificate=\"client\""),
        "{log}"
    );

    // Every connection made with the old certificate is closed with the rotation, as
    // upstream's: the API server counts each request's certificate by its remaining
    // lifetime, and after the rotation none presents the old one (10 minutes, so under
    // 30 minutes left), though the heartbeat client's connection was kept from one
    // renewal to the next and would keep it until it expired and failed. New connections
    // do not resume a TLS session made with the old certificate either: the API server
    // takes a resumed session's identity from its ticket (seen failing: 3 requests with
    // the old certificate in the 25 s below, with resumption on).
    std::thread::sleep(Duration::from_secs(2));
    let old_certificate_requests = || {
        let metrics = c.kubectl(&["get", "--raw", "/metrics"]);
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "apiserver_client_certificate_expiration_seconds_bucket{le=\"1800\"} ",
                )
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("the API server's client certificate histogram")
    };
    let at_rotation = old_certificate_requests();
    assert!(at_rotation > 0.0, "the old certificate was counted before");

    // The node stays Ready on the new certificate: its Lease keeps being renewed.
    let renewed = |after: Timestamp| {
        let lease = c.json(&["get", "lease", "-n", "kube-node-lease", &c.node]);
        lease["spec"]["renewTime"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| t > after)
    };
    wait_until(
        "the Lease renewed after the rotation",
        30,
        || kubelet.log(),
        || renewed(rotated_at),
    );
    let node = c.json(&["get", "node", &c.node]);
    assert_eq!(condition(&node, "Ready"), Some("True"), "{node:#}");
    // Two more renewals (every 10 s) and the pod watch's restarts on the new certificate.
    std::thread::sleep(Duration::from_secs(25));
    assert_eq!(
        old_certificate_requests(),
        at_rotation,
        "requests presented the old certificate after the rotation\n{}",
        kubelet.log()
    );

    // Metrics as upstream's.
    let pki = c.ca_file.parent().expect("pki directory");
    let (admin_cert, admin_key) = (pki.join("admin.crt"), pki.join("admin.key"));
    let (status, metrics) = curl(
        &format!("{API}/metrics"),
        &[
            "--cert",
            &admin_cert.to_string_lossy(),
            "--key",
            &admin_key.to_string_lossy(),
        ],
    );
    assert_eq!(status, 200);
    let ttl: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kubelet_certificate_manager_client_ttl_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the TTL gauge");
    assert!(ttl > 3600.0, "TTL of the rotated certificate: {ttl}");
    drop(kubelet);
}

/// `curl` verifying the kubelet's serving certificate against the cluster CA (no `-k`),
/// as the admin: the status (0 when the handshake fails) and the body.
fn verified_curl(c: &Cluster, path: &str) -> (u16, String) {
    let pki = c.ca_file.parent().expect("pki directory");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(&c.ca_file)
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .arg(format!("{API}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn a_serving_certificate_is_requested_and_served_once_approved() {
    let Some((_env, c)) =
        Cluster::from_env("a_serving_certificate_is_requested_and_served_once_approved")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let cert_dir = dir.path().join("pki");
    let started = Timestamp::now();
    let kubelet = c.start_kubelet_with_flags(
        dir.path(),
        &c.node_kubeconfig,
        "serverTLSBootstrap: true\n",
        &["--cert-dir", &cert_dir.to_string_lossy()],
        &[],
    );
    c.wait_node_ready(&kubelet);

    // The kubelet's CertificateSigningRequest for its serving certificate.
    let user = format!("system:node:{}", c.node);
    let csr = std::cell::RefCell::new(None);
    wait_until(
        "the serving CSR",
        60,
        || kubelet.log(),
        || {
            *csr.borrow_mut() = c.json(&["get", "csr"])["items"]
                .as_array()
                .and_then(|items| {
                    items.iter().find(|r| {
                        r["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
                            && r["spec"]["username"] == user.as_str()
                            && r["metadata"]["creationTimestamp"]
                                .as_str()
                                .and_then(|t| t.parse::<Timestamp>().ok())
                                .is_some_and(|t| t.as_second() >= started.as_second())
                    })
                })
                .cloned();
            csr.borrow().is_some()
        },
    );
    let csr = csr.into_inner().expect("a CSR");
    let name = csr["metadata"]["name"].as_str().expect("name").to_owned();
    assert_eq!(
        csr["spec"]["usages"],
        serde_json::json!(["digital signature", "server auth"]),
        "{csr:#}"
    );
    // Not approved: nothing is served (upstream's behaviour too).
    assert_eq!(verified_curl(&c, "/healthz").0, 0);

    c.kubectl(&["certificate", "approve", &name]);
    wait_until(
        "the approved certificate served",
        60,
        || kubelet.log(),
        || verified_curl(&c, "/healthz").0 == 200,
    );
    assert_eq!(verified_curl(&c, "/healthz"), (200, "ok".to_owned()));
    assert!(cert_dir.join("kubelet-server-current.pem").exists());

    // kubectl logs reaches the kubelet over it.
    let namespace = common::Namespace::create(&c, "serving-cert");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hello, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: hello
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo served-by-a-requested-certificate; sleep 3600"]
"#,
        node = c.node,
        image = c.busybox
    ));
    c.wait_json(
        "hello Running",
        &["get", "pod", "-n", ns, "hello"],
        90,
        &kubelet,
        |p| p["status"]["phase"] == "Running",
    );
    wait_until(
        "kubectl logs",
        30,
        || kubelet.log(),
        || {
            c.try_kubectl(&["logs", "-n", ns, "hello"], None)
                .is_ok_and(|out| out.contains("served-by-a-requested-certificate"))
        },
    );
    let (_, metrics) = verified_curl(&c, "/metrics");
    let ttl: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kubelet_certificate_manager_server_ttl_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the TTL gauge");
    assert!(ttl > 3600.0, "TTL of the serving certificate: {ttl}");
    let _ = c.try_kubectl(&["delete", "csr", &name], None);
    drop(namespace);
    drop(kubelet);
}
