//! secret (upstream `pkg/volume/secret`): the Secret's `data` as files (all keys, or the
//! listed `items`), on a tmpfs so that secrets never reach the node's disk.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{KeyToPath, Pod, Secret, Volume};
use kubelet_core::VolumeSources;

use super::SharedNode;
use super::publish::PayloadSource;
use crate::atomic_writer::{FileProjection, Payload};
use crate::error::{Error, Result};

/// Upstream plugin name.
pub(crate) const PLUGIN_NAME: &str = "kubernetes.io/secret";
/// The API's default `defaultMode`.
pub(crate) const DEFAULT_MODE: i32 = 0o644;

/// The Secret `namespace/name`: an empty one when it does not exist and the volume is
/// `optional`, upstream's not-found error otherwise.
pub(crate) async fn fetch(
    sources: &dyn VolumeSources,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Secret> {
    match sources.secret(namespace, name).await {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) if optional => Ok(Secret::default()),
        Ok(None) => Err(Error::NotFound {
            kind: "secret",
            name: name.to_owned(),
        }),
        Err(e) => Err(Error::Source(e)),
    }
}

/// Upstream `secret.MakePayload`.
pub(crate) fn make_payload(
    items: Option<&[KeyToPath]>,
    secret: &Secret,
    default_mode: i32,
    optional: bool,
) -> Result<Payload> {
    let mut payload = Payload::new();
    let data = secret.data.as_ref();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data.into_iter().flatten() {
                payload.insert(
                    key.clone(),
                    FileProjection::new(value.0.clone(), default_mode),
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.and_then(|d| d.get(&item.key)) else {
                    if optional {
                        continue;
                    }
                    return Err(Error::Invalid(format!(
                        "references non-existent secret key: {}",
                        item.key
                    )));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection::new(value.0.clone(), item.mode.unwrap_or(default_mode)),
                );
            }
        }
    }
    Ok(payload)
}

/// The secret plugin's files: the Secret's keys, on tmpfs.
pub(crate) struct SecretSource {
    pub(crate) sources: Arc<dyn VolumeSources>,
}

#[async_trait]
impl PayloadSource for SecretSource {
    const NAME: &'static str = PLUGIN_NAME;
    const MEMORY: bool = true;

    fn supports(volume: &Volume) -> bool {
        volume.secret.is_some()
    }

    async fn payload(&self, pod: &Pod, volume: &Volume, _: &SharedNode) -> Result<Payload> {
        let source = volume.secret.clone().unwrap_or_default();
        let optional = source.optional == Some(true);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = source.secret_name.as_deref().unwrap_or_default();
        let secret = fetch(self.sources.as_ref(), namespace, name, optional).await?;
        make_payload(
            source.items.as_deref(),
            &secret,
            source.default_mode.unwrap_or(DEFAULT_MODE),
            optional,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn payload_as_upstream() {
        let secret = Secret {
            data: Some(BTreeMap::from([("k".into(), ByteString(b"v".to_vec()))])),
            ..Default::default()
        };
        let all = make_payload(None, &secret, 0o400, false).expect("payload");
        assert_eq!(all["k"], FileProjection::new(b"v".to_vec(), 0o400));
        let items = [KeyToPath {
            key: "missing".into(),
            path: "p".into(),
            ..Default::default()
        }];
        let err = make_payload(Some(&items), &secret, 0o644, false).expect_err("missing key");
        assert_eq!(
            err.to_string(),
            "references non-existent secret key: missing"
        );
        assert!(
            make_payload(Some(&items), &secret, 0o644, true)
                .expect("optional")
                .is_empty()
        );
    }
}
