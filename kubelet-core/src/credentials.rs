//! Registry credentials the node itself provides for an image, beside the pod's
//! imagePullSecrets: upstream's credential provider plugins (`pkg/credentialprovider`).

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

use crate::RegistryAuth;

/// The node's credentials for pulling an image for a pod (upstream's external credential
/// provider keyring). The pull path tries the pod's imagePullSecrets first, then these,
/// and pulls anonymously only when there are none.
///
/// Never fails: a provider that cannot answer is logged and gives no credentials, as
/// upstream's keyring does.
#[async_trait]
pub trait ImageCredentials: Send + Sync {
    /// Credentials for `image` (as the container spec names it) pulled for `pod`, in
    /// the order to try them; empty when no provider has any.
    async fn credentials(&self, image: &str, pod: &Pod) -> Vec<RegistryAuth>;
}

const _: Option<&dyn ImageCredentials> = None;

/// No credential providers configured: no node credentials for any image.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoImageCredentials;

#[async_trait]
impl ImageCredentials for NoImageCredentials {
    async fn credentials(&self, _image: &str, _pod: &Pod) -> Vec<RegistryAuth> {
        Vec::new()
    }
}
