//! The crate's one error type.

use std::path::PathBuf;

/// Result of the CSI plugin's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a CSI operation failed. Shown in the pod's `FailedMount` event, so each names
/// what and why as upstream's messages do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The driver has not registered (yet): a transient failure, retried.
    #[error("driver name {driver} not found in the list of registered CSI drivers")]
    NotRegistered {
        /// The driver's name.
        driver: String,
    },

    /// A call to the driver failed or timed out.
    #[error("rpc error: {call} of CSI driver {driver}: {reason}")]
    Call {
        /// The driver's name.
        driver: String,
        /// The call, e.g. `NodePublishVolume`.
        call: &'static str,
        /// The driver's status (code and message), or the deadline.
        reason: String,
    },

    /// The volume cannot be set up as asked (lifecycle mode, attachment, spec).
    #[error("{0}")]
    Invalid(String),

    /// The API server could not tell (CSIDriver, VolumeAttachment, secret).
    #[error("{0}")]
    Api(#[from] kubelet_core::Error),

    /// A file of the plugin could not be read or written.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `writing`.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// Mount table or ownership work of the volume library failed.
    #[error("{0}")]
    Volume(#[from] kubelet_volumes::Error),
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

    /// As the volume plugin's error for `volume`.
    pub(crate) fn for_volume(self, volume: &str) -> kubelet_core::Error {
        kubelet_core::Error::Volume {
            volume: volume.to_owned(),
            reason: self.to_string(),
            source: Some(Box::new(self)),
        }
    }
}
