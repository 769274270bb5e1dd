//! Merging the snapshots of several sources into one pod set, as upstream's
//! `podStorage.merge` (pkg/kubelet/config/config.go) does for SET operations.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::Pod;

use super::{
    CONFIG_MIRROR_ANNOTATION, CONFIG_SEEN_ANNOTATION, CONFIG_SOURCE_ANNOTATION, now_rfc3339,
};
use crate::{PodSource, RejectedManifest, SourceUpdate, UpdateKind};

/// What a snapshot changed in the pod set, in the order upstream delivers it: removals,
/// then additions, then updates.
#[derive(Debug, Clone, PartialEq)]
pub enum PodChange {
    /// A pod with a UID the set did not have.
    Added(Pod),
    /// A pod whose spec, labels, annotations (other than the kubelet's own
    /// `config.source`, `config.seen` and `config.mirror`), deletion timestamp or deletion
    /// grace period changed, or whose status moved the condition of one of its readiness
    /// gates (upstream's reconcile). Upstream's DELETE (graceful deletion,
    /// `deletionTimestamp` newly set) is an update too, as the upstream kubelet handles it.
    Updated(Pod),
    /// A pod its source no longer has: the last version the set held.
    Removed(Pod),
}

impl PodChange {
    /// The pod concerned.
    pub fn pod(&self) -> &Pod {
        match self {
            Self::Added(pod) | Self::Updated(pod) | Self::Removed(pod) => pod,
        }
    }

    /// The UID of the pod concerned.
    pub fn uid(&self) -> &str {
        self.pod().metadata.uid.as_deref().unwrap_or("")
    }
}

#[derive(Debug, Default)]
struct SourceState {
    /// UID to pod.
    pods: BTreeMap<String, Pod>,
    rejected: Vec<RejectedManifest>,
}

/// The pods of all sources, keyed by source and UID, built from their snapshots.
///
/// Each [`SourceUpdate`] replaces its source's pods (upstream's SET operation):
/// [`apply`](Self::apply) compares it with what the set held for that source and returns
/// the changes. A source's pods only ever change through its own updates. Pod status
/// changes alone (upstream's RECONCILE) are stored but not reported: the kubelet is the
/// source of truth for status.
#[derive(Debug, Default)]
pub struct PodSet {
    sources: BTreeMap<PodSource, SourceState>,
}

impl PodSet {
    /// An empty set that has seen no source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `update` to the pods of `update.source` and returns what changed: a
    /// [`UpdateKind::Snapshot`] replaces them, [`UpdateKind::Changes`] adds, updates and
    /// removes only the pods it names.
    ///
    /// As upstream: every pod gets the `kubernetes.io/config.source` annotation; a new
    /// pod keeps the `kubernetes.io/config.seen` time its source set, or gets the current
    /// time; an updated pod keeps the seen time it had; a second pod with the namespace
    /// and name of an earlier one in the same update is dropped with a warning. Pods
    /// without a UID cannot be tracked and are dropped with a warning.
    pub fn apply(&mut self, update: SourceUpdate) -> Vec<PodChange> {
        let source = update.source;
        let state = self.sources.entry(source).or_default();
        // `previous`: the pods this update is compared with, taken out of the set;
        // `removed`: those the source no longer has.
        let (mut previous, removed) = match update.kind {
            UpdateKind::Snapshot => {
                state.rejected = update.rejected;
                (std::mem::take(&mut state.pods), None)
            }
            UpdateKind::Changes { removed } => {
                let removed: BTreeMap<String, Pod> = removed
                    .iter()
                    .filter_map(|uid| state.pods.remove_entry(uid))
                    .collect();
                let named = update
                    .pods
                    .iter()
                    .filter_map(|p| p.metadata.uid.as_deref())
                    .filter_map(|uid| state.pods.remove_entry(uid))
                    .collect();
                (named, Some(removed))
            }
        };

        let mut added = Vec::new();
        let mut updated = Vec::new();
        let mut names = HashSet::new();
        for mut pod in update.pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let full_name = format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or(""),
                pod.metadata.name.as_deref().unwrap_or("")
            );
            if uid.is_empty() {
                tracing::warn!(source = source.as_str(), pod = %full_name, "pod has no uid, ignoring");
                continue;
            }
            if !names.insert(full_name.clone()) || state.pods.contains_key(&uid) {
                tracing::warn!(
                    source = source.as_str(),
                    pod = %full_name,
                    uid = %uid,
                    "duplicate pod name or uid in one update, ignoring"
                );
                continue;
            }
            pod.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    CONFIG_SOURCE_ANNOTATION.to_owned(),
                    source.as_str().to_owned(),
                );
            match previous.remove(&uid) {
                Some(mut existing) => {
                    if check_and_update(&mut existing, pod) {
                        updated.push(existing.clone());
                    }
                    state.pods.insert(uid, existing);
                }
                None => {
                    pod.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .entry(CONFIG_SEEN_ANNOTATION.to_owned())
                        .or_insert_with(now_rfc3339);
                    added.push(pod.clone());
                    state.pods.insert(uid, pod);
                }
            }
        }
        let gone = match removed {
            // The pods a snapshot no longer lists are gone.
            None => previous,
            // A named pod dropped as a duplicate keeps its place.
            Some(removed) => {
                state.pods.append(&mut previous);
                removed
            }
        };

        let mut changes: Vec<PodChange> = gone.into_values().map(PodChange::Removed).collect();
        changes.extend(added.into_iter().map(PodChange::Added));
        changes.extend(updated.into_iter().map(PodChange::Updated));
        changes
    }

    /// Whether `source` has sent at least one snapshot (upstream `seenSources`): until
    /// every configured source has, the set is not authoritative, and pods missing from
    /// it must not be cleaned up.
    pub fn has_seen(&self, source: PodSource) -> bool {
        self.sources.contains_key(&source)
    }

    /// Whether every source in `sources` has sent a snapshot.
    pub fn has_seen_all(&self, sources: &[PodSource]) -> bool {
        sources.iter().all(|s| self.has_seen(*s))
    }

    /// The pod with this UID, from whichever source has it.
    pub fn get(&self, uid: &str) -> Option<&Pod> {
        self.sources.values().find_map(|s| s.pods.get(uid))
    }

    /// All pods, by source, then UID.
    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.sources.values().flat_map(|s| s.pods.values())
    }

    /// The pods of one source, by UID.
    pub fn source_pods(&self, source: PodSource) -> impl Iterator<Item = &Pod> {
        self.sources
            .get(&source)
            .into_iter()
            .flat_map(|s| s.pods.values())
    }

    /// Number of pods over all sources.
    pub fn len(&self) -> usize {
        self.sources.values().map(|s| s.pods.len()).sum()
    }

    /// Whether no source has any pod.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The manifests each source rejected in its latest snapshot, for display.
    pub fn rejected(&self) -> impl Iterator<Item = (PodSource, &RejectedManifest)> {
        self.sources
            .iter()
            .flat_map(|(source, s)| s.rejected.iter().map(move |r| (*source, r)))
    }
}

/// Annotations the kubelet sets itself, ignored when comparing pods (upstream
/// `localAnnotations`).
const LOCAL_ANNOTATIONS: [&str; 3] = [
    CONFIG_SOURCE_ANNOTATION,
    CONFIG_MIRROR_ANNOTATION,
    CONFIG_SEEN_ANNOTATION,
];

fn annotations_equal_ignoring_local(a: &Pod, b: &Pod) -> bool {
    let filtered = |p: &Pod| -> BTreeMap<String, String> {
        p.metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| !LOCAL_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    filtered(a) == filtered(b)
}

/// Upstream `podsDifferSemantically`.
fn differs(existing: &Pod, new: &Pod) -> bool {
    existing.spec != new.spec
        // A new generation with the same spec: a resize that waits (the pod carries its
        // allocated resources), whose pending condition and observedGeneration the
        // status must show, as upstream's trigger of a pod sync does.
        || existing.metadata.generation != new.metadata.generation
        || existing.metadata.labels.as_ref().filter(|l| !l.is_empty())
            != new.metadata.labels.as_ref().filter(|l| !l.is_empty())
        || existing.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || existing.metadata.deletion_grace_period_seconds
            != new.metadata.deletion_grace_period_seconds
        || !annotations_equal_ignoring_local(existing, new)
}

/// Upstream `checkAndUpdatePod`: folds `new` into `existing` and says whether that was
/// an update to report. A status-only change is stored silently.
fn check_and_update(existing: &mut Pod, new: Pod) -> bool {
    if !differs(existing, &new) {
        // Upstream's HandlePodReconcile: a status-only change matters when it moves a
        // readiness gate's condition, so that Ready follows at once.
        let gates_moved = readiness_gates_moved(existing, &new);
        existing.status = new.status;
        return gates_moved;
    }
    let mut annotations = new.metadata.annotations.unwrap_or_default();
    for key in LOCAL_ANNOTATIONS {
        if let Some(v) = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
        {
            annotations.insert(key.to_owned(), v.clone());
        }
    }
    existing.spec = new.spec;
    existing.metadata.labels = new.metadata.labels;
    existing.metadata.deletion_timestamp = new.metadata.deletion_timestamp;
    existing.metadata.deletion_grace_period_seconds = new.metadata.deletion_grace_period_seconds;
    existing.metadata.generation = new.metadata.generation;
    existing.metadata.annotations = Some(annotations);
    existing.status = new.status;
    true
}

/// Whether the condition a readiness gate of the pod names changed its status.
fn readiness_gates_moved(existing: &Pod, new: &Pod) -> bool {
    let gate_status = |pod: &Pod, kind: &str| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == kind))
            .map(|c| c.status.clone())
    };
    new.spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|gate| {
            gate_status(existing, &gate.condition_type) != gate_status(new, &gate.condition_type)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(uid: &str, name: &str, image: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn update(source: PodSource, pods: Vec<Pod>) -> SourceUpdate {
        SourceUpdate {
            source,
            pods,
            rejected: Vec::new(),
            kind: UpdateKind::Snapshot,
        }
    }

    fn summary(changes: &[PodChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                PodChange::Added(p) => format!("added {}", p.metadata.uid.as_deref().unwrap_or("")),
                PodChange::Updated(p) => {
                    format!("updated {}", p.metadata.uid.as_deref().unwrap_or(""))
                }
                PodChange::Removed(p) => {
                    format!("removed {}", p.metadata.uid.as_deref().unwrap_or(""))
                }
            })
            .collect()
    }

    #[test]
    fn add_update_remove_by_uid() {
        let mut set = PodSet::new();
        assert!(!set.has_seen(PodSource::File));

        let changes = set.apply(update(
            PodSource::File,
            vec![pod("u1", "a", "nginx"), pod("u2", "b", "nginx")],
        ));
        assert_eq!(summary(&changes), ["added u1", "added u2"]);
        assert!(set.has_seen(PodSource::File));
        assert!(!set.has_seen_all(&[PodSource::File, PodSource::Http]));
        let added = changes[0].pod();
        let annotations = added.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations[CONFIG_SOURCE_ANNOTATION], "file");
        assert!(annotations.contains_key(CONFIG_SEEN_ANNOTATION));

        // The same snapshot again changes nothing.
        let again = set.apply(update(
            PodSource::File,
            vec![pod("u1", "a", "nginx"), pod("u2", "b", "nginx")],
        ));
        assert_eq!(again, []);

        // u1 changes its spec, u2 goes, u3 comes: removals first, then adds, then updates.
        let changes = set.apply(update(
            PodSource::File,
            vec![pod("u1", "a", "nginx:1.27"), pod("u3", "c", "nginx")],
        ));
        assert_eq!(summary(&changes), ["removed u2", "added u3", "updated u1"]);
        let updated = changes[2].pod();
        assert_eq!(changes[2].uid(), "u1");
        assert_eq!(
            updated
                .metadata
                .annotations
                .as_ref()
                .map(|a| &a[CONFIG_SEEN_ANNOTATION]),
            annotations.get(CONFIG_SEEN_ANNOTATION),
            "an update keeps the first-seen time"
        );
        assert_eq!(
            updated
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].image.as_deref()),
            Some("nginx:1.27")
        );
        assert_eq!(set.len(), 2);
        assert!(set.get("u2").is_none());

        // An empty snapshot removes everything of that source.
        let changes = set.apply(update(PodSource::File, vec![]));
        assert_eq!(summary(&changes), ["removed u1", "removed u3"]);
        assert!(set.is_empty());
    }

    fn changes(pods: Vec<Pod>, removed: &[&str]) -> SourceUpdate {
        SourceUpdate {
            source: PodSource::Api,
            pods,
            rejected: Vec::new(),
            kind: UpdateKind::Changes {
                removed: removed.iter().map(|r| r.to_string()).collect(),
            },
        }
    }

    #[test]
    fn changes_touch_only_the_pods_they_name() {
        let mut set = PodSet::new();
        set.apply(update(
            PodSource::Api,
            vec![pod("u1", "a", "i"), pod("u2", "b", "i")],
        ));
        let seen = |set: &PodSet, uid: &str| {
            set.get(uid)
                .and_then(|p| p.metadata.annotations.as_ref())
                .map(|a| a[CONFIG_SEEN_ANNOTATION].clone())
        };
        let u2_seen = seen(&set, "u2");

        // A new pod: added; the others stay, unreported.
        let changed = set.apply(changes(vec![pod("u3", "c", "i")], &[]));
        assert_eq!(summary(&changed), ["added u3"]);
        assert_eq!(set.len(), 3);
        assert_eq!(
            changed[0]
                .pod()
                .metadata
                .annotations
                .as_ref()
                .expect("annotations")[CONFIG_SOURCE_ANNOTATION],
            "api"
        );

        // The same pod again is no change; a changed spec is an update keeping its
        // first-seen time; a removal names only the UID.
        assert_eq!(set.apply(changes(vec![pod("u3", "c", "i")], &[])), []);
        let changed = set.apply(changes(vec![pod("u2", "b", "j")], &["u1"]));
        assert_eq!(summary(&changed), ["removed u1", "updated u2"]);
        assert_eq!(seen(&set, "u2"), u2_seen);
        assert!(set.get("u1").is_none());
        assert_eq!(set.len(), 2);

        // A UID that was never there removes nothing; a second pod of one name in one
        // update is dropped and the pod of that UID keeps its place.
        let changed = set.apply(changes(
            vec![pod("u4", "d", "i"), pod("u2", "d", "k")],
            &["nope"],
        ));
        assert_eq!(summary(&changed), ["added u4"]);
        let image = |set: &PodSet, uid: &str| {
            set.get(uid)
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.containers[0].image.clone())
        };
        assert_eq!(image(&set, "u2").as_deref(), Some("j"));
        assert_eq!(set.len(), 3);

        // A snapshot after changes compares with everything the changes left.
        let changed = set.apply(update(PodSource::Api, vec![pod("u4", "d", "i")]));
        assert_eq!(summary(&changed), ["removed u2", "removed u3"]);
    }

    #[test]
    fn sources_do_not_touch_each_other() {
        let mut set = PodSet::new();
        set.apply(update(PodSource::File, vec![pod("f1", "a", "i")]));
        let changes = set.apply(update(PodSource::Http, vec![pod("h1", "b", "i")]));
        assert_eq!(summary(&changes), ["added h1"]);
        let changes = set.apply(update(PodSource::Http, vec![]));
        assert_eq!(summary(&changes), ["removed h1"]);
        assert_eq!(set.source_pods(PodSource::File).count(), 1);
        assert!(set.has_seen_all(&[PodSource::File, PodSource::Http]));
    }

    #[test]
    fn local_annotations_and_status_do_not_make_updates() {
        let mut set = PodSet::new();
        set.apply(update(PodSource::Api, vec![pod("u1", "a", "i")]));

        let mut same = pod("u1", "a", "i");
        same.metadata.annotations = Some(BTreeMap::from([(
            CONFIG_SEEN_ANNOTATION.to_owned(),
            "2000-01-01T00:00:00.000000000Z".to_owned(),
        )]));
        same.status = Some(PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        });
        assert_eq!(set.apply(update(PodSource::Api, vec![same])), []);
        let stored = set
            .get("u1")
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.clone());
        assert_eq!(
            stored.as_deref(),
            Some("Running"),
            "status is stored silently"
        );

        let mut annotated = pod("u1", "a", "i");
        annotated.metadata.annotations =
            Some(BTreeMap::from([("team".to_owned(), "x".to_owned())]));
        assert_eq!(
            summary(&set.apply(update(PodSource::Api, vec![annotated]))),
            ["updated u1"]
        );

        let mut deleting = pod("u1", "a", "i");
        deleting.metadata.annotations = Some(BTreeMap::from([("team".to_owned(), "x".to_owned())]));
        deleting.metadata.deletion_grace_period_seconds = Some(30);
        let changes = set.apply(update(PodSource::Api, vec![deleting]));
        assert_eq!(
            summary(&changes),
            ["updated u1"],
            "graceful deletion is an update"
        );
        assert_eq!(
            changes[0].pod().metadata.deletion_grace_period_seconds,
            Some(30)
        );
    }

    #[test]
    fn duplicates_and_uidless_pods_are_dropped_and_rejections_kept() {
        let mut set = PodSet::new();
        let mut no_uid = pod("", "z", "i");
        no_uid.metadata.uid = None;
        let changes = set.apply(SourceUpdate {
            source: PodSource::Http,
            pods: vec![pod("u1", "a", "i"), pod("u2", "a", "i"), no_uid],
            rejected: vec![RejectedManifest {
                path: "http://127.0.0.1/pods".into(),
                reason: "items[3]: bad".into(),
            }],
            kind: UpdateKind::Snapshot,
        });
        assert_eq!(summary(&changes), ["added u1"]);
        let rejected: Vec<_> = set.rejected().collect();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, PodSource::Http);
        assert_eq!(rejected[0].1.reason, "items[3]: bad");
    }

    #[test]
    fn a_readiness_gate_condition_that_moves_makes_an_update() {
        let gated = |gate_status: Option<&str>, phase: &str| {
            let mut p = pod("u1", "a", "i");
            if let Some(spec) = p.spec.as_mut() {
                spec.readiness_gates = Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
                    condition_type: "example.com/lb".into(),
                }]);
            }
            p.status = Some(PodStatus {
                phase: Some(phase.into()),
                conditions: gate_status.map(|status| {
                    vec![k8s_openapi::api::core::v1::PodCondition {
                        type_: "example.com/lb".into(),
                        status: status.into(),
                        ..Default::default()
                    }]
                }),
                ..PodStatus::default()
            });
            p
        };
        let mut set = PodSet::new();
        set.apply(update(PodSource::Api, vec![gated(None, "Pending")]));
        assert_eq!(
            set.apply(update(PodSource::Api, vec![gated(None, "Running")])),
            [],
            "other status changes stay silent"
        );
        assert_eq!(
            summary(&set.apply(update(PodSource::Api, vec![gated(Some("True"), "Running")]))),
            ["updated u1"]
        );
        assert_eq!(
            set.apply(update(PodSource::Api, vec![gated(Some("True"), "Running")])),
            []
        );
    }
}
