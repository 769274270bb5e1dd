//! Registry credentials from a pod's imagePullSecrets, matched to an image the way
//! upstream's docker keyring does (`pkg/credentialprovider/keyring.go`).

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kubelet_core::{ObjectSource, RegistryAuth};
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::pull_records::{TrackedSecret, credential_hash};

/// Secret type holding a `~/.docker/config.json`.
const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// Secret type holding a legacy `~/.dockercfg`.
const DOCKERCFG: &str = "kubernetes.io/dockercfg";
/// Registry of images named without one.
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// A registry key as upstream stores it: host[:port] plus an optional path, no scheme.
fn key_of(registry: &str) -> String {
    let without_scheme = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let (host, path) = match without_scheme.split_once('/') {
        Some((host, path)) => (host, format!("/{path}")),
        None => (without_scheme, String::new()),
    };
    let path = path
        .strip_prefix("/v2/")
        .or_else(|| path.strip_prefix("/v1/"))
        .map(|p| format!("/{p}"))
        .unwrap_or(path);
    if path.is_empty() || path == "/" {
        host.to_owned()
    } else {
        format!("{host}{}", path.trim_end_matches('/'))
    }
}

/// Splits `host[:port]/path` into host parts, port and path.
fn split(schemeless: &str) -> (Vec<String>, String, String) {
    let (hostport, path) = schemeless
        .split_once('/')
        .map_or((schemeless, ""), |(h, p)| (h, p));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => (host, port),
        _ => (hostport, ""),
    };
    (
        host.split('.').map(str::to_owned).collect(),
        port.to_owned(),
        path.to_owned(),
    )
}

/// A shell-style glob on one host label (`*` matches any run of characters).
fn label_matches(glob: &str, label: &str) -> bool {
    match glob.split_once('*') {
        None => glob == label,
        Some((prefix, rest)) => {
            let Some(tail) = label.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && label_matches(rest, &tail[i..]))
        }
    }
}

/// Upstream `URLsMatchStr`: same number of host labels each matching, same port, and the
/// key's path a prefix of the image's.
fn matches(key: &str, image: &str) -> bool {
    let (key_host, key_port, key_path) = split(key);
    let (image_host, image_port, image_path) = split(image);
    key_port == image_port
        && key_host.len() == image_host.len()
        && key_host
            .iter()
            .zip(&image_host)
            .all(|(g, l)| label_matches(g, l))
        && image_path.starts_with(&key_path)
}

/// The image reference with its registry made explicit.
fn qualified(image: &str) -> String {
    let first = image.split('/').next().unwrap_or_default();
    let has_registry =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        image.to_owned()
    } else {
        format!("{DEFAULT_REGISTRY_HOST}/{image}")
    }
}

fn entries(secret: &Secret) -> Vec<(String, Entry)> {
    let data = secret.data.clone().unwrap_or_default();
    let parsed: Option<BTreeMap<String, Entry>> = match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON) => data
            .get(".dockerconfigjson")
            .and_then(|b| serde_json::from_slice::<ConfigJson>(&b.0).ok())
            .map(|c| c.auths),
        Some(DOCKERCFG) => data
            .get(".dockercfg")
            .and_then(|b| serde_json::from_slice(&b.0).ok()),
        _ => None,
    };
    parsed.into_iter().flatten().collect()
}

fn auth_of(entry: Entry) -> RegistryAuth {
    let (mut username, mut password) = (entry.username, entry.password);
    // `auth` (base64 user:password) wins, as upstream decodes it over the fields.
    if !entry.auth.is_empty()
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(entry.auth.trim())
        && let Some((user, pass)) = String::from_utf8_lossy(&decoded).split_once(':')
    {
        username = user.to_owned();
        password = pass.to_owned();
    }
    RegistryAuth {
        username,
        password,
        ..Default::default()
    }
}

/// The credentials of the pod's imagePullSecrets that apply to `image`, most specific
/// registry key first. Empty: pull anonymously.
#[cfg(test)]
async fn credentials_for(pod: &Pod, image: &str, objects: &dyn ObjectSource) -> Vec<RegistryAuth> {
    tracked_credentials_for(pod, image, objects)
        .await
        .into_iter()
        .map(|(auth, _)| auth)
        .collect()
}

/// The credentials of the pod's imagePullSecrets that apply to `image`, most specific
/// registry key first, each with the secret it came from (for the pull records). Empty:
/// pull anonymously.
pub async fn tracked_credentials_for(
    pod: &Pod,
    image: &str,
    objects: &dyn ObjectSource,
) -> Vec<(RegistryAuth, TrackedSecret)> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let target = qualified(image);
    let mut keyed: Vec<(String, RegistryAuth, TrackedSecret)> = Vec::new();
    let secrets = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    for reference in secrets {
        let secret = match objects.secret(namespace, &reference.name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                tracing::warn!(secret = %reference.name, "imagePullSecret not found; pulling without it");
                continue;
            }
            Err(e) => {
                tracing::warn!(secret = %reference.name, error = %e, "unable to retrieve the imagePullSecret; pulling without it");
                continue;
            }
        };
        for (registry, entry) in entries(&secret) {
            let key = key_of(&registry);
            if matches(&key, &target) {
                let auth = auth_of(entry);
                let tracked = TrackedSecret {
                    uid: secret.metadata.uid.clone().unwrap_or_default(),
                    namespace: namespace.to_owned(),
                    name: reference.name.clone(),
                    credential_hash: credential_hash(&auth),
                };
                keyed.push((key, auth, tracked));
            }
        }
    }
    // Upstream walks its index in reverse lexical order: longer, more specific keys first.
    keyed.sort_by(|a, b| b.0.cmp(&a.0));
    keyed
        .into_iter()
        .map(|(_, auth, tracked)| (auth, tracked))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{ConfigMap, LocalObjectReference, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    struct Objects(Vec<Secret>);

    #[async_trait::async_trait]
    impl ObjectSource for Objects {
        async fn config_map(&self, _: &str, _: &str) -> kubelet_core::Result<Option<ConfigMap>> {
            Ok(None)
        }
        async fn secret(
            &self,
            namespace: &str,
            name: &str,
        ) -> kubelet_core::Result<Option<Secret>> {
            Ok(self
                .0
                .iter()
                .find(|s| {
                    s.metadata.namespace.as_deref() == Some(namespace)
                        && s.metadata.name.as_deref() == Some(name)
                })
                .cloned())
        }
    }

    fn docker_secret(name: &str, config: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            type_: Some(DOCKER_CONFIG_JSON.into()),
            data: Some(
                [(
                    ".dockerconfigjson".to_owned(),
                    ByteString(config.as_bytes().to_vec()),
                )]
                .into(),
            ),
            ..Default::default()
        }
    }

    fn pod_with(secrets: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                image_pull_secrets: Some(
                    secrets
                        .iter()
                        .map(|s| LocalObjectReference { name: (*s).into() })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn matches_registry_hosts_ports_paths_and_globs() {
        assert!(matches("localhost:5001", "localhost:5001/busybox:latest"));
        assert!(!matches("localhost:5001", "localhost:5000/busybox:latest"));
        assert!(!matches("localhost", "localhost:5001/busybox"));
        assert!(matches(
            "registry.example.com/team",
            "registry.example.com/team/app:1"
        ));
        assert!(!matches(
            "registry.example.com/team",
            "registry.example.com/other/app:1"
        ));
        assert!(matches("*.example.com", "registry.example.com/app"));
        assert!(!matches("*.example.com", "example.com/app"));
        assert_eq!(key_of("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(key_of("http://localhost:5001"), "localhost:5001");
        assert_eq!(qualified("busybox"), "index.docker.io/busybox");
        assert_eq!(
            qualified("library/busybox:1"),
            "index.docker.io/library/busybox:1"
        );
        assert_eq!(
            qualified("localhost:5000/busybox"),
            "localhost:5000/busybox"
        );
    }

    #[tokio::test]
    async fn credentials_come_from_matching_pull_secrets_most_specific_first() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("bob:from-auth");
        let objects = Objects(vec![
            docker_secret(
                "regcred",
                r#"{"auths":{"localhost:5001":{"username":"alice","password":"pw"},"other.example.com":{"username":"x","password":"y"}}}"#,
            ),
            docker_secret(
                "team",
                &format!(r#"{{"auths":{{"https://localhost:5001/team":{{"auth":"{encoded}"}}}}}}"#),
            ),
        ]);
        let pod = pod_with(&["regcred", "team", "missing"]);
        let creds = credentials_for(&pod, "localhost:5001/team/app:1", &objects).await;
        let users: Vec<_> = creds
            .iter()
            .map(|c| (c.username.as_str(), c.password.as_str()))
            .collect();
        assert_eq!(users, [("bob", "from-auth"), ("alice", "pw")]);
        assert!(
            credentials_for(&pod, "localhost:5000/busybox", &objects)
                .await
                .is_empty()
        );
        assert!(
            credentials_for(&pod_with(&[]), "localhost:5001/app", &objects)
                .await
                .is_empty()
        );
    }
}
