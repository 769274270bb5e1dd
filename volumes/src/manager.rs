//! The volume manager: sets up a pod's volumes, prepares each container's mounts, tears
//! volumes down and removes what orphaned pods left on disk.
//!
//! There is no record besides the disk: a volume set up before a restart is found at
//! its upstream path and reused (a `ready` marker, a tmpfs already mounted, payload files
//! with the same content), and the volumes of a pod that is gone are found by their
//! directory names, `<pods_dir>/<uid>/volumes/<escaped plugin>/<volume>`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, Volume, VolumeMount};
use kubelet_core::NodeResources;
use kubelet_core::downward::go_quote;
use kubelet_core::{
    Clock, Mount, MountPropagation, MountedVolume, PodRef, SystemClock, VolumePlugin,
    VolumeSources, expand,
};
use tracing::{debug, info, warn};

use crate::claims::{self, Claimed};
use crate::error::{Error, Result, plugin_reason};
use crate::plugins::config_map::ConfigMapSource;
use crate::plugins::downward_api::DownwardApiSource;
use crate::plugins::empty_dir::{self, EmptyDirPlugin};
use crate::plugins::host_path::HostPathPlugin;
use crate::plugins::local::LocalVolumePlugin;
use crate::plugins::projected::ProjectedSource;
use crate::plugins::publish::AtomicWriterPlugin;
use crate::plugins::secret::SecretSource;
use crate::plugins::{NodeState, SharedNode, blocking, escape_plugin_name};
use crate::subpath::{self, Subpath};
use crate::sys;
use crate::token::TokenManager;

/// The volumes of a pod once set up: volume name → where it is on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    volumes: BTreeMap<String, PodVolume>,
    /// Volumes set up before whose refresh failed this time, as upstream's `FailedMount`
    /// messages: they stay in use with their last contents.
    refresh_failures: Vec<String>,
    /// Groups the pod's persistent volumes ask its containers to join
    /// (`pv.beta.kubernetes.io/gid`), not already in its supplementalGroups.
    supplemental_groups: Vec<i64>,
}

/// What the manager keeps of one pod between set-ups: the volumes that were set up, so
/// that a failed refresh of one (its configMap deleted, the API server unreachable)
/// leaves the running pod its last good volume instead of stopping its containers'
/// restarts, as upstream's volume manager keeps a mounted volume mounted.
#[derive(Debug, Default)]
struct PodState {
    set_up: BTreeMap<String, PodVolume>,
    /// The claims of its `persistentVolumeClaim` and `ephemeral` volumes, resolved once
    /// (as upstream's populator processes a pod's volumes once), by volume name.
    claims: BTreeMap<String, Claimed>,
    /// A set-up of the pod ran (or runs) in this process: it is starting or running, so
    /// the orphan cleanup, whose list of live pods may predate it, leaves it alone.
    attempted: bool,
    /// Volumes whose plugin failed, by name: not asked again before `retry_at`.
    failed: BTreeMap<String, Failure>,
}

/// A volume plugin's failure, retried with upstream's exponential backoff (500 ms
/// doubling to 2 min 2 s, `nestedpendingoperations`), so that a failing driver or a
/// missing object is not asked again on every sync of the pod.
#[derive(Debug, Clone)]
struct Failure {
    attempts: u32,
    retry_at: SystemTime,
    reason: String,
}

/// The first wait after a plugin failed, and the longest.
const RETRY_INITIAL: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(122);

impl PodState {
    /// The error to report without asking the plugin, while `volume` backs off.
    fn backing_off(&self, volume: &str, now: SystemTime) -> Option<Error> {
        let failure = self.failed.get(volume)?;
        let wait = failure
            .retry_at
            .duration_since(now)
            .ok()
            .filter(|w| !w.is_zero())?;
        debug!(volume, retry_in = ?wait, "volume set-up backing off");
        // The last failure's very words, so that its FailedMount events are counted as
        // repeats of one.
        Some(Error::SetUp {
            volume: volume.to_owned(),
            reason: failure.reason.clone(),
            source: None,
        })
    }

    /// Records how asking the plugin for `volume` went.
    fn attempted(&mut self, volume: &str, failure: Option<&Error>, now: SystemTime) {
        let Some(e) = failure else {
            self.failed.remove(volume);
            return;
        };
        let attempts = self.failed.get(volume).map_or(0, |f| f.attempts);
        let wait = RETRY_INITIAL
            .saturating_mul(2u32.saturating_pow(attempts.min(16)))
            .min(RETRY_MAX);
        let reason = match e {
            Error::SetUp { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        self.failed.insert(
            volume.to_owned(),
            Failure {
                attempts: attempts + 1,
                retry_at: now + wait,
                reason,
            },
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PodVolume {
    mounted: MountedVolume,
    selinux_relabel: bool,
}

impl PodVolumes {
    /// The volume named `name` in the pod spec.
    pub fn get(&self, name: &str) -> Option<&MountedVolume> {
        self.volumes.get(name).map(|v| &v.mounted)
    }

    /// All volumes, by name.
    pub fn iter(&self) -> impl Iterator<Item = &MountedVolume> {
        self.volumes.values().map(|v| &v.mounted)
    }

    /// How many volumes the pod has.
    pub fn len(&self) -> usize {
        self.volumes.len()
    }

    /// True when the pod has no volumes.
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }

    /// The volumes, set up before, whose refresh failed this time (upstream's
    /// `FailedMount` messages); they are still in use with their last contents.
    pub fn refresh_failures(&self) -> &[String] {
        &self.refresh_failures
    }

    /// The groups every container of the pod joins for its persistent volumes (upstream
    /// `GetExtraSupplementalGroupsForPod`), after the pod's own supplemental groups.
    pub fn supplemental_groups(&self) -> &[i64] {
        &self.supplemental_groups
    }
}

/// Sets up and tears down the volumes of pods with the built-in plugins (emptyDir,
/// hostPath, configMap, secret, downwardAPI, projected; `persistentVolumeClaim` and
/// generic `ephemeral` volumes bound to `hostPath` and `local` PersistentVolumes) and any added with
/// [`VolumeManager::with_plugin`]. Held as `Arc<VolumeManager>`; operations on one pod
/// are serialized, different pods proceed in parallel.
pub struct VolumeManager {
    pods_dir: PathBuf,
    /// Where claims and their persistent volumes are read from.
    sources: Arc<dyn VolumeSources>,
    plugins: Vec<Arc<dyn VolumePlugin>>,
    /// How many of `plugins`, at the front, were added with `with_plugin`.
    added_plugins: usize,
    node: SharedNode,
    tokens: Arc<TokenManager>,
    /// When failed plugins may be asked again.
    clock: Arc<dyn Clock>,
    /// Per pod: its lock (operations on one pod are serialized) and what it keeps.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<PodState>>>>,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<VolumeManager>();
    send_sync::<PodVolumes>();
};

impl std::fmt::Debug for VolumeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeManager")
            .field("pods_dir", &self.pods_dir)
            .field(
                "plugins",
                &self.plugins.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl VolumeManager {
    /// A manager of the volumes under `pods_dir` (the kubelet's `<root-dir>/pods`) with
    /// all built-in plugins, reading configMaps, secrets and tokens from `sources`.
    pub fn new(pods_dir: PathBuf, sources: Arc<dyn VolumeSources>) -> Self {
        Self::with_clock(pods_dir, sources, Arc::new(SystemClock))
    }

    pub(crate) fn with_clock(
        pods_dir: PathBuf,
        sources: Arc<dyn VolumeSources>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let node: SharedNode = Arc::new(NodeState::default());
        let tokens = Arc::new(TokenManager::new(sources.clone(), clock.clone()));
        let plugins: Vec<Arc<dyn VolumePlugin>> = vec![
            Arc::new(EmptyDirPlugin { node: node.clone() }),
            Arc::new(HostPathPlugin),
            Arc::new(LocalVolumePlugin),
            Arc::new(AtomicWriterPlugin {
                source: ConfigMapSource {
                    sources: sources.clone(),
                },
                node: node.clone(),
            }),
            Arc::new(AtomicWriterPlugin {
                source: SecretSource {
                    sources: sources.clone(),
                },
                node: node.clone(),
            }),
            Arc::new(AtomicWriterPlugin {
                source: DownwardApiSource,
                node: node.clone(),
            }),
            Arc::new(AtomicWriterPlugin {
                source: ProjectedSource {
                    sources: sources.clone(),
                    tokens: tokens.clone(),
                },
                node: node.clone(),
            }),
        ];
        Self {
            pods_dir,
            sources,
            plugins,
            added_plugins: 0,
            node,
            tokens,
            clock,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a plugin. Added plugins are asked before the built-in ones (so one can take
    /// over a volume type), in the order they were added.
    pub fn with_plugin(mut self, plugin: Arc<dyn VolumePlugin>) -> Self {
        self.plugins.insert(self.added_plugins, plugin);
        self.added_plugins += 1;
        self
    }

    /// Sets the node's allocatable: unset container limits in downwardAPI
    /// `resourceFieldRef`s and the size of memory-backed emptyDirs default to it.
    pub fn with_node_allocatable(self, allocatable: NodeResources) -> Self {
        self.node.set(allocatable);
        self
    }

    /// Updates the node's allocatable (see [`VolumeManager::with_node_allocatable`]);
    /// volumes set up later use the new value.
    pub fn set_node_allocatable(&self, allocatable: NodeResources) {
        self.node.set(allocatable);
    }

    /// The kubelet's `<root-dir>/pods`.
    pub fn pods_dir(&self) -> &Path {
        &self.pods_dir
    }

    fn pod_dir(&self, uid: &str) -> Result<PathBuf> {
        if uid.is_empty() || uid == "." || uid == ".." || uid.contains('/') || uid.contains('\0') {
            return Err(Error::PodUid(uid.to_owned()));
        }
        Ok(self.pods_dir.join(uid))
    }

    fn pod_lock(&self, uid: &str) -> Arc<tokio::sync::Mutex<PodState>> {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(uid.to_owned())
            .or_default()
            .clone()
    }

    fn plugin_for(&self, volume: &Volume) -> Option<&Arc<dyn VolumePlugin>> {
        self.plugins.iter().find(|p| p.supports(volume))
    }

    /// Sets up a `persistentVolumeClaim` or `ephemeral` volume: its claim resolved (once
    /// per pod) to the bound PersistentVolume, then the plugin of that volume.
    async fn set_up_claimed(
        &self,
        pod: &Pod,
        volume: &Volume,
        claim: &claims::ClaimRef,
        state: &mut PodState,
        volumes_dir: &Path,
    ) -> Result<PodVolume> {
        let claimed = match state.claims.get(&volume.name) {
            Some(claimed) => claimed.clone(),
            None => {
                let claimed = claims::resolve(self.sources.as_ref(), pod, volume, claim)
                    .await
                    .map_err(|reason| Error::Claim {
                        volume: volume.name.clone(),
                        reason,
                    })?;
                state.claims.insert(volume.name.clone(), claimed.clone());
                claimed
            }
        };
        let set_up_failed = |reason: String, source| Error::SetUp {
            volume: volume.name.clone(),
            reason,
            source,
        };
        let Some(plugin) = self
            .plugins
            .iter()
            .find(|p| p.supports_persistent(&claimed.pv))
        else {
            let pv = claimed.pv.metadata.name.as_deref().unwrap_or_default();
            return Err(set_up_failed(
                format!("no volume plugin matched persistent volume {pv:?}"),
                None,
            ));
        };
        if let Some(e) = state.backing_off(&volume.name, self.clock.now()) {
            return Err(e);
        }
        let mounted = plugin
            .set_up_persistent(
                pod,
                &volume.name,
                &claimed.pv,
                claimed.read_only,
                volumes_dir,
            )
            .await
            .map_err(|e| set_up_failed(plugin_reason(&e), Some(Box::new(e))));
        state.attempted(&volume.name, mounted.as_ref().err(), self.clock.now());
        let mounted = mounted?;
        Ok(PodVolume {
            mounted,
            selinux_relabel: plugin.selinux_relabel(),
        })
    }

    /// One inline volume's set-up by its plugin, unless the plugin's last failure is
    /// still backing off.
    async fn set_up_inline(
        &self,
        plugin: &dyn VolumePlugin,
        pod: &Pod,
        volume: &Volume,
        volumes_dir: &Path,
        state: &mut PodState,
    ) -> Result<MountedVolume> {
        if let Some(e) = state.backing_off(&volume.name, self.clock.now()) {
            return Err(e);
        }
        let set_up = plugin
            .set_up(pod, volume, volumes_dir)
            .await
            .map_err(|e| Error::SetUp {
                volume: volume.name.clone(),
                reason: plugin_reason(&e),
                source: Some(Box::new(e)),
            });
        state.attempted(&volume.name, set_up.as_ref().err(), self.clock.now());
        set_up
    }

    /// Sets up (or refreshes) every volume of `pod`.
    ///
    /// Idempotent and cheap when nothing changed, so it is called on every sync of a
    /// running pod: that is also how configMap, secret and downwardAPI contents follow
    /// their sources and tokens are refreshed. When a volume fails, the others are still
    /// set up, and the error names the first that failed as upstream's `FailedMount`
    /// event does: `MountVolume.SetUp failed for volume "<name>" : <reason>`.
    pub async fn set_up_pod(&self, pod: &Pod) -> Result<PodVolumes> {
        let pod_ref = PodRef::of(pod);
        let pod_dir = self.pod_dir(&pod_ref.uid)?;
        let lock = self.pod_lock(&pod_ref.uid);
        let mut state = lock.lock().await;
        state.attempted = true;
        let volumes_dir = pod_dir.join("volumes");
        {
            let (pod_dir, volumes_dir) = (pod_dir.clone(), volumes_dir.clone());
            blocking(move || {
                sys::ensure_dir(&pod_dir, 0o750)?;
                sys::ensure_dir(&volumes_dir, 0o750)?;
                sys::ensure_dir(&pod_dir.join("plugins"), 0o750)
            })
            .await?;
        }

        let mut result = PodVolumes::default();
        let mut first_error: Option<Error> = None;
        let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
        for volume in volumes {
            if let Some(claim) = claims::claim_of(pod, volume) {
                match self
                    .set_up_claimed(pod, volume, &claim, &mut state, &volumes_dir)
                    .await
                {
                    Ok(set_up) => {
                        let gid = state.claims.get(&volume.name).and_then(|c| c.gid);
                        result.supplemental_groups.extend(gid);
                        result.volumes.insert(volume.name.clone(), set_up);
                    }
                    Err(e) => match state.set_up.get(&volume.name) {
                        Some(previous) => {
                            warn!(pod = %pod_ref, error = %e, "volume not refreshed; it stays in use");
                            result.refresh_failures.push(e.to_string());
                            result.volumes.insert(volume.name.clone(), previous.clone());
                        }
                        None => {
                            warn!(pod = %pod_ref, error = %e, "volume not set up");
                            first_error.get_or_insert(e);
                        }
                    },
                }
                continue;
            }
            let defaulted;
            let (plugin, volume) = match self.plugin_for(volume) {
                Some(plugin) => (plugin, volume),
                // The API defaults a volume without a source to an emptyDir.
                None if has_no_source(volume) => {
                    defaulted = Volume {
                        empty_dir: Some(Default::default()),
                        ..volume.clone()
                    };
                    match self.plugin_for(&defaulted) {
                        Some(plugin) => (plugin, &defaulted),
                        None => continue,
                    }
                }
                None => {
                    let e = Error::SetUp {
                        volume: volume.name.clone(),
                        reason: "no volume plugin matched".to_owned(),
                        source: None,
                    };
                    warn!(pod = %pod_ref, error = %e, "volume not set up");
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            match self
                .set_up_inline(plugin.as_ref(), pod, volume, &volumes_dir, &mut state)
                .await
            {
                Ok(mounted) => {
                    result.volumes.insert(
                        volume.name.clone(),
                        PodVolume {
                            mounted,
                            selinux_relabel: plugin.selinux_relabel(),
                        },
                    );
                }
                Err(e) => {
                    if let Some(previous) = state.set_up.get(&volume.name) {
                        warn!(pod = %pod_ref, plugin = plugin.name(), error = %e, "volume not refreshed; its last contents stay in use");
                        result.refresh_failures.push(e.to_string());
                        result.volumes.insert(volume.name.clone(), previous.clone());
                    } else {
                        warn!(pod = %pod_ref, plugin = plugin.name(), error = %e, "volume not set up");
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        let own_groups: Vec<i64> = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|sc| sc.supplemental_groups.clone())
            .unwrap_or_default();
        result.supplemental_groups.sort_unstable();
        result.supplemental_groups.dedup();
        result
            .supplemental_groups
            .retain(|g| !own_groups.contains(g));
        // What was set up stays known even when another volume failed: its next
        // refresh failure must not take it away either.
        state
            .set_up
            .extend(result.volumes.iter().map(|(n, v)| (n.clone(), v.clone())));
        match first_error {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }

    /// The raw block volumes `container` lists in `volumeDevices`, as devices for the
    /// runtime (upstream `makeBlockVolumes`: `mrw`, or `r` for a read-only volume).
    ///
    /// # Errors
    ///
    /// A listed volume the pod does not have, or one that is no block volume.
    pub fn container_devices(
        &self,
        container: &Container,
        volumes: &PodVolumes,
    ) -> Result<Vec<kubelet_core::Device>> {
        let fail = |reason: String| Error::ContainerMounts {
            container: container.name.clone(),
            reason,
        };
        let mut devices = Vec::new();
        for device in container.volume_devices.iter().flatten() {
            let Some(volume) = volumes.volumes.get(&device.name) else {
                return Err(fail(format!(
                    "cannot find volume {} to pass into container {}",
                    go_quote(&device.name),
                    go_quote(&container.name)
                )));
            };
            if !volume.mounted.block {
                return Err(fail(format!(
                    "volume {} is not a block volume and cannot be in volumeDevices",
                    go_quote(&device.name)
                )));
            }
            devices.push(kubelet_core::Device {
                container_path: device.device_path.clone(),
                host_path: volume.mounted.host_path.to_string_lossy().into_owned(),
                permissions: if volume.mounted.read_only { "r" } else { "mrw" }.to_owned(),
            });
        }
        Ok(devices)
    }

    /// The CRI mounts of `container`, as upstream `makeMounts` makes them (without the
    /// hosts file and termination log, which the pod manager adds): each `volumeMount`
    /// of a volume in `volumes`, read-only when the mount or the volume is, with its
    /// propagation, relabelled for SELinux when the volume's plugin asks for it.
    ///
    /// A `subPath` (or `subPathExpr`, expanded with `env`, the container's environment)
    /// must be relative and without `..`; it is created if missing, checked to stay in
    /// the volume without following symlinks, and bind-mounted under
    /// `<pod>/volume-subpaths/<volume>/<container>/<index>`, the path handed to the
    /// runtime. Errors carry upstream's messages.
    pub async fn container_mounts(
        &self,
        pod: &Pod,
        container: &Container,
        volumes: &PodVolumes,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>> {
        let pod_ref = PodRef::of(pod);
        let pod_dir = self.pod_dir(&pod_ref.uid)?;
        let lock = self.pod_lock(&pod_ref.uid);
        let _guard = lock.lock().await;
        let fail = |reason: String| Error::ContainerMounts {
            container: container.name.clone(),
            reason,
        };
        let privileged = container
            .security_context
            .as_ref()
            .and_then(|sc| sc.privileged)
            .unwrap_or(false);
        let mut mounts = Vec::new();
        for (index, volume_mount) in container.volume_mounts.iter().flatten().enumerate() {
            let Some(volume) = volumes.volumes.get(&volume_mount.name) else {
                return Err(fail(format!(
                    "cannot find volume {} to mount into container {}",
                    go_quote(&volume_mount.name),
                    go_quote(&container.name)
                )));
            };
            let sub_path = sub_path(volume_mount, env).map_err(fail)?;
            resolve_recursive_read_only(volume_mount)
                .map_err(|e| fail(format!("failed to resolve recursive read-only mode: {e}")))?;
            let propagation = propagation(volume_mount, privileged).map_err(fail)?;

            let mut host_path = volume.mounted.host_path.clone();
            if !sub_path.is_empty() {
                host_path = self
                    .prepare_sub_path(&pod_dir, &volume.mounted, &sub_path, &container.name, index)
                    .await
                    .map_err(|(what, detail)| {
                        // The details may describe the host: logs only, as upstream.
                        warn!(pod = %pod_ref, container = %container.name,
                            volume = %volume_mount.name, error = %detail, "subPath refused");
                        fail(format!(
                            "failed to {what} for volumeMount {} of container {}",
                            go_quote(&volume_mount.name),
                            go_quote(&container.name)
                        ))
                    })?;
            }
            let container_path = if volume_mount.mount_path.starts_with('/') {
                volume_mount.mount_path.clone()
            } else {
                sys::clean(Path::new(&format!("/{}", volume_mount.mount_path)))
                    .to_string_lossy()
                    .into_owned()
            };
            mounts.push(Mount {
                container_path,
                host_path: host_path.to_string_lossy().into_owned(),
                readonly: volume_mount.read_only == Some(true) || volume.mounted.read_only,
                selinux_relabel: volume.selinux_relabel,
                propagation,
            });
        }
        Ok(mounts)
    }

    /// Creates (if missing) and bind-mounts one subPath; the error is (what failed in
    /// upstream's words, the details).
    async fn prepare_sub_path(
        &self,
        pod_dir: &Path,
        volume: &MountedVolume,
        sub_path: &str,
        container: &str,
        index: usize,
    ) -> std::result::Result<PathBuf, (&'static str, String)> {
        let volume_path = volume.host_path.clone();
        let pod_dir = pod_dir.to_owned();
        let (sub_path, volume_name, container) = (
            sub_path.to_owned(),
            volume.name.clone(),
            container.to_owned(),
        );
        let prepared = tokio::task::spawn_blocking(move || {
            let full = volume_path.join(&sub_path);
            match fs::metadata(&full) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Created now, so that it gets the volume's mode rather than the
                    // runtime's 0755 (upstream).
                    let perm = fs::metadata(&volume_path)
                        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
                        .map_err(|e| ("create subPath directory", e.to_string()))?;
                    sys::safe_make_dir(Path::new(&sub_path), &volume_path, perm)
                        .map_err(|e| ("create subPath directory", e))?;
                }
                Err(e) => {
                    warn!(path = %full.display(), error = %e,
                        "could not determine if subPath exists; not creating it");
                }
            }
            subpath::prepare(&Subpath {
                volume_mount_index: index,
                path: full,
                volume_name: &volume_name,
                volume_path,
                pod_dir,
                container_name: &container,
            })
            .map_err(|e| ("prepare subPath", e))
        })
        .await;
        prepared.unwrap_or_else(|e| Err(("prepare subPath", e.to_string())))
    }

    /// Tears down every volume of pod `pod_uid`, whose containers must all be gone:
    /// unmounts its subPath bind mounts and tmpfs volumes, removes
    /// `<pod>/volumes` and `<pod>/volume-subpaths`, and forgets its tokens. The volumes
    /// are found on disk, so this also works for a pod known only from a previous run.
    ///
    /// Symlinks are never followed, and nothing is removed through a mount point that
    /// could not be unmounted: that is reported, and the rest is still torn down.
    pub async fn tear_down_pod(&self, pod_uid: &str) -> Result<()> {
        let pod_dir = self.pod_dir(pod_uid)?;
        let lock = self.pod_lock(pod_uid);
        let mut guard = lock.lock().await;
        let torn_down = self.tear_down_locked(pod_uid, &pod_dir, &mut guard).await;
        drop(guard);
        self.forget_lock(pod_uid, &lock);
        torn_down
    }

    /// Forgets a pod's lock unless another operation on the pod waits for it.
    fn forget_lock(&self, pod_uid: &str, lock: &Arc<tokio::sync::Mutex<PodState>>) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if Arc::strong_count(lock) <= 2 {
            locks.remove(pod_uid);
        }
    }

    /// [`VolumeManager::tear_down_pod`] with the pod's lock held.
    async fn tear_down_locked(
        &self,
        pod_uid: &str,
        pod_dir: &Path,
        state: &mut PodState,
    ) -> Result<()> {
        *state = PodState::default();
        let mut failures = {
            let pod_dir = pod_dir.to_owned();
            blocking(move || Ok(subpath::clean_all(&pod_dir))).await?
        };
        let volumes_dir = pod_dir.join("volumes");
        let listed = {
            let volumes_dir = volumes_dir.clone();
            blocking(move || Ok(list_volume_dirs(&volumes_dir))).await?
        };
        for entry in listed {
            match entry {
                Err(failure) => failures.push(failure),
                Ok((plugin_dir, volume_names)) => {
                    let Some(plugin) = self
                        .plugins
                        .iter()
                        .find(|p| escape_plugin_name(p.name()) == plugin_dir)
                    else {
                        failures.push(format!(
                            "no volume plugin for {}",
                            volumes_dir.join(&plugin_dir).display()
                        ));
                        continue;
                    };
                    for name in volume_names {
                        debug!(pod_uid, plugin = plugin.name(), volume = %name, "tearing down volume");
                        if let Err(e) = plugin.tear_down(&name, &volumes_dir).await {
                            failures.push(format!(
                                "UnmountVolume.TearDown failed for volume {} : {}",
                                go_quote(&name),
                                plugin_reason(&e)
                            ));
                        }
                    }
                }
            }
        }
        let (leftover, cleanup_failures) = {
            let (pod_dir, volumes_dir) = (pod_dir.to_owned(), volumes_dir.clone());
            blocking(move || Ok(remove_volume_skeleton(&pod_dir, &volumes_dir))).await?
        };
        failures.extend(cleanup_failures);
        if leftover && failures.is_empty() {
            failures.push(format!("{} is not empty", volumes_dir.display()));
        }
        self.tokens.forget_pod(pod_uid);
        if failures.is_empty() {
            info!(pod_uid, "volumes torn down");
            Ok(())
        } else {
            Err(Error::TearDown {
                pod_uid: pod_uid.to_owned(),
                reasons: failures,
            })
        }
    }

    /// Removes the directories of the pods under `pods_dir` whose UIDs are not in
    /// `active` (what a previous run left), as upstream `cleanupOrphanedPodDirs`: their
    /// volumes are torn down first ([`VolumeManager::tear_down_pod`]), and a pod
    /// directory is removed only when that succeeded. Call it once every pod source has
    /// reported, with the UIDs of all pods known from the sources and the runtime.
    pub async fn clean_up_orphans(&self, active: &HashSet<String>) -> Result<()> {
        let pods_dir = self.pods_dir.clone();
        let found = blocking(move || match fs::read_dir(&pods_dir) {
            Ok(entries) => Ok(entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect::<Vec<_>>()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("reading", pods_dir, e)),
        })
        .await?;
        let mut failures = Vec::new();
        for uid in found.into_iter().filter(|uid| !active.contains(uid)) {
            let pod_dir = self.pod_dir(&uid)?;
            let lock = self.pod_lock(&uid);
            let mut state = lock.lock().await;
            // `active` may predate a pod that came since and is being set up: its
            // directory is not an orphan's. The lock is held until the directory is
            // gone, so a set-up starting meanwhile waits and then starts afresh.
            if state.attempted {
                debug!(pod_uid = %uid, "not an orphan: set up since the list of live pods");
                continue;
            }
            info!(pod_uid = %uid, "orphaned pod found, removing");
            let torn_down = self.tear_down_locked(&uid, &pod_dir, &mut state).await;
            let removed = match torn_down {
                Ok(()) => blocking(move || Ok(remove_pod_dir(&pod_dir))).await?,
                Err(e) => vec![e.to_string()],
            };
            drop(state);
            self.forget_lock(&uid, &lock);
            failures.extend(
                removed
                    .into_iter()
                    .map(|f| format!("orphaned pod {uid:?}: {f}")),
            );
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Orphans { reasons: failures })
        }
    }

    /// A token of `pod`'s service account for `audience`, from the token cache the
    /// projected volumes use (upstream's token manager: renewed at 80% of its
    /// lifetime, forgotten with the pod); for image credential providers in token mode.
    pub async fn service_account_token(
        &self,
        pod: &Pod,
        audience: &str,
        expiration_seconds: i64,
    ) -> Result<String> {
        self.tokens
            .token(pod, Some(audience), expiration_seconds)
            .await
    }

    #[cfg(test)]
    pub(crate) fn tokens(&self) -> &TokenManager {
        &self.tokens
    }
}

/// `volumes/<plugin dir>/<volume>` on disk: for each plugin directory, its volume
/// names, or why it cannot be read.
fn list_volume_dirs(volumes_dir: &Path) -> Vec<std::result::Result<(String, Vec<String>), String>> {
    let read = |dir: &Path| -> std::result::Result<Vec<(String, bool)>, String> {
        match fs::read_dir(dir) {
            Ok(entries) => Ok(entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                    (e.file_name().to_string_lossy().into_owned(), is_dir)
                })
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("error reading {}: {e}", dir.display())),
        }
    };
    let plugins = match read(volumes_dir) {
        Ok(plugins) => plugins,
        Err(e) => return vec![Err(e)],
    };
    plugins
        .into_iter()
        .map(|(plugin, is_dir)| {
            let path = volumes_dir.join(&plugin);
            if !is_dir {
                return Err(format!("unexpected entry {}", path.display()));
            }
            read(&path).map(|volumes| (plugin, volumes.into_iter().map(|(n, _)| n).collect()))
        })
        .collect()
}

/// Removes the emptied plugin directories, `volumes`, and stale `ready` markers;
/// returns whether `volumes` is still there, and what could not be removed.
fn remove_volume_skeleton(pod_dir: &Path, volumes_dir: &Path) -> (bool, Vec<String>) {
    let mut failures = Vec::new();
    if let Ok(entries) = fs::read_dir(volumes_dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if let Err(e) = sys::remove_if_empty(&entry.path()) {
                failures.push(e.to_string());
            }
        }
    }
    if let Err(e) = sys::remove_if_empty(volumes_dir) {
        failures.push(e.to_string());
    }
    // Markers of volumes that are gone (the volumes themselves removed them if present).
    let markers = pod_dir
        .join("plugins")
        .join(escape_plugin_name(empty_dir::PLUGIN_NAME));
    if fs::symlink_metadata(volumes_dir).is_err()
        && let Err(e) = sys::remove_all(&markers)
    {
        failures.push(e.to_string());
    }
    if let Err(e) = sys::remove_if_empty(&pod_dir.join("plugins")) {
        failures.push(e.to_string());
    }
    (fs::symlink_metadata(volumes_dir).is_ok(), failures)
}

/// Removes what is left of an orphaned pod's directory once its volumes are torn down
/// (upstream: every subdirectory but `volumes` on one filesystem, then the directory).
fn remove_pod_dir(pod_dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    let entries = match fs::read_dir(pod_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return failures,
        Err(e) => return vec![format!("error reading {}: {e}", pod_dir.display())],
    };
    for entry in entries.filter_map(|e| e.ok()) {
        if entry.file_name() == "volumes" {
            failures.push(format!(
                "volumes subdir {} was found after it was removed",
                entry.path().display()
            ));
            continue;
        }
        if let Err(e) = sys::remove_all(&entry.path()) {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty()
        && let Err(e) = fs::remove_dir(pod_dir)
    {
        failures.push(format!("removing {}: {e}", pod_dir.display()));
    }
    failures
}

/// The subPath of a volume mount: `subPathExpr` expanded with `env` (every referenced
/// variable must be set and non-empty), or `subPath`; relative and without `..`.
fn sub_path(
    volume_mount: &VolumeMount,
    env: &[(String, String)],
) -> std::result::Result<String, String> {
    let expr = volume_mount.sub_path_expr.as_deref().unwrap_or_default();
    let sub_path = if expr.is_empty() {
        volume_mount.sub_path.clone().unwrap_or_default()
    } else {
        let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let expanded = expand(expr, |name| match vars.get(name) {
            Some(value) if !value.is_empty() => Some((*value).to_owned()),
            _ => {
                missing.borrow_mut().insert(name.to_owned());
                Some(String::new())
            }
        });
        let missing = missing.into_inner();
        if !missing.is_empty() {
            return Err(format!(
                "missing value for {}",
                missing.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        expanded
    };
    if sub_path.is_empty() {
        return Ok(sub_path);
    }
    if sub_path.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        ));
    }
    if sub_path.split('/').any(|part| part == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        ));
    }
    Ok(sub_path)
}

/// Upstream `translateMountPropagation`, plus the API's rule that only privileged
/// containers may use `Bidirectional`.
fn propagation(
    volume_mount: &VolumeMount,
    privileged: bool,
) -> std::result::Result<MountPropagation, String> {
    match volume_mount.mount_propagation.as_deref() {
        None | Some("None") => Ok(MountPropagation::Private),
        Some("HostToContainer") => Ok(MountPropagation::HostToContainer),
        Some("Bidirectional") if privileged => Ok(MountPropagation::Bidirectional),
        Some("Bidirectional") => Err(
            "Bidirectional mount propagation is available only to privileged containers".to_owned(),
        ),
        Some(other) => Err(format!(
            "invalid MountPropagation mode: {}",
            go_quote(other)
        )),
    }
}

/// Upstream `resolveRecursiveReadOnly` for a runtime without recursive read-only
/// mounts (the CRI mounts handed to the runtime have no such field yet): `IfPossible`
/// falls back to a plain read-only mount, `Enabled` is refused.
fn resolve_recursive_read_only(m: &VolumeMount) -> std::result::Result<(), String> {
    let mode = match m.recursive_read_only.as_deref() {
        None | Some("Disabled") => return Ok(()),
        Some(mode) => mode,
    };
    if m.read_only != Some(true) {
        return Err(format!(
            "volume {} requested recursive read-only mode, but it is not read-only",
            go_quote(&m.name)
        ));
    }
    if let Some(p) = m.mount_propagation.as_deref().filter(|p| *p != "None") {
        return Err(format!(
            "volume {} requested recursive read-only mode, but it is not compatible with propagation {}",
            go_quote(&m.name),
            go_quote(p)
        ));
    }
    match mode {
        "IfPossible" => Ok(()),
        "Enabled" => Err(format!(
            "volume {} requested recursive read-only mode, but it is not supported by the runtime",
            go_quote(&m.name)
        )),
        other => Err(format!(
            "unknown recursive read-only mode {}",
            go_quote(other)
        )),
    }
}

/// True when the volume names no source at all (only its name).
fn has_no_source(volume: &Volume) -> bool {
    match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().all(|k| k == "name"),
        _ => false,
    }
}
