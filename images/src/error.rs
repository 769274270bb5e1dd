//! Image garbage collection's error type.

/// Result of an image GC operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of image garbage collection; each says what failed and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime failed a call (listing images or containers, removing an image).
    #[error(transparent)]
    Runtime(#[from] kubelet_core::Error),
    /// The policy's thresholds are out of range.
    #[error("{0}")]
    Policy(String),
    /// The runtime reported no image filesystem.
    #[error("the runtime reported no image filesystem")]
    NoImageFs,
    /// The image filesystem could not be measured.
    #[error("measuring the image filesystem {path}: {reason}")]
    Stat {
        /// Its mount point.
        path: String,
        /// Why.
        reason: String,
    },
    /// The image filesystem reported a capacity of 0.
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    /// Some images could not be removed.
    #[error("{0}")]
    Removal(String),
    /// Removing every unused image did not bring usage down to the low threshold.
    #[error("{0}")]
    FreeDiskSpaceFailed(String),
}
