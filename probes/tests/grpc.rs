//! gRPC probes against tonic-health servers on 127.0.0.1.

use k8s_openapi::api::core::v1::{GRPCAction, Probe};
use kubelet_core::ProbeOutcome;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

mod common;

/// A health server knowing `ok.svc` (serving) and `sick.svc` (not serving); its port.
async fn health_server() -> u16 {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("ok.svc", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("sick.svc", ServingStatus::NotServing)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        // Keeps the statuses alive as long as the server runs.
        let _reporter = reporter;
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    port
}

/// A gRPC server with no services at all; its port.
async fn bare_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    port
}

async fn probe(port: u16, service: Option<&str>) -> ProbeOutcome {
    let probe = Probe {
        grpc: Some(GRPCAction {
            port: i32::from(port),
            service: service.map(str::to_owned),
            ..Default::default()
        }),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    common::probe_local(&probe)
        .await
        .expect("a gRPC probe always has an outcome")
}

#[tokio::test]
async fn serving_services_pass_and_others_fail_with_upstreams_messages() {
    let port = health_server().await;
    assert_eq!(probe(port, Some("ok.svc")).await, ProbeOutcome::Success);
    assert_eq!(
        probe(port, None).await,
        ProbeOutcome::Success,
        "the server itself"
    );
    assert_eq!(
        probe(port, Some("sick.svc")).await,
        ProbeOutcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    let ProbeOutcome::Failure(unknown) = probe(port, Some("nobody.svc")).await else {
        panic!("an unknown service fails");
    };
    assert!(
        unknown.starts_with("error: health rpc probe failed: rpc error: code = NotFound desc = "),
        "{unknown}"
    );
}

#[tokio::test]
async fn servers_without_health_and_closed_ports_fail() {
    let bare = bare_server().await;
    let ProbeOutcome::Failure(unimplemented) = probe(bare, None).await else {
        panic!("a server without the health service fails");
    };
    assert!(
        unimplemented.starts_with(
            "error: this server does not implement the grpc health protocol \
             (grpc.health.v1.Health):"
        ),
        "{unimplemented}"
    );
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let ProbeOutcome::Failure(refused) = probe(closed, None).await else {
        panic!("nothing listens");
    };
    assert!(
        refused.starts_with(&format!(
            "error: failed to connect service at \"127.0.0.1:{closed}\""
        )),
        "{refused}"
    );
}
