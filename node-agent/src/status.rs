//! Pod status to the API server (upstream's status manager), mirror pods for static pods,
//! and the final delete of pods being deleted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kubelet_core::{PodRef, StatusReporter};
use kubelet_pod_manager::allocation::{POD_RESIZE_IN_PROGRESS, POD_RESIZE_PENDING};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::pods::{PodView, is_mirror, is_terminal};
use super::{is_conflict, is_not_found};
use kubelet_pod_manager::source::{
    CONFIG_HASH_ANNOTATION, CONFIG_MIRROR_ANNOTATION, CONFIG_SOURCE_ANNOTATION,
};

/// How often mirror pods are checked for static pods whose status did not change, and
/// the statuses sent are compared with what the API server shows (upstream's
/// `syncPeriod`).
const MIRROR_CHECK: Duration = Duration::from_secs(10);
/// Wait before retrying what failed.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What is still to be sent for one pod; a newer report replaces an older one, so a pod
/// has at most one entry whatever the number of reports (a bounded queue).
#[derive(Debug, Clone)]
enum Pending {
    Status {
        pod: Box<Pod>,
        status: Box<PodStatus>,
    },
    /// The pod is done with; `last` is a status reported just before and not sent yet,
    /// which goes first so the final delete never loses the final status.
    Forget {
        pod: PodRef,
        last: Option<(Box<Pod>, Box<PodStatus>)>,
    },
}

/// What was last sent to one pod.
#[derive(Debug)]
struct Sent {
    /// The status as reported, to skip repeats.
    status: PodStatus,
    /// The pod as the API server showed it with that status: the answer to the patch, or
    /// the API's copy that already had it.
    shown: Shown,
}

/// A pod's status as the API server showed it, reduced to a hash of what the kubelet
/// owns (a full copy per pod would double what the sender keeps).
#[derive(Debug, PartialEq)]
struct Shown {
    resource_version: Option<String>,
    owned: u64,
}

impl Shown {
    fn of(pod: &Pod) -> Self {
        Self {
            resource_version: pod.metadata.resource_version.clone(),
            owned: owned_by_kubelet(pod.status.as_ref()),
        }
    }

    /// Whether `pod`, a later copy, no longer shows what the kubelet wrote. A copy
    /// changed elsewhere only (labels, others' conditions) becomes the one compared next.
    fn changed_in(&mut self, pod: &Pod) -> bool {
        if pod.metadata.resource_version == self.resource_version {
            return false;
        }
        let now = Self::of(pod);
        if now.owned != self.owned {
            return true;
        }
        *self = now;
        false
    }
}

/// The pod condition types the kubelet owns (upstream `PodConditionsByKubelet` and
/// `PodReadyToStartContainers`); others' conditions are theirs to change.
const KUBELET_CONDITIONS: [&str; 7] = [
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    POD_RESIZE_IN_PROGRESS,
    POD_RESIZE_PENDING,
    "PodReadyToStartContainers",
];

/// A hash of the parts of a status the kubelet owns, as upstream's
/// `isPodStatusByKubeletEqual` compares them: everything but others' conditions and the
/// resource claims' statuses, its own conditions by status, reason and message only.
fn owned_by_kubelet(status: Option<&PodStatus>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    let Some(status) = status else {
        return hasher.finish();
    };
    let mut conditions: Vec<serde_json::Value> = status
        .conditions
        .iter()
        .flatten()
        .filter(|c| KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .map(|c| serde_json::json!([c.type_, c.status, c.reason, c.message]))
        .collect();
    conditions.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("resourceClaimStatuses");
        map.remove("extendedResourceClaimStatus");
        map.insert("conditions".into(), conditions.into());
    }
    // Objects serialize with their keys sorted: equal parts, equal text.
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Sends pod status to the API server.
///
/// `report` only records the latest status of the pod and wakes a background task, so a
/// pod worker never waits on the API server; statuses are strategic-merge patched (the
/// pod's UID in the patch makes the API server refuse it if the name now belongs to
/// another pod), only when they differ from what was last sent and from what the API
/// server already shows, and retried until sent. A status someone else changed is sent
/// again, as upstream reconciles. Static pods get a mirror pod, re-created when its
/// config hash no longer matches.
#[derive(Clone)]
pub struct ApiStatus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiStatus")
            .field("node", &self.inner.node_name)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: kube::Client,
    node_name: String,
    view: Arc<PodView>,
    pending: Mutex<HashMap<String, Pending>>,
    /// What was last sent per target pod UID.
    sent: Mutex<HashMap<String, Sent>>,
    node_uid: Mutex<Option<String>>,
    /// The latest report of each static pod, to re-create a mirror pod that went away
    /// while the static pod's status stayed the same.
    statics: Mutex<HashMap<String, Pending>>,
    wake: Notify,
}

impl ApiStatus {
    /// How many status patches are in flight at once.
    pub const PARALLEL_PATCHES: usize = 8;

    /// A reporter for the pods of `node_name`, and its sender: the task that patches
    /// what was reported, for the caller to run (under its supervisor) for as long as
    /// statuses must reach the API server. It never returns.
    pub fn new(
        client: kube::Client,
        node_name: &str,
        view: Arc<PodView>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let inner = Arc::new(Inner {
            client,
            node_name: node_name.to_owned(),
            view,
            pending: Mutex::default(),
            sent: Mutex::default(),
            node_uid: Mutex::default(),
            statics: Mutex::default(),
            wake: Notify::new(),
        });
        (
            Self {
                inner: inner.clone(),
            },
            send_loop(inner),
        )
    }
}

#[async_trait]
impl StatusReporter for ApiStatus {
    async fn report(&self, pod: &Pod, status: &PodStatus) -> kubelet_core::Result<()> {
        let uid = PodRef::of(pod).uid;
        let pending = Pending::Status {
            pod: Box::new(pod.clone()),
            status: Box::new(status.clone()),
        };
        if is_static(pod) {
            self.inner
                .statics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(uid.clone(), pending.clone());
        }
        self.inner.lock_pending().insert(uid, pending);
        self.inner.wake.notify_one();
        Ok(())
    }

    async fn forget(&self, pod: &PodRef) -> kubelet_core::Result<()> {
        self.inner
            .statics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pod.uid);
        let mut pending = self.inner.lock_pending();
        let last = match pending.remove(&pod.uid) {
            Some(Pending::Status { pod, status }) => Some((pod, status)),
            Some(Pending::Forget { last, .. }) => last,
            None => None,
        };
        pending.insert(
            pod.uid.clone(),
            Pending::Forget {
                pod: pod.clone(),
                last,
            },
        );
        drop(pending);
        self.inner.wake.notify_one();
        Ok(())
    }
}

impl Inner {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the entry of a pod that is not being sent now.
    fn take_pending(&self, sending: &HashSet<String>) -> Option<(String, Pending)> {
        let mut pending = self.lock_pending();
        let uid = pending.keys().find(|uid| !sending.contains(*uid))?.clone();
        pending.remove_entry(&uid)
    }

    /// Puts back an entry that could not be sent. A newer report made meanwhile wins
    /// over it; but a final delete queued meanwhile must still send this status first
    /// (upstream deletes a pod only after its final status is patched).
    fn requeue(&self, uid: String, entry: Pending) {
        let mut pending = self.lock_pending();
        match (pending.get_mut(&uid), entry) {
            (
                Some(Pending::Forget {
                    last: last @ None, ..
                }),
                Pending::Status { pod, status },
            ) => *last = Some((pod, status)),
            (Some(_), _) => {}
            (None, entry) => {
                pending.insert(uid, entry);
            }
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// Sends again the latest status of static pods whose mirror pod is missing or stale,
    /// as upstream checks the mirror pod on every sync.
    fn requeue_missing_mirrors(&self) {
        let statics: Vec<(String, Pending)> = self
            .statics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (uid, pending) in statics {
            let Pending::Status { pod, .. } = &pending else {
                continue;
            };
            let r = PodRef::of(pod);
            let hash = annotation(pod, CONFIG_HASH_ANNOTATION);
            let current = self.view.mirror(&r.namespace, &r.name);
            let fine = current.as_ref().is_some_and(|m| {
                m.metadata.deletion_timestamp.is_none()
                    && annotation(m, CONFIG_MIRROR_ANNOTATION) == hash
            });
            if !fine {
                if let Some(m) = current {
                    self.lock_sent().remove(&PodRef::of(&m).uid);
                }
                self.lock_pending().entry(uid).or_insert(pending);
            }
        }
    }

    /// Forgets what was sent to pods the API server no longer has (rejected pods, old
    /// mirror pods, pods deleted by others), so the record stays bounded by the node's
    /// pods. At worst a status is patched once more.
    fn forget_gone(&self) {
        if self.view.is_synced() {
            prune_sent(&mut self.lock_sent(), &self.view);
        }
    }

    /// Sends again the statuses of API pods that the API server no longer shows as they
    /// were sent (someone else changed a part the kubelet owns), as upstream's periodic
    /// reconcile (`needsReconcile`) does. Pods being sent, or with a newer report
    /// pending, are left to that; mirror pods to `requeue_missing_mirrors`.
    fn requeue_changed_by_others(&self, sending: &HashSet<String>) {
        let mut again = Vec::new();
        self.lock_sent().retain(|uid, sent| {
            if sending.contains(uid) {
                return true;
            }
            let changed = self.view.inspect(uid, |pod| {
                (!is_mirror(pod) && sent.shown.changed_in(pod)).then(|| Box::new(pod.clone()))
            });
            match changed.flatten() {
                Some(pod) => {
                    again.push((uid.clone(), pod, Box::new(sent.status.clone())));
                    false
                }
                None => true,
            }
        });
        let mut pending = self.lock_pending();
        for (uid, pod, status) in again {
            debug!(pod = %PodRef::of(&pod), "pod status changed by someone else, sending it again");
            pending
                .entry(uid)
                .or_insert(Pending::Status { pod, status });
        }
    }

    fn lock_sent(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sent>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one entry; false when it must be retried.
    async fn send(&self, uid: &str, pending: &Pending) -> bool {
        match pending {
            Pending::Status { pod, status } => self.send_status(pod, status).await,
            Pending::Forget { pod, last } => {
                if let Some((shown, status)) = last
                    && !self.send_status(shown, status).await
                {
                    return false;
                }
                self.finish(uid, pod).await
            }
        }
    }

    async fn send_status(&self, pod: &Pod, status: &PodStatus) -> bool {
        let r = PodRef::of(pod);
        let target = if is_static(pod) {
            match self.ensure_mirror(pod).await {
                Ok(mirror) => mirror,
                Err(e) => {
                    warn!(pod = %r, error = %e, "creating the mirror pod");
                    return false;
                }
            }
        } else {
            r.clone()
        };
        let first = match self.lock_sent().get(&target.uid) {
            Some(sent) if sent.status == *status => return true,
            Some(_) => false,
            None => true,
        };
        let terminal = self.view.inspect(&target.uid, is_terminal);
        if terminal == Some(true)
            && !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
        {
            // The API server refuses to move a pod out of a terminal phase.
            debug!(pod = %r, "pod is terminal in the API, not patching its status back");
            return true;
        }
        // A kubelet started again finds the statuses its last run wrote: one the API
        // server shows already is not written again (upstream's patch of the API's copy
        // to the new status is empty then, and not sent).
        let shown = match first {
            true => self.view.inspect(&target.uid, |current| {
                let unchanged = current.status.as_ref().is_some_and(|s| same(s, status));
                unchanged.then(|| Shown::of(current))
            }),
            false => None,
        };
        if let Some(shown) = shown.flatten() {
            debug!(pod = %r, "pod status already shown by the API server");
            let status = status.clone();
            self.lock_sent().insert(target.uid, Sent { status, shown });
            return true;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &target.namespace);
        let patch = serde_json::json!({
            "metadata": { "uid": target.uid },
            "status": status_patch(status),
        });
        let started = std::time::Instant::now();
        match api
            .patch_status(
                &target.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(answer) => {
                debug!(
                    pod = %r,
                    phase = ?status.phase,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "pod status patched"
                );
                let sent = Sent {
                    status: status.clone(),
                    shown: Shown::of(&answer),
                };
                self.lock_sent().insert(target.uid, sent);
                true
            }
            // The pod is gone, or the name belongs to another pod now: nothing to update.
            Err(e) if is_not_found(&e) || is_conflict(&e) => {
                debug!(pod = %r, error = %e, "pod status not patched: the pod is gone");
                true
            }
            Err(e) => {
                warn!(pod = %r, error = %e, "patching pod status, will retry");
                false
            }
        }
    }

    /// A pod worker is done with a pod: the final delete of an API pod being deleted
    /// (upstream waits for its containers, as the worker just did), or the removal of a
    /// static pod's mirror pod.
    async fn finish(&self, uid: &str, r: &PodRef) -> bool {
        self.lock_sent().remove(uid);
        let (target, why) = match self.view.get(uid) {
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => (r.clone(), "deleted"),
            Some(_) => return true,
            None => match self.view.mirror(&r.namespace, &r.name) {
                Some(mirror) => (PodRef::of(&mirror), "mirror of a removed static pod"),
                None => return true,
            },
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &target.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(target.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&target.name, &params).await {
            Ok(_) => {
                info!(pod = %target, why, "pod deleted from the API server");
                true
            }
            Err(e) if is_not_found(&e) || is_conflict(&e) => true,
            Err(e) => {
                warn!(pod = %target, error = %e, "deleting the pod, will retry");
                false
            }
        }
    }

    /// The mirror pod of a static pod, created (or re-created when its config hash is
    /// stale) as upstream's mirror client does; an error while the pod list has not
    /// arrived yet, so the report is retried.
    async fn ensure_mirror(&self, pod: &Pod) -> Result<PodRef, kube::Error> {
        if !self.view.is_synced() {
            return Err(kube::Error::Service(
                "the node's pods are not listed yet; the mirror pod waits".into(),
            ));
        }
        let r = PodRef::of(pod);
        let hash = annotation(pod, CONFIG_HASH_ANNOTATION).unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &r.namespace);
        if let Some(mirror) = self.view.mirror(&r.namespace, &r.name) {
            let current = annotation(&mirror, CONFIG_MIRROR_ANNOTATION);
            if current.as_deref() == Some(hash.as_str())
                && mirror.metadata.deletion_timestamp.is_none()
            {
                return Ok(PodRef::of(&mirror));
            }
            info!(pod = %r, "mirror pod is stale, re-creating it");
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: mirror.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&r.name, &params).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let node_uid = self.node_uid().await?;
        let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
        annotations.insert(CONFIG_MIRROR_ANNOTATION.to_owned(), hash);
        let mut spec = pod.spec.clone().unwrap_or_default();
        spec.node_name = Some(self.node_name.clone());
        let mirror = Pod {
            metadata: ObjectMeta {
                name: Some(r.name.clone()),
                namespace: Some(r.namespace.clone()),
                labels: pod.metadata.labels.clone(),
                annotations: Some(annotations),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Node".to_owned(),
                    name: self.node_name.clone(),
                    uid: node_uid,
                    controller: Some(true),
                    block_owner_deletion: None,
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        };
        match api.create(&PostParams::default(), &mirror).await {
            Ok(created) => {
                info!(pod = %r, "mirror pod created");
                Ok(PodRef::of(&created))
            }
            Err(e) if is_conflict(&e) => {
                // Created meanwhile (the view lags): use it if it is ours.
                let existing = api.get(&r.name).await?;
                Ok(PodRef::of(&existing))
            }
            Err(e) => Err(e),
        }
    }

    async fn node_uid(&self) -> Result<String, kube::Error> {
        if let Some(uid) = self
            .node_uid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(uid);
        }
        let node = Api::<Node>::all(self.client.clone())
            .get(&self.node_name)
            .await?;
        let uid = node.metadata.uid.unwrap_or_default();
        *self.node_uid.lock().unwrap_or_else(|p| p.into_inner()) = Some(uid.clone());
        Ok(uid)
    }
}

fn annotation(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
}

/// A pod from the static pod directory or manifest URL, not from the API server.
fn is_static(pod: &Pod) -> bool {
    matches!(
        annotation(pod, CONFIG_SOURCE_ANNOTATION).as_deref(),
        Some("file" | "http")
    )
}

/// Sends what is pending, a few pods at a time, for as long as the kubelet runs: a slot
/// that frees takes the next pod at once (a burst of pods is not sent in rounds that
/// each wait for their slowest patch), and a pod is never sent twice at once, so its
/// patches stay in order.
async fn send_loop(inner: Arc<Inner>) {
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    let mut last_mirror_check = tokio::time::Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut sending: HashSet<String> = HashSet::new();
    loop {
        if last_mirror_check.elapsed() >= MIRROR_CHECK {
            last_mirror_check = tokio::time::Instant::now();
            inner.requeue_missing_mirrors();
            inner.forget_gone();
            inner.requeue_changed_by_others(&sending);
        }
        while in_flight.len() < ApiStatus::PARALLEL_PATCHES {
            let Some((uid, pending)) = inner.take_pending(&sending) else {
                break;
            };
            sending.insert(uid.clone());
            let inner = inner.clone();
            in_flight.push(async move {
                let sent = inner.send(&uid, &pending).await;
                if !sent {
                    // The slot waits too: an API server that fails every patch is not
                    // asked again at once for each pod.
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                (uid, pending, sent)
            });
        }
        let next_check = last_mirror_check + MIRROR_CHECK;
        tokio::select! {
            Some((uid, entry, sent)) = in_flight.next() => {
                sending.remove(&uid);
                if !sent {
                    inner.requeue(uid, entry);
                }
            }
            _ = inner.wake.notified(), if in_flight.len() < ApiStatus::PARALLEL_PATCHES => {}
            _ = tokio::time::sleep_until(next_check) => {}
        }
    }
}

fn prune_sent<T>(sent: &mut HashMap<String, T>, view: &PodView) {
    sent.retain(|uid, _| view.inspect(uid, |_| ()).is_some());
}

/// Whether two statuses say the same as the API server renders them: Go's encoding
/// shows `lastState: {}` where a status built here has none, and leaves out empty
/// strings and lists, so those compare as absent.
fn same(a: &PodStatus, b: &PodStatus) -> bool {
    let rendered = |s: &PodStatus| serde_json::to_value(s).ok().and_then(without_empty);
    rendered(a) == rendered(b)
}

/// `value` without nulls, empty strings, lists and objects, at any depth; `None` when
/// nothing is left.
fn without_empty(value: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(items) => {
            let items: Vec<Value> = items
                .into_iter()
                .map(|item| without_empty(item).unwrap_or(Value::Null))
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(fields) => {
            let fields: serde_json::Map<String, Value> = fields
                .into_iter()
                .filter_map(|(k, v)| Some((k, without_empty(v)?)))
                .collect();
            (!fields.is_empty()).then_some(Value::Object(fields))
        }
        other => Some(other),
    }
}

/// The status as a strategic merge patch that also clears what the new status leaves
/// out: a condition's reason and message (conditions merge by type, so a reason omitted
/// would stay from the old condition) and the pod's own reason and message. Upstream
/// gets the same from its old-to-new diff (`PatchPodStatus`).
fn status_patch(status: &PodStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    let clear = |object: &mut serde_json::Value| {
        if let Some(map) = object.as_object_mut() {
            for field in ["reason", "message"] {
                map.entry(field).or_insert(serde_json::Value::Null);
            }
        }
    };
    clear(&mut value);
    if let Some(conditions) = value.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        conditions.iter_mut().for_each(clear);
        // The resize conditions come and go: one the new status no longer has is
        // deleted (a no-op when the pod does not have it either).
        for kind in [POD_RESIZE_PENDING, POD_RESIZE_IN_PROGRESS] {
            if !conditions.iter().any(|c| c["type"] == kind) {
                conditions.push(serde_json::json!({"type": kind, "$patch": "delete"}));
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodCondition;

    /// Status patches an API server received: pod name, the phase patched, and when
    /// (virtual time since the test started).
    type Patched = Arc<Mutex<Vec<(String, String, Duration)>>>;

    /// The pod a status patch is for and what it sent.
    fn status_patch_of(parts: &http::request::Parts, body: &[u8]) -> (String, serde_json::Value) {
        // /api/v1/namespaces/default/pods/<name>/status
        let name = parts.uri.path().split('/').nth(6).unwrap_or_default();
        (
            name.to_owned(),
            serde_json::from_slice(body).unwrap_or_default(),
        )
    }

    /// An API server whose status patches of pod `slow` take 5 s, others none.
    fn slow_api(patched: Patched) -> kube::Client {
        let start = tokio::time::Instant::now();
        crate::fake_api::client(move |parts, body| {
            let patched = patched.clone();
            async move {
                let (name, sent) = status_patch_of(&parts, &body);
                if name == "slow" {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                let phase = sent["status"]["phase"].as_str().unwrap_or_default();
                patched.lock().expect("patched").push((
                    name.clone(),
                    phase.to_owned(),
                    start.elapsed(),
                ));
                let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default", "uid": name}});
                (200, pod)
            }
        })
    }

    /// A reporter to [`slow_api`], its sender running on the test's runtime (which
    /// cancels it when the test ends).
    fn reporter(patched: &Patched) -> ApiStatus {
        let (reporter, sender) = ApiStatus::new(
            slow_api(patched.clone()),
            "node-1",
            Arc::new(PodView::new()),
        );
        tokio::spawn(sender);
        reporter
    }

    /// Reports `phase` for `pod`, then lets the sender pick it up.
    async fn report(reporter: &ApiStatus, pod: &Pod, phase: &str) {
        let status = PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        };
        reporter.report(pod, &status).await.expect("report");
        settle().await;
    }

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Lets the sender task run until it waits on the API server or for work.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_patch_does_not_hold_back_the_patches_reported_after_it() {
        let patched = Patched::default();
        let reporter = reporter(&patched);
        report(&reporter, &pod("slow"), "Pending").await;
        report(&reporter, &pod("fast"), "Running").await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let patched = patched.lock().expect("patched").clone();
        let at = Duration::from_secs;
        assert_eq!(
            patched,
            [
                ("fast".to_owned(), "Running".to_owned(), at(0)),
                ("slow".to_owned(), "Pending".to_owned(), at(5)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_is_patched_once_at_a_time_and_its_latest_report_wins() {
        let patched = Patched::default();
        let reporter = reporter(&patched);
        let slow = pod("slow");
        report(&reporter, &slow, "Pending").await;
        // Reported while the first patch is in flight: only the latest goes, after it.
        report(&reporter, &slow, "Running").await;
        report(&reporter, &slow, "Succeeded").await;
        tokio::time::sleep(Duration::from_secs(11)).await;
        let patched = patched.lock().expect("patched").clone();
        let at = Duration::from_secs;
        assert_eq!(
            patched,
            [
                ("slow".to_owned(), "Pending".to_owned(), at(5)),
                ("slow".to_owned(), "Succeeded".to_owned(), at(10)),
            ]
        );
    }

    /// An API server that answers a status patch with the pod as patched: the patch's
    /// status (without what the patch clears or deletes) and a new resource version.
    /// Returns the phases patched.
    fn echoing_api() -> (kube::Client, Arc<Mutex<Vec<String>>>) {
        let patched = Arc::new(Mutex::new(Vec::new()));
        let recorded = patched.clone();
        let client = crate::fake_api::client(move |parts, body| {
            let patched = recorded.clone();
            async move {
                let (name, sent) = status_patch_of(&parts, &body);
                let mut status = sent["status"].clone();
                if let Some(map) = status.as_object_mut() {
                    map.retain(|_, v| !v.is_null());
                }
                if let Some(conditions) = status["conditions"].as_array_mut() {
                    conditions.retain(|c| c.get("$patch").is_none());
                    for c in conditions.iter_mut().filter_map(|c| c.as_object_mut()) {
                        c.retain(|_, v| !v.is_null());
                    }
                }
                let mut patched = patched.lock().expect("patched");
                patched.push(status["phase"].as_str().unwrap_or_default().to_owned());
                let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default", "uid": name,
                        "resourceVersion": format!("answer-{}", patched.len())},
                    "status": status});
                (200, pod)
            }
        });
        (client, patched)
    }

    fn running(ready: &str) -> PodStatus {
        PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: ready.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    /// `pod` as the API server shows it at `resource_version` with `status`.
    fn shown(pod: &Pod, resource_version: &str, status: PodStatus) -> Pod {
        let mut pod = pod.clone();
        pod.metadata.resource_version = Some(resource_version.into());
        pod.status = Some(status);
        pod
    }

    #[tokio::test(start_paused = true)]
    async fn a_status_the_api_server_shows_already_is_not_patched_again() {
        let (client, patched) = echoing_api();
        let view = Arc::new(PodView::new());
        let (reporter, sender) = ApiStatus::new(client, "node-1", view.clone());
        tokio::spawn(sender);
        let pod = pod("restarted");
        // A kubelet started again: its last run wrote this status.
        view.upsert(shown(&pod, "7", running("True")));
        reporter
            .report(&pod, &running("True"))
            .await
            .expect("report");
        settle().await;
        assert!(patched.lock().expect("patched").is_empty());
        reporter
            .report(&pod, &running("False"))
            .await
            .expect("report");
        settle().await;
        assert_eq!(*patched.lock().expect("patched"), ["Running"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_status_changed_by_someone_else_is_sent_again() {
        let (client, patched) = echoing_api();
        let view = Arc::new(PodView::new());
        let (reporter, sender) = ApiStatus::new(client, "node-1", view.clone());
        tokio::spawn(sender);
        let pod = pod("web");
        view.upsert(shown(&pod, "1", PodStatus::default()));
        reporter
            .report(&pod, &running("True"))
            .await
            .expect("report");
        settle().await;
        assert_eq!(patched.lock().expect("patched").len(), 1);
        // The watch brings the patched pod; then a label, and another's condition.
        view.upsert(shown(&pod, "answer-1", running("True")));
        tokio::time::sleep(MIRROR_CHECK + Duration::from_secs(1)).await;
        let mut others = running("True");
        others
            .conditions
            .get_or_insert_default()
            .push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                ..Default::default()
            });
        let mut labelled = shown(&pod, "2", others);
        labelled.metadata.labels = Some([("tier".to_owned(), "web".to_owned())].into());
        view.upsert(labelled);
        tokio::time::sleep(MIRROR_CHECK).await;
        assert_eq!(
            patched.lock().expect("patched").len(),
            1,
            "nothing the kubelet owns changed"
        );
        // Someone else sets the kubelet's Ready condition: it is sent again.
        view.upsert(shown(&pod, "3", running("False")));
        tokio::time::sleep(MIRROR_CHECK).await;
        settle().await;
        assert_eq!(*patched.lock().expect("patched"), ["Running", "Running"]);
        view.upsert(shown(&pod, "answer-2", running("True")));
        tokio::time::sleep(MIRROR_CHECK * 3).await;
        assert_eq!(patched.lock().expect("patched").len(), 2);
    }

    #[test]
    fn statuses_compare_as_the_api_server_renders_them() {
        let ours: PodStatus = serde_json::from_value(serde_json::json!({
            "phase": "Running",
            "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
                "ready": true, "restartCount": 0}],
        }))
        .expect("status");
        let rendered: PodStatus = serde_json::from_value(serde_json::json!({
            "phase": "Running",
            "containerStatuses": [{"name": "main", "image": "busybox", "lastState": {},
                "ready": true, "restartCount": 0}],
            "podIPs": [],
        }))
        .expect("status");
        assert!(same(&ours, &rendered));
        let mut unready = rendered.clone();
        if let Some(c) = unready.container_statuses.as_mut() {
            c[0].ready = false;
        }
        assert!(!same(&ours, &unready));
    }

    #[test]
    fn statuses_sent_to_pods_gone_from_the_api_are_forgotten() {
        let view = PodView::new();
        let present = |uid: &str| Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        view.replace([("kept".to_owned(), present("kept"))].into());
        let mut sent: HashMap<String, PodStatus> = ["kept", "rejected-and-deleted", "old-mirror"]
            .into_iter()
            .map(|uid| (uid.to_owned(), PodStatus::default()))
            .collect();
        prune_sent(&mut sent, &view);
        assert_eq!(sent.keys().collect::<Vec<_>>(), ["kept"]);
    }

    #[test]
    fn a_patch_clears_reasons_and_messages_the_new_status_leaves_out() {
        let status = PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![
                PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                },
                PodCondition {
                    type_: "Initialized".into(),
                    status: "False".into(),
                    reason: Some("ContainersNotInitialized".into()),
                    message: Some("containers with incomplete status: [init]".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let patch = status_patch(&status);
        assert_eq!(patch["reason"], serde_json::Value::Null);
        assert!(patch.as_object().is_some_and(|m| m.contains_key("message")));
        let ready = &patch["conditions"][0];
        assert!(ready.as_object().is_some_and(|m| m.contains_key("reason")));
        assert_eq!(ready["reason"], serde_json::Value::Null);
        assert_eq!(patch["conditions"][1]["reason"], "ContainersNotInitialized");
        // Resize conditions the status no longer has are deleted.
        assert_eq!(patch["conditions"][2]["type"], POD_RESIZE_PENDING);
        assert_eq!(patch["conditions"][2]["$patch"], "delete");
        assert_eq!(patch["conditions"][3]["type"], POD_RESIZE_IN_PROGRESS);
    }
}
