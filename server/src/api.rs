//! The kubelet API on `address:port` and `/healthz` on `healthzBindAddress:healthzPort`:
//! settings from the configuration, the TLS accept loop, and each request through
//! authentication, authorization and its endpoint.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use kubelet_core::config::{GoDuration, KubeletConfiguration};
use kubelet_core::metrics::kubelet::KubeletMetrics;
use tokio::net::TcpListener;

use crate::accept::{Admission, Limits, accept_loop, bind};
use crate::auth::{Authenticator, Authn, Authorizer, AuthzMode, Decision, TokenAuth, UserInfo};
use crate::routes::{ApiBody, DEBUG_FLAGS_PATH, Endpoints, text};
use crate::tls::{ServingCert, TlsOptions};
use crate::{Error, Result, reviews, stream, tls};

/// Connections served at once (more wait to be accepted); of them, how many may not
/// have authenticated yet, all together and from one address: past that, the oldest
/// unauthenticated one is closed, so unauthenticated clients never keep the API server
/// (a client certificate) or metrics scrapers (a reviewed token) out.
const LIMITS: Limits = Limits {
    total: 512,
    unauthenticated: 128,
    per_source: 32,
};
/// `/healthz` has no authentication: every connection is "unauthenticated".
const HEALTHZ_LIMITS: Limits = Limits {
    total: 128,
    unauthenticated: 128,
    per_source: 32,
};
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How the kubelet API is served, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `address:port`; `None` when `enableServer` is false.
    pub address: Option<SocketAddr>,
    /// `healthzBindAddress:healthzPort`; `None` when `healthzPort` is 0.
    pub healthz: Option<SocketAddr>,
    /// The serving certificate.
    pub serving: ServingCert,
    /// `authentication.x509.clientCAFile`.
    pub client_ca: Option<PathBuf>,
    /// `authentication.anonymous.enabled`.
    pub anonymous: bool,
    /// `authentication.webhook.enabled`.
    pub token_webhook: bool,
    /// `authentication.webhook.cacheTTL`.
    pub token_ttl: Duration,
    /// `authorization.mode` is `Webhook` (else `AlwaysAllow`).
    pub authz_webhook: bool,
    /// `authorization.webhook.cacheAuthorizedTTL`.
    pub allowed_ttl: Duration,
    /// `authorization.webhook.cacheUnauthorizedTTL`.
    pub denied_ttl: Duration,
    /// The node's name (the `nodes` object requests are authorized on).
    pub node_name: String,
    /// `tlsMinVersion`, `tlsCipherSuites`, `tlsCurvePreferences`.
    pub tls: TlsOptions,
    /// How often the certificate files and the client CA bundle are looked at for
    /// changes (upstream's dynamic certificates: a minute).
    pub cert_reload_interval: Duration,
}

/// How often the TLS files are looked at for changes, as upstream's file refresh.
pub const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

impl Settings {
    /// The settings of the configuration `c`, served on `address` (`address:port`,
    /// as resolved from the configuration and flags); the self-signed certificate goes
    /// under `<root_dir>/pki`.
    pub fn from_config(
        c: &KubeletConfiguration,
        address: SocketAddr,
        root_dir: &Path,
        node_name: &str,
        node_ips: &[IpAddr],
    ) -> Result<Self> {
        let path = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
        let serving = match (path(&c.tls_cert_file), path(&c.tls_private_key_file)) {
            (Some(cert), Some(key)) => ServingCert::Files { cert, key },
            (None, None) => ServingCert::SelfSigned {
                dir: root_dir.join("pki"),
                node_name: node_name.to_owned(),
                ips: node_ips.to_vec(),
            },
            _ => {
                return Err(Error::Config {
                    field: "tlsCertFile (--tls-cert-file)",
                    reason: "tlsCertFile and tlsPrivateKeyFile (--tls-private-key-file) must be \
                             set together"
                        .to_owned(),
                });
            }
        };
        let healthz = match c.healthz_port {
            Some(port) if port != 0 => {
                let ip: IpAddr = c.healthz_bind_address.parse().map_err(|_| Error::Config {
                    field: "healthzBindAddress (--healthz-bind-address)",
                    reason: format!("{:?} is not an IP address", c.healthz_bind_address),
                })?;
                let port = u16::try_from(port).map_err(|e| Error::Config {
                    field: "healthzPort (--healthz-port)",
                    reason: e.to_string(),
                })?;
                Some(SocketAddr::new(ip, port))
            }
            _ => None,
        };
        let ttl = |d: GoDuration| d.to_std().unwrap_or_default();
        let (tls, warnings) = TlsOptions::from_config(
            &c.tls_min_version,
            &c.tls_cipher_suites,
            &c.tls_curve_preferences,
        )?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        Ok(Self {
            address: (c.enable_server != Some(false)).then_some(address),
            healthz,
            serving,
            client_ca: path(&c.authentication.x509.client_ca_file),
            anonymous: c.authentication.anonymous.enabled == Some(true),
            token_webhook: c.authentication.webhook.enabled == Some(true),
            token_ttl: ttl(c.authentication.webhook.cache_ttl),
            authz_webhook: c.authorization.mode != "AlwaysAllow",
            allowed_ttl: ttl(c.authorization.webhook.cache_authorized_ttl),
            denied_ttl: ttl(c.authorization.webhook.cache_unauthorized_ttl),
            node_name: node_name.to_owned(),
            tls,
            cert_reload_interval: CERT_RELOAD_INTERVAL,
        })
    }
}

/// What a connection's requests are checked and answered with.
struct Api {
    authn: Authenticator,
    authz: Authorizer,
    endpoints: Endpoints,
}

impl Api {
    fn new(settings: &Settings, endpoints: Endpoints, client: Option<kube::Client>) -> Self {
        let reviews = client.map(reviews::ApiReviews::new);
        let tokens = match (&reviews, settings.token_webhook) {
            (_, false) => TokenAuth::Disabled,
            (None, true) => TokenAuth::NoApiServer,
            (Some(r), true) => TokenAuth::Webhook {
                reviewer: Arc::new(r.clone()),
                ttl: settings.token_ttl,
            },
        };
        let mode = match (&reviews, settings.authz_webhook) {
            (_, false) => AuthzMode::AlwaysAllow,
            (None, true) => AuthzMode::NoApiServer,
            (Some(r), true) => AuthzMode::Webhook {
                reviewer: Arc::new(r.clone()),
                allowed_ttl: settings.allowed_ttl,
                denied_ttl: settings.denied_ttl,
            },
        };
        if settings.token_webhook && reviews.is_none() {
            tracing::warn!(
                "authentication.webhook is enabled but there is no API server (--kubeconfig): bearer tokens are refused"
            );
        }
        if settings.authz_webhook && reviews.is_none() {
            tracing::warn!(
                "authorization.mode is Webhook but there is no API server (--kubeconfig): every request to the kubelet API is refused; use authorization.mode AlwaysAllow on a standalone kubelet"
            );
        }
        let authn = Authenticator::new(tokens, settings.anonymous);
        if settings.client_ca.is_none() && !authn.accepts_tokens() && !settings.anonymous {
            tracing::info!(
                "the kubelet API has no way to authenticate requests (no authentication.x509.clientCAFile, \
                 no webhook token authentication, anonymous requests off): every request gets 401"
            );
        }
        Self {
            authn,
            authz: Authorizer::new(mode, settings.node_name.clone()),
            endpoints,
        }
    }

    /// Authenticates, authorizes and answers one request, as upstream's filter chain.
    async fn handle(
        &self,
        request: Request<Incoming>,
        cert_user: Option<&UserInfo>,
        peer: SocketAddr,
        admission: &Admission,
    ) -> Response<ApiBody> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let labels = request_metric_labels(method.as_str(), &path);
        let labels = [labels.0, labels.1.as_str(), "readwrite", labels.2];
        let metrics = &self.endpoints.metrics;
        metrics.http_requests_total.inc(&labels);
        metrics.http_inflight_requests.add(&labels, 1.0);
        let response = self.authorized(request, cert_user, peer, admission).await;
        metrics.http_inflight_requests.add(&labels, -1.0);
        response
    }

    async fn authorized(
        &self,
        request: Request<Incoming>,
        cert_user: Option<&UserInfo>,
        peer: SocketAddr,
        admission: &Admission,
    ) -> Response<ApiBody> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let authorization = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // A client that did not authenticate gets its answer and the connection closed:
        // it cannot hold a connection open with a failing request now and then.
        let closing = |mut response: Response<ApiBody>| {
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            response
        };
        let user = match self
            .authn
            .authenticate(peer.ip(), cert_user, authorization)
            .await
        {
            Authn::User(user) => {
                if user.name != crate::auth::ANONYMOUS_USER {
                    admission.authenticated();
                }
                user
            }
            Authn::TooManyReviews => {
                tracing::debug!(%method, %path, %peer, "too many token reviews from this source");
                let mut response = text(
                    StatusCode::TOO_MANY_REQUESTS,
                    "text/plain; charset=utf-8",
                    "Too many requests, please try again later.\n",
                );
                response.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("1"),
                );
                return closing(response);
            }
            Authn::Unauthorized { why, hint } => {
                tracing::debug!(%method, %path, why, "unauthorized");
                let body = match hint {
                    Some(hint) => format!("Unauthorized: {hint}\n"),
                    None => "Unauthorized\n".to_owned(),
                };
                return closing(text(
                    StatusCode::UNAUTHORIZED,
                    "text/plain; charset=utf-8",
                    body,
                ));
            }
        };
        match self.authz.authorize(&user, method.as_str(), &path).await {
            Decision::Allow => {}
            Decision::Forbidden(body) => {
                tracing::debug!(user = %user.name, %method, %path, "forbidden");
                return text(StatusCode::FORBIDDEN, "text/plain; charset=utf-8", body);
            }
            Decision::Error(body) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    body,
                );
            }
        }
        let response = if let Some(refusal) = self.endpoints.handlers.refusal(&path) {
            refusal
        } else if path == DEBUG_FLAGS_PATH {
            self.endpoints.debug_flags(request).await
        } else if stream::is_stream_path(&path) {
            self.endpoints.stream(request, peer, &user.name).await
        } else {
            self.endpoints
                .route(&method, &path, request.uri().query())
                .await
        };
        tracing::debug!(user = %user.name, %method, %path, status = %response.status(), "kubelet API request");
        response
    }
}

/// Upstream's HTTP metric labels of a request: the method (or `other`), the path's
/// bucket (its first segment, two for `metrics/...`, or `other`) and whether it is
/// long-running (`exec`, `attach`; upstream's map spells `portforward` in lower case,
/// so port forwarding is not counted as long-running there either).
pub(crate) fn request_metric_labels(
    method: &str,
    path: &str,
) -> (&'static str, String, &'static str) {
    const METHODS: [&str; 8] = [
        "OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT",
    ];
    const BUCKETS: [&str; 19] = [
        "flagz",
        "statusz",
        "healthz",
        "pods",
        "stats",
        "metrics",
        "metrics/cadvisor",
        "metrics/probes",
        "metrics/resource",
        "run",
        "exec",
        "attach",
        "portForward",
        "containerLogs",
        "configz",
        "allocatedPods",
        "runningpods",
        "checkpoint",
        "logs",
    ];
    let method = METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other");
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
    let root = match parts.as_slice() {
        ["metrics", second, ..] => format!("metrics/{second}"),
        [first, ..] => (*first).to_owned(),
        [] => path.to_owned(),
    };
    let bucket = if BUCKETS.contains(&root.as_str()) {
        root
    } else {
        "other".to_owned()
    };
    let long_running = if matches!(bucket.as_str(), "exec" | "attach") {
        "true"
    } else {
        "false"
    };
    (method, bucket, long_running)
}

/// Serves the kubelet API until the task is dropped; `client` is the API server for
/// the webhook modes (none when standalone). Fails when the address cannot be bound or
/// the certificates cannot be read.
pub async fn serve_api(
    settings: Settings,
    endpoints: Endpoints,
    client: Option<kube::Client>,
) -> Result<()> {
    let Some(address) = settings.address else {
        return std::future::pending().await;
    };
    let tls = tls::server_config(
        &settings.serving,
        settings.client_ca.as_deref(),
        &settings.tls,
    )
    .await?;
    let listener = bind(address, "the kubelet API").await?;
    serve_api_on(listener, tls, &settings, endpoints, client).await
}

/// Serves the kubelet API on `listener` with `tls`, reloading its files as they change.
async fn serve_api_on(
    listener: TcpListener,
    tls: tls::ServingTls,
    settings: &Settings,
    endpoints: Endpoints,
    client: Option<kube::Client>,
) -> Result<()> {
    let interval = settings.cert_reload_interval;
    tokio::select! {
        served = accept_api(listener, tls.config, settings, endpoints, client) => served,
        () = tls.reloader.run(interval) => Ok(()),
    }
}

/// Accepts and answers kubelet API connections on `listener` with `tls`.
async fn accept_api(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    settings: &Settings,
    endpoints: Endpoints,
    client: Option<kube::Client>,
) -> Result<()> {
    let address = listener.local_addr().map_err(|source| Error::Listen {
        what: "the kubelet API",
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    if client.is_some() && address.ip().is_loopback() {
        tracing::warn!(%address, "the kubelet API listens on loopback only: the API server cannot reach it (kubectl logs); set address (--address), e.g. 0.0.0.0");
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let api = Arc::new(Api::new(settings, endpoints, client));
    tracing::info!(%address, client_ca = ?settings.client_ca, anonymous = settings.anonymous,
        token_webhook = settings.token_webhook, authorization = if settings.authz_webhook { "Webhook" } else { "AlwaysAllow" },
        "serving the kubelet API (HTTPS)");
    accept_loop(listener, LIMITS, |stream, peer, admission| {
        let acceptor = acceptor.clone();
        let api = api.clone();
        async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| tls::certificate_user(cert));
            if cert_user.is_some() {
                admission.authenticated();
            }
            let cert_user = Arc::new(cert_user);
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let api = api.clone();
                let cert_user = cert_user.clone();
                let admission = admission.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        api.handle(request, cert_user.as_ref().as_ref(), peer, &admission)
                            .await,
                    )
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, error = %e, "kubelet API connection ended");
            }
        }
    })
    .await;
    Ok(())
}

/// Serves `/healthz` and `/healthz/ping` (plain HTTP, no authentication) on `address`
/// until the task is dropped, as upstream's default health handler; each run of
/// `/healthz` is recorded in `metrics`.
pub async fn serve_healthz(address: SocketAddr, metrics: Arc<KubeletMetrics>) -> Result<()> {
    let ping = Arc::new(crate::Healthz::ping(metrics));
    let listener = bind(address, "/healthz").await?;
    tracing::info!(%address, "serving /healthz");
    accept_loop(listener, HEALTHZ_LIMITS, |stream, peer, _admission| {
        let ping = ping.clone();
        async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let ping = ping.clone();
                async move {
                    let uri = request.uri();
                    let response = ping.serve(uri.path(), uri.query()).unwrap_or_else(|| {
                        text(
                            StatusCode::NOT_FOUND,
                            "text/plain; charset=utf-8",
                            "404 page not found\n",
                        )
                    });
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "healthz connection ended");
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests;
