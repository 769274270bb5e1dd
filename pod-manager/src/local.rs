//! The local view of pods: what `/pods` shows in standalone mode.

use std::collections::BTreeMap;
use std::sync::RwLock;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kubelet_core::{PodRef, StatusReporter};

/// Keeps every running pod with its latest status, for the read-only `/pods` view.
#[derive(Debug, Default)]
pub struct LocalPods {
    pods: RwLock<BTreeMap<PodRef, Pod>>,
}

impl LocalPods {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pods with their statuses, ordered by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        self.pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The pods as a v1 `PodList` JSON document, as the upstream kubelet's `/pods`.
    pub fn pod_list_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&serde_json::json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": self.pods(),
        }))
    }
}

#[async_trait]
impl StatusReporter for LocalPods {
    async fn report(&self, pod: &Pod, status: &PodStatus) -> kubelet_core::Result<()> {
        let mut pod = pod.clone();
        pod.status = Some(status.clone());
        self.pods
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(PodRef::of(&pod), pod);
        Ok(())
    }

    async fn forget(&self, pod: &PodRef) -> kubelet_core::Result<()> {
        self.pods
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(pod);
        Ok(())
    }
}
