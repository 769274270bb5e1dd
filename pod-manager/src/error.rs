//! The pod manager's error type.

use std::path::PathBuf;

/// Result of a pod manager operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the pod manager. Each names what failed, on which object, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A manifest (file or URL) could not be read or parsed.
    #[error("manifest {path}: {reason}")]
    Manifest {
        /// File path or URL.
        path: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A pod failed validation.
    #[error("pod {pod}: invalid {field}: {reason}")]
    InvalidPod {
        /// `namespace/name` (or the manifest path when the pod has no name).
        pod: String,
        /// The field path, e.g. `spec.containers[0].image`.
        field: String,
        /// Why.
        reason: String,
    },

    /// A pod's spec could not be turned into a runtime configuration.
    #[error("pod {pod} container {container:?}: {reason}")]
    Spec {
        /// `namespace/name`.
        pod: String,
        /// The container, empty for the sandbox.
        container: String,
        /// Why.
        reason: String,
    },

    /// The RuntimeClass a pod names cannot be used; the message is upstream's, e.g.
    /// `runtimeclass.node.k8s.io "gvisor" not found`.
    #[error("{message}")]
    RuntimeClass {
        /// Why.
        message: String,
    },

    /// A file system operation failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `reading`.
        operation: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A pod's cgroup could not be made or given its limits; the pod does not start
    /// (upstream: "failed to ensure that the pod: `<uid>` cgroups exist and are correctly
    /// applied").
    #[error(
        "failed to ensure that the pod: {pod} cgroups exist and are correctly applied: {reason}"
    )]
    PodCgroup {
        /// The pod's UID.
        pod: String,
        /// Why.
        reason: String,
    },

    /// A pod's volumes could not be torn down (its directory is kept until they are).
    #[error("tearing down the volumes of pod {pod}: {reason}")]
    Volumes {
        /// The pod's UID.
        pod: String,
        /// Why.
        reason: String,
    },

    /// A container's logs cannot be read; the message is upstream's, e.g. `previous
    /// terminated container "app" in pod "web" not found`.
    #[error("{message}")]
    LogsUnavailable {
        /// What is missing, on which container of which pod.
        message: String,
    },

    /// A pod has no container of that name (in its containers, init containers or
    /// ephemeral containers).
    #[error("container {container:?} not found in pod {pod:?}")]
    ContainerNotFound {
        /// The pod's name.
        pod: String,
        /// The container asked for.
        container: String,
    },

    /// What an exec, attach or port-forward request names does not run; the message is
    /// upstream's, e.g. `container not found ("app")`.
    #[error("{message}")]
    StreamTargetNotFound {
        /// What is missing.
        message: String,
    },

    /// A task the pod manager cannot work without ended (it panicked).
    #[error("the pod manager's {task} task ended unexpectedly")]
    TaskEnded {
        /// The task, e.g. `relist`.
        task: &'static str,
    },

    /// The runtime or another extension point failed.
    #[error(transparent)]
    Core(#[from] kubelet_core::Error),
}
