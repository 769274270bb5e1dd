//! Pod volumes: the extension point one volume type implements.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Volume};

use crate::Result;

/// Where a set-up volume lives on the host, ready to be bind-mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedVolume {
    /// The volume's name in the pod spec.
    pub name: String,
    /// Host path to bind-mount (a directory or, for hostPath, possibly a file).
    pub host_path: PathBuf,
    /// The volume can only be mounted read-only (e.g. configMap, secret).
    pub read_only: bool,
}

/// One volume type (emptyDir, hostPath, configMap, ...).
///
/// The volume manager calls `set_up` before the pod's containers start and again when
/// the pod's sources change (so configMap and secret contents can be refreshed), and
/// `tear_down` once the pod is gone. Both must be idempotent.
#[async_trait]
pub trait VolumePlugin: Send + Sync {
    /// Upstream plugin name, e.g. `kubernetes.io/empty-dir`.
    fn name(&self) -> &str;

    /// Whether this plugin handles the volume.
    fn supports(&self, volume: &Volume) -> bool;

    /// Creates or refreshes the volume for `pod` under `pod_volume_dir`.
    async fn set_up(
        &self,
        pod: &Pod,
        volume: &Volume,
        pod_volume_dir: &Path,
    ) -> Result<MountedVolume>;

    /// Removes what `set_up` created.
    async fn tear_down(&self, volume_name: &str, pod_volume_dir: &Path) -> Result<()>;
}

const _: Option<&dyn VolumePlugin> = None;
