//! Defaulting of pods the kubelet reads itself: first the defaults the API server would
//! apply to a v1 Pod (upstream `pkg/apis/core/v1/defaults.go` and its generated
//! `SetObjectDefaults_Pod`, with v1.37's default feature gates), then the static pod
//! defaults of upstream `pkg/kubelet/config/common.go` `applyDefaults`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    HTTPGetAction, Lifecycle, Pod, PodSecurityContext, PodSpec, PodStatus, Probe,
    ResourceRequirements, Toleration, Volume,
};
use sha2::{Digest, Sha256};

use super::spew::{Unsupported, upstream_static_pod_uid};
use super::{CONFIG_HASH_ANNOTATION, CONFIG_SOURCE_ANNOTATION, ManifestOrigin};

/// Upstream `DefaultTerminationGracePeriodSeconds`.
const DEFAULT_TERMINATION_GRACE_PERIOD: i64 = 30;
/// Upstream `DefaultSchedulerName`.
const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Upstream `TerminationMessagePathDefault`.
const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Mode 0644, upstream's default for secret, configMap, downwardAPI and projected
/// volumes.
const DEFAULT_VOLUME_MODE: i32 = 0o644;

/// The per-container defaults; a macro because `Container` and `EphemeralContainer` are
/// distinct types with the same fields.
macro_rules! default_container {
    ($c:expr) => {{
        let c = $c;
        if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
            c.image_pull_policy =
                Some(default_pull_policy(c.image.as_deref().unwrap_or("")).to_owned());
        }
        default_str(&mut c.termination_message_path, TERMINATION_MESSAGE_PATH);
        default_str(&mut c.termination_message_policy, "File");
        for port in c.ports.iter_mut().flatten() {
            default_str(&mut port.protocol, "TCP");
        }
        for env in c.env.iter_mut().flatten() {
            if let Some(from) = env.value_from.as_mut() {
                if let Some(field_ref) = from.field_ref.as_mut() {
                    default_str(&mut field_ref.api_version, "v1");
                }
                if let Some(file_ref) = from.file_key_ref.as_mut() {
                    file_ref.optional.get_or_insert(false);
                }
            }
        }
        for probe in [
            c.liveness_probe.as_mut(),
            c.readiness_probe.as_mut(),
            c.startup_probe.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            default_probe(probe);
        }
        if let Some(lifecycle) = c.lifecycle.as_mut() {
            default_lifecycle(lifecycle);
        }
    }};
}

/// Applies the defaults the API server gives a v1 Pod on create, as upstream's
/// `SetObjectDefaults_Pod` does with v1.37's default feature gates.
///
/// Covered: pod spec (restartPolicy `Always`, dnsPolicy `ClusterFirst`,
/// terminationGracePeriodSeconds 30 (and negative values raised to 1), schedulerName,
/// an empty securityContext, enableServiceLinks, the serviceAccount alias, host ports
/// under hostNetwork); containers of all three kinds (imagePullPolicy from the image tag,
/// termination message path and policy, port protocol `TCP`, probe timings, httpGet
/// path and scheme, gRPC service, fieldRef apiVersion, fileKeyRef optional, requests
/// defaulted from limits for init and regular containers); volumes (emptyDir when no
/// source is set, hostPath type, defaultMode 0644 of secret/configMap/downwardAPI/
/// projected, service account token expiry, image volume pull policy and the legacy
/// iSCSI, RBD, Azure disk and ScaleIO defaults).
///
/// Not covered: rounding quantities up to milli precision (`SetDefaults_ResourceList`),
/// pod-level resource defaults (deferred to admission in v1.37) and status defaults.
pub fn apply_api_defaults(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);

    // SetDefaults_Pod.
    if let Some(grace) = spec.termination_grace_period_seconds
        && grace < 0
    {
        spec.termination_grace_period_seconds = Some(1);
    }
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_requests_from_limits(c.resources.as_mut());
    }
    spec.enable_service_links.get_or_insert(true);
    if spec.host_network == Some(true) {
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            for port in c.ports.iter_mut().flatten() {
                if port.host_port.unwrap_or(0) == 0 {
                    port.host_port = Some(port.container_port);
                }
            }
        }
    }

    // SetDefaults_PodSpec.
    if spec
        .service_account_name
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        spec.service_account_name = spec.service_account.clone().filter(|s| !s.is_empty());
    }
    spec.service_account = spec.service_account_name.clone();
    default_str(&mut spec.dns_policy, "ClusterFirst");
    default_str(&mut spec.restart_policy, "Always");
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_PERIOD);
    default_str(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);

    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        default_container!(c);
    }
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        default_container!(c);
    }
}

fn default_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or("").is_empty() {
        *field = Some(value.to_owned());
    }
}

fn default_requests_from_limits(resources: Option<&mut ResourceRequirements>) {
    let Some(resources) = resources else { return };
    let Some(limits) = resources.limits.as_ref() else {
        return;
    };
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    for (name, value) in limits {
        requests
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
}

fn default_probe(probe: &mut Probe) {
    for (field, value) in [
        (&mut probe.timeout_seconds, 1),
        (&mut probe.period_seconds, 10),
        (&mut probe.success_threshold, 1),
        (&mut probe.failure_threshold, 3),
    ] {
        if field.unwrap_or(0) == 0 {
            *field = Some(value);
        }
    }
    if let Some(http) = probe.http_get.as_mut() {
        default_http_get(http);
    }
    if let Some(grpc) = probe.grpc.as_mut() {
        grpc.service.get_or_insert_with(String::new);
    }
}

fn default_lifecycle(lifecycle: &mut Lifecycle) {
    for hook in [lifecycle.post_start.as_mut(), lifecycle.pre_stop.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Some(http) = hook.http_get.as_mut() {
            default_http_get(http);
        }
    }
}

fn default_http_get(http: &mut HTTPGetAction) {
    default_str(&mut http.path, "/");
    default_str(&mut http.scheme, "HTTP");
}

fn default_volume(v: &mut Volume) {
    if has_no_source(v) {
        v.empty_dir = Some(Default::default());
    }
    if let Some(image) = v.image.as_mut()
        && image.pull_policy.as_deref().unwrap_or("").is_empty()
    {
        let tag = image_tag(image.reference.as_deref().unwrap_or(""));
        image.pull_policy = Some(if tag.as_deref() == Some("latest") {
            "Always".to_owned()
        } else {
            "IfNotPresent".to_owned()
        });
    }
    if let Some(host_path) = v.host_path.as_mut() {
        // HostPathUnset is the empty string.
        host_path.type_.get_or_insert_with(String::new);
    }
    if let Some(secret) = v.secret.as_mut() {
        secret.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(iscsi) = v.iscsi.as_mut() {
        default_str(&mut iscsi.iscsi_interface, "default");
    }
    if let Some(rbd) = v.rbd.as_mut() {
        default_str(&mut rbd.pool, "rbd");
        default_str(&mut rbd.user, "admin");
        default_str(&mut rbd.keyring, "/etc/ceph/keyring");
    }
    if let Some(downward) = v.downward_api.as_mut() {
        downward.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for item in downward.items.iter_mut().flatten() {
            if let Some(field_ref) = item.field_ref.as_mut() {
                default_str(&mut field_ref.api_version, "v1");
            }
        }
    }
    if let Some(config_map) = v.config_map.as_mut() {
        config_map.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(disk) = v.azure_disk.as_mut() {
        default_str(&mut disk.caching_mode, "ReadWrite");
        default_str(&mut disk.fs_type, "ext4");
        disk.read_only.get_or_insert(false);
        default_str(&mut disk.kind, "Shared");
    }
    if let Some(projected) = v.projected.as_mut() {
        projected.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for source in projected.sources.iter_mut().flatten() {
            if let Some(downward) = source.downward_api.as_mut() {
                for item in downward.items.iter_mut().flatten() {
                    if let Some(field_ref) = item.field_ref.as_mut() {
                        default_str(&mut field_ref.api_version, "v1");
                    }
                }
            }
            if let Some(token) = source.service_account_token.as_mut() {
                token.expiration_seconds.get_or_insert(3600);
            }
        }
    }
    if let Some(scale_io) = v.scale_io.as_mut() {
        default_str(&mut scale_io.storage_mode, "ThinProvisioned");
        default_str(&mut scale_io.fs_type, "xfs");
    }
    if let Some(template) = v
        .ephemeral
        .as_mut()
        .and_then(|e| e.volume_claim_template.as_mut())
    {
        default_str(&mut template.spec.volume_mode, "Filesystem");
    }
}

/// Whether a volume sets no source at all (upstream `AllPtrFieldsNil`). Looking at the
/// serialized form keeps this right when k8s-openapi gains new volume types.
fn has_no_source(v: &Volume) -> bool {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(map)) => map.keys().all(|k| k == "name"),
        _ => false,
    }
}

/// `Always` for `:latest` and untagged images, else `IfNotPresent` (upstream
/// `SetDefaults_Container`). A reference upstream's parser rejects gets `IfNotPresent`
/// too, and validation reports the bad image where it can.
fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag of an image reference as upstream's `ParseImageName` reports it: the explicit
/// tag, `latest` when there is neither tag nor digest, the empty string for a digest
/// without a tag, and `None` when the reference does not parse (empty, whitespace, upper
/// case in the repository path).
fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return None;
    }
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    // A first component that looks like a registry host may have upper case; the
    // repository path after it may not.
    let path = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            rest
        }
        _ => name,
    };
    if path.is_empty() || path.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) => Some(t.to_owned()),
        (None, Some(_)) => Some(String::new()),
        (None, None) => Some("latest".to_owned()),
    }
}

/// The UID of a static pod whose manifest has none: upstream's
/// ([`upstream_static_pod_uid`]), so that a node swapped between the upstream kubelet and
/// this one keeps its static pods running.
///
/// The few pods whose upstream dump cannot be reproduced (see [`super::spew`]) get a UID
/// of the same shape computed the same way over the defaulted pod's JSON with SHA-256: stable
/// across restarts and changed by any edit of the manifest, but not upstream's, which
/// is logged.
pub(crate) fn static_pod_uid(defaulted: &Pod, origin: &ManifestOrigin, node_name: &str) -> String {
    let source = match origin {
        ManifestOrigin::File(path) => format!("host:{node_name}file:{}", path.display()),
        ManifestOrigin::Url(url) => format!("url:{url}"),
    };
    match upstream_static_pod_uid(defaulted, &source) {
        Ok(uid) => uid,
        Err(Unsupported(why)) => {
            if first_warning(&format!("{origin}\n{why}")) {
                tracing::warn!(
                    manifest = %origin,
                    reason = %why,
                    "this static pod's UID differs from the upstream kubelet's: a kubelet \
                     swap restarts it"
                );
            }
            let mut hasher = Sha256::new();
            // Serializing a k8s-openapi Pod to a Vec cannot fail: every key is a string.
            hasher.update(serde_json::to_vec(defaulted).unwrap_or_default());
            hasher.update(source);
            let digest = hasher.finalize();
            digest[..16].iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// Whether `key` was not warned about before: manifests are read again every
/// `fileCheckFrequency`, so a warning about one would repeat forever. At most 1000 keys
/// are kept (then forgotten at once), as upstream's `staticPodWarningCache`.
fn first_warning(key: &str) -> bool {
    static WARNED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned.len() >= 1000 {
        warned.clear();
    }
    warned.insert(key.to_owned())
}

/// Upstream `applyDefaults` for static pods, run after [`apply_api_defaults`]: UID (see
/// [`static_pod_uid`]), name `<name>-<lower-case node name>`, namespace `default`,
/// `spec.nodeName`, the config hash and source annotations, the `Exists`/`NoExecute`
/// toleration for file pods (so node problems do not evict them) and phase `Pending`.
pub(crate) fn apply_static_pod_defaults(pod: &mut Pod, origin: &ManifestOrigin, node_name: &str) {
    if pod.metadata.uid.as_deref().unwrap_or("").is_empty() {
        pod.metadata.uid = Some(static_pod_uid(pod, origin, node_name));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or("");
    pod.metadata.name = Some(format!("{name}-{}", node_name.to_lowercase()));
    default_str(&mut pod.metadata.namespace, "default");

    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.node_name = Some(node_name.to_owned());

    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_HASH_ANNOTATION.to_owned(), uid);
    annotations.insert(
        CONFIG_SOURCE_ANNOTATION.to_owned(),
        origin.source().as_str().to_owned(),
    );

    if matches!(origin, ManifestOrigin::File(_)) {
        add_or_update_toleration(
            spec,
            Toleration {
                operator: Some("Exists".to_owned()),
                effect: Some("NoExecute".to_owned()),
                ..Toleration::default()
            },
        );
    }

    pod.status.get_or_insert_with(PodStatus::default).phase = Some("Pending".to_owned());
}

/// Upstream `AddOrUpdateTolerationInPod`: a toleration with the same key, operator,
/// value and effect is replaced (dropping e.g. its tolerationSeconds), otherwise the new
/// one is appended.
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |t: &Toleration| {
        t.key.as_deref().unwrap_or("") == toleration.key.as_deref().unwrap_or("")
            && t.effect.as_deref().unwrap_or("") == toleration.effect.as_deref().unwrap_or("")
            && t.operator.as_deref().unwrap_or("") == toleration.operator.as_deref().unwrap_or("")
            && t.value.as_deref().unwrap_or("") == toleration.value.as_deref().unwrap_or("")
    };
    match tolerations.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => tolerations.push(toleration),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    #[test]
    fn image_tags_as_upstream_parses_them() {
        let cases = [
            ("nginx", Some("latest")),
            ("nginx:latest", Some("latest")),
            ("nginx:1.27", Some("1.27")),
            ("registry.local:5000/team/app", Some("latest")),
            ("registry.local:5000/team/app:v2", Some("v2")),
            ("localhost/app:dev", Some("dev")),
            ("nginx@sha256:abcd", Some("")),
            ("nginx:1.2@sha256:abcd", Some("1.2")),
            ("nginx:latest@sha256:abcd", Some("latest")),
            ("Nginx", None),
            ("Registry.Example/app", Some("latest")),
            ("", None),
            (" nginx", None),
        ];
        for (image, want) in cases {
            assert_eq!(image_tag(image).as_deref(), want, "image {image:?}");
        }
    }

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox@sha256:0123"), "IfNotPresent");
        assert_eq!(default_pull_policy("BusyBox"), "IfNotPresent");
    }

    #[test]
    fn existing_matching_toleration_is_replaced_not_duplicated() {
        let mut spec = PodSpec {
            tolerations: Some(vec![
                Toleration {
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    toleration_seconds: Some(300),
                    ..Toleration::default()
                },
                Toleration {
                    key: Some("dedicated".into()),
                    operator: Some("Equal".into()),
                    value: Some("infra".into()),
                    ..Toleration::default()
                },
            ]),
            ..PodSpec::default()
        };
        add_or_update_toleration(
            &mut spec,
            Toleration {
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                ..Toleration::default()
            },
        );
        let tolerations = spec.tolerations.unwrap_or_default();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0].toleration_seconds, None);
        assert_eq!(tolerations[1].key.as_deref(), Some("dedicated"));
    }

    #[test]
    fn volume_without_source_becomes_empty_dir() {
        let mut v = Volume {
            name: "scratch".into(),
            ..Volume::default()
        };
        default_volume(&mut v);
        assert!(v.empty_dir.is_some());

        let mut host = Volume {
            name: "etc".into(),
            host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
                path: "/etc".into(),
                type_: None,
            }),
            ..Volume::default()
        };
        default_volume(&mut host);
        assert!(host.empty_dir.is_none());
        assert_eq!(
            host.host_path.and_then(|h| h.type_).as_deref(),
            Some(""),
            "hostPath type defaults to HostPathUnset"
        );
    }

    #[test]
    fn requests_default_from_limits_without_overriding() {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let mut c = Container {
            name: "app".into(),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity("500m".into())),
                    ("memory".to_owned(), Quantity("128Mi".into())),
                ])),
                requests: Some(BTreeMap::from([(
                    "cpu".to_owned(),
                    Quantity("100m".into()),
                )])),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        default_requests_from_limits(c.resources.as_mut());
        let requests = c.resources.and_then(|r| r.requests).unwrap_or_default();
        assert_eq!(requests["cpu"], Quantity("100m".into()));
        assert_eq!(requests["memory"], Quantity("128Mi".into()));
    }

    #[test]
    fn a_fallback_uid_is_warned_about_once_per_manifest_and_reason() {
        assert!(first_warning("/m/a.yaml\nquantity \"1.5Gi\""));
        assert!(!first_warning("/m/a.yaml\nquantity \"1.5Gi\""));
        assert!(first_warning("/m/b.yaml\nquantity \"1.5Gi\""));
    }
}
