//! Turning manifest bytes into static pods: decoding (YAML or JSON), defaulting,
//! validation, and the checks upstream's `tryDecodeSinglePod` / `tryDecodePodList` make.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::defaults::{apply_api_defaults, apply_static_pod_defaults};
use super::validation::{api_object_reference, validate_pod};
use super::{CONFIG_SEEN_ANNOTATION, ManifestOrigin};
use crate::{Error, RejectedManifest, Result};

/// Upstream `maxConfigLength`: manifests larger than this are rejected.
pub const MAX_MANIFEST_BYTES: usize = 10 << 20;

/// What a manifest holds, once decoded.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A single `v1` `Pod`.
    Pod(Box<Pod>),
    /// The items of a `v1` `PodList`, each still as raw JSON so that one bad item does
    /// not spoil the others.
    PodList(Vec<serde_json::Value>),
}

/// Just the type fields, read first so the error for a wrong kind is about the kind
/// rather than about some field of the wrong type.
#[derive(Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

/// A `PodList` with its items left undecoded.
#[derive(Deserialize)]
struct RawPodList {
    #[serde(default)]
    items: Option<Vec<serde_json::Value>>,
}

/// Decodes a manifest as upstream does: JSON when it starts with `{` (after white
/// space), YAML otherwise. `apiVersion: v1` and `kind` are required, as upstream's
/// decoder requires them; `kind` must be `Pod`, or `PodList` when `allow_list` is set.
/// Errors are the reasons to show the user, with the parser's line and column.
pub(crate) fn decode(data: &[u8], allow_list: bool) -> std::result::Result<Decoded, String> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err("empty manifest".to_owned());
    };
    let json = *first == b'{';
    let type_meta: TypeMeta = parse(data, json)?;
    let kind = type_meta.kind.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    if kind.is_empty() {
        return Err("Object 'Kind' is missing".to_owned());
    }
    if api_version.is_empty() {
        return Err("Object 'apiVersion' is missing".to_owned());
    }
    let wanted = if allow_list { "Pod or PodList" } else { "Pod" };
    if api_version != "v1" || !(kind == "Pod" || allow_list && kind == "PodList") {
        return Err(format!(
            "expected a v1 {wanted}, got {kind} (apiVersion {api_version})"
        ));
    }
    if kind == "Pod" {
        let pod: Pod = parse(data, json)?;
        Ok(Decoded::Pod(Box::new(pod)))
    } else {
        let list: RawPodList = parse(data, json)?;
        Ok(Decoded::PodList(list.items.unwrap_or_default()))
    }
}

fn parse<T: DeserializeOwned>(data: &[u8], json: bool) -> std::result::Result<T, String> {
    if json {
        serde_json::from_slice(data).map_err(|e| e.to_string())
    } else {
        serde_yaml::from_slice(data).map_err(|e| e.to_string())
    }
}

/// Makes a decoded manifest pod into the pod the kubelet runs, as upstream's
/// `tryDecodeSinglePod` does after decoding: API defaults ([`apply_api_defaults`]),
/// static pod defaults (UID, `<name>-<node>`, namespace, node name, annotations
/// `kubernetes.io/config.hash` and `kubernetes.io/config.source`, the NoExecute
/// toleration for file pods, phase Pending), validation ([`validate_pod`]) and the rule
/// that static pods may not reference API objects (secrets, config maps, service
/// accounts, claims).
///
/// The `kubernetes.io/config.seen` annotation is left to the caller, which knows when it
/// first saw this version.
///
/// # Errors
///
/// [`Error::Manifest`] when the pod has no name; [`Error::InvalidPod`] when validation
/// fails (naming the first failing field; the reason lists the others) or the pod
/// references API objects.
pub fn prepare_static_pod(mut pod: Pod, origin: &ManifestOrigin, node_name: &str) -> Result<Pod> {
    if pod.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(Error::Manifest {
            path: origin.to_string(),
            reason: "invalid pod: name is needed for the pod".to_owned(),
        });
    }
    apply_api_defaults(&mut pod);
    apply_static_pod_defaults(&mut pod, origin, node_name);
    let pod_ref = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    );
    let errors = validate_pod(&pod);
    if let Some((first, rest)) = errors.split_first() {
        let mut reason = first.to_string();
        // The field is shown separately; keep only what follows it.
        reason.drain(..first.field.len() + 2);
        for e in rest {
            reason.push_str("; ");
            reason.push_str(&e.to_string());
        }
        return Err(Error::InvalidPod {
            pod: pod_ref,
            field: first.field.clone(),
            reason,
        });
    }
    if let Some(resource) = pod.spec.as_ref().and_then(api_object_reference) {
        return Err(Error::InvalidPod {
            pod: pod_ref,
            field: "spec".to_owned(),
            reason: format!("static pods may not reference {resource}"),
        });
    }
    Ok(pod)
}

/// The reason to show in a [`RejectedManifest`] for an error of [`prepare_static_pod`]:
/// the path is shown beside it, so it is not repeated.
pub(crate) fn rejection_reason(err: &Error) -> String {
    match err {
        Error::Manifest { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Builds a snapshot's pods from candidate manifests, in order, rejecting later
/// manifests that reuse the name or UID of an earlier one (two pods with one name
/// cannot both run; upstream silently keeps one of them).
pub(crate) struct SnapshotBuilder {
    pods: Vec<Pod>,
    rejected: Vec<RejectedManifest>,
    names: HashMap<String, String>,
    uids: HashMap<String, String>,
}

impl SnapshotBuilder {
    pub(crate) fn new() -> Self {
        Self {
            pods: Vec::new(),
            rejected: Vec::new(),
            names: HashMap::new(),
            uids: HashMap::new(),
        }
    }

    pub(crate) fn reject(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.rejected.push(RejectedManifest {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Adds a prepared pod found at `path` (a file, or a URL with the item's index).
    pub(crate) fn add(&mut self, path: &str, pod: Pod) {
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(first) = self.names.get(&name) {
            let reason = format!("duplicate pod name {name}: already defined by {first}");
            self.reject(path, reason);
            return;
        }
        if let Some(first) = self.uids.get(&uid) {
            let reason = format!("duplicate pod uid {uid}: already used by {first}");
            self.reject(path, reason);
            return;
        }
        self.names.insert(name, path.to_owned());
        self.uids.insert(uid, path.to_owned());
        self.pods.push(pod);
    }

    /// The pods and rejections, with `kubernetes.io/config.seen` set from `seen` (UID to
    /// the time a pod was first seen), which is updated to hold exactly the current pods.
    pub(crate) fn finish(
        self,
        seen: &mut HashMap<String, String>,
    ) -> (Vec<Pod>, Vec<RejectedManifest>) {
        let mut pods = self.pods;
        let now = super::now_rfc3339();
        let mut next_seen = HashMap::with_capacity(pods.len());
        for pod in &mut pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let when = seen.get(&uid).cloned().unwrap_or_else(|| now.clone());
            pod.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(CONFIG_SEEN_ANNOTATION.to_owned(), when.clone());
            next_seen.insert(uid, when);
        }
        *seen = next_seen;
        (pods, self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NODE: &str = "node-1";

    fn file_origin() -> ManifestOrigin {
        ManifestOrigin::File("/etc/kubernetes/manifests/web.yaml".into())
    }

    fn decode_pod(yaml: &str) -> Pod {
        match decode(yaml.as_bytes(), false) {
            Ok(Decoded::Pod(pod)) => *pod,
            other => panic!("expected a pod, got {other:?}"),
        }
    }

    const WEB_YAML: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  initContainers:
  - name: init
    image: busybox:1.36
    command: ["true"]
    resources:
      limits:
        memory: 64Mi
  containers:
  - name: nginx
    image: nginx
    ports:
    - containerPort: 80
    resources:
      limits:
        cpu: 1
      requests:
        memory: 32Mi
    livenessProbe:
      httpGet:
        port: 80
    readinessProbe:
      tcpSocket:
        port: http
      periodSeconds: 5
  - name: sidecar
    image: registry.local:5000/tools/sidecar@sha256:0123456789abcdef
    env:
    - name: NODE
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
  volumes:
  - name: scratch
"#;

    /// The whole defaulted static pod, field by field: any change here changes what the
    /// kubelet runs, and a change of the UID restarts every static pod on upgrade.
    #[test]
    fn static_pod_defaults_snapshot() {
        let pod = prepare_static_pod(decode_pod(WEB_YAML), &file_origin(), NODE)
            .unwrap_or_else(|e| panic!("{e}"));
        let got = serde_json::to_value(&pod).unwrap_or_default();
        // Upstream v1.37.2 gives this manifest at this path on node-1 this UID.
        let uid = "7254a9a4d39cc40e47df3cd5e70c13ec";
        let want = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-node-1",
                "namespace": "default",
                "uid": uid,
                "labels": {"app": "web"},
                "annotations": {
                    "kubernetes.io/config.hash": uid,
                    "kubernetes.io/config.source": "file",
                },
            },
            "spec": {
                "nodeName": "node-1",
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
                "terminationGracePeriodSeconds": 30,
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "enableServiceLinks": true,
                "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "initContainers": [{
                    "name": "init",
                    "image": "busybox:1.36",
                    "command": ["true"],
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {
                        "limits": {"memory": "64Mi"},
                        "requests": {"memory": "64Mi"},
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }],
                "containers": [
                    {
                        "name": "nginx",
                        "image": "nginx",
                        "imagePullPolicy": "Always",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {
                            "limits": {"cpu": "1"},
                            "requests": {"cpu": "1", "memory": "32Mi"},
                        },
                        "livenessProbe": {
                            "httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                            "timeoutSeconds": 1,
                            "periodSeconds": 10,
                            "successThreshold": 1,
                            "failureThreshold": 3,
                        },
                        "readinessProbe": {
                            "tcpSocket": {"port": "http"},
                            "timeoutSeconds": 1,
                            "periodSeconds": 5,
                            "successThreshold": 1,
                            "failureThreshold": 3,
                        },
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                    },
                    {
                        "name": "sidecar",
                        "image": "registry.local:5000/tools/sidecar@sha256:0123456789abcdef",
                        "imagePullPolicy": "IfNotPresent",
                        "env": [{
                            "name": "NODE",
                            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}},
                        }],
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                    },
                ],
            },
            "status": {"phase": "Pending"},
        });
        assert_eq!(
            got,
            want,
            "got {}",
            serde_json::to_string_pretty(&got).unwrap_or_default()
        );
    }

    #[test]
    fn uid_depends_on_content_node_and_origin() {
        let uid = |yaml: &str, origin: &ManifestOrigin, node: &str| {
            prepare_static_pod(decode_pod(yaml), origin, node)
                .map(|p| p.metadata.uid.unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let base = uid(WEB_YAML, &file_origin(), NODE);
        assert_eq!(base.len(), 32);
        assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(base, uid(WEB_YAML, &file_origin(), NODE), "deterministic");
        let edited = WEB_YAML.replace("busybox:1.36", "busybox:1.37");
        assert_ne!(base, uid(&edited, &file_origin(), NODE));
        assert_ne!(base, uid(WEB_YAML, &file_origin(), "node-2"));
        let other_file = ManifestOrigin::File("/etc/kubernetes/manifests/web2.yaml".into());
        assert_ne!(base, uid(WEB_YAML, &other_file, NODE));
        let url = ManifestOrigin::Url("http://127.0.0.1/web.yaml".into());
        assert_ne!(base, uid(WEB_YAML, &url, NODE));
    }

    #[test]
    fn manifest_uid_is_kept_and_url_pods_get_no_toleration() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: api\n  namespace: kube-system\n  uid: fixed-uid\nspec:\n  containers:\n  - name: c\n    image: pause:3.10\n";
        let url = ManifestOrigin::Url("http://127.0.0.1/api.yaml".into());
        let pod =
            prepare_static_pod(decode_pod(yaml), &url, "n1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pod.metadata.uid.as_deref(), Some("fixed-uid"));
        assert_eq!(pod.metadata.name.as_deref(), Some("api-n1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        let annotations = pod.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations[super::super::CONFIG_HASH_ANNOTATION],
            "fixed-uid"
        );
        assert_eq!(annotations[super::super::CONFIG_SOURCE_ANNOTATION], "http");
        assert!(pod.spec.and_then(|s| s.tolerations).is_none());
    }

    #[test]
    fn json_and_yaml_decode_to_the_same_pod() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","labels":{"app":"web"}},
            "spec":{"containers":[{"name":"nginx","image":"nginx","ports":[{"containerPort":80}]}]}}"#;
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: nginx\n    image: nginx\n    ports:\n    - containerPort: 80\n";
        assert_eq!(decode_pod(json), decode_pod(yaml));
    }

    #[test]
    fn decode_errors_name_the_problem_and_position() {
        let err = |data: &str, list: bool| match decode(data.as_bytes(), list) {
            Err(reason) => reason,
            Ok(d) => panic!("decoded {d:?}"),
        };
        assert_eq!(err("  \n", false), "empty manifest");
        assert_eq!(
            err("metadata: {name: x}\n", false),
            "Object 'Kind' is missing"
        );
        assert_eq!(err("kind: Pod\n", false), "Object 'apiVersion' is missing");
        assert_eq!(
            err("apiVersion: apps/v1\nkind: Deployment\n", false),
            "expected a v1 Pod, got Deployment (apiVersion apps/v1)"
        );
        assert_eq!(
            err("apiVersion: v1\nkind: PodList\nitems: []\n", false),
            "expected a v1 Pod, got PodList (apiVersion v1)"
        );
        let yaml_syntax = err(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [oops\n",
            false,
        );
        assert!(yaml_syntax.contains("line 4"), "{yaml_syntax}");
        let yaml_type = err(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    ports:\n    - containerPort: eighty\n",
            false,
        );
        assert!(yaml_type.contains("line 9 column"), "{yaml_type}");
        assert!(yaml_type.contains("eighty"), "{yaml_type}");
        let json_syntax = err("{\"apiVersion\": \"v1\",\n \"kind\": \"Pod\",,}", false);
        assert!(json_syntax.contains("line 2 column"), "{json_syntax}");
    }

    #[test]
    fn pod_list_items_stay_raw() {
        let data =
            "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a}\n- metadata: {name: b}\n";
        match decode(data.as_bytes(), true) {
            Ok(Decoded::PodList(items)) => assert_eq!(items.len(), 2),
            other => panic!("expected a list, got {other:?}"),
        }
    }

    #[test]
    fn nameless_and_invalid_pods_are_rejected_with_reasons() {
        let nameless =
            decode_pod("apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: c, image: i}]\n");
        let err = prepare_static_pod(nameless, &file_origin(), "n1").err();
        assert_eq!(
            err.map(|e| rejection_reason(&e)).as_deref(),
            Some("invalid pod: name is needed for the pod")
        );

        let bad = decode_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  restartPolicy: Sometimes\n  containers:\n  - name: c\n",
        );
        let err = prepare_static_pod(bad, &file_origin(), "n1").err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "pod default/bad-n1: invalid spec.containers[0].image: Required value; \
                 spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \
                 \"Always\", \"OnFailure\", \"Never\""
            )
        );

        let secret = decode_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: s}\nspec:\n  containers:\n  - name: c\n    image: i\n    envFrom:\n    - secretRef: {name: creds}\n",
        );
        let err = prepare_static_pod(secret, &file_origin(), "n1").err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("pod default/s-n1: invalid spec: static pods may not reference secrets")
        );
    }

    #[test]
    fn snapshot_builder_rejects_duplicates_and_keeps_seen_times() {
        let pod = |yaml: &str, path: &str| {
            prepare_static_pod(decode_pod(yaml), &ManifestOrigin::File(path.into()), "n1")
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let a = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: c, image: i}]\n";
        let mut seen = HashMap::new();
        let mut builder = SnapshotBuilder::new();
        builder.add("/m/a.yaml", pod(a, "/m/a.yaml"));
        builder.add("/m/b.yaml", pod(a, "/m/b.yaml"));
        let (pods, rejected) = builder.finish(&mut seen);
        assert_eq!(pods.len(), 1);
        assert_eq!(
            rejected,
            vec![RejectedManifest {
                path: "/m/b.yaml".into(),
                reason: "duplicate pod name default/a-n1: already defined by /m/a.yaml".into(),
            }]
        );
        let seen_at = pods[0]
            .metadata
            .annotations
            .as_ref()
            .map(|a| a[CONFIG_SEEN_ANNOTATION].clone());
        let seen_at = seen_at.unwrap_or_default();
        assert!(seen_at.parse::<jiff::Timestamp>().is_ok(), "{seen_at}");
        assert_eq!(
            seen_at.len(),
            "2026-01-02T03:04:05.123456789Z".len(),
            "{seen_at}"
        );

        // The same pod read again keeps its first-seen time.
        let mut builder = SnapshotBuilder::new();
        builder.add("/m/a.yaml", pod(a, "/m/a.yaml"));
        let (again, _) = builder.finish(&mut seen);
        assert_eq!(again, pods);
        assert_eq!(seen.len(), 1);
    }
}
