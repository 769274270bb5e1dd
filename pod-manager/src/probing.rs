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

/// A container that started this long before the kubelet did was adopted from an
/// earlier kubelet (upstream's `kubeletRestartGracePeriod`).
const RESTART_GRACE: Duration = Duration::from_secs(10);

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
    ///
    /// A container running since before the kubelet started (`kubelet_started`, less
    /// upstream's 10 s grace) was adopted from an earlier kubelet: until its probes have
    /// a result it stays as the API shows it, started if its status said so and ready if
    /// the pod was Ready, so a kubelet restart does not take a ready pod out of its
    /// Services (upstream's `setReadyStateOnKubeletRestart` and the kept `started`, with
    /// `ChangeContainerStatusOnKubeletRestart` off, its default since 1.35).
    pub fn verdicts(
        &self,
        pod: &Pod,
        snapshot: &RuntimeSnapshot,
        kubelet_started: SystemTime,
    ) -> BTreeMap<String, ProbeVerdict> {
        let adopted_before = kubelet_started
            .checked_sub(RESTART_GRACE)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_nanos()).ok())
            .unwrap_or(0);
        let shown = pod.status.as_ref();
        let pod_was_ready = shown
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let was_started = |name: &str| {
            shown
                .into_iter()
                .flat_map(|s| {
                    s.container_statuses
                        .iter()
                        .chain(s.init_container_statuses.iter())
                        .flatten()
                })
                .any(|s| s.name == name && s.started == Some(true))
        };
        let mut verdicts = BTreeMap::new();
        for container in probed_containers(pod) {
            let Some(instance) = snapshot.latest(&container.name) else {
                continue;
            };
            let id = &instance.container.id;
            let adopted = instance.container.state == ContainerState::Running
                && instance.started_at > 0
                && instance.started_at < adopted_before;
            // A probe's result, else what an adopted container showed.
            let passed = |kind, shown: bool| match self.result(id, kind) {
                Some(result) => result == ProbeResult::Success,
                None => adopted && shown,
            };
            let started = container.startup_probe.is_none()
                || passed(ProbeKind::Startup, was_started(&container.name));
            let ready = started
                && (container.readiness_probe.is_none()
                    || passed(ProbeKind::Readiness, pod_was_ready));
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerStatus as ApiContainerStatus, ExecAction, PodCondition, PodSpec, PodStatus,
    };
    use kubelet_core::{ContainerMetadata, ContainerStatus};

    const ID: &str = "c1";

    /// A pod whose container `main` has a readiness and a startup probe, and whose API
    /// status says the pod is `ready` and the container `started`.
    fn pod(ready: &str, started: bool) -> Pod {
        let probe = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    readiness_probe: Some(probe.clone()),
                    startup_probe: Some(probe),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ApiContainerStatus {
                    name: "main".into(),
                    started: Some(started),
                    ready: ready == "True",
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The runtime has `main` running since `started_at`.
    fn running_since(started_at: SystemTime) -> RuntimeSnapshot {
        let nanos = started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after the epoch")
            .as_nanos();
        RuntimeSnapshot {
            containers: vec![ContainerStatus {
                container: kubelet_core::Container {
                    id: ID.into(),
                    metadata: ContainerMetadata {
                        name: "main".into(),
                        attempt: 0,
                    },
                    state: ContainerState::Running,
                    ..Default::default()
                },
                started_at: i64::try_from(nanos).expect("nanoseconds"),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn verdict(probes: &PodProbes, pod: &Pod, snapshot: &RuntimeSnapshot) -> ProbeVerdict {
        let kubelet_started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        probes.verdicts(pod, snapshot, kubelet_started)[ID]
    }

    #[test]
    fn a_container_adopted_from_an_earlier_kubelet_keeps_what_the_api_shows_until_probed() {
        let kubelet_started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let adopted = running_since(kubelet_started - Duration::from_secs(60));
        let probes = PodProbes::default();
        let kept = ProbeVerdict {
            ready: true,
            started: true,
        };
        assert_eq!(verdict(&probes, &pod("True", true), &adopted), kept);
        // A pod that was not ready stays so; a container not started is not ready.
        let unready = verdict(&probes, &pod("False", true), &adopted);
        assert_eq!((unready.started, unready.ready), (true, false));
        let unstarted = verdict(&probes, &pod("True", false), &adopted);
        assert_eq!((unstarted.started, unstarted.ready), (false, false));
        // Once probed, the probes decide.
        lock(&probes.results).insert((ID.into(), ProbeKind::Readiness), ProbeResult::Failure);
        assert!(!verdict(&probes, &pod("True", true), &adopted).ready);
        lock(&probes.results).insert((ID.into(), ProbeKind::Readiness), ProbeResult::Success);
        lock(&probes.results).insert((ID.into(), ProbeKind::Startup), ProbeResult::Failure);
        let failed = verdict(&probes, &pod("True", true), &adopted);
        assert_eq!((failed.started, failed.ready), (false, false));
    }

    #[test]
    fn a_container_started_by_this_kubelet_waits_for_its_probes() {
        let kubelet_started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // Within the grace of the kubelet's start: not taken as adopted.
        let recent = running_since(kubelet_started - Duration::from_secs(5));
        let probes = PodProbes::default();
        let waiting = verdict(&probes, &pod("True", true), &recent);
        assert_eq!((waiting.started, waiting.ready), (false, false));
        lock(&probes.results).insert((ID.into(), ProbeKind::Startup), ProbeResult::Success);
        lock(&probes.results).insert((ID.into(), ProbeKind::Readiness), ProbeResult::Success);
        assert_eq!(
            verdict(&probes, &pod("False", false), &recent),
            ProbeVerdict {
                ready: true,
                started: true,
            }
        );
    }
}
