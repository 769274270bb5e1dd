//! The crate's one error type.

use std::path::PathBuf;

/// Result of the plugin manager's own operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the plugin manager could not watch its directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The plugin directory could not be made, read or watched.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `watching`.
        operation: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(
        operation: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            operation,
            path: path.to_owned(),
            source,
        }
    }
}
