//! The node agent's error type.

use std::path::PathBuf;

/// Result of a node agent operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the node agent. Each names what failed, on which object, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system operation failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `reading`.
        operation: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A kubeconfig could not be read or used.
    #[error("kubeconfig {}: {reason}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A request to the API server got no complete answer within its limit; its
    /// connection is closed, so the next request opens a new one.
    #[error("no complete answer from the API server within {limit:?}")]
    NoAnswer {
        /// The limit, counted from the request's sending.
        limit: std::time::Duration,
    },

    /// A call to the API server failed.
    #[error("{operation}: {source}")]
    Api {
        /// What was being done, e.g. `registering node n1`.
        operation: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },

    /// TLS bootstrapping: a certificate signing request was refused, not issued in time,
    /// or its certificate could not be stored.
    #[error("certificate signing request {name}: {reason}")]
    CertificateRequest {
        /// The request's name (`node-csr-...`).
        name: String,
        /// Why, e.g. `denied (reason: ..., message: ...)`.
        reason: String,
    },

    /// A private key, certificate or certificate request could not be made or read.
    #[error("{what}: {reason}")]
    Certificate {
        /// What was being made or read, e.g. `private key /var/lib/kubelet/pki/...`.
        what: String,
        /// Why.
        reason: String,
    },

    /// Graceful node shutdown cannot be prepared (logind unreachable, the inhibitor
    /// delay too short, ...).
    #[error("graceful node shutdown: {reason}")]
    Shutdown {
        /// Why.
        reason: String,
    },

    /// The pod manager failed (a node shutdown's kills).
    #[error(transparent)]
    PodManager(#[from] kubelet_pod_manager::Error),
}
