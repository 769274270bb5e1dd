//! The crate's one error type.

use std::path::PathBuf;

/// Result of the device manager's own operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the device manager could not start or serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the device plugin directory could not be read or written.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `reading`.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The registration server failed.
    #[error("serving device plugin registration: {0}")]
    Serve(#[from] tonic::transport::Error),
}
