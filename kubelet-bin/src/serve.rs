//! The read-only HTTP endpoints of standalone mode: `/pods` and `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kubelet_pod_manager::LocalPods;
use tokio::net::TcpListener;

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn route(pods: &LocalPods, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != hyper::Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match request.uri().path() {
        "/pods" | "/pods/" => match pods.pod_list_json() {
            Ok(json) => respond(StatusCode::OK, "application/json", json),
            Err(e) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
            ),
        },
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok".into()),
        path => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("404 page not found: {path}\n"),
        ),
    }
}

/// Serves the endpoints on `address` until the task is dropped.
pub async fn serve(address: SocketAddr, pods: Arc<LocalPods>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {address} for /pods: {e}"))?;
    tracing::info!(%address, "serving /pods and /healthz");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                continue;
            }
        };
        let pods = pods.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = route(&pods, &request);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
}
