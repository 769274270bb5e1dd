//! configMap (upstream `pkg/volume/configmap`): the ConfigMap's `data` and `binaryData`
//! as files (all keys, or the listed `items` at their paths), on the node's disk as
//! upstream keeps them, refreshed on every set-up.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Volume};
use kubelet_core::VolumeSources;

use super::SharedNode;
use super::publish::PayloadSource;
use crate::atomic_writer::{FileProjection, Payload};
use crate::error::{Error, Result};

/// Upstream plugin name.
pub(crate) const PLUGIN_NAME: &str = "kubernetes.io/configmap";
/// The API's default `defaultMode`.
pub(crate) const DEFAULT_MODE: i32 = 0o644;

/// The ConfigMap `namespace/name`: an empty one when it does not exist and the volume
/// is `optional`, upstream's not-found error otherwise.
pub(crate) async fn fetch(
    sources: &dyn VolumeSources,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<ConfigMap> {
    match sources.config_map(namespace, name).await {
        Ok(Some(config_map)) => Ok(config_map),
        Ok(None) if optional => Ok(ConfigMap::default()),
        Ok(None) => Err(Error::NotFound {
            kind: "configmap",
            name: name.to_owned(),
        }),
        Err(e) => Err(Error::Source(e)),
    }
}

/// Upstream `configmap.MakePayload`.
pub(crate) fn make_payload(
    items: Option<&[KeyToPath]>,
    config_map: &ConfigMap,
    default_mode: i32,
    optional: bool,
) -> Result<Payload> {
    let mut payload = Payload::new();
    let data = config_map.data.as_ref();
    let binary = config_map.binary_data.as_ref();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data.into_iter().flatten() {
                payload.insert(
                    key.clone(),
                    FileProjection::new(value.as_bytes(), default_mode),
                );
            }
            for (key, value) in binary.into_iter().flatten() {
                payload.insert(
                    key.clone(),
                    FileProjection::new(value.0.clone(), default_mode),
                );
            }
        }
        Some(items) => {
            for item in items {
                let content = if let Some(value) = data.and_then(|d| d.get(&item.key)) {
                    value.as_bytes().to_vec()
                } else if let Some(value) = binary.and_then(|b| b.get(&item.key)) {
                    value.0.clone()
                } else if optional {
                    continue;
                } else {
                    return Err(Error::Invalid(format!(
                        "configmap references non-existent config key: {}",
                        item.key
                    )));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection::new(content, item.mode.unwrap_or(default_mode)),
                );
            }
        }
    }
    Ok(payload)
}

/// The configMap plugin's files: the ConfigMap's keys.
pub(crate) struct ConfigMapSource {
    pub(crate) sources: Arc<dyn VolumeSources>,
}

#[async_trait]
impl PayloadSource for ConfigMapSource {
    const NAME: &'static str = PLUGIN_NAME;
    const MEMORY: bool = false;

    fn supports(volume: &Volume) -> bool {
        volume.config_map.is_some()
    }

    async fn payload(&self, pod: &Pod, volume: &Volume, _: &SharedNode) -> Result<Payload> {
        let source = volume.config_map.clone().unwrap_or_default();
        let optional = source.optional == Some(true);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let config_map = fetch(self.sources.as_ref(), namespace, &source.name, optional).await?;
        make_payload(
            source.items.as_deref(),
            &config_map,
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

    fn config_map() -> ConfigMap {
        ConfigMap {
            data: Some(BTreeMap::from([
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
            ])),
            binary_data: Some(BTreeMap::from([("bin".into(), ByteString(vec![0, 1, 2]))])),
            ..Default::default()
        }
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
            ..Default::default()
        }
    }

    #[test]
    fn all_keys_with_default_mode_including_binary_data() {
        let payload = make_payload(None, &config_map(), 0o600, false).expect("payload");
        assert_eq!(payload.keys().collect::<Vec<_>>(), ["a", "b", "bin"]);
        assert_eq!(payload["bin"].data, vec![0, 1, 2]);
        assert!(payload.values().all(|p| p.mode == 0o600));
    }

    #[test]
    fn items_map_keys_to_paths_and_modes() {
        let items = [item("a", "dir/x", Some(0o400)), item("bin", "y", None)];
        let payload = make_payload(Some(&items), &config_map(), 0o644, false).expect("payload");
        assert_eq!(payload.keys().collect::<Vec<_>>(), ["dir/x", "y"]);
        assert_eq!(payload["dir/x"].mode, 0o400);
        assert_eq!(payload["y"].mode, 0o644);
    }

    #[test]
    fn missing_item_key_fails_unless_optional() {
        let items = [item("nope", "x", None)];
        let err = make_payload(Some(&items), &config_map(), 0o644, false).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "configmap references non-existent config key: nope"
        );
        let payload = make_payload(Some(&items), &config_map(), 0o644, true).expect("optional");
        assert!(payload.is_empty());
    }
}
