//! Which credentials pulled each image, so that an image on the node is only used by
//! pods that could have pulled it themselves: upstream's image pull manager
//! (`pkg/kubelet/images/pullmanager`, feature KubeletEnsureSecretPulledImages) with its
//! `imagePullCredentialsVerificationPolicy`.
//!
//! After a pull the kubelet writes an `ImagePulledRecord` (upstream's format and place:
//! `<root-dir>/image_manager/pulled/sha256-<sha256 of the image ID>`) naming, per image
//! repository, the imagePullSecret that pulled it (namespace, name, UID and a hash of its
//! credentials), or `nodePodsAccessible` when no pod credential was needed (anonymous or
//! the node's own credentials). While a pull runs an intent file
//! (`image_manager/pulling/`) marks the image as the kubelet's. Before a pod uses an image
//! already on the node with `IfNotPresent` or `Never`, the policy decides whether its
//! credentials are checked: `NeverVerify` never; `NeverVerifyPreloadedImages` (the
//! default) for images the kubelet pulled; `NeverVerifyAllowlistedImages` for all but
//! `preloadedImagesVerificationAllowlist`; `AlwaysVerify` always. A checked pod may use the
//! image when it is node-accessible, or when one of its imagePullSecrets is the one that
//! pulled it (same coordinates, or same credentials); otherwise the image is pulled again
//! with the pod's own credentials (`Never`: `ErrImageNeverPull`, as if absent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// `imagePullCredentialsVerificationPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationPolicy {
    /// Images on the node are used by any pod.
    NeverVerify,
    /// Credentials are checked for images the kubelet pulled (upstream's default).
    NeverVerifyPreloadedImages,
    /// Credentials are checked except for these images (`registry/path` exact, or a
    /// prefix ending in `/*`).
    NeverVerifyAllowlistedImages(Vec<String>),
    /// Credentials are always checked.
    AlwaysVerify,
}

impl VerificationPolicy {
    /// The policy of the configuration fields; an unknown name is refused.
    pub fn parse(policy: &str, allowlist: &[String]) -> Result<Self, String> {
        match policy {
            "NeverVerify" => Ok(Self::NeverVerify),
            "" | "NeverVerifyPreloadedImages" => Ok(Self::NeverVerifyPreloadedImages),
            "NeverVerifyAllowlistedImages" => {
                Ok(Self::NeverVerifyAllowlistedImages(allowlist.to_vec()))
            }
            "AlwaysVerify" => Ok(Self::AlwaysVerify),
            other => Err(format!(
                "unknown image pull credential verification policy: {other}"
            )),
        }
    }

    /// Whether a pod's credentials must be checked for `image` (upstream's
    /// `RequireCredentialVerificationForImage`).
    fn requires_verification(&self, image: &str, pulled_by_kubelet: bool) -> bool {
        match self {
            Self::NeverVerify => false,
            Self::NeverVerifyPreloadedImages => pulled_by_kubelet,
            Self::NeverVerifyAllowlistedImages(list) => {
                let name = repository(image);
                !list.iter().any(|pattern| match pattern.strip_suffix("/*") {
                    Some(prefix) => name.starts_with(&format!("{prefix}/")),
                    None => *pattern == name,
                })
            }
            Self::AlwaysVerify => true,
        }
    }
}

/// An imagePullSecret as the records name it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackedSecret {
    /// The Secret's UID.
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// A hash of the credentials it gave for the image's registry.
    pub credential_hash: String,
}

/// What credentials a successful pull used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PulledWith {
    /// None of the pod's: anonymous, or the node's own credentials.
    NodeAccessible,
    /// This imagePullSecret of the pod.
    Secret(TrackedSecret),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kubernetes_secrets: Vec<TrackedSecret>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    node_pods_accessible: bool,
}

/// Upstream's `ImagePulledRecord` (kubelet.config.k8s.io/v1alpha1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PulledRecord {
    kind: String,
    api_version: String,
    last_updated_time: String,
    image_ref: String,
    #[serde(default)]
    credential_mapping: BTreeMap<String, Credentials>,
}

/// How many secrets one image's record keeps (upstream's `writeRecordWhileMatchingLimit`
/// bounds the writes made while matching; this bounds the record itself).
const MAX_SECRETS_PER_IMAGE: usize = 100;

/// The records of `<root-dir>/image_manager` and the policy applied to them.
#[derive(Debug)]
pub struct PullRecords {
    dir: PathBuf,
    policy: VerificationPolicy,
    /// One record update at a time (read, change, write).
    lock: tokio::sync::Mutex<()>,
}

impl PullRecords {
    /// Records under `root_dir/image_manager`, checked with `policy`.
    pub fn new(root_dir: &Path, policy: VerificationPolicy) -> Self {
        Self {
            dir: root_dir.join("image_manager"),
            policy,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn pulled_path(&self, image_ref: &str) -> PathBuf {
        self.dir.join("pulled").join(file_name(image_ref))
    }

    fn intent_path(&self, image: &str) -> PathBuf {
        self.dir.join("pulling").join(file_name(image))
    }

    /// Whether the image already on the node (`image_ref`) must be pulled again before
    /// this pod, with `pod_secrets` (its imagePullSecrets for the image), may use it.
    pub async fn must_pull(
        &self,
        image: &str,
        image_ref: &str,
        pod_secrets: &[TrackedSecret],
    ) -> bool {
        let record = match read_record(&self.pulled_path(image_ref)).await {
            Ok(record) => record,
            Err(e) => {
                // Upstream too verifies when its records cannot be read.
                tracing::warn!(image, error = %e, "cannot read the image's pull record; checking the pod's credentials");
                return true;
            }
        };
        let pulled_by_kubelet =
            record.is_some() || tokio::fs::metadata(self.intent_path(image)).await.is_ok();
        if !self.policy.requires_verification(image, pulled_by_kubelet) {
            return false;
        }
        let Some(record) = record else {
            return true;
        };
        let Some(cached) = record.credential_mapping.get(&repository(image)) else {
            return true;
        };
        if cached.node_pods_accessible {
            return false;
        }
        let matched = pod_secrets.iter().find(|pod| {
            cached.kubernetes_secrets.iter().any(|known| {
                (!known.credential_hash.is_empty() && known.credential_hash == pod.credential_hash)
                    || (known.uid == pod.uid
                        && known.namespace == pod.namespace
                        && known.name == pod.name)
            })
        });
        match matched {
            Some(secret) => {
                // As upstream, a secret that matched by hash or coordinates only is
                // remembered with both, so it keeps matching when the other changes.
                if let Err(e) = self
                    .record_pulled(image, image_ref, PulledWith::Secret(secret.clone()))
                    .await
                {
                    tracing::warn!(image, error = %e, "updating the image's pull record");
                }
                false
            }
            None => true,
        }
    }

    /// Marks `image` as being pulled by the kubelet (until [`Self::pull_ended`]).
    pub async fn pull_started(&self, image: &str) {
        let path = self.intent_path(image);
        if let Err(e) = write_atomic(&path, image.as_bytes()).await {
            tracing::warn!(image, error = %e, "writing the image pull intent");
        }
    }

    /// The pull of `image` ended: with `Some`, it succeeded as `image_ref` with those
    /// credentials, which are recorded.
    pub async fn pull_ended(&self, image: &str, pulled: Option<(&str, PulledWith)>) {
        if let Some((image_ref, with)) = pulled
            && let Err(e) = self.record_pulled(image, image_ref, with).await
        {
            tracing::warn!(image, error = %e, "writing the image's pull record");
        }
        match tokio::fs::remove_file(self.intent_path(image)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(image, error = %e, "removing the image pull intent"),
        }
    }

    /// Adds `with` to the record of `image_ref` for `image`'s repository.
    async fn record_pulled(
        &self,
        image: &str,
        image_ref: &str,
        with: PulledWith,
    ) -> std::io::Result<()> {
        let _guard = self.lock.lock().await;
        let path = self.pulled_path(image_ref);
        let mut record = read_record(&path).await?.unwrap_or_else(|| PulledRecord {
            kind: "ImagePulledRecord".into(),
            api_version: "kubelet.config.k8s.io/v1alpha1".into(),
            image_ref: image_ref.to_owned(),
            ..PulledRecord::default()
        });
        let before = record.clone();
        let entry = record
            .credential_mapping
            .entry(repository(image))
            .or_default();
        match with {
            PulledWith::NodeAccessible => {
                entry.node_pods_accessible = true;
                entry.kubernetes_secrets.clear();
            }
            PulledWith::Secret(secret) => {
                if entry.node_pods_accessible {
                    return Ok(());
                }
                entry.kubernetes_secrets.retain(|s| {
                    !(s.uid == secret.uid
                        && s.namespace == secret.namespace
                        && s.name == secret.name)
                });
                entry.kubernetes_secrets.push(secret);
                let excess = entry
                    .kubernetes_secrets
                    .len()
                    .saturating_sub(MAX_SECRETS_PER_IMAGE);
                entry.kubernetes_secrets.drain(..excess);
            }
        }
        if record == before && tokio::fs::metadata(&path).await.is_ok() {
            return Ok(());
        }
        record.last_updated_time = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let json = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        write_atomic(&path, &json).await
    }
}

/// Upstream's record file name: `sha256-` and the hex SHA-256 of the image or its ID.
fn file_name(key: &str) -> String {
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256-{hex}")
}

/// The hash of a registry credential recorded with the secret that gave it.
pub fn credential_hash(auth: &kubelet_core::RegistryAuth) -> String {
    let mut hash = sha2::Sha256::new();
    for part in [
        &auth.username,
        &auth.password,
        &auth.auth,
        &auth.identity_token,
        &auth.registry_token,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The repository of an image reference, without tag or digest, with its registry made
/// explicit (upstream's `trimImageTagDigest`: `busybox:1` -> `docker.io/library/busybox`).
pub fn repository(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match without_digest[last_slash..].rfind(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_registry, name.contains('/')) {
        (true, _) => name.to_owned(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    }
}

async fn read_record(path: &Path) -> std::io::Result<Option<PulledRecord>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `path` through a temporary file renamed over it.
async fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, data).await?;
    tokio::fs::rename(&tmp, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(ns: &str, name: &str, hash: &str) -> TrackedSecret {
        TrackedSecret {
            uid: format!("{ns}-{name}-uid"),
            namespace: ns.into(),
            name: name.into(),
            credential_hash: hash.into(),
        }
    }

    #[test]
    fn repositories_as_upstream() {
        assert_eq!(repository("busybox"), "docker.io/library/busybox");
        assert_eq!(repository("busybox:1.36"), "docker.io/library/busybox");
        assert_eq!(repository("me/app@sha256:abc"), "docker.io/me/app");
        assert_eq!(
            repository("localhost:5001/busybox:latest"),
            "localhost:5001/busybox"
        );
        assert_eq!(repository("registry.io/a/b:tag"), "registry.io/a/b");
    }

    #[test]
    fn policies() {
        let p = VerificationPolicy::parse("", &[]).expect("default");
        assert!(p.requires_verification("x", true));
        assert!(!p.requires_verification("x", false));
        let allow = VerificationPolicy::parse(
            "NeverVerifyAllowlistedImages",
            &[
                "registry.io/public/*".into(),
                "docker.io/library/busybox".into(),
            ],
        )
        .expect("allowlist");
        assert!(!allow.requires_verification("registry.io/public/a:1", true));
        assert!(!allow.requires_verification("busybox", true));
        assert!(allow.requires_verification("registry.io/private/a", false));
        assert!(VerificationPolicy::parse("Sometimes", &[]).is_err());
        assert!(!VerificationPolicy::NeverVerify.requires_verification("x", true));
        assert!(VerificationPolicy::AlwaysVerify.requires_verification("x", false));
    }

    #[tokio::test]
    async fn a_pod_without_the_pulling_secret_must_pull() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = PullRecords::new(dir.path(), VerificationPolicy::NeverVerifyPreloadedImages);
        let image = "localhost:5001/busybox:latest";
        // Preloaded (no record, no intent): anyone may use it.
        assert!(!records.must_pull(image, "sha256:1", &[]).await);

        records.pull_started(image).await;
        // A pull in progress makes the image the kubelet's.
        assert!(records.must_pull(image, "sha256:1", &[]).await);
        let owner = secret("a", "regcred", "h1");
        records
            .pull_ended(image, Some(("sha256:1", PulledWith::Secret(owner.clone()))))
            .await;
        assert!(
            !dir.path()
                .join("image_manager/pulling")
                .join(file_name(image))
                .exists()
        );
        assert!(
            dir.path()
                .join("image_manager/pulled")
                .join(file_name("sha256:1"))
                .exists()
        );

        assert!(
            !records
                .must_pull(image, "sha256:1", std::slice::from_ref(&owner))
                .await
        );
        assert!(records.must_pull(image, "sha256:1", &[]).await, "no secret");
        assert!(
            records
                .must_pull(image, "sha256:1", &[secret("b", "other", "h2")])
                .await,
            "another namespace's other credentials"
        );
        // The same credentials in another secret match by hash, and are remembered.
        let copy = secret("b", "copy", "h1");
        assert!(
            !records
                .must_pull(image, "sha256:1", std::slice::from_ref(&copy))
                .await
        );
        // The owner's secret rotated (new hash): its coordinates still match.
        assert!(
            !records
                .must_pull(image, "sha256:1", &[secret("a", "regcred", "h9")])
                .await
        );
        // Another tag of the same repository shares the record of that image ID.
        assert!(
            !records
                .must_pull("localhost:5001/busybox:other", "sha256:1", &[owner])
                .await
        );

        // An anonymous pull makes it node-accessible.
        records
            .pull_ended(image, Some(("sha256:1", PulledWith::NodeAccessible)))
            .await;
        assert!(!records.must_pull(image, "sha256:1", &[]).await);
        // NeverVerify never checks.
        let never = PullRecords::new(dir.path(), VerificationPolicy::NeverVerify);
        assert!(!never.must_pull("other", "sha256:2", &[]).await);
    }
}
