//! One sync of one pod: bring the runtime to what the pod wants, as upstream's
//! `computePodActions` + `SyncPod` do: sandbox, then init containers one by one,
//! sidecars, then app containers, with image pull policies and restart back-off.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod};
use kubelet_core::labels::{CONTAINER_HASH_ANNOTATION, container_hash};
use kubelet_core::{
    Backoff, ContainerState, ContainerStatus, EventRecorder, EventType, ImageService, Mount,
    PodEvent, PodRef, RegistryAuth, Runtime, SandboxConfig,
};
use kubelet_volumes::{PodVolumes, VolumeManager};
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::pull_records::PulledWith;
use crate::restart::{is_sidecar, pod_restart_policy, should_restart, should_restart_init};
use crate::spec::{self, EnvObjects, NodeContext};
use crate::status::{
    CRASH_LOOP_BACK_OFF, CREATE_CONTAINER_CONFIG_ERROR, CREATE_CONTAINER_ERROR,
    ERR_IMAGE_NEVER_PULL, ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF, RUN_CONTAINER_ERROR,
    RuntimeSnapshot, Waiting, restart_count,
};
use crate::{Result, hooks};

/// How soon a pod whose volumes could not be set up is tried again.
const VOLUME_RETRY: Duration = Duration::from_secs(5);
/// Upstream's floor for a container's stop grace period, in seconds.
const MIN_GRACE_SECONDS: i64 = 2;
/// Default terminationMessagePath.
pub(crate) const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// What every pod worker shares.
pub struct SyncContext {
    /// The container runtime.
    pub runtime: Arc<dyn Runtime>,
    /// The image service.
    pub images: Arc<dyn ImageService>,
    /// Node facts for the spec translation.
    pub node: NodeContext,
    /// ConfigMaps and Secrets for environment variables.
    pub env_objects: Arc<dyn EnvObjects>,
    /// Name of the runtime, the prefix of container ids (`containerd`).
    pub runtime_name: String,
    /// CrashLoopBackOff, shared by all pods as upstream.
    pub crash_backoff: Mutex<Backoff>,
    /// ImagePullBackOff, shared by all pods as upstream.
    pub image_backoff: Mutex<Backoff>,
    /// Runs liveness, readiness and startup probes; `None` ignores probes (running
    /// containers count as ready and started).
    pub prober: Option<Arc<dyn kubelet_core::Prober>>,
    /// Where pod and container events go (`NoEvents` in standalone mode).
    pub events: Arc<dyn EventRecorder>,
    /// Sets up the pods' volumes before their containers start, and tears them down.
    pub volumes: Arc<VolumeManager>,
    /// What "now" is for back-off, pod start and status times ([`SystemClock`](kubelet_core::SystemClock)
    /// in a kubelet; a clock following tokio's paused time in tests).
    pub clock: Arc<dyn kubelet_core::Clock>,
    /// The node's cgroups: each pod's own cgroup is made there (with
    /// [`NodeContext::pod_cgroups`](crate::spec::NodeContext)) and removed with the pod;
    /// `None` leaves pod cgroups alone (tests on a fake runtime).
    pub cgroups: Option<Arc<dyn kubelet_cgroups::CgroupManager>>,
    /// Where the runtime handler of a pod's `runtimeClassName` is looked up
    /// ([`NoRuntimeClasses`](crate::NoRuntimeClasses) without an API server).
    pub runtime_classes: Arc<dyn crate::RuntimeClasses>,
    /// The node's registry credentials (credential provider plugins), tried after the
    /// pod's imagePullSecrets ([`NoImageCredentials`](kubelet_core::NoImageCredentials)
    /// without plugins).
    pub image_credentials: Arc<dyn kubelet_core::ImageCredentials>,
    /// Which credentials pulled each image, checked before a pod uses an image already
    /// on the node (`imagePullCredentialsVerificationPolicy`); `None` never checks.
    pub pull_records: Option<Arc<crate::pull_records::PullRecords>>,
    /// Device plugins' devices for the containers that ask for them (the device
    /// manager); `None` without device plugins support (tests).
    pub devices: Option<Arc<dyn kubelet_core::DeviceAllocator>>,
    /// Where pod starts, container starts, probes, relists and pod workers are counted.
    pub metrics: Arc<kubelet_core::metrics::kubelet::KubeletMetrics>,
    /// When this kubelet started: containers running since before it were adopted from
    /// an earlier kubelet and keep their shown readiness until their probes say
    /// otherwise.
    pub started: std::time::SystemTime,
}

impl std::fmt::Debug for SyncContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncContext")
            .field("node", &self.node)
            .field("runtime_name", &self.runtime_name)
            .finish_non_exhaustive()
    }
}

/// Upstream's field path of a container: `spec.containers{name}`,
/// `spec.initContainers{name}` or `spec.ephemeralContainers{name}`.
pub(crate) fn container_field_path(pod: &Pod, name: &str) -> String {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == name));
    let ephemeral = spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else if ephemeral {
        format!("spec.ephemeralContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

/// Records an event about one container of `pod`; a container id in the message is
/// replaced by the container's name so repeated events deduplicate, as upstream.
pub(crate) fn container_event(
    ctx: &SyncContext,
    pod: &Pod,
    container: &str,
    event_type: EventType,
    reason: &'static str,
    message: String,
) {
    ctx.events.record(PodEvent {
        pod: PodRef::of(pod),
        field_path: Some(container_field_path(pod, container)),
        event_type,
        reason: reason.into(),
        message,
    });
}

/// Records an event about the pod itself.
pub(crate) fn pod_event(
    ctx: &SyncContext,
    pod: &Pod,
    event_type: EventType,
    reason: &'static str,
    message: String,
) {
    ctx.events.record(PodEvent {
        pod: PodRef::of(pod),
        field_path: None,
        event_type,
        reason: reason.into(),
        message,
    });
}

/// Records upstream's `LifecycleHTTPFallback` Warning event about `pod`: an HTTPS hook
/// answered in plain HTTP and retried over HTTP.
fn http_fallback_event<'a>(
    ctx: &'a SyncContext,
    pod: &'a Pod,
) -> impl Fn(String) + Send + Sync + 'a {
    move |message| {
        pod_event(
            ctx,
            pod,
            EventType::Warning,
            "LifecycleHTTPFallback",
            message,
        )
    }
}

fn lock(backoff: &Mutex<Backoff>) -> MutexGuard<'_, Backoff> {
    backoff.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pod's ready sandbox: where its containers are created.
struct ReadySandbox {
    id: String,
    attempt: u32,
    ip: String,
    /// Built when first needed: a sync that starts nothing never needs it.
    config: std::sync::OnceLock<SandboxConfig>,
    /// The pod's volumes, set up for this sync; containers started in it mount them.
    volumes: PodVolumes,
}

impl ReadySandbox {
    /// The sandbox's configuration, which container creation and image pulls carry.
    fn config(&self, ctx: &SyncContext, pod: &Pod) -> Result<&SandboxConfig> {
        if let Some(config) = self.config.get() {
            return Ok(config);
        }
        // CreateContainer does not carry the handler; only RunPodSandbox needs it.
        let config = spec::sandbox_config(pod, self.attempt, "", &ctx.node)?;
        Ok(self.config.get_or_init(|| config))
    }
}

/// What a sync decided that the runtime cannot tell: why containers wait, and when the
/// pod wants to be synced again.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    /// Waiting reasons by container name.
    pub waiting: BTreeMap<String, Waiting>,
    /// The earliest time a back-off ends.
    pub wake_at: Option<SystemTime>,
    /// Whether the sync changed anything in the runtime (so its state must be read again).
    pub acted: bool,
    /// When this sync's first image pull started and its last one ended (the pod start
    /// SLI leaves pulling out).
    pub pulling: Option<(SystemTime, SystemTime)>,
    /// The sandboxes this sync created, so the state after it is read by id.
    pub created_sandboxes: Vec<String>,
    /// The containers this sync created, with their sandbox.
    pub created_containers: Vec<crate::snapshot::Instance>,
}

impl SyncOutcome {
    fn wait(&mut self, container: &str, reason: &str, message: String) {
        self.waiting.insert(
            container.to_owned(),
            Waiting {
                reason: reason.to_owned(),
                message,
            },
        );
    }

    fn wake(&mut self, at: SystemTime) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

fn pod_name(pod: &Pod) -> String {
    let r = PodRef::of(pod);
    format!("{}_{}({})", r.name, r.namespace, r.uid)
}

fn crash_key(pod: &Pod, container: &Container) -> String {
    let r = PodRef::of(pod);
    let resources = serde_json::to_string(&container.resources).unwrap_or_default();
    format!(
        "{}/{}/{}/{}/{}/{resources}",
        r.name,
        r.namespace,
        r.uid,
        container.name,
        container.image.as_deref().unwrap_or_default()
    )
}

/// The grace period of a container being stopped: the pod's deletion grace period when
/// deleting, else terminationGracePeriodSeconds (default 30), at least 2 seconds.
pub fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
}

/// Brings the runtime in line with `pod`; `snapshot` is what the runtime had before and
/// `probes` what the probes said of its containers, by container id.
pub async fn sync_pod(
    ctx: &SyncContext,
    pod: &Pod,
    snapshot: &RuntimeSnapshot,
    probes: &BTreeMap<String, crate::ProbeVerdict>,
) -> Result<SyncOutcome> {
    let mut outcome = SyncOutcome::default();
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);

    // The sandbox the pod keeps, if any. More than one ready sandbox (a crash between
    // creating one and recording it) is reconciled as upstream does: all are stopped and
    // one is made anew, so no pause process or pod IP leaks.
    let ready_sandboxes = snapshot
        .sandboxes
        .iter()
        .filter(|s| s.sandbox.state == kubelet_core::SandboxState::Ready)
        .count();
    if ready_sandboxes > 1 {
        info!(
            ready_sandboxes,
            "multiple sandboxes are ready for the pod, reconciling them"
        );
    }
    let current = snapshot
        .ready_sandbox()
        .filter(|s| host_network || !s.ip.is_empty())
        .filter(|_| ready_sandboxes <= 1);

    // 0. Volumes, as upstream's WaitForAttachAndMount: nothing starts without them, and
    // set-up runs on every sync so configMap, secret, downward API and token contents
    // follow their sources while the pod runs. A pod that needs a sandbox also needs its
    // cgroup first; neither waits for the other.
    let previous = snapshot.latest_sandbox();
    // A finished Never pod keeps its dead sandbox: nothing runs again.
    let finished_never = previous.is_some()
        && pod_restart_policy(&spec) == crate::restart::NEVER
        && !snapshot.containers.is_empty();
    let new_sandbox = current.is_none() && !finished_never;
    let pod_cgroup = async {
        match (&ctx.node.pod_cgroups, &ctx.cgroups) {
            (Some(settings), Some(cgroups)) if new_sandbox => {
                crate::pod_cgroup::ensure(cgroups, settings, pod).await
            }
            _ => Ok(()),
        }
    };
    let (volumes, pod_cgroup) = tokio::join!(ctx.volumes.set_up_pod(pod), pod_cgroup);
    let volumes = match volumes {
        // A volume that was set up before and failed to refresh stays in use with its
        // last contents (the containers keep restarting); its refresh is retried.
        Ok(volumes) if !volumes.refresh_failures().is_empty() => {
            for failure in volumes.refresh_failures() {
                pod_event(ctx, pod, EventType::Warning, "FailedMount", failure.clone());
            }
            outcome.wake(ctx.clock.now() + VOLUME_RETRY);
            volumes
        }
        Ok(volumes) => volumes,
        Err(e) => {
            warn!(error = %e, "setting up the pod's volumes");
            pod_event(ctx, pod, EventType::Warning, "FailedMount", e.to_string());
            outcome.wake(ctx.clock.now() + VOLUME_RETRY);
            return Ok(outcome);
        }
    };

    // 1. The sandbox.
    let sandbox = match current {
        Some(status) => ReadySandbox {
            id: status.sandbox.id.clone(),
            attempt: status.sandbox.metadata.attempt,
            ip: spec::pod_ip(pod, &status.ip, &ctx.node),
            config: std::sync::OnceLock::new(),
            volumes,
        },
        None => {
            if finished_never {
                return Ok(outcome);
            }
            if previous.is_some() {
                info!("pod sandbox changed, killing the pod's containers and recreating it");
                pod_event(
                    ctx,
                    pod,
                    EventType::Normal,
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.".to_owned(),
                );
                kill_containers(ctx, pod, snapshot, None).await;
                for old in &snapshot.sandboxes {
                    if let Err(e) = ctx.runtime.stop_sandbox(&old.sandbox.id).await {
                        warn!(sandbox = %old.sandbox.id, error = %e, "stopping an old sandbox");
                    }
                }
            }
            pod_cgroup?;
            let attempt = previous.map_or(0, |p| p.sandbox.metadata.attempt + 1);
            let created = step("sandbox", async {
                let handler = crate::runtime_handler(ctx.runtime_classes.as_ref(), pod)
                    .await
                    .map_err(|message| crate::Error::RuntimeClass { message })?;
                allocate_user_namespace(ctx, pod, &handler).await?;
                let config = spec::sandbox_config(pod, attempt, &handler, &ctx.node)?;
                let id = run_sandbox(ctx, &config).await?;
                Ok::<_, crate::Error>((id, config))
            });
            outcome.acted = true;
            let (id, config) = match created.await {
                Ok(created) => {
                    outcome.created_sandboxes.push(created.0.clone());
                    created
                }
                Err(e) => {
                    let why = match &e {
                        crate::Error::Spec { reason, .. } => reason.clone(),
                        other => other.to_string(),
                    };
                    pod_event(
                        ctx,
                        pod,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {why}"),
                    );
                    return Err(e);
                }
            };
            let ip = spec::pod_ip(pod, &ctx.runtime.sandbox_status(&id).await?.ip, &ctx.node);
            ReadySandbox {
                id,
                attempt,
                ip,
                config: config.into(),
                volumes,
            }
        }
    };
    let fresh_sandbox = current.is_none();
    let in_sandbox =
        |status: &&ContainerStatus| !fresh_sandbox && status.container.sandbox_id == sandbox.id;

    // Once a regular container ran in this sandbox the pod is initialized: its regular
    // init containers never run again, even when their exited instances are gone.
    let initialized = spec
        .containers
        .iter()
        .any(|c| snapshot.instances(&c.name).any(|i| in_sandbox(&i)));
    // Every regular container exited for good (a Never or OnFailure pod that finished):
    // upstream kills the pod, so its sidecars stop, last started first, and nothing
    // starts again.
    let finished = crate::status::regular_containers_finished(&spec, snapshot);
    if finished {
        for container in spec.init_containers.iter().flatten().rev() {
            let running = snapshot
                .instances(&container.name)
                .find(in_sandbox)
                .filter(|l| l.container.state == ContainerState::Running);
            if let Some(l) = running {
                info!(container = %container.name, "regular containers finished, stopping sidecar");
                kill_container(ctx, pod, container, &l.container.id, &sandbox.ip, None).await;
                outcome.acted = true;
            }
        }
        return Ok(outcome);
    }

    // In-place resize of what runs now, before anything starts (upstream's SyncPod
    // resizes after its kills and before its starts).
    let running: Vec<crate::resize::Running<'_>> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .filter_map(|container| {
            let instance = snapshot
                .instances(&container.name)
                .find(in_sandbox)
                .filter(|i| i.container.state == ContainerState::Running)?;
            Some(crate::resize::Running {
                container,
                instance,
            })
        })
        .collect();
    let resize = crate::resize::resize_running(ctx, pod, &running).await;
    for r in &resize.restart {
        info!(container = %r.container.name, "container resize requires restart");
        kill_container(
            ctx,
            pod,
            r.container,
            &r.instance.container.id,
            &sandbox.ip,
            None,
        )
        .await;
        outcome.acted = true;
    }
    if !resize.restart.is_empty() {
        crate::resize::update_pod_cgroup(ctx, pod).await;
    }
    for r in &resize.restart {
        start_or_back_off(
            ctx,
            pod,
            &sandbox,
            r.container,
            Some(r.instance),
            &mut outcome,
        )
        .await;
    }
    crate::resize::report_progress(ctx, pod, &running);

    // 2. Init containers, in order; regular ones must succeed before the next starts, and
    //    a sidecar with a startup probe must have started.
    for container in spec.init_containers.iter().flatten() {
        let latest = snapshot.instances(&container.name).find(in_sandbox);
        let any_latest = snapshot.latest(&container.name);
        if is_sidecar(container) {
            match latest.map(|l| (l.container.state, l.container.id.as_str())) {
                Some((ContainerState::Running, id)) => {
                    let started = container.startup_probe.is_none()
                        || probes.get(id).is_some_and(|v| v.started);
                    if !started && !initialized {
                        return Ok(outcome);
                    }
                }
                _ => {
                    start_or_back_off(ctx, pod, &sandbox, container, any_latest, &mut outcome)
                        .await;
                    if container.startup_probe.is_some() && !initialized {
                        return Ok(outcome);
                    }
                }
            }
            continue;
        }
        if initialized {
            continue;
        }
        match latest.map(|l| (l.container.state, l.exit_code)) {
            Some((ContainerState::Exited, 0)) => continue,
            Some((ContainerState::Running, _)) => return Ok(outcome),
            Some((ContainerState::Exited, code))
                if !should_restart_init(container, &spec, code) =>
            {
                // The pod failed: nothing else starts.
                return Ok(outcome);
            }
            _ => {
                start_or_back_off(ctx, pod, &sandbox, container, any_latest, &mut outcome).await;
                return Ok(outcome);
            }
        }
    }

    // 3. App containers.
    for container in &spec.containers {
        let latest = snapshot.instances(&container.name).find(in_sandbox);
        let any_latest = snapshot.latest(&container.name);
        match latest {
            Some(l) if l.container.state == ContainerState::Running => {
                let want = format!("{:x}", container_hash(container));
                if l.container.annotations.get(CONTAINER_HASH_ANNOTATION) != Some(&want) {
                    info!(container = %container.name, "container spec changed, restarting it");
                    kill_container(ctx, pod, container, &l.container.id, &sandbox.ip, None).await;
                    outcome.acted = true;
                    start_or_back_off(ctx, pod, &sandbox, container, any_latest, &mut outcome)
                        .await;
                }
            }
            Some(l)
                if l.container.state == ContainerState::Exited
                    && !should_restart(container, &spec, l.exit_code) => {}
            _ => {
                start_or_back_off(ctx, pod, &sandbox, container, any_latest, &mut outcome).await;
            }
        }
    }
    // 4. Ephemeral containers: each started once, never restarted, in the PID namespace
    //    of its target when it names one (upstream's EphemeralContainersToStart).
    for ephemeral in spec.ephemeral_containers.iter().flatten() {
        if snapshot.instances(&ephemeral.name).any(|i| in_sandbox(&i)) {
            continue;
        }
        let container = spec::ephemeral_as_container(ephemeral);
        let target = match ephemeral.target_container_name.as_deref() {
            None | Some("") => None,
            Some(name) => {
                let running = snapshot
                    .instances(name)
                    .find(in_sandbox)
                    .filter(|i| i.container.state == ContainerState::Running);
                match running {
                    Some(instance) => Some(instance.container.id.clone()),
                    None => {
                        let message = format!("unable to find target container {name}");
                        start_failed(
                            ctx,
                            pod,
                            &container.name,
                            CREATE_CONTAINER_CONFIG_ERROR,
                            message,
                            &mut outcome,
                        );
                        continue;
                    }
                }
            }
        };
        outcome.acted = true;
        if let Err((reason, message)) = start_container(
            ctx,
            pod,
            &sandbox,
            &container,
            0,
            target.as_deref(),
            &mut outcome,
        )
        .await
        {
            start_failed(ctx, pod, &container.name, reason, message, &mut outcome);
        }
    }
    Ok(outcome)
}

/// Upstream's `container_type` metric label.
fn container_type(pod: &Pod, name: &str) -> &'static str {
    let spec = pod.spec.as_ref();
    if spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|list| list.iter().any(|c| c.name == name))
    {
        "init_container"
    } else if spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|list| list.iter().any(|c| c.name == name))
    {
        "ephemeral_container"
    } else {
        "container"
    }
}

/// The gRPC code name of a runtime failure, as upstream's `codes.Code.String()`.
fn grpc_code(error: &kubelet_core::Error) -> &'static str {
    use kubelet_core::RuntimeErrorKind as Kind;
    match error.runtime_kind() {
        Some(Kind::NotFound) => "NotFound",
        Some(Kind::Unavailable) => "Unavailable",
        Some(Kind::DeadlineExceeded) => "DeadlineExceeded",
        Some(Kind::AlreadyExists) => "AlreadyExists",
        Some(Kind::InvalidArgument) => "InvalidArgument",
        Some(Kind::Unimplemented) => "Unimplemented",
        Some(Kind::Unauthenticated) => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Runs one step of a pod start (`sandbox`, `image`, `create`, `start`) in a span of its
/// own and logs how long it took at debug level: `RUST_LOG=kubelet_pod_manager=debug`
/// shows where a pod's start-up time goes.
async fn step<T>(name: &'static str, work: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let done = work.instrument(debug_span!("step", step = name)).await;
    debug!(
        step = name,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "pod start step done"
    );
    done
}

async fn run_sandbox(ctx: &SyncContext, config: &SandboxConfig) -> Result<String> {
    let log_dir = PathBuf::from(&config.log_directory);
    tokio::fs::create_dir_all(&log_dir)
        .await
        .map_err(|source| crate::Error::Io {
            operation: "creating the pod log directory",
            path: log_dir.clone(),
            source,
        })?;
    ctx.metrics.started_pods_total.inc(&[]);
    let id = ctx.runtime.run_sandbox(config).await.inspect_err(|_| {
        ctx.metrics.started_pods_errors_total.inc(&[]);
    })?;
    info!(sandbox = %id, attempt = config.metadata.attempt, "started pod sandbox");
    Ok(id)
}

/// Starts `container` unless its restart back-off forbids it now.
async fn start_or_back_off(
    ctx: &SyncContext,
    pod: &Pod,
    sandbox: &ReadySandbox,
    container: &Container,
    latest: Option<&ContainerStatus>,
    outcome: &mut SyncOutcome,
) {
    let restart_count = latest.map_or(0, |l| restart_count(l) + 1);
    if let Some(exited) = latest.filter(|l| l.container.state == ContainerState::Exited) {
        let finished = system_time(exited.finished_at);
        let now = ctx.clock.now();
        let key = crash_key(pod, container);
        let mut backoff = lock(&ctx.crash_backoff);
        if backoff.is_in_backoff_since(&key, finished, now) {
            let delay = backoff.get(&key);
            container_event(
                ctx,
                pod,
                &container.name,
                EventType::Warning,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {}",
                    container.name,
                    pod_name(pod)
                ),
            );
            outcome.wake(backoff.retry_at(&key, finished));
            outcome.wait(
                &container.name,
                CRASH_LOOP_BACK_OFF,
                format!(
                    "back-off {} restarting failed container={} pod={}",
                    kubelet_core::go_duration(delay),
                    container.name,
                    pod_name(pod)
                ),
            );
            return;
        }
        backoff.next(&key, finished, now);
    }
    outcome.acted = true;
    if let Err((reason, message)) =
        start_container(ctx, pod, sandbox, container, restart_count, None, outcome).await
    {
        start_failed(ctx, pod, &container.name, reason, message, outcome);
    }
}

/// A container that did not start: logged, upstream's `Failed` event for the creation
/// errors, and the waiting reason the status shows.
fn start_failed(
    ctx: &SyncContext,
    pod: &Pod,
    container: &str,
    reason: &'static str,
    message: String,
    outcome: &mut SyncOutcome,
) {
    warn!(container, reason, %message, "container did not start");
    if matches!(
        reason,
        CREATE_CONTAINER_CONFIG_ERROR | CREATE_CONTAINER_ERROR | RUN_CONTAINER_ERROR
    ) {
        container_event(
            ctx,
            pod,
            container,
            EventType::Warning,
            "Failed",
            format!("Error: {message}"),
        );
    }
    outcome.wait(container, reason, message);
}

fn system_time(nanos: i64) -> SystemTime {
    u64::try_from(nanos)
        .map(|n| SystemTime::UNIX_EPOCH + Duration::from_nanos(n))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Pulls the image if the policy says so, creates and starts the container, runs its
/// postStart hook. On failure, the upstream waiting reason and message.
async fn start_container(
    ctx: &SyncContext,
    pod: &Pod,
    sandbox: &ReadySandbox,
    container: &Container,
    restart_count: u32,
    pid_target: Option<&str>,
    outcome: &mut SyncOutcome,
) -> std::result::Result<(), (&'static str, String)> {
    let sandbox_config = sandbox
        .config(ctx, pod)
        .map_err(|e| (CREATE_CONTAINER_CONFIG_ERROR, spec_message(e)))?;
    let (sandbox_id, pod_ip) = (&sandbox.id, &sandbox.ip);
    let image = container.image.clone().unwrap_or_default();
    let (image_ref, known) = step(
        "image",
        ensure_image(ctx, pod, &image, container, sandbox_config, outcome),
    )
    .await?;

    let pod_ips = spec::pod_ips(pod, pod_ip, &ctx.node);
    // The image's user decides runAsNonRoot and is the default user, as upstream.
    let found = match known {
        Some(image) => Ok(Some(image)),
        None => ctx.images.image_status(&image).await,
    };
    let (image_uid, image_user) = match found {
        // An image that names no user runs as root, as upstream's getImageUser says.
        Ok(Some(found)) if found.uid.is_none() && found.username.is_empty() => {
            (Some(0), String::new())
        }
        Ok(Some(found)) => (found.uid, found.username),
        Ok(None) => (Some(0), String::new()),
        Err(e) => return Err((CREATE_CONTAINER_CONFIG_ERROR, e.to_string())),
    };
    spec::verify_run_as_non_root(pod, container, image_uid, &image_user)
        .map_err(|e| (CREATE_CONTAINER_CONFIG_ERROR, spec_message(e)))?;
    let mounts = container_mounts(ctx, pod, container, &pod_ips)
        .await
        .map_err(|e| (CREATE_CONTAINER_CONFIG_ERROR, spec_message(e)))?;
    let objects = spec::PodObjects::read(pod, ctx.env_objects.as_ref()).await;
    let mut config = spec::container_config(
        pod,
        container,
        restart_count,
        &pod_ips,
        &ctx.node,
        &objects,
        mounts,
    )
    .map_err(|e| (CREATE_CONTAINER_CONFIG_ERROR, spec_message(e)))?;
    spec::apply_image_user(&mut config.security, image_uid, &image_user);
    // Device plugins' devices, as upstream's GetResources: their environment before the
    // container's own, their mounts before the volumes'.
    if let Some(allocator) = &ctx.devices {
        let devices = allocator
            .allocate(pod, container)
            .await
            .map_err(|e| (CREATE_CONTAINER_CONFIG_ERROR, e.to_string()))?;
        if !devices.is_empty() {
            let mut envs = devices.envs;
            envs.append(&mut config.envs);
            config.envs = envs;
            let mut mounts = devices.mounts;
            mounts.append(&mut config.mounts);
            config.mounts = mounts;
            config.devices = devices.devices;
            config.cdi_devices = devices.cdi_devices;
            config.annotations.extend(devices.annotations);
        }
    }
    // Raw block volumes after the device plugins' devices.
    let volume_devices = ctx
        .volumes
        .container_devices(container, &sandbox.volumes)
        .map_err(|e| (CREATE_CONTAINER_CONFIG_ERROR, e.to_string()))?;
    config.devices.extend(volume_devices);
    // The groups the pod's persistent volumes ask for, after the pod's own.
    config
        .security
        .supplemental_groups
        .extend_from_slice(sandbox.volumes.supplemental_groups());
    // Created from the image made sure of (its id), not the tag, as upstream.
    if !image_ref.is_empty() {
        config.user_specified_image = std::mem::replace(&mut config.image, image_ref);
    }
    if let Some(target) = pid_target {
        config.security.namespaces.pid_target = Some(target.to_owned());
    }
    // Volume mounts first, then the kubelet's own, as upstream's makeMounts; subPathExpr
    // expands with the container's environment, so the mounts come after it.
    let mut mounts = ctx
        .volumes
        .container_mounts(pod, container, &sandbox.volumes, &config.envs)
        .await
        .map_err(|e| (CREATE_CONTAINER_CONFIG_ERROR, e.to_string()))?;
    mounts.append(&mut config.mounts);
    config.mounts = mounts;
    let container_type = container_type(pod, &container.name);
    let start_failed = |e: &kubelet_core::Error| {
        ctx.metrics
            .started_containers_errors_total
            .inc(&[container_type, grpc_code(e)]);
    };
    ctx.metrics.started_containers_total.inc(&[container_type]);
    let id = step(
        "create",
        ctx.runtime
            .create_container(sandbox_id, &config, sandbox_config),
    )
    .await
    .inspect_err(start_failed)
    .map_err(|e| (CREATE_CONTAINER_ERROR, e.to_string()))?;
    outcome.created_containers.push(crate::snapshot::Instance {
        id: id.clone(),
        sandbox_id: sandbox_id.clone(),
    });
    let created = |reason, message| {
        container_event(
            ctx,
            pod,
            &container.name,
            EventType::Normal,
            reason,
            message,
        )
    };
    created("Created", "Container created".to_owned());
    let uid = PodRef::of(pod).uid;
    let resources = container.resources.clone().unwrap_or_default();
    let actuated_changed = ctx
        .node
        .allocations
        .set_actuated(&uid, &container.name, resources);
    // The checkpoint is written while the runtime starts the container: neither waits
    // for the other, and both are done before the container counts as started.
    let checkpoint = async {
        if actuated_changed {
            ctx.node.allocations.save().await;
        }
    };
    let ((), started) = tokio::join!(checkpoint, step("start", ctx.runtime.start_container(&id)));
    started.inspect_err(start_failed).map_err(|e| {
        (
            RUN_CONTAINER_ERROR,
            e.to_string().replace(&id, &container.name),
        )
    })?;
    created("Started", "Container started".to_owned());
    info!(container = %container.name, id = %id, restart_count, "started container");
    crate::gc::create_log_symlink(&ctx.node.container_logs_dir, sandbox_config, &config, &id).await;

    if let Some(post_start) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
    {
        let grace = Duration::from_secs(u64::try_from(grace_period(pod)).unwrap_or(30));
        let fallback = http_fallback_event(ctx, pod);
        if let Err(message) = hooks::run_handler(
            ctx.runtime.as_ref(),
            post_start,
            &hooks::HookTarget {
                pod,
                container,
                container_id: &id,
                pod_ip,
            },
            grace,
            &fallback,
        )
        .await
        {
            warn!(container = %container.name, %message, "postStart hook failed, killing the container");
            container_event(
                ctx,
                pod,
                &container.name,
                EventType::Warning,
                "FailedPostStartHook",
                "PostStartHook failed".to_owned(),
            );
            kill_container(ctx, pod, container, &id, pod_ip, None).await;
            return Err(("PostStartHookError", message));
        }
    }
    Ok(())
}

fn pull_policy(container: &Container, image: &str) -> String {
    container.image_pull_policy.clone().unwrap_or_else(|| {
        // The API default: Always for `latest` or untagged images.
        let last = image.rsplit('/').next().unwrap_or(image);
        if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
            "IfNotPresent".to_owned()
        } else {
            "Always".to_owned()
        }
    })
}

async fn ensure_image(
    ctx: &SyncContext,
    pod: &Pod,
    image: &str,
    container: &Container,
    sandbox_config: &SandboxConfig,
    outcome: &mut SyncOutcome,
) -> std::result::Result<(String, Option<kubelet_core::Image>), (&'static str, String)> {
    let policy = pull_policy(container, image);
    if policy != "Always" {
        let present = ctx
            .images
            .image_status(image)
            .await
            .map_err(|e| (ERR_IMAGE_PULL, e.to_string()))?;
        let accessible = match (&present, &ctx.pull_records) {
            (Some(present), Some(records)) => {
                let secrets: Vec<_> = crate::pull_secrets::tracked_credentials_for(
                    pod,
                    image,
                    ctx.env_objects.as_ref(),
                )
                .await
                .into_iter()
                .map(|(_, secret)| secret)
                .collect();
                !records.must_pull(image, &present.id, &secrets).await
            }
            (Some(_), None) => true,
            (None, _) => false,
        };
        if let Some(present) = present.filter(|_| accessible) {
            let message = if ctx.pull_records.is_some() {
                format!(
                    "Container image {image:?} already present on machine and can be accessed by the pod"
                )
            } else {
                format!("Container image {image:?} already present on machine")
            };
            container_event(
                ctx,
                pod,
                &container.name,
                EventType::Normal,
                "Pulled",
                message,
            );
            return Ok((present.id.clone(), Some(present)));
        }
        // An image present but not for this pod is reported as absent, as upstream, so
        // that its presence is not revealed.
        if policy == "Never" {
            container_event(
                ctx,
                pod,
                &container.name,
                EventType::Warning,
                "ErrImageNeverPull",
                format!("Container image {image:?} is not present with pull policy of Never"),
            );
            return Err((
                ERR_IMAGE_NEVER_PULL,
                format!("Container image {image:?} is not present with pull policy of Never"),
            ));
        }
    }
    let key = format!("{}_{image}", PodRef::of(pod).uid);
    let now = ctx.clock.now();
    {
        let backoff = lock(&ctx.image_backoff);
        if backoff.is_in_backoff_since(&key, now, now) {
            outcome.wake(now + backoff.get(&key));
            container_event(
                ctx,
                pod,
                &container.name,
                EventType::Normal,
                "BackOff",
                format!("Back-off pulling image {image:?}"),
            );
            return Err((
                IMAGE_PULL_BACK_OFF,
                format!("Back-off pulling image {image:?}"),
            ));
        }
    }
    debug!(image, "pulling image");
    container_event(
        ctx,
        pod,
        &container.name,
        EventType::Normal,
        "Pulling",
        format!("Pulling image {image:?}"),
    );
    let started = std::time::Instant::now();
    let pull_started = ctx.clock.now();
    if let Some(records) = &ctx.pull_records {
        records.pull_started(image).await;
    }
    let pulled = pull_with_secrets(ctx, pod, image, sandbox_config).await;
    if let Some(records) = &ctx.pull_records {
        let recorded = pulled
            .as_ref()
            .ok()
            .map(|(image_ref, with)| (image_ref.as_str(), with.clone()));
        records.pull_ended(image, recorded).await;
    }
    let pulled = pulled.map(|(image_ref, _)| image_ref);
    let pull_ended = ctx.clock.now();
    outcome.pulling = Some(match outcome.pulling {
        Some((first, last)) => (first.min(pull_started), last.max(pull_ended)),
        None => (pull_started, pull_ended),
    });
    match pulled {
        Ok(image_ref) => {
            info!(image, image_ref = %image_ref, "pulled image");
            // Upstream truncates to milliseconds.
            let elapsed = started.elapsed();
            let took = kubelet_core::go_duration(
                elapsed - Duration::from_nanos(u64::from(elapsed.subsec_nanos() % 1_000_000)),
            );
            let found = ctx.images.image_status(image).await.ok().flatten();
            let size = found.as_ref().map_or(0, |found| found.size);
            container_event(
                ctx,
                pod,
                &container.name,
                EventType::Normal,
                "Pulled",
                format!(
                    "Successfully pulled image {image:?} in {took} ({took} including waiting). Image size: {size} bytes."
                ),
            );
            Ok((image_ref, found))
        }
        Err(e) => {
            container_event(
                ctx,
                pod,
                &container.name,
                EventType::Warning,
                "Failed",
                format!("Failed to pull image {image:?}: {e}"),
            );
            let mut backoff = lock(&ctx.image_backoff);
            backoff.next(&key, now, now);
            outcome.wake(now + backoff.get(&key));
            Err((ERR_IMAGE_PULL, e.to_string()))
        }
    }
}

/// Pulls `image` with each matching credential in turn, as upstream's keyring orders
/// them: the pod's imagePullSecrets first, then the node's (credential provider
/// plugins); anonymously only when there are none. The errors of all attempts when none
/// succeeds.
async fn pull_with_secrets(
    ctx: &SyncContext,
    pod: &Pod,
    image: &str,
    sandbox_config: &SandboxConfig,
) -> kubelet_core::Result<(String, PulledWith)> {
    let mut credentials: Vec<(RegistryAuth, PulledWith)> =
        crate::pull_secrets::tracked_credentials_for(pod, image, ctx.env_objects.as_ref())
            .await
            .into_iter()
            .map(|(auth, secret)| (auth, PulledWith::Secret(secret)))
            .collect();
    // The node's credentials are no pod's: what they pull any pod may use.
    credentials.extend(
        ctx.image_credentials
            .credentials(image, pod)
            .await
            .into_iter()
            .map(|auth| (auth, PulledWith::NodeAccessible)),
    );
    if credentials.is_empty() {
        return ctx
            .images
            .pull_image(image, None, Some(sandbox_config))
            .await
            .map(|image_ref| (image_ref, PulledWith::NodeAccessible));
    }
    let mut errors = Vec::new();
    for (auth, with) in credentials {
        match ctx
            .images
            .pull_image(image, Some(&auth), Some(sandbox_config))
            .await
        {
            Ok(image_ref) => return Ok((image_ref, with)),
            Err(e) => errors.push(e),
        }
    }
    let mut first = errors.remove(0);
    if !errors.is_empty()
        && let kubelet_core::Error::Runtime(e) = &mut first
    {
        let rest: Vec<String> = errors.iter().map(ToString::to_string).collect();
        e.message = format!("{}; {}", e.message, rest.join("; "));
    }
    Err(first)
}

/// The message of a spec error as upstream shows it in a waiting state: the reason
/// alone, the pod and container being implied.
fn spec_message(error: crate::Error) -> String {
    match error {
        crate::Error::Spec { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// The kubelet-made mounts of a container: the Kubernetes-managed hosts file and its
/// termination message file, both written in one trip to the blocking pool (each trip
/// is a thread hand-off on the pod's start path).
async fn container_mounts(
    ctx: &SyncContext,
    pod: &Pod,
    container: &Container,
    pod_ips: &[String],
) -> Result<Vec<Mount>> {
    let mut mounts = Vec::new();
    let mut files = Vec::new();
    if spec::should_mount_hosts_file(pod, container, pod_ips) {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        // Host-network pods see the node's own entries, as upstream.
        let node_hosts = if host_network {
            tokio::fs::read_to_string("/etc/hosts")
                .await
                .unwrap_or_default()
        } else {
            String::new()
        };
        let content = spec::hosts_file_content(pod, pod_ips, &ctx.node, &node_hosts)?;
        files.push(FileToWrite {
            path: spec::hosts_file_path(pod, &ctx.node),
            bytes: content.into_bytes(),
            mode: None,
            operation: "writing the pod's hosts file",
        });
        mounts.push(spec::hosts_file_mount(pod, &ctx.node));
    }
    let path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_owned());
    if !path.is_empty() {
        let uid = PodRef::of(pod).uid;
        // A fresh file per instance, so a restarted container does not see the old message.
        let nanos = ctx
            .clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let file = ctx
            .node
            .pods_dir
            .join(&uid)
            .join("containers")
            .join(&container.name)
            .join(format!("{nanos:x}"));
        mounts.push(Mount {
            container_path: path,
            host_path: file.display().to_string(),
            selinux_relabel: ctx.node.security.selinux_enabled,
            ..Default::default()
        });
        // Whatever user the container runs as must be able to write its message, as
        // upstream's 0666 regardless of the umask.
        files.push(FileToWrite {
            path: file,
            bytes: Vec::new(),
            mode: Some(0o666),
            operation: "creating the termination message file",
        });
    }
    write_files(files).await?;
    Ok(mounts)
}

/// A file the kubelet writes for a container, with its directories.
struct FileToWrite {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Permissions set after writing, whatever the umask.
    mode: Option<u32>,
    operation: &'static str,
}

/// Writes `files` in order, in one trip to the blocking pool.
async fn write_files(files: Vec<FileToWrite>) -> Result<()> {
    let Some(first) = files.first() else {
        return Ok(());
    };
    let (operation, first) = (first.operation, first.path.clone());
    let written = tokio::task::spawn_blocking(move || {
        for file in files {
            let io = |path: &std::path::Path| {
                let (operation, path) = (file.operation, path.to_owned());
                move |source| crate::Error::Io {
                    operation,
                    path,
                    source,
                }
            };
            if let Some(dir) = file.path.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            std::fs::write(&file.path, &file.bytes).map_err(io(&file.path))?;
            if let Some(mode) = file.mode {
                std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(mode))
                    .map_err(io(&file.path))?;
            }
        }
        Ok(())
    })
    .await;
    // Only a panic or the runtime shutting down loses the task.
    written.map_err(|e| crate::Error::Io {
        operation,
        path: first,
        source: std::io::Error::other(e),
    })?
}

/// Stops one container: preStop hook, then the runtime's stop with what is left of the
/// grace period.
pub async fn kill_container(
    ctx: &SyncContext,
    pod: &Pod,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    grace_override: Option<i64>,
) {
    let mut grace = grace_override.unwrap_or_else(|| grace_period(pod));
    if let Some(pre_stop) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        && grace > 0
    {
        let started = std::time::Instant::now();
        let budget = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        let fallback = http_fallback_event(ctx, pod);
        if let Err(message) = hooks::run_handler(
            ctx.runtime.as_ref(),
            pre_stop,
            &hooks::HookTarget {
                pod,
                container,
                container_id,
                pod_ip,
            },
            budget,
            &fallback,
        )
        .await
        {
            warn!(container = %container.name, %message, "preStop hook failed");
            container_event(
                ctx,
                pod,
                &container.name,
                EventType::Warning,
                "FailedPreStopHook",
                "PreStopHook failed".to_owned(),
            );
        }
        grace -= i64::try_from(started.elapsed().as_secs()).unwrap_or(grace);
    }
    let grace = grace.max(MIN_GRACE_SECONDS);
    let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(2));
    info!(container = %container.name, id = %container_id, ?grace, "killing container");
    container_event(
        ctx,
        pod,
        &container.name,
        EventType::Normal,
        "Killing",
        format!("Stopping container {}", container.name),
    );
    if let Err(e) = ctx.runtime.stop_container(container_id, grace).await
        && !e.is_not_found()
    {
        warn!(container = %container.name, error = %e, "stopping container");
    }
}

/// Stops every running container of the pod: app containers together, then sidecars in
/// reverse order, as upstream's termination ordering.
pub async fn kill_containers(
    ctx: &SyncContext,
    pod: &Pod,
    snapshot: &RuntimeSnapshot,
    grace_override: Option<i64>,
) {
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_ip = spec::pod_ip(
        pod,
        snapshot.latest_sandbox().map_or("", |s| s.ip.as_str()),
        &ctx.node,
    );
    let running: Vec<&ContainerStatus> = snapshot
        .containers
        .iter()
        .filter(|c| c.container.state == ContainerState::Running)
        .collect();
    let spec_of = |name: &str| -> Container {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .cloned()
            .unwrap_or_else(|| Container {
                name: name.to_owned(),
                ..Default::default()
            })
    };
    let sidecars: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c))
        .map(|c| c.name.clone())
        .collect();
    let regular = running
        .iter()
        .filter(|c| !sidecars.contains(&c.container.metadata.name))
        .map(|c| {
            let container = spec_of(&c.container.metadata.name);
            let id = c.container.id.clone();
            let pod_ip = pod_ip.clone();
            async move { kill_container(ctx, pod, &container, &id, &pod_ip, grace_override).await }
        });
    futures::future::join_all(regular).await;
    for name in sidecars.iter().rev() {
        for c in running
            .iter()
            .filter(|c| &c.container.metadata.name == name)
        {
            kill_container(
                ctx,
                pod,
                &spec_of(name),
                &c.container.id,
                &pod_ip,
                grace_override,
            )
            .await;
        }
    }
}

/// Stops the pod entirely and, when `remove` is set, removes its containers, sandboxes and
/// directories (the pod is gone from every source).
pub async fn terminate_pod(
    ctx: &SyncContext,
    pod: &Pod,
    snapshot: &RuntimeSnapshot,
    remove: bool,
) -> Result<()> {
    kill_containers(ctx, pod, snapshot, None).await;
    for sandbox in &snapshot.sandboxes {
        if let Err(e) = ctx.runtime.stop_sandbox(&sandbox.sandbox.id).await
            && !e.is_not_found()
        {
            return Err(e.into());
        }
    }
    if !remove {
        return Ok(());
    }
    for container in &snapshot.containers {
        if let Err(e) = ctx.runtime.remove_container(&container.container.id).await
            && !e.is_not_found()
        {
            return Err(e.into());
        }
        crate::gc::remove_log_symlink(&ctx.node.container_logs_dir, &container.container).await;
    }
    for sandbox in &snapshot.sandboxes {
        if let Err(e) = ctx.runtime.remove_sandbox(&sandbox.sandbox.id).await
            && !e.is_not_found()
        {
            return Err(e.into());
        }
    }
    let uid = PodRef::of(pod).uid;
    if let Some(cgroups) = &ctx.cgroups {
        remove_pod_cgroups(cgroups, &uid).await;
    }
    if let Some(devices) = &ctx.devices {
        devices.release(&uid).await;
    }
    let userns = ctx.node.user_namespaces.clone();
    let released_uid = uid.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || userns.release(&released_uid)).await {
        warn!(error = %e, "releasing the pod's user namespace");
    }
    // Never remove the pod's directory through a mount that is still there.
    ctx.volumes
        .tear_down_pod(&uid)
        .await
        .map_err(|e| crate::Error::Volumes {
            pod: uid.clone(),
            reason: e.to_string(),
        })?;
    // Never across a mount point: something still mounted in a pod's directory (a
    // volume a runtime or another kubelet left) stays, with its directory.
    for dir in [
        ctx.node.pods_dir.join(&uid),
        spec::pod_log_dir(pod, &ctx.node),
    ] {
        let removing = dir.clone();
        let removed = tokio::task::spawn_blocking(move || {
            kubelet_volumes::remove_all_on_one_file_system(&removing)
        })
        .await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(dir = %dir.display(), error = %e, "removing a pod directory"),
            Err(e) => warn!(dir = %dir.display(), error = %e, "removing a pod directory"),
        }
    }
    Ok(())
}

/// Gives a pod with `hostUsers: false` its user namespace range before its sandbox is
/// made, once the runtime says the handler supports user namespaces; otherwise the
/// sandbox is refused with upstream's message (never made in the host's namespace).
async fn allocate_user_namespace(ctx: &SyncContext, pod: &Pod, handler: &str) -> Result<()> {
    if pod.spec.as_ref().and_then(|s| s.host_users) != Some(false) {
        return Ok(());
    }
    let refuse = |reason: String| crate::Error::Spec {
        pod: PodRef::of(pod).to_string(),
        container: String::new(),
        reason,
    };
    let handlers = ctx.runtime.status().await?.handlers;
    match crate::userns::handler_supports(&handlers, handler) {
        Ok(true) => {}
        Ok(false) => return Err(refuse(crate::userns::unsupported_message(handler))),
        Err(e) => {
            return Err(refuse(format!(
                "{}: {e}",
                crate::userns::unsupported_message(handler)
            )));
        }
    }
    let (userns, uid) = (ctx.node.user_namespaces.clone(), PodRef::of(pod).uid);
    match tokio::task::spawn_blocking(move || userns.get_or_create(&uid)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(reason)) => Err(refuse(reason)),
        Err(e) => Err(refuse(format!("user namespace: {e}"))),
    }
}

/// Removes the pod's cgroup, which runc created as its containers' parent. Every QoS
/// tier is tried: a pod known only from the runtime (an orphan) has no spec to tell.
async fn remove_pod_cgroups(cgroups: &Arc<dyn kubelet_cgroups::CgroupManager>, uid: &str) {
    let (cgroups, uid) = (cgroups.clone(), uid.to_owned());
    let removed = tokio::task::spawn_blocking(move || {
        [
            kubelet_core::QosClass::Guaranteed,
            kubelet_core::QosClass::Burstable,
            kubelet_core::QosClass::BestEffort,
        ]
        .into_iter()
        .try_for_each(|qos| cgroups.remove(&kubelet_cgroups::pod_cgroupfs_path(qos, &uid)))
    })
    .await;
    match removed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "removing the pod's cgroup"),
        Err(e) => warn!(error = %e, "removing the pod's cgroup"),
    }
}

/// Removes exited instances of each container beyond the newest
/// `maxPerPodContainer` (one by default, kept for `lastState` and `kubectl logs
/// --previous`) and older than the policy's minimum age, with their log symlinks; then
/// the pod's dead sandboxes that no container is left in, except the newest (see
/// [`crate::gc::remove_dead_sandboxes`]).
pub async fn remove_old_instances(ctx: &SyncContext, snapshot: &RuntimeSnapshot) {
    let policy = ctx.node.container_gc;
    let Some(keep) = policy.kept_per_container() else {
        return;
    };
    let now = ctx.clock.now();
    let mut seen_exited: BTreeMap<&str, usize> = BTreeMap::new();
    let mut removed: HashSet<&str> = HashSet::new();
    // Newest first (the snapshot's order).
    for status in &snapshot.containers {
        if status.container.state != ContainerState::Exited
            || !policy.old_enough(status.container.created_at, now)
        {
            continue;
        }
        let count = seen_exited
            .entry(&status.container.metadata.name)
            .or_default();
        *count += 1;
        if *count <= keep {
            continue;
        }
        match ctx.runtime.remove_container(&status.container.id).await {
            Err(e) if !e.is_not_found() => {
                warn!(id = %status.container.id, error = %e, "removing an old container instance");
            }
            _ => {
                removed.insert(&status.container.id);
                crate::gc::remove_log_symlink(&ctx.node.container_logs_dir, &status.container)
                    .await;
            }
        }
    }
    crate::gc::remove_dead_sandboxes(ctx.runtime.as_ref(), snapshot, &removed).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pull_policy_follows_the_api() {
        let c = Container::default();
        assert_eq!(pull_policy(&c, "busybox"), "Always");
        assert_eq!(pull_policy(&c, "busybox:latest"), "Always");
        assert_eq!(pull_policy(&c, "localhost:5000/busybox"), "Always");
        assert_eq!(
            pull_policy(&c, "localhost:5000/busybox:1.36"),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&c, "busybox@sha256:abc"), "IfNotPresent");
        let never = Container {
            image_pull_policy: Some("Never".into()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&never, "busybox"), "Never");
    }
}
