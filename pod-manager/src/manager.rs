//! The pod manager: merges source snapshots, runs one worker per pod, relists the runtime
//! (the pod lifecycle event generator) and cleans up pods nobody wants.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kubelet_core::labels::{
    POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_TERMINATION_GRACE_PERIOD_ANNOTATION, POD_UID_LABEL,
};
use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{ContainerFilter, PodRef, ProbeKind, SandboxFilter, StatusReporter};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::task::AbortOnDropHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::LogRotation;
use crate::gc::ContainerGc;
use crate::kill::{KillReason, ManagerCommand, PodKiller};
use crate::probing::PodProbes;
use crate::shutdown::{
    NODE_SHUTDOWN_NOT_ADMITTED_MESSAGE, NODE_SHUTDOWN_NOT_ADMITTED_REASON, NodeShutdown,
};
use crate::snapshot::{pod_snapshot, refreshed_snapshot};
use crate::source::{PodChange, PodSet};
use crate::status::{StatusInputs, pod_status};
use crate::sync::{SyncContext, remove_old_instances, sync_pod, terminate_pod};
use crate::{PodSource, SourceUpdate};

/// Timing of the pod manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// How often the runtime is relisted to notice container changes (upstream 1 s).
    pub relist_period: Duration,
    /// How often each pod is synced without any event (upstream syncFrequency, 1 min).
    pub resync_period: Duration,
    /// The sources whose first snapshot must arrive before pods nobody wants are killed.
    pub sources: Vec<PodSource>,
    /// Container log rotation; `None` leaves logs to grow.
    pub log_rotation: Option<LogRotation>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            relist_period: Duration::from_secs(1),
            resync_period: Duration::from_secs(60),
            sources: vec![PodSource::File],
            log_rotation: Some(LogRotation::default()),
        }
    }
}

/// What a worker should do with its pod.
#[derive(Debug, Clone)]
struct Desired {
    pod: Pod,
    remove: bool,
    /// Kill it on the kubelet's own account (node shutdown, eviction) within this grace
    /// period (seconds), and say so on the channel once done.
    kill: Option<(i64, KillReason, mpsc::Sender<String>)>,
}

struct Worker {
    desired: watch::Sender<Desired>,
    poke: Arc<Notify>,
    handle: JoinHandle<()>,
    /// Set by the worker once its pod will not run again and nothing of it runs.
    finished: Arc<AtomicBool>,
}

/// Runs the pods the sources want.
pub struct PodManager {
    ctx: Arc<SyncContext>,
    reporter: Arc<dyn StatusReporter>,
    config: ManagerConfig,
    pokes: Pokes,
    shutdown: NodeShutdown,
    killer: PodKiller,
    container_gc: ContainerGc,
    commands: mpsc::Receiver<ManagerCommand>,
    sync_loop: crate::SyncLoopMonitor,
}

impl std::fmt::Debug for PodManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

type Pokes = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

/// Asks the worker of a pod to sync it now, e.g. because an object it references (a
/// ConfigMap behind a volume) changed. Cheap to clone; a pod without a worker is ignored.
#[derive(Clone, Default)]
pub struct PodPoker {
    pokes: Pokes,
}

impl std::fmt::Debug for PodPoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodPoker").finish_non_exhaustive()
    }
}

impl PodPoker {
    /// Wakes the worker of the pod with `uid`, if it has one.
    pub fn poke(&self, uid: &str) {
        let pokes = self.pokes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(poke) = pokes.get(uid) {
            poke.notify_one();
        }
    }
}

impl PodManager {
    /// A manager syncing pods through `ctx` and publishing status to `reporter`.
    pub fn new(
        ctx: Arc<SyncContext>,
        reporter: Arc<dyn StatusReporter>,
        config: ManagerConfig,
    ) -> Self {
        let (commands_tx, commands) = mpsc::channel(8);
        let container_gc = ContainerGc::new(
            commands_tx.clone(),
            ctx.runtime.clone(),
            ctx.node.container_logs_dir.clone(),
        );
        Self {
            ctx,
            reporter,
            config,
            pokes: Pokes::default(),
            shutdown: NodeShutdown::new(PodKiller::new(commands_tx.clone())),
            killer: PodKiller::new(commands_tx),
            container_gc,
            commands,
            sync_loop: crate::SyncLoopMonitor::default(),
        }
    }

    /// What the `syncloop` health check reads: when the manager's loop last went round.
    pub fn sync_loop_monitor(&self) -> crate::SyncLoopMonitor {
        self.sync_loop.clone()
    }

    /// The handle a `ShutdownManager` (kubelet-node-agent) kills pods through, and whose
    /// flag tells the node status that the node shuts down.
    pub fn node_shutdown(&self) -> NodeShutdown {
        self.shutdown.clone()
    }

    /// The handle the eviction manager lists and kills pods through.
    pub fn pod_killer(&self) -> PodKiller {
        self.killer.clone()
    }

    /// The handle the eviction manager reclaims finished pods' containers through.
    pub fn container_gc(&self) -> ContainerGc {
        self.container_gc.clone()
    }

    /// A handle that wakes pod workers from outside (object watches).
    pub fn poker(&self) -> PodPoker {
        PodPoker {
            pokes: self.pokes.clone(),
        }
    }

    /// Runs until `updates` closes. Then it returns without touching the pods: a kubelet
    /// that stops leaves its pods running, and adopts them when it starts again. Its
    /// background tasks (relist, runtime events, log rotation, orphan clean-up) end with
    /// it, also when the future is dropped.
    ///
    /// # Errors
    ///
    /// When the relist ends (it panicked): without it no pod change is noticed, so the
    /// kubelet must stop (and be restarted) rather than run on.
    pub async fn run(mut self, mut updates: mpsc::Receiver<SourceUpdate>) -> crate::Result<()> {
        let mut commands = std::mem::replace(&mut self.commands, mpsc::channel(1).1);
        let mut wanted = PodSet::new();
        let mut workers: HashMap<String, Worker> = HashMap::new();
        let mut finishing: Vec<Worker> = Vec::new();
        let pokes: Pokes = self.pokes.clone();
        let (orphans_tx, mut orphans_rx) = mpsc::channel::<Vec<Pod>>(1);
        let _rotation = self.config.log_rotation.map(|policy| {
            AbortOnDropHandle::new(tokio::spawn(crate::logs::rotation_loop(
                self.ctx.runtime.clone(),
                policy,
            )))
        });
        let _events =
            AbortOnDropHandle::new(tokio::spawn(event_loop(self.ctx.clone(), pokes.clone())));
        let _relist = AbortOnDropHandle::new(tokio::spawn(relist_loop(
            self.ctx.clone(),
            pokes.clone(),
            orphans_tx,
            self.config.relist_period,
        )));

        let mut housekeeping = tokio::time::interval(Duration::from_secs(2));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u32 = 0;
        // The first clean-up runs as soon as every source has been seen (what a kubelet
        // stopped before it finished its pods left is gone within seconds of the start,
        // as upstream's housekeeping does), then every ORPHAN_DIRS_EVERY_TICKS.
        let mut next_clean_up: u32 = 0;
        let mut orphan_dirs: Option<AbortOnDropHandle<()>> = None;
        loop {
            self.sync_loop.entered(self.ctx.clock.now());
            tokio::select! {
                _ = housekeeping.tick() => {
                    ticks = ticks.saturating_add(1);
                    // Back-off entries of containers and images that stopped failing
                    // long ago go, as upstream's housekeeping GCs its back-offs.
                    let now = self.ctx.clock.now();
                    for backoff in [&self.ctx.crash_backoff, &self.ctx.image_backoff] {
                        backoff.lock().unwrap_or_else(|p| p.into_inner()).gc(now);
                    }
                    let idle = orphan_dirs.as_ref().is_none_or(|t| t.is_finished());
                    if ticks >= next_clean_up
                        && idle
                        && wanted.has_seen_all(&self.config.sources)
                    {
                        // Taken with the list: a pod whose worker comes later keeps
                        // the user namespace it gets meanwhile.
                        let userns_since = self.ctx.node.user_namespaces.generation();
                        let known: HashSet<String> = workers
                            .keys()
                            .cloned()
                            .chain(finishing.iter().filter_map(|w| w.desired.borrow().pod.metadata.uid.clone()))
                            .collect();
                        next_clean_up = ticks.saturating_add(ORPHAN_DIRS_EVERY_TICKS);
                        orphan_dirs = Some(AbortOnDropHandle::new(tokio::spawn(collect_garbage(
                            self.ctx.clone(),
                            known,
                            userns_since,
                        ))));
                    }
                    // A worker of a wanted pod only ends if it panicked or lost a race with a
                    // revival; the pod must keep a worker.
                    let ended: Vec<String> = workers
                        .iter()
                        .filter(|(_, w)| w.handle.is_finished())
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in ended {
                        if let Some(worker) = workers.remove(&uid) {
                            warn!(pod = %uid, "pod worker ended unexpectedly, starting a new one");
                            let pod = worker.desired.borrow().pod.clone();
                            workers.insert(uid, self.spawn_worker(pod, false, &pokes));
                        }
                    }
                }
                update = updates.recv() => {
                    let Some(update) = update else { break };
                    for change in wanted.apply(update) {
                        self.apply(change, &mut workers, &mut finishing, &pokes);
                    }
                }
                Some(command) = commands.recv() => match command {
                    ManagerCommand::ActivePods(reply) => {
                        // Upstream's filterOutInactivePods: a finished pod is no
                        // candidate for eviction or a shutdown kill.
                        let pods = workers
                            .values()
                            .filter(|w| !w.finished.load(Ordering::Acquire))
                            .map(|w| w.desired.borrow().pod.clone())
                            .collect();
                        let _ = reply.send(pods);
                    }
                    ManagerCommand::WantedPods(reply) => {
                        // Pods being removed too: their containers may still run.
                        let pods = workers
                            .values()
                            .chain(&finishing)
                            .map(|w| w.desired.borrow().pod.clone())
                            .collect();
                        let _ = reply.send(pods);
                    }
                    ManagerCommand::FinishedPods(reply) => {
                        let uids = workers
                            .iter()
                            .filter(|(_, w)| w.finished.load(Ordering::Acquire))
                            .map(|(uid, _)| uid.clone())
                            .collect();
                        let _ = reply.send(uids);
                    }
                    ManagerCommand::Kill(kill) => {
                        for uid in kill.uids {
                            match workers.get(&uid) {
                                Some(worker) => worker.desired.send_modify(|d| {
                                    d.kill = Some((kill.grace_seconds, kill.why.clone(), kill.done.clone()));
                                }),
                                None => {
                                    let _ = kill.done.try_send(uid);
                                }
                            }
                        }
                    }
                },
                orphans = orphans_rx.recv() => {
                    // Only the relist sends here, and it never returns.
                    let Some(orphans) = orphans else {
                        return Err(crate::Error::TaskEnded { task: "relist" });
                    };
                    if !wanted.has_seen_all(&self.config.sources) {
                        continue;
                    }
                    for orphan in orphans {
                        let uid = PodRef::of(&orphan).uid;
                        if workers.contains_key(&uid) || finishing_position(&finishing, &uid).is_some() {
                            continue;
                        }
                        info!(pod = %PodRef::of(&orphan), "killing a pod no source wants");
                        finishing.push(self.spawn_worker(orphan, true, &pokes));
                    }
                }
            }
            finishing.retain(|w| {
                let done = w.handle.is_finished();
                if done && let Some(uid) = w.desired.borrow().pod.metadata.uid.as_deref() {
                    // Gone from the node: its resource records go too.
                    self.ctx.node.allocations.forget(uid);
                }
                !done
            });
        }
        for worker in workers.into_values().chain(finishing) {
            worker.handle.abort();
        }
        Ok(())
    }

    fn apply(
        &self,
        change: PodChange,
        workers: &mut HashMap<String, Worker>,
        finishing: &mut Vec<Worker>,
        pokes: &Pokes,
    ) {
        let uid = change.uid().to_owned();
        match change {
            PodChange::Removed(_) => {
                if let Some(worker) = workers.remove(&uid) {
                    worker.desired.send_modify(|d| d.remove = true);
                    finishing.push(worker);
                }
            }
            PodChange::Added(pod) | PodChange::Updated(pod)
                if pod.metadata.deletion_timestamp.is_some() =>
            {
                // Deleted in the API server (graceful deletion): stop it within the
                // deletion grace period; the status reporter's final delete follows.
                if let Some(worker) = workers.remove(&uid) {
                    worker.desired.send_modify(|d| {
                        d.pod = pod;
                        d.remove = true;
                    });
                    finishing.push(worker);
                } else if let Some(index) = finishing_position(finishing, &uid) {
                    finishing[index].desired.send_modify(|d| d.pod = pod);
                } else {
                    finishing.push(self.spawn_worker(pod, true, pokes));
                }
            }
            PodChange::Added(pod) | PodChange::Updated(pod) => {
                if let Some(worker) = workers.get(&uid) {
                    worker.desired.send_modify(|d| d.pod = pod);
                    return;
                }
                if self.shutdown.is_shutting_down() && finishing_position(finishing, &uid).is_none()
                {
                    // Upstream's shutdown admission handler: no new pod on a node going down.
                    info!(pod = %PodRef::of(&pod), "refusing a pod: the node is shutting down");
                    self.ctx
                        .metrics
                        .admission_rejections_total
                        .inc(&[NODE_SHUTDOWN_NOT_ADMITTED_REASON]);
                    let reporter = self.reporter.clone();
                    tokio::spawn(async move {
                        let status = PodStatus {
                            phase: Some(crate::status::FAILED.to_owned()),
                            reason: Some(NODE_SHUTDOWN_NOT_ADMITTED_REASON.to_owned()),
                            message: Some(NODE_SHUTDOWN_NOT_ADMITTED_MESSAGE.to_owned()),
                            ..PodStatus::default()
                        };
                        if let Err(e) = reporter.report(&pod, &status).await {
                            warn!(error = %e, "reporting a pod refused for the node shutdown");
                        }
                    });
                    return;
                }
                // Wanted again while still being removed: the same worker keeps it, so two
                // workers never act on one pod.
                let worker = match finishing_position(finishing, &uid) {
                    Some(index) => {
                        let worker = finishing.swap_remove(index);
                        worker.desired.send_modify(|d| {
                            d.pod = pod;
                            d.remove = false;
                        });
                        worker
                    }
                    None => self.spawn_worker(pod, false, pokes),
                };
                workers.insert(uid, worker);
            }
        }
    }

    fn spawn_worker(&self, pod: Pod, remove: bool, pokes: &Pokes) -> Worker {
        let r = PodRef::of(&pod);
        let (desired, desired_rx) = watch::channel(Desired {
            pod,
            remove,
            kill: None,
        });
        let poke = Arc::new(Notify::new());
        let finished = Arc::new(AtomicBool::new(false));
        pokes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r.uid.clone(), poke.clone());
        let span = info_span!("pod", uid = %r.uid, namespace = %r.namespace, name = %r.name);
        let handle = tokio::spawn(
            pod_worker(
                self.ctx.clone(),
                self.reporter.clone(),
                desired_rx,
                poke.clone(),
                self.config.resync_period,
                pokes.clone(),
                finished.clone(),
            )
            .instrument(span),
        );
        Worker {
            desired,
            poke,
            handle,
            finished,
        }
    }
}

/// The worker still removing the pod `uid`, if any.
fn finishing_position(finishing: &[Worker], uid: &str) -> Option<usize> {
    finishing.iter().position(|w| {
        !w.handle.is_finished() && w.desired.borrow().pod.metadata.uid.as_deref() == Some(uid)
    })
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Wake the worker so a dropped sender is noticed promptly.
        self.poke.notify_one();
    }
}

/// `clock`'s current time as an API timestamp.
pub(crate) fn now(clock: &dyn kubelet_core::Clock) -> Timestamp {
    let nanos = clock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    Timestamp::from_nanosecond(i128::try_from(nanos).unwrap_or_default())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Tears down the volumes of a pod that will not run again (evicted, shut down,
/// finished), once: an evicted pod's emptyDir must not keep the disk or memory that got
/// it evicted. A failure is retried on the next sync. Then the pod is `finished`: its
/// dead containers may go under disk pressure.
async fn release_volumes(ctx: &SyncContext, uid: &str, finished: &AtomicBool) {
    if finished.load(Ordering::Acquire) {
        return;
    }
    // Never under a container that still runs (a kill that failed).
    match pod_snapshot(ctx.runtime.as_ref(), uid).await {
        Ok(snapshot) if !snapshot.any_running() => {}
        _ => return,
    }
    if let Some(devices) = &ctx.devices {
        devices.release(uid).await;
    }
    match ctx.volumes.tear_down_pod(uid).await {
        Ok(()) => finished.store(true, Ordering::Release),
        Err(e) => warn!(error = %e, "tearing down the volumes of a finished pod"),
    }
}

/// Upstream's `SyncTerminatingPod` and `SyncTerminatedPod` for a pod that will not run
/// again: what still runs of it stops (sidecars, its sandbox and with it the pod's IP),
/// then its volumes go and it counts as finished.
async fn stop_finished_pod(
    ctx: &SyncContext,
    pod: &Pod,
    snapshot: &crate::status::RuntimeSnapshot,
    finished: &AtomicBool,
) {
    if (snapshot.any_running() || snapshot.ready_sandbox().is_some())
        && let Err(e) = terminate_pod(ctx, pod, snapshot, false).await
    {
        warn!(error = %e, "stopping a finished pod");
        return;
    }
    release_volumes(ctx, &PodRef::of(pod).uid, finished).await;
}

/// Upstream's sysctl, AppArmor and eviction (node pressure) admission of a new pod; a
/// rejection gets a Warning event and a log line.
fn admit(ctx: &SyncContext, pod: &Pod) -> Result<(), crate::admission::Rejection> {
    crate::admission::admit_isolation(pod, &ctx.node.security)
        .and_then(|()| crate::admission::admit_under_pressure(pod, &ctx.node.pressure.conditions()))
        .inspect_err(|rejection| {
            warn!(reason = %rejection.reason, message = %rejection.message, "pod rejected");
            rejection.record(&ctx.metrics);
            ctx.events.record(kubelet_core::PodEvent {
                pod: PodRef::of(pod),
                field_path: None,
                event_type: kubelet_core::EventType::Warning,
                reason: rejection.reason.clone().into(),
                message: rejection.message.clone(),
            });
        })
}

/// Runs `work` (stopping the pod with a grace period of `grace` seconds) unless the
/// pod's grace period is shortened meanwhile, as a second delete with a shorter grace
/// does: then `work` is dropped (a preStop hook or sleep in progress ends with it) and
/// `None` tells the caller to start over with the new grace, as upstream's pod worker
/// does.
async fn unless_grace_shortened<T>(
    desired: &mut watch::Receiver<Desired>,
    grace: i64,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let shortened = async {
        loop {
            if desired.changed().await.is_err() {
                // The manager is gone: only the work itself can end this.
                std::future::pending::<()>().await;
            }
            if crate::sync::grace_period(&desired.borrow().pod) < grace {
                return;
            }
        }
    };
    tokio::select! {
        out = work => Some(out),
        () = shortened => None,
    }
}

/// The grace period of a container killed by its failed liveness or startup probe
/// (upstream `setTerminationGracePeriod`): the probe's `terminationGracePeriodSeconds`
/// when set and the pod is not being deleted; `None` keeps the pod's.
fn probe_kill_grace(pod: &Pod, container: &Container, kind: ProbeKind) -> Option<i64> {
    if pod.metadata.deletion_grace_period_seconds.is_some() {
        return None;
    }
    let probe = match kind {
        ProbeKind::Liveness => container.liveness_probe.as_ref(),
        ProbeKind::Startup => container.startup_probe.as_ref(),
        ProbeKind::Readiness => None,
    };
    probe.and_then(|p| p.termination_grace_period_seconds)
}

/// Whether the pod's phase, as its source gave it, is Succeeded or Failed.
fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Upstream `activeDeadlineSeconds`: whether the pod has run past it.
fn past_active_deadline(pod: &Pod, started: Timestamp, now: Timestamp) -> bool {
    let Some(deadline) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) else {
        return false;
    };
    now.duration_since(started).as_secs() >= deadline
}

/// The status a pod showed before, which a new one keeps transition times, restart
/// counts and the like from: the last one this worker published, else the API's copy (a
/// kubelet started again finds its pods' statuses there, as upstream's status manager
/// takes `pod.Status` when it has none cached).
fn shown_before<'a>(last: &'a Option<PodStatus>, pod: &'a Pod) -> Option<&'a PodStatus> {
    last.as_ref().or(pod.status.as_ref())
}

async fn pod_worker(
    ctx: Arc<SyncContext>,
    reporter: Arc<dyn StatusReporter>,
    mut desired: watch::Receiver<Desired>,
    poke: Arc<Notify>,
    resync: Duration,
    pokes: Pokes,
    finished: Arc<AtomicBool>,
) {
    // When the pod started: its first sandbox's creation if it already runs (a restarted
    // kubelet adopting it), else now.
    let mut started: Option<Timestamp> = None;
    let mut last_status: Option<PodStatus> = None;
    let mut probes = PodProbes::default();
    let mut deadline_exceeded = false;
    let mut startup = StartupTracker::new(ctx.clock.now(), ctx.metrics.clone());
    let mut last_pod: Option<Pod> = None;
    let mut shut_down = false;
    // Whether the pod passed admission; a rejected pod never runs, as upstream.
    let mut admission: Option<Result<(), crate::admission::Rejection>> = None;
    // The node's addresses, as every status of the pod shows them.
    let host_ips: Vec<String> = ctx.node.host_ips.iter().map(ToString::to_string).collect();
    loop {
        let want = desired.borrow_and_update().clone();
        let pod = want.pod;
        let sync_started = std::time::Instant::now();
        let r = PodRef::of(&pod);
        let snapshot = match pod_snapshot(ctx.runtime.as_ref(), &r.uid).await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                warn!(error = %e, "reading the pod's runtime state");
                if wait(&mut desired, &poke, Duration::from_secs(2)).await {
                    continue;
                }
                return;
            }
        };

        if want.remove {
            // Probes must not restart what is being stopped; readiness still counts.
            probes.keep_only_readiness();
            // A pod deleted through the API gets its final status, with its containers'
            // terminated states and a terminal phase, before its final delete (upstream's
            // SyncTerminatingPod, then canBeDeleted).
            let snapshot = if pod.metadata.deletion_timestamp.is_some() && last_status.is_some() {
                let grace = crate::sync::grace_period(&pod);
                let stopping = terminate_pod(&ctx, &pod, &snapshot, false);
                // While the containers stop (preStop hooks, grace), readiness changes
                // are published, as upstream's status manager does for a terminating
                // pod: Ready goes False before the pod is gone.
                let published = std::sync::Mutex::new(last_status.take());
                let shown = || published.lock().unwrap_or_else(|p| p.into_inner());
                let publishing = async {
                    loop {
                        poke.notified().await;
                        let verdicts = probes.verdicts(&pod, &snapshot, ctx.started);
                        let previous = shown().clone();
                        let status = pod_status(&StatusInputs {
                            pod: &pod,
                            snapshot: &snapshot,
                            waiting: &Default::default(),
                            runtime_name: &ctx.runtime_name,
                            host_ips: &host_ips,
                            start_time: started.map(Time).as_ref(),
                            previous: shown_before(&previous, &pod),
                            now: now(ctx.clock.as_ref()),
                            probes: &verdicts,
                            allocations: Some(&ctx.node.allocations),
                        });
                        if previous.as_ref() == Some(&status) {
                            continue;
                        }
                        match reporter.report(&pod, &status).await {
                            Ok(()) => *shown() = Some(status),
                            Err(e) => warn!(error = %e, "reporting a terminating pod's status"),
                        }
                    }
                };
                let stopped = tokio::select! {
                    stopped = unless_grace_shortened(&mut desired, grace, stopping) => stopped,
                    never = publishing => match never {},
                };
                last_status = published.into_inner().unwrap_or_else(|p| p.into_inner());
                probes = PodProbes::default();
                let Some(stopped) = stopped else {
                    info!("grace period shortened while stopping, starting over with it");
                    continue;
                };
                if let Err(e) = stopped {
                    warn!(error = %e, "stopping the pod, will retry");
                    if !wait(&mut desired, &poke, Duration::from_secs(2)).await {
                        return;
                    }
                    continue;
                }
                let stopped = pod_snapshot(ctx.runtime.as_ref(), &r.uid)
                    .await
                    .unwrap_or(snapshot);
                let final_status = pod_status(&StatusInputs {
                    pod: &pod,
                    snapshot: &stopped,
                    waiting: &Default::default(),
                    runtime_name: &ctx.runtime_name,
                    host_ips: &host_ips,
                    start_time: started.map(Time).as_ref(),
                    previous: shown_before(&last_status, &pod),
                    now: now(ctx.clock.as_ref()),
                    probes: &Default::default(),
                    allocations: Some(&ctx.node.allocations),
                });
                match reporter.report(&pod, &final_status).await {
                    Ok(()) => last_status = Some(final_status),
                    Err(e) => warn!(error = %e, "reporting the pod's final status"),
                }
                stopped
            } else {
                snapshot
            };
            let grace = crate::sync::grace_period(&pod);
            let removing = terminate_pod(&ctx, &pod, &snapshot, true);
            let Some(removed) = unless_grace_shortened(&mut desired, grace, removing).await else {
                info!("grace period shortened while stopping, starting over with it");
                continue;
            };
            match removed {
                Ok(()) if !desired.borrow().remove => {
                    // Wanted again meanwhile: run it anew.
                    info!("pod removed, and wanted again");
                    finished.store(false, Ordering::Release);
                    continue;
                }
                Ok(()) => {
                    info!("pod terminated and removed");
                    ctx.env_objects.release(&r.uid);
                    if let Err(e) = reporter.forget(&r).await {
                        warn!(error = %e, "forgetting the pod's status");
                    }
                    pokes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&r.uid);
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "terminating the pod, will retry");
                    if !wait(&mut desired, &poke, Duration::from_secs(2)).await {
                        return;
                    }
                    continue;
                }
            }
        }

        if is_terminal(&pod) || finished.load(Ordering::Acquire) {
            // Succeeded or Failed in the API server, or as this worker last reported
            // it: it never runs again (a restarted kubelet, or a resync after the
            // finished pod's containers were reclaimed, must not start it anew), and
            // nothing of it is probed.
            probes = PodProbes::default();
            stop_finished_pod(&ctx, &pod, &snapshot, &finished).await;
            if let Some((_, _, done)) = &want.kill
                && !shut_down
            {
                // Nothing of it runs to be killed.
                shut_down = true;
                let _ = done.try_send(r.uid.clone());
            }
            if !wait(&mut desired, &poke, resync).await {
                return;
            }
            continue;
        }
        if let Err(rejection) = admission.get_or_insert_with(|| admit(&ctx, &pod)) {
            // A pod a restarted kubelet no longer admits (its configuration changed)
            // stops, as upstream's rejected pods do.
            if snapshot.any_running()
                && let Err(e) = terminate_pod(&ctx, &pod, &snapshot, false).await
            {
                warn!(error = %e, "stopping a rejected pod");
            }
            if last_status.is_none() {
                let mut status = crate::admission::rejected_status(&pod, rejection);
                status
                    .start_time
                    .get_or_insert_with(|| Time(now(ctx.clock.as_ref())));
                match reporter.report(&pod, &status).await {
                    Ok(()) => last_status = Some(status),
                    Err(e) => warn!(error = %e, "reporting the pod's rejection"),
                }
            }
            if !wait(&mut desired, &poke, resync).await {
                return;
            }
            continue;
        }
        ctx.env_objects.prepare(&pod).await;

        let started = *started.get_or_insert_with(|| {
            // The start time never changes once shown (upstream's status manager keeps
            // the API's), also across kubelet restarts.
            let shown = pod.status.as_ref().and_then(|s| s.start_time.as_ref());
            shown.map(|t| t.0).unwrap_or_else(|| {
                snapshot
                    .sandboxes
                    .iter()
                    .map(|s| s.sandbox.created_at)
                    .filter(|&nanos| nanos > 0)
                    .min()
                    .and_then(|nanos| Timestamp::from_nanosecond(i128::from(nanos)).ok())
                    .unwrap_or_else(|| now(ctx.clock.as_ref()))
            })
        });
        let start_time = Time(started);
        if last_status.is_none() {
            // Publish Pending at once, as upstream's status manager does, so a first sync
            // stuck on a slow pull still shows the pod.
            let status = pod_status(&StatusInputs {
                pod: &pod,
                snapshot: &snapshot,
                waiting: &Default::default(),
                runtime_name: &ctx.runtime_name,
                host_ips: &host_ips,
                start_time: Some(&start_time),
                previous: shown_before(&last_status, &pod),
                now: now(ctx.clock.as_ref()),
                // Nothing probed yet: containers adopted from an earlier kubelet show
                // what the API showed, others wait for their probes.
                probes: &probes.verdicts(&pod, &snapshot, ctx.started),
                allocations: Some(&ctx.node.allocations),
            });
            startup.observe(&pod, None, &status, None, ctx.clock.now());
            match reporter.report(&pod, &status).await {
                Ok(()) => last_status = Some(status),
                Err(e) => warn!(error = %e, "reporting the pod's status"),
            }
        }

        if let Some((grace, why, done)) = &want.kill {
            if !shut_down {
                shut_down = true;
                // Probes must not restart what the kill stops.
                probes = PodProbes::default();
                let status = kill_pod(&ctx, &pod, &snapshot, *grace, why, |shown, after| {
                    pod_status(&StatusInputs {
                        pod: shown,
                        snapshot: after,
                        waiting: &Default::default(),
                        runtime_name: &ctx.runtime_name,
                        host_ips: &host_ips,
                        start_time: Some(&start_time),
                        previous: shown_before(&last_status, &pod),
                        now: now(ctx.clock.as_ref()),
                        probes: &Default::default(),
                        allocations: Some(&ctx.node.allocations),
                    })
                })
                .await;
                match reporter.report(&pod, &status).await {
                    Ok(()) => last_status = Some(status),
                    Err(e) => warn!(error = %e, "reporting the pod's status"),
                }
                release_volumes(&ctx, &r.uid, &finished).await;
                let _ = done.try_send(r.uid.clone());
            }
            if !wait(&mut desired, &poke, resync).await {
                return;
            }
            continue;
        }

        let mut outcome = crate::sync::SyncOutcome::default();
        // Whether sync_pod ran to its end, so its outcome names everything it created.
        let mut synced = false;
        let mut killed_unhealthy = false;
        if !deadline_exceeded && past_active_deadline(&pod, started, now(ctx.clock.as_ref())) {
            info!("pod passed its activeDeadlineSeconds, killing it");
            deadline_exceeded = true;
        }
        if deadline_exceeded {
            if snapshot.any_running()
                && let Err(e) = terminate_pod(&ctx, &pod, &snapshot, false).await
            {
                warn!(error = %e, "stopping a pod past its deadline");
            }
        } else {
            // A failed liveness or startup probe kills the container; the restart policy
            // then decides, on the sync its exit triggers.
            for (id, kind) in probes.unhealthy() {
                killed_unhealthy = true;
                let instance = snapshot.containers.iter().find(|c| c.container.id == id);
                let container = instance.and_then(|i| {
                    pod.spec.as_ref().and_then(|s| {
                        s.containers
                            .iter()
                            .chain(s.init_containers.iter().flatten())
                            .find(|c| c.name == i.container.metadata.name)
                    })
                });
                if let Some(container) = container {
                    info!(container = %container.name, ?kind, "container failed its probe, will be restarted");
                    let pod_ip = crate::spec::pod_ip(
                        &pod,
                        snapshot.latest_sandbox().map_or("", |s| s.ip.as_str()),
                        &ctx.node,
                    );
                    let grace = probe_kill_grace(&pod, container, kind);
                    crate::sync::kill_container(&ctx, &pod, container, &id, &pod_ip, grace).await;
                }
            }
            let verdicts = probes.verdicts(&pod, &snapshot, ctx.started);
            match sync_pod(&ctx, &pod, &snapshot, &verdicts).await {
                Ok(o) => {
                    outcome = o;
                    synced = true;
                }
                Err(e) => warn!(error = %e, "syncing the pod"),
            }
        }

        // Read the runtime again only when something was done to it: by id when the sync
        // said what it created (one round trip, not a list and then statuses), listed
        // when it failed part-way.
        let after = if outcome.acted || deadline_exceeded || killed_unhealthy {
            let read = if synced {
                refreshed_snapshot(
                    ctx.runtime.as_ref(),
                    &snapshot,
                    &outcome.created_sandboxes,
                    &outcome.created_containers,
                )
                .await
            } else {
                pod_snapshot(ctx.runtime.as_ref(), &r.uid).await
            };
            read.unwrap_or(snapshot)
        } else {
            snapshot
        };
        remove_old_instances(&ctx, &after).await;
        if let Some(prober) = &ctx.prober {
            let pod_ip = crate::spec::pod_ip(
                &pod,
                after.ready_sandbox().map_or("", |s| s.ip.as_str()),
                &ctx.node,
            );
            probes.reconcile(&ctx, prober, &pod, &after, &pod_ip, &poke);
        }
        let verdicts = probes.verdicts(&pod, &after, ctx.started);
        let mut status = pod_status(&StatusInputs {
            pod: &pod,
            snapshot: &after,
            waiting: &outcome.waiting,
            runtime_name: &ctx.runtime_name,
            host_ips: &host_ips,
            start_time: Some(&start_time),
            previous: shown_before(&last_status, &pod),
            now: now(ctx.clock.as_ref()),
            probes: &verdicts,
            allocations: Some(&ctx.node.allocations),
        });
        if deadline_exceeded {
            status.phase = Some(crate::status::FAILED.to_owned());
            status.reason = Some("DeadlineExceeded".to_owned());
            status.message =
                Some("Pod was active on the node longer than the specified deadline".to_owned());
        }
        startup.observe(
            &pod,
            last_status.as_ref(),
            &status,
            outcome.pulling,
            ctx.clock.now(),
        );
        if last_status.as_ref() != Some(&status) {
            debug!(phase = ?status.phase, "pod status changed");
            match reporter.report(&pod, &status).await {
                Ok(()) => last_status = Some(status),
                Err(e) => warn!(error = %e, "reporting the pod's status"),
            }
        }
        // Upstream's pod worker terminates a pod once its status is terminal: from then
        // on it never runs again, and its volumes go (its containers under disk
        // pressure).
        let reported_terminal = last_status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| {
                phase == crate::status::SUCCEEDED || phase == crate::status::FAILED
            });
        if reported_terminal {
            stop_finished_pod(&ctx, &pod, &after, &finished).await;
        }

        let operation = match &last_pod {
            None => "create",
            Some(last) if *last != pod => "update",
            Some(_) => "sync",
        };
        ctx.metrics
            .pod_worker_duration
            .observe(&[operation], sync_started.elapsed().as_secs_f64());
        last_pod = Some(pod.clone());

        let mut sleep = resync;
        if let Some(deadline) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds)
            && !deadline_exceeded
        {
            let left = u64::try_from(deadline).unwrap_or(0).saturating_sub(
                now(ctx.clock.as_ref())
                    .duration_since(started)
                    .as_secs()
                    .unsigned_abs(),
            );
            sleep = sleep.min(Duration::from_secs(left));
        }
        if let Some(at) = outcome.wake_at {
            let until = at.duration_since(ctx.clock.now()).unwrap_or_default();
            sleep = sleep.min(until + Duration::from_millis(50));
        }
        if !wait(&mut desired, &poke, sleep).await {
            return;
        }
    }
}

/// How often (in 2-second housekeeping ticks) the periodic clean-up (`collect_garbage`) runs.
const ORPHAN_DIRS_EVERY_TICKS: u32 = 15;

/// The periodic clean-up: the volumes and directories of pods that no worker owns and
/// the runtime no longer knows (left by a kubelet that stopped before finishing them),
/// as upstream's `cleanupOrphanedPodDirs`; their log directories and the container log
/// symlinks whose log is gone, and the node-wide dead container limit
/// (`--maximum-dead-containers`), as upstream's container GC.
async fn collect_garbage(ctx: Arc<SyncContext>, mut known: HashSet<String>, userns_since: u64) {
    // A pod the runtime still has is being finished (or adopted): not an orphan yet.
    match ctx.runtime.list_sandboxes(&SandboxFilter::default()).await {
        Ok(sandboxes) => known.extend(
            sandboxes
                .iter()
                .filter_map(|s| s.labels.get(POD_UID_LABEL).cloned()),
        ),
        Err(e) => {
            debug!(error = %e, "listing sandboxes for orphaned pod directories");
            return;
        }
    }
    if let Err(e) = ctx.volumes.clean_up_orphans(&known).await {
        warn!(error = %e, "cleaning up orphaned pod volumes");
    }
    if ctx.node.user_namespaces.allocated() > 0 {
        let userns = ctx.node.user_namespaces.clone();
        let pods = known.clone();
        let released =
            tokio::task::spawn_blocking(move || userns.release_orphans(&pods, userns_since)).await;
        if let Err(e) = released {
            warn!(error = %e, "releasing orphaned user namespaces");
        }
    }
    crate::gc::remove_orphaned_pod_log_dirs(&ctx.node.pod_logs_root, &known).await;
    crate::gc::remove_dangling_log_symlinks(ctx.runtime.as_ref(), &ctx.node.container_logs_dir)
        .await;
    crate::gc::enforce_max_containers(
        ctx.runtime.as_ref(),
        &ctx.node.container_logs_dir,
        ctx.node.container_gc,
        ctx.clock.now(),
    )
    .await;
}

/// Waits for a new desired state, a poke from the relist, or `timeout`. False when the
/// manager is gone (the kubelet is stopping).
async fn wait(desired: &mut watch::Receiver<Desired>, poke: &Notify, timeout: Duration) -> bool {
    tokio::select! {
        changed = desired.changed() => changed.is_ok(),
        () = poke.notified() => desired.has_changed().is_ok(),
        () = tokio::time::sleep(timeout) => true,
    }
}

/// Wakes the worker of a pod as soon as the runtime reports an event on one of its
/// containers (upstream's evented PLEG), where the runtime has an event stream; the
/// relist stays as the safety net and is all there is on runtimes without one.
async fn event_loop(ctx: Arc<SyncContext>, pokes: Pokes) {
    use futures::StreamExt;
    loop {
        let mut stream = match ctx.runtime.container_events().await {
            Ok(stream) => stream,
            Err(e) if e.runtime_kind() == Some(kubelet_core::RuntimeErrorKind::Unimplemented) => {
                info!("the runtime has no container event stream; relisting only");
                return;
            }
            Err(e) => {
                debug!(error = %e, "subscribing to container events");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    let Some(uid) = event.sandbox_labels.get(POD_UID_LABEL) else {
                        continue;
                    };
                    let poke = pokes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(uid)
                        .cloned();
                    if let Some(poke) = poke {
                        debug!(pod = %uid, container = %event.container_id, kind = ?event.kind, "container event");
                        poke.notify_one();
                    }
                }
                Err(e) => {
                    debug!(error = %e, "container event stream broke");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Kills a pod on the kubelet's own account within `grace` seconds (or its own shorter
/// terminationGracePeriodSeconds), as upstream's shutdown and eviction managers ask
/// `killPodFunc`, and returns its final status: `Failed` (unless it had succeeded),
/// `why`'s reason and message, and a `DisruptionTarget` condition.
async fn kill_pod(
    ctx: &SyncContext,
    pod: &Pod,
    snapshot: &crate::status::RuntimeSnapshot,
    grace: i64,
    why: &KillReason,
    status_of: impl Fn(&Pod, &crate::status::RuntimeSnapshot) -> PodStatus,
) -> PodStatus {
    let mut doomed = pod.clone();
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds);
    let grace = match own {
        Some(own) if own <= grace => own,
        _ => grace,
    };
    doomed.metadata.deletion_grace_period_seconds = Some(grace);
    info!(grace, reason = %why.reason, message = %why.message, "killing the pod");
    if let Err(e) = terminate_pod(ctx, &doomed, snapshot, false).await {
        warn!(error = %e, reason = %why.reason, "killing the pod");
    }
    let uid = PodRef::of(pod).uid;
    let after = match pod_snapshot(ctx.runtime.as_ref(), &uid).await {
        Ok(after) => after,
        Err(_) => snapshot.clone(),
    };
    // The containers show how they ended (none is restarted any more); the phase is
    // the pod's own unless it succeeded, as upstream's status function.
    let mut ended = pod.clone();
    if let Some(spec) = ended.spec.as_mut() {
        spec.restart_policy = Some("Never".to_owned());
    }
    let mut status = status_of(&ended, &after);
    let own_phase = status_of(pod, &after).phase;
    status.phase = match own_phase.as_deref() {
        Some(crate::status::SUCCEEDED) => own_phase,
        _ => Some(crate::status::FAILED.to_owned()),
    };
    status.reason = Some(why.reason.clone());
    status.message = Some(why.message.clone());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".to_owned(),
        status: "True".to_owned(),
        reason: Some("TerminationByKubelet".to_owned()),
        message: Some(why.message.clone()),
        last_transition_time: Some(Time(now(ctx.clock.as_ref()))),
        ..PodCondition::default()
    });
    status
}

/// Records a pod's start metrics once, as upstream's pod startup latency tracker:
/// `kubelet_pod_start_duration_seconds` (first seen to Running) and
/// `kubelet_pod_start_sli_duration_seconds` (created to every container running, the
/// time spent pulling images left out).
struct StartupTracker {
    metrics: Arc<KubeletMetrics>,
    first_seen: SystemTime,
    pulling: Option<(SystemTime, SystemTime)>,
    running_recorded: bool,
    saw_starting: bool,
    sli_recorded: bool,
}

impl StartupTracker {
    fn new(now: SystemTime, metrics: Arc<KubeletMetrics>) -> Self {
        Self {
            metrics,
            first_seen: now,
            pulling: None,
            running_recorded: false,
            saw_starting: false,
            sli_recorded: false,
        }
    }

    fn observe(
        &mut self,
        pod: &Pod,
        previous: Option<&PodStatus>,
        status: &PodStatus,
        pulling: Option<(SystemTime, SystemTime)>,
        now: SystemTime,
    ) {
        if let Some((first, last)) = pulling {
            self.pulling = Some(match self.pulling {
                Some((a, b)) => (a.min(first), b.max(last)),
                None => (first, last),
            });
        }
        let phase = |s: Option<&PodStatus>| s.and_then(|s| s.phase.clone());
        if !self.running_recorded && phase(Some(status)).as_deref() == Some("Running") {
            self.running_recorded = true;
            // A pod already running when first seen (a restarted kubelet) is not starting.
            if phase(previous).as_deref() == Some("Pending") {
                let seconds = now.duration_since(self.first_seen).unwrap_or_default();
                self.metrics
                    .pod_start_duration
                    .observe(&[], seconds.as_secs_f64());
            }
        }
        let all_running = status.container_statuses.as_ref().is_some_and(|list| {
            !list.is_empty()
                && list
                    .iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        });
        if !all_running {
            self.saw_starting = true;
            return;
        }
        // A pod whose containers already ran when first seen (adopted by a restarted
        // kubelet) did not start here: no SLI.
        if self.sli_recorded || !self.saw_starting {
            return;
        }
        self.sli_recorded = true;
        let Some(created) = pod.metadata.creation_timestamp.as_ref() else {
            return;
        };
        let created = SystemTime::from(created.0);
        let starting = now.duration_since(created).unwrap_or_default();
        let pulling = self
            .pulling
            .and_then(|(first, last)| last.duration_since(first).ok())
            .unwrap_or_default();
        self.metrics
            .pod_start_sli_duration
            .observe(&[], starting.saturating_sub(pulling).as_secs_f64());
    }
}

/// `kubelet_running_pods` (pods with a ready sandbox) and `kubelet_running_containers`
/// by state, from one relist, as upstream's PLEG records them.
fn record_running(
    metrics: &KubeletMetrics,
    sandboxes: &[kubelet_core::Sandbox],
    containers: &[kubelet_core::Container],
) {
    let running_pods: HashSet<&str> = sandboxes
        .iter()
        .filter(|s| s.state == kubelet_core::SandboxState::Ready)
        .filter_map(|s| s.labels.get(POD_UID_LABEL).map(String::as_str))
        .collect();
    metrics.running_pods.set(&[], running_pods.len() as f64);
    let mut by_state: BTreeMap<&str, usize> = ["created", "running", "exited", "unknown"]
        .into_iter()
        .map(|state| (state, 0))
        .collect();
    for c in containers {
        let state = match c.state {
            kubelet_core::ContainerState::Created => "created",
            kubelet_core::ContainerState::Running => "running",
            kubelet_core::ContainerState::Exited => "exited",
            kubelet_core::ContainerState::Unknown => "unknown",
        };
        *by_state.entry(state).or_default() += 1;
    }
    for (state, count) in by_state {
        metrics.running_containers.set(&[state], count as f64);
    }
}

/// The pod lifecycle event generator: lists every sandbox and container (two calls,
/// whatever the number of pods), pokes the workers of pods whose containers changed, and
/// reports pods in the runtime that have no worker.
async fn relist_loop(
    ctx: Arc<SyncContext>,
    pokes: Pokes,
    orphans: mpsc::Sender<Vec<Pod>>,
    period: Duration,
) {
    let mut previous: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_relist: Option<std::time::Instant> = None;
    loop {
        interval.tick().await;
        let relist_started = std::time::Instant::now();
        if let Some(last) = last_relist.replace(relist_started) {
            ctx.metrics
                .pleg_relist_interval
                .observe(&[], relist_started.duration_since(last).as_secs_f64());
        }
        // A hung runtime must not hang the relist forever; the next tick tries again.
        // Both lists are asked at once: one round trip to the runtime, not two. (A
        // container listed without its sandbox, or the reverse, is a change the next
        // relist sees completed.)
        let (sandbox_filter, container_filter) =
            (SandboxFilter::default(), ContainerFilter::default());
        let listed = tokio::time::timeout(
            period.max(Duration::from_secs(10)),
            futures::future::try_join(
                ctx.runtime.list_sandboxes(&sandbox_filter),
                ctx.runtime.list_containers(&container_filter),
            ),
        )
        .await;
        let (sandboxes, containers) = match listed {
            Ok(Ok(lists)) => lists,
            Ok(Err(e)) => {
                debug!(error = %e, "relist failed");
                continue;
            }
            Err(_) => {
                warn!("relist timed out");
                continue;
            }
        };
        record_running(&ctx.metrics, &sandboxes, &containers);
        let mut current: HashMap<String, Vec<(String, i32)>> = HashMap::new();
        // Each pod's first sandbox: what a pod no worker owns is rebuilt from.
        let mut first_sandbox: HashMap<&str, &kubelet_core::Sandbox> = HashMap::new();
        for s in &sandboxes {
            let Some(uid) = s.labels.get(POD_UID_LABEL) else {
                continue;
            };
            current
                .entry(uid.clone())
                .or_default()
                .push((s.id.clone(), s.state as i32));
            first_sandbox.entry(uid).or_insert(s);
        }
        for c in &containers {
            let Some(uid) = c.labels.get(POD_UID_LABEL) else {
                continue;
            };
            current
                .entry(uid.clone())
                .or_default()
                .push((c.id.clone(), c.state as i32 + 10));
        }
        for entries in current.values_mut() {
            entries.sort();
        }
        let changed: HashSet<&String> = current
            .iter()
            .filter(|(uid, entries)| previous.get(*uid) != Some(entries))
            .map(|(uid, _)| uid)
            .chain(previous.keys().filter(|uid| !current.contains_key(*uid)))
            .collect();
        let unowned: Vec<&str> = {
            let pokes = pokes.lock().unwrap_or_else(|p| p.into_inner());
            for uid in &changed {
                if let Some(poke) = pokes.get(*uid) {
                    poke.notify_one();
                }
            }
            first_sandbox
                .keys()
                .copied()
                .filter(|uid| !pokes.contains_key(*uid))
                .collect()
        };
        // Built only for the pods no worker owns (none, on a settled node), not for
        // every pod at every relist.
        let known = unowned_pods(&unowned, &first_sandbox, &containers);
        if !known.is_empty() {
            // Full channel: the manager has not handled the last report yet; skip.
            let _ = orphans.try_send(known);
        }
        ctx.metrics
            .pleg_relist_duration
            .observe(&[], relist_started.elapsed().as_secs_f64());
        let now = ctx
            .clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        ctx.metrics.pleg_last_seen.set(&[], now.as_secs_f64());
        previous = current;
    }
}

/// The pods `unowned` names rebuilt from their first sandbox (`first_sandbox`), with
/// the termination grace period their containers were created with.
fn unowned_pods(
    unowned: &[&str],
    first_sandbox: &HashMap<&str, &kubelet_core::Sandbox>,
    containers: &[kubelet_core::Container],
) -> Vec<Pod> {
    let mut pods: HashMap<&str, Pod> = unowned
        .iter()
        .filter_map(|&uid| {
            let s = first_sandbox.get(uid)?;
            Some((uid, orphan_pod(uid, &s.labels, &s.annotations)))
        })
        .collect();
    if !pods.is_empty() {
        for c in containers {
            if let Some(pod) = c
                .labels
                .get(POD_UID_LABEL)
                .and_then(|uid| pods.get_mut(uid.as_str()))
                && let Some(grace) = c.annotations.get(POD_TERMINATION_GRACE_PERIOD_ANNOTATION)
                && let Some(spec) = pod.spec.as_mut()
            {
                spec.termination_grace_period_seconds = grace.parse().ok();
            }
        }
    }
    pods.into_values().collect()
}

/// A pod rebuilt from its sandbox's labels, enough to stop and remove it.
fn orphan_pod(
    uid: &str,
    labels: &kubelet_core::StringMap,
    _annotations: &kubelet_core::StringMap,
) -> Pod {
    Pod {
        metadata: ObjectMeta {
            uid: Some(uid.to_owned()),
            name: labels.get(POD_NAME_LABEL).cloned(),
            namespace: labels.get(POD_NAMESPACE_LABEL).cloned(),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unowned_pods_are_rebuilt_with_their_grace_period() {
        let labels = |uid: &str, name: &str| -> kubelet_core::StringMap {
            [
                (POD_UID_LABEL.to_owned(), uid.to_owned()),
                (POD_NAME_LABEL.to_owned(), name.to_owned()),
                (POD_NAMESPACE_LABEL.to_owned(), "ns".to_owned()),
            ]
            .into()
        };
        let sandbox = |uid: &str, name: &str| kubelet_core::Sandbox {
            id: format!("s-{uid}"),
            labels: labels(uid, name),
            ..Default::default()
        };
        let container = |uid: &str, grace: &str| kubelet_core::Container {
            id: format!("c-{uid}"),
            labels: labels(uid, "ignored"),
            annotations: [(
                POD_TERMINATION_GRACE_PERIOD_ANNOTATION.to_owned(),
                grace.to_owned(),
            )]
            .into(),
            ..Default::default()
        };
        let sandboxes = [sandbox("a", "orphan"), sandbox("b", "owned")];
        let first: HashMap<&str, &kubelet_core::Sandbox> =
            [("a", &sandboxes[0]), ("b", &sandboxes[1])].into();
        let containers = [container("a", "7"), container("b", "9")];
        let pods = unowned_pods(&["a"], &first, &containers);
        assert_eq!(pods.len(), 1, "only the unowned pod: {pods:?}");
        assert_eq!(pods[0].metadata.uid.as_deref(), Some("a"));
        assert_eq!(pods[0].metadata.name.as_deref(), Some("orphan"));
        assert_eq!(pods[0].metadata.namespace.as_deref(), Some("ns"));
        let spec = pods[0].spec.as_ref().expect("spec");
        assert_eq!(spec.termination_grace_period_seconds, Some(7));
        assert!(unowned_pods(&[], &first, &containers).is_empty());
    }

    #[test]
    fn active_deadline() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                active_deadline_seconds: Some(5),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t0 = Timestamp::UNIX_EPOCH;
        let at = |s| Timestamp::from_second(s).expect("time");
        assert!(!past_active_deadline(&pod, t0, at(4)));
        assert!(past_active_deadline(&pod, t0, at(5)));
        pod.spec = Some(PodSpec::default());
        assert!(!past_active_deadline(&pod, t0, at(500)));
    }

    #[test]
    fn a_probe_kill_uses_the_probes_grace_period_unless_the_pod_is_deleted() {
        let probe = |grace: Option<i64>| k8s_openapi::api::core::v1::Probe {
            termination_grace_period_seconds: grace,
            ..Default::default()
        };
        let container = Container {
            name: "app".into(),
            liveness_probe: Some(probe(Some(2))),
            startup_probe: Some(probe(None)),
            readiness_probe: Some(probe(Some(7))),
            ..Default::default()
        };
        let mut pod = Pod::default();
        assert_eq!(
            probe_kill_grace(&pod, &container, ProbeKind::Liveness),
            Some(2)
        );
        assert_eq!(probe_kill_grace(&pod, &container, ProbeKind::Startup), None);
        assert_eq!(
            probe_kill_grace(&pod, &container, ProbeKind::Readiness),
            None
        );
        pod.metadata.deletion_grace_period_seconds = Some(30);
        assert_eq!(
            probe_kill_grace(&pod, &container, ProbeKind::Liveness),
            None
        );
    }
}
