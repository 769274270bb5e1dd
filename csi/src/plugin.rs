//! The CSI volume plugin (upstream `pkg/volume/csi`: `csiMountMgr` and the node half of
//! `csiAttacher`): inline ephemeral volumes and PersistentVolumes of registered drivers
//! staged and published under the kubelet's directories.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolume, Pod, Volume};
use k8s_openapi::api::storage::v1::CSIDriverSpec;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{
    ClaimRef, MeasuredVolumes, MountedVolume, VolumePlugin, VolumeSources, VolumeUsage,
    VolumesInUse,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use crate::drivers::{Driver, Drivers};
use crate::error::{Error, Result};
use crate::proto::v1::node_service_capability::rpc;
use crate::proto::v1::volume_capability::{
    self, AccessMode, BlockVolume, MountVolume, access_mode,
};
use crate::proto::v1::volume_usage;
use crate::proto::v1::{
    NodeGetVolumeStatsRequest, NodePublishVolumeRequest, NodeStageVolumeRequest,
    NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability,
};

/// Upstream plugin name.
pub const PLUGIN_NAME: &str = "kubernetes.io/csi";
/// [`PLUGIN_NAME`] as a directory name.
const ESCAPED_PLUGIN_NAME: &str = "kubernetes.io~csi";
/// What upstream keeps beside a publication or staging to undo it later.
const VOL_DATA: &str = "vol_data.json";
/// The staging directory's name below `<driver>/<sha256(handle)>`.
const GLOBAL_MOUNT: &str = "globalmount";
/// A publication's directory name below its volume's.
const MOUNT_DIR: &str = "mount";
/// Raw block volumes' directory below the plugin's (upstream `volumeDevices`).
const BLOCK_DIR: &str = "volumeDevices";

/// `vol_data.json`, with upstream's keys, so that either kubelet can tear down what the
/// other set up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct VolData {
    #[serde(rename = "specVolID")]
    spec_vol_id: String,
    #[serde(rename = "volumeHandle")]
    volume_handle: String,
    #[serde(rename = "driverName")]
    driver_name: String,
    #[serde(rename = "nodeName", default)]
    node_name: String,
    #[serde(
        rename = "attachmentID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    attachment_id: String,
    #[serde(rename = "volumeLifecycleMode", default)]
    volume_lifecycle_mode: String,
}

/// Upstream `storage.VolumeLifecycleMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Persistent,
    Ephemeral,
}

impl Lifecycle {
    fn as_str(self) -> &'static str {
        match self {
            Self::Persistent => "Persistent",
            Self::Ephemeral => "Ephemeral",
        }
    }
}

/// Everything one publication needs, from an inline `csi` volume or a PV's `csi`.
struct Publication {
    /// The pod's volume name (errors, the container mounts).
    volume_name: String,
    /// The directory name below `kubernetes.io~csi`: the volume name, or the PV's name.
    spec_vol_id: String,
    driver: String,
    handle: String,
    lifecycle: Lifecycle,
    read_only: bool,
    fs_type: String,
    attributes: BTreeMap<String, String>,
    publish_secret: Option<(String, String)>,
    stage_secret: Option<(String, String)>,
    /// The PV's access modes (an inline volume has none: ReadWriteOnce).
    access_modes: Vec<String>,
    mount_options: Vec<String>,
    /// The claim of a PersistentVolume (the PV's `claimRef`), for its stats.
    claim: Option<ClaimRef>,
    /// A raw block volume (`volumeMode: Block`).
    block: bool,
}

/// Where a PersistentVolume is staged, and where the `vol_data.json` that says so is.
struct Staging {
    path: PathBuf,
    data_file: PathBuf,
}

/// A volume published for a pod, measured every stats period.
#[derive(Debug, Clone)]
struct Published {
    pod_uid: String,
    volume: String,
    driver: String,
    handle: String,
    lifecycle: Lifecycle,
    claim: Option<ClaimRef>,
    /// The PersistentVolume's name (its staging's, for a block volume) and mode.
    spec_vol_id: String,
    block: bool,
}

/// The CSI volume plugin (see the crate docs).
pub struct CsiPlugin {
    drivers: Arc<Drivers>,
    sources: Arc<dyn VolumeSources>,
    /// `<root-dir>/plugins/kubernetes.io/csi`: staging directories.
    plugin_dir: PathBuf,
    /// `<root-dir>/pods`.
    pods_dir: PathBuf,
    node_name: String,
    /// One lock per volume (`driver/handle`), so that staging and unstaging of one
    /// volume never interleave between pods; an entry goes when no one holds it.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The publications of this run by target path (re-learnt from each pod's next
    /// sync after a restart), removed at tear-down.
    published: Mutex<HashMap<PathBuf, Published>>,
    /// Their last `NodeGetVolumeStats`, by target path.
    measured: Mutex<HashMap<PathBuf, VolumeUsage>>,
    /// Where `kubelet_volume_stats_*` go.
    metrics: Arc<KubeletMetrics>,
}

impl std::fmt::Debug for CsiPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsiPlugin")
            .field("drivers", &self.drivers)
            .field("plugin_dir", &self.plugin_dir)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl CsiPlugin {
    /// The plugin for the kubelet with root directory `root_dir` on node `node_name`,
    /// publishing volumes of the registered `drivers`; secrets and tokens for drivers
    /// come from `sources`.
    pub fn new(
        drivers: Arc<Drivers>,
        sources: Arc<dyn VolumeSources>,
        root_dir: &Path,
        node_name: &str,
    ) -> Self {
        Self {
            drivers,
            sources,
            plugin_dir: root_dir.join("plugins").join(PLUGIN_NAME),
            pods_dir: root_dir.join("pods"),
            node_name: node_name.to_owned(),
            locks: Mutex::default(),
            published: Mutex::default(),
            measured: Mutex::default(),
            metrics: Arc::new(KubeletMetrics::new()),
        }
    }

    /// Sets each claim's `kubelet_volume_stats_*` in `metrics` (by default a registry
    /// of the plugin's own).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The CSIDriver object's spec of a driver (`None`: no object).
    async fn driver_spec(&self, driver: &str) -> Result<Option<CSIDriverSpec>> {
        Ok(self
            .drivers
            .objects()
            .csi_driver(driver)
            .await?
            .map(|d| d.spec))
    }

    /// The lock of one volume.
    async fn lock(&self, driver: &str, handle: &str) -> VolumeLock<'_> {
        let key = format!("{driver}/{handle}");
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        VolumeLock {
            plugin: self,
            key,
            lock,
            _guard: guard,
        }
    }

    /// A PersistentVolume's staging: upstream's `makeDeviceMountPath` for a file
    /// system, `volumeDevices/staging/<pv>` (its data in `volumeDevices/<pv>/data`) for
    /// a raw block volume.
    fn staging(&self, driver: &str, handle: &str, pv: &str, block: bool) -> Staging {
        if block {
            let devices = self.plugin_dir.join(BLOCK_DIR);
            Staging {
                path: devices.join("staging").join(pv),
                data_file: devices.join(pv).join("data").join(VOL_DATA),
            }
        } else {
            let path = self
                .plugin_dir
                .join(driver)
                .join(hex::encode(Sha256::digest(handle.as_bytes())))
                .join(GLOBAL_MOUNT);
            let data_file = path.parent().unwrap_or(&path).join(VOL_DATA);
            Staging { path, data_file }
        }
    }

    /// Where a raw block volume is published for a pod (upstream
    /// `volumeDevices/publish/<pv>/<pod uid>`): a file the driver binds the device to.
    fn block_target(&self, pv: &str, pod_uid: &str) -> PathBuf {
        self.plugin_dir
            .join(BLOCK_DIR)
            .join("publish")
            .join(pv)
            .join(pod_uid)
    }

    /// Stages (when the driver stages) and publishes `p` for `pod`.
    async fn publish(
        &self,
        pod: &Pod,
        p: Publication,
        pod_volume_dir: &Path,
    ) -> Result<MountedVolume> {
        kubelet_volumes::check_volume_name(&p.spec_vol_id)?;
        let vol_dir = pod_volume_dir
            .join(ESCAPED_PLUGIN_NAME)
            .join(&p.spec_vol_id);
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let target = if p.block {
            kubelet_volumes::check_volume_name(&pod_uid)?;
            self.block_target(&p.spec_vol_id, &pod_uid)
        } else {
            vol_dir.join(MOUNT_DIR)
        };
        let mounted = MountedVolume {
            name: p.volume_name.clone(),
            host_path: target.clone(),
            read_only: p.read_only,
            block: p.block,
        };
        let driver = self.drivers.get(&p.driver)?;
        let spec = self.driver_spec(&p.driver).await?;
        check_lifecycle(&p.driver, spec.as_ref(), p.lifecycle)?;
        let republish = spec
            .as_ref()
            .and_then(|s| s.requires_republish)
            .unwrap_or(false);
        let published = {
            let (data, target) = (vol_dir.join(VOL_DATA), target.clone());
            blocking(move || Ok(data.is_file() && kubelet_volumes::is_mount_point(&target)?))
                .await?
        };
        if published && !republish {
            self.remember(&p, &target, pod);
            return Ok(mounted);
        }
        let _lock = self.lock(&p.driver, &p.handle).await;
        let capabilities = driver.capabilities().await?;
        let fs_group = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|sc| sc.fs_group);
        // A driver with VOLUME_MOUNT_GROUP applies the fsGroup itself.
        let delegate_fs_group = capabilities.contains(&rpc::Type::VolumeMountGroup);
        let capability =
            volume_capability(&p, &capabilities, fs_group.filter(|_| delegate_fs_group));
        let mut publish_context = HashMap::new();
        let mut staging_target_path = String::new();
        if p.lifecycle == Lifecycle::Persistent {
            if spec
                .as_ref()
                .and_then(|s| s.attach_required)
                .unwrap_or(true)
            {
                publish_context = self.attachment_metadata(&p).await?;
            }
            if capabilities.contains(&rpc::Type::StageUnstageVolume) {
                let staging = self.staging(&p.driver, &p.handle, &p.spec_vol_id, p.block);
                self.stage(pod, &driver, &p, &staging, &publish_context, &capability)
                    .await?;
                staging_target_path = staging.path.to_string_lossy().into_owned();
            }
        }

        let mut attributes = p.attributes.clone();
        let mut secrets = match &p.publish_secret {
            Some((namespace, name)) => self.secret(namespace, name).await?,
            None => HashMap::new(),
        };
        if spec
            .as_ref()
            .and_then(|s| s.pod_info_on_mount)
            .unwrap_or(false)
        {
            attributes.extend(pod_info(pod, p.lifecycle));
        }
        if let Some((key, tokens)) = self.token_attributes(pod, spec.as_ref()).await? {
            if spec
                .as_ref()
                .and_then(|s| s.service_account_token_in_secrets)
                .unwrap_or(false)
            {
                secrets.insert(key, tokens);
            } else {
                attributes.insert(key, tokens);
            }
        }

        let data = VolData {
            spec_vol_id: p.spec_vol_id.clone(),
            volume_handle: p.handle.clone(),
            driver_name: p.driver.clone(),
            node_name: self.node_name.clone(),
            attachment_id: if p.lifecycle == Lifecycle::Persistent {
                attachment_name(&p.handle, &p.driver, &self.node_name)
            } else {
                String::new()
            },
            volume_lifecycle_mode: p.lifecycle.as_str().to_owned(),
        };
        {
            // The driver makes the target (a directory, or a file for a block device)
            // in its parent, which the kubelet makes.
            let (vol_dir, target) = (vol_dir.clone(), target.clone());
            blocking(move || {
                mkdir_all(&vol_dir)?;
                if let Some(parent) = target.parent() {
                    mkdir_all(parent)?;
                }
                save(&vol_dir.join(VOL_DATA), &data)
            })
            .await?;
        }
        let request = NodePublishVolumeRequest {
            volume_id: p.handle.clone(),
            publish_context,
            staging_target_path,
            target_path: target.to_string_lossy().into_owned(),
            volume_capability: Some(capability),
            readonly: p.read_only,
            secrets,
            volume_context: attributes.into_iter().collect(),
        };
        if let Err(e) = driver
            .call(
                "NodePublishVolume",
                driver.client().node_publish_volume(request),
            )
            .await
        {
            // A first publication that failed leaves nothing behind; a republication
            // keeps the volume the containers see.
            if !published {
                let (vol_dir, target, block) = (vol_dir.clone(), target.clone(), p.block);
                let _ = blocking(move || {
                    if block {
                        remove_block_target(&target)?;
                    }
                    remove_publication_dirs(&vol_dir)
                })
                .await;
            }
            return Err(e);
        }
        info!(driver = %p.driver, handle = %p.handle, target = %target.display(), "CSI volume published");
        self.remember(&p, &target, pod);
        if !delegate_fs_group
            && let Some(fs_group) = fs_group
            && supports_fs_group(&p, spec.as_ref())
        {
            let on_root_mismatch = pod
                .spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|sc| sc.fs_group_change_policy.as_deref())
                == Some("OnRootMismatch");
            let target = target.clone();
            blocking(move || {
                Ok(kubelet_volumes::apply_fs_group(
                    &target,
                    fs_group,
                    false,
                    on_root_mismatch,
                )?)
            })
            .await?;
        }
        Ok(mounted)
    }

    /// Records a publication for the stats.
    fn remember(&self, p: &Publication, target: &Path, pod: &Pod) {
        let entry = Published {
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            volume: p.volume_name.clone(),
            driver: p.driver.clone(),
            handle: p.handle.clone(),
            lifecycle: p.lifecycle,
            claim: p.claim.clone(),
            spec_vol_id: p.spec_vol_id.clone(),
            block: p.block,
        };
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.to_owned(), entry);
    }

    /// Forgets the publication at `target` and its measurements (the claim's gauges
    /// too, unless another pod's publication of it is measured).
    fn forget(&self, target: &Path) {
        let gone = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(target);
        self.measured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(target);
        let Some(claim) = gone.and_then(|g| g.claim) else {
            return;
        };
        let still_used = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|p| p.claim.as_ref() == Some(&claim));
        if !still_used {
            for family in self.metrics.volume_stats() {
                family.remove(&[&claim.namespace, &claim.name]);
            }
        }
    }

    /// Measures every published volume whose driver offers `GET_VOLUME_STATS` (upstream
    /// `csiMetricsProvider.GetMetrics`), for the summary API and
    /// `kubelet_volume_stats_*`; a driver that fails or is not registered keeps its
    /// volumes' last measurement.
    pub async fn measure_volumes(&self) {
        let published: Vec<(PathBuf, Published)> = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        for (target, p) in published {
            let Ok(driver) = self.drivers.get(&p.driver) else {
                continue;
            };
            match self.measure(&driver, &target, &p).await {
                Ok(Some(usage)) => {
                    // Not for a volume that went meanwhile: its gauges were removed
                    // with it and must not come back. (The publications' lock is held
                    // so that `forget` cannot run in between.)
                    let published = self
                        .published
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if published.contains_key(&target) {
                        if let Some(claim) = &usage.claim {
                            set_volume_gauges(&self.metrics, claim, &usage);
                        }
                        self.measured
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(target, usage);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    debug!(driver = %p.driver, handle = %p.handle, error = %e, "measuring a CSI volume");
                }
            }
        }
    }

    /// One volume's `NodeGetVolumeStats`, `None` when the driver does not measure.
    async fn measure(
        &self,
        driver: &Driver,
        target: &Path,
        p: &Published,
    ) -> Result<Option<VolumeUsage>> {
        if !driver
            .capabilities()
            .await?
            .contains(&rpc::Type::GetVolumeStats)
        {
            return Ok(None);
        }
        let staging = self
            .staging(&p.driver, &p.handle, &p.spec_vol_id, p.block)
            .path;
        let staging_target_path = if p.lifecycle == Lifecycle::Persistent && staging.is_dir() {
            staging.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let request = NodeGetVolumeStatsRequest {
            volume_id: p.handle.clone(),
            volume_path: target.to_string_lossy().into_owned(),
            staging_target_path,
        };
        let reply = driver
            .call(
                "NodeGetVolumeStats",
                driver.client().node_get_volume_stats(request),
            )
            .await?;
        let mut usage = VolumeUsage {
            pod_uid: p.pod_uid.clone(),
            volume: p.volume.clone(),
            claim: p.claim.clone(),
            measured: std::time::SystemTime::now(),
            capacity_bytes: None,
            available_bytes: None,
            used_bytes: None,
            inodes: None,
            inodes_free: None,
            inodes_used: None,
        };
        let count = |v: i64| u64::try_from(v).ok();
        for u in reply.usage {
            match volume_usage::Unit::try_from(u.unit) {
                Ok(volume_usage::Unit::Bytes) => {
                    usage.available_bytes = count(u.available);
                    usage.capacity_bytes = count(u.total);
                    usage.used_bytes = count(u.used);
                }
                Ok(volume_usage::Unit::Inodes) => {
                    usage.inodes_free = count(u.available);
                    usage.inodes = count(u.total);
                    usage.inodes_used = count(u.used);
                }
                _ => {}
            }
        }
        Ok(Some(usage))
    }

    /// Measures the published volumes every `period` (upstream's
    /// `volumeStatsAggPeriod`); runs until dropped.
    pub async fn run_volume_stats(&self, period: std::time::Duration) {
        loop {
            self.measure_volumes().await;
            tokio::time::sleep(period).await;
        }
    }

    /// Upstream `csiAttacher.MountDevice`: the staging directory and its
    /// `vol_data.json`, then `NodeStageVolume` (idempotent in the driver).
    async fn stage(
        &self,
        pod: &Pod,
        driver: &Driver,
        p: &Publication,
        staging: &Staging,
        publish_context: &HashMap<String, String>,
        capability: &VolumeCapability,
    ) -> Result<()> {
        let data = VolData {
            spec_vol_id: p.spec_vol_id.clone(),
            volume_handle: p.handle.clone(),
            driver_name: p.driver.clone(),
            node_name: self.node_name.clone(),
            attachment_id: attachment_name(&p.handle, &p.driver, &self.node_name),
            volume_lifecycle_mode: String::new(),
        };
        {
            let (path, data_file) = (staging.path.clone(), staging.data_file.clone());
            blocking(move || {
                mkdir_all(&path)?;
                if let Some(parent) = data_file.parent() {
                    mkdir_all(parent)?;
                }
                save(&data_file, &data)
            })
            .await?;
        }
        let secrets = match &p.stage_secret {
            Some((namespace, name)) => self.secret(namespace, name).await?,
            None => HashMap::new(),
        };
        let request = NodeStageVolumeRequest {
            volume_id: p.handle.clone(),
            publish_context: publish_context.clone(),
            staging_target_path: staging.path.to_string_lossy().into_owned(),
            volume_capability: Some(capability.clone()),
            secrets,
            volume_context: p.attributes.clone().into_iter().collect(),
        };
        driver
            .call(
                "NodeStageVolume",
                driver.client().node_stage_volume(request),
            )
            .await?;
        debug!(pod = ?pod.metadata.name, handle = %p.handle, staging = %staging.path.display(), "CSI volume staged");
        Ok(())
    }

    /// The VolumeAttachment's `attachmentMetadata` once the attacher says the volume is
    /// attached to this node (upstream's `WaitForAttach` and `getPublishContext`); the
    /// kubelet does not attach, the controller-manager and the driver's attacher do.
    async fn attachment_metadata(&self, p: &Publication) -> Result<HashMap<String, String>> {
        let name = attachment_name(&p.handle, &p.driver, &self.node_name);
        let Some(attachment) = self.drivers.objects().volume_attachment(&name).await? else {
            return Err(Error::Invalid(format!(
                "volume {} of driver {} is not attached to node {} yet: no VolumeAttachment {name}",
                p.handle, p.driver, self.node_name
            )));
        };
        if attachment.metadata.deletion_timestamp.is_some() {
            return Err(Error::Invalid(format!(
                "volume attachment {name} is being deleted"
            )));
        }
        let status = attachment.status.unwrap_or_default();
        if let Some(message) = status.attach_error.and_then(|e| e.message) {
            return Err(Error::Invalid(format!(
                "attachment {name} of volume {} failed: {message}",
                p.handle
            )));
        }
        if !status.attached {
            return Err(Error::Invalid(format!(
                "volume {} of driver {} is not attached to node {} yet: VolumeAttachment {name} is not attached",
                p.handle, p.driver, self.node_name
            )));
        }
        Ok(status
            .attachment_metadata
            .unwrap_or_default()
            .into_iter()
            .collect())
    }

    /// A secret's data for a driver (upstream `getCredentialsFromSecret`).
    async fn secret(&self, namespace: &str, name: &str) -> Result<HashMap<String, String>> {
        let secret = self.sources.secret(namespace, name).await.map_err(|e| {
            Error::Invalid(format!(
                "failed to find the secret {name} in the namespace {namespace} with error: {e}"
            ))
        })?;
        let Some(secret) = secret else {
            return Err(Error::Invalid(format!(
                "failed to find the secret {name} in the namespace {namespace} with error: secrets {name:?} not found"
            )));
        };
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect())
    }

    /// The pod's service-account tokens the CSIDriver asks for (`tokenRequests`), as
    /// upstream's `csi.storage.k8s.io/serviceAccount.tokens` entry.
    async fn token_attributes(
        &self,
        pod: &Pod,
        spec: Option<&CSIDriverSpec>,
    ) -> Result<Option<(String, String)>> {
        let requests = spec
            .and_then(|s| s.token_requests.as_deref())
            .unwrap_or_default();
        if requests.is_empty() {
            return Ok(None);
        }
        let mut tokens = serde_json::Map::new();
        for request in requests {
            let token = self
                .sources
                .service_account_token(
                    pod,
                    Some(&request.audience),
                    request.expiration_seconds.unwrap_or(3600),
                )
                .await?;
            let expiration = k8s_openapi::jiff::Timestamp::try_from(token.expiration)
                .map(|t| t.to_string())
                .unwrap_or_default();
            tokens.insert(
                request.audience.clone(),
                serde_json::json!({"token": token.token, "expirationTimestamp": expiration}),
            );
        }
        Ok(Some((
            "csi.storage.k8s.io/serviceAccount.tokens".to_owned(),
            serde_json::Value::Object(tokens).to_string(),
        )))
    }

    /// Upstream `unmounter.TearDownAt` and, when no other pod uses the volume any
    /// more, `UnmountDevice`.
    async fn unpublish(&self, volume_name: &str, pod_volume_dir: &Path) -> Result<()> {
        kubelet_volumes::check_volume_name(volume_name)?;
        let vol_dir = pod_volume_dir.join(ESCAPED_PLUGIN_NAME).join(volume_name);
        let pod_uid = pod_volume_dir
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let block_target = self.block_target(volume_name, &pod_uid);
        let (data, block) = {
            let (file, block_target) = (vol_dir.join(VOL_DATA), block_target.clone());
            blocking(move || Ok((load(&file)?, block_target.symlink_metadata().is_ok()))).await?
        };
        let target = if block {
            block_target
        } else {
            vol_dir.join(MOUNT_DIR)
        };
        let Some(data) = data else {
            // Set-up failed before anything was published: nothing to ask a driver.
            let (vol_dir, target) = (vol_dir.clone(), target.clone());
            return blocking(move || {
                if kubelet_volumes::is_mount_point(&target)? {
                    return Err(Error::Invalid(format!(
                        "{} is mounted but has no {VOL_DATA}: cannot tell which driver to ask",
                        target.display()
                    )));
                }
                if block {
                    remove_block_target(&target)?;
                }
                remove_publication_dirs(&vol_dir)
            })
            .await;
        };
        let driver = self.drivers.get(&data.driver_name)?;
        let _lock = self.lock(&data.driver_name, &data.volume_handle).await;
        let request = NodeUnpublishVolumeRequest {
            volume_id: data.volume_handle.clone(),
            target_path: target.to_string_lossy().into_owned(),
        };
        driver
            .call(
                "NodeUnpublishVolume",
                driver.client().node_unpublish_volume(request),
            )
            .await?;
        {
            let (vol_dir, target) = (vol_dir.clone(), target.clone());
            blocking(move || {
                if kubelet_volumes::is_mount_point(&target)? {
                    return Err(Error::Invalid(format!(
                        "{} is still mounted after NodeUnpublishVolume",
                        target.display()
                    )));
                }
                if block {
                    remove_block_target(&target)?;
                }
                remove_publication_dirs(&vol_dir)
            })
            .await?;
        }
        info!(driver = %data.driver_name, handle = %data.volume_handle, target = %target.display(), "CSI volume unpublished");
        self.forget(&target);
        if data.volume_lifecycle_mode != Lifecycle::Ephemeral.as_str() {
            let staging = self.staging(&data.driver_name, &data.volume_handle, volume_name, block);
            self.unstage_unused(&driver, &data, pod_volume_dir, staging)
                .await?;
        }
        Ok(())
    }

    /// Unstages the volume unless another pod on the node still publishes it.
    async fn unstage_unused(
        &self,
        driver: &Driver,
        data: &VolData,
        pod_volume_dir: &Path,
        staging: Staging,
    ) -> Result<()> {
        let Staging {
            path: staging,
            data_file,
        } = staging;
        let pods_dir = pod_volume_dir
            .parent()
            .and_then(Path::parent)
            .map(Path::to_owned);
        let (in_use, staged) = {
            let (data, data_file) = (data.clone(), data_file.clone());
            blocking(move || {
                let in_use = match &pods_dir {
                    Some(pods_dir) => published_elsewhere(pods_dir, &data),
                    None => false,
                };
                Ok((in_use, data_file.is_file()))
            })
            .await?
        };
        if in_use || !staged {
            return Ok(());
        }
        if driver
            .capabilities()
            .await?
            .contains(&rpc::Type::StageUnstageVolume)
        {
            let request = NodeUnstageVolumeRequest {
                volume_id: data.volume_handle.clone(),
                staging_target_path: staging.to_string_lossy().into_owned(),
            };
            driver
                .call(
                    "NodeUnstageVolume",
                    driver.client().node_unstage_volume(request),
                )
                .await?;
            info!(driver = %data.driver_name, handle = %data.volume_handle, "CSI volume unstaged");
        }
        let plugin_dir = self.plugin_dir.clone();
        blocking(move || {
            if kubelet_volumes::is_mount_point(&staging)? {
                return Err(Error::Invalid(format!(
                    "{} is still mounted after NodeUnstageVolume",
                    staging.display()
                )));
            }
            remove_if_exists(&staging, true)?;
            remove_if_exists(&data_file, false)?;
            // The directories that held them, when now empty: `<driver>/<sha256>`, or a
            // block volume's `<pv>/data` and `<pv>`.
            let mut dir = data_file.parent();
            while let Some(d) = dir.filter(|d| *d != plugin_dir && d.starts_with(&plugin_dir)) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d
                    .parent()
                    .filter(|p| p.file_name() != Some(std::ffi::OsStr::new(BLOCK_DIR)));
            }
            Ok(())
        })
        .await
    }
}

/// A held volume lock; its map entry goes with the last holder.
struct VolumeLock<'a> {
    plugin: &'a CsiPlugin,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for VolumeLock<'_> {
    fn drop(&mut self) {
        let mut locks = self
            .plugin
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Ours, the map's and the guard's: nobody else waits.
        if Arc::strong_count(&self.lock) <= 3 {
            locks.remove(&self.key);
        }
    }
}

impl MeasuredVolumes for CsiPlugin {
    fn measured_volumes(&self) -> Vec<VolumeUsage> {
        self.measured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// `kubelet_volume_stats_*` of a claim.
fn set_volume_gauges(metrics: &KubeletMetrics, claim: &ClaimRef, usage: &VolumeUsage) {
    let labels = [claim.namespace.as_str(), claim.name.as_str()];
    let values = [
        usage.capacity_bytes,
        usage.available_bytes,
        usage.used_bytes,
        usage.inodes,
        usage.inodes_free,
        usage.inodes_used,
    ];
    // `volume_stats()` lists the families in this order.
    for (family, value) in metrics.volume_stats().into_iter().zip(values) {
        if let Some(value) = value {
            // Gauges are f64, as upstream's.
            #[allow(clippy::cast_precision_loss)]
            family.set(&labels, value as f64);
        }
    }
}

/// PersistentVolumes of CSI drivers that need attaching count as in use from their
/// staging (its `vol_data.json` is written before `NodeStageVolume`) or publication
/// until they are unstaged and unpublished: found on disk, so a restarted kubelet
/// reports them too.
#[async_trait]
impl VolumesInUse for CsiPlugin {
    async fn volumes_in_use(&self) -> Vec<String> {
        let (plugin_dir, pods_dir) = (self.plugin_dir.clone(), self.pods_dir.clone());
        let found = tokio::task::spawn_blocking(move || {
            let staged = read_dirs(&plugin_dir)
                .into_iter()
                .flat_map(|driver| read_dirs(&driver))
                .filter_map(|volume| load(&volume.join(VOL_DATA)).ok().flatten());
            let staged_blocks = read_dirs(&plugin_dir.join(BLOCK_DIR))
                .into_iter()
                .filter_map(|volume| load(&volume.join("data").join(VOL_DATA)).ok().flatten());
            let published = read_dirs(&pods_dir)
                .into_iter()
                .flat_map(|pod| read_dirs(&pod.join("volumes").join(ESCAPED_PLUGIN_NAME)))
                .filter_map(|volume| load(&volume.join(VOL_DATA)).ok().flatten())
                .filter(|data| data.volume_lifecycle_mode != Lifecycle::Ephemeral.as_str());
            staged
                .chain(staged_blocks)
                .chain(published)
                .map(|data| (data.driver_name, data.volume_handle))
                .collect::<std::collections::BTreeSet<_>>()
        })
        .await
        .unwrap_or_default();
        // Only attachable volumes, as upstream (`PluginIsAttachable`: the CSIDriver does
        // not say `attachRequired: false`); when that cannot be known, reported.
        let mut in_use = Vec::new();
        let mut attachable: HashMap<String, bool> = HashMap::new();
        for (driver, handle) in found {
            let attach = match attachable.get(&driver) {
                Some(a) => *a,
                None => {
                    let a = self.driver_spec(&driver).await.map_or(true, |spec| {
                        spec.and_then(|s| s.attach_required).unwrap_or(true)
                    });
                    attachable.insert(driver.clone(), a);
                    a
                }
            };
            if attach {
                in_use.push(unique_volume_name(&driver, &handle));
            }
        }
        in_use
    }
}

/// Upstream's unique name of a CSI volume (`GetUniqueVolumeNameFromSpec`).
pub fn unique_volume_name(driver: &str, handle: &str) -> String {
    format!("{PLUGIN_NAME}/{driver}^{handle}")
}

/// The directories in `dir` (none when it cannot be read).
fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

#[async_trait]
impl VolumePlugin for CsiPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    fn supports(&self, volume: &Volume) -> bool {
        volume.csi.is_some()
    }

    fn selinux_relabel(&self) -> bool {
        // Upstream relabels a CSI volume unless it was mounted with the pod's context.
        true
    }

    async fn set_up(
        &self,
        pod: &Pod,
        volume: &Volume,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<MountedVolume> {
        let Some(csi) = &volume.csi else {
            return Err(Error::Invalid("not a csi volume".to_owned()).for_volume(&volume.name));
        };
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let p = Publication {
            volume_name: volume.name.clone(),
            spec_vol_id: volume.name.clone(),
            driver: csi.driver.clone(),
            handle: ephemeral_volume_handle(uid, &volume.name),
            lifecycle: Lifecycle::Ephemeral,
            read_only: csi.read_only.unwrap_or(false),
            fs_type: csi.fs_type.clone().unwrap_or_default(),
            attributes: csi.volume_attributes.clone().unwrap_or_default(),
            publish_secret: csi
                .node_publish_secret_ref
                .as_ref()
                .map(|r| (namespace.clone(), r.name.clone())),
            stage_secret: None,
            access_modes: Vec::new(),
            mount_options: Vec::new(),
            claim: None,
            block: false,
        };
        self.publish(pod, p, pod_volume_dir)
            .await
            .map_err(|e| e.for_volume(&volume.name))
    }

    async fn tear_down(
        &self,
        volume_name: &str,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<()> {
        self.unpublish(volume_name, pod_volume_dir)
            .await
            .map_err(|e| e.for_volume(volume_name))
    }

    fn supports_persistent(&self, pv: &PersistentVolume) -> bool {
        pv.spec.as_ref().is_some_and(|s| s.csi.is_some())
    }

    async fn set_up_persistent(
        &self,
        pod: &Pod,
        volume_name: &str,
        pv: &PersistentVolume,
        read_only: bool,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<MountedVolume> {
        let fail = |e: Error| e.for_volume(volume_name);
        let spec = pv.spec.clone().unwrap_or_default();
        let Some(csi) = spec.csi else {
            return Err(fail(Error::Invalid(
                "not a csi persistent volume".to_owned(),
            )));
        };
        let secret = |r: Option<&k8s_openapi::api::core::v1::SecretReference>| {
            r.and_then(|r| Some((r.namespace.clone()?, r.name.clone()?)))
        };
        let p = Publication {
            volume_name: volume_name.to_owned(),
            spec_vol_id: pv.metadata.name.clone().unwrap_or_default(),
            driver: csi.driver.clone(),
            handle: csi.volume_handle.clone(),
            lifecycle: Lifecycle::Persistent,
            read_only: read_only || csi.read_only.unwrap_or(false),
            fs_type: csi.fs_type.clone().unwrap_or_default(),
            attributes: csi.volume_attributes.clone().unwrap_or_default(),
            publish_secret: secret(csi.node_publish_secret_ref.as_ref()),
            stage_secret: secret(csi.node_stage_secret_ref.as_ref()),
            access_modes: spec.access_modes.unwrap_or_default(),
            mount_options: spec.mount_options.unwrap_or_default(),
            claim: spec.claim_ref.as_ref().and_then(|r| {
                Some(ClaimRef {
                    namespace: r.namespace.clone()?,
                    name: r.name.clone()?,
                })
            }),
            block: spec.volume_mode.as_deref() == Some("Block"),
        };
        if p.handle.is_empty() {
            return Err(fail(Error::Invalid(
                "CSIPersistentVolumeSource volume handle is empty".to_owned(),
            )));
        }
        self.publish(pod, p, pod_volume_dir).await.map_err(fail)
    }
}

/// Upstream `supportsVolumeLifecycleMode`: without a CSIDriver object a driver serves
/// persistent volumes only.
fn check_lifecycle(driver: &str, spec: Option<&CSIDriverSpec>, mode: Lifecycle) -> Result<()> {
    let modes: Vec<String> = spec
        .and_then(|s| s.volume_lifecycle_modes.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec![Lifecycle::Persistent.as_str().to_owned()]);
    if modes.iter().any(|m| m == mode.as_str()) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "volume mode {:?} not supported by driver {driver} (only supports {modes:?})",
            mode.as_str()
        )))
    }
}

/// Upstream `supportsFSGroup`: whether the kubelet gives the volume the pod's fsGroup
/// (the driver not doing it itself), per the CSIDriver's `fsGroupPolicy`.
fn supports_fs_group(p: &Publication, spec: Option<&CSIDriverSpec>) -> bool {
    if p.read_only || p.block {
        return false;
    }
    match spec.and_then(|s| s.fs_group_policy.as_deref()) {
        Some("None") => false,
        Some("File") => true,
        _ => {
            !p.fs_type.is_empty()
                && (p.lifecycle == Lifecycle::Ephemeral
                    || p.access_modes
                        .iter()
                        .any(|m| m == "ReadWriteOnce" || m == "ReadWriteOncePod"))
        }
    }
}

/// The CSI volume capability: a mounted file system with the PV's access mode (upstream
/// `asCSIAccessModeV1`) and, when the driver applies it, the pod's fsGroup.
fn volume_capability(
    p: &Publication,
    capabilities: &[rpc::Type],
    volume_mount_group: Option<i64>,
) -> VolumeCapability {
    let multi_writer = capabilities.contains(&rpc::Type::SingleNodeMultiWriter);
    let mode = match p.access_modes.first().map(String::as_str) {
        Some("ReadOnlyMany") => access_mode::Mode::MultiNodeReaderOnly,
        Some("ReadWriteMany") => access_mode::Mode::MultiNodeMultiWriter,
        Some("ReadWriteOncePod") if multi_writer => access_mode::Mode::SingleNodeSingleWriter,
        _ if multi_writer => access_mode::Mode::SingleNodeMultiWriter,
        _ => access_mode::Mode::SingleNodeWriter,
    };
    if p.block {
        return VolumeCapability {
            access_mode: Some(AccessMode { mode: mode.into() }),
            access_type: Some(volume_capability::AccessType::Block(BlockVolume {})),
        };
    }
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode.into() }),
        access_type: Some(volume_capability::AccessType::Mount(MountVolume {
            fs_type: p.fs_type.clone(),
            mount_flags: p.mount_options.clone(),
            volume_mount_group: volume_mount_group
                .map(|g| g.to_string())
                .unwrap_or_default(),
        })),
    }
}

/// Upstream `getPodInfoAttrs`.
fn pod_info(pod: &Pod, mode: Lifecycle) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    [
        (
            "csi.storage.k8s.io/pod.name",
            m.name.clone().unwrap_or_default(),
        ),
        (
            "csi.storage.k8s.io/pod.namespace",
            m.namespace.clone().unwrap_or_default(),
        ),
        (
            "csi.storage.k8s.io/pod.uid",
            m.uid.clone().unwrap_or_default(),
        ),
        (
            "csi.storage.k8s.io/serviceAccount.name",
            pod.spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
        ),
        (
            "csi.storage.k8s.io/ephemeral",
            (mode == Lifecycle::Ephemeral).to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Upstream `getAttachmentName`: the VolumeAttachment of a volume on a node.
pub fn attachment_name(handle: &str, driver: &str, node: &str) -> String {
    format!(
        "csi-{}",
        hex::encode(Sha256::digest(format!("{handle}{driver}{node}").as_bytes()))
    )
}

/// Upstream `makeVolumeHandle`: the handle of a pod's inline ephemeral volume.
pub fn ephemeral_volume_handle(pod_uid: &str, volume_name: &str) -> String {
    format!(
        "csi-{}",
        hex::encode(Sha256::digest(format!("{pod_uid}{volume_name}").as_bytes()))
    )
}

/// Whether a pod other than the one of this `data` publishes the same volume.
fn published_elsewhere(pods_dir: &Path, data: &VolData) -> bool {
    let Ok(pods) = std::fs::read_dir(pods_dir) else {
        return false;
    };
    pods.filter_map(|p| p.ok())
        .filter_map(|p| std::fs::read_dir(p.path().join("volumes").join(ESCAPED_PLUGIN_NAME)).ok())
        .flat_map(|volumes| volumes.filter_map(|v| v.ok()))
        .filter_map(|v| load(&v.path().join(VOL_DATA)).ok().flatten())
        .any(|other| {
            other.driver_name == data.driver_name && other.volume_handle == data.volume_handle
        })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Invalid(format!("volume work failed: {e}")))?
}

fn mkdir_all(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| Error::io("creating", dir, e))
}

fn save(file: &Path, data: &VolData) -> Result<()> {
    let text =
        serde_json::to_vec(data).map_err(|e| Error::io("encoding", file, io::Error::other(e)))?;
    std::fs::write(file, text).map_err(|e| Error::io("writing", file, e))
}

fn load(file: &Path) -> Result<Option<VolData>> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::io("decoding", file, io::Error::other(e))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", file, e)),
    }
}

fn remove_if_exists(path: &Path, dir: bool) -> Result<()> {
    let removed = if dir {
        std::fs::remove_dir(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// A raw block volume's publish file (the driver unbound the device from it) and its
/// directory once empty.
fn remove_block_target(target: &Path) -> Result<()> {
    remove_if_exists(target, false)?;
    if let Some(parent) = target.parent() {
        // Other pods' publications of the volume may remain in it.
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// Upstream `removeMountDir`: the (unmounted, empty) mount directory, `vol_data.json`
/// and the volume's directory.
fn remove_publication_dirs(vol_dir: &Path) -> Result<()> {
    remove_if_exists(&vol_dir.join(MOUNT_DIR), true)?;
    remove_if_exists(&vol_dir.join(VOL_DATA), false)?;
    remove_if_exists(vol_dir, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_handles_are_upstreams() {
        // sha256("vol1" "io.kubernetes.storage.mock" "node1"), as upstream's
        // getAttachmentName computes it.
        let name = attachment_name("vol1", "io.kubernetes.storage.mock", "node1");
        assert!(name.starts_with("csi-") && name.len() == 68, "{name}");
        assert_eq!(
            ephemeral_volume_handle("", ""),
            "csi-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn vol_data_has_upstreams_keys() {
        let data = VolData {
            spec_vol_id: "pv1".into(),
            volume_handle: "1".into(),
            driver_name: "d".into(),
            node_name: "n".into(),
            attachment_id: "csi-x".into(),
            volume_lifecycle_mode: "Persistent".into(),
        };
        let text = serde_json::to_string(&data).expect("valid");
        assert_eq!(
            text,
            r#"{"specVolID":"pv1","volumeHandle":"1","driverName":"d","nodeName":"n","attachmentID":"csi-x","volumeLifecycleMode":"Persistent"}"#
        );
    }

    #[test]
    fn lifecycle_defaults_to_persistent_only() {
        assert!(check_lifecycle("d", None, Lifecycle::Persistent).is_ok());
        let e = check_lifecycle("d", None, Lifecycle::Ephemeral).expect_err("refused");
        assert_eq!(
            e.to_string(),
            r#"volume mode "Ephemeral" not supported by driver d (only supports ["Persistent"])"#
        );
    }
}
