//! emptyDir (upstream `pkg/volume/emptydir`), which configMap, secret, downwardAPI and
//! projected volumes also wrap for their directory.
//!
//! A directory with mode 0777 in the pod's volume directory, or with `medium: Memory` a
//! tmpfs mounted there, sized by [`memory_size`]. Once set up, a `ready` file in
//! `<pod>/plugins/kubernetes.io~empty-dir/<volume>/` marks it done, so later syncs (and
//! a restarted kubelet) only check that the directory exists, or that a mount is still
//! on it, instead of setting it up again.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, ResourceRequirements, Volume};
use kubelet_core::{MountedVolume, QosClass, Quantity, VolumePlugin};
use tracing::{debug, warn};

use super::{SharedNode, blocking, check_volume_name, pod_dir, pod_fs_group, volume_path};
use crate::error::{Error, Result};
use crate::ownership::set_volume_ownership;
use crate::sys;

/// Upstream plugin name.
pub(crate) const PLUGIN_NAME: &str = "kubernetes.io/empty-dir";
const PERM: u32 = 0o777;
const READY_FILE: &str = "ready";

/// Where an emptyDir keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Medium {
    /// The node's disk (`medium: ""`).
    Default,
    /// A tmpfs (`medium: Memory`).
    Memory,
    /// Huge pages (`medium: HugePages`, `HugePages-<size>`): not supported here.
    HugePages,
    /// Anything else.
    Unknown(String),
}

impl Medium {
    pub(crate) fn parse(medium: Option<&str>) -> Self {
        match medium.unwrap_or_default() {
            "" => Self::Default,
            "Memory" => Self::Memory,
            m if m == "HugePages" || m.starts_with("HugePages-") => Self::HugePages,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// The `ready` marker directory of an emptyDir (or of the emptyDir another plugin
/// wraps, named `wrapped_<volume>` as upstream names it).
pub(crate) fn ready_dir(pod_volume_dir: &Path, name: &str) -> PathBuf {
    pod_dir(pod_volume_dir)
        .join("plugins")
        .join(super::escape_plugin_name(PLUGIN_NAME))
        .join(name)
}

/// Sets up an emptyDir at `dir` (upstream `emptyDir.SetUpAt`); blocking.
pub(crate) fn set_up_at(
    dir: &Path,
    ready: &Path,
    medium: &Medium,
    size: Option<i64>,
    fs_group: Option<i64>,
) -> Result<()> {
    if is_ready(ready) {
        match medium {
            Medium::Memory if sys::mount_at(dir)?.is_some() => return Ok(()),
            Medium::Default if fs::metadata(dir).is_ok() => return Ok(()),
            Medium::Default => {
                warn!(ready = %ready.display(), dir = %dir.display(),
                    "volume ready file exists but the volume directory does not; removing the ready dir");
                if let Err(e) = sys::remove_all(ready) {
                    warn!(error = %e, "removing the ready dir");
                }
            }
            _ => {}
        }
    }
    let result = match medium {
        Medium::Default => setup_dir(dir),
        Medium::Memory => setup_tmpfs(dir, size),
        Medium::HugePages => Err(Error::Invalid(
            "hugePages storage medium is not supported".to_owned(),
        )),
        Medium::Unknown(m) => Err(Error::Invalid(format!("unknown storage medium {m:?}"))),
    };
    // Upstream ignores ownership errors here.
    if let Err(e) = set_volume_ownership(dir, fs_group, false) {
        warn!(dir = %dir.display(), error = %e, "setting the volume ownership");
    }
    result?;
    set_ready(ready)
}

/// Tears down an emptyDir at `dir` (upstream `emptyDir.TearDownAt`): the marker, then
/// the tmpfs if one is mounted there, then the directory; blocking.
pub(crate) fn tear_down_at(dir: &Path, ready: &Path) -> Result<()> {
    sys::remove_all(ready).map_err(|e| {
        Error::Invalid(format!(
            "failed to remove ready dir [{}]: {e}",
            ready.display()
        ))
    })?;
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            debug!(dir = %dir.display(), "unmount skipped because path does not exist");
            return Ok(());
        }
        Err(e) => return Err(Error::io("inspecting", dir, e)),
        Ok(_) => {}
    }
    if let Some(mount) = sys::mount_at(dir)?
        && (mount.fs_type == "tmpfs" || mount.fs_type == "hugetlbfs")
    {
        sys::unmount_all(dir)?;
    }
    // Refuses (and reports) anything still mounted at or below `dir`.
    sys::remove_all(dir)
}

pub(crate) fn is_ready(ready: &Path) -> bool {
    fs::metadata(ready.join(READY_FILE)).is_ok_and(|m| m.is_file())
}

fn set_ready(ready: &Path) -> Result<()> {
    sys::mkdir_all(ready, 0o750)?;
    let file = ready.join(READY_FILE);
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&file)
        .map(drop)
        .map_err(|e| Error::io("creating", &file, e))
}

/// Creates `dir` with mode 0777 whatever the umask (upstream `setupDir`).
fn setup_dir(dir: &Path) -> Result<()> {
    sys::mkdir_all(dir, PERM)?;
    let meta = fs::symlink_metadata(dir).map_err(|e| Error::io("inspecting", dir, e))?;
    if meta.permissions().mode() & 0o777 != PERM {
        sys::chmod(dir, PERM)?;
        let mode = fs::symlink_metadata(dir)
            .map_err(|e| Error::io("inspecting", dir, e))?
            .permissions()
            .mode();
        if mode & 0o777 != PERM {
            warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777),
                "expected directory permissions 0777");
        }
    }
    Ok(())
}

fn setup_tmpfs(dir: &Path, size: Option<i64>) -> Result<()> {
    setup_dir(dir)?;
    if sys::mount_at(dir)?.is_some_and(|m| m.fs_type == "tmpfs") {
        return Ok(());
    }
    debug!(dir = %dir.display(), size, "mounting tmpfs");
    sys::mount_tmpfs(dir, size)
}

/// The size of a memory-backed emptyDir (upstream `calculateEmptyDirMemorySize`): the
/// node's allocatable memory, or the pod's memory limit when the pod has one no larger,
/// or the volume's `sizeLimit` when no larger than either. An unknown (zero) allocatable
/// counts as unlimited; `None` leaves the kernel's default (half the RAM).
pub(crate) fn memory_size(
    allocatable_memory: u64,
    size_limit: Option<&Quantity>,
    pod: &Pod,
) -> Option<i64> {
    let unlimited = Quantity::from_value(i64::MAX.unsigned_abs());
    let mut size = if allocatable_memory == 0 {
        unlimited
    } else {
        Quantity::from_value(allocatable_memory)
    };
    if let Some(pod_limit) = pod_memory_limit(pod)
        && pod_limit > Quantity::ZERO
        && pod_limit <= size
    {
        size = pod_limit;
    }
    if let Some(limit) = size_limit
        && *limit > Quantity::ZERO
        && *limit <= size
    {
        size = *limit;
    }
    (size != unlimited).then(|| size.value())
}

/// The memory limit of the pod's cgroup, as upstream `ResourceConfigForPod`: set for
/// Guaranteed pods, and for Burstable pods when every container (init containers too)
/// or the pod itself has a memory limit; the sum of the regular containers' and
/// sidecars' limits or the largest init container's, whichever is larger, or the
/// pod-level limit, plus the pod overhead.
pub(crate) fn pod_memory_limit(pod: &Pod) -> Option<Quantity> {
    let spec = pod.spec.as_ref()?;
    let qos = kubelet_core::pod_qos(pod);
    if qos == QosClass::BestEffort {
        return None;
    }
    let memory_limit = |r: Option<&ResourceRequirements>| -> Option<Quantity> {
        r.and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .and_then(|q| Quantity::try_from(q).ok())
    };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let mut declared = init
        .iter()
        .chain(&spec.containers)
        .all(|c| memory_limit(c.resources.as_ref()).is_some_and(|q| !q.is_zero()));

    let mut sum: Option<Quantity> = None;
    let add = |acc: Option<Quantity>, q: Option<Quantity>| match (acc, q) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    };
    for c in &spec.containers {
        sum = add(sum, memory_limit(c.resources.as_ref()));
    }
    let mut sidecars: Option<Quantity> = None;
    let mut init_max: Option<Quantity> = None;
    for c in init {
        let own = memory_limit(c.resources.as_ref());
        let usage = if c.restart_policy.as_deref() == Some("Always") {
            sum = add(sum, own);
            sidecars = add(sidecars, own);
            sidecars
        } else {
            add(own, sidecars)
        };
        init_max = match (init_max, usage) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let mut limit = match (sum, init_max) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let pod_resources = spec.resources.as_ref();
    let pod_level_set = pod_resources.is_some_and(|r| {
        r.requests
            .iter()
            .chain(r.limits.iter())
            .flat_map(|l| l.keys())
            .any(|k| k == "cpu" || k == "memory" || k.starts_with("hugepages-"))
    });
    if pod_level_set && let Some(pod_limit) = memory_limit(pod_resources) {
        limit = Some(pod_limit);
        if !pod_limit.is_zero() {
            declared = true;
        }
    }
    if let Some(overhead) = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get("memory"))
        .and_then(|q| Quantity::try_from(q).ok())
        && let Some(l) = limit.filter(|l| !l.is_zero())
    {
        limit = Some(l.saturating_add(overhead));
    }
    match qos {
        QosClass::Guaranteed => Some(limit.unwrap_or(Quantity::ZERO)),
        _ if declared => Some(limit.unwrap_or(Quantity::ZERO)),
        _ => None,
    }
}

/// The emptyDir plugin.
pub(crate) struct EmptyDirPlugin {
    pub(crate) node: SharedNode,
}

#[async_trait]
impl VolumePlugin for EmptyDirPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    fn supports(&self, volume: &Volume) -> bool {
        volume.empty_dir.is_some()
    }

    fn selinux_relabel(&self) -> bool {
        true
    }

    async fn set_up(
        &self,
        pod: &Pod,
        volume: &Volume,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<MountedVolume> {
        let name = volume.name.clone();
        let fail = |e: Error| e.for_volume(&volume.name);
        check_volume_name(&name).map_err(fail)?;
        let source = volume.empty_dir.clone().unwrap_or_default();
        let medium = Medium::parse(source.medium.as_deref());
        let size = match medium {
            Medium::Memory => {
                let size_limit = source
                    .size_limit
                    .as_ref()
                    .map(Quantity::try_from)
                    .transpose()
                    .map_err(|e| fail(Error::Invalid(e.to_string())))?;
                memory_size(self.node.get().memory, size_limit.as_ref(), pod)
            }
            _ => None,
        };
        let dir = volume_path(pod_volume_dir, PLUGIN_NAME, &name);
        let ready = ready_dir(pod_volume_dir, &name);
        let fs_group = pod_fs_group(pod);
        let host_path = dir.clone();
        blocking(move || set_up_at(&dir, &ready, &medium, size, fs_group))
            .await
            .map_err(fail)?;
        Ok(MountedVolume {
            name,
            host_path,
            read_only: false,
            block: false,
        })
    }

    async fn tear_down(
        &self,
        volume_name: &str,
        pod_volume_dir: &Path,
    ) -> kubelet_core::Result<()> {
        check_volume_name(volume_name).map_err(|e| e.for_volume(volume_name))?;
        let dir = volume_path(pod_volume_dir, PLUGIN_NAME, volume_name);
        let ready = ready_dir(pod_volume_dir, volume_name);
        blocking(move || tear_down_at(&dir, &ready))
            .await
            .map_err(|e| e.for_volume(volume_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
    use std::collections::BTreeMap;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).expect("quantity")
    }

    fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let list = |items: &[(&str, &str)]| {
            (!items.is_empty()).then(|| {
                items
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ApiQuantity((*v).to_owned())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn memory_size_as_upstream_calculate_empty_dir_memory_size() {
        let guaranteed = pod(vec![
            container(
                "a",
                &[("cpu", "1"), ("memory", "1Gi")],
                &[("cpu", "1"), ("memory", "1Gi")],
            ),
            container(
                "b",
                &[("cpu", "1"), ("memory", "2Gi")],
                &[("cpu", "1"), ("memory", "2Gi")],
            ),
        ]);
        let node = 16 << 30;
        // The pod's limit (3Gi) is below the node's allocatable.
        assert_eq!(memory_size(node, None, &guaranteed), Some(3 << 30));
        // A smaller sizeLimit wins; a larger one does not.
        assert_eq!(
            memory_size(node, Some(&q("1Gi")), &guaranteed),
            Some(1 << 30)
        );
        assert_eq!(
            memory_size(node, Some(&q("4Gi")), &guaranteed),
            Some(3 << 30)
        );
        // Burstable with a container lacking a memory limit: node allocatable.
        let burstable = pod(vec![
            container("a", &[], &[("memory", "1Gi")]),
            container("b", &[("cpu", "1")], &[]),
        ]);
        assert_eq!(pod_memory_limit(&burstable), None);
        assert_eq!(memory_size(node, None, &burstable), Some(16 << 30));
        // Burstable where every container has a memory limit: their sum.
        let limited = pod(vec![
            container("a", &[("memory", "100Mi")], &[("memory", "1Gi")]),
            container("b", &[], &[("memory", "1Gi")]),
        ]);
        assert_eq!(memory_size(node, None, &limited), Some(2 << 30));
        // BestEffort: node allocatable, or the kernel default when it is unknown.
        let best_effort = pod(vec![container("a", &[], &[])]);
        assert_eq!(memory_size(node, None, &best_effort), Some(16 << 30));
        assert_eq!(memory_size(0, None, &best_effort), None);
        assert_eq!(
            memory_size(0, Some(&q("64Mi")), &best_effort),
            Some(64 << 20)
        );
    }

    #[test]
    fn init_containers_and_sidecars_count_like_upstream() {
        let mut p = pod(vec![container("app", &[], &[("memory", "1Gi")])]);
        let mut sidecar = container("side", &[], &[("memory", "512Mi")]);
        sidecar.restart_policy = Some("Always".into());
        let init = container("init", &[], &[("memory", "3Gi")]);
        if let Some(spec) = p.spec.as_mut() {
            spec.init_containers = Some(vec![sidecar, init]);
        }
        // max(app + sidecar = 1.5Gi, init + sidecar = 3.5Gi)
        assert_eq!(pod_memory_limit(&p), Some(q("3.5Gi")));
    }

    #[test]
    fn media_parse() {
        assert_eq!(Medium::parse(None), Medium::Default);
        assert_eq!(Medium::parse(Some("Memory")), Medium::Memory);
        assert_eq!(Medium::parse(Some("HugePages-2Mi")), Medium::HugePages);
        assert_eq!(Medium::parse(Some("Tape")), Medium::Unknown("Tape".into()));
    }

    #[test]
    fn disk_empty_dir_is_0777_marked_ready_and_torn_down() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("volumes/kubernetes.io~empty-dir/data");
        let ready = root.path().join("plugins/kubernetes.io~empty-dir/data");
        set_up_at(&dir, &ready, &Medium::Default, None, None).expect("set up");
        assert_eq!(
            fs::metadata(&dir).expect("dir").permissions().mode() & 0o777,
            0o777
        );
        assert!(is_ready(&ready));
        // Once ready, a set-up does not touch the directory again.
        sys::chmod(&dir, 0o700).expect("chmod");
        set_up_at(&dir, &ready, &Medium::Default, None, None).expect("again");
        assert_eq!(
            fs::metadata(&dir).expect("dir").permissions().mode() & 0o777,
            0o700
        );
        fs::write(dir.join("f"), b"x").expect("write");
        tear_down_at(&dir, &ready).expect("tear down");
        assert!(!dir.exists());
        assert!(!ready.exists());
        tear_down_at(&dir, &ready).expect("idempotent");
    }

    #[test]
    fn hugepages_and_unknown_media_are_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("v");
        let ready = root.path().join("r");
        let err = set_up_at(&dir, &ready, &Medium::HugePages, None, None).expect_err("refused");
        assert_eq!(err.to_string(), "hugePages storage medium is not supported");
        let err = set_up_at(&dir, &ready, &Medium::Unknown("Tape".into()), None, None)
            .expect_err("refused");
        assert_eq!(err.to_string(), "unknown storage medium \"Tape\"");
        assert!(!is_ready(&ready));
    }

    #[test]
    fn memory_empty_dir_mounts_tmpfs_once_and_unmounts() {
        if !nix::unistd::geteuid().is_root() {
            return kubelet_test_support::skip(
                "memory_empty_dir_mounts_tmpfs_once_and_unmounts",
                "mounting tmpfs needs root",
            );
        }
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("volumes/kubernetes.io~empty-dir/mem");
        let ready = root.path().join("plugins/kubernetes.io~empty-dir/mem");
        set_up_at(&dir, &ready, &Medium::Memory, Some(1 << 20), None).expect("set up");
        let mounted = |dir: &Path| {
            sys::mounts()
                .expect("mounts")
                .iter()
                .filter(|m| m.mount_point == sys::real_path(dir))
                .count()
        };
        assert_eq!(mounted(&dir), 1);
        assert_eq!(
            sys::mount_at(&dir).expect("mounts").map(|m| m.fs_type),
            Some("tmpfs".into())
        );
        // Set up again (as after a kubelet restart): not mounted a second time.
        set_up_at(&dir, &ready, &Medium::Memory, Some(1 << 20), None).expect("again");
        assert_eq!(mounted(&dir), 1);
        fs::write(dir.join("f"), b"x").expect("write");
        tear_down_at(&dir, &ready).expect("tear down");
        assert_eq!(mounted(&dir), 0);
        assert!(!dir.exists());
    }
}
