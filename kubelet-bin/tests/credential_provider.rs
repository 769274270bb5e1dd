//! Image credential provider plugins on the real control plane and containerd: a shell
//! script plugin in `--image-credential-provider-bin-dir` gives the credentials of the
//! registry that requires them (`$KUBELET_TEST_AUTH_REGISTRY`), so pods without
//! imagePullSecrets pull from it; its answer is cached (`cacheKeyType: Registry`,
//! `cacheDuration`) so two pods ask it once; a plugin that fails leaves its pod in
//! ErrImagePull with a `Failed` event.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Cluster, Kubelet, Namespace, lock};
use kubelet_cri_client::TestEnv;

/// Writes `bin/<name>` (a shell script) and a CredentialProviderConfig naming it for
/// the auth registry; the flags that pass both.
fn plugin_flags(root: &Path, name: &str, script: &str, registry: &str) -> [String; 4] {
    plugin_flags_with(root, name, script, registry, "")
}

/// [`plugin_flags`] with more fields of the provider (YAML lines indented by two).
fn plugin_flags_with(
    root: &Path,
    name: &str,
    script: &str,
    registry: &str,
    more: &str,
) -> [String; 4] {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let path = bin.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("plugin");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let config = root.join("credential-providers.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n\
             - name: {name}\n  matchImages: [\"{registry}\"]\n  defaultCacheDuration: 1m\n\
             \x20 apiVersion: credentialprovider.kubelet.k8s.io/v1\n  args: [\"--registry={registry}\"]\n{more}"
        ),
    )
    .expect("config");
    [
        "--image-credential-provider-config".to_owned(),
        config.display().to_string(),
        "--image-credential-provider-bin-dir".to_owned(),
        bin.display().to_string(),
    ]
}

fn start(c: &Cluster, root: &Path, flags: &[String]) -> Kubelet {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let kubelet = c.start_kubelet_with_flags(root, &c.node_kubeconfig, "", &flags, &[]);
    c.wait_node_ready(&kubelet);
    kubelet
}

/// A pod pulling `image` on every start (imagePullPolicy Always: the registry is asked
/// each time, whatever containerd holds), with no imagePullSecrets.
fn pod(ns: &str, name: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Always
    command: ["sh", "-c", "sleep 3600"]
"#
    )
}

fn running(p: &serde_json::Value) -> bool {
    p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

#[test]
fn a_plugin_supplies_registry_credentials_cached_for_two_pods() {
    let Some((env, c)) =
        Cluster::from_env("a_plugin_supplies_registry_credentials_cached_for_two_pods")
    else {
        return;
    };
    let Some(registry) = auth_registry(
        &env,
        "a_plugin_supplies_registry_credentials_cached_for_two_pods",
    ) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let requests = dir.path().join("requests.log");
    // The request (one JSON line) and the plugin's first argument appended per run.
    let script = format!(
        r#"request=$(cat)
printf '%s %s\n' "$request" "$1" >> {requests}
cat <<'EOF'
{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"10m","auth":{{"{registry}":{{"username":"{user}","password":"{password}"}}}}}}
EOF"#,
        requests = requests.display(),
        user = env.auth_user,
        password = env.auth_password,
    );
    let flags = plugin_flags(dir.path(), "registry-auth", &script, &registry);
    let kubelet = start(&c, dir.path(), &flags);
    let namespace = Namespace::create(&c, "credential-provider-test");
    let ns = namespace.name;
    let image = format!("{registry}/busybox:latest");
    c.apply(&pod(ns, "first", &image));
    c.wait_json(
        "the first pod Running",
        &["get", "pod", "first", "-n", ns],
        90,
        &kubelet,
        running,
    );
    c.apply(&pod(ns, "second", &image));
    c.wait_json(
        "the second pod Running",
        &["get", "pod", "second", "-n", ns],
        90,
        &kubelet,
        running,
    );
    // Both pulled from the registry (the registry refuses anonymous pulls) ...
    let pulled = c.json(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "reason=Pulled",
    ]);
    let pulls = pulled["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Successfully pulled"))
            })
            .count()
    });
    assert_eq!(pulls, 2, "{pulled:#}");
    // ... with one run of the plugin, its answer cached for the registry.
    let log = std::fs::read_to_string(&requests).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "one plugin run: {log}\n{}", kubelet.log());
    let (request, arg) = lines[0].rsplit_once(' ').expect("request and argument");
    let request: serde_json::Value = serde_json::from_str(request).expect("request JSON");
    assert_eq!(
        request,
        serde_json::json!({
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderRequest",
            "image": format!("{registry}/busybox"),
        })
    );
    assert_eq!(arg, format!("--registry={registry}"));
}

#[test]
fn a_failing_plugin_leaves_the_pod_in_err_image_pull() {
    let Some((env, c)) = Cluster::from_env("a_failing_plugin_leaves_the_pod_in_err_image_pull")
    else {
        return;
    };
    let Some(registry) = auth_registry(&env, "a_failing_plugin_leaves_the_pod_in_err_image_pull")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let runs = dir.path().join("runs.log");
    let script = format!(
        "cat > /dev/null; echo run >> {}; echo 'no credentials for you' >&2; exit 1",
        runs.display()
    );
    let flags = plugin_flags(dir.path(), "broken", &script, &registry);
    let kubelet = start(&c, dir.path(), &flags);
    let namespace = Namespace::create(&c, "credential-provider-fail-test");
    let ns = namespace.name;
    c.apply(&pod(ns, "refused", &format!("{registry}/busybox:latest")));
    c.wait_json(
        "ErrImagePull",
        &["get", "pod", "refused", "-n", ns],
        90,
        &kubelet,
        |p| {
            matches!(
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str(),
                Some("ErrImagePull" | "ImagePullBackOff")
            )
        },
    );
    let events = [
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "involvedObject.name=refused,reason=Failed",
    ];
    c.wait_json("the Failed event", &events, 30, &kubelet, |e| {
        e["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .filter_map(|e| e["message"].as_str())
                .any(|m| m.starts_with("Failed to pull image") && m.contains("busybox"))
        })
    });
    assert!(
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .contains("run"),
        "the plugin ran\n{}",
        kubelet.log()
    );
    assert!(
        kubelet
            .log()
            .contains("failed to provide credentials for image"),
        "{}",
        kubelet.log()
    );
}

/// Token mode: the plugin gets a token of the pod's service account for the configured
/// audience and the service account's required annotation, and answers with the
/// registry's credentials.
#[test]
fn token_mode_passes_the_pods_service_account_token() {
    let test = "token_mode_passes_the_pods_service_account_token";
    let Some((env, c)) = Cluster::from_env(test) else {
        return;
    };
    let Some(registry) = auth_registry(&env, test) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let requests = dir.path().join("requests.log");
    let script = format!(
        r#"cat >> {requests}; echo >> {requests}
cat <<'EOF'
{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":{{"{registry}":{{"username":"{user}","password":"{password}"}}}}}}
EOF"#,
        requests = requests.display(),
        user = env.auth_user,
        password = env.auth_password,
    );
    let flags = plugin_flags_with(
        dir.path(),
        "sa-auth",
        &script,
        &registry,
        "  tokenAttributes:\n    serviceAccountTokenAudience: kubelet-rs-registry\n\
         \x20   cacheType: ServiceAccount\n    requireServiceAccount: true\n\
         \x20   requiredServiceAccountAnnotationKeys: [\"example.com/registry-role\"]\n",
    );
    // Nodes may request tokens only for audiences RBAC grants them (1.33+'s
    // ServiceAccountNodeAudienceRestriction), as a credential provider's operator does.
    let _grant = Grant::create(&c);
    let kubelet = start(&c, dir.path(), &flags);
    let namespace = Namespace::create(&c, "credential-provider-token-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: puller
  namespace: {ns}
  annotations: {{example.com/registry-role: reader, example.com/other: not-passed}}
"#
    ));
    let manifest = pod(ns, "with-token", &format!("{registry}/busybox:latest")).replace(
        "  automountServiceAccountToken: false\n",
        "  automountServiceAccountToken: false\n  serviceAccountName: puller\n",
    );
    c.apply(&manifest);
    c.wait_json(
        "the pod Running",
        &["get", "pod", "with-token", "-n", ns],
        90,
        &kubelet,
        running,
    );
    let log = std::fs::read_to_string(&requests).unwrap_or_default();
    let request: serde_json::Value =
        serde_json::from_str(log.lines().next().unwrap_or_default()).expect("request JSON");
    assert_eq!(request["image"], format!("{registry}/busybox"));
    assert_eq!(
        request["serviceAccountAnnotations"],
        serde_json::json!({"example.com/registry-role": "reader"})
    );
    let token = request["serviceAccountToken"].as_str().unwrap_or_default();
    assert_eq!(token.split('.').count(), 3, "a JWT: {request}");
}

/// The ClusterRole and binding that let nodes request tokens for the plugin's audience,
/// removed when the test ends.
struct Grant<'a>(&'a Cluster);

impl<'a> Grant<'a> {
    fn create(c: &'a Cluster) -> Self {
        c.apply(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kubelet-rs-test-registry-audience}
rules:
- apiGroups: [""]
  resources: ["kubelet-rs-registry"]
  verbs: ["request-serviceaccounts-token-audience"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kubelet-rs-test-registry-audience}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubelet-rs-test-registry-audience}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes"}
"#,
        );
        Self(c)
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        for kind in ["clusterrolebinding", "clusterrole"] {
            let _ = self.0.try_kubectl(
                &[
                    "delete",
                    kind,
                    "kubelet-rs-test-registry-audience",
                    "--ignore-not-found",
                ],
                None,
            );
        }
    }
}

/// A kubelet with a configuration that fails validation does not start, naming the
/// file and the field.
#[test]
fn an_invalid_configuration_stops_start_up_naming_the_field() {
    let dir = kubelet_test_support::TestDir::new();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let config = dir.path().join("providers.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n\
         - name: p\n  matchImages: [\"r.io\"]\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
    )
    .expect("config");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("manifests");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet"))
        .arg("--image-credential-provider-config")
        .arg(&config)
        .arg("--image-credential-provider-bin-dir")
        .arg(&bin)
        .arg("--pod-manifest-path")
        .arg(&manifests)
        .arg("--root-dir")
        .arg(dir.path().join("root"))
        .arg("--fail-cgroupv1=false")
        // A runtime that does not exist: the configuration must fail first.
        .args(["--container-runtime-endpoint", "unix:///nonexistent.sock"])
        .output()
        .expect("run the kubelet");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("providers.yaml")
            && stderr.contains("providers.defaultCacheDuration: Required value"),
        "{stderr}"
    );
}

/// The auth registry of the environment, or `None` (skipped) without one.
fn auth_registry(env: &TestEnv, test: &str) -> Option<String> {
    if env.auth_registry.is_empty() || env.auth_user.is_empty() {
        kubelet_test_support::skip(
            test,
            "no registry requiring credentials (KUBELET_TEST_AUTH_*)",
        );
        return None;
    }
    Some(env.auth_registry.clone())
}
