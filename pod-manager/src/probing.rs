//! The probes of one pod's containers: a task per running container and probe kind, as
//! upstream's prober manager runs a worker per probe, with results the pod worker reads
//! for readiness, startup and liveness.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{
    ContainerState, EventRecorder, EventType, PodEvent, PodRef, ProbeKind, ProbeOutcome,
    ProbeTarget, Prober,
};
use kubelet_probes::{ProbeResult, prepare_probe, run_probe_loop};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::status::RuntimeSnapshot;

type Results = Arc<Mutex<HashMap<(String, ProbeKind), ProbeResult>>>;

/// What the probes say about one running container instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeVerdict {
    /// Readiness: true without a readiness probe, else once it succeeded.
    pub ready: bool,
    /// Startup: true without a startup probe, else once it succeeded.
    pub started: bool,
}

/// A prober that records upstream's `Unhealthy` (failure) and `ProbeWarning` events for
/// every attempt of one container's probes.
struct EventingProber {
    inner: Arc<dyn Prober>,
    events: Arc<dyn EventRecorder>,
    field_path: String,
    metrics: Arc<KubeletMetrics>,
}

#[async_trait::async_trait]
impl Prober for EventingProber {
    async fn probe(
        &self,
        kind: ProbeKind,
        probe: &Probe,
        target: &ProbeTarget,
    ) -> kubelet_core::Result<ProbeOutcome> {
        let kind_name = probe_type(kind);
        let started = std::time::Instant::now();
        let attempt = self.inner.probe(kind, probe, target).await;
        let seconds = started.elapsed().as_secs_f64();
        let result = match &attempt {
            Ok(ProbeOutcome::Success | ProbeOutcome::Warning(_)) => "successful",
            Ok(ProbeOutcome::Failure(_)) => "failed",
            Err(_) => "unknown",
        };
        let pod = &target.pod;
        self.metrics.prober_probe_total.inc(&[
            kind_name,
            result,
            &target.container_name,
            &pod.name,
            &pod.namespace,
            &pod.uid,
        ]);
        // As upstream, durations are kept for probes that answered, not for failures.
        if result != "failed" {
            self.metrics.prober_probe_duration.observe(
                &[kind_name, &target.container_name, &pod.name, &pod.namespace],
                seconds,
            );
        }
        let outcome = match attempt {
            Ok(outcome) => outcome,
            Err(e) => {
                // Upstream reports the error and its worker discards the attempt.
                self.events.record(PodEvent {
                    pod: target.pod.clone(),
                    field_path: Some(self.field_path.clone()),
                    event_type: EventType::Warning,
                    reason: "Unhealthy".into(),
                    message: format!(
                        "{kind_name} probe errored and resulted in unknown state: {e}"
                    ),
                });
                return Err(e);
            }
        };
        let event = match &outcome {
            ProbeOutcome::Success => None,
            ProbeOutcome::Warning(output) => Some((
                EventType::Warning,
                "ProbeWarning",
                format!("{kind_name} probe warning: {output}"),
            )),
            ProbeOutcome::Failure(output) => Some((
                EventType::Warning,
                "Unhealthy",
                format!("{kind_name} probe failed: {output}"),
            )),
        };
        if let Some((event_type, reason, message)) = event {
            self.events.record(PodEvent {
                pod: target.pod.clone(),
                field_path: Some(self.field_path.clone()),
                event_type,
                reason: reason.into(),
                message,
            });
        }
        Ok(outcome)
    }
}

/// Upstream's `probe_type` label.
fn probe_type(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Liveness => "Liveness",
        ProbeKind::Readiness => "Readiness",
        ProbeKind::Startup => "Startup",
    }
}

/// Forgets a probe worker's metric series when it stops, as upstream's worker does.
struct ProbeSeries {
    kind: ProbeKind,
    target: ProbeTarget,
    metrics: Arc<KubeletMetrics>,
}

impl Drop for ProbeSeries {
    fn drop(&mut self) {
        let kind = probe_type(self.kind);
        let pod = &self.target.pod;
        let container = self.target.container_name.as_str();
        for result in ["successful", "failed", "unknown"] {
            self.metrics.prober_probe_total.remove(&[
                kind,
                result,
                container,
                &pod.name,
                &pod.namespace,
                &pod.uid,
            ]);
        }
        self.metrics
            .prober_probe_duration
            .remove(&[kind, container, &pod.name, &pod.namespace]);
    }
}

/// The probe tasks and results of one pod.
#[derive(Default)]
pub(crate) struct PodProbes {
    tasks: HashMap<(String, ProbeKind), JoinHandle<()>>,
    results: Results,
}

impl Drop for PodProbes {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn probe_of(container: &Container, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Liveness => container.liveness_probe.as_ref(),
        ProbeKind::Readiness => container.readiness_probe.as_ref(),
        ProbeKind::Startup => container.startup_probe.as_ref(),
    }
}

/// The containers that may carry probes: app containers and sidecars.
fn probed_containers(pod: &Pod) -> Vec<&Container> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .filter(|c| crate::restart::is_sidecar(c))
                .chain(s.containers.iter())
                .collect()
        })
        .unwrap_or_default()
}

impl PodProbes {
    fn result(&self, id: &str, kind: ProbeKind) -> Option<ProbeResult> {
        lock(&self.results).get(&(id.to_owned(), kind)).copied()
    }

    /// Starts the probe loops running containers need and stops those of containers that
    /// no longer run. Liveness and readiness wait for a startup probe to succeed.
    pub fn reconcile(
        &mut self,
        ctx: &crate::SyncContext,
        prober: &Arc<dyn Prober>,
        pod: &Pod,
        snapshot: &RuntimeSnapshot,
        pod_ip: &str,
        poke: &Arc<Notify>,
    ) {
        let running: HashMap<&str, &kubelet_core::ContainerStatus> = snapshot
            .containers
            .iter()
            .filter(|c| c.container.state == ContainerState::Running)
            .map(|c| (c.container.id.as_str(), c))
            .collect();
        self.tasks.retain(|(id, _), task| {
            let keep = running.contains_key(id.as_str());
            if !keep {
                task.abort();
            }
            keep
        });
        lock(&self.results).retain(|(id, _), _| running.contains_key(id.as_str()));

        for container in probed_containers(pod) {
            let Some(instance) = snapshot.latest(&container.name) else {
                continue;
            };
            let id = instance.container.id.as_str();
            if !running.contains_key(id) {
                continue;
            }
            let started = container.startup_probe.is_none()
                || self.result(id, ProbeKind::Startup) == Some(ProbeResult::Success);
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                let Some(probe) = probe_of(container, kind) else {
                    continue;
                };
                if kind != ProbeKind::Startup && !started {
                    continue;
                }
                let key = (id.to_owned(), kind);
                if self.tasks.contains_key(&key) {
                    continue;
                }
                let probe = match prepare_probe(probe, container) {
                    Ok(probe) => probe,
                    Err(e) => {
                        warn!(container = %container.name, ?kind, error = %e, "probe cannot run");
                        continue;
                    }
                };
                let target = ProbeTarget {
                    pod: PodRef::of(pod),
                    pod_ip: pod_ip.to_owned(),
                    container_name: container.name.clone(),
                    container_id: id.to_owned(),
                };
                let started_at = tokio_instant_of(instance.started_at, ctx.clock.now());
                let results = self.results.clone();
                let poke = poke.clone();
                let prober: Arc<dyn Prober> = Arc::new(EventingProber {
                    inner: prober.clone(),
                    events: ctx.events.clone(),
                    field_path: crate::sync::container_field_path(pod, &container.name),
                    metrics: ctx.metrics.clone(),
                });
                let result_key = key.clone();
                let series = ProbeSeries {
                    kind,
                    target: target.clone(),
                    metrics: ctx.metrics.clone(),
                };
                let task = tokio::spawn(async move {
                    let _series = series;
                    let outcome = run_probe_loop(
                        prober.as_ref(),
                        kind,
                        &probe,
                        &target,
                        started_at,
                        |result| {
                            let previous = lock(&results).insert(result_key.clone(), result);
                            if previous != Some(result) {
                                debug!(container = %target.container_name, ?kind, ?result, "probe result changed");
                                poke.notify_one();
                            }
                            ControlFlow::Continue(())
                        },
                    )
                    .await;
                    debug!(?kind, ?outcome, "probe loop ended");
                });
                self.tasks.insert(key, task);
            }
        }
    }

    /// Readiness and startup of every running container with probes, by container id.
    pub fn verdicts(
        &self,
        pod: &Pod,
        snapshot: &RuntimeSnapshot,
    ) -> BTreeMap<String, ProbeVerdict> {
        let mut verdicts = BTreeMap::new();
        for container in probed_containers(pod) {
            let Some(instance) = snapshot.latest(&container.name) else {
                continue;
            };
            let id = &instance.container.id;
            let passed = |kind| self.result(id, kind) == Some(ProbeResult::Success);
            let started = container.startup_probe.is_none() || passed(ProbeKind::Startup);
            let ready =
                started && (container.readiness_probe.is_none() || passed(ProbeKind::Readiness));
            verdicts.insert(id.clone(), ProbeVerdict { ready, started });
        }
        verdicts
    }

    /// Stops liveness and startup probes and keeps readiness running, for a pod being
    /// stopped (upstream's prober keeps readiness workers while a pod terminates, so
    /// Ready follows the containers until they are gone). Startup results stay, so a
    /// started container's readiness still counts.
    pub fn keep_only_readiness(&mut self) {
        self.tasks.retain(|(_, kind), task| {
            let keep = *kind == ProbeKind::Readiness;
            if !keep {
                task.abort();
            }
            keep
        });
        lock(&self.results).retain(|(_, kind), _| *kind != ProbeKind::Liveness);
    }

    /// Running containers whose liveness or startup probe failed: to be restarted.
    pub fn unhealthy(&self) -> Vec<(String, ProbeKind)> {
        lock(&self.results)
            .iter()
            .filter(|((_, kind), result)| {
                **result == ProbeResult::Failure && *kind != ProbeKind::Readiness
            })
            .map(|((id, kind), _)| (id.clone(), *kind))
            .collect()
    }
}

/// The monotonic instant a container started at, from its wall-clock start time and the
/// wall-clock time `now`.
fn tokio_instant_of(started_at_nanos: i64, now_wall: SystemTime) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let started = u64::try_from(started_at_nanos)
        .map(|n| SystemTime::UNIX_EPOCH + Duration::from_nanos(n))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let ago = now_wall.duration_since(started).unwrap_or_default();
    now.checked_sub(ago).unwrap_or(now)
}
