//! The pods bound to this node, from a watch on the API server.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{EventRecorder, EventType, PodEvent, PodRef, StatusReporter};

use super::NodeFactsHandle;
use kubelet_pod_manager::admission::{NodeFacts, Rejection, admit, rejected_status};
use kubelet_pod_manager::allocation::{Allocations, REASON_INFEASIBLE, ResizeDecision};
use kubelet_pod_manager::source::CONFIG_MIRROR_ANNOTATION;
use kubelet_pod_manager::{PodSource, SourceUpdate, UpdateKind};

/// Every pod the API server has bound to this node, mirror pods included, by UID: what
/// the status reporter consults for mirror pods and pods being deleted.
#[derive(Debug, Default)]
pub struct PodView {
    pods: RwLock<HashMap<String, Pod>>,
    synced: std::sync::atomic::AtomicBool,
}

impl PodView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pod with this UID, as the API server last showed it.
    pub fn get(&self, uid: &str) -> Option<Pod> {
        self.read().get(uid).cloned()
    }

    /// What `look` makes of the pod with this UID as the API server last showed it,
    /// without copying the pod; `None` when the API server has no such pod.
    pub fn inspect<T>(&self, uid: &str, look: impl FnOnce(&Pod) -> T) -> Option<T> {
        self.read().get(uid).map(look)
    }

    /// The mirror pod `namespace/name`, if the API server has one.
    pub fn mirror(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.read()
            .values()
            .find(|p| {
                is_mirror(p)
                    && p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }

    /// Whether the first complete list has arrived.
    pub fn is_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The pods that are neither mirror pods nor in a terminal phase.
    pub fn active(&self) -> Vec<Pod> {
        self.read()
            .values()
            .filter(|p| !is_mirror(p) && !is_terminal(p))
            .cloned()
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Pod>> {
        self.pods.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Pod>> {
        self.pods.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn replace(&self, pods: HashMap<String, Pod>) {
        *self.write() = pods;
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Keeps the API server's latest version of one pod.
    pub(crate) fn upsert(&self, pod: Pod) {
        self.write().insert(uid(&pod), pod);
    }

    /// Forgets a pod the API server deleted.
    pub(crate) fn remove(&self, uid: &str) {
        self.write().remove(uid);
    }
}

/// Whether `pod` is a mirror pod (the API's copy of a static pod).
pub(crate) fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR_ANNOTATION))
}

/// Whether the API status of `pod` is Succeeded or Failed: such a pod never runs again.
pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Watches the pods bound to one node (upstream `config/apiserver.go`): a list, then a
/// watch, and a new list whenever the watch breaks, so no pod is missed or doubled.
pub struct ApiPodSource {
    client: kube::Client,
    node_name: String,
    view: Arc<PodView>,
    admission: Option<Admission>,
}

/// What node-side admission needs: the Node, and where a rejection is reported.
struct Admission {
    node: NodeFactsHandle,
    reporter: Arc<dyn StatusReporter>,
    events: Arc<dyn EventRecorder>,
    admitted: std::collections::HashSet<String>,
    rejected: std::collections::HashSet<String>,
    /// Each admitted pod's allocated resources; resizes are decided against them.
    allocations: Allocations,
    /// Where rejections are counted (`kubelet_admission_rejections_total`).
    metrics: Arc<KubeletMetrics>,
}

impl std::fmt::Debug for ApiPodSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiPodSource")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl ApiPodSource {
    /// A source of the pods with `spec.nodeName == node_name`, sharing what it sees in
    /// `view`.
    pub fn new(client: kube::Client, node_name: &str, view: Arc<PodView>) -> Self {
        Self {
            client,
            node_name: node_name.to_owned(),
            view,
            admission: None,
        }
    }

    /// Admits each new pod against the node (`node`, as the node agent last wrote it)
    /// and the pods already admitted, as upstream's `HandlePodAdditions`: oldest first; a
    /// pod that does not fit is never run, gets phase Failed with upstream's reason
    /// through `reporter`, and a Warning event.
    ///
    /// An admitted pod's resources become its allocation in `allocations`; a later
    /// change of them (the `resize` subresource) is admitted the same way before the pod
    /// runs with it, or left pending (`PodResizePending`, retried every 3 minutes and
    /// whenever the node's pods change), as upstream's allocation manager does. The pods
    /// sent on carry their allocated resources. Rejections are counted in `metrics`.
    pub fn with_admission(
        mut self,
        node: NodeFactsHandle,
        reporter: Arc<dyn StatusReporter>,
        events: Arc<dyn EventRecorder>,
        allocations: Allocations,
        metrics: Arc<KubeletMetrics>,
    ) -> Self {
        self.admission = Some(Admission {
            node,
            reporter,
            events,
            admitted: Default::default(),
            rejected: Default::default(),
            allocations,
            metrics,
        });
        self
    }

    /// Sends a snapshot after the first complete list and after every change, until
    /// `updates` closes.
    pub async fn run(mut self, updates: mpsc::Sender<SourceUpdate>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default()
            .fields(&format!("spec.nodeName={}", self.node_name))
            // The API server ends each watch after a minute and it resumes where it
            // was: a dead connection is noticed within ~65 s (the watcher's idle
            // timeout), not the ~5 minutes of the default.
            .timeout(POD_WATCH_TIMEOUT_SECONDS);
        let mut stream = watcher::watcher(api, config)
            .default_backoff()
            // The kubelet never reads managedFields; without them each of the copies
            // the pod set and admission make per event costs a fraction.
            .modify(|pod: &mut Pod| pod.metadata.managed_fields = None)
            .boxed();
        let mut pods: HashMap<String, Pod> = HashMap::new();
        let mut listing: Option<HashMap<String, Pod>> = None;
        let mut synced = false;
        let mut failing = false;
        let mut retry = tokio::time::interval(RESIZE_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                event = stream.next() => match event {
                    Some(event) => event,
                    None => return,
                },
                _ = retry.tick() => {
                    // Deferred resizes are tried again now and then, as upstream's
                    // periodic retry, even when nothing else on the node changes.
                    let deferred = self.admission.as_ref().is_some_and(|a| a.has_deferred());
                    if synced
                        && deferred
                        && updates.send(self.update(&pods).await).await.is_err()
                    {
                        return;
                    }
                    continue;
                }
            };
            // What the event changed: everything (a new list), or one pod by UID.
            let changed = match event {
                Ok(Event::Init) => {
                    listing = Some(HashMap::new());
                    None
                }
                Ok(Event::InitApply(pod)) => {
                    if let Some(listing) = listing.as_mut() {
                        listing.insert(uid(&pod), pod);
                    }
                    None
                }
                Ok(Event::InitDone) => {
                    if let Some(listed) = listing.take() {
                        pods = listed;
                    }
                    synced = true;
                    Some(Changed::All)
                }
                Ok(Event::Apply(pod)) => {
                    let id = uid(&pod);
                    pods.insert(id.clone(), pod);
                    Some(Changed::Pod(id))
                }
                Ok(Event::Delete(pod)) => {
                    let id = uid(&pod);
                    pods.remove(&id);
                    Some(Changed::Pod(id))
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e, node = %self.node_name, "watching the node's pods failed, retrying");
                    }
                    failing = true;
                    continue;
                }
            };
            if failing {
                info!("watching the node's pods again");
                failing = false;
            }
            let Some(changed) = changed.filter(|_| synced) else {
                continue;
            };
            let update = match changed {
                Changed::All => {
                    self.view.replace(pods.clone());
                    Some(self.update(&pods).await)
                }
                Changed::Pod(id) => {
                    match pods.get(&id) {
                        Some(pod) => self.view.upsert(pod.clone()),
                        None => self.view.remove(&id),
                    }
                    self.changes(&pods, &id).await
                }
            };
            if let Some(update) = update
                && updates.send(update).await.is_err()
            {
                return;
            }
        }
    }

    /// The pods to run now: every pod of the node but mirror pods, through admission.
    async fn update(&mut self, pods: &HashMap<String, Pod>) -> SourceUpdate {
        let mut wanted: Vec<Pod> = pods.values().filter(|p| !is_mirror(p)).cloned().collect();
        if let Some(admission) = self.admission.as_mut() {
            wanted = admission.filter(wanted).await;
        }
        debug!(pods = wanted.len(), "api pods");
        SourceUpdate {
            source: PodSource::Api,
            pods: wanted,
            rejected: Vec::new(),
            kind: UpdateKind::Snapshot,
        }
    }

    /// What changed for the pod `id` (now as in `pods`, or gone from it), through
    /// admission; `None` when nothing is to be sent (a mirror pod, a rejected pod).
    ///
    /// One event costs one pod's admission, not the whole node's: a burst of pods is
    /// not a copy and comparison of every pod on every event. While a resize waits for
    /// room, every change of the node's pods may make room, and the whole set goes
    /// through admission again as a snapshot.
    async fn changes(&mut self, pods: &HashMap<String, Pod>, id: &str) -> Option<SourceUpdate> {
        if self.admission.as_ref().is_some_and(Admission::has_deferred) {
            return Some(self.update(pods).await);
        }
        let changes = |pods: Vec<Pod>, removed: Vec<String>| SourceUpdate {
            source: PodSource::Api,
            pods,
            rejected: Vec::new(),
            kind: UpdateKind::Changes { removed },
        };
        let Some(pod) = pods.get(id) else {
            if let Some(admission) = self.admission.as_mut() {
                admission.forget(id);
            }
            debug!(pod = %id, "api pod deleted");
            return Some(changes(Vec::new(), vec![id.to_owned()]));
        };
        if is_mirror(pod) {
            return None;
        }
        let pod = match self.admission.as_mut() {
            Some(admission) => admission.admit_one(pod, pods).await?,
            None => pod.clone(),
        };
        debug!(pod = %PodRef::of(&pod), "api pod changed");
        Some(changes(vec![pod], Vec::new()))
    }
}

/// What a watch event changed in the node's pods.
enum Changed {
    /// Everything: a complete list arrived.
    All,
    /// The pod with this UID was added, changed or deleted.
    Pod(String),
}

/// How often deferred resizes are tried again without another reason to (upstream's
/// `retryDelay`).
const RESIZE_RETRY: std::time::Duration = std::time::Duration::from_secs(180);

/// How long the API server keeps one watch of the node's pods open.
const POD_WATCH_TIMEOUT_SECONDS: u32 = 60;

/// What admission made of one pod.
#[derive(Debug, Default)]
struct Decided {
    /// The pod to run at its allocated resources; `None` when it is rejected (now or
    /// before).
    run: Option<Pod>,
    /// Whether it was admitted or its allocation changed just now: the other pods' fit
    /// must count it as `run` from now on.
    joins_active: bool,
    /// Whether an allocation changed and must be saved.
    allocation_changed: bool,
}

impl Admission {
    /// Whether a resize waits for room on the node (only admitted pods have resizes).
    fn has_deferred(&self) -> bool {
        self.allocations.any_deferred()
    }

    /// The pods that may run, at their allocated resources: those admitted before,
    /// terminal or deleted ones (they never start anything), and new ones that fit,
    /// oldest first. Resizes of admitted pods are decided here too.
    async fn filter(&mut self, mut pods: Vec<Pod>) -> Vec<Pod> {
        let present: std::collections::HashSet<String> = pods.iter().map(uid).collect();
        self.admitted.retain(|u| present.contains(u));
        self.rejected.retain(|u| present.contains(u));
        self.allocations.retain_allocated(&present);
        pods.sort_by(|a, b| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| uid(a).cmp(&uid(b)))
        });
        let mut facts = None;
        let mut active: Vec<Pod> = pods
            .iter()
            .filter(|p| self.admitted.contains(&uid(p)) && !is_terminal(p))
            .map(|p| self.allocations.allocated_pod(p))
            .collect();
        let mut runnable = Vec::with_capacity(pods.len());
        let mut allocated = false;
        for pod in pods {
            let id = uid(&pod);
            // A new pod is not among the active ones yet: they are lent, not copied.
            let active_pods = &active;
            let others = |_: &Self| {
                if active_pods.iter().any(|p| uid(p) == id) {
                    Cow::Owned(
                        active_pods
                            .iter()
                            .filter(|p| uid(p) != id)
                            .cloned()
                            .collect(),
                    )
                } else {
                    Cow::Borrowed(active_pods.as_slice())
                }
            };
            let decided = self.decide(&pod, others, &mut facts).await;
            allocated |= decided.allocation_changed;
            let Some(run) = decided.run else {
                continue;
            };
            if decided.joins_active {
                match active.iter_mut().find(|p| uid(p) == id) {
                    Some(slot) => *slot = run.clone(),
                    None => active.push(run.clone()),
                }
            }
            runnable.push(run);
        }
        if allocated {
            self.allocations.save().await;
        }
        runnable
    }

    /// One pod that was added or changed, as [`filter`](Self::filter) decides it among
    /// the node's `pods`: the pod to run at its allocated resources, or `None` if it was
    /// rejected (now or before). The other admitted pods are only built when the pod
    /// needs fitting or its resources changed.
    async fn admit_one(&mut self, pod: &Pod, pods: &HashMap<String, Pod>) -> Option<Pod> {
        let id = uid(pod);
        let others = |this: &Self| Cow::Owned(this.active_except(pods, &id));
        let decided = self.decide(pod, others, &mut None).await;
        if decided.allocation_changed {
            self.allocations.save().await;
        }
        decided.run
    }

    /// Admission's decision on one pod, the same for a whole list and for one change:
    /// terminal and deleted pods pass (they never start anything), a pod rejected before
    /// stays rejected, a new pod must fit beside `others` (the other admitted pods at
    /// their allocations, built only when needed), and an admitted pod's resize is
    /// decided. `others` is handed the admission itself, so that it may read the
    /// admitted set while `decide` holds it mutably. `facts` is filled on first need, so
    /// a list reads the node once.
    async fn decide<'o>(
        &mut self,
        pod: &Pod,
        others: impl Fn(&Self) -> Cow<'o, [Pod]>,
        facts: &mut Option<NodeFacts>,
    ) -> Decided {
        let id = uid(pod);
        if is_terminal(pod) || pod.metadata.deletion_timestamp.is_some() {
            return Decided {
                run: Some(self.allocations.allocated_pod(pod)),
                ..Decided::default()
            };
        }
        if self.rejected.contains(&id) {
            return Decided::default();
        }
        let facts = match facts {
            Some(facts) => facts,
            None => facts.insert(self.facts().await),
        };
        let mut decided = Decided::default();
        if !self.admitted.contains(&id) {
            // A restarted kubelet admits a pod at the resources it was running with.
            let candidate = self.allocations.allocated_pod(pod);
            if let Err(rejection) = admit(&candidate, &others(self), facts) {
                self.reject(pod, &rejection).await;
                return decided;
            }
            self.admitted.insert(id.clone());
            if !self.allocations.has_allocation(&id) {
                self.allocations.set_allocated(&candidate);
                decided.allocation_changed = true;
            }
            decided.joins_active = true;
        }
        if self.resize(pod, || others(self).into_owned(), facts) {
            decided.allocation_changed = true;
            decided.joins_active = true;
        }
        decided.run = Some(self.allocations.allocated_pod(pod));
        decided
    }

    /// The admitted pods of `pods` that may still run, but `id`, at their allocations.
    fn active_except(&self, pods: &HashMap<String, Pod>, id: &str) -> Vec<Pod> {
        pods.iter()
            .filter(|(u, p)| *u != id && self.admitted.contains(*u) && !is_terminal(p))
            .map(|(_, p)| self.allocations.allocated_pod(p))
            .collect()
    }

    /// Forgets a pod the API server deleted.
    fn forget(&mut self, id: &str) {
        self.admitted.remove(id);
        self.rejected.remove(id);
        self.allocations.release(id);
    }

    /// Decides a change of an admitted pod's resources (`others`: the other admitted
    /// pods at their allocations, asked for only if the resources changed); whether its
    /// allocation changed.
    fn resize(&self, pod: &Pod, others: impl FnOnce() -> Vec<Pod>, facts: &NodeFacts) -> bool {
        let event = |event_type, reason: &'static str, message: String| {
            self.events.record(PodEvent {
                pod: PodRef::of(pod),
                field_path: None,
                event_type,
                reason: reason.into(),
                message,
            });
        };
        match self.allocations.handle_resize(pod, others, facts) {
            ResizeDecision::None => false,
            ResizeDecision::Accepted { message } => {
                info!(pod = %PodRef::of(pod), "pod resize accepted");
                event(EventType::Normal, "ResizeStarted", message);
                true
            }
            ResizeDecision::Pending { reason, event: due } => {
                if let Some(message) = due {
                    info!(pod = %PodRef::of(pod), reason, "pod resize pending");
                    let kind = if reason == REASON_INFEASIBLE {
                        "ResizeInfeasible"
                    } else {
                        "ResizeDeferred"
                    };
                    event(EventType::Warning, kind, message);
                }
                false
            }
        }
    }

    /// A pod that does not fit: never run, Failed with upstream's reason, an event.
    async fn reject(&mut self, pod: &Pod, rejection: &Rejection) {
        warn!(pod = %PodRef::of(pod), reason = %rejection.reason, message = %rejection.message, "pod rejected");
        rejection.record(&self.metrics);
        self.rejected.insert(uid(pod));
        let mut status = rejected_status(pod, rejection);
        status.start_time.get_or_insert_with(|| {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(super::now())
        });
        self.events.record(PodEvent {
            pod: PodRef::of(pod),
            field_path: None,
            event_type: EventType::Warning,
            reason: rejection.reason.clone().into(),
            message: rejection.message.clone(),
        });
        if let Err(e) = self.reporter.report(pod, &status).await {
            warn!(pod = %PodRef::of(pod), error = %e, "reporting a rejected pod");
        }
    }

    /// The node as last written; waits for the first registration, since admission
    /// without the node's size and labels would be a guess.
    async fn facts(&self) -> NodeFacts {
        loop {
            let node = self.node.read().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(node) = node {
                return NodeFacts::from_node(&node);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}
