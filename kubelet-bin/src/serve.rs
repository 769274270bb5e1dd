//! The read-only HTTP endpoints: `/pods`, `/healthz` and `/configz`.

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

fn route(
    pods: &LocalPods,
    configz: &str,
    method: &hyper::Method,
    path: &str,
) -> Response<Full<Bytes>> {
    if method != hyper::Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match path {
        "/pods" | "/pods/" => match pods.pod_list_json() {
            Ok(json) => respond(StatusCode::OK, "application/json", json),
            Err(e) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
            ),
        },
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok".into()),
        "/configz" => respond(StatusCode::OK, "application/json", configz.to_owned()),
        path => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("404 page not found: {path}\n"),
        ),
    }
}

/// Serves the endpoints on `address` until the task is dropped; `configz` is the JSON
/// body of `/configz`.
pub async fn serve(
    address: SocketAddr,
    pods: Arc<LocalPods>,
    configz: Arc<String>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {address} for /pods: {e}"))?;
    tracing::info!(%address, "serving /pods, /healthz and /configz");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                continue;
            }
        };
        let pods = pods.clone();
        let configz = configz.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = route(&pods, &configz, request.method(), request.uri().path());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn configz_is_served_as_json() {
        use http_body_util::BodyExt;
        let pods = LocalPods::new();
        let configz = r#"{"kubeletconfig":{"maxPods":110}}"#;
        let response = route(&pods, configz, &hyper::Method::GET, "/configz");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get(hyper::header::CONTENT_TYPE),
            Some(&hyper::header::HeaderValue::from_static("application/json"))
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, configz.as_bytes());
        let response = route(&pods, configz, &hyper::Method::POST, "/configz");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let response = route(&pods, configz, &hyper::Method::GET, "/configzz");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
