//! User namespaces for pods with `hostUsers: false`, as upstream's `userns` manager gives
//! them: each such pod gets its own range of `userNamespaces.idsPerPod` host IDs (65536
//! by default) from the kubelet's share (the `kubelet` user's subordinate IDs from
//! `getsubids`, else every ID above the first range), mapped to 0.. inside; the range is
//! kept in the pod's directory (`<pods>/<uid>/userns`, upstream's JSON) so that a
//! restarted kubelet gives the pod the same one, and freed with the pod's directory. A
//! runtime handler that cannot run user namespaces fails the pod with upstream's message,
//! never starting it in the host's namespace.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use kubelet_core::{IdMapping, RuntimeHandler, UserNamespace};
use serde::{Deserialize, Serialize};

/// Upstream's unit of user namespace ranges, and the default `idsPerPod`.
pub const IDS_PER_POD: u32 = 65536;

/// The file in a pod's directory that keeps its range (upstream's `mappingsFile`).
pub const MAPPINGS_FILE: &str = "userns";

/// The user whose subordinate IDs are the kubelet's to give out (upstream's
/// `kubeletUser`).
pub const KUBELET_USER: &str = "kubelet";

/// The persisted form, as upstream writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MappingsFile {
    uid_mappings: Vec<FileMapping>,
    gid_mappings: Vec<FileMapping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileMapping {
    host_id: u32,
    container_id: u32,
    length: u32,
}

#[derive(Debug, Default)]
struct State {
    /// One bit per range of the kubelet's share.
    used: Vec<u64>,
    /// The first host ID of each pod's range and when it was given
    /// ([`UserNamespaces::generation`]), by pod UID.
    used_by: HashMap<String, (u32, u64)>,
    /// How many ranges were ever given or recorded.
    generation: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Where pod directories are; `None` keeps ranges in memory only (tests).
    pods_dir: Option<PathBuf>,
    ids_per_pod: u32,
    /// The first range, in units of `ids_per_pod`.
    offset: u32,
    /// How many ranges.
    ranges: u32,
}

/// The user namespace ranges of the node's pods. Cheap to clone; clones share them. The
/// default gives out upstream's default share and keeps nothing on disk.
#[derive(Debug, Clone)]
pub struct UserNamespaces {
    inner: Arc<Inner>,
}

impl Default for UserNamespaces {
    fn default() -> Self {
        Self::with_share(
            None,
            IDS_PER_POD,
            IDS_PER_POD,
            u32::MAX - IDS_PER_POD + 1,
            0,
        )
        .unwrap_or_else(|_| Self::empty())
    }
}

impl PartialEq for UserNamespaces {
    /// The same ranges (a node context compares equal to its clone).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for UserNamespaces {}

/// Upstream's default share when the kubelet user has no subordinate IDs: every ID from
/// the second range on.
pub fn default_share(ids_per_pod: u32) -> (u32, u32) {
    (ids_per_pod, u32::MAX - ids_per_pod + 1)
}

/// Parses `getsubids` output (`0: kubelet 65536 2147483648`): the first ID and how many.
///
/// # Errors
///
/// Not exactly one line of four fields with two numbers, upstream's messages.
pub fn parse_getsubids(output: &str) -> Result<(u32, u32), String> {
    let lines: Vec<&str> = output.trim_matches('\n').split('\n').collect();
    if lines.len() != 1 {
        return Err(format!(
            "error parsing line {output:?}: it must contain only one line"
        ));
    }
    let parts: Vec<&str> = lines[0].split_whitespace().collect();
    if parts.len() != 4 {
        return Err(format!("invalid line {output:?}"));
    }
    let number = |s: &str| {
        s.parse::<u32>()
            .map_err(|e| format!("parsing {s:?} in {output:?}: {e}"))
    };
    Ok((number(parts[2])?, number(parts[3])?))
}

/// The kubelet's share of IDs, as upstream's `getKubeletMappings`: the `kubelet` user's
/// subordinate IDs from `getsubids` (UIDs and GIDs must agree); the default share when
/// there is no such user or no `getsubids`. Blocking: runs `getsubids`.
///
/// # Errors
///
/// `getsubids` fails or disagrees between UIDs and GIDs.
pub fn kubelet_share(ids_per_pod: u32) -> Result<(u32, u32), String> {
    match nix::unistd::User::from_name(KUBELET_USER) {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(default_share(ids_per_pod)),
        Err(e) => return Err(format!("looking up user {KUBELET_USER:?}: {e}")),
    }
    let run = |args: &[&str]| match std::process::Command::new("getsubids").args(args).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("running getsubids: {e}")),
        Ok(out) if out.status.success() => {
            Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
        }
        Ok(out) => Err(format!(
            "error retrieving additional ids for user {KUBELET_USER:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    };
    let Some(uids) = run(&[KUBELET_USER])? else {
        return Ok(default_share(ids_per_pod));
    };
    let gids = run(&["-g", KUBELET_USER])?.unwrap_or_default();
    if uids != gids {
        return Err(format!(
            "mismatched subuids and subgids for user {KUBELET_USER:?}"
        ));
    }
    parse_getsubids(&uids)
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl UserNamespaces {
    fn empty() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                pods_dir: None,
                ids_per_pod: IDS_PER_POD,
                offset: 1,
                ranges: 0,
            }),
        }
    }

    /// Ranges of `ids_per_pod` IDs from the kubelet's share (`first`, `length`), enough
    /// for `max_pods`, kept under `pods_dir` (the ranges of the pods found there are read
    /// back), as upstream's `MakeUserNsManager`. Blocking: reads the pod directories.
    ///
    /// # Errors
    ///
    /// The share does not fit upstream's rules (multiples of `ids_per_pod`, not starting
    /// at 0, room for `max_pods`), or a pod's mappings file is unreadable or invalid.
    pub fn new(
        pods_dir: &Path,
        ids_per_pod: u32,
        first: u32,
        length: u32,
        max_pods: u32,
    ) -> Result<Self, String> {
        let this = Self::with_share(
            Some(pods_dir.to_owned()),
            ids_per_pod,
            first,
            length,
            max_pods,
        )?;
        let entries = match std::fs::read_dir(pods_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(this),
            Err(e) => return Err(format!("read pods from disk: {e}")),
        };
        for entry in entries.flatten() {
            let Some(uid) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            match std::fs::read(entry.path().join(MAPPINGS_FILE)) {
                Ok(content) => {
                    let mut state = lock(&this.inner.state);
                    this.parse_and_record(&mut state, &uid, &content)
                        .map_err(|e| {
                            format!("record pod mappings for existing pod {uid:?}: {e}")
                        })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(format!("record pod mappings for existing pod {uid:?}: {e}"));
                }
            }
        }
        Ok(this)
    }

    fn with_share(
        pods_dir: Option<PathBuf>,
        ids_per_pod: u32,
        first: u32,
        length: u32,
        max_pods: u32,
    ) -> Result<Self, String> {
        if ids_per_pod == 0 || !ids_per_pod.is_multiple_of(IDS_PER_POD) {
            return Err(format!(
                "kubelet user namespace length {ids_per_pod} is not a multiple of {IDS_PER_POD}"
            ));
        }
        if !first.is_multiple_of(ids_per_pod) {
            return Err(format!(
                "kubelet user assigned ID {first} is not a multiple of {ids_per_pod}"
            ));
        }
        if first < ids_per_pod {
            // Mapping 0 would circumvent the isolation.
            return Err(format!(
                "kubelet user assigned ID {first} must be greater or equal to {ids_per_pod}"
            ));
        }
        if !length.is_multiple_of(ids_per_pod) {
            return Err(format!(
                "kubelet user assigned IDs length {length} is not a multiple of {ids_per_pod}"
            ));
        }
        let ranges = length / ids_per_pod;
        if ranges < max_pods {
            return Err(format!(
                "kubelet user assigned IDs are not enough to support {max_pods} pods"
            ));
        }
        let words = usize::try_from(ranges.div_ceil(64)).unwrap_or(0);
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    used: vec![0; words],
                    ..State::default()
                }),
                pods_dir,
                ids_per_pod,
                offset: first / ids_per_pod,
                ranges,
            }),
        })
    }

    fn mapping_of(&self, first: u32) -> UserNamespace {
        let mapping = IdMapping {
            host_id: first,
            container_id: 0,
            length: self.inner.ids_per_pod,
        };
        UserNamespace {
            uids: vec![mapping],
            gids: vec![mapping],
        }
    }

    /// The pod's user namespace, when it has a range.
    pub fn mapping(&self, pod_uid: &str) -> Option<UserNamespace> {
        let (first, _) = *lock(&self.inner.state).used_by.get(pod_uid)?;
        Some(self.mapping_of(first))
    }

    /// The pod's user namespace: its recorded range, else a new free one, written to its
    /// directory before it is used (upstream's `GetOrCreateUserNamespaceMappings` once the
    /// handler is known to support user namespaces). Blocking: writes the file.
    ///
    /// # Errors
    ///
    /// No free range, an invalid mappings file, or the file cannot be written.
    pub fn get_or_create(&self, pod_uid: &str) -> Result<UserNamespace, String> {
        let mut state = lock(&self.inner.state);
        if let Some((first, _)) = state.used_by.get(pod_uid) {
            return Ok(self.mapping_of(*first));
        }
        if let Some(file) = self.file(pod_uid) {
            match std::fs::read(&file) {
                Ok(content) if !content.is_empty() => {
                    let first = self
                        .parse_and_record(&mut state, pod_uid, &content)
                        .map_err(|e| format!("user namespace: {e}"))?;
                    return Ok(self.mapping_of(first));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("user namespace: {}: {e}", file.display())),
            }
        }
        let index = self.allocate(&mut state).ok_or(
            "create user namespace: could not find an empty slot to allocate a user namespace",
        )?;
        let first = (self.inner.offset + index) * self.inner.ids_per_pod;
        Self::insert(&mut state, pod_uid, first);
        let userns = self.mapping_of(first);
        if let Err(e) = self.write(pod_uid, first) {
            state.used_by.remove(pod_uid);
            Self::set(&mut state, index, false);
            return Err(format!("create user namespace: {e}"));
        }
        Ok(userns)
    }

    /// Frees the pod's range and its file (its directory is going).
    pub fn release(&self, pod_uid: &str) {
        let mut state = lock(&self.inner.state);
        self.release_locked(&mut state, pod_uid);
    }

    /// Where the ranges stand: a range given after this is newer than any pod list taken
    /// before it.
    pub fn generation(&self) -> u64 {
        lock(&self.inner.state).generation
    }

    /// Frees the ranges of pods whose directory is gone, and of pods not `known` (to a
    /// source or the runtime) whose range is not newer than `known` (`since`, the
    /// [`generation`](Self::generation) when the list was taken: a pod that came after it
    /// keeps its range), as upstream's `CleanupOrphanedPodUsernsAllocations`. Blocking:
    /// looks at the directories.
    pub fn release_orphans(&self, known: &std::collections::HashSet<String>, since: u64) {
        let mut state = lock(&self.inner.state);
        let on_disk = |uid: &str| {
            self.inner
                .pods_dir
                .as_ref()
                .is_none_or(|dir| dir.join(uid).is_dir())
        };
        let gone: Vec<String> = state
            .used_by
            .iter()
            .filter(|(uid, (_, given))| !on_disk(uid) || (!known.contains(*uid) && *given <= since))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.release_locked(&mut state, &uid);
        }
    }

    /// How many pods hold a range.
    pub fn allocated(&self) -> usize {
        lock(&self.inner.state).used_by.len()
    }

    fn release_locked(&self, state: &mut State, pod_uid: &str) {
        let Some((first, _)) = state.used_by.remove(pod_uid) else {
            return;
        };
        if let Some(file) = self.file(pod_uid) {
            let _ = std::fs::remove_file(file);
        }
        if let Some(index) = (first / self.inner.ids_per_pod).checked_sub(self.inner.offset) {
            Self::set(state, index, false);
        }
        // A map never gives memory back: start afresh once it holds nothing.
        if state.used_by.is_empty() {
            state.used_by = HashMap::new();
        }
    }

    fn insert(state: &mut State, pod_uid: &str, first: u32) {
        state.generation += 1;
        let generation = state.generation;
        state
            .used_by
            .insert(pod_uid.to_owned(), (first, generation));
    }

    fn file(&self, pod_uid: &str) -> Option<PathBuf> {
        Some(
            self.inner
                .pods_dir
                .as_ref()?
                .join(pod_uid)
                .join(MAPPINGS_FILE),
        )
    }

    fn is_set(state: &State, index: u32) -> bool {
        let (word, bit) = (
            usize::try_from(index / 64).unwrap_or(usize::MAX),
            index % 64,
        );
        state.used.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn set(state: &mut State, index: u32, on: bool) {
        let (word, bit) = (
            usize::try_from(index / 64).unwrap_or(usize::MAX),
            index % 64,
        );
        if let Some(w) = state.used.get_mut(word) {
            if on {
                *w |= 1 << bit;
            } else {
                *w &= !(1 << bit);
            }
        }
    }

    /// A free range, looked for from a random place as upstream's allocation map does, so
    /// that pods' host IDs are not predictable.
    fn allocate(&self, state: &mut State) -> Option<u32> {
        let ranges = self.inner.ranges;
        if ranges == 0 {
            return None;
        }
        let start = u32::try_from(RandomState::new().hash_one(0u8) % u64::from(ranges)).ok()?;
        let index = (0..ranges)
            .map(|i| (start + i) % ranges)
            .find(|i| !Self::is_set(state, *i))?;
        Self::set(state, index, true);
        Some(index)
    }

    /// Records a pod's range read from its file (upstream's `parseUserNsFileAndRecord`);
    /// returns its first host ID.
    fn parse_and_record(
        &self,
        state: &mut State,
        pod_uid: &str,
        content: &[u8],
    ) -> Result<u32, String> {
        let file: MappingsFile = serde_json::from_slice(content)
            .map_err(|e| format!("invalid user namespace mappings file: {e}"))?;
        if file.uid_mappings.len() != 1 {
            return Err(
                "invalid user namespace configuration: no more than one mapping allowed.".into(),
            );
        }
        if file.uid_mappings.len() != file.gid_mappings.len() {
            return Err(
                "invalid user namespace configuration: GID and UID mappings should be identical."
                    .into(),
            );
        }
        let (uid, gid) = (file.uid_mappings[0], file.gid_mappings[0]);
        if uid != gid {
            return Err(
                "invalid user namespace configuration: GID and UID mapping should be identical"
                    .into(),
            );
        }
        if uid.container_id != 0 {
            return Err("invalid user namespace configuration: UID 0 must be mapped".into());
        }
        let ids = self.inner.ids_per_pod;
        if uid.length != ids {
            return Err(format!("wrong user namespace length {}", uid.length));
        }
        if !uid.host_id.is_multiple_of(ids) {
            return Err(format!(
                "wrong user namespace offset specified {}",
                uid.host_id
            ));
        }
        let from = uid.host_id;
        let previous = state.used_by.get(pod_uid).map(|(first, _)| *first);
        if previous.is_some_and(|p| p != from) {
            return Err(format!(
                "different user namespace range already used by pod {pod_uid:?}"
            ));
        }
        let index = (from / ids)
            .checked_sub(self.inner.offset)
            .filter(|i| *i < self.inner.ranges)
            .ok_or_else(|| format!("id {from} is out of range"))?;
        if previous.is_none() {
            if Self::is_set(state, index) {
                return Err(format!("range picked for pod {pod_uid:?} already taken"));
            }
            Self::set(state, index, true);
            Self::insert(state, pod_uid, from);
        }
        Ok(from)
    }

    /// Writes the pod's range to its directory atomically and durably.
    fn write(&self, pod_uid: &str, first: u32) -> std::io::Result<()> {
        let Some(file) = self.file(pod_uid) else {
            return Ok(());
        };
        let mapping = FileMapping {
            host_id: first,
            container_id: 0,
            length: self.inner.ids_per_pod,
        };
        let content = serde_json::to_vec(&MappingsFile {
            uid_mappings: vec![mapping],
            gid_mappings: vec![mapping],
        })
        .map_err(std::io::Error::other)?;
        let dir = file.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{MAPPINGS_FILE}.tmp"));
        std::fs::write(&tmp, content)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &file)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// Whether `handler` can run pods in their own user namespace, as upstream's
/// `HandlerSupportsUserNamespaces`: a runtime that reports no handlers (containerd 1.6)
/// cannot; an unknown handler is an error.
///
/// # Errors
///
/// The runtime reports handlers, but not this one.
pub fn handler_supports(handlers: &[RuntimeHandler], handler: &str) -> Result<bool, String> {
    if handlers.is_empty() {
        return Ok(false);
    }
    handlers
        .iter()
        .find(|h| h.name == handler)
        .map(|h| h.user_namespaces)
        .ok_or_else(|| format!("the handler {handler:?} is not known"))
}

/// Upstream's refusal of `hostUsers: false` on a handler without user namespaces.
pub fn unsupported_message(handler: &str) -> String {
    if handler.is_empty() {
        "can't set `spec.hostUsers: false`, runtime does not support user namespaces".to_owned()
    } else {
        format!(
            "can't set `spec.hostUsers: false`, RuntimeClass handler {handler:?} does not \
             support user namespaces"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getsubids_output_parses_as_upstream() {
        assert_eq!(
            parse_getsubids("0: kubelet 65536 2147483648\n"),
            Ok((65536, 2_147_483_648))
        );
        assert!(parse_getsubids("0: kubelet 65536\n").is_err());
        assert!(parse_getsubids("0: kubelet 1 2\n1: kubelet 3 4\n").is_err());
        assert!(parse_getsubids("0: kubelet x 2\n").is_err());
    }

    #[test]
    fn shares_follow_upstreams_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let make = |ids, first, len, pods| UserNamespaces::new(dir.path(), ids, first, len, pods);
        assert!(
            make(1000, 65536, 65536 * 10, 1).is_err(),
            "not a multiple of 65536"
        );
        assert!(make(65536, 0, 65536 * 10, 1).is_err(), "would map 0");
        assert!(
            make(65536, 65537, 65536 * 10, 1).is_err(),
            "unaligned first ID"
        );
        assert!(
            make(65536, 65536, 65536 * 10 + 1, 1).is_err(),
            "unaligned length"
        );
        let err = make(65536, 65536, 65536 * 10, 110).expect_err("too few ranges");
        assert_eq!(
            err,
            "kubelet user assigned IDs are not enough to support 110 pods"
        );
        let (first, len) = default_share(IDS_PER_POD);
        assert!(make(IDS_PER_POD, first, len, 110).is_ok());
    }

    #[test]
    fn ranges_are_given_once_kept_on_disk_and_freed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let share = |d: &Path| UserNamespaces::new(d, 65536, 65536 * 4, 65536 * 2, 2);
        let userns = share(dir.path()).expect("share");
        let a = userns.get_or_create("pod-a").expect("a");
        assert_eq!(a.uids, a.gids);
        assert_eq!(a.uids.len(), 1);
        assert_eq!(a.uids[0].container_id, 0);
        assert_eq!(a.uids[0].length, 65536);
        assert!([65536 * 4, 65536 * 5].contains(&a.uids[0].host_id));
        assert_eq!(userns.get_or_create("pod-a").expect("again"), a, "stable");
        let b = userns.get_or_create("pod-b").expect("b");
        assert_ne!(a.uids[0].host_id, b.uids[0].host_id);
        let err = userns.get_or_create("pod-c").expect_err("full");
        assert!(err.contains("could not find an empty slot"), "{err}");
        // Upstream's file format in the pod's directory.
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("pod-a/userns")).expect("file"))
                .expect("json");
        assert_eq!(
            file["uidMappings"][0]["hostId"],
            serde_json::json!(a.uids[0].host_id)
        );
        assert_eq!(file["gidMappings"][0]["length"], 65536);

        // A restarted kubelet gives the pods the same ranges.
        let again = share(dir.path()).expect("reloaded");
        assert_eq!(again.mapping("pod-a"), Some(a.clone()));
        assert_eq!(again.mapping("pod-b"), Some(b));
        assert!(again.get_or_create("pod-c").is_err(), "still full");

        // A released range (or one whose pod directory went) is free again.
        again.release("pod-b");
        assert!(!dir.path().join("pod-b/userns").exists());
        assert!(again.get_or_create("pod-c").is_ok());
        std::fs::remove_dir_all(dir.path().join("pod-a")).expect("rm");
        let known: std::collections::HashSet<String> =
            ["pod-a", "pod-c"].into_iter().map(String::from).collect();
        again.release_orphans(&known, again.generation());
        assert_eq!(again.mapping("pod-a"), None, "its directory went");
        assert_eq!(again.allocated(), 1);
        // A pod list taken before pod-d got its range does not free it.
        let since = again.generation();
        again.get_or_create("pod-d").expect("d");
        again.release_orphans(&std::collections::HashSet::new(), since);
        assert_eq!(
            again.mapping("pod-c"),
            None,
            "no source or runtime knows pod-c"
        );
        assert!(again.mapping("pod-d").is_some(), "newer than the list");
    }

    #[test]
    fn invalid_mapping_files_stop_the_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pod-x")).expect("mkdir");
        std::fs::write(
            dir.path().join("pod-x/userns"),
            r#"{"uidMappings":[{"hostId":131072,"containerId":1,"length":65536}],"gidMappings":[{"hostId":131072,"containerId":1,"length":65536}]}"#,
        )
        .expect("write");
        let err = UserNamespaces::new(dir.path(), 65536, 65536, 65536 * 4, 1).expect_err("refused");
        assert!(err.contains("UID 0 must be mapped"), "{err}");
    }

    #[test]
    fn handlers_must_say_they_support_user_namespaces() {
        assert_eq!(
            handler_supports(&[], ""),
            Ok(false),
            "an old runtime says nothing"
        );
        let handlers = [
            RuntimeHandler {
                name: String::new(),
                user_namespaces: true,
                ..RuntimeHandler::default()
            },
            RuntimeHandler {
                name: "kata".into(),
                ..RuntimeHandler::default()
            },
        ];
        assert_eq!(handler_supports(&handlers, ""), Ok(true));
        assert_eq!(handler_supports(&handlers, "kata"), Ok(false));
        assert!(handler_supports(&handlers, "gvisor").is_err());
    }
}
