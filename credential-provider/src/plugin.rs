//! Running one plugin (upstream's `execPlugin`): a `CredentialProviderRequest` on its
//! stdin, a `CredentialProviderResponse` on its stdout, within a deadline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kubelet_core::config::GoDuration;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tracing::debug;

use crate::{Error, Result};

/// How long a plugin may run, as upstream's exec plugin allows.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What the kubelet asks a plugin (`CredentialProviderRequest`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderRequest<'a> {
    /// The provider's `apiVersion`.
    pub api_version: &'a str,
    /// `CredentialProviderRequest`.
    pub kind: &'static str,
    /// The image (repository, registry explicit, no tag) credentials are wanted for.
    pub image: &'a str,
    /// Token mode: the pod's service account token.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub service_account_token: &'a str,
    /// Token mode: the service account's annotations the configuration names.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_account_annotations: &'a BTreeMap<String, String>,
}

/// A plugin's answer (`CredentialProviderResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialProviderResponse {
    /// Must equal the provider's `apiVersion`.
    #[serde(default)]
    pub api_version: String,
    /// `CredentialProviderResponse`.
    #[serde(default)]
    pub kind: String,
    /// `Image`, `Registry` or `Global`: what the answer is cached for.
    #[serde(default)]
    pub cache_key_type: String,
    /// How long to cache it; the provider's `defaultCacheDuration` when absent, not at
    /// all when zero.
    #[serde(default)]
    pub cache_duration: Option<GoDuration>,
    /// Credentials by registry key (`registry.io`, `*.registry.io`, `registry.io/team`).
    #[serde(default)]
    pub auth: Option<BTreeMap<String, AuthConfig>>,
}

/// A user name and password for a registry.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: String,
}

impl std::fmt::Debug for AuthConfig {
    // A credential: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Decodes a plugin's stdout as upstream does: the API version first (it must be the
/// provider's), then the kind, then the response strictly.
pub fn decode_response(
    data: &[u8],
    api_version: &str,
) -> std::result::Result<CredentialProviderResponse, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TypeMeta {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
    }
    let meta: TypeMeta = serde_json::from_slice(data)
        .map_err(|e| format!("error reading GVK from response: {e}"))?;
    if meta.api_version != api_version {
        return Err(format!(
            "apiVersion from credential plugin response did not match expected apiVersion:{api_version}, actual apiVersion:{}",
            meta.api_version
        ));
    }
    if meta.kind != "CredentialProviderResponse" {
        return Err(format!(
            "failed to decode CredentialProviderResponse, unexpected Kind: {:?}",
            meta.kind
        ));
    }
    serde_json::from_slice(data)
        .map_err(|e| format!("error decoding credential provider plugin response from stdout: {e}"))
}

/// One configured plugin executable.
#[derive(Debug, Clone)]
pub(crate) struct ExecPlugin {
    pub(crate) name: String,
    pub(crate) api_version: String,
    pub(crate) path: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    pub(crate) metrics: Arc<KubeletMetrics>,
}

impl ExecPlugin {
    /// Runs the plugin for `image`; it is killed (with its process group) when it
    /// outlives the deadline or the caller gives up.
    pub(crate) async fn run(
        &self,
        image: &str,
        token: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<CredentialProviderResponse> {
        let fail = |reason: String| Error::Plugin {
            plugin: self.name.clone(),
            image: image.to_owned(),
            reason,
        };
        debug!(plugin = %self.name, image, "getting image credentials from external exec plugin");
        let request = CredentialProviderRequest {
            api_version: &self.api_version,
            kind: "CredentialProviderRequest",
            image,
            service_account_token: token,
            service_account_annotations: annotations,
        };
        let data = serde_json::to_vec(&request)
            .map_err(|e| fail(format!("failed to encode auth request: {e}")))?;
        let started = std::time::Instant::now();
        let ran = self.exec(&data).await;
        self.metrics
            .credential_provider_plugin_duration
            .observe(&[&self.name], started.elapsed().as_secs_f64());
        let output = match ran {
            Ok(output) => output,
            Err(reason) => {
                self.metrics
                    .credential_provider_plugin_errors
                    .inc(&[&self.name]);
                return Err(fail(format!(
                    "error execing credential provider plugin: {reason}"
                )));
            }
        };
        decode_response(&output, &self.api_version).map_err(fail)
    }

    /// Starts the plugin. A binary still open for writing somewhere (being installed, or
    /// its writer's descriptor inherited for an instant by a process forked elsewhere)
    /// cannot be executed (`ETXTBSY`); that passes, so it is tried again briefly.
    async fn spawn(&self) -> std::io::Result<tokio::process::Child> {
        const TRIES: u32 = 5;
        let mut attempt = 1;
        loop {
            let spawned = tokio::process::Command::new(&self.path)
                .args(&self.args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own process group, so a timeout kills what it started too.
                .process_group(0)
                .kill_on_drop(true)
                .spawn();
            match spawned {
                Err(e)
                    if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32)
                        && attempt < TRIES =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// The plugin's stdout, or why it failed (its stderr included).
    async fn exec(&self, request: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let mut child = self
            .spawn()
            .await
            .map_err(|e| format!("starting {}: {e}", self.path.display()))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let run = async move {
            let write = async {
                if let Some(mut stdin) = stdin {
                    // A plugin that does not read its stdin is not an error.
                    let _ = stdin.write_all(request).await;
                }
            };
            let (_, output) = tokio::join!(write, child.wait_with_output());
            output
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(output)) if output.status.success() => Ok(output.stdout),
            Ok(Ok(output)) => Err(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Ok(Err(e)) => Err(format!("waiting for {}: {e}", self.path.display())),
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(format!(
                    "context deadline exceeded (no answer within {:?})",
                    self.timeout
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("succeeds");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("succeeds");
        path
    }

    fn plugin(path: PathBuf, timeout: Duration) -> ExecPlugin {
        ExecPlugin {
            name: "test".into(),
            api_version: crate::config::PLUGIN_API_V1.into(),
            path,
            args: vec!["--flag".into()],
            env: vec![("EXTRA".into(), "from-config".into())],
            timeout,
            metrics: Default::default(),
        }
    }

    #[test]
    fn responses_decode_strictly_with_the_providers_version() {
        let v1 = crate::config::PLUGIN_API_V1;
        let ok = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"5m","auth":{"r.io":{"username":"u","password":"p"}}}"#;
        let response = decode_response(ok, v1).expect("succeeds");
        assert_eq!(response.cache_key_type, "Registry");
        assert_eq!(response.cache_duration, Some(GoDuration::from_secs(300)));
        assert_eq!(response.auth.expect("succeeds")["r.io"].password, "p");
        let wrong_version = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderResponse"}"#;
        assert!(
            decode_response(wrong_version, v1)
                .expect_err("fails")
                .contains("did not match expected apiVersion")
        );
        let wrong_kind = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"Other"}"#;
        assert!(
            decode_response(wrong_kind, v1)
                .expect_err("fails")
                .contains("unexpected Kind")
        );
        let unknown = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","typo":1}"#;
        assert!(
            decode_response(unknown, v1)
                .expect_err("fails")
                .contains("typo")
        );
        assert!(
            decode_response(b"not json", v1)
                .expect_err("fails")
                .contains("GVK")
        );
    }

    #[tokio::test]
    async fn the_plugin_gets_the_request_args_and_env() {
        let dir = tempfile::tempdir().expect("succeeds");
        let seen = dir.path().join("seen");
        let path = script(
            dir.path(),
            "p",
            &format!(
                r#"cat > {seen}; echo >> {seen}; echo "$1 $EXTRA" >> {seen}
echo '{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":{{"r.io":{{"username":"u","password":"p"}}}}}}'"#,
                seen = seen.display()
            ),
        );
        let annotations = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let response = plugin(path, PLUGIN_TIMEOUT)
            .run("r.io/app", "tok", &annotations)
            .await
            .expect("succeeds");
        assert_eq!(response.cache_key_type, "Image");
        let seen = std::fs::read_to_string(seen).expect("succeeds");
        let (request, rest) = seen.split_once('\n').expect("succeeds");
        let request: serde_json::Value = serde_json::from_str(request).expect("succeeds");
        assert_eq!(
            request,
            serde_json::json!({"apiVersion": crate::config::PLUGIN_API_V1, "kind": "CredentialProviderRequest",
                "image": "r.io/app", "serviceAccountToken": "tok", "serviceAccountAnnotations": {"a": "b"}})
        );
        assert_eq!(rest.trim(), "--flag from-config");
    }

    #[tokio::test]
    async fn a_failing_plugin_reports_its_stderr_and_counts_an_error() {
        let dir = tempfile::tempdir().expect("succeeds");
        let path = script(dir.path(), "p", "echo 'registry says no' >&2; exit 3");
        let mut p = plugin(path, PLUGIN_TIMEOUT);
        p.name = "failing-plugin".into();
        let err = p
            .run("r.io/app", "", &BTreeMap::new())
            .await
            .expect_err("fails")
            .to_string();
        assert!(
            err.contains("exit status: 3") && err.contains("registry says no"),
            "{err}"
        );
        assert_eq!(
            p.metrics
                .credential_provider_plugin_errors
                .value(&["failing-plugin"]),
            Some(1.0)
        );
    }

    #[tokio::test]
    async fn a_plugin_past_its_deadline_is_killed_with_its_children() {
        let dir = tempfile::tempdir().expect("succeeds");
        let pids = dir.path().join("pids");
        // The shell and a child of its own both outlive the deadline unless killed.
        let path = script(
            dir.path(),
            "p",
            &format!("sleep 600 & echo $$ $! > {}; wait", pids.display()),
        );
        let started = std::time::Instant::now();
        let err = plugin(path, Duration::from_millis(500))
            .run("r.io/app", "", &BTreeMap::new())
            .await
            .expect_err("fails")
            .to_string();
        assert!(err.contains("deadline exceeded"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let pids = std::fs::read_to_string(pids).expect("succeeds");
        for pid in pids.split_whitespace() {
            let gone = (0..100).any(|_| {
                let state =
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // Gone, or a zombie waiting for its reaper.
                let dead = state.is_empty() || state.split_whitespace().nth(2) == Some("Z");
                if !dead {
                    std::thread::sleep(Duration::from_millis(50));
                }
                dead
            });
            assert!(gone, "process {pid} still runs");
        }
    }
}
