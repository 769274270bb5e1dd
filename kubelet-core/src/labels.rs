//! The labels and annotations the upstream kubelet puts on sandboxes and containers.
//!
//! They are how node tools (crictl, containerd's `ctr`) show which pod a container
//! belongs to, and how a restarted kubelet recognises its own containers. They must be
//! byte-for-byte what upstream writes, the container hash included, so that a node can
//! switch between the upstream kubelet and this one without restarting its containers.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::StringMap;

/// Label: name of the pod a sandbox or container belongs to.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Label: namespace of the pod.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Label: UID of the pod.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// Label: name of the container in the pod spec.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// Annotation: the pod's deletion grace period when the container was created.
pub const POD_DELETION_GRACE_PERIOD_ANNOTATION: &str = "io.kubernetes.pod.deletionGracePeriod";
/// Annotation: the pod's terminationGracePeriodSeconds.
pub const POD_TERMINATION_GRACE_PERIOD_ANNOTATION: &str =
    "io.kubernetes.pod.terminationGracePeriod";
/// Annotation: [`container_hash`] in lower-case hexadecimal.
pub const CONTAINER_HASH_ANNOTATION: &str = "io.kubernetes.container.hash";
/// Annotation: how many times the container was restarted before this instance.
pub const CONTAINER_RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
/// Annotation: the container's terminationMessagePath.
pub const CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";
/// Annotation: the container's terminationMessagePolicy.
pub const CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePolicy";
/// Annotation: the container's preStop handler as JSON.
pub const CONTAINER_PRE_STOP_HANDLER_ANNOTATION: &str = "io.kubernetes.container.preStopHandler";
/// Annotation: the container's ports as JSON.
pub const CONTAINER_PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";

/// The hash upstream stores in [`CONTAINER_HASH_ANNOTATION`]: FNV-32a over the
/// `dump.ForHash` rendering of the JSON object `{"image":…,"name":…}`.
///
/// Only the name and image take part, so the hash, and with it the decision to restart
/// a container, does not change when a kubelet version adds fields to the spec.
pub fn container_hash(container: &Container) -> u64 {
    let image = container.image.as_deref().unwrap_or_default();
    // Go's json.Marshal of a map sorts the keys: "image" comes before "name".
    let mut json = String::from("{\"image\":");
    push_go_json_string(&mut json, image);
    json.push_str(",\"name\":");
    push_go_json_string(&mut json, &container.name);
    json.push('}');

    // dump.ForHash prints a []byte as `([]uint8)[123 34 ...]`.
    let mut rendered = String::with_capacity(json.len() * 4 + 12);
    rendered.push_str("([]uint8)[");
    for (i, byte) in json.bytes().enumerate() {
        if i > 0 {
            rendered.push(' ');
        }
        let _ = write!(rendered, "{byte}");
    }
    rendered.push(']');
    u64::from(fnv1a_32(rendered.as_bytes()))
}

/// A JSON string as Go's encoding/json writes it: HTML-significant characters and the
/// line and paragraph separators are escaped as `\uXXXX`.
fn push_go_json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn fnv1a_32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(PRIME)
    })
}

fn pod_identity(pod: &Pod, labels: &mut StringMap) {
    let meta = &pod.metadata;
    labels.insert(
        POD_NAME_LABEL.to_owned(),
        meta.name.clone().unwrap_or_default(),
    );
    labels.insert(
        POD_NAMESPACE_LABEL.to_owned(),
        meta.namespace.clone().unwrap_or_default(),
    );
    labels.insert(
        POD_UID_LABEL.to_owned(),
        meta.uid.clone().unwrap_or_default(),
    );
}

/// Labels of a pod's sandbox: the pod's own labels plus its identity.
pub fn sandbox_labels(pod: &Pod) -> StringMap {
    let mut labels: StringMap = pod
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    pod_identity(pod, &mut labels);
    labels
}

/// Annotations of a pod's sandbox: the pod's annotations.
pub fn sandbox_annotations(pod: &Pod) -> StringMap {
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Labels of a container: the pod's identity and the container's name.
pub fn container_labels(container: &Container, pod: &Pod) -> StringMap {
    let mut labels = StringMap::new();
    pod_identity(pod, &mut labels);
    labels.insert(CONTAINER_NAME_LABEL.to_owned(), container.name.clone());
    labels
}

/// Annotations of a container: its hash, restart count, termination message settings,
/// the pod's grace periods, and its preStop handler and ports as JSON.
pub fn container_annotations(container: &Container, pod: &Pod, restart_count: u32) -> StringMap {
    let mut annotations = StringMap::new();
    annotations.insert(
        CONTAINER_HASH_ANNOTATION.to_owned(),
        format!("{:x}", container_hash(container)),
    );
    annotations.insert(
        CONTAINER_RESTART_COUNT_ANNOTATION.to_owned(),
        restart_count.to_string(),
    );
    annotations.insert(
        CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION.to_owned(),
        container
            .termination_message_path
            .clone()
            .unwrap_or_default(),
    );
    annotations.insert(
        CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION.to_owned(),
        container
            .termination_message_policy
            .clone()
            .unwrap_or_default(),
    );
    if let Some(grace) = pod.metadata.deletion_grace_period_seconds {
        annotations.insert(
            POD_DELETION_GRACE_PERIOD_ANNOTATION.to_owned(),
            grace.to_string(),
        );
    }
    if let Some(grace) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        annotations.insert(
            POD_TERMINATION_GRACE_PERIOD_ANNOTATION.to_owned(),
            grace.to_string(),
        );
    }
    // Serialising plain API structs cannot fail; a failure would only drop the
    // informational annotation, as upstream does.
    if let Some(pre_stop) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        && let Ok(json) = serde_json::to_string(pre_stop)
    {
        annotations.insert(CONTAINER_PRE_STOP_HANDLER_ANNOTATION.to_owned(), json);
    }
    if let Some(ports) = container.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(json) = serde_json::to_string(ports)
    {
        annotations.insert(CONTAINER_PORTS_ANNOTATION.to_owned(), json);
    }
    annotations
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, ExecAction, Lifecycle, LifecycleHandler, PodSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    /// Expected values computed with upstream's own code (kubecontainer.HashContainer's
    /// steps: encoding/json, apimachinery's dump.ForHash, hash/fnv) for v1.37.2.
    #[test]
    fn container_hash_matches_upstream() {
        let cases = [
            ("app", "localhost:5000/busybox:latest", 2_328_536_635_u64),
            ("nginx", "nginx:1.27", 2_448_289_423),
            ("", "", 3_990_256_836),
            ("sidecar", "registry.k8s.io/pause:3.10", 956_477_709),
            ("x<y>&", "é/ü:1", 2_957_626_415),
        ];
        for (name, image, expected) in cases {
            assert_eq!(
                container_hash(&container(name, image)),
                expected,
                "{name} {image}"
            );
        }
        assert_eq!(
            format!(
                "{:x}",
                container_hash(&container("app", "localhost:5000/busybox:latest"))
            ),
            "8acaa63b"
        );
    }

    #[test]
    fn hash_ignores_fields_other_than_name_and_image() {
        let mut c = container("app", "busybox");
        let before = container_hash(&c);
        c.args = Some(vec!["sleep".into(), "1".into()]);
        assert_eq!(container_hash(&c), before);
        c.image = Some("busybox:1.36".into());
        assert_ne!(container_hash(&c), before);
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u-1".into()),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                annotations: Some([("note".to_owned(), "x".to_owned())].into()),
                deletion_grace_period_seconds: Some(5),
                ..Default::default()
            },
            spec: Some(PodSpec {
                termination_grace_period_seconds: Some(30),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_and_container_labels_follow_upstream() {
        let pod = pod();
        let labels = sandbox_labels(&pod);
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get(POD_NAME_LABEL).map(String::as_str), Some("web"));
        assert_eq!(labels.get(POD_UID_LABEL).map(String::as_str), Some("u-1"));
        assert_eq!(
            sandbox_annotations(&pod).get("note").map(String::as_str),
            Some("x")
        );

        let c = container("app", "busybox");
        let labels = container_labels(&c, &pod);
        assert_eq!(labels.len(), 4);
        assert_eq!(
            labels.get(CONTAINER_NAME_LABEL).map(String::as_str),
            Some("app")
        );
        assert!(
            !labels.contains_key("app"),
            "pod labels stay on the sandbox"
        );
    }

    #[test]
    fn container_annotations_follow_upstream() {
        let pod = pod();
        let mut c = container("app", "busybox");
        c.termination_message_path = Some("/dev/termination-log".into());
        c.termination_message_policy = Some("File".into());
        c.lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sleep".into(), "1".into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c.ports = Some(vec![ContainerPort {
            container_port: 80,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]);
        let a = container_annotations(&c, &pod, 3);
        let get = |k: &str| a.get(k).map(String::as_str);
        assert_eq!(
            get(CONTAINER_HASH_ANNOTATION),
            Some(format!("{:x}", container_hash(&c)).as_str())
        );
        assert_eq!(get(CONTAINER_RESTART_COUNT_ANNOTATION), Some("3"));
        assert_eq!(
            get(CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION),
            Some("/dev/termination-log")
        );
        assert_eq!(
            get(CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION),
            Some("File")
        );
        assert_eq!(get(POD_DELETION_GRACE_PERIOD_ANNOTATION), Some("5"));
        assert_eq!(get(POD_TERMINATION_GRACE_PERIOD_ANNOTATION), Some("30"));
        assert_eq!(
            get(CONTAINER_PRE_STOP_HANDLER_ANNOTATION),
            Some(r#"{"exec":{"command":["sleep","1"]}}"#)
        );
        let ports: serde_json::Value =
            serde_json::from_str(get(CONTAINER_PORTS_ANNOTATION).unwrap_or_default())
                .expect("ports JSON");
        assert_eq!(ports[0]["containerPort"], 80);
        assert_eq!(ports[0]["protocol"], "TCP");
    }
}
