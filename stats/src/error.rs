//! The error type of this crate.

use std::path::PathBuf;

/// Why stats could not be gathered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The container runtime failed a call.
    #[error("stats: runtime {operation}: {source}")]
    Runtime {
        /// The runtime call, e.g. `ListContainerStats`.
        operation: &'static str,
        /// The runtime's error.
        #[source]
        source: kubelet_core::Error,
    },

    /// A file of a cgroup, of /proc or of a filesystem could not be read.
    #[error("stats: reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },

    /// A file was read but its content is not what the kernel writes.
    #[error("stats: parsing {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The runtime reported no image filesystem.
    #[error("stats: the runtime reported no image filesystem")]
    NoImageFs,

    /// A blocking task (filesystem walk, cgroup reads) panicked or was cancelled.
    #[error("stats: background task {what}: {source}")]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// The join failure.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Parse {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// True when a file was missing (a cgroup or process that went away, a controller
    /// the kernel does not have).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
