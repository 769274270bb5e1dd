//! The downward API: pod fields and container resources as text, shared by environment
//! variables (`fieldRef`, `resourceFieldRef`) and `downwardAPI` / projected volumes.
//!
//! Upstream has two call sites with slightly different rules, and so does this module:
//!
//! - environment variables default the unset limits of the container itself and of the
//!   pod's regular containers (not of init containers named by `containerName`) to the
//!   node's allocatable, with pod-level limits taking its place
//!   ([`env_container_resource`], upstream `containerResourceRuntimeValue` with
//!   `defaultPodLimitsForDownwardAPI`);
//! - volumes name the container explicitly and default its unset limits, init container
//!   or not, to the node's allocatable as it is ([`volume_container_resource`], upstream
//!   `ExtractResourceValueByContainerNameAndNodeAllocatable`).
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use kubelet_core::downward::{format_map, pod_field};
//! use kubelet_core::k8s_openapi::api::core::v1::Pod;
//!
//! let mut pod = Pod::default();
//! pod.metadata.name = Some("web".into());
//! pod.metadata.labels = Some(BTreeMap::from([("app".into(), "a\"b".into())]));
//! assert_eq!(pod_field(&pod, "metadata.name").unwrap(), "web");
//! assert_eq!(pod_field(&pod, "metadata.labels").unwrap(), r#"app="a\"b""#);
//! assert_eq!(pod_field(&pod, "metadata.labels['app']").unwrap(), "a\"b");
//! assert_eq!(format_map(None), "");
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::validation::qualified_name_errors;
use crate::{NodeResources, Quantity};

/// A downward-API value that cannot be produced, with upstream's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DownwardApiError {
    /// Upstream's message, e.g. `unsupported fieldPath: spec.foo`.
    pub message: String,
}

impl DownwardApiError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, DownwardApiError>;

/// What stands in for a container's unset CPU, memory and ephemeral-storage limits: the
/// node's allocatable, or the pod-level limits (`allocatable_for_pod`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LimitDefaults {
    cpu: Quantity,
    memory: Quantity,
    ephemeral_storage: Quantity,
}

impl LimitDefaults {
    fn of(node: &NodeResources) -> Self {
        Self {
            cpu: Quantity::from_milli_value(node.milli_cpu),
            memory: Quantity::from_value(node.memory),
            ephemeral_storage: Quantity::from_value(node.ephemeral_storage),
        }
    }
}

/// A pod metadata field as text, as upstream `fieldpath.ExtractFieldPathAsString`:
/// `metadata.name`, `metadata.namespace`, `metadata.uid`, `metadata.labels`,
/// `metadata.annotations` (both as [`format_map`]) and one key of the last two,
/// `metadata.labels['key']` (empty when absent; the key must be a valid label key).
pub fn pod_field(pod: &Pod, field_path: &str) -> Result<String> {
    let meta = &pod.metadata;
    if let Some((base, key)) = split_subscript(field_path) {
        let (map, checked) = match base {
            // Annotation keys are validated case-insensitively, looked up as written.
            "metadata.annotations" => (&meta.annotations, key.to_lowercase()),
            "metadata.labels" => (&meta.labels, key.to_owned()),
            _ => {
                return Err(DownwardApiError::new(format!(
                    "fieldPath {} does not support subscript",
                    go_quote(field_path)
                )));
            }
        };
        let errors = qualified_name_errors(&checked);
        if !errors.is_empty() {
            return Err(DownwardApiError::new(format!(
                "invalid key subscript in {field_path}: {}",
                errors.join(";")
            )));
        }
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let value = match field_path {
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        _ => {
            return Err(DownwardApiError::new(format!(
                "unsupported fieldPath: {field_path}"
            )));
        }
    };
    Ok(value)
}

/// `metadata.annotations['key']` → `("metadata.annotations", "key")`, as upstream
/// `fieldpath.SplitMaybeSubscriptedPath`.
pub fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// Upstream `fieldpath.FormatMap`: `key="value"` lines sorted by key, values quoted as
/// Go's `%q`, joined by `\n` (no trailing newline).
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A string quoted as Go's `%q` (`strconv.Quote`) quotes it: printable characters as
/// they are, `"` and `\` escaped, control characters as `\n`, `\t`, `\xNN`, ....
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The node's allocatable with the pod-level CPU and memory limits (when the pod sets
/// any pod-level limit) taking its place, as upstream `defaultPodLimitsForDownwardAPI`.
fn allocatable_for_pod(pod: &Pod, node: &NodeResources) -> Result<LimitDefaults> {
    let mut allocatable = LimitDefaults::of(node);
    let pod_limits = pod
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    let pod_level_limits_set = pod_limits.is_some_and(|limits| {
        limits
            .keys()
            .any(|k| k == "cpu" || k == "memory" || k.starts_with("hugepages-"))
    });
    if let Some(limits) = pod_limits.filter(|_| pod_level_limits_set) {
        if let Some(cpu) = limits.get("cpu").map(parse).transpose()?
            && !cpu.is_zero()
        {
            allocatable.cpu = cpu;
        }
        if let Some(memory) = limits.get("memory").map(parse).transpose()?
            && !memory.is_zero()
        {
            allocatable.memory = memory;
        }
    }
    Ok(allocatable)
}

/// A `resourceFieldRef` of an environment variable of `container` (upstream
/// `containerResourceRuntimeValue`): `containerName` empty means `container` itself;
/// unset limits of that container or of a regular container of the pod default to the
/// pod-level CPU and memory limits where the pod sets any, else to the node's
/// allocatable; those of an init container named by `containerName` do not default.
pub fn env_container_resource(
    pod: &Pod,
    container: &Container,
    selector: &ResourceFieldSelector,
    node: &NodeResources,
) -> Result<String> {
    let allocatable = allocatable_for_pod(pod, node)?;
    let target_name = selector.container_name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let (target, defaulted) = if target_name.is_empty() {
        (container, true)
    } else if let Some(c) = spec.and_then(|s| s.containers.iter().find(|c| c.name == target_name)) {
        (c, true)
    } else if let Some(c) = spec
        .and_then(|s| s.init_containers.as_ref())
        .and_then(|list| list.iter().find(|c| c.name == target_name))
    {
        (c, false)
    } else {
        return Err(DownwardApiError::new(format!(
            "container {target_name} not found"
        )));
    };
    container_resource(target, selector, defaulted.then_some(&allocatable))
}

/// A `resourceFieldRef` of a downwardAPI volume item (upstream
/// `ExtractResourceValueByContainerNameAndNodeAllocatable`): the container named by
/// `containerName` (regular containers first, then init containers), its unset CPU,
/// memory and ephemeral-storage limits defaulting to the node's allocatable.
pub fn volume_container_resource(
    pod: &Pod,
    selector: &ResourceFieldSelector,
    node: &NodeResources,
) -> Result<String> {
    let name = selector.container_name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let container = spec
        .and_then(|s| s.containers.iter().find(|c| c.name == name))
        .or_else(|| {
            spec.and_then(|s| s.init_containers.as_ref())
                .and_then(|list| list.iter().find(|c| c.name == name))
        })
        .ok_or_else(|| DownwardApiError::new(format!("container {name} not found")))?;
    container_resource(container, selector, Some(&LimitDefaults::of(node)))
}

/// The value of `selector.resource` of `container` divided (rounding up) by the divisor
/// (default 1), as upstream `ExtractContainerResourceValue`. With `defaults`, an unset or
/// zero CPU, memory or ephemeral-storage limit is the default's (upstream
/// `MergeContainerResourceLimits`); hugepages limits are never defaulted.
fn container_resource(
    container: &Container,
    selector: &ResourceFieldSelector,
    defaults: Option<&LimitDefaults>,
) -> Result<String> {
    let divisor = match &selector.divisor {
        Some(d) => parse(d)?,
        None => Quantity::ZERO,
    };
    let divisor = if divisor.is_zero() {
        Quantity::from_value(1)
    } else {
        divisor
    };
    let resources = container.resources.as_ref();
    let get = |list: Option<&BTreeMap<String, ApiQuantity>>, name: &str| -> Result<Quantity> {
        list.and_then(|l| l.get(name))
            .map_or(Ok(Quantity::ZERO), parse)
    };
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let limit = |name: &str| -> Result<Quantity> {
        let value = get(limits, name)?;
        match defaults {
            Some(allocatable) if value.is_zero() => Ok(match name {
                "cpu" => allocatable.cpu,
                "memory" => allocatable.memory,
                _ => allocatable.ephemeral_storage,
            }),
            _ => Ok(value),
        }
    };

    let resource = selector.resource.as_str();
    let ceil_div = |a: i64, b: i64| (a as f64 / b as f64).ceil() as i64;
    let value = match resource {
        "limits.cpu" => ceil_div(limit("cpu")?.milli_value(), divisor.milli_value()),
        "requests.cpu" => ceil_div(get(requests, "cpu")?.milli_value(), divisor.milli_value()),
        "limits.memory" | "limits.ephemeral-storage" => {
            let name = resource.trim_start_matches("limits.");
            ceil_div(limit(name)?.value(), divisor.value())
        }
        "requests.memory" | "requests.ephemeral-storage" => {
            let name = resource.trim_start_matches("requests.");
            ceil_div(get(requests, name)?.value(), divisor.value())
        }
        _ => {
            if let Some(name) = resource
                .strip_prefix("requests.")
                .filter(|n| n.starts_with("hugepages-"))
            {
                ceil_div(get(requests, name)?.value(), divisor.value())
            } else if let Some(name) = resource
                .strip_prefix("limits.")
                .filter(|n| n.starts_with("hugepages-"))
            {
                // Hugepages are never overcommitted, so their limits are not defaulted.
                ceil_div(get(limits, name)?.value(), divisor.value())
            } else {
                return Err(DownwardApiError::new(format!(
                    "unsupported container resource : {resource}"
                )));
            }
        }
    };
    Ok(value.to_string())
}

fn parse(quantity: &ApiQuantity) -> Result<Quantity> {
    Quantity::try_from(quantity).map_err(|e| DownwardApiError::new(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn q(text: &str) -> ApiQuantity {
        ApiQuantity(text.to_owned())
    }

    fn node() -> NodeResources {
        NodeResources {
            milli_cpu: 4000,
            memory: 8 << 30,
            ephemeral_storage: 100 << 30,
            pids: 0,
        }
    }

    fn container(name: &str, limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let list = |items: &[(&str, &str)]| {
            (!items.is_empty()).then(|| {
                items
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), q(v)))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: name.to_owned(),
            resources: Some(ResourceRequirements {
                limits: list(limits),
                requests: list(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn selector(container: &str, resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: (!container.is_empty()).then(|| container.to_owned()),
            resource: resource.to_owned(),
            divisor: divisor.map(q),
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-1".into()),
                labels: Some(BTreeMap::from([
                    ("b".into(), "two\nlines".into()),
                    ("a".into(), "one".into()),
                ])),
                annotations: Some(BTreeMap::from([("Note".into(), "x".into())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container("app", &[("memory", "1Gi")], &[("cpu", "250m")])],
                init_containers: Some(vec![container("init", &[], &[])]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn metadata_fields_as_upstream() {
        let pod = pod();
        let field = |path: &str| pod_field(&pod, path);
        assert_eq!(field("metadata.name").as_deref(), Ok("web"));
        assert_eq!(field("metadata.namespace").as_deref(), Ok("prod"));
        assert_eq!(field("metadata.uid").as_deref(), Ok("u-1"));
        assert_eq!(
            field("metadata.labels").as_deref(),
            Ok("a=\"one\"\nb=\"two\\nlines\"")
        );
        assert_eq!(field("metadata.annotations").as_deref(), Ok("Note=\"x\""));
        assert_eq!(field("metadata.labels['a']").as_deref(), Ok("one"));
        assert_eq!(field("metadata.labels['zz']").as_deref(), Ok(""));
        // Annotation keys are validated lower-cased and looked up as written.
        assert_eq!(field("metadata.annotations['Note']").as_deref(), Ok("x"));
        assert_eq!(
            field("spec.nodeName").map_err(|e| e.message),
            Err("unsupported fieldPath: spec.nodeName".to_owned())
        );
        assert_eq!(
            field("metadata.name['x']").map_err(|e| e.message),
            Err("fieldPath \"metadata.name['x']\" does not support subscript".to_owned())
        );
        let err = field("metadata.labels['-bad']").expect_err("invalid key");
        assert!(
            err.message
                .starts_with("invalid key subscript in metadata.labels['-bad']: name part must"),
            "{err}"
        );
    }

    #[test]
    fn subscripts_split_like_upstream() {
        assert_eq!(
            split_subscript("metadata.annotations['a[b]c']"),
            Some(("metadata.annotations", "a[b]c"))
        );
        assert_eq!(
            split_subscript("metadata.labels['']"),
            Some(("metadata.labels", ""))
        );
        assert_eq!(split_subscript("metadata.labels"), None);
        assert_eq!(split_subscript("['x']"), None);
    }

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\x01é\"");
    }

    #[test]
    fn volume_resources_default_limits_to_node_allocatable() {
        let pod = pod();
        let value = |name: &str, resource: &str, divisor: Option<&str>| {
            volume_container_resource(&pod, &selector(name, resource, divisor), &node())
        };
        assert_eq!(
            value("app", "limits.memory", Some("1Mi")).as_deref(),
            Ok("1024")
        );
        assert_eq!(value("app", "limits.cpu", None).as_deref(), Ok("4"));
        assert_eq!(
            value("app", "requests.cpu", Some("1m")).as_deref(),
            Ok("250")
        );
        assert_eq!(value("app", "requests.cpu", None).as_deref(), Ok("1"));
        // Init containers are defaulted too in volumes.
        assert_eq!(
            value("init", "limits.memory", Some("1Gi")).as_deref(),
            Ok("8")
        );
        assert_eq!(
            value("nope", "limits.cpu", None).map_err(|e| e.message),
            Err("container nope not found".to_owned())
        );
        assert_eq!(
            value("app", "limits.gpu", None).map_err(|e| e.message),
            Err("unsupported container resource : limits.gpu".to_owned())
        );
    }

    #[test]
    fn env_resources_use_pod_level_limits_and_skip_init_defaults() {
        let mut pod = pod();
        if let Some(spec) = pod.spec.as_mut() {
            spec.resources = Some(ResourceRequirements {
                limits: Some(BTreeMap::from([("cpu".to_owned(), q("2"))])),
                ..Default::default()
            });
        }
        let app = pod.spec.as_ref().expect("spec").containers[0].clone();
        let value = |name: &str, resource: &str| {
            env_container_resource(&pod, &app, &selector(name, resource, None), &node())
        };
        assert_eq!(value("", "limits.cpu").as_deref(), Ok("2"));
        assert_eq!(value("init", "limits.cpu").as_deref(), Ok("0"));
    }
}
