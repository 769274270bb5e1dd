//! Errors of CRI calls: which call failed, on which object, and why.

use std::time::Duration;

use kubelet_core::{RuntimeError, RuntimeErrorKind};
use tonic::Code;

/// Result of a CRI call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed CRI call. Every variant names the RPC (`call`) and the object it was about
/// (`object`: a sandbox or container id, an image, or `-`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint given is not a usable CRI address.
    #[error("invalid CRI endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// The runtime does not know the object.
    #[error("{call} {object}: not found: {message}")]
    NotFound {
        /// The RPC, e.g. `ContainerStatus`.
        call: &'static str,
        /// The object.
        object: String,
        /// The runtime's message.
        message: String,
    },

    /// The runtime could not be reached (socket missing, connection refused or reset).
    /// The client reconnects on the next call.
    #[error("{call} {object}: runtime unavailable: {message}")]
    Unavailable {
        /// The RPC.
        call: &'static str,
        /// The object.
        object: String,
        /// What the transport reported.
        message: String,
    },

    /// The runtime did not answer within the call's deadline.
    #[error("{call} {object}: no answer within {timeout:?}")]
    DeadlineExceeded {
        /// The RPC.
        call: &'static str,
        /// The object.
        object: String,
        /// The deadline that passed.
        timeout: Duration,
    },

    /// The runtime answered with another gRPC error.
    #[error("{call} {object}: {code:?}: {message}")]
    Rpc {
        /// The RPC.
        call: &'static str,
        /// The object.
        object: String,
        /// gRPC status code.
        code: Code,
        /// The runtime's message.
        message: String,
    },

    /// The runtime answered without a field the CRI contract requires.
    #[error("{call} {object}: the runtime's response has no {missing}")]
    IncompleteResponse {
        /// The RPC.
        call: &'static str,
        /// The object.
        object: String,
        /// The missing field.
        missing: &'static str,
    },
}

/// A field the CRI contract requires in a response, or [`Error::IncompleteResponse`].
pub(crate) fn required<T>(
    value: Option<T>,
    call: &'static str,
    object: &str,
    missing: &'static str,
) -> Result<T> {
    value.ok_or_else(|| Error::IncompleteResponse {
        call,
        object: object.to_owned(),
        missing,
    })
}

impl Error {
    /// Classifies a gRPC status returned by `call` on `object`.
    pub(crate) fn from_status(
        call: &'static str,
        object: &str,
        status: &tonic::Status,
        timeout: Duration,
    ) -> Self {
        let object = object.to_owned();
        let message = status_message(status);
        match status.code() {
            Code::NotFound => Self::NotFound {
                call,
                object,
                message,
            },
            Code::Unavailable => Self::Unavailable {
                call,
                object,
                message,
            },
            // tonic reports a connect failure to a missing socket as Unknown with a
            // transport error; it is the same situation as a refused connection.
            Code::Unknown if is_transport_failure(status) => Self::Unavailable {
                call,
                object,
                message,
            },
            Code::DeadlineExceeded | Code::Cancelled if timeout > Duration::ZERO => {
                Self::DeadlineExceeded {
                    call,
                    object,
                    timeout,
                }
            }
            code => Self::Rpc {
                call,
                object,
                code,
                message,
            },
        }
    }

    /// The RPC that failed, when the error came from one.
    pub fn call(&self) -> Option<&'static str> {
        match self {
            Self::InvalidEndpoint { .. } => None,
            Self::NotFound { call, .. }
            | Self::Unavailable { call, .. }
            | Self::DeadlineExceeded { call, .. }
            | Self::Rpc { call, .. }
            | Self::IncompleteResponse { call, .. } => Some(call),
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// True for [`Error::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// The status message with the transport's cause chain, which tonic keeps as the source.
fn status_message(status: &tonic::Status) -> String {
    let mut message = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn is_transport_failure(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if cause.is::<tonic::transport::Error>() || cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    status.message().contains("transport error")
}

impl From<Error> for kubelet_core::Error {
    fn from(err: Error) -> Self {
        let (operation, object, kind, message, timeout) = match err {
            Error::InvalidEndpoint { endpoint, reason } => {
                return kubelet_core::Error::Invalid {
                    what: format!("CRI endpoint {endpoint:?}"),
                    reason,
                };
            }
            Error::NotFound {
                call,
                object,
                message,
            } => (call, object, RuntimeErrorKind::NotFound, message, None),
            Error::Unavailable {
                call,
                object,
                message,
            } => (call, object, RuntimeErrorKind::Unavailable, message, None),
            Error::DeadlineExceeded {
                call,
                object,
                timeout,
            } => (
                call,
                object,
                RuntimeErrorKind::DeadlineExceeded,
                format!("no answer within {timeout:?}"),
                Some(timeout),
            ),
            Error::Rpc {
                call,
                object,
                code,
                message,
            } => match kind_of(code) {
                RuntimeErrorKind::Other => (
                    call,
                    object,
                    RuntimeErrorKind::Other,
                    format!("{code:?}: {message}"),
                    None,
                ),
                kind => (call, object, kind, message, None),
            },
            Error::IncompleteResponse {
                call,
                object,
                missing,
            } => (
                call,
                object,
                RuntimeErrorKind::Other,
                format!("the runtime's response has no {missing}"),
                None,
            ),
        };
        RuntimeError {
            operation,
            object,
            kind,
            message,
            timeout,
        }
        .into()
    }
}

fn kind_of(code: Code) -> RuntimeErrorKind {
    match code {
        Code::NotFound => RuntimeErrorKind::NotFound,
        Code::Unavailable => RuntimeErrorKind::Unavailable,
        Code::DeadlineExceeded => RuntimeErrorKind::DeadlineExceeded,
        Code::AlreadyExists => RuntimeErrorKind::AlreadyExists,
        Code::InvalidArgument => RuntimeErrorKind::InvalidArgument,
        Code::Unimplemented => RuntimeErrorKind::Unimplemented,
        Code::Unauthenticated | Code::PermissionDenied => RuntimeErrorKind::Unauthenticated,
        _ => RuntimeErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_status_codes() {
        let t = Duration::from_secs(2);
        let e = Error::from_status(
            "ContainerStatus",
            "c1",
            &tonic::Status::not_found("gone"),
            t,
        );
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "ContainerStatus c1: not found: gone");

        let e = Error::from_status("Version", "-", &tonic::Status::unavailable("refused"), t);
        assert!(e.is_unavailable());

        let e = Error::from_status(
            "ExecSync",
            "c2",
            &tonic::Status::deadline_exceeded("late"),
            t,
        );
        assert!(matches!(e, Error::DeadlineExceeded { timeout, .. } if timeout == t));
        assert_eq!(e.call(), Some("ExecSync"));

        let e = Error::from_status("PullImage", "x", &tonic::Status::permission_denied("no"), t);
        assert!(matches!(
            e,
            Error::Rpc {
                code: Code::PermissionDenied,
                ..
            }
        ));
    }

    #[test]
    fn converts_to_core_error_keeping_kind_and_object() {
        let e: kubelet_core::Error = Error::NotFound {
            call: "PodSandboxStatus",
            object: "s1".into(),
            message: "no sandbox".into(),
        }
        .into();
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "PodSandboxStatus s1: not found: no sandbox");

        let e: kubelet_core::Error = Error::DeadlineExceeded {
            call: "StopContainer",
            object: "c1".into(),
            timeout: Duration::from_secs(3),
        }
        .into();
        assert_eq!(e.runtime_kind(), Some(RuntimeErrorKind::DeadlineExceeded));
        assert!(e.to_string().contains("StopContainer c1"));

        let e: kubelet_core::Error = Error::Rpc {
            call: "RunPodSandbox",
            object: "default/web".into(),
            code: Code::AlreadyExists,
            message: "name reserved".into(),
        }
        .into();
        assert_eq!(e.runtime_kind(), Some(RuntimeErrorKind::AlreadyExists));
    }
}
