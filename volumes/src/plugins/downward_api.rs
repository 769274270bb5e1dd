//! downwardAPI (upstream `pkg/volume/downwardapi`): pod metadata and container resources
//! as files, on a tmpfs, refreshed on every set-up (labels and annotations can change
//! while the pod runs).

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, Pod, Volume};
use kubelet_core::NodeResources;
use kubelet_core::downward;
use tracing::warn;

use super::SharedNode;
use super::publish::PayloadSource;
use crate::atomic_writer::{FileProjection, Payload, clean_relative};
use crate::error::{Error, Result, aggregate};

/// Upstream plugin name.
pub(crate) const PLUGIN_NAME: &str = "kubernetes.io/downward-api";
/// The API's default `defaultMode`.
pub(crate) const DEFAULT_MODE: i32 = 0o644;

/// Upstream `downwardapi.CollectData`: one file per item; the errors of all items are
/// reported together.
pub(crate) fn collect_data(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    node: &NodeResources,
    default_mode: i32,
) -> Result<Payload> {
    let mut errors = Vec::new();
    let mut payload = Payload::new();
    for item in items {
        let mode = item.mode.unwrap_or(default_mode);
        let data = if let Some(field) = &item.field_ref {
            downward::pod_field(pod, &field.field_path).map_err(|e| {
                warn!(field = %field.field_path, error = %e, "unable to extract field");
                e
            })
        } else if let Some(resource) = &item.resource_field_ref {
            downward::volume_container_resource(pod, resource, node).map_err(|e| {
                warn!(resource = %resource.resource, error = %e, "unable to extract field");
                e
            })
        } else {
            Ok(String::new())
        };
        let data = data.unwrap_or_else(|e| {
            errors.push(e.message);
            String::new()
        });
        payload.insert(clean_relative(&item.path), FileProjection::new(data, mode));
    }
    if errors.is_empty() {
        Ok(payload)
    } else {
        Err(Error::Invalid(aggregate(&errors)))
    }
}

/// The downwardAPI plugin's files: the pod's fields and its containers' resources.
pub(crate) struct DownwardApiSource;

#[async_trait]
impl PayloadSource for DownwardApiSource {
    const NAME: &'static str = PLUGIN_NAME;
    const MEMORY: bool = true;

    fn supports(volume: &Volume) -> bool {
        volume.downward_api.is_some()
    }

    async fn payload(&self, pod: &Pod, volume: &Volume, node: &SharedNode) -> Result<Payload> {
        let source = volume.downward_api.clone().unwrap_or_default();
        collect_data(
            source.items.as_deref().unwrap_or_default(),
            pod,
            &node.get(),
            source.default_mode.unwrap_or(DEFAULT_MODE),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ObjectFieldSelector, ResourceFieldSelector};
    use std::collections::BTreeMap;

    fn field(path: &str, field_path: &str) -> DownwardAPIVolumeFile {
        DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: field_path.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn collects_fields_and_aggregates_errors() {
        let mut pod = crate::testing::pod("web", "u1");
        pod.metadata.labels = Some(BTreeMap::from([
            ("b".into(), "2".into()),
            ("a".into(), "x\"y".into()),
        ]));
        let items = [
            field("name", "metadata.name"),
            field("./dir/../labels", "metadata.labels"),
            field("one", "metadata.labels['a']"),
        ];
        let payload = collect_data(&items, &pod, &NodeResources::default(), 0o640).expect("data");
        assert_eq!(
            payload.keys().collect::<Vec<_>>(),
            ["labels", "name", "one"]
        );
        assert_eq!(payload["labels"].data, b"a=\"x\\\"y\"\nb=\"2\"");
        assert_eq!(payload["one"].data, b"x\"y");
        assert_eq!(payload["name"].mode, 0o640);

        let bad = [
            field("x", "spec.nodeName"),
            DownwardAPIVolumeFile {
                path: "cpu".into(),
                resource_field_ref: Some(ResourceFieldSelector {
                    container_name: Some("nope".into()),
                    resource: "limits.cpu".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        let err = collect_data(&bad, &pod, &NodeResources::default(), 0o644).expect_err("bad");
        assert_eq!(
            err.to_string(),
            "[unsupported fieldPath: spec.nodeName, container nope not found]"
        );
    }
}
