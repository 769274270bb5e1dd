//! In-place pod resize: the resources allocated to each pod and those actuated on its
//! running containers, as upstream's allocation manager (`pkg/kubelet/allocation`) and
//! actuated state keep them, with the `PodResizePending` and `PodResizeInProgress`
//! conditions.
//!
//! A pod is admitted at its spec's resources, which become its *allocation*. When the
//! `resize` subresource later changes the spec, the change is admitted like a new pod
//! against the other pods' allocations ([`Allocations::handle_resize`]): accepted, it
//! becomes the allocation; otherwise the pod keeps running at its allocation with a
//! `PodResizePending` condition (`Deferred`, retried, or `Infeasible`). The pod workers
//! only ever see the allocated pod ([`Allocations::allocated_pod`]), apply an allocation
//! that differs from what the running containers were given (the *actuated* resources)
//! with `UpdateContainerResources`, and report `PodResizeInProgress` until both agree.
//!
//! Allocations and actuated resources survive a restart of the kubelet in a JSON file in
//! its root directory, so a pod is re-admitted at the resources it was running with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, ResourceRequirements, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubelet_core::Quantity;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::admission::{NodeFacts, Rejection, admit};

/// The condition type of a resize the kubelet has not accepted yet.
pub const POD_RESIZE_PENDING: &str = "PodResizePending";
/// The condition type of an accepted resize not yet applied to every container.
pub const POD_RESIZE_IN_PROGRESS: &str = "PodResizeInProgress";
/// `PodResizePending` reason: the node cannot take the resize now; retried.
pub const REASON_DEFERRED: &str = "Deferred";
/// `PodResizePending` reason: the node can never take the resize.
pub const REASON_INFEASIBLE: &str = "Infeasible";
/// `PodResizeInProgress` reason when applying the resize failed.
pub const REASON_ERROR: &str = "Error";
/// The file, in the kubelet's root directory, that keeps allocations across restarts.
pub const STATE_FILE: &str = "pod_resource_allocations.json";

/// The resizable resources of one pod: every container's (init containers included, as
/// upstream's GA `InPlacePodVerticalScalingInitContainers`) and the pod-level ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PodResourceInfo {
    /// Resources by container name.
    #[serde(default)]
    pub containers: BTreeMap<String, ResourceRequirements>,
    /// `spec.resources`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_level: Option<ResourceRequirements>,
    /// Memory-backed emptyDir size limits by volume name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub memory_volumes: BTreeMap<String, String>,
}

impl PartialEq for PodResourceInfo {
    /// Quantities compare by value, as upstream's semantic equality: `1` equals `1000m`.
    fn eq(&self, other: &Self) -> bool {
        self.containers.len() == other.containers.len()
            && self.containers.iter().all(|(name, mine)| {
                other
                    .containers
                    .get(name)
                    .is_some_and(|theirs| same_requirements(mine, theirs))
            })
            && match (&self.pod_level, &other.pod_level) {
                (None, None) => true,
                (Some(a), Some(b)) => same_requirements(a, b),
                _ => false,
            }
            && self.memory_volumes == other.memory_volumes
    }
}

/// Whether two requirements ask for the same amounts (claims are not resizable).
pub fn same_requirements(a: &ResourceRequirements, b: &ResourceRequirements) -> bool {
    same_list(a.requests.as_ref(), b.requests.as_ref())
        && same_list(a.limits.as_ref(), b.limits.as_ref())
}

type ApiList = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;

fn same_list(a: Option<&ApiList>, b: Option<&ApiList>) -> bool {
    let empty = ApiList::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.len() == b.len()
        && a.iter().all(|(name, q)| {
            b.get(name).is_some_and(|other| {
                match (Quantity::try_from(q), Quantity::try_from(other)) {
                    (Ok(x), Ok(y)) => x == y,
                    _ => q == other,
                }
            })
        })
}

fn memory_backed_limit(volume: &Volume) -> Option<String> {
    let empty_dir = volume.empty_dir.as_ref()?;
    if empty_dir.medium.as_deref() != Some("Memory") {
        return None;
    }
    let limit = empty_dir.size_limit.as_ref()?;
    let parsed = Quantity::try_from(limit).ok()?;
    (!parsed.is_zero()).then(|| parsed.value().to_string())
}

impl PodResourceInfo {
    /// What `pod`'s spec asks for (upstream `ResourceInfoForPod`).
    pub fn of(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let containers = spec
            .into_iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .map(|c| (c.name.clone(), c.resources.clone().unwrap_or_default()))
            .collect();
        let memory_volumes = spec
            .into_iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| Some((v.name.clone(), memory_backed_limit(v)?)))
            .collect();
        Self {
            containers,
            pod_level: spec.and_then(|s| s.resources.clone()),
            memory_volumes,
        }
    }
}

/// The two resize conditions of one pod.
#[derive(Debug, Clone, Default)]
struct ResizeConditions {
    pending: Option<PodCondition>,
    in_progress: Option<PodCondition>,
}

impl ResizeConditions {
    fn is_deferred(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some(REASON_DEFERRED))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    allocated: HashMap<String, PodResourceInfo>,
    #[serde(default)]
    actuated: HashMap<String, BTreeMap<String, ResourceRequirements>>,
    #[serde(skip)]
    conditions: HashMap<String, ResizeConditions>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    file: Option<PathBuf>,
    /// Held from taking the snapshot to renaming it into place: pod workers save at
    /// once, and without it two saves share the temporary file (one rename fails) or an
    /// older snapshot lands after a newer one.
    saving: tokio::sync::Mutex<()>,
}

/// The allocation and actuation records of every pod on the node, shared by admission,
/// the pod workers and status. Cheap to clone; clones share the records.
#[derive(Debug, Clone, Default)]
pub struct Allocations {
    inner: Arc<Inner>,
}

impl PartialEq for Allocations {
    /// The same records (a node context compares equal to its clone).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Allocations {}

/// What [`Allocations::handle_resize`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResizeDecision {
    /// The spec equals the allocation: nothing to do.
    None,
    /// The resize is the pod's new allocation; the `ResizeStarted` event's message.
    Accepted {
        /// Upstream's `Pod resize started: {...}` message.
        message: String,
    },
    /// The resize waits; `event` is set when the condition changed (upstream emits the
    /// `ResizeDeferred` or `ResizeInfeasible` event only then).
    Pending {
        /// `Deferred` or `Infeasible`.
        reason: &'static str,
        /// The event's message when one is due.
        event: Option<String>,
    },
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

fn condition(
    kind: &str,
    old: Option<&PodCondition>,
    reason: &str,
    message: &str,
    generation: i64,
) -> PodCondition {
    let now = now();
    let transition = match old {
        Some(old) if old.reason.as_deref() == Some(reason) => old.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    PodCondition {
        type_: kind.to_owned(),
        status: "True".to_owned(),
        last_probe_time: Some(now),
        last_transition_time: transition,
        observed_generation: Some(generation).filter(|g| *g != 0),
        reason: Some(reason.to_owned()).filter(|r| !r.is_empty()),
        message: Some(message.to_owned()).filter(|m| !m.is_empty()),
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// The `{"initContainers":[...],"containers":[...],"generation":N,"error":"..."}` summary
/// upstream's resize events carry.
pub fn resize_message(prefix: &str, pod: &Pod, generation: i64, error: &str) -> String {
    #[derive(Serialize)]
    struct Allocation<'a> {
        name: &'a str,
        resources: ResourceRequirements,
    }
    #[derive(Serialize)]
    struct Summary<'a> {
        #[serde(rename = "initContainers", skip_serializing_if = "Vec::is_empty")]
        init_containers: Vec<Allocation<'a>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        containers: Vec<Allocation<'a>>,
        generation: i64,
        #[serde(skip_serializing_if = "str::is_empty")]
        error: &'a str,
    }
    fn list(containers: &[Container]) -> Vec<Allocation<'_>> {
        containers
            .iter()
            .map(|c| Allocation {
                name: &c.name,
                resources: c.resources.clone().unwrap_or_default(),
            })
            .collect()
    }
    let spec = pod.spec.as_ref();
    let summary = Summary {
        init_containers: spec
            .and_then(|s| s.init_containers.as_deref())
            .map(list)
            .unwrap_or_default(),
        containers: spec.map(|s| list(&s.containers)).unwrap_or_default(),
        generation,
        error,
    };
    match serde_json::to_string(&summary) {
        Ok(json) => format!("{prefix}: {json}"),
        Err(_) => prefix.to_owned(),
    }
}

impl Allocations {
    /// Records kept in memory only (tests, and kubelets without a root directory).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Records kept in `<root_dir>/`[`STATE_FILE`], read back from it now. A file that
    /// cannot be read is reported and replaced: pods are then re-admitted at their
    /// spec's resources, as upstream does without its checkpoint.
    pub async fn persisted(root_dir: &Path) -> Self {
        let file = root_dir.join(STATE_FILE);
        let state = match tokio::fs::read(&file).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(file = %file.display(), error = %e, "pod resource allocations unreadable, starting without them");
                State::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                warn!(file = %file.display(), error = %e, "reading pod resource allocations, starting without them");
                State::default()
            }
        };
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                file: Some(file),
                saving: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the records to their file (atomically), if they have one.
    pub async fn save(&self) {
        let Some(file) = self.inner.file.clone() else {
            return;
        };
        let _saving = self.inner.saving.lock().await;
        let bytes = match serde_json::to_vec(&*self.state()) {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(error = %e, "serializing pod resource allocations");
                return;
            }
        };
        let written = tokio::task::spawn_blocking(move || {
            let tmp = file.with_extension("json.tmp");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &file)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "writing pod resource allocations"),
            Err(e) => warn!(error = %e, "writing pod resource allocations"),
        }
    }

    /// Whether the pod was admitted with an allocation.
    pub fn has_allocation(&self, pod_uid: &str) -> bool {
        self.state().allocated.contains_key(pod_uid)
    }

    /// Records the pod's spec as its allocation (on admission, or an accepted resize).
    pub fn set_allocated(&self, pod: &Pod) {
        self.state()
            .allocated
            .insert(uid(pod), PodResourceInfo::of(pod));
    }

    /// `pod` with its allocated resources in place of its spec's (upstream
    /// `UpdatePodFromAllocation`); unchanged without an allocation.
    pub fn allocated_pod(&self, pod: &Pod) -> Pod {
        let state = self.state();
        let mut pod = pod.clone();
        let Some(allocated) = state.allocated.get(&uid(&pod)) else {
            return pod;
        };
        if let Some(spec) = pod.spec.as_mut() {
            let containers = spec
                .init_containers
                .iter_mut()
                .flatten()
                .chain(spec.containers.iter_mut());
            for container in containers {
                if let Some(resources) = allocated.containers.get(&container.name) {
                    let is_empty = resources.limits.is_none()
                        && resources.requests.is_none()
                        && resources.claims.is_none();
                    if is_empty && container.resources.is_none() {
                        continue;
                    }
                    let claims = container.resources.as_ref().and_then(|r| r.claims.clone());
                    container.resources = Some(ResourceRequirements {
                        claims,
                        ..resources.clone()
                    });
                }
            }
            spec.resources = allocated.pod_level.clone();
            for volume in spec.volumes.iter_mut().flatten() {
                if let (Some(limit), Some(empty_dir)) = (
                    allocated.memory_volumes.get(&volume.name),
                    volume.empty_dir.as_mut(),
                ) {
                    empty_dir.size_limit = Some(
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity(limit.clone()),
                    );
                }
            }
        }
        pod
    }

    /// Forgets one pod that left the node.
    pub fn forget(&self, pod_uid: &str) {
        let mut state = self.state();
        state.allocated.remove(pod_uid);
        state.actuated.remove(pod_uid);
        state.conditions.remove(pod_uid);
    }

    /// Forgets the allocation of one pod no longer bound to the node, as
    /// [`retain_allocated`](Self::retain_allocated) does for all of them.
    pub fn release(&self, pod_uid: &str) {
        let mut state = self.state();
        state.allocated.remove(pod_uid);
        state.conditions.remove(pod_uid);
    }

    /// Forgets the allocations of pods no longer bound to the node (what their
    /// containers were given goes with the pod workers, [`forget`](Self::forget)).
    pub fn retain_allocated(&self, present: &HashSet<String>) {
        let mut state = self.state();
        state.allocated.retain(|uid, _| present.contains(uid));
        state.conditions.retain(|uid, _| present.contains(uid));
    }

    /// Decides a resize of an admitted pod, as upstream's `handlePodResourcesResize`:
    /// `pod` as the API has it now, `others` the other admitted pods at their allocation.
    /// Accepted, the new allocation is recorded, `PodResizePending` cleared and
    /// `PodResizeInProgress` set at the pod's generation.
    ///
    /// `others` (the other admitted pods at their allocations) is only asked for when the
    /// pod's resources changed: building it costs a copy of every pod, on every watch
    /// event of every pod.
    pub fn handle_resize(
        &self,
        pod: &Pod,
        others: impl FnOnce() -> Vec<Pod>,
        node: &NodeFacts,
    ) -> ResizeDecision {
        let id = uid(pod);
        let generation = pod.metadata.generation.unwrap_or(0);
        let desired = PodResourceInfo::of(pod);
        let allocated = self.state().allocated.get(&id).cloned();
        let Some(allocated) = allocated else {
            return ResizeDecision::None;
        };
        if allocated == desired {
            self.state().conditions.entry(id).or_default().pending = None;
            return ResizeDecision::None;
        }
        let verdict = infeasible(&allocated, &desired).map_or_else(
            || admit(pod, &others(), node),
            |message| Err(Rejection::new(REASON_INFEASIBLE, message)),
        );
        match verdict {
            Ok(()) => {
                let mut state = self.state();
                state.allocated.insert(id.clone(), desired);
                let conditions = state.conditions.entry(id).or_default();
                conditions.pending = None;
                conditions.in_progress =
                    Some(condition(POD_RESIZE_IN_PROGRESS, None, "", "", generation));
                ResizeDecision::Accepted {
                    message: resize_message("Pod resize started", pod, generation, ""),
                }
            }
            Err(rejection) => {
                let reason = if rejection.reason == REASON_INFEASIBLE {
                    REASON_INFEASIBLE
                } else {
                    REASON_DEFERRED
                };
                let mut state = self.state();
                let conditions = state.conditions.entry(id).or_default();
                let old = conditions.pending.take();
                let changed = old.as_ref().is_none_or(|o| {
                    o.reason.as_deref() != Some(reason)
                        || o.observed_generation.unwrap_or(0) != generation
                });
                conditions.pending = Some(condition(
                    POD_RESIZE_PENDING,
                    old.as_ref(),
                    reason,
                    &rejection.message,
                    generation,
                ));
                let event = changed.then(|| {
                    resize_message(
                        &format!("Pod resize {reason}"),
                        pod,
                        generation,
                        &rejection.message,
                    )
                });
                ResizeDecision::Pending { reason, event }
            }
        }
    }

    /// Whether a `Deferred` resize of the pod waits for room.
    pub fn is_deferred(&self, pod_uid: &str) -> bool {
        self.state()
            .conditions
            .get(pod_uid)
            .is_some_and(ResizeConditions::is_deferred)
    }

    /// Whether the resize of any pod is `Deferred`, waiting for room.
    pub fn any_deferred(&self) -> bool {
        self.state()
            .conditions
            .values()
            .any(ResizeConditions::is_deferred)
    }

    /// The resources a running container was last given, if recorded.
    pub fn actuated(&self, pod_uid: &str, container: &str) -> Option<ResourceRequirements> {
        self.state()
            .actuated
            .get(pod_uid)
            .and_then(|containers| containers.get(container))
            .cloned()
    }

    /// Records what a container was created with or updated to; whether that changed
    /// the record.
    pub fn set_actuated(
        &self,
        pod_uid: &str,
        container: &str,
        resources: ResourceRequirements,
    ) -> bool {
        let mut state = self.state();
        let containers = state.actuated.entry(pod_uid.to_owned()).or_default();
        if containers
            .get(container)
            .is_some_and(|old| same_requirements(old, &resources))
        {
            return false;
        }
        containers.insert(container.to_owned(), resources);
        true
    }

    /// Sets `PodResizeInProgress`, keeping its generation and, without a new reason,
    /// its reason and message (upstream `SetPodResizeInProgressCondition`). Returns the
    /// condition's generation and whether it changed.
    pub fn set_in_progress(
        &self,
        pod_uid: &str,
        reason: &str,
        message: &str,
        generation: i64,
    ) -> (i64, bool) {
        let mut state = self.state();
        let conditions = state.conditions.entry(pod_uid.to_owned()).or_default();
        let old = conditions.in_progress.take();
        let (reason, message, generation) = match &old {
            Some(c) => {
                let keep = reason.is_empty() && message.is_empty();
                (
                    if keep {
                        c.reason.clone().unwrap_or_default()
                    } else {
                        reason.to_owned()
                    },
                    if keep {
                        c.message.clone().unwrap_or_default()
                    } else {
                        message.to_owned()
                    },
                    c.observed_generation.unwrap_or(0),
                )
            }
            None => (reason.to_owned(), message.to_owned(), generation),
        };
        let new = condition(
            POD_RESIZE_IN_PROGRESS,
            old.as_ref(),
            &reason,
            &message,
            generation,
        );
        let changed = old
            .as_ref()
            .is_none_or(|o| o.reason != new.reason || o.message != new.message);
        conditions.in_progress = Some(new);
        (generation, changed)
    }

    /// Clears `PodResizeInProgress` seen from a sync of the pod at `generation`; the
    /// generation the condition had, when it was set. A sync of an older generation
    /// (started before admission accepted the resize) leaves it: that sync did not see
    /// the resize, so it cannot have completed it.
    pub fn clear_in_progress(&self, pod_uid: &str, generation: i64) -> Option<i64> {
        let mut state = self.state();
        let slot = &mut state.conditions.get_mut(pod_uid)?.in_progress;
        let resized_at = slot.as_ref()?.observed_generation.unwrap_or(0);
        if generation < resized_at {
            return None;
        }
        slot.take();
        Some(resized_at)
    }

    /// Clears both conditions (a terminal pod).
    pub fn clear_conditions(&self, pod_uid: &str) {
        self.state().conditions.remove(pod_uid);
    }

    /// The pod's resize conditions, pending first, for its status.
    pub fn conditions(&self, pod_uid: &str) -> Vec<PodCondition> {
        self.state()
            .conditions
            .get(pod_uid)
            .map(|c| c.pending.iter().chain(&c.in_progress).cloned().collect())
            .unwrap_or_default()
    }
}

/// A resize the node never takes, whatever room it has: pod-level resources (which this
/// kubelet does not resize in place) and memory-backed emptyDir sizes (upstream's alpha
/// `InPlacePodVerticalScalingMemoryBackedVolumes`, off by default).
fn infeasible(allocated: &PodResourceInfo, desired: &PodResourceInfo) -> Option<String> {
    let pod_level_same = match (&allocated.pod_level, &desired.pod_level) {
        (None, None) => true,
        (Some(a), Some(b)) => same_requirements(a, b),
        _ => false,
    };
    if !pod_level_same {
        return Some(
            "InPlacePodLevelResourcesVerticalScaling is not supported by this kubelet".into(),
        );
    }
    if allocated.memory_volumes != desired.memory_volumes {
        return Some("Memory-backed emptyDir volume resize is disabled".into());
    }
    None
}

#[cfg(test)]
mod tests;
