//! The error type shared by the extension traits.

use std::fmt;
use std::time::Duration;

/// Result of a kubelet-core operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a runtime operation failed, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuntimeErrorKind {
    /// The runtime does not know the object (sandbox, container, image).
    NotFound,
    /// The runtime could not be reached or refused the connection; worth retrying later.
    Unavailable,
    /// The call did not finish within its deadline.
    DeadlineExceeded,
    /// The object already exists (for example a sandbox name reused).
    AlreadyExists,
    /// The runtime rejected the request as malformed.
    InvalidArgument,
    /// The runtime does not implement the call.
    Unimplemented,
    /// The registry or runtime refused the credentials.
    Unauthenticated,
    /// Any other failure reported by the runtime.
    Other,
}

impl fmt::Display for RuntimeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::NotFound => "not found",
            Self::Unavailable => "runtime unavailable",
            Self::DeadlineExceeded => "deadline exceeded",
            Self::AlreadyExists => "already exists",
            Self::InvalidArgument => "invalid argument",
            Self::Unimplemented => "not implemented by the runtime",
            Self::Unauthenticated => "unauthenticated",
            Self::Other => "failed",
        };
        f.write_str(text)
    }
}

/// A failed call to the container runtime, naming the operation, the object and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} {object}: {kind}: {message}")]
pub struct RuntimeError {
    /// The runtime operation, e.g. `RunPodSandbox`.
    pub operation: &'static str,
    /// The object the operation was about (sandbox or container id, image name), or `-`.
    pub object: String,
    /// The class of failure.
    pub kind: RuntimeErrorKind,
    /// The runtime's own message.
    pub message: String,
    /// The deadline that was exceeded, for [`RuntimeErrorKind::DeadlineExceeded`].
    pub timeout: Option<Duration>,
}

/// Errors returned through the kubelet-core extension traits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The container runtime failed a call.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    /// A value handed to an extension point is not acceptable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid, e.g. `container name "A"`.
        what: String,
        /// Why.
        reason: String,
    },

    /// A volume could not be set up or torn down.
    #[error("volume {volume:?}: {reason}")]
    Volume {
        /// The volume's name in the pod spec.
        volume: String,
        /// Why it failed.
        reason: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A probe could not be run (as opposed to running and failing).
    #[error("probe of container {container:?}: {reason}")]
    Probe {
        /// The container being probed.
        container: String,
        /// Why the probe could not run.
        reason: String,
    },

    /// A pod status could not be reported.
    #[error("reporting status of pod {pod}: {reason}")]
    Status {
        /// `namespace/name` of the pod.
        pod: String,
        /// Why.
        reason: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// The runtime failure kind, when this error came from the runtime.
    pub fn runtime_kind(&self) -> Option<RuntimeErrorKind> {
        match self {
            Self::Runtime(e) => Some(e.kind),
            _ => None,
        }
    }

    /// True when the runtime reported that the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.runtime_kind() == Some(RuntimeErrorKind::NotFound)
    }

    /// True when the runtime could not be reached.
    pub fn is_unavailable(&self) -> bool {
        self.runtime_kind() == Some(RuntimeErrorKind::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_error_names_operation_object_and_cause() {
        let err = Error::from(RuntimeError {
            operation: "ContainerStatus",
            object: "abc123".into(),
            kind: RuntimeErrorKind::NotFound,
            message: "no such container".into(),
            timeout: None,
        });
        assert_eq!(
            err.to_string(),
            "ContainerStatus abc123: not found: no such container"
        );
        assert!(err.is_not_found());
        assert!(!err.is_unavailable());
    }
}
