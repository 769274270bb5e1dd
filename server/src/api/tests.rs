//! The kubelet API over real TLS on loopback, with the fake CRI runtime: client
//! certificates, 401/403, the endpoints, and container logs read and followed.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::{
    ContainerConfig, ContainerMetadata, Runtime, SandboxConfig, SandboxMetadata, StatusReporter,
};
use kubelet_cri_client::{FakeCriServer, Timeouts};
use kubelet_pod_manager::LocalPods;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::{Handlers, TlsOptions};

/// Accepts any server certificate: the tests check the server, not its name.
#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A CA and a client certificate it signed, as PEM.
struct Pki {
    ca_pem: String,
    client_cert: String,
    client_key: String,
}

fn pki(cn: &str, org: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test-ca");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("client key");
    let mut params = CertificateParams::new(Vec::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).expect("client cert");
    Pki {
        ca_pem: ca.pem(),
        client_cert: cert.pem(),
        client_key: key.serialize_pem(),
    }
}

struct Harness {
    address: SocketAddr,
    fake: FakeCriServer,
    runtime: Arc<dyn Runtime>,
    pods: Arc<LocalPods>,
    dir: tempfile::TempDir,
    pki: Pki,
}

fn settings(dir: &Path, client_ca: Option<PathBuf>) -> Settings {
    Settings {
        address: None,
        healthz: None,
        serving: ServingCert::SelfSigned {
            dir: dir.join("pki"),
            node_name: "vm".into(),
            ips: vec!["127.0.0.1".parse().expect("ip")],
        },
        client_ca,
        anonymous: false,
        token_webhook: true,
        token_ttl: Duration::from_secs(120),
        authz_webhook: false,
        allowed_ttl: Duration::from_secs(300),
        denied_ttl: Duration::from_secs(30),
        node_name: "vm".into(),
        tls: TlsOptions::default(),
        cert_reload_interval: Duration::from_millis(100),
    }
}

/// Serves the API with `change` applied to the default test settings (client CA set,
/// AlwaysAllow, tokens enabled without an API server).
async fn start(change: impl FnOnce(&mut Settings)) -> Harness {
    start_with(change, |_| {}).await
}

/// [`start`], with `change_endpoints` applied to what is served.
async fn start_with(
    change: impl FnOnce(&mut Settings),
    change_endpoints: impl FnOnce(&mut Endpoints),
) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki("admin", "system:masters");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &pki.ca_pem).expect("write CA");
    let mut settings = settings(dir.path(), Some(ca));
    change(&mut settings);
    if let ServingCert::SelfSigned {
        dir,
        node_name,
        ips,
    } = &settings.serving
    {
        kubelet_node_agent::ensure_self_signed(dir, node_name, ips)
            .await
            .expect("self-signed serving certificate");
    }
    let fake = FakeCriServer::start();
    let client = Arc::new(fake.client(Timeouts::default()));
    let runtime: Arc<dyn Runtime> = client.clone();
    let pods = Arc::new(LocalPods::new());
    let stats = kubelet_stats::StatsProvider::new(
        client.clone(),
        client,
        kubelet_stats::StatsPaths {
            root_dir: dir.path().join("root"),
            pods_log_dir: dir.path().join("logs"),
            ..kubelet_stats::StatsPaths::default()
        },
        "vm".to_owned(),
    );
    let mut endpoints = Endpoints {
        pods: pods.clone(),
        configz: Arc::new(r#"{"kubeletconfig":{"maxPods":110}}"#.to_owned()),
        runtime: runtime.clone(),
        pod_logs_dir: dir.path().join("logs"),
        stats: Arc::new(stats),
        node_logs_dir: dir.path().join("var-log"),
        stream_idle_timeout: None,
        handlers: Handlers::default(),
        set_verbosity: None,
        healthz: crate::Healthz::kubelet(Arc::new(|| Ok(())), Default::default()),
        metrics: Default::default(),
    };
    change_endpoints(&mut endpoints);
    let tls = tls::server_config(
        &settings.serving,
        settings.client_ca.as_deref(),
        &settings.tls,
    )
    .await
    .expect("TLS");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        if let Err(e) = serve_api_on(listener, tls, &settings, endpoints, None).await {
            panic!("serving: {e:#}");
        }
    });
    Harness {
        address,
        fake,
        runtime,
        pods,
        dir,
        pki,
    }
}

/// How a test client presents itself.
enum Client<'a> {
    Nobody,
    Cert(&'a str, &'a str),
    Token(&'a str),
}

impl Harness {
    async fn connect(
        &self,
        client: &Client<'_>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer));
        let config = match client {
            Client::Cert(cert, key) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .expect("cert"),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
                )
                .expect("client auth"),
            _ => builder.with_no_client_auth(),
        };
        let stream = tokio::net::TcpStream::connect(self.address).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("vm").expect("name"), stream)
            .await
    }

    /// `method path` as `client`: the status and the body.
    async fn request(&self, client: &Client<'_>, method: &str, path: &str) -> (u16, String) {
        self.request_with_body(client, method, path, "").await
    }

    /// [`Self::request`] sending `body`.
    async fn request_with_body(
        &self,
        client: &Client<'_>,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, String) {
        let mut tls = self.connect(client).await.expect("TLS");
        let auth = match client {
            Client::Token(token) => format!("Authorization: Bearer {token}\r\n"),
            _ => String::new(),
        };
        let length = body.len();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: vm\r\n{auth}Content-Length: {length}\r\nConnection: close\r\n\r\n{body}"
        );
        tls.write_all(request.as_bytes()).await.expect("send");
        let mut response = Vec::new();
        // A server that closes without close_notify is fine here.
        let _ = tls.read_to_end(&mut response).await;
        parse_response(&String::from_utf8_lossy(&response))
    }
}

/// Status and de-chunked body of an HTTP/1.1 response.
fn parse_response(text: &str) -> (u16, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return (status, body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    (status, out)
}

#[tokio::test]
async fn requests_without_credentials_get_401() {
    let h = start(|_| {}).await;
    assert_eq!(
        h.request(&Client::Nobody, "GET", "/pods").await,
        (401, "Unauthorized\n".to_owned())
    );
    // Even for paths that do not exist: authentication comes first.
    assert_eq!(h.request(&Client::Nobody, "GET", "/nothing").await.0, 401);
    let (status, body) = h.request(&Client::Token("t"), "GET", "/pods").await;
    assert_eq!(status, 401);
    assert!(body.contains("--kubeconfig"), "{body}");
}

/// An open TCP connection to `address` from `source` that never says anything.
async fn idle_connection(source: [u8; 4], address: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind a loopback source");
    socket.connect(address).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_unauthenticated_connections_never_keep_authenticated_clients_out() {
    let h = start(|_| {}).await;
    let admin = Client::Cert(&h.pki.client_cert, &h.pki.client_key);
    // More idle connections than the server serves at once (512), from 20 addresses:
    // before, they held every slot until their handshake timed out and the API server's
    // connection waited in the backlog behind them.
    let mut idle = Vec::new();
    for i in 0..600u16 {
        let source = [127, 0, 0, 2 + u8::try_from(i % 20).expect("small")];
        idle.push(idle_connection(source, h.address).await);
    }
    let served = tokio::time::timeout(Duration::from_secs(5), h.request(&admin, "GET", "/healthz"))
        .await
        .expect("served while the flood holds its connections");
    assert_eq!(served, (200, "ok".to_owned()));
    // A token client authenticates per request: it gets in too (then 401 here, as this
    // server has no API server to review tokens; the point is that it is answered).
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        h.request(&Client::Token("t"), "GET", "/pods"),
    )
    .await
    .expect("answered");
    assert_eq!(answered.0, 401);
    drop(idle);
}

#[tokio::test]
async fn a_request_without_credentials_gets_its_connection_closed() {
    let h = start(|_| {}).await;
    let mut tls = h.connect(&Client::Nobody).await.expect("TLS");
    // Keep-alive asked for: the server still closes after the 401.
    tls.write_all(b"GET /pods HTTP/1.1\r\nHost: vm\r\n\r\n")
        .await
        .expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response))
        .await
        .expect("the server closed the connection")
        .ok();
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 401"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
}

#[tokio::test]
async fn a_client_certificate_of_the_ca_is_served() {
    let h = start(|_| {}).await;
    let admin = Client::Cert(&h.pki.client_cert, &h.pki.client_key);
    assert_eq!(
        h.request(&admin, "GET", "/healthz").await,
        (200, "ok".to_owned())
    );
    let (status, body) = h.request(&admin, "GET", "/pods").await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(list["kind"], "PodList");
    assert_eq!(
        h.request(&admin, "GET", "/configz").await,
        (200, r#"{"kubeletconfig":{"maxPods":110}}"#.to_owned())
    );
    assert_eq!(h.request(&admin, "POST", "/pods").await.0, 405);
    assert_eq!(h.request(&admin, "GET", "/nothing").await.0, 404);
    let (status, body) = h.request(&admin, "POST", "/exec/ns/p/c").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "you must specify at least 1 of stdin, stdout, stderr")
    );
    let (status, body) = h
        .request(&admin, "POST", "/exec/ns/p/c?command=ls&output=1")
        .await;
    assert_eq!((status, body.as_str()), (404, "pod does not exist"));
    let (status, body) = h.request(&admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE kubelet_http_requests_total counter")
            && body.contains(
                r#"kubelet_http_requests_total{method="GET",path="configz",server_type="readwrite",long_running="false"}"#
            ),
        "{body}"
    );
    let (status, body) = h.request(&admin, "GET", "/metrics/probes").await;
    assert_eq!(status, 200);
    assert!(body.contains("process_start_time_seconds"), "{body}");
    let (status, body) = h.request(&admin, "GET", "/runningpods/").await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"], serde_json::json!([]));
    assert_eq!(h.request(&admin, "GET", "/metrics/cadvisor").await.0, 501);
    let (status, body) = h.request(&admin, "GET", "/containerLogs/ns/web/app").await;
    assert_eq!((status, body.as_str()), (404, "pod \"web\" does not exist"));
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_fails_the_handshake() {
    let h = start(|_| {}).await;
    let stranger = pki("admin", "system:masters");
    let client = Client::Cert(&stranger.client_cert, &stranger.client_key);
    let outcome = async {
        let mut tls = h.connect(&client).await?;
        // TLS 1.3 reports the refusal on the first read.
        tls.write_all(b"GET /pods HTTP/1.1\r\nHost: vm\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await?;
        Ok::<_, std::io::Error>(n)
    }
    .await;
    assert!(matches!(outcome, Err(_) | Ok(0)), "{outcome:?}");
}

#[tokio::test]
async fn anonymous_requests_when_enabled() {
    let h = start(|s| s.anonymous = true).await;
    assert_eq!(
        h.request(&Client::Nobody, "GET", "/healthz").await,
        (200, "ok".to_owned())
    );
}

#[tokio::test]
async fn webhook_authorization_without_an_api_server_is_403() {
    let h = start(|s| s.authz_webhook = true).await;
    let admin = Client::Cert(&h.pki.client_cert, &h.pki.client_key);
    let (status, body) = h.request(&admin, "GET", "/pods").await;
    assert_eq!(status, 403);
    assert!(
        body.starts_with(
            "Forbidden (user=admin, verb=get, resource=nodes, subresource(s)=[pods proxy])"
        ),
        "{body}"
    );
}

/// A running container `app` of the pod `ns/web` in the fake runtime, with its log file
/// holding `log`; the pod is in the harness' LocalPods.
async fn running_container(h: &Harness, log: &str) -> (String, PathBuf) {
    h.fake.add_local_image("busybox");
    let log_dir = h.dir.path().join("logs").join("ns_web_uid-1");
    let sandbox = SandboxConfig {
        metadata: SandboxMetadata {
            name: "web".into(),
            namespace: "ns".into(),
            uid: "uid-1".into(),
            attempt: 0,
        },
        log_directory: log_dir.to_string_lossy().into_owned(),
        ..SandboxConfig::default()
    };
    let sandbox_id = h.runtime.run_sandbox(&sandbox).await.expect("sandbox");
    let config = ContainerConfig {
        metadata: ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        },
        image: "busybox".into(),
        log_path: "app/0.log".into(),
        ..ContainerConfig::default()
    };
    let id = h
        .runtime
        .create_container(&sandbox_id, &config, &sandbox)
        .await
        .expect("container");
    h.runtime.start_container(&id).await.expect("start");
    let path = log_dir.join("app").join("0.log");
    std::fs::create_dir_all(path.parent().expect("dir")).expect("log dir");
    std::fs::write(&path, log).expect("log");
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    };
    let status = PodStatus {
        container_statuses: Some(vec![ContainerStatus {
            name: "app".into(),
            container_id: Some(format!("containerd://{id}")),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    };
    h.pods.report(&pod, &status).await.expect("report");
    (id, path)
}

#[tokio::test]
async fn container_logs_are_read_and_followed() {
    let h = start(|_| {}).await;
    let (id, path) = running_container(
        &h,
        "2024-05-01T10:00:00Z stdout F one\n2024-05-01T10:00:01Z stderr F two\n",
    )
    .await;
    let admin = Client::Cert(&h.pki.client_cert, &h.pki.client_key);
    assert_eq!(
        h.request(&admin, "GET", "/containerLogs/ns/web/app").await,
        (200, "one\ntwo\n".to_owned())
    );
    assert_eq!(
        h.request(
            &admin,
            "GET",
            "/containerLogs/ns/web/app?tailLines=1&timestamps=true"
        )
        .await,
        (200, "2024-05-01T10:00:01.000000000Z two\n".to_owned())
    );
    let (status, body) = h
        .request(&admin, "GET", "/containerLogs/ns/web/app?previous=true")
        .await;
    assert_eq!(
        (status, body.as_str()),
        (
            400,
            "previous terminated container \"app\" in pod \"web\" not found"
        )
    );
    let (status, body) = h.request(&admin, "GET", "/containerLogs/ns/web/db").await;
    assert_eq!(
        (status, body.as_str()),
        (404, "container \"db\" not found in pod \"web\"")
    );
    assert_eq!(
        h.request(&admin, "GET", "/containerLogs/ns/web/app?tailLines=x")
            .await,
        (400, r#"{"message": "Unable to decode query."}"#.to_owned())
    );
    assert_eq!(
        h.request(&admin, "GET", "/containerLogs/ns/web/app?limitBytes=0")
            .await,
        (422, r#"{"message": "Invalid request."}"#.to_owned())
    );

    // Follow: new lines arrive while the container runs; the response ends when it exits.
    let mut tls = h.connect(&admin).await.expect("TLS");
    tls.write_all(
        b"GET /containerLogs/ns/web/app?follow=true&tailLines=1 HTTP/1.1\r\nHost: vm\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let wait_for = |want: &'static str| want;
    for want in [wait_for("two\n"), wait_for("three\n")] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&got).contains(want) {
            let n = tokio::time::timeout_at(deadline, tls.read(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!("{want:?} not streamed: {}", String::from_utf8_lossy(&got))
                })
                .expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        if want == "two\n" {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("append");
            file.write_all(b"2024-05-01T10:00:02Z stdout F three\n")
                .expect("append");
        }
    }
    assert!(h.fake.exit_container(&id, 0), "container exits");
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        rest
    })
    .await
    .expect("the response ends once the container exited");
    got.extend_from_slice(&rest);
    let (status, body) = parse_response(&String::from_utf8_lossy(&got));
    assert_eq!((status, body.as_str()), (200, "two\nthree\n"));
}

#[tokio::test]
async fn healthz_is_served_in_plain_http() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    tokio::spawn(serve_healthz(address, Default::default()));
    let mut stream = None;
    for _ in 0..50 {
        if let Ok(s) = tokio::net::TcpStream::connect(address).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut stream = stream.expect("healthz listens");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert_eq!(parse_response(&response), (200, "ok".to_owned()));
}

#[test]
fn settings_follow_the_configuration() {
    let address: SocketAddr = "0.0.0.0:10250".parse().expect("addr");
    let mut config = KubeletConfiguration::defaulted();
    config.authentication.x509.client_ca_file = "/etc/kubernetes/pki/ca.crt".into();
    let ips = ["10.88.0.1".parse().expect("ip")];
    let s = Settings::from_config(&config, address, Path::new("/var/lib/kubelet"), "vm", &ips)
        .expect("settings");
    assert_eq!(s.address, Some(address));
    assert_eq!(s.healthz, Some("127.0.0.1:10248".parse().expect("addr")));
    assert_eq!(
        s.client_ca,
        Some(PathBuf::from("/etc/kubernetes/pki/ca.crt"))
    );
    assert!(!s.anonymous && s.token_webhook && s.authz_webhook);
    assert_eq!(
        (s.token_ttl, s.allowed_ttl, s.denied_ttl),
        (
            Duration::from_secs(120),
            Duration::from_secs(300),
            Duration::from_secs(30)
        )
    );
    assert_eq!(
        s.serving,
        ServingCert::SelfSigned {
            dir: PathBuf::from("/var/lib/kubelet/pki"),
            node_name: "vm".into(),
            ips: ips.to_vec(),
        }
    );

    // Started from flags alone: no anonymous requests, tokens and authorization through
    // the API server, unlike upstream's legacy flag defaults.
    let config = KubeletConfiguration::flag_defaults();
    let s = Settings::from_config(&config, address, Path::new("/r"), "vm", &ips).expect("settings");
    assert!(!s.anonymous && s.token_webhook && s.authz_webhook);

    let mut config = KubeletConfiguration::defaulted();
    config.tls_cert_file = "/x.crt".into();
    let err = Settings::from_config(&config, address, Path::new("/r"), "vm", &ips)
        .expect_err("a certificate without its key");
    assert!(err.to_string().contains("tlsPrivateKeyFile"), "{err}");
    config.tls_private_key_file = "/x.key".into();
    config.healthz_port = Some(0);
    config.enable_server = Some(false);
    let s = Settings::from_config(&config, address, Path::new("/r"), "vm", &ips).expect("settings");
    assert_eq!(
        s.serving,
        ServingCert::Files {
            cert: "/x.crt".into(),
            key: "/x.key".into()
        }
    );
    assert_eq!((s.address, s.healthz), (None, None));
}

#[test]
fn requests_are_counted_in_upstream_buckets() {
    use super::request_metric_labels as labels;
    assert_eq!(labels("GET", "/pods"), ("GET", "pods".into(), "false"));
    assert_eq!(
        labels("POST", "/exec/ns/pod/c"),
        ("POST", "exec".into(), "true")
    );
    assert_eq!(
        labels("GET", "/metrics/resource"),
        ("GET", "metrics/resource".into(), "false")
    );
    assert_eq!(
        labels("GET", "/metrics"),
        ("GET", "metrics".into(), "false")
    );
    assert_eq!(
        labels("PATCH", "/nothing/here"),
        ("other", "other".into(), "false")
    );
    assert_eq!(
        labels("GET", "/portForward/ns/pod"),
        ("GET", "portForward".into(), "false")
    );
}

#[tokio::test]
async fn debugging_handlers_off_answer_as_upstream() {
    let h = start_with(
        |_| {},
        |e| {
            e.handlers.debugging = false;
        },
    )
    .await;
    let admin = Client::Cert(&h.pki.client_cert, &h.pki.client_key);
    for path in [
        "/exec/default/web/app?command=ls",
        "/attach/default/web/app",
        "/portForward/default/web",
        "/run/default/web/app",
        "/containerLogs/default/web/app",
        "/runningpods/",
        "/logs/",
        "/logs",
        "/debug/pprof/heap",
    ] {
        assert_eq!(
            h.request(&admin, "GET", path).await,
            (405, "Debug endpoints are disabled.\n".to_owned()),
            "{path}"
        );
    }
    for path in ["/configz", "/debug/flags/v"] {
        assert_eq!(h.request(&admin, "GET", path).await.0, 404, "{path}");
    }
    assert_eq!(h.request(&admin, "GET", "/pods").await.0, 200);
    assert_eq!(h.request(&admin, "GET", "/healthz").await.0, 200);
    // Authentication still comes first.
    assert_eq!(h.request(&Client::Nobody, "GET", "/logs/").await.0, 401);
}

#[tokio::test]
async fn log_profiling_and_flags_handlers_follow_their_switches() {
    let h = start_with(
        |_| {},
        |e| {
            e.handlers.system_log = false;
            e.handlers.profiling = false;
            e.handlers.debug_flags = false;
        },
    )
    .await;
    let admin = Client::Cert(&h.pki.client_cert, &h.pki.client_key);
    let disabled = |text: &str| (405, format!("{text}\n"));
    assert_eq!(
        h.request(&admin, "GET", "/logs/").await,
        disabled("logs endpoint is disabled.")
    );
    assert_eq!(
        h.request(&admin, "GET", "/debug/pprof/").await,
        disabled("profiling endpoint is disabled.")
    );
    assert_eq!(
        h.request_with_body(&admin, "PUT", "/debug/flags/v", "4")
            .await,
        disabled("flags endpoint is disabled.")
    );
    // Debugging handlers on: container logs are served (404: no such pod).
    assert_eq!(
        h.request(&admin, "GET", "/containerLogs/default/web/app")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn the_log_verbosity_is_set_through_debug_flags() {
    let set = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = set.clone();
    let h = start_with(
        |_| {},
        move |e| {
            e.set_verbosity = Some(Arc::new(move |level| {
                recorded.lock().expect("lock").push(level);
                Ok(())
            }));
        },
    )
    .await;
    let admin = Client::Cert(&h.pki.client_cert, &h.pki.client_key);
    assert_eq!(
        h.request_with_body(&admin, "PUT", "/debug/flags/v", "4")
            .await,
        (
            200,
            "successfully set klog.logging.verbosity to 4".to_owned()
        )
    );
    assert_eq!(
        h.request(&admin, "GET", "/debug/flags/v").await,
        (406, "unsupported http method".to_owned())
    );
    let (status, body) = h
        .request_with_body(&admin, "PUT", "/debug/flags/v", "loud")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(*set.lock().expect("lock"), [4]);
    // Profiling is on by default but Go's profiler has no equivalent: said, not a 404.
    assert_eq!(h.request(&admin, "GET", "/debug/pprof/").await.0, 501);
}

/// The serving certificate a TLS 1.2-only (`tls12`) or default client sees, or the
/// handshake's error.
async fn served_certificate(address: SocketAddr, tls12: bool) -> std::io::Result<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(address).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("vm").expect("name"), stream)
        .await?;
    Ok(tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default())
}

/// Waits (up to 5 s) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_changed_serving_certificate_and_client_ca_are_used_without_a_restart() {
    let h = start(|_| {}).await;
    let first = served_certificate(h.address, false).await.expect("TLS");
    // A new certificate and key written over the old files (key first, as tools do).
    let (cert, key) = kubelet_node_agent::self_signed("renamed", &[]).expect("certificate");
    let pki_dir = h.dir.path().join("pki");
    std::fs::write(pki_dir.join("kubelet.key"), key).expect("write key");
    std::fs::write(pki_dir.join("kubelet.crt"), &cert).expect("write cert");
    let new = CertificateDer::pem_slice_iter(cert.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec();
    assert_ne!(first, new);
    eventually("the new serving certificate served", async || {
        served_certificate(h.address, false).await.ok().as_ref() == Some(&new)
    })
    .await;
    // A broken file is not used: the last good certificate stays.
    std::fs::write(pki_dir.join("kubelet.crt"), "garbage").expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served_certificate(h.address, false).await.expect("TLS"),
        new
    );

    // The client CA bundle replaced: the old CA's clients are refused, the new one's in.
    let old = Client::Cert(&h.pki.client_cert, &h.pki.client_key);
    assert_eq!(h.request(&old, "GET", "/healthz").await.0, 200);
    let other = pki("admin", "system:masters");
    std::fs::write(h.dir.path().join("ca.crt"), &other.ca_pem).expect("write CA");
    let new_client = Client::Cert(&other.client_cert, &other.client_key);
    eventually("the new CA's client accepted", async || {
        h.connect(&new_client).await.is_ok()
            && h.request(&new_client, "GET", "/healthz").await.0 == 200
    })
    .await;
    // (With TLS 1.3 the client learns of the refusal after its side of the handshake.)
    assert_eq!(
        h.request(&old, "GET", "/healthz").await.0,
        0,
        "the old CA's client is refused"
    );
}

#[tokio::test]
async fn tls_min_version_and_cipher_suites_are_honoured() {
    let (tls13, _) = TlsOptions::from_config("VersionTLS13", &[], &[]).expect("options");
    let h = start(|s| s.tls = tls13).await;
    assert!(served_certificate(h.address, false).await.is_ok());
    assert!(
        served_certificate(h.address, true).await.is_err(),
        "a TLS 1.2 client is refused"
    );
    // Only an RSA suite listed while the certificate is ECDSA: TLS 1.2 finds no suite
    // (as Go's server), TLS 1.3 is unaffected.
    let suites = vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_owned()];
    let (rsa_only, _) = TlsOptions::from_config("", &suites, &[]).expect("options");
    let h = start(|s| s.tls = rsa_only).await;
    assert!(served_certificate(h.address, false).await.is_ok());
    assert!(served_certificate(h.address, true).await.is_err());
    let suites = vec!["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".to_owned()];
    let (ecdsa, _) = TlsOptions::from_config("", &suites, &[]).expect("options");
    let h = start(|s| s.tls = ecdsa).await;
    assert!(served_certificate(h.address, true).await.is_ok());
}
