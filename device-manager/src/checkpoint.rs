//! The device assignments of containers, kept across kubelet restarts: which devices
//! of which resource each container holds and what the plugin answered for them.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The checkpoint's file name in the device plugin directory.
pub(crate) const FILE: &str = "kubelet-rs-device-checkpoint.json";

/// One container's devices of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    pub(crate) pod_uid: String,
    pub(crate) container: String,
    pub(crate) resource: String,
    pub(crate) device_ids: Vec<String>,
    /// The plugin's `ContainerAllocateResponse`, protobuf-encoded, in base64.
    pub(crate) response: String,
}

impl Entry {
    pub(crate) fn response_bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.response)
            .unwrap_or_default()
    }

    pub(crate) fn encode_response(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    entries: Vec<Entry>,
}

/// The entries in `dir`, none when there is no checkpoint; an unreadable one is
/// reported and ignored, as upstream continues after a corrupt checkpoint.
pub(crate) async fn read(dir: &Path) -> Vec<Entry> {
    let path = dir.join(FILE);
    match tokio::fs::read(&path).await {
        Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
            Ok(file) => file.entries,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "Continue after failing to read checkpoint file. Device allocation info may NOT be up-to-date");
                Vec::new()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "Continue after failing to read checkpoint file. Device allocation info may NOT be up-to-date");
            Vec::new()
        }
    }
}

/// Replaces the checkpoint with `entries` (a new file renamed over the old one).
pub(crate) async fn write(dir: &Path, entries: &[Entry]) -> Result<()> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let fail = |operation, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io {
            operation,
            path,
            source,
        }
    };
    let file = File {
        entries: entries.to_vec(),
    };
    let bytes = serde_json::to_vec(&file).unwrap_or_default();
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(fail("writing", &tmp))?;
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(fail("renaming", &path))
}

/// Entries grouped by container.
pub(crate) fn by_container(
    entries: Vec<Entry>,
) -> BTreeMap<(String, String), BTreeMap<String, Entry>> {
    let mut grouped: BTreeMap<(String, String), BTreeMap<String, Entry>> = BTreeMap::new();
    for entry in entries {
        grouped
            .entry((entry.pod_uid.clone(), entry.container.clone()))
            .or_default()
            .insert(entry.resource.clone(), entry);
    }
    grouped
}
