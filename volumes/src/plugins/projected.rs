//! projected (upstream `pkg/volume/projected`): configMap, secret, downwardAPI and
//! service-account token sources in one directory, on a tmpfs. This is what every pod's
//! `kube-api-access-*` volume is: `token`, `ca.crt` and `namespace`.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Volume};
use kubelet_core::VolumeSources;

use super::publish::PayloadSource;
use super::{SharedNode, config_map, downward_api, fs_user_from, pod_fs_group, secret};
use crate::atomic_writer::{FileProjection, Payload};
use crate::error::{Error, Result, aggregate};
use crate::token::TokenManager;

/// Upstream plugin name.
pub(crate) const PLUGIN_NAME: &str = "kubernetes.io/projected";
/// The API's default `defaultMode`.
pub(crate) const DEFAULT_MODE: i32 = 0o644;
/// The API's default token lifetime.
pub(crate) const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The projected plugin's files: its configMap, secret, downwardAPI and token sources.
pub(crate) struct ProjectedSource {
    pub(crate) sources: Arc<dyn VolumeSources>,
    pub(crate) tokens: Arc<TokenManager>,
}

impl ProjectedSource {
    /// Upstream `collectData`: every source's files; the errors of all sources are
    /// reported together.
    async fn collect_data(&self, pod: &Pod, volume: &Volume, node: &SharedNode) -> Result<Payload> {
        let source = volume.projected.clone().unwrap_or_default();
        let default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut payload = Payload::new();
        let mut errors: Vec<String> = Vec::new();
        for projection in source.sources.iter().flatten() {
            let part: Result<Payload> = if let Some(s) = &projection.secret {
                let optional = s.optional == Some(true);
                match secret::fetch(self.sources.as_ref(), namespace, &s.name, optional).await {
                    Ok(object) => {
                        secret::make_payload(s.items.as_deref(), &object, default_mode, optional)
                    }
                    Err(e) => Err(e),
                }
            } else if let Some(c) = &projection.config_map {
                let optional = c.optional == Some(true);
                match config_map::fetch(self.sources.as_ref(), namespace, &c.name, optional).await {
                    Ok(object) => config_map::make_payload(
                        c.items.as_deref(),
                        &object,
                        default_mode,
                        optional,
                    ),
                    Err(e) => Err(e),
                }
            } else if let Some(d) = &projection.downward_api {
                downward_api::collect_data(
                    d.items.as_deref().unwrap_or_default(),
                    pod,
                    &node.get(),
                    default_mode,
                )
            } else if let Some(t) = &projection.service_account_token {
                let fs_user = fs_user_from(pod).and_then(|u| u32::try_from(u).ok());
                // With an owner or fsGroup, 0600; the fsGroup walk then adds g+r.
                let mode = if fs_user.is_some() || pod_fs_group(pod).is_some() {
                    0o600
                } else {
                    default_mode
                };
                let expiration = t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
                let audience = t.audience.as_deref().filter(|a| !a.is_empty());
                self.tokens
                    .token(pod, audience, expiration)
                    .await
                    .map(|token| {
                        let mut file = FileProjection::new(token, mode);
                        file.fs_user = fs_user;
                        Payload::from([(t.path.clone(), file)])
                    })
            } else if projection.cluster_trust_bundle.is_some() {
                Err(Error::Invalid(
                    "clusterTrustBundle projections are not supported".to_owned(),
                ))
            } else if projection.pod_certificate.is_some() {
                Err(Error::Invalid(
                    "podCertificate projections are not supported".to_owned(),
                ))
            } else {
                Ok(Payload::new())
            };
            match part {
                Ok(part) => payload.extend(part),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(payload)
        } else {
            Err(Error::Invalid(aggregate(&errors)))
        }
    }
}

#[async_trait]
impl PayloadSource for ProjectedSource {
    const NAME: &'static str = PLUGIN_NAME;
    const MEMORY: bool = true;

    fn supports(volume: &Volume) -> bool {
        volume.projected.is_some()
    }

    async fn payload(&self, pod: &Pod, volume: &Volume, node: &SharedNode) -> Result<Payload> {
        self.collect_data(pod, volume, node).await
    }

    fn forget_pod(&self, pod_uid: &str) {
        self.tokens.forget_pod(pod_uid);
    }
}
