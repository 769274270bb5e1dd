//! `CredentialProviderConfig` (`kubelet.config.k8s.io/v1`): reading one file or a
//! directory of them as upstream's `readCredentialProviderConfig`, and upstream's
//! `validateCredentialProviderConfig`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kubelet_core::config::GoDuration;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::matching::parse_schemeless_url;
use crate::{Error, Result};

/// The configuration's group; v1alpha1, v1beta1 and v1 are read as upstream reads them.
const CONFIG_GROUP: &str = "kubelet.config.k8s.io";
const CONFIG_KIND: &str = "CredentialProviderConfig";

/// `credentialprovider.kubelet.k8s.io/v1`, the only plugin API version of token mode.
pub const PLUGIN_API_V1: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The plugin API versions upstream speaks, sorted as its error lists them.
pub const PLUGIN_API_VERSIONS: [&str; 3] = [
    PLUGIN_API_V1,
    "credentialprovider.kubelet.k8s.io/v1alpha1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
];

/// Upstream's `CredentialProviderConfig`: the plugins the kubelet runs for images.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialProviderConfig {
    /// `kubelet.config.k8s.io/v1` (v1beta1 and v1alpha1 are read too).
    #[serde(default)]
    pub api_version: String,
    /// `CredentialProviderConfig`.
    #[serde(default)]
    pub kind: String,
    /// The plugins, tried in this order.
    #[serde(default, deserialize_with = "null_is_default")]
    pub providers: Vec<CredentialProvider>,
}

/// One plugin (upstream's `CredentialProvider`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialProvider {
    /// The plugin's name, also its executable in `--image-credential-provider-bin-dir`.
    #[serde(default)]
    pub name: String,
    /// Images the plugin is asked about, as globs (`*.registry.io`, `registry.io:5000/team`).
    #[serde(default, deserialize_with = "null_is_default")]
    pub match_images: Vec<String>,
    /// How long an answer without `cacheDuration` is cached; required.
    #[serde(default)]
    pub default_cache_duration: Option<GoDuration>,
    /// The plugin API version: `credentialprovider.kubelet.k8s.io/v1` (or v1beta1, v1alpha1).
    #[serde(default)]
    pub api_version: String,
    /// Arguments the plugin is run with.
    #[serde(default, deserialize_with = "null_is_default")]
    pub args: Vec<String>,
    /// Environment variables added to the kubelet's for the plugin.
    #[serde(default, deserialize_with = "null_is_default")]
    pub env: Vec<ExecEnvVar>,
    /// Service-account token mode: the plugin gets a token of the pod's service account.
    #[serde(default)]
    pub token_attributes: Option<ServiceAccountTokenAttributes>,
}

/// A `name`/`value` environment variable of a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecEnvVar {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// Upstream's `ServiceAccountTokenAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountTokenAttributes {
    /// The audience of the token the kubelet requests for the plugin.
    #[serde(default)]
    pub service_account_token_audience: String,
    /// `ServiceAccount` (answers cached per service account) or `Token` (per token).
    #[serde(default)]
    pub cache_type: String,
    /// Whether a pod without a service account gets no credentials from this plugin.
    #[serde(default)]
    pub require_service_account: Option<bool>,
    /// Annotations of the service account passed to the plugin; one missing means no
    /// credentials from it.
    #[serde(default, deserialize_with = "null_is_default")]
    pub required_service_account_annotation_keys: Vec<String>,
    /// Annotations passed when the service account has them.
    #[serde(default, deserialize_with = "null_is_default")]
    pub optional_service_account_annotation_keys: Vec<String>,
}

/// `cacheType: ServiceAccount`.
pub const CACHE_TYPE_SERVICE_ACCOUNT: &str = "ServiceAccount";
/// `cacheType: Token`.
pub const CACHE_TYPE_TOKEN: &str = "Token";

/// A Go `null` is an empty list, as upstream's decoder reads it.
fn null_is_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A configuration read from disk, with upstream's hash of the files
/// (`kubelet_credential_provider_config_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConfig {
    /// The providers of every file, merged.
    pub config: CredentialProviderConfig,
    /// `sha256:<hex>` over each file's length (8 bytes, big endian) and content.
    pub hash: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Decodes one file's content (YAML or JSON), strictly: an unknown field is an error.
pub fn decode(data: &[u8]) -> std::result::Result<CredentialProviderConfig, String> {
    let meta: TypeMeta = serde_yaml::from_slice(data).map_err(|e| e.to_string())?;
    if meta.kind.is_empty() {
        return Err("Object 'Kind' is missing".to_owned());
    }
    let version = meta
        .api_version
        .strip_prefix(CONFIG_GROUP)
        .and_then(|v| v.strip_prefix('/'));
    if meta.kind != CONFIG_KIND || !matches!(version, Some("v1" | "v1beta1" | "v1alpha1")) {
        return Err(format!(
            "no kind {:?} is registered for version {:?}",
            meta.kind, meta.api_version
        ));
    }
    let config: CredentialProviderConfig =
        serde_yaml::from_slice(data).map_err(|e| e.to_string())?;
    // tokenAttributes exists only in v1 of the configuration.
    if version != Some("v1")
        && let Some(i) = config
            .providers
            .iter()
            .position(|p| p.token_attributes.is_some())
    {
        return Err(format!(
            "providers[{i}]: unknown field `tokenAttributes` in {}",
            meta.api_version
        ));
    }
    Ok(config)
}

/// Reads `path`, a configuration file or a directory of `*.json`, `*.yaml` and `*.yml`
/// files merged in lexical order (a provider name in two files is an error), then
/// validates it. Blocking: call it off the async threads.
pub fn load(path: &Path) -> Result<LoadedConfig> {
    if path.as_os_str().is_empty() {
        return Err(Error::Decode {
            path: path.to_owned(),
            reason: "credential provider config path is empty".to_owned(),
        });
    }
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Read { path, source }
    };
    let files: Vec<PathBuf> = if std::fs::metadata(path).map_err(read_err(path))?.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_err(path))? {
            let entry = entry.map_err(read_err(path))?;
            let file = entry.path();
            let wanted = matches!(
                file.extension().and_then(|e| e.to_str()),
                Some("json" | "yaml" | "yml")
            );
            if wanted && !entry.file_type().map_err(read_err(&file))?.is_dir() {
                files.push(file);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(Error::Decode {
                path: path.to_owned(),
                reason: "no configuration files found in directory".to_owned(),
            });
        }
        files
    } else {
        vec![path.to_owned()]
    };
    let mut hasher = Sha256::new();
    let mut merged = CredentialProviderConfig {
        api_version: format!("{CONFIG_GROUP}/v1"),
        kind: CONFIG_KIND.to_owned(),
        providers: Vec::new(),
    };
    let mut names = BTreeSet::new();
    for file in &files {
        let data = std::fs::read(file).map_err(read_err(file))?;
        hasher.update((data.len() as u64).to_be_bytes());
        hasher.update(&data);
        let config = decode(&data).map_err(|reason| Error::Decode {
            path: file.clone(),
            reason,
        })?;
        for provider in config.providers {
            if !names.insert(provider.name.clone()) {
                return Err(Error::Decode {
                    path: file.clone(),
                    reason: format!(
                        "duplicate provider name {:?} found in configuration file(s)",
                        provider.name
                    ),
                });
            }
            merged.providers.push(provider);
        }
    }
    let problems = validate(&merged);
    if !problems.is_empty() {
        return Err(Error::Invalid {
            path: path.to_owned(),
            problems,
        });
    }
    let hash = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    Ok(LoadedConfig {
        config: merged,
        hash: format!("sha256:{hash}"),
    })
}

/// Upstream's `validateCredentialProviderConfig` (with the
/// `KubeletServiceAccountTokenForCredentialProviders` gate on, its 1.37 default): each
/// problem as `field.Error` prints it, naming the field.
pub fn validate(config: &CredentialProviderConfig) -> Vec<String> {
    let mut errs = Vec::new();
    if config.providers.is_empty() {
        errs.push("providers: Required value: at least 1 item in plugins is required".to_owned());
    }
    let mut seen = BTreeSet::new();
    for provider in &config.providers {
        let name = &provider.name;
        let invalid_name = |why: &str| format!("providers.name: Invalid value: {name:?}: {why}");
        if name.contains('/') {
            errs.push(invalid_name("provider name cannot contain '/'"));
        }
        if name.contains(' ') {
            errs.push(invalid_name("provider name cannot contain spaces"));
        }
        if name == "." {
            errs.push(invalid_name("provider name cannot be '.'"));
        }
        if name == ".." {
            errs.push(invalid_name("provider name cannot be '..'"));
        }
        if !seen.insert(name.as_str()) {
            errs.push(format!("providers.name: Duplicate value: {name:?}"));
        }
        if provider.api_version.is_empty() {
            errs.push("providers.apiVersion: Required value".to_owned());
        } else if !PLUGIN_API_VERSIONS.contains(&provider.api_version.as_str()) {
            let mut supported = PLUGIN_API_VERSIONS;
            supported.sort_unstable();
            let supported: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
            errs.push(format!(
                "providers.apiVersion: Unsupported value: {:?}: supported values: {}",
                provider.api_version,
                supported.join(", ")
            ));
        }
        if provider.match_images.is_empty() {
            errs.push(
                "providers.matchImages: Required value: at least 1 item in matchImages is required"
                    .to_owned(),
            );
        }
        for image in &provider.match_images {
            if let Err(e) = parse_schemeless_url(image) {
                errs.push(format!(
                    "providers.matchImages: Invalid value: {image:?}: match image is invalid: {e}"
                ));
            }
        }
        match provider.default_cache_duration {
            None => errs.push("providers.defaultCacheDuration: Required value".to_owned()),
            Some(d) if d.as_nanos() < 0 => errs.push(format!(
                "providers.defaultCacheDuration: Invalid value: \"{d}\": must be greater than or equal to 0"
            )),
            Some(_) => {}
        }
        if let Some(attrs) = &provider.token_attributes {
            validate_token_attributes(provider, attrs, &mut errs);
        }
    }
    errs
}

fn validate_token_attributes(
    provider: &CredentialProvider,
    attrs: &ServiceAccountTokenAttributes,
    errs: &mut Vec<String>,
) {
    const PATH: &str = "providers.tokenAttributes";
    if attrs.service_account_token_audience.is_empty() {
        errs.push(format!(
            "{PATH}.serviceAccountTokenAudience: Required value"
        ));
    }
    if attrs.require_service_account.is_none() {
        errs.push(format!("{PATH}.requireServiceAccount: Required value"));
    }
    if provider.api_version != PLUGIN_API_V1 {
        errs.push(format!(
            "{PATH}: Forbidden: tokenAttributes is only supported for {PLUGIN_API_V1} API version"
        ));
    }
    if attrs.require_service_account == Some(false)
        && !attrs.required_service_account_annotation_keys.is_empty()
    {
        errs.push(format!(
            "{PATH}.requiredServiceAccountAnnotationKeys: Forbidden: requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set"
        ));
    }
    for (field, keys) in [
        (
            "requiredServiceAccountAnnotationKeys",
            &attrs.required_service_account_annotation_keys,
        ),
        (
            "optionalServiceAccountAnnotationKeys",
            &attrs.optional_service_account_annotation_keys,
        ),
    ] {
        let mut seen = BTreeSet::new();
        for key in keys {
            for msg in kubelet_core::validation::qualified_name_errors(&key.to_lowercase()) {
                errs.push(format!("{PATH}.{field}: Invalid value: {key:?}: {msg}"));
            }
            if !seen.insert(key) {
                errs.push(format!("{PATH}.{field}: Duplicate value: {key:?}"));
            }
        }
    }
    let required: BTreeSet<&String> = attrs
        .required_service_account_annotation_keys
        .iter()
        .collect();
    let both: Vec<String> = attrs
        .optional_service_account_annotation_keys
        .iter()
        .filter(|k| required.contains(k))
        .map(|k| format!("{k:?}"))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !both.is_empty() {
        errs.push(format!(
            "{PATH}: Invalid value: [{}]: annotation keys cannot be both required and optional",
            both.join(",")
        ));
    }
    match attrs.cache_type.as_str() {
        "" => errs.push(format!(
            "{PATH}.cacheType: Required value: cacheType is required to be set when tokenAttributes is specified. Supported values are: {CACHE_TYPE_SERVICE_ACCOUNT}, {CACHE_TYPE_TOKEN}"
        )),
        CACHE_TYPE_SERVICE_ACCOUNT | CACHE_TYPE_TOKEN => {}
        other => errs.push(format!(
            "{PATH}.cacheType: Unsupported value: {other:?}: supported values: \"{CACHE_TYPE_SERVICE_ACCOUNT}\", \"{CACHE_TYPE_TOKEN}\""
        )),
    }
}
