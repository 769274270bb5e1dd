//! The eviction manager's loop, as upstream's `managerImpl.synchronize`: observe the
//! signals, decide which thresholds are met (with their grace periods and minimum
//! reclaims), publish the pressure conditions (kept for the transition period), and
//! evict at most one pod per round, ranked for the starved resource.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{EventRecorder, EventType, NodeEvent, PodEvent, PodRef};
use kubelet_pod_manager::admission::{EVICTED_REASON, is_critical};
use kubelet_pod_manager::kill::{KillReason, PodKiller};
use kubelet_pod_manager::pressure::{NodePressure, PressureCondition};
use kubelet_stats::{StatsProvider, Summary, Time};
use tracing::{debug, info, warn};

use crate::rank::{StatsByUid, eviction_message, rank};
use crate::signals::{Observations, observe};
use crate::threshold::{EvictionConfig, Threshold, sort_by_eviction_priority};

/// Upstream's `evictionMonitoringPeriod`: how often the signals are read.
pub const MONITORING_PERIOD: Duration = Duration::from_secs(10);
/// Upstream's `podCleanupTimeout`: how long an evicted pod is waited for.
const POD_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Upstream's `immediateEvictionGracePeriodSeconds`: a hard threshold's grace period.
const IMMEDIATE_GRACE_SECONDS: i64 = 1;

/// Where the eviction manager reads the node's and pods' usage.
#[async_trait]
pub trait SummarySource: Send + Sync {
    /// The stats summary now.
    async fn summary(&self) -> Result<Summary, String>;
}

#[async_trait]
impl SummarySource for StatsProvider {
    async fn summary(&self) -> Result<Summary, String> {
        StatsProvider::summary(self, false)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Who lists and kills the node's pods for the eviction manager.
#[async_trait]
pub trait PodEvictor: Send + Sync {
    /// The pods admitted and running now.
    async fn active_pods(&self) -> Vec<Pod>;
    /// Kills `pod` within `grace_seconds` with `why` as its final status, and waits a
    /// while for it to be gone.
    async fn evict(&self, pod: &Pod, grace_seconds: i64, why: KillReason);
}

#[async_trait]
impl PodEvictor for PodKiller {
    async fn active_pods(&self) -> Vec<Pod> {
        PodKiller::active_pods(self).await
    }

    async fn evict(&self, pod: &Pod, grace_seconds: i64, why: KillReason) {
        let uid = PodRef::of(pod).uid;
        if self
            .kill(vec![uid], grace_seconds, why, POD_CLEANUP_TIMEOUT)
            .await
            == 0
        {
            warn!(pod = %PodRef::of(pod), "evicted pod not cleaned up within {POD_CLEANUP_TIMEOUT:?}");
        }
    }
}

/// Frees node-level resources before pods are evicted for disk pressure (upstream's
/// node reclaim functions: the containers of finished pods, then unused images).
#[async_trait]
pub trait NodeReclaimer: Send + Sync {
    /// Removes what the node can lose without evicting a pod (finished pods'
    /// containers, unused images).
    async fn reclaim_disk(&self);
}

/// What one round decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// The pressure conditions now (each kept for the transition period).
    pub conditions: Vec<PressureCondition>,
    /// The pod evicted, by `namespace/name`, if any.
    pub evicted: Option<String>,
}

/// The eviction manager: call [`EvictionManager::run`] for the loop, or
/// [`EvictionManager::synchronize`] for one round.
pub struct EvictionManager {
    config: EvictionConfig,
    pressure: NodePressure,
    events: Arc<dyn EventRecorder>,
    summaries: Arc<dyn SummarySource>,
    pods: Arc<dyn PodEvictor>,
    reclaimer: Option<Arc<dyn NodeReclaimer>>,
    thresholds_first_observed: Vec<(Threshold, Instant)>,
    conditions_last_observed: BTreeMap<PressureCondition, Instant>,
    thresholds_met: Vec<Threshold>,
    last_observations: Observations,
    metrics: Arc<KubeletMetrics>,
}

impl std::fmt::Debug for EvictionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvictionManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EvictionManager {
    /// A manager enforcing `config`, publishing the node's conditions in `pressure`.
    pub fn new(
        config: EvictionConfig,
        pressure: NodePressure,
        summaries: Arc<dyn SummarySource>,
        pods: Arc<dyn PodEvictor>,
        events: Arc<dyn EventRecorder>,
    ) -> Self {
        Self {
            config,
            pressure,
            events,
            summaries,
            pods,
            reclaimer: None,
            thresholds_first_observed: Vec::new(),
            conditions_last_observed: BTreeMap::new(),
            thresholds_met: Vec::new(),
            last_observations: Observations::new(),
            metrics: Arc::new(KubeletMetrics::new()),
        }
    }

    /// Records `kubelet_evictions` and `kubelet_eviction_stats_age_seconds` in `metrics`
    /// (by default a registry of the manager's own).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Reclaims disk through `reclaimer` before evicting pods for a disk signal.
    #[must_use]
    pub fn with_reclaimer(mut self, reclaimer: Arc<dyn NodeReclaimer>) -> Self {
        self.reclaimer = Some(reclaimer);
        self
    }

    /// Runs forever: a round every [`MONITORING_PERIOD`], at once after an eviction
    /// (whose pod was waited for), as upstream's `Start`.
    pub async fn run(mut self) {
        if self.config.thresholds.is_empty() && !self.config.local_storage_capacity_isolation {
            std::future::pending::<()>().await;
        }
        loop {
            let round = self.synchronize(Instant::now()).await;
            if round.evicted.is_none() {
                tokio::time::sleep(MONITORING_PERIOD).await;
            }
        }
    }

    /// One round at `now`.
    pub async fn synchronize(&mut self, now: Instant) -> Round {
        let summary = match self.summaries.summary().await {
            Ok(summary) => summary,
            Err(e) => {
                warn!(error = %e, "eviction manager: reading the stats summary");
                return Round {
                    conditions: self.pressure.conditions(),
                    evicted: None,
                };
            }
        };
        let observations = observe(&summary);
        let stats: StatsByUid<'_> = summary
            .pods
            .iter()
            .map(|p| (p.pod_ref.uid.as_str(), p))
            .collect();
        let active = self.pods.active_pods().await;

        let (conditions, mut thresholds) = self.decide(&observations, now);
        self.pressure.set(&conditions);

        if self.config.local_storage_capacity_isolation
            && let Some(evicted) = self.local_storage_eviction(&active, &stats).await
        {
            return Round {
                conditions,
                evicted: Some(evicted),
            };
        }
        if thresholds.is_empty() {
            return Round {
                conditions,
                evicted: None,
            };
        }
        sort_by_eviction_priority(&mut thresholds);
        let to_reclaim = thresholds[0];
        let resource = to_reclaim.signal.resource();
        info!(resource = %resource, signal = %to_reclaim.signal, "eviction manager: attempting to reclaim");
        self.events.record_node(NodeEvent {
            node_uid: None,
            event_type: EventType::Warning,
            reason: "EvictionThresholdMet".into(),
            message: format!("Attempting to reclaim {resource}"),
        });
        if self.reclaim_node_level(resource).await {
            info!(resource = %resource, "eviction manager: able to reduce resource pressure without evicting pods");
            return Round {
                conditions,
                evicted: None,
            };
        }
        if active.is_empty() {
            warn!(
                "eviction manager: eviction thresholds have been met, but no pods are active to evict"
            );
            return Round {
                conditions,
                evicted: None,
            };
        }
        let mut ranked = active;
        rank(&mut ranked, to_reclaim.signal, &stats);
        for threshold in &thresholds {
            if let Some(observed) = observations.get(&threshold.signal)
                && !observed.time.is_zero()
            {
                let age = Time::now().unix_nanos() - observed.time.unix_nanos();
                #[allow(clippy::cast_precision_loss)]
                self.metrics
                    .eviction_stats_age
                    .observe(&[threshold.signal.as_str()], age as f64 / 1e9);
            }
        }
        for pod in &ranked {
            let grace = if to_reclaim.is_hard() {
                IMMEDIATE_GRACE_SECONDS
            } else {
                let own = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds);
                own.map_or(self.config.max_pod_grace_period_seconds, |own| {
                    own.min(self.config.max_pod_grace_period_seconds)
                })
            };
            let message = eviction_message(
                resource,
                pod,
                stats.get(PodRef::of(pod).uid.as_str()).copied(),
                &thresholds,
                &observations,
            );
            if self.evict(pod, grace, message).await {
                self.metrics.evictions.inc(&[to_reclaim.signal.as_str()]);
                return Round {
                    conditions,
                    evicted: Some(pod_name(pod)),
                };
            }
        }
        info!("eviction manager: unable to evict any pods from the node");
        Round {
            conditions,
            evicted: None,
        }
    }

    /// The pure part of a round: the conditions to publish and the thresholds that drive
    /// evictions now (grace periods met, stats updated since the last round).
    fn decide(
        &mut self,
        observations: &Observations,
        now: Instant,
    ) -> (Vec<PressureCondition>, Vec<Threshold>) {
        let mut met = thresholds_met(&self.config.thresholds, observations, false);
        // Thresholds met before stay until their minimum reclaim is reached too.
        for t in thresholds_met(&self.thresholds_met, observations, true) {
            if !met.contains(&t) {
                met.push(t);
            }
        }
        let first_observed: Vec<(Threshold, Instant)> = met
            .iter()
            .map(|t| {
                let at = self
                    .thresholds_first_observed
                    .iter()
                    .find(|(seen, _)| seen == t)
                    .map_or(now, |(_, at)| *at);
                (*t, at)
            })
            .collect();
        for t in &met {
            self.conditions_last_observed
                .insert(t.signal.condition(), now);
        }
        let period = self.config.pressure_transition_period;
        self.conditions_last_observed
            .retain(|_, at| now.saturating_duration_since(*at) < period);
        let mut conditions: Vec<PressureCondition> =
            self.conditions_last_observed.keys().copied().collect();
        // Keep the order in which they were first published (upstream's admission
        // message lists them in that order).
        let previous = self.pressure.conditions();
        conditions.sort_by_key(|c| previous.iter().position(|p| p == c).unwrap_or(usize::MAX));
        let grace_met: Vec<Threshold> = first_observed
            .iter()
            .filter(|(t, at)| now.saturating_duration_since(*at) >= t.grace_period)
            .map(|(t, _)| *t)
            .collect();
        self.thresholds_first_observed = first_observed;
        self.thresholds_met = grace_met.clone();
        let updated: Vec<Threshold> = grace_met
            .into_iter()
            .filter(|t| {
                match (
                    observations.get(&t.signal),
                    self.last_observations.get(&t.signal),
                ) {
                    (Some(now), Some(last)) => now.time.is_zero() || now.time > last.time,
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            })
            .collect();
        self.last_observations = observations.clone();
        for t in &updated {
            debug!(signal = %t.signal, "eviction threshold met");
        }
        (conditions, updated)
    }

    /// Upstream's `reclaimNodeLevelResources`: for disk signals, reclaim through the
    /// reclaimer, then read the signals again; true when no threshold is met any more
    /// (minimum reclaims included), so no pod need go.
    async fn reclaim_node_level(&self, resource: crate::threshold::Resource) -> bool {
        use crate::threshold::Resource;
        let Some(reclaimer) = &self.reclaimer else {
            return false;
        };
        if !matches!(resource, Resource::EphemeralStorage | Resource::Inodes) {
            return false;
        }
        reclaimer.reclaim_disk().await;
        match self.summaries.summary().await {
            Ok(summary) => {
                thresholds_met(&self.config.thresholds, &observe(&summary), true).is_empty()
            }
            Err(e) => {
                warn!(error = %e, "eviction manager: reading the stats summary after reclaiming");
                false
            }
        }
    }

    /// Upstream's `localStorageEviction`: a pod whose emptyDir exceeds its `sizeLimit`,
    /// whose ephemeral storage exceeds the sum of its containers' limits, or with a
    /// container over its own limit, is evicted at once (all such pods).
    async fn local_storage_eviction(&self, pods: &[Pod], stats: &StatsByUid<'_>) -> Option<String> {
        let mut evicted = Vec::new();
        for pod in pods {
            let Some(pod_stats) = stats.get(PodRef::of(pod).uid.as_str()) else {
                continue;
            };
            if let Some(message) = crate::local_storage::exceeded(pod, pod_stats)
                && self.evict(pod, 0, message).await
            {
                evicted.push(pod_name(pod));
            }
        }
        (!evicted.is_empty()).then(|| evicted.join(", "))
    }

    /// Upstream's `evictPod`: critical pods are never evicted; others get an `Evicted`
    /// event and are killed with phase Failed, reason `Evicted`, `message` and a
    /// `DisruptionTarget` condition.
    async fn evict(&self, pod: &Pod, grace_seconds: i64, message: String) -> bool {
        let pod_ref = PodRef::of(pod);
        if is_critical(pod) {
            warn!(pod = %pod_ref, "eviction manager: cannot evict a critical pod");
            return false;
        }
        info!(pod = %pod_ref, grace_seconds, %message, "evicting pod");
        self.events.record(PodEvent {
            pod: pod_ref,
            field_path: None,
            event_type: EventType::Warning,
            reason: EVICTED_REASON.into(),
            message: message.clone(),
        });
        self.pods
            .evict(
                pod,
                grace_seconds,
                KillReason {
                    reason: EVICTED_REASON.to_owned(),
                    message,
                },
            )
            .await;
        true
    }
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Upstream's `thresholdsMet`.
fn thresholds_met(
    thresholds: &[Threshold],
    observations: &Observations,
    with_min_reclaim: bool,
) -> Vec<Threshold> {
    thresholds
        .iter()
        .filter(|t| {
            observations
                .get(&t.signal)
                .is_some_and(|o| t.is_met(o.available, o.capacity, with_min_reclaim))
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests;
