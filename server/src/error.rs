//! The kubelet API server's error type.

use std::net::SocketAddr;

/// Result of a kubelet API server operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the kubelet API server; each names what failed and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting of the configuration cannot be served as given.
    #[error("{field}: {reason}")]
    Config {
        /// The field, with its flag, e.g. `healthzPort (--healthz-port)`.
        field: &'static str,
        /// Why.
        reason: String,
    },

    /// A listening socket could not be opened.
    #[error("listening on {address} for {what}: {source}")]
    Listen {
        /// What was to be served there, e.g. `the kubelet API`.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The TLS configuration (serving certificate, key, client CA bundle) could not be
    /// made or read.
    #[error("{what}: {source}")]
    Tls {
        /// What was being made or read, e.g. `reading the serving key /etc/kubelet.key`.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Names what was being done when a TLS step failed, keeping its error as the source.
pub(crate) trait TlsContext<T> {
    /// `what` as the message.
    fn context(self, what: &str) -> Result<T>;
    /// The message computed only on failure.
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> TlsContext<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> Result<T> {
        self.with_context(|| what.to_owned())
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Tls {
            what: what(),
            source: Box::new(e),
        })
    }
}

/// A certificate file (`what`) that parsed but holds no certificate.
pub(crate) fn tls_failure(what: String) -> Error {
    Error::Tls {
        what,
        source: "it holds no certificate".into(),
    }
}
