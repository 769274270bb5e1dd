//! Reading configuration files: YAML or JSON, strictly decoded, and `--config-dir`
//! drop-ins merged as upstream's `mergeKubeletConfigurations` does (a JSON merge patch
//! of each `*.conf` file, in lexical order, over the marshalled configuration so far).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Map, Value};

use kubelet_core::config::{API_VERSION, KIND, KubeletConfiguration};

/// Why a document is not a valid `KubeletConfiguration`, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The field path (`maxPods`, `authentication.x509.clientCAFile`,
    /// `registerWithTaints[0].effect`); empty for the document as a whole.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "field {:?}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for DecodeError {}

/// Parses a document's text, JSON when it starts with `{`, YAML otherwise.
pub(super) fn parse_text(text: &str) -> Result<Value, DecodeError> {
    let whole = |reason: String| DecodeError {
        field: String::new(),
        reason,
    };
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| whole(format!("invalid JSON: {e}")))
    } else {
        serde_yaml::from_str(text).map_err(|e| whole(format!("invalid YAML: {e}")))
    }
}

/// Checks `apiVersion` and `kind`, as upstream's decoder does by type registration.
fn check_type(document: &Value) -> Result<(), DecodeError> {
    let Value::Object(fields) = document else {
        return Err(DecodeError {
            field: String::new(),
            reason: "not a KubeletConfiguration object (expected a mapping of fields)".into(),
        });
    };
    for (field, expected) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        match fields.get(field) {
            Some(Value::String(actual)) if actual == expected => {}
            Some(Value::String(actual)) => {
                return Err(DecodeError {
                    field: field.into(),
                    reason: format!("{actual:?} is not supported; expected {expected:?}"),
                });
            }
            Some(other) => {
                return Err(DecodeError {
                    field: field.into(),
                    reason: format!("expected the string {expected:?}, found {other}"),
                });
            }
            None => {
                return Err(DecodeError {
                    field: field.into(),
                    reason: format!("missing; expected {expected:?}"),
                });
            }
        }
    }
    Ok(())
}

/// Drops `null` members: Go's decoder leaves a field alone when it reads `null`, so a
/// `staticPodPath:` with no value means unset, as upstream.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|_, v| !v.is_null());
            fields.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Decodes a document strictly: an unknown field or a value of the wrong type is an
/// error naming the field.
pub fn decode(mut document: Value) -> Result<KubeletConfiguration, DecodeError> {
    strip_nulls(&mut document);
    serde_path_to_error::deserialize(document).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let message = e.into_inner().to_string();
        // serde lists every field it expected; the list is the whole type, not helpful.
        match message.strip_prefix("unknown field `") {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or_default();
                let field = if field.is_empty() {
                    name.to_owned()
                } else if field.ends_with(name) {
                    field
                } else {
                    format!("{field}.{name}")
                };
                DecodeError {
                    field,
                    reason: "unknown field".into(),
                }
            }
            None => DecodeError {
                field,
                reason: message,
            },
        }
    })
}

/// Reads a configuration document from a file: not empty, of the right type.
fn read_document(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).context("cannot read it")?;
    if text.trim().is_empty() {
        anyhow::bail!("the file is empty");
    }
    let document = parse_text(&text)?;
    check_type(&document)?;
    Ok(document)
}

/// Loads `--config`: decoded strictly, relative paths resolved against the file's
/// directory, upstream's defaults and default eviction thresholds applied.
pub fn load_file(path: &Path) -> anyhow::Result<KubeletConfiguration> {
    let mut config = read_document(path)
        .and_then(|document| Ok(decode(document)?))
        .with_context(|| format!("config file {}", path.display()))?;
    let dir = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    for field in config.path_refs() {
        if !field.is_empty() && Path::new(field.as_str()).is_relative() {
            *field = dir.join(field.as_str()).to_string_lossy().into_owned();
        }
    }
    config.set_defaults();
    config.set_eviction_defaults();
    Ok(config)
}

/// The files of a drop-in directory in upstream's order (`filepath.WalkDir`: lexical
/// per directory, descending into subdirectories): the `*.conf` ones, and the others,
/// which are skipped.
fn drop_in_files(dir: &Path) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut entries: Vec<(String, PathBuf, bool)> = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let is_dir = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?
            .is_dir();
        entries.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
            is_dir,
        ));
    }
    entries.sort();
    let (mut conf, mut skipped) = (Vec::new(), Vec::new());
    for (name, path, is_dir) in entries {
        if is_dir {
            let (more_conf, more_skipped) = drop_in_files(&path)?;
            conf.extend(more_conf);
            skipped.extend(more_skipped);
        } else if Path::new(&name).extension().is_some_and(|e| e == "conf") {
            conf.push(path);
        } else {
            skipped.push(path);
        }
    }
    Ok((conf, skipped))
}

/// RFC 7386 JSON merge patch: members of `patch` replace those of `target`, objects
/// merge member by member, `null` removes.
pub(super) fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(&key);
            } else {
                merge_patch(target.entry(key).or_insert(Value::Null), value);
            }
        }
    }
}

/// Merges the drop-ins of `dir` over `base`, then applies the defaults again; returns
/// the result and the files skipped for not ending in `.conf`.
pub fn merge_drop_ins(
    base: &KubeletConfiguration,
    dir: &Path,
) -> anyhow::Result<(KubeletConfiguration, Vec<PathBuf>)> {
    let (files, skipped) =
        drop_in_files(dir).with_context(|| format!("config dir {}", dir.display()))?;
    let mut merged = serde_json::to_value(base).context("marshalling the configuration")?;
    for file in files {
        let document = read_document(&file)
            .and_then(|document| {
                decode(document.clone())?;
                Ok(document)
            })
            .with_context(|| format!("drop-in config file {}", file.display()))?;
        merge_patch(&mut merged, document);
    }
    let mut config = decode(merged)
        .with_context(|| format!("merging the drop-in config files of {}", dir.display()))?;
    config.set_defaults();
    Ok((config, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_is_rfc_7386() {
        let mut target = serde_json::json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut target,
            serde_json::json!({"a": "z", "c": {"f": null, "h": 1}, "l": [3]}),
        );
        assert_eq!(
            target,
            serde_json::json!({"a": "z", "c": {"d": "e", "h": 1}, "l": [3]})
        );
    }

    #[test]
    fn type_must_be_kubelet_configuration() {
        let err = check_type(&serde_json::json!({"kind": "KubeletConfiguration"}))
            .expect_err("no apiVersion");
        assert_eq!(err.field, "apiVersion");
        assert!(err.reason.contains("missing"), "{err}");
        let err = check_type(&serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "KubeletConfiguration",
        }))
        .expect_err("wrong version");
        assert_eq!(
            err.to_string(),
            "field \"apiVersion\": \"kubelet.config.k8s.io/v1\" is not supported; \
             expected \"kubelet.config.k8s.io/v1beta1\""
        );
        let err = check_type(&serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeProxyConfiguration",
        }))
        .expect_err("wrong kind");
        assert_eq!(err.field, "kind");
        assert!(check_type(&serde_json::json!(["a"])).is_err());
    }

    #[test]
    fn nulls_mean_unset() {
        let config = decode(serde_json::json!({
            "staticPodPath": null,
            "authentication": {"x509": null},
        }))
        .expect("nulls are unset fields");
        assert_eq!(config, KubeletConfiguration::default());
    }
}
