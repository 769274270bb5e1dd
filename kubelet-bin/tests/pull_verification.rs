//! `imagePullCredentialsVerificationPolicy` (KubeletEnsureSecretPulledImages) on the real
//! control plane and containerd: an image pulled from the registry requiring credentials
//! with one namespace's imagePullSecret is not handed to a pod of another namespace that
//! lacks them, even with `IfNotPresent`; a secret with the same credentials is enough.

mod common;

use base64::Engine as _;
use common::{Cluster, Namespace, lock};

/// A dockerconfigjson Secret for `registry` with `user`/`password`.
fn pull_secret(ns: &str, name: &str, registry: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#);
    let data = base64::engine::general_purpose::STANDARD.encode(config);
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {ns}}}
type: kubernetes.io/dockerconfigjson
data: {{.dockerconfigjson: {data}}}
"#
    )
}

fn pod(
    ns: &str,
    name: &str,
    node: &str,
    image: &str,
    policy: &str,
    secret: Option<&str>,
) -> String {
    let secrets = secret.map_or_else(String::new, |s| {
        format!("  imagePullSecrets: [{{name: {s}}}]\n")
    });
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
{secrets}  containers:
  - name: main
    image: {image}
    imagePullPolicy: {policy}
    command: ["sh", "-c", "sleep 3600"]
"#
    )
}

fn running(p: &serde_json::Value) -> bool {
    p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

#[test]
fn an_image_pulled_with_a_secret_is_not_given_to_pods_without_it() {
    let Some((env, c)) =
        Cluster::from_env("an_image_pulled_with_a_secret_is_not_given_to_pods_without_it")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let registry = env.auth_registry.clone();
    let image = format!("{registry}/busybox:latest");
    let owner = Namespace::create(&c, "pull-owner");
    let other = Namespace::create(&c, "pull-other");
    let (user, password) = (env.auth_user.as_str(), env.auth_password.as_str());

    // Namespace pull-owner pulls the image with its secret.
    c.apply(&pull_secret(
        owner.name, "regcred", &registry, user, password,
    ));
    c.apply(&pod(
        owner.name,
        "owner",
        &c.node,
        &image,
        "Always",
        Some("regcred"),
    ));
    c.wait_json(
        "owner Running",
        &["get", "pod", "owner", "-n", owner.name],
        90,
        &kubelet,
        running,
    );

    // A pod of another namespace without the secret may not use it: it must pull, and
    // the registry refuses it.
    c.apply(&pod(
        other.name,
        "stranger",
        &c.node,
        &image,
        "IfNotPresent",
        None,
    ));
    c.wait_json(
        "stranger refused the image",
        &["get", "pod", "stranger", "-n", other.name],
        90,
        &kubelet,
        |p| {
            matches!(
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str(),
                Some("ErrImagePull" | "ImagePullBackOff")
            )
        },
    );
    // With pull policy Never, the image is reported as absent.
    c.apply(&pod(other.name, "never", &c.node, &image, "Never", None));
    c.wait_json(
        "never refused",
        &["get", "pod", "never", "-n", other.name],
        90,
        &kubelet,
        |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull"
        },
    );

    // The same credentials in its own secret are enough, without a pull.
    c.apply(&pull_secret(other.name, "copy", &registry, user, password));
    c.apply(&pod(
        other.name,
        "copy",
        &c.node,
        &image,
        "Never",
        Some("copy"),
    ));
    c.wait_json(
        "copy Running",
        &["get", "pod", "copy", "-n", other.name],
        90,
        &kubelet,
        running,
    );

    let record_dir = dir.path().join("root/image_manager/pulled");
    let records: Vec<String> = std::fs::read_dir(&record_dir)
        .expect("pulled records")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r.contains("\"kind\":\"ImagePulledRecord\"")
                && r.contains("\"name\":\"regcred\"")),
        "{records:?}"
    );
    drop(other);
    drop(owner);
    drop(kubelet);
}
