//! The crate's one error type.

use std::path::PathBuf;

use kubelet_core::downward::go_quote;

/// Result of a volume operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a volume operation failed.
///
/// The variants a caller sees from [`VolumeManager`](crate::VolumeManager) carry
/// upstream's messages, so that they can become the pod's events unchanged:
/// [`Error::SetUp`] is the `FailedMount` event message, [`Error::ContainerMounts`] the
/// error upstream's `makeMounts` returns. The others describe a failure inside a plugin
/// (upstream's wording where it has one) and reach the caller as the `reason` of those.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A volume of a pod could not be set up; displayed as upstream's `FailedMount`
    /// event message, e.g. `MountVolume.SetUp failed for volume "cfg" : configmap "foo"
    /// not found`.
    #[error("MountVolume.SetUp failed for volume {} : {reason}", go_quote(volume))]
    SetUp {
        /// The volume's name in the pod spec.
        volume: String,
        /// Why, as the plugin said it.
        reason: String,
        /// The plugin's error.
        #[source]
        source: Option<Box<kubelet_core::Error>>,
    },

    /// A volume's PersistentVolumeClaim could not be resolved to a usable volume; displayed
    /// as upstream's `FailedMount` event message, e.g. `Unable to attach or mount volumes:
    /// unmounted volumes=[data], unattached volumes=[], failed to process
    /// volumes=[data]: error processing PVC default/data: PVC is not bound`.
    #[error(
        "Unable to attach or mount volumes: unmounted volumes=[{volume}], unattached volumes=[], failed to process volumes=[{volume}]: {reason}"
    )]
    Claim {
        /// The volume's name in the pod spec.
        volume: String,
        /// Upstream's message.
        reason: String,
    },

    /// The mounts of a container could not be prepared (upstream `makeMounts`), e.g.
    /// `failed to prepare subPath for volumeMount "data" of container "app"`.
    #[error("{reason}")]
    ContainerMounts {
        /// The container's name.
        container: String,
        /// Upstream's message.
        reason: String,
    },

    /// Volumes or directories of a pod could not be removed; what was removable was.
    #[error("tearing down the volumes of pod {pod_uid}: {}", reasons.join("; "))]
    TearDown {
        /// The pod's UID.
        pod_uid: String,
        /// One line per failure, each naming its path.
        reasons: Vec<String>,
    },

    /// Directories of orphaned pods could not be removed; the rest were.
    #[error("cleaning up orphaned pod directories: {}", reasons.join("; "))]
    Orphans {
        /// One line per failure, each naming its pod and path.
        reasons: Vec<String>,
    },

    /// An object the volume needs does not exist, e.g. `configmap "foo" not found`.
    #[error("{kind} {} not found", go_quote(name))]
    NotFound {
        /// `configmap` or `secret`, as upstream's API errors name them.
        kind: &'static str,
        /// The object's name.
        name: String,
    },

    /// The volume sources (API server cache, token requests) failed.
    #[error("{0}")]
    Source(#[source] kubelet_core::Error),

    /// The volume's spec or contents cannot be used, with upstream's message, e.g.
    /// `configmap references non-existent config key: x` or `hostPath type check
    /// failed: /x is not a directory, it's a File`.
    #[error("{0}")]
    Invalid(String),

    /// A filesystem or mount call failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was attempted, e.g. `mount tmpfs on`.
        operation: &'static str,
        /// On which path.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },

    /// A directory was not removed because something is still mounted on it or below it.
    #[error("cannot delete directory {}: it is a mount point", path.display())]
    MountPoint {
        /// The mount point.
        path: PathBuf,
    },

    /// A pod UID that cannot name a directory (empty, `.`, `..` or containing `/`).
    #[error("invalid pod UID {0:?}")]
    PodUid(String),

    /// A blocking filesystem task panicked or was cancelled.
    #[error("volume task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<std::io::Error>,
    ) -> Self {
        Self::Io {
            operation,
            path: path.into(),
            source: source.into(),
        }
    }

    /// The error as the `kubelet_core` error of volume `volume`, with this error's text
    /// as the reason.
    pub(crate) fn for_volume(self, volume: &str) -> kubelet_core::Error {
        kubelet_core::Error::Volume {
            volume: volume.to_owned(),
            reason: self.to_string(),
            source: Some(Box::new(self)),
        }
    }
}

impl From<Error> for kubelet_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::SetUp { volume, reason, .. } => kubelet_core::Error::Volume {
                volume,
                reason,
                source: None,
            },
            Error::Source(inner) => inner,
            other => kubelet_core::Error::Volume {
                volume: String::new(),
                reason: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}

/// The reason a plugin gave for failing: the `reason` of a volume error (the plugin's
/// own words), or the whole message of any other error.
pub(crate) fn plugin_reason(e: &kubelet_core::Error) -> String {
    match e {
        kubelet_core::Error::Volume { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Upstream's `utilerrors.NewAggregate(...).Error()`: one message as it is, several
/// (duplicates dropped) as `[a, b]`.
pub(crate) fn aggregate(messages: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for m in messages {
        if !seen.contains(&m.as_str()) {
            seen.push(m);
        }
    }
    match seen.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_up_error_is_upstreams_event_message() {
        let e = Error::SetUp {
            volume: "cfg".into(),
            reason: Error::NotFound {
                kind: "configmap",
                name: "foo".into(),
            }
            .to_string(),
            source: None,
        };
        assert_eq!(
            e.to_string(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"foo\" not found"
        );
    }

    #[test]
    fn aggregates_like_upstream() {
        assert_eq!(aggregate(&[]), "");
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into(), "a".into()]), "[a, b]");
    }
}
