//! Pod volumes: the extension point one volume type implements.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};

use crate::{Error, Result};

/// Where a set-up volume lives on the host, ready to be bind-mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedVolume {
    /// The volume's name in the pod spec.
    pub name: String,
    /// Host path to bind-mount (a directory or, for hostPath, possibly a file).
    pub host_path: PathBuf,
    /// The volume can only be mounted read-only (e.g. configMap, secret).
    pub read_only: bool,
    /// A raw block volume (`volumeMode: Block`): `host_path` is a block device, given to
    /// containers that list it in `volumeDevices` as a device, never mounted.
    pub block: bool,
}

/// One volume type (emptyDir, hostPath, configMap, ...).
///
/// The volume manager calls `set_up` before the pod's containers start and again on
/// every sync of the running pod (so configMap and secret contents are refreshed), and
/// `tear_down` once the pod's containers are gone. Both must be idempotent, and `set_up`
/// cheap when nothing changed.
///
/// `pod_volume_dir` is the pod's `<root-dir>/pods/<pod uid>/volumes`. As upstream, a
/// plugin keeps each volume in `<pod_volume_dir>/<escaped plugin name>/<volume name>`,
/// the escaped name being [`VolumePlugin::name`] with `/` replaced by `~`
/// (`kubernetes.io~empty-dir`): that is how volumes are found again after a restart,
/// when only the directory names are known.
#[async_trait]
pub trait VolumePlugin: Send + Sync {
    /// Upstream plugin name, e.g. `kubernetes.io/empty-dir`.
    fn name(&self) -> &str;

    /// Whether this plugin handles the volume.
    fn supports(&self, volume: &Volume) -> bool;

    /// Whether the runtime should relabel this plugin's volumes for SELinux when it
    /// mounts them into a container (upstream's `Managed && SELinuxRelabel` volume
    /// attributes): true for directories the kubelet creates and owns, false (the
    /// default) for anything else, such as a host path.
    fn selinux_relabel(&self) -> bool {
        false
    }

    /// Creates or refreshes the volume for `pod` under `pod_volume_dir`.
    async fn set_up(
        &self,
        pod: &Pod,
        volume: &Volume,
        pod_volume_dir: &Path,
    ) -> Result<MountedVolume>;

    /// Removes what `set_up` created, knowing only the volume's name (the pod may be
    /// gone); removing a volume that does not exist succeeds.
    async fn tear_down(&self, volume_name: &str, pod_volume_dir: &Path) -> Result<()>;

    /// Whether this plugin handles `pv`, a PersistentVolume bound to a claim the pod
    /// uses (a `persistentVolumeClaim` or `ephemeral` volume). Plugins of inline volume
    /// types only keep the default, `false`.
    fn supports_persistent(&self, _pv: &PersistentVolume) -> bool {
        false
    }

    /// Sets up `pv` as the pod's volume `volume_name`, read-only when the pod's claim
    /// reference says so. As upstream, a PersistentVolume is kept under its own name:
    /// `<pod_volume_dir>/<escaped plugin name>/<pv name>`, the name
    /// [`VolumePlugin::tear_down`] gets back. Only called when
    /// [`VolumePlugin::supports_persistent`] said yes.
    async fn set_up_persistent(
        &self,
        pod: &Pod,
        volume_name: &str,
        pv: &PersistentVolume,
        read_only: bool,
        pod_volume_dir: &Path,
    ) -> Result<MountedVolume> {
        let _ = (pod, read_only, pod_volume_dir);
        Err(Error::Volume {
            volume: volume_name.to_owned(),
            reason: format!(
                "volume plugin {} does not support persistent volume {:?}",
                self.name(),
                pv.metadata.name.as_deref().unwrap_or_default()
            ),
            source: None,
        })
    }
}

const _: Option<&dyn VolumePlugin> = None;

/// The attachable and device-mountable volumes this node's pods use or are being given
/// (upstream's `VolumesInUse`), by upstream's unique volume name, e.g.
/// `kubernetes.io/csi/<driver>^<volume handle>`. The node agent reports them in the
/// Node's `status.volumesInUse`, which the attach/detach controller reads before it
/// detaches a volume.
#[async_trait]
pub trait VolumesInUse: Send + Sync {
    /// The unique names, sorted.
    async fn volumes_in_use(&self) -> Vec<String>;
}

const _: Option<&dyn VolumesInUse> = None;

/// The claim a pod's volume came from (`pvcRef` in the summary API).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClaimRef {
    /// The claim's namespace.
    pub namespace: String,
    /// The claim's name.
    pub name: String,
}

/// A pod volume's space and inodes as its plugin last measured them (a CSI driver's
/// `NodeGetVolumeStats`); fields the plugin did not report are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUsage {
    /// The pod's UID.
    pub pod_uid: String,
    /// The volume's name in the pod spec.
    pub volume: String,
    /// The claim, for a volume from a PersistentVolumeClaim.
    pub claim: Option<ClaimRef>,
    /// When it was measured.
    pub measured: SystemTime,
    /// Total bytes.
    pub capacity_bytes: Option<u64>,
    /// Bytes free.
    pub available_bytes: Option<u64>,
    /// Bytes used.
    pub used_bytes: Option<u64>,
    /// Total inodes.
    pub inodes: Option<u64>,
    /// Inodes free.
    pub inodes_free: Option<u64>,
    /// Inodes used.
    pub inodes_used: Option<u64>,
}

/// Volumes measured by their plugins (upstream's `MetricsProvider` of CSI volumes),
/// served from what was last measured: the summary API reports them with the pod.
pub trait MeasuredVolumes: Send + Sync {
    /// The last measurement of every volume the plugin measures.
    fn measured_volumes(&self) -> Vec<VolumeUsage>;
}

const _: Option<&dyn MeasuredVolumes> = None;

/// A service-account token from the TokenRequest API, bound to a pod.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountToken {
    /// The JWT.
    pub token: String,
    /// When the API server says it expires (`status.expirationTimestamp`).
    pub expiration: SystemTime,
}

impl std::fmt::Debug for ServiceAccountToken {
    // The token is a credential: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountToken")
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// ConfigMaps and Secrets by name: the one source of the objects a pod's volumes, its
/// environment and its image pull secrets are made of (in cluster mode a cache of the
/// objects this node's pods reference; the Node authorizer refuses the rest).
///
/// `Ok(None)` means the object does not exist (an `optional` reference tolerates that);
/// an error means it cannot be known now (no API server, not allowed, not yet synced).
#[async_trait]
pub trait ObjectSource: Send + Sync {
    /// The ConfigMap `namespace/name`.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>>;

    /// The Secret `namespace/name`.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>>;
}

const _: Option<&dyn ObjectSource> = None;

/// Where configMap, secret, token and persistent volumes come from: the
/// [`ObjectSource`], the TokenRequest API and the claims' volumes. An
/// `Arc<dyn VolumeSources>` converts to an `Arc<dyn ObjectSource>`.
#[async_trait]
pub trait VolumeSources: ObjectSource {
    /// A new token for the pod's service account (`spec.serviceAccountName`, default
    /// `default`), bound to the pod, from the TokenRequest API.
    async fn service_account_token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<ServiceAccountToken>;

    /// The PersistentVolumeClaim `namespace/name`, read from the API server when a pod
    /// that uses it is set up (as upstream, not cached: its binding is checked anew).
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>>;

    /// The PersistentVolume `name` a claim of a pod is bound to.
    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>>;
}

const _: Option<&dyn VolumeSources> = None;

/// No API server (standalone mode): configMap, secret and token volumes cannot be set
/// up, as upstream's standalone kubelet.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVolumeSources;

impl NoVolumeSources {
    fn unavailable(what: &str, namespace: &str, name: &str) -> Error {
        Error::Invalid {
            what: format!("{what} {namespace}/{name}"),
            reason: "no API server to read it from (standalone mode)".to_owned(),
        }
    }
}

#[async_trait]
impl ObjectSource for NoVolumeSources {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
        Err(Self::unavailable("configmap", namespace, name))
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        Err(Self::unavailable("secret", namespace, name))
    }
}

#[async_trait]
impl VolumeSources for NoVolumeSources {
    async fn service_account_token(
        &self,
        pod: &Pod,
        _audience: Option<&str>,
        _expiration_seconds: i64,
    ) -> Result<ServiceAccountToken> {
        let r = crate::PodRef::of(pod);
        Err(Self::unavailable(
            "service account token for pod",
            &r.namespace,
            &r.name,
        ))
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>> {
        Err(Self::unavailable("persistentvolumeclaim", namespace, name))
    }

    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>> {
        Err(Error::Invalid {
            what: format!("persistentvolume {name}"),
            reason: "no API server to read it from (standalone mode)".to_owned(),
        })
    }
}
