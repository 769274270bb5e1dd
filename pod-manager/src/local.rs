//! The local view of pods: what `/pods` shows in standalone mode.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kubelet_core::{PodRef, StatusReporter};

/// Keeps every running pod with its latest status, for the read-only `/pods` view.
///
/// It can pass every report on to another reporter (the API server's), so the kubelet's
/// own view and the cluster's stay the same.
#[derive(Default)]
pub struct LocalPods {
    pods: RwLock<BTreeMap<PodRef, Pod>>,
    next: Option<Arc<dyn StatusReporter>>,
}

impl std::fmt::Debug for LocalPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPods")
            .field("forwarding", &self.next.is_some())
            .finish_non_exhaustive()
    }
}

impl LocalPods {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty view that passes every report on to `next`.
    pub fn forwarding_to(next: Arc<dyn StatusReporter>) -> Self {
        Self {
            pods: RwLock::default(),
            next: Some(next),
        }
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

    /// The pod `namespace/name` with its latest status. When an old instance is still
    /// being terminated next to a new one of the same name, the one not being deleted.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Pod> {
        let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
        let mut found: Option<&Pod> = None;
        for (key, pod) in pods.iter() {
            if key.namespace != namespace || key.name != name {
                continue;
            }
            let deleting = pod.metadata.deletion_timestamp.is_some();
            if found.is_none() || !deleting {
                found = Some(pod);
            }
        }
        found.cloned()
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
        let mut shown = pod.clone();
        shown.status = Some(status.clone());
        self.pods
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(PodRef::of(pod), shown);
        match &self.next {
            Some(next) => next.report(pod, status).await,
            None => Ok(()),
        }
    }

    async fn forget(&self, pod: &PodRef) -> kubelet_core::Result<()> {
        self.pods
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(pod);
        match &self.next {
            Some(next) => next.forget(pod).await,
            None => Ok(()),
        }
    }
}
