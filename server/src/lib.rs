//! The kubelet API server of a Rust kubelet: what `kubectl logs`, `exec`, `attach`,
//! `port-forward`, `top` and metrics-server talk to.
//!
//! - [`serve_api`]: the kubelet API on `address:port` (10250): HTTPS with rustls, every
//!   request authenticated (client certificates of `authentication.x509.clientCAFile`,
//!   bearer tokens through TokenReview, anonymous only when enabled) and authorized as
//!   upstream's `nodes/<subresource>` (SubjectAccessReview or AlwaysAllow), each with a
//!   bounded TTL cache.
//! - [`Endpoints`]: what an authorized request is answered with: `/healthz` and its checks
//!   ([`Healthz`]), `/pods`, `/runningpods`, `/configz`, `/containerLogs`,
//!   `/stats/summary`, `/metrics`, `/metrics/probes`, `/metrics/resource`,
//!   `/metrics/slis`, `/logs/`; `/exec`, `/attach` and
//!   `/portForward` are proxied to the runtime's streaming server (SPDY and WebSocket
//!   upgrades alike).
//! - [`serve_read_only`]: the read-only port (`readOnlyPort`): upstream's default
//!   handlers without authentication.
//! - [`serve_healthz`]: `/healthz` and `/healthz/ping` over plain HTTP on
//!   `healthzBindAddress:healthzPort`.
//!
//! Unlike upstream, anonymous requests are refused unless
//! `authentication.anonymous.enabled` (or `--anonymous-auth`) says otherwise, also for a
//! kubelet started from flags alone (upstream's flag default allows them, with
//! `AlwaysAllow`). Without an API server client the webhook modes have no one to ask: the
//! server still starts, and the requests that would need one get a 401 or 403 that says
//! so.
//!
//! # Example
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use kubelet_core::config::KubeletConfiguration;
//! use kubelet_server::{Endpoints, Settings, serve_api};
//!
//! async fn run(endpoints: Endpoints, client: kube::Client) -> kubelet_server::Result<()> {
//!     let config = KubeletConfiguration::defaulted();
//!     let address: SocketAddr = "0.0.0.0:10250".parse().expect("an address");
//!     let ips = ["10.0.0.5".parse().expect("an IP")];
//!     let settings = Settings::from_config(&config, address, "/var/lib/kubelet".as_ref(), "node-1", &ips)?;
//!     serve_api(settings, endpoints, Some(client)).await
//! }
//! ```

mod accept;
mod api;
mod auth;
mod cache;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod healthz;
mod node_logs;
mod read_only;
mod reviews;
mod routes;
mod stream;
mod tls;

pub use api::{Settings, serve_api, serve_healthz};
pub use error::{Error, Result};
pub use healthz::{HealthCheck, Healthz};
pub use read_only::serve_read_only;
pub use routes::{ApiBody, Endpoints, Handlers, VerbositySetter, text};
pub use tls::{ServingCert, ServingResolver, TlsOptions};
