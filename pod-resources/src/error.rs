//! The crate's one error type.

use std::path::PathBuf;

/// Result of serving the PodResources API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the PodResources API could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket (or its directory) could not be made.
    #[error("PodResources socket {}: {source}", path.display())]
    Socket {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The gRPC server failed while serving.
    #[error("serving the PodResources API: {0}")]
    Serve(#[from] tonic::transport::Error),
}
