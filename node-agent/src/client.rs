//! Clients of the API server, built the one way for every kind of credential: the
//! kubeconfig's own (certificate files, tokens, exec plugins) or a rotating client
//! certificate ([`crate::rotation::client_with_certificate`]).

use std::path::Path;
use std::time::Duration;

use kube::client::ConfigExt;

use crate::{Connections, DeadlineLayer, Error, Result, Throttle, ThrottleLayer};

/// How a client bounds its requests; a client without one (for watches) waits for as
/// long as an answer lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestBound {
    /// Each request's whole answer must come within this of its sending, or the request
    /// fails and its connection is closed ([`DeadlineLayer`]).
    pub deadline: Duration,
    /// At most this many connections wait open between requests. A connection gone
    /// half-open (no reset, no answer) is found only by a request on it failing its
    /// deadline, so each one kept can cost one deadline once the network path breaks;
    /// each one not kept costs a new connection and TLS handshake when requests
    /// overlap.
    pub idle_connections: usize,
}

/// How a client is made beyond what its kubeconfig says.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Each request's bound; none for a client of watches (their own idle timeout finds
    /// dead connections).
    pub bound: Option<RequestBound>,
    /// Where its connections are, to be closed with the others'.
    pub connections: Connections,
    /// The rate limit its requests keep to, if any (shared with the clients given the
    /// same one).
    pub throttle: Option<Throttle>,
}

/// A client for the API server from a kubeconfig file (client certificates, tokens and
/// the CA as written there), made as `options` say.
pub async fn client_from_kubeconfig(path: &Path, options: &ClientOptions) -> Result<kube::Client> {
    let config = load(path).await?;
    let tls = config
        .rustls_client_config()
        .map_err(|e| invalid(path, e.to_string()))?;
    build(config, tls, options).map_err(|reason| invalid(path, reason))
}

/// The client configuration a kubeconfig file describes (its current context).
pub(crate) async fn load(path: &Path) -> Result<kube::Config> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|e| invalid(path, e.to_string()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| invalid(path, e.to_string()))
}

/// The kubeconfig at `path` cannot be used, for `reason`.
pub(crate) fn invalid(path: &Path, reason: String) -> Error {
    Error::Kubeconfig {
        path: path.to_owned(),
        reason,
    }
}

/// A client for `config`'s server over `tls`, authenticating with `config`'s token or
/// basic auth when it has one (a client certificate is `tls`'s), made as `options` say.
/// Errors are a reason to name with the kubeconfig.
pub(crate) fn build(
    config: kube::Config,
    tls: rustls::ClientConfig,
    options: &ClientOptions,
) -> std::result::Result<kube::Client, String> {
    use tower::ServiceBuilder;
    if let Some(proxy) = &config.proxy_url {
        return Err(format!("proxy-url {proxy} is not supported"));
    }
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| format!("tls-server-name {name:?}: {e}"))?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let mut connector =
        hyper_timeout::TimeoutConnector::new(https.enable_http1().wrap_connector(http));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_write_timeout(config.write_timeout);
    let mut pool =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    if let Some(bound) = options.bound {
        pool.pool_max_idle_per_host(bound.idle_connections);
    }
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        pool.build(options.connections.connector(connector));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| {
            tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
        }))
        .option_layer(config.auth_layer().map_err(|e| e.to_string())?)
        .layer(config.extra_headers_layer().map_err(|e| e.to_string())?)
        .map_err(|e: hyper_util::client::legacy::Error| -> tower::BoxError { Box::new(e) })
        .service(client);
    let builder = kube::client::ClientBuilder::new(service, config.default_namespace);
    // The rate limit outside the deadline: a request's deadline runs from its sending,
    // not from when it began waiting for its token.
    Ok(match (options.bound, options.throttle.clone()) {
        (Some(bound), Some(throttle)) => builder
            .with_layer(&DeadlineLayer::new(bound.deadline))
            .with_layer(&ThrottleLayer::new(throttle))
            .build(),
        (Some(bound), None) => builder
            .with_layer(&DeadlineLayer::new(bound.deadline))
            .build(),
        (None, Some(throttle)) => builder.with_layer(&ThrottleLayer::new(throttle)).build(),
        (None, None) => builder.build(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_refused_by_name() {
        let mut config = kube::Config::new("https://10.0.0.1:6443".parse().expect("url"));
        config.proxy_url = Some("http://proxy:3128".parse().expect("url"));
        let tls = config.rustls_client_config().expect("TLS configuration");
        let Err(e) = build(config, tls, &ClientOptions::default()) else {
            panic!("a proxy is not supported");
        };
        assert_eq!(e, "proxy-url http://proxy:3128/ is not supported");
    }
}
