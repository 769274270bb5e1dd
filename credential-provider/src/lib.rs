//! Image credential provider plugins, as the upstream kubelet runs them
//! (`pkg/credentialprovider/plugin`, KEP-2133 and KEP-4412).
//!
//! `--image-credential-provider-config` names a [`CredentialProviderConfig`]
//! (`kubelet.config.k8s.io/v1`, YAML or JSON, one file or a directory of them) and
//! `--image-credential-provider-bin-dir` the directory of the plugins it names. For an
//! image one of a plugin's `matchImages` globs matches ([`urls_match`]: a glob per host
//! label, equal ports, path prefix), the kubelet runs the plugin with a
//! `CredentialProviderRequest` (the image as [`repo_to_pull`] names it) on its stdin
//! and reads a `CredentialProviderResponse` from its stdout within a minute, else the
//! plugin is killed. The answer's registry keys are matched to the image as upstream's
//! keyring does (most specific first), and the answer is cached per image, registry or
//! globally (`cacheKeyType`) for `cacheDuration` or the provider's
//! `defaultCacheDuration`; concurrent requests for the same key share one run. With
//! `tokenAttributes`, the plugin also gets a token of the pod's service account for the
//! configured audience and the named annotations of the service account, and answers
//! are cached per service account (or per token). Runs are timed in
//! `kubelet_credential_provider_plugin_duration` and failures counted in
//! `kubelet_credential_provider_plugin_errors_total`.
//!
//! [`CredentialProviders`] implements [`kubelet_core::ImageCredentials`], which the pod
//! manager asks after the pod's imagePullSecrets.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use kubelet_core::ImageCredentials;
//! use kubelet_credential_provider::CredentialProviders;
//! use k8s_openapi::api::core::v1::Pod;
//!
//! async fn credentials(pod: &Pod) -> kubelet_credential_provider::Result<()> {
//!     let providers = CredentialProviders::load(
//!         Path::new("/etc/kubernetes/credential-providers.yaml"),
//!         Path::new("/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"),
//!         None, // no service accounts: standalone, no token mode
//!         Default::default(), // the kubelet's metrics registry in a kubelet
//!     )
//!     .await?;
//!     for auth in providers.credentials("registry.example.com/team/app:1", pod).await {
//!         println!("try user {}", auth.username);
//!     }
//!     Ok(())
//! }
//! ```

mod config;
mod error;
mod matching;
mod plugin;
mod provider;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kubelet_core::RegistryAuth;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use tracing::{Instrument, warn};

pub use config::{
    CACHE_TYPE_SERVICE_ACCOUNT, CACHE_TYPE_TOKEN, CredentialProvider, CredentialProviderConfig,
    ExecEnvVar, LoadedConfig, PLUGIN_API_V1, PLUGIN_API_VERSIONS, ServiceAccountTokenAttributes,
    decode, load, validate,
};
pub use error::{Error, Result};
pub use matching::{repo_to_pull, urls_match};
pub use plugin::{
    AuthConfig, CredentialProviderRequest, CredentialProviderResponse, PLUGIN_TIMEOUT,
    decode_response,
};
pub use provider::{MAX_CACHE_ENTRIES, ServiceAccounts};

use plugin::ExecPlugin;
use provider::{PluginProvider, PodIdentity};

/// Every configured plugin, in the configuration's order: the node's credentials for
/// images (upstream's external credential provider keyring).
#[derive(Debug)]
pub struct CredentialProviders {
    providers: Vec<PluginProvider>,
}

impl CredentialProviders {
    /// Reads and validates the configuration at `config_path` (a file or a directory),
    /// checks that `bin_dir` and each plugin's executable exist, and records the
    /// configuration's hash in `metrics`' `kubelet_credential_provider_config_info`.
    /// `service_accounts` serves token mode (`None` without an API server).
    pub async fn load(
        config_path: &Path,
        bin_dir: &Path,
        service_accounts: Option<Arc<dyn ServiceAccounts>>,
        metrics: Arc<KubeletMetrics>,
    ) -> Result<Self> {
        let (path, bin_dir) = (config_path.to_owned(), bin_dir.to_owned());
        let config_path = path.clone();
        let (loaded, bin_dir) = tokio::task::spawn_blocking(move || -> Result<_> {
            check_bin_dir(&bin_dir)?;
            let loaded = config::load(&config_path)?;
            for provider in &loaded.config.providers {
                check_executable(&bin_dir.join(&provider.name))?;
            }
            Ok((loaded, bin_dir))
        })
        .await
        .map_err(|e| Error::Read {
            path,
            source: std::io::Error::other(e.to_string()),
        })??;
        metrics
            .credential_provider_config_info
            .set(&[&loaded.hash], 1.0);
        Ok(Self::new(
            &loaded.config,
            &bin_dir,
            service_accounts,
            metrics,
        ))
    }

    /// The providers of an already validated configuration, their plugins in `bin_dir`,
    /// each run's duration and failures counted in `metrics`.
    pub fn new(
        config: &CredentialProviderConfig,
        bin_dir: &Path,
        service_accounts: Option<Arc<dyn ServiceAccounts>>,
        metrics: Arc<KubeletMetrics>,
    ) -> Self {
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let plugin = ExecPlugin {
                    name: p.name.clone(),
                    api_version: p.api_version.clone(),
                    path: bin_dir.join(&p.name),
                    args: p.args.clone(),
                    env: p
                        .env
                        .iter()
                        .map(|e| (e.name.clone(), e.value.clone()))
                        .collect(),
                    timeout: PLUGIN_TIMEOUT,
                    metrics: metrics.clone(),
                };
                PluginProvider::new(p, Arc::new(plugin), service_accounts.clone())
            })
            .collect();
        Self { providers }
    }

    /// Serves token mode with `service_accounts` (the kubelet's API server client),
    /// e.g. once it is connected after [`load`](Self::load) checked the configuration.
    pub fn with_service_accounts(mut self, service_accounts: Arc<dyn ServiceAccounts>) -> Self {
        for provider in &mut self.providers {
            provider.set_service_accounts(service_accounts.clone());
        }
        self
    }

    /// How many plugins are configured.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether no plugin is configured.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The plugins' credentials for `image` pulled for `pod`, matched to the image as
    /// upstream's keyring matches them. A plugin that fails is logged and gives none.
    pub async fn lookup(&self, image: &str, pod: &Pod) -> Vec<RegistryAuth> {
        let repo = repo_to_pull(image);
        let meta = &pod.metadata;
        let identity = PodIdentity {
            namespace: meta.namespace.as_deref().unwrap_or_default(),
            name: meta.name.as_deref().unwrap_or_default(),
            uid: meta.uid.as_deref().unwrap_or_default(),
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_deref())
                .unwrap_or_default(),
            pod: Some(pod),
        };
        let mut entries: Vec<(String, RegistryAuth)> = Vec::new();
        for provider in &self.providers {
            let span = tracing::info_span!("credential_provider", provider = %provider.name, image = %repo);
            match provider.provide(&repo, &identity).instrument(span).await {
                Ok(credentials) => {
                    for (registry, auth) in credentials.iter() {
                        let Some(key) = matching::registry_key(registry) else {
                            warn!(provider = %provider.name, registry, "registry key of a plugin's answer is invalid; ignoring it");
                            continue;
                        };
                        entries.push((
                            key,
                            RegistryAuth {
                                username: auth.username.clone(),
                                password: auth.password.clone(),
                                ..Default::default()
                            },
                        ));
                    }
                }
                Err(e) => warn!(
                    provider = %provider.name,
                    image = %repo,
                    pod = %format_args!("{}/{}", identity.namespace, identity.name),
                    error = %e,
                    "failed to provide credentials for image"
                ),
            }
        }
        matching::lookup(&entries, &repo)
            .into_iter()
            .cloned()
            .collect()
    }
}

#[async_trait]
impl kubelet_core::ImageCredentials for CredentialProviders {
    async fn credentials(&self, image: &str, pod: &Pod) -> Vec<RegistryAuth> {
        self.lookup(image, pod).await
    }
}

fn check_bin_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Missing {
            what: "plugin binary directory",
            path: dir.to_owned(),
        }),
        Err(source) => Err(Error::Read {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Upstream's `exec.LookPath` on the plugin: a regular file with an execute bit.
fn check_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(Error::Read {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "plugin binary is not an executable file",
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Missing {
            what: "plugin binary executable",
            path: path.to_owned(),
        }),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests;
