//! The read-only port (`readOnlyPort`, off unless configured): plain HTTP without
//! authentication, serving what upstream's read-only server serves, its handlers that
//! need no authorization: `/healthz` and its checks, `/pods`, `/stats/summary`,
//! `/metrics`, `/metrics/probes`, `/metrics/resource`, `/metrics/slis` (and
//! `/metrics/cadvisor`, not built yet). The debugging paths (logs, exec, attach,
//! port-forward, `/runningpods`, ...) answer as upstream's disabled debugging handlers;
//! `/configz` and the rest stay on the authenticated port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::Result;
use crate::accept::{Limits, accept_loop, bind};
use crate::api::request_metric_labels;
use crate::routes::{ApiBody, Endpoints, Handlers, text};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// Connections served at once (more wait to be accepted), all unauthenticated: one
/// address holds at most `per_source`, and past `unauthenticated` the oldest makes room.
const LIMITS: Limits = Limits {
    total: 128,
    unauthenticated: 128,
    per_source: 32,
};
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The paths the read-only port serves.
fn served(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/pods"
            | "/pods/"
            | "/stats/summary"
            | "/metrics"
            | "/metrics/cadvisor"
            | "/metrics/probes"
            | "/metrics/resource"
            | "/metrics/slis"
    ) || path.starts_with("/healthz/")
}

/// The read-only server has no debugging handlers: their paths answer as disabled.
const HANDLERS: Handlers = Handlers {
    debugging: false,
    system_log: false,
    profiling: false,
    debug_flags: false,
};

async fn route(endpoints: &Endpoints, request: &Request<Incoming>) -> Response<ApiBody> {
    let (method, path) = (request.method(), request.uri().path());
    let labels = request_metric_labels(method.as_str(), path);
    let labels = [labels.0, labels.1.as_str(), "readonly", labels.2];
    let metrics = &endpoints.metrics;
    metrics.http_requests_total.inc(&labels);
    if let Some(refused) = HANDLERS.refusal(path) {
        return refused;
    }
    if !served(path) {
        return text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n",
        );
    }
    metrics.http_inflight_requests.add(&labels, 1.0);
    let response = endpoints.route(method, path, request.uri().query()).await;
    metrics.http_inflight_requests.add(&labels, -1.0);
    response
}

/// Serves the read-only endpoints on `address` until the task is dropped.
pub async fn serve_read_only(address: SocketAddr, endpoints: Endpoints) -> Result<()> {
    let listener = bind(address, "the read-only port").await?;
    tracing::warn!(%address, "serving the read-only port: /pods, /healthz, /stats/summary and /metrics without authentication");
    let endpoints = Arc::new(endpoints);
    accept_loop(listener, LIMITS, |stream, peer, _admission| {
        let endpoints = endpoints.clone();
        async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&endpoints, &request).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "read-only port connection ended");
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_upstreams_default_handlers_are_read_only() {
        for path in [
            "/healthz",
            "/healthz/syncloop",
            "/pods",
            "/stats/summary",
            "/metrics/resource",
            "/metrics/slis",
        ] {
            assert!(served(path), "{path}");
            assert!(HANDLERS.refusal(path).is_none(), "{path}");
        }
        for path in ["/configz", "/configzz", "/debug/flags/v", "/allocatedPods"] {
            assert!(!served(path), "{path}");
        }
        for path in [
            "/containerLogs/ns/pod/c",
            "/exec/ns/pod/c",
            "/logs/",
            "/runningpods/",
        ] {
            let refused = HANDLERS.refusal(path).expect("refused");
            assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        }
    }
}
