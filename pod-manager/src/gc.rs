//! Upstream's container garbage collector (`kuberuntime_gc.go`): the policy of the old
//! container instances each pod sync removes ([`ContainerGcPolicy`]) and its node-wide
//! limit, the legacy `/var/log/containers` symlinks of containers that are gone
//! (`legacy.go`), dead sandboxes a pod has replaced, and the log directories of pods
//! that are gone.
//!
//! The symlinks are made when a container starts and removed with it; the periodic
//! orphan clean-up also removes those whose log is gone, as upstream's GC does.
//!
//! Under disk pressure, [`ContainerGc::delete_all_unused_containers`] also removes what
//! finished pods left (upstream's `DeleteAllUnusedContainers`, the eviction manager's
//! first node reclaim).

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kubelet_core::labels::{
    CONTAINER_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL,
};
use kubelet_core::{
    Container, ContainerConfig, ContainerFilter, ContainerState, Runtime, SandboxConfig,
    SandboxFilter, SandboxState,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::kill::ManagerCommand;

use crate::status::RuntimeSnapshot;

/// Upstream's container GC policy (`GCPolicy`, from the deprecated flags
/// `--minimum-container-ttl-duration`, `--maximum-dead-containers-per-container` and
/// `--maximum-dead-containers`): which exited containers are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerGcPolicy {
    /// An exited container created less than this long ago is never removed.
    pub min_age: Duration,
    /// Exited instances kept per container of a pod (the newest); negative keeps all.
    pub max_per_pod_container: i32,
    /// Exited containers kept on the node in all; negative: no limit.
    pub max_containers: i32,
}

impl Default for ContainerGcPolicy {
    /// Upstream's defaults: no minimum age, one dead instance per container (for
    /// `lastState` and `kubectl logs --previous`), no node-wide limit.
    fn default() -> Self {
        Self {
            min_age: Duration::ZERO,
            max_per_pod_container: 1,
            max_containers: -1,
        }
    }
}

impl ContainerGcPolicy {
    /// Whether an exited container created at `created_nanos` may be removed at `now`.
    pub(crate) fn old_enough(&self, created_nanos: i64, now: SystemTime) -> bool {
        let created = SystemTime::UNIX_EPOCH
            + Duration::from_nanos(u64::try_from(created_nanos).unwrap_or(0));
        now.duration_since(created)
            .is_ok_and(|age| age >= self.min_age)
    }

    /// How many dead instances of one container of a pod stay (`None`: all).
    pub(crate) fn kept_per_container(&self) -> Option<usize> {
        usize::try_from(self.max_per_pod_container).ok()
    }
}

/// Upstream's node-wide `MaxContainers`: when more exited containers (old enough) than
/// the limit are on the node, each container of each pod keeps an equal share (at least
/// one), then the oldest go until the limit holds. Returns how many were removed.
pub(crate) async fn enforce_max_containers(
    runtime: &dyn Runtime,
    container_logs_dir: &Path,
    policy: ContainerGcPolicy,
    now: SystemTime,
) -> usize {
    let Ok(limit) = usize::try_from(policy.max_containers) else {
        return 0;
    };
    let containers = match runtime.list_containers(&ContainerFilter::default()).await {
        Ok(containers) => containers,
        Err(e) => {
            debug!(error = %e, "listing containers for the dead container limit");
            return 0;
        }
    };
    let mut units: std::collections::HashMap<(String, String), Vec<Container>> =
        std::collections::HashMap::new();
    for container in containers {
        let Some(uid) = container.labels.get(POD_UID_LABEL).cloned() else {
            continue;
        };
        if container.state == ContainerState::Running
            || !policy.old_enough(container.created_at, now)
        {
            continue;
        }
        units
            .entry((uid, container.metadata.name.clone()))
            .or_default()
            .push(container);
    }
    let total: usize = units.values().map(Vec::len).sum();
    if total <= limit {
        return 0;
    }
    let per_unit = (limit / units.len().max(1)).max(1);
    let mut doomed = Vec::new();
    let mut kept = Vec::new();
    for mut unit in units.into_values() {
        unit.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        let rest = unit.split_off(per_unit.min(unit.len()));
        doomed.extend(rest);
        kept.extend(unit);
    }
    if kept.len() > limit {
        kept.sort_by_key(|c| c.created_at);
        let excess = kept.len() - limit;
        doomed.extend(kept.drain(..excess));
    }
    let mut removed = 0;
    for container in doomed {
        match runtime.remove_container(&container.id).await {
            Ok(()) => removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                warn!(container = %container.id, error = %e, "removing a dead container over maximum-dead-containers");
                continue;
            }
        }
        remove_log_symlink(container_logs_dir, &container).await;
    }
    removed
}

/// Suffix of a container log symlink (upstream `legacyLogSuffix`).
const LOG_SUFFIX: &str = ".log";
/// Longest file name ext4 takes; upstream cuts symlink names to fit (`ext4MaxFileNameLen`).
const MAX_FILE_NAME_LEN: usize = 255;
/// Shortest container id prefix the runtime resolves, as upstream.
const MIN_CONTAINER_ID_LEN: usize = 6;
/// A pod log directory changed more recently than this is left for a later pass: the
/// known pods are taken before the directory is read, so a pod added in between may
/// already have made its directory but not be known yet.
const ORPHAN_LOG_DIR_MIN_AGE: Duration = Duration::from_secs(60);

/// Upstream's `logSymlink`: `<dir>/<pod>_<namespace>_<container>-<id>.log`, the name cut
/// (from the end, the container id first) to fit ext4's 255 bytes with the suffix.
pub(crate) fn log_symlink_path(
    dir: &Path,
    pod: &str,
    namespace: &str,
    container: &str,
    container_id: &str,
) -> PathBuf {
    let mut name = format!("{pod}_{namespace}_{container}-{container_id}");
    let mut max = MAX_FILE_NAME_LEN - LOG_SUFFIX.len();
    if name.len() > max {
        // Names are ASCII in practice; never split a character if one is not.
        while !name.is_char_boundary(max) {
            max -= 1;
        }
        name.truncate(max);
    }
    name.push_str(LOG_SUFFIX);
    dir.join(name)
}

/// Upstream's `getContainerIDFromLegacyLogSymlink`: what follows the last `-` of a
/// symlink's name, without the suffix; `None` when too short to name a container.
fn container_id_from_symlink(file_name: &str) -> Option<&str> {
    let id = file_name.rsplit('-').next()?.strip_suffix(LOG_SUFFIX)?;
    (id.len() >= MIN_CONTAINER_ID_LEN).then_some(id)
}

/// Links the log of the container `container_id`, just started, into `dir` (nothing
/// when `dir` is empty), as upstream's `startContainer` does for log collectors. A
/// failure is only logged: the container runs either way.
pub(crate) async fn create_log_symlink(
    dir: &Path,
    sandbox: &SandboxConfig,
    container: &ContainerConfig,
    container_id: &str,
) {
    if dir.as_os_str().is_empty() || container.log_path.is_empty() {
        return;
    }
    let log = Path::new(&sandbox.log_directory).join(&container.log_path);
    let link = log_symlink_path(
        dir,
        &sandbox.metadata.name,
        &sandbox.metadata.namespace,
        &container.metadata.name,
        container_id,
    );
    let dir = dir.to_owned();
    let span = tracing::Span::current();
    // One trip to the blocking pool: this is on the path from a container's start to
    // its Running status.
    let linked = tokio::task::spawn_blocking(move || {
        let _pod = span.enter();
        // As upstream: a runtime that logs elsewhere writes no file here, and a link to
        // nothing would only be removed again as dangling.
        if let Err(e) = std::fs::metadata(&log)
            && e.kind() == ErrorKind::NotFound
        {
            debug!(log = %log.display(), "no container log file, not linking it");
            return;
        }
        // Upstream makes the directory at start-up; here whoever links first makes it.
        if let Err(e) = std::fs::create_dir_all(&dir) {
            warn!(dir = %dir.display(), error = %e, "creating the container log symlink directory");
            return;
        }
        if let Err(e) = std::os::unix::fs::symlink(&log, &link) {
            warn!(link = %link.display(), log = %log.display(), error = %e, "creating a container log symlink");
        }
    })
    .await;
    if let Err(e) = linked {
        warn!(error = %e, "creating a container log symlink");
    }
}

/// Removes the log symlink of `container` (removed from the runtime) from `dir`;
/// nothing when `dir` is empty or the container lacks the kubelet's labels.
pub(crate) async fn remove_log_symlink(dir: &Path, container: &Container) {
    if dir.as_os_str().is_empty() {
        return;
    }
    let labels = &container.labels;
    let (Some(pod), Some(namespace)) =
        (labels.get(POD_NAME_LABEL), labels.get(POD_NAMESPACE_LABEL))
    else {
        return;
    };
    let name = labels
        .get(CONTAINER_NAME_LABEL)
        .unwrap_or(&container.metadata.name);
    let link = log_symlink_path(dir, pod, namespace, name, &container.id);
    remove_symlink(&link).await;
}

/// Unlinks `link` if it is a symlink (never what it points to); true when removed.
async fn remove_symlink(link: &Path) -> bool {
    match tokio::fs::symlink_metadata(link).await {
        Ok(meta) if meta.file_type().is_symlink() => {}
        Ok(_) => {
            // A file or directory someone else put there is not ours to remove.
            debug!(path = %link.display(), "not a symlink, leaving it");
            return false;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return false,
        Err(e) => {
            warn!(path = %link.display(), error = %e, "inspecting a container log symlink");
            return false;
        }
    }
    match tokio::fs::remove_file(link).await {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => {
            warn!(path = %link.display(), error = %e, "removing a container log symlink");
            false
        }
    }
}

/// Removes the `*.log` symlinks of `dir` whose target is gone, as upstream's
/// `evictPodLogsDirectories`: except those of a container that is not exited, whose
/// log may be missing only for the moment it is rotated. Regular files and links to
/// something that exists are left alone.
pub(crate) async fn remove_dangling_log_symlinks(runtime: &dyn Runtime, dir: &Path) {
    if dir.as_os_str().is_empty() {
        return;
    }
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "reading the container log symlinks");
            return;
        }
    };
    loop {
        let entry = match entries.next_entry().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "reading the container log symlinks");
                break;
            }
        };
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().filter(|n| n.ends_with(LOG_SUFFIX)) else {
            continue;
        };
        // The entry's own type: a directory entry's file type does not follow links.
        if !entry.file_type().await.is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        let path = entry.path();
        // Following the link only to learn whether its target still exists.
        match tokio::fs::metadata(&path).await {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            _ => continue,
        }
        if let Some(id) = container_id_from_symlink(name) {
            match runtime.container_status(id).await {
                Ok(status) if status.container.state != ContainerState::Exited => {
                    debug!(path = %path.display(), container = id, "container not exited, keeping its log symlink");
                    continue;
                }
                Ok(_) => {}
                // As upstream: a container the runtime cannot tell about (removed, or a
                // prefix cut too short by a long name) no longer needs its link.
                Err(e) => {
                    debug!(container = id, error = %e, "status of a dangling log symlink's container")
                }
            }
        }
        if remove_symlink(&path).await {
            debug!(path = %path.display(), "removed a dangling container log symlink");
        }
    }
}

/// Upstream's `parsePodUIDFromLogsDirectory` for `<namespace>_<name>_<uid>`; `None` for
/// a name of another form, which is not a pod's log directory.
fn pod_uid_from_log_dir(name: &str) -> Option<&str> {
    let parts: Vec<&str> = name.split('_').collect();
    match parts.as_slice() {
        [namespace, pod, uid] if !namespace.is_empty() && !pod.is_empty() && !uid.is_empty() => {
            Some(uid)
        }
        _ => None,
    }
}

/// Removes the directories `<root>/<namespace>_<name>_<uid>` of pods not in `known`
/// (the pods with a worker or a sandbox), as upstream's `evictPodLogsDirectories`. Only
/// real directories are removed, without following symlinks; a directory with
/// something mounted in it is kept with a warning.
pub(crate) async fn remove_orphaned_pod_log_dirs(root: &Path, known: &HashSet<String>) {
    if root.as_os_str().is_empty() {
        return;
    }
    let mut entries = match tokio::fs::read_dir(root).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => {
            warn!(dir = %root.display(), error = %e, "reading the pod log directories");
            return;
        }
    };
    let now = SystemTime::now();
    loop {
        let entry = match entries.next_entry().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(e) => {
                warn!(dir = %root.display(), error = %e, "reading the pod log directories");
                break;
            }
        };
        let file_name = entry.file_name();
        let Some(uid) = file_name.to_str().and_then(pod_uid_from_log_dir) else {
            continue;
        };
        if known.contains(uid) {
            continue;
        }
        let path = entry.path();
        let meta = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) => meta,
            Err(e) => {
                debug!(dir = %path.display(), error = %e, "inspecting a pod log directory");
                continue;
            }
        };
        // A symlink or file named like a pod's directory is not one the kubelet made.
        if !meta.is_dir() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < ORPHAN_LOG_DIR_MIN_AGE {
            continue;
        }
        info!(pod_uid = %uid, dir = %path.display(), "removing the log directory of a pod that is gone");
        let removing = path.clone();
        let removed = tokio::task::spawn_blocking(move || {
            kubelet_volumes::remove_all_on_one_file_system(&removing)
        })
        .await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(kubelet_volumes::Error::MountPoint { path: mount })) => warn!(
                dir = %path.display(),
                mount = %mount.display(),
                "not removing an orphaned pod log directory: something is mounted in it"
            ),
            Ok(Err(e)) => {
                warn!(dir = %path.display(), error = %e, "removing an orphaned pod log directory")
            }
            Err(e) => {
                warn!(dir = %path.display(), error = %e, "removing an orphaned pod log directory")
            }
        }
    }
}

/// Removes the pod's sandboxes that are not ready, not its newest, and have no
/// containers left (`removed` are the containers just removed from `snapshot`), as
/// upstream's `evictSandboxes` does for a pod that still exists.
pub(crate) async fn remove_dead_sandboxes(
    runtime: &dyn Runtime,
    snapshot: &RuntimeSnapshot,
    removed: &HashSet<&str>,
) {
    // The newest sandbox stays even dead: a finished pod's status and the next
    // sandbox's attempt number are read from it.
    for old in snapshot.sandboxes.iter().skip(1) {
        let id = &old.sandbox.id;
        if old.sandbox.state == SandboxState::Ready {
            continue;
        }
        let has_containers = snapshot
            .containers
            .iter()
            .any(|c| c.container.sandbox_id == *id && !removed.contains(c.container.id.as_str()));
        if has_containers {
            continue;
        }
        // Asked again because removing a sandbox removes its containers with it, and
        // the snapshot may be older than the runtime.
        let filter = ContainerFilter {
            sandbox_id: Some(id.clone()),
            ..Default::default()
        };
        match runtime.list_containers(&filter).await {
            Ok(containers) if containers.is_empty() => {}
            Ok(_) => continue,
            Err(e) => {
                debug!(sandbox = %id, error = %e, "listing the containers of a dead sandbox");
                continue;
            }
        }
        // As upstream, stopped first in case it was never stopped (e.g. its network is
        // still set up); a sandbox that cannot be stopped is not removed.
        if let Err(e) = runtime.stop_sandbox(id).await
            && !e.is_not_found()
        {
            warn!(sandbox = %id, error = %e, "stopping a dead sandbox before removing it");
            continue;
        }
        match runtime.remove_sandbox(id).await {
            Ok(()) => info!(sandbox = %id, "removed a dead sandbox"),
            Err(e) if e.is_not_found() => {}
            Err(e) => warn!(sandbox = %id, error = %e, "removing a dead sandbox"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

/// Removes the containers and sandboxes of pods that will not run again, through the
/// pod manager that knows which those are. Cheap to clone.
#[derive(Clone)]
pub struct ContainerGc {
    commands: mpsc::Sender<ManagerCommand>,
    runtime: Arc<dyn Runtime>,
    container_logs_dir: PathBuf,
}

impl std::fmt::Debug for ContainerGc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerGc")
            .field("container_logs_dir", &self.container_logs_dir)
            .finish_non_exhaustive()
    }
}

impl ContainerGc {
    pub(crate) fn new(
        commands: mpsc::Sender<ManagerCommand>,
        runtime: Arc<dyn Runtime>,
        container_logs_dir: PathBuf,
    ) -> Self {
        Self {
            commands,
            runtime,
            container_logs_dir,
        }
    }

    /// Upstream's `DeleteAllUnusedContainers`: every exited container and every dead
    /// sandbox of the pods that finished (succeeded, failed, evicted, shut down) but are
    /// not deleted yet, which the periodic GC keeps for their status and logs. Returns
    /// how many containers and sandboxes went; nothing when the manager is gone.
    pub async fn delete_all_unused_containers(&self) -> usize {
        let (reply, finished) = oneshot::channel();
        if self
            .commands
            .send(ManagerCommand::FinishedPods(reply))
            .await
            .is_err()
        {
            return 0;
        }
        let finished = finished.await.unwrap_or_default();
        if !finished.is_empty() {
            info!(
                pods = finished.len(),
                "attempting to delete unused containers"
            );
        }
        let mut removed = 0;
        for uid in &finished {
            removed += self.remove_pod_runtime(uid).await;
        }
        removed
    }

    async fn remove_pod_runtime(&self, uid: &str) -> usize {
        let labels: kubelet_core::StringMap = [(POD_UID_LABEL.to_owned(), uid.to_owned())].into();
        let mut removed = 0;
        let containers = self
            .runtime
            .list_containers(&ContainerFilter {
                labels: labels.clone(),
                ..Default::default()
            })
            .await;
        for container in containers.unwrap_or_default() {
            if container.state == ContainerState::Running {
                continue;
            }
            match self.runtime.remove_container(&container.id).await {
                Ok(()) => removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    warn!(pod = uid, container = %container.id, error = %e, "removing a finished pod's container");
                    continue;
                }
            }
            remove_log_symlink(&self.container_logs_dir, &container).await;
        }
        let sandboxes = self
            .runtime
            .list_sandboxes(&SandboxFilter {
                labels,
                ..Default::default()
            })
            .await;
        for sandbox in sandboxes.unwrap_or_default() {
            if sandbox.state == SandboxState::Ready {
                continue;
            }
            match self.runtime.remove_sandbox(&sandbox.id).await {
                Ok(()) => removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    warn!(pod = uid, sandbox = %sandbox.id, error = %e, "removing a finished pod's sandbox");
                }
            }
        }
        removed
    }
}
