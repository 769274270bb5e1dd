//! The eviction manager's error type.

/// Result of an eviction operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the eviction manager's configuration. Each names the configuration field,
/// the signal and why, so a node's operator knows what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A threshold, grace period or minimum reclaim that does not parse or is out of range.
    #[error("{field}: {reason}")]
    Threshold {
        /// The configuration field, e.g. `evictionHard`.
        field: &'static str,
        /// Why, with upstream's wording, e.g. `eviction percentage threshold
        /// memory.available must be <= 100%: 120%`.
        reason: String,
    },
}
