//! projected (upstream `pkg/volume/projected`): configMap, secret, downwardAPI and
//! service-account token sources in one directory, on a tmpfs. This is what every pod's
//! `kube-api-access-*` volume is: `token`, `ca.crt` and `namespace`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Volume};
use kubelet_core::{MountedVolume, VolumePlugin, VolumeSources};

use super::publish::{publish, unpublish};
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

/// The projected plugin.
pub(crate) struct ProjectedPlugin {
    pub(crate) sources: Arc<dyn VolumeSources>,
    pub(crate) node: SharedNode,
    pub(crate) tokens: Arc<TokenManager>,
}

impl ProjectedPlugin {
    /// Upstream `collectData`: every source's files; the errors of all sources are
    /// reported together.
    async fn collect_data(&self, pod: &Pod, volume: &Volume) -> Result<Payload> {
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
                    &self.node.get(),
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
impl VolumePlugin for ProjectedPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    fn supports(&self, volume: &Volume) -> bool {
        volume.projected.is_some()
    }

    fn selinux_relabel(&self) -> bool {
        true
    }

    async fn set_up(
        &self,
        pod: &Pod,
        volume: &Volume,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<MountedVolume> {
        let set_up = async {
            super::check_volume_name(&volume.name)?;
            let payload = self.collect_data(pod, volume).await?;
            publish(
                pod,
                &volume.name,
                pod_volume_dir,
                PLUGIN_NAME,
                true,
                &self.node,
                payload,
            )
            .await
        };
        let host_path = set_up.await.map_err(|e| e.for_volume(&volume.name))?;
        Ok(MountedVolume {
            name: volume.name.clone(),
            host_path,
            read_only: true,
        })
    }

    async fn tear_down(
        &self,
        volume_name: &str,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<()> {
        unpublish(volume_name, pod_volume_dir, PLUGIN_NAME)
            .await
            .map_err(|e| e.for_volume(volume_name))?;
        if let Some(uid) = super::pod_dir(pod_volume_dir).file_name() {
            self.tokens.forget_pod(&uid.to_string_lossy());
        }
        Ok(())
    }
}
