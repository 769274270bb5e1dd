//! httpGet and tcpSocket probes against servers on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{HTTPGetAction, HTTPHeader, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet_core::{Error, ProbeKind, ProbeOutcome, ProbeTarget, Prober};
use kubelet_probes::{KubeletProber, USER_AGENT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod common;

/// What the test server answers for a path: status line, extra headers, body, delay.
type Reply = (u16, Vec<(String, String)>, String, Duration);

/// A tiny HTTP/1.1 server: records each request head and answers with `route(path)`.
async fn server(route: fn(&str, u16) -> Reply) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                log.lock().expect("lock").push(head);
                let (status, headers, body, delay) = route(&path, port);
                tokio::time::sleep(delay).await;
                let mut response =
                    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in headers {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

fn routes(path: &str, port: u16) -> Reply {
    let none = Duration::ZERO;
    match path {
        "/ok" => (200, vec![], "fine".into(), none),
        "/error" => (500, vec![], "secret details".into(), none),
        "/same-host" => (
            302,
            vec![("Location".into(), "/ok".into())],
            String::new(),
            none,
        ),
        "/same-host-to-error" => (
            301,
            vec![("Location".into(), format!("http://127.0.0.1:{port}/error"))],
            String::new(),
            none,
        ),
        "/other-host" => (
            302,
            vec![("Location".into(), format!("http://localhost:{port}/ok"))],
            "moved".into(),
            none,
        ),
        "/big-redirect" => (
            302,
            vec![("Location".into(), format!("http://localhost:{port}/ok"))],
            "x".repeat(20_000),
            none,
        ),
        "/loop" => (
            302,
            vec![("Location".into(), "/loop".into())],
            String::new(),
            none,
        ),
        "/slow" => (200, vec![], String::new(), Duration::from_secs(5)),
        _ => (404, vec![], String::new(), none),
    }
}

fn http_probe(port: u16, path: &str, headers: Vec<(&str, &str)>) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(port)),
            http_headers: Some(
                headers
                    .into_iter()
                    .map(|(n, v)| HTTPHeader {
                        name: n.to_owned(),
                        value: v.to_owned(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn target() -> ProbeTarget {
    ProbeTarget {
        pod_ip: "127.0.0.1".into(),
        container_name: "app".into(),
        container_id: "c1".into(),
        ..Default::default()
    }
}

async fn run(probe: &Probe) -> kubelet_core::Result<ProbeOutcome> {
    KubeletProber::new(common::FakeRuntime::new())
        .probe(ProbeKind::Readiness, probe, &target())
        .await
}

#[tokio::test]
async fn http_200_passes_with_upstream_default_headers() {
    let (port, seen) = server(routes).await;
    let outcome = run(&http_probe(port, "/ok", vec![])).await.expect("ran");
    assert_eq!(outcome, ProbeOutcome::Success);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let head = seen[0].to_ascii_lowercase();
    assert!(head.starts_with("get /ok http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!(
            "\r\nuser-agent: {}\r\n",
            USER_AGENT.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(head.contains("\r\naccept: */*\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
}

#[tokio::test]
async fn http_custom_headers_replace_defaults() {
    let (port, seen) = server(routes).await;
    let probe = http_probe(
        port,
        "ok",
        vec![
            ("X-Probe", "yes"),
            ("user-agent", "mine/1"),
            ("Accept", ""),
            ("Host", "example.test"),
        ],
    );
    assert_eq!(run(&probe).await.expect("ran"), ProbeOutcome::Success);
    let head = seen.lock().expect("lock")[0].to_ascii_lowercase();
    assert!(
        head.starts_with("get /ok http/1.1\r\n"),
        "a path without / gets one: {head}"
    );
    assert!(head.contains("\r\nx-probe: yes\r\n"), "{head}");
    assert!(head.contains("\r\nuser-agent: mine/1\r\n"), "{head}");
    assert!(!head.contains("kube-probe"), "{head}");
    assert!(
        !head.contains("\r\naccept:"),
        "an empty Accept removes it: {head}"
    );
    assert!(head.contains("\r\nhost: example.test\r\n"), "{head}");
}

#[tokio::test]
async fn http_500_fails_without_the_body() {
    let (port, _) = server(routes).await;
    let outcome = run(&http_probe(port, "/error", vec![])).await.expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
}

#[tokio::test]
async fn http_redirect_to_same_host_is_followed() {
    let (port, seen) = server(routes).await;
    assert_eq!(
        run(&http_probe(port, "/same-host", vec![]))
            .await
            .expect("ran"),
        ProbeOutcome::Success
    );
    assert_eq!(
        run(&http_probe(port, "/same-host-to-error", vec![]))
            .await
            .expect("ran"),
        ProbeOutcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
    let paths: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|h| h.split(' ').nth(1).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        paths,
        ["/same-host", "/ok", "/same-host-to-error", "/error"]
    );
}

#[tokio::test]
async fn http_redirect_to_other_host_is_a_warning() {
    let (port, seen) = server(routes).await;
    let outcome = run(&http_probe(port, "/other-host", vec![]))
        .await
        .expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome::Warning("Probe terminated redirects, Response body: moved".into())
    );
    assert_eq!(
        seen.lock().expect("lock").len(),
        1,
        "localhost was not visited"
    );
}

#[tokio::test]
async fn http_redirect_loop_stops_after_ten() {
    let (port, seen) = server(routes).await;
    let outcome = run(&http_probe(port, "/loop", vec![])).await.expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome::Failure(format!(
            "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
        ))
    );
    assert_eq!(seen.lock().expect("lock").len(), 10);
}

#[tokio::test]
async fn http_slow_server_times_out() {
    let (port, _) = server(routes).await;
    let started = std::time::Instant::now();
    let outcome = run(&http_probe(port, "/slow", vec![])).await.expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome::Failure(format!(
            "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn http_connection_refused_fails_with_go_text() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let outcome = run(&http_probe(port, "/", vec![])).await.expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome::Failure(format!(
            "Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

fn tcp_probe(port: IntOrString, host: Option<&str>) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port,
            host: host.map(str::to_owned),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn tcp_open_port_passes_and_closed_port_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let open = tcp_probe(IntOrString::Int(i32::from(port)), None);
    assert_eq!(run(&open).await.expect("ran"), ProbeOutcome::Success);
    drop(listener);
    assert_eq!(
        run(&open).await.expect("ran"),
        ProbeOutcome::Failure(format!(
            "dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

#[tokio::test]
async fn tcp_host_overrides_pod_ip() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let probe = tcp_probe(IntOrString::Int(i32::from(port)), Some("127.0.0.1"));
    let mut elsewhere = target();
    elsewhere.pod_ip = "192.0.2.1".into();
    let outcome = KubeletProber::new(common::FakeRuntime::new())
        .probe(ProbeKind::Liveness, &probe, &elsewhere)
        .await
        .expect("ran");
    assert_eq!(outcome, ProbeOutcome::Success);
}

#[tokio::test]
async fn unresolved_named_port_is_a_probe_error() {
    let probe = tcp_probe(IntOrString::String("web".into()), None);
    let err = run(&probe).await.expect_err("named port");
    assert!(
        matches!(&err, Error::Probe { container, .. } if container == "app"),
        "{err}"
    );
    assert!(err.to_string().contains("\"web\""), "{err}");
}

#[tokio::test]
async fn http_body_in_the_warning_is_capped_at_10_kib() {
    let (port, _) = server(routes).await;
    let outcome = run(&http_probe(port, "/big-redirect", vec![]))
        .await
        .expect("ran");
    let ProbeOutcome::Warning(text) = outcome else {
        panic!("expected a warning, got {outcome:?}");
    };
    let body = text
        .strip_prefix("Probe terminated redirects, Response body: ")
        .expect("upstream prefix");
    assert_eq!(body, "x".repeat(10 * 1024));
}

#[tokio::test]
async fn named_port_resolved_by_prepare_probe_is_probed() {
    use k8s_openapi::api::core::v1::{Container, ContainerPort};
    let (port, seen) = server(routes).await;
    let mut probe = http_probe(port, "/ok", vec![]);
    if let Some(h) = probe.http_get.as_mut() {
        h.port = IntOrString::String("web".into());
    }
    let container = Container {
        name: "app".into(),
        ports: Some(vec![ContainerPort {
            name: Some("web".into()),
            container_port: i32::from(port),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let prepared = kubelet_probes::prepare_probe(&probe, &container).expect("resolves");
    assert_eq!(run(&prepared).await.expect("ran"), ProbeOutcome::Success);
    assert_eq!(seen.lock().expect("lock").len(), 1);
}
