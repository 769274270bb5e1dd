//! Image credential provider plugins wired to the cluster: token mode reads service
//! accounts through the node agent's API client and takes tokens from the volume
//! manager's token cache (the one projected service-account tokens come from).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kubelet_credential_provider::ServiceAccounts;
use kubelet_node_agent::ApiObjects;
use kubelet_volumes::VolumeManager;

/// Upstream's credential provider asks TokenRequest without `expirationSeconds`: the
/// API server's default of an hour.
const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// [`ServiceAccounts`] over the kubelet's API client and token cache.
pub(crate) struct ClusterServiceAccounts {
    pub(crate) objects: ApiObjects,
    pub(crate) volumes: Arc<VolumeManager>,
}

#[async_trait]
impl ServiceAccounts for ClusterServiceAccounts {
    async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<ServiceAccount> {
        self.objects.service_account(namespace, name).await
    }

    async fn token(&self, pod: &Pod, audience: &str) -> kubelet_core::Result<String> {
        self.volumes
            .service_account_token(pod, audience, TOKEN_EXPIRATION_SECONDS)
            .await
            .map_err(|e| kubelet_core::Error::Invalid {
                what: format!(
                    "service account token for pod {}",
                    kubelet_core::PodRef::of(pod).name
                ),
                reason: e.to_string(),
            })
    }
}
