//! Publishing pod status: the extension point between the pod manager and the API server.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodStatus};

use crate::{PodRef, Result};

/// Receives the status the pod manager computed for a pod.
///
/// Implementations must not block the caller for long: a pod worker calls this after
/// every sync. The API server implementation queues and merges; standalone mode keeps
/// the latest status for the local `/pods` view.
#[async_trait]
pub trait StatusReporter: Send + Sync {
    /// Records the latest status of `pod` (the pod as the kubelet runs it).
    async fn report(&self, pod: &Pod, status: &PodStatus) -> Result<()>;

    /// Forgets a pod that is gone.
    async fn forget(&self, pod: &PodRef) -> Result<()>;
}

const _: Option<&dyn StatusReporter> = None;
