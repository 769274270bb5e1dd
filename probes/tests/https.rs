//! httpGet probes and lifecycle hooks over TLS, against servers on 127.0.0.1 with a
//! self-signed certificate (which, as upstream, is not verified).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet_core::ProbeOutcome;
use kubelet_probes::{HookHttp, lifecycle_http_get};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

mod common;

/// Reads a request head and answers 200 on `/ok`, 500 elsewhere.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        // A TLS ClientHello: answer as Go's server does to what is not HTTP.
        if head.first() == Some(&0x16) {
            let _ = stream.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
            return;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status = if head.starts_with("GET /ok ") {
        "200 OK"
    } else {
        "500 Internal Server Error"
    };
    let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// An HTTPS server with a fresh self-signed certificate; its port.
async fn https_server() -> u16 {
    let certified =
        rcgen::generate_simple_self_signed(vec!["pod.example".to_owned()]).expect("certificate");
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    answer(tls).await;
                }
            });
        }
    });
    port
}

/// A plain HTTP server; its port.
async fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream));
        }
    });
    port
}

fn action(scheme: &str, port: u16, path: &str) -> HTTPGetAction {
    HTTPGetAction {
        scheme: Some(scheme.into()),
        port: IntOrString::Int(i32::from(port)),
        path: Some(path.into()),
        ..Default::default()
    }
}

async fn probe(action: HTTPGetAction) -> ProbeOutcome {
    let probe = Probe {
        http_get: Some(action),
        ..Default::default()
    };
    common::probe_local(&probe).await.expect("probe ran")
}

#[tokio::test]
async fn https_probes_succeed_without_verifying_the_certificate() {
    let port = https_server().await;
    assert_eq!(
        probe(action("HTTPS", port, "/ok")).await,
        ProbeOutcome::Success
    );
    assert_eq!(
        probe(action("HTTPS", port, "/broken")).await,
        ProbeOutcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
}

#[tokio::test]
async fn an_https_probe_of_a_plain_server_fails_as_go_words_it() {
    let port = http_server().await;
    assert_eq!(
        probe(action("HTTPS", port, "/ok")).await,
        ProbeOutcome::Failure(format!(
            "Get \"https://127.0.0.1:{port}/ok\": http: server gave HTTP response to HTTPS client"
        ))
    );
}

#[tokio::test]
async fn https_hooks_take_any_answer_and_fall_back_to_http() {
    let tls = https_server().await;
    assert_eq!(
        lifecycle_http_get(&action("HTTPS", tls, "/ok"), "127.0.0.1", tls).await,
        Ok(HookHttp::Answered)
    );
    assert_eq!(
        lifecycle_http_get(&action("HTTPS", tls, "/broken"), "127.0.0.1", tls).await,
        Ok(HookHttp::Answered),
        "upstream does not look at a hook's status code"
    );
    let plain = http_server().await;
    assert_eq!(
        lifecycle_http_get(&action("HTTPS", plain, "/ok"), "127.0.0.1", plain).await,
        Ok(HookHttp::FellBackToHttp(format!(
            "request to HTTPS lifecycle hook 127.0.0.1:{plain} got HTTP response, retry with \
             HTTP succeeded"
        )))
    );
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let refused = lifecycle_http_get(&action("HTTPS", closed, "/ok"), "127.0.0.1", closed)
        .await
        .expect_err("nothing listens");
    assert!(
        refused.starts_with(&format!("Get \"https://127.0.0.1:{closed}/ok\": dial tcp")),
        "{refused}"
    );
}
