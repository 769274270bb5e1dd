//! Pod status as the upstream kubelet computes it (`generateAPIPodStatus`, `getPhase`,
//! `convertToAPIContainerStatuses`), from what the runtime reports and what the last sync
//! decided. Pure: no runtime calls, no clock.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodSpec, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kubelet_core::{
    ContainerState as RuntimeState, ContainerStatus, PodRef, SandboxState, SandboxStatus,
};

type ResourceList = BTreeMap<String, ApiQuantity>;

use crate::restart::{is_sidecar, should_restart, should_restart_init};

/// Waiting reason of a container before it was ever created.
pub const CONTAINER_CREATING: &str = "ContainerCreating";
/// Waiting reason of containers while init containers run.
pub const POD_INITIALIZING: &str = "PodInitializing";
/// Waiting reason of a container waiting out its restart back-off.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
/// Waiting reason after a failed pull.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
/// Waiting reason while a failed pull is backed off.
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
/// Waiting reason for an absent image with pull policy Never.
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
/// Waiting reason when the container configuration cannot be generated.
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
/// Waiting reason when the runtime refused to create the container.
pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
/// Waiting reason when the runtime refused to start the container.
pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";

/// Pod phase `Pending`.
pub const PENDING: &str = "Pending";
/// Pod phase `Running`.
pub const RUNNING: &str = "Running";
/// Pod phase `Succeeded`.
pub const SUCCEEDED: &str = "Succeeded";
/// Pod phase `Failed`.
pub const FAILED: &str = "Failed";

/// Everything the runtime has for one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeSnapshot {
    /// The pod's sandboxes, newest first.
    pub sandboxes: Vec<SandboxStatus>,
    /// Every container instance of the pod, newest first.
    pub containers: Vec<ContainerStatus>,
}

impl RuntimeSnapshot {
    /// Instances of the container `name`, newest first.
    pub fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ContainerStatus> {
        self.containers
            .iter()
            .filter(move |c| c.container.metadata.name == name)
    }

    /// The newest instance of the container `name`.
    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers
            .iter()
            .find(|c| c.container.metadata.name == name)
    }

    /// The newest sandbox, if any.
    pub fn latest_sandbox(&self) -> Option<&SandboxStatus> {
        self.sandboxes.first()
    }

    /// The newest sandbox when it is ready.
    pub fn ready_sandbox(&self) -> Option<&SandboxStatus> {
        self.latest_sandbox()
            .filter(|s| s.sandbox.state == SandboxState::Ready)
    }

    /// True when any container instance is running.
    pub fn any_running(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.container.state == RuntimeState::Running)
    }
}

/// Why a container is waiting, decided by the last sync (e.g. `CrashLoopBackOff`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The upstream reason.
    pub reason: String,
    /// The message shown by `kubectl describe`.
    pub message: String,
}

/// The inputs of [`pod_status`].
#[derive(Debug, Clone, Copy)]
pub struct StatusInputs<'a> {
    /// The pod as wanted.
    pub pod: &'a Pod,
    /// What the runtime has for it.
    pub snapshot: &'a RuntimeSnapshot,
    /// Waiting reasons from the last sync, by container name.
    pub waiting: &'a BTreeMap<String, Waiting>,
    /// Prefix of container ids, the runtime's name (`containerd`).
    pub runtime_name: &'a str,
    /// The node's IPs.
    pub host_ips: &'a [String],
    /// When the kubelet first saw the pod.
    pub start_time: Option<&'a Time>,
    /// The status published before, to keep transition times and restart counts.
    pub previous: Option<&'a PodStatus>,
    /// Now, for the transition times of conditions that change.
    pub now: Timestamp,
    /// Readiness and startup from probes, by container id; containers absent are ready
    /// and started, as upstream treats containers without probes.
    pub probes: &'a BTreeMap<String, crate::probing::ProbeVerdict>,
    /// What each running container was given and the resize conditions (in-place
    /// resize); `None` reports containers at their spec's resources and no resize.
    pub allocations: Option<&'a crate::allocation::Allocations>,
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
        .map(Time)
}

fn terminated(status: &ContainerStatus, container_id: String) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: status.exit_code,
        reason: Some(status.reason.clone()).filter(|r| !r.is_empty()),
        message: Some(status.message.clone()).filter(|m| !m.is_empty()),
        started_at: time(status.started_at),
        finished_at: time(status.finished_at),
        container_id: Some(container_id),
        signal: None,
    }
}

/// How many times the container had restarted when this instance was created: the
/// annotation upstream writes, else the CRI attempt.
pub(crate) fn restart_count(status: &ContainerStatus) -> u32 {
    status
        .container
        .annotations
        .get(kubelet_core::labels::CONTAINER_RESTART_COUNT_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(status.container.metadata.attempt)
}

fn container_status(
    inputs: &StatusInputs<'_>,
    spec: &PodSpec,
    container: &Container,
    regular_init: bool,
    default_reason: &str,
    previous: Option<&ApiContainerStatus>,
) -> ApiContainerStatus {
    let id_of = |s: &ContainerStatus| format!("{}://{}", inputs.runtime_name, s.container.id);
    let mut instances = inputs.snapshot.instances(&container.name);
    let latest = instances.next();
    let mut status = ApiContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(default_reason.to_owned()),
                message: None,
            }),
            ..Default::default()
        }),
        started: Some(false),
        ..Default::default()
    };
    if let Some(latest) = latest {
        status.container_id = Some(id_of(latest));
        status.image_id = latest.container.image_ref.clone();
        status.restart_count = i32::try_from(restart_count(latest)).unwrap_or(i32::MAX);
        let previous_instance = instances.next();
        match latest.container.state {
            RuntimeState::Running => {
                status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: time(latest.started_at),
                    }),
                    ..Default::default()
                });
                // Without readiness and startup probes a running container is started
                // and ready, as upstream.
                let verdict = inputs.probes.get(&latest.container.id);
                status.ready = verdict.is_none_or(|v| v.ready);
                status.started = Some(verdict.is_none_or(|v| v.started));
                status.last_state = previous_instance.map(|p| ContainerState {
                    terminated: Some(terminated(p, id_of(p))),
                    ..Default::default()
                });
            }
            RuntimeState::Exited => {
                let restarts = if regular_init {
                    should_restart_init(container, spec, latest.exit_code)
                } else if is_sidecar(container) {
                    // The sidecars of a finished pod were stopped for good.
                    should_restart(container, spec, latest.exit_code)
                        && !regular_containers_finished(spec, inputs.snapshot)
                } else {
                    should_restart(container, spec, latest.exit_code)
                };
                // Nothing restarts in a pod being deleted: its exits are final.
                let restarts = restarts && inputs.pod.metadata.deletion_timestamp.is_none();
                if restarts {
                    // About to be restarted: waiting, with the exit as the last state.
                    status.state = Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(CONTAINER_CREATING.to_owned()),
                            message: None,
                        }),
                        ..Default::default()
                    });
                    status.last_state = Some(ContainerState {
                        terminated: Some(terminated(latest, id_of(latest))),
                        ..Default::default()
                    });
                } else {
                    status.state = Some(ContainerState {
                        terminated: Some(terminated(latest, id_of(latest))),
                        ..Default::default()
                    });
                    status.last_state = previous_instance.map(|p| ContainerState {
                        terminated: Some(terminated(p, id_of(p))),
                        ..Default::default()
                    });
                }
            }
            RuntimeState::Created | RuntimeState::Unknown => {
                status.state = Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(CONTAINER_CREATING.to_owned()),
                        message: None,
                    }),
                    ..Default::default()
                });
                status.last_state = previous_instance.map(|p| ContainerState {
                    terminated: Some(terminated(p, id_of(p))),
                    ..Default::default()
                });
            }
        }
    }
    if regular_init {
        // Upstream's prober manager: a regular init container is ready once it exited 0,
        // never while it runs (probes do not apply to it).
        status.ready = status
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0);
    }
    let running = latest.is_some_and(|l| l.container.state == RuntimeState::Running);
    if !running && let Some(waiting) = inputs.waiting.get(&container.name) {
        let terminal = status
            .state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some());
        if !terminal {
            status.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(waiting.reason.clone()),
                    message: Some(waiting.message.clone()).filter(|m| !m.is_empty()),
                }),
                ..Default::default()
            });
        }
    }
    // The restart count never goes down, even when old instances were removed.
    if let Some(previous) = previous {
        status.restart_count = status.restart_count.max(previous.restart_count);
    }
    let allocated = container.resources.clone().unwrap_or_default();
    status.allocated_resources = allocated.requests.clone();
    let actuated = inputs
        .allocations
        .filter(|_| running)
        .and_then(|a| a.actuated(&PodRef::of(inputs.pod).uid, &container.name));
    status.resources = Some(match actuated {
        Some(actuated) => actual_resources(allocated, &actuated),
        None => allocated,
    });
    status
}

/// A running container's `status.resources`, as upstream's
/// `convertContainerStatusResources`: the allocation, with CPU and memory as the
/// container was last given them (the allocation until a resize is applied).
fn actual_resources(
    allocated: ResourceRequirements,
    actuated: &ResourceRequirements,
) -> ResourceRequirements {
    let merge = |allocated: Option<ResourceList>, actuated: Option<&ResourceList>| {
        let mut list = allocated?;
        for name in ["cpu", "memory"] {
            match actuated.and_then(|a| a.get(name)) {
                Some(q) => list.insert(name.to_owned(), q.clone()),
                None => list.remove(name),
            };
        }
        Some(list)
    };
    ResourceRequirements {
        requests: merge(allocated.requests, actuated.requests.as_ref()),
        limits: merge(allocated.limits, actuated.limits.as_ref()),
        claims: allocated.claims,
    }
}

/// Whether every regular container exited for good (a Never or OnFailure pod that
/// finished): its sidecars are then stopped and not restarted, as upstream kills the pod.
pub(crate) fn regular_containers_finished(spec: &PodSpec, snapshot: &RuntimeSnapshot) -> bool {
    !spec.containers.is_empty()
        && spec.containers.iter().all(|c| {
            snapshot.latest(&c.name).is_some_and(|l| {
                l.container.state == RuntimeState::Exited && !should_restart(c, spec, l.exit_code)
            })
        })
}

/// Upstream `getPhase` (ContainerRestartRules enabled, as it is by default in 1.37).
pub fn phase(pod: &Pod, init: &[ApiContainerStatus], app: &[ApiContainerStatus]) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let find =
        |list: &'_ [ApiContainerStatus], name: &str| list.iter().find(|s| s.name == name).cloned();
    let state_of = |s: &ApiContainerStatus| s.state.clone().unwrap_or_default();
    let last_exit = |s: &ApiContainerStatus| {
        s.last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(|t| t.exit_code)
    };

    let mut pending_regular_init = 0;
    let mut pending_sidecars = 0;
    let mut failed_init_not_restartable = 0;
    for container in spec.init_containers.iter().flatten() {
        if is_sidecar(container) {
            continue;
        }
        let Some(status) = find(init, &container.name) else {
            pending_regular_init += 1;
            continue;
        };
        let state = state_of(&status);
        if state.running.is_some() {
            pending_regular_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 && !should_restart_init(container, &spec, t.exit_code) {
                failed_init_not_restartable += 1;
            }
        } else if let Some(code) = last_exit(&status) {
            if code != 0 && !should_restart_init(container, &spec, code) {
                failed_init_not_restartable += 1;
            }
        } else {
            pending_regular_init += 1;
        }
    }

    let (mut unknown, mut running, mut waiting) = (0, 0, 0);
    let (mut stopped, mut stopped_not_restartable, mut succeeded) = (0, 0, 0);
    for container in spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c))
    {
        let Some(status) = find(init, &container.name) else {
            unknown += 1;
            continue;
        };
        let state = state_of(&status);
        if state.running.is_some() {
            if status.started != Some(true) {
                pending_sidecars += 1;
            }
            running += 1;
        } else if state.waiting.is_some() && last_exit(&status).is_none() {
            pending_sidecars += 1;
            waiting += 1;
        }
    }
    for container in &spec.containers {
        let Some(status) = find(app, &container.name) else {
            unknown += 1;
            continue;
        };
        let state = state_of(&status);
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if !should_restart(container, &spec, t.exit_code) {
                stopped_not_restartable += 1;
            }
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if let Some(code) = last_exit(&status) {
            stopped += 1;
            if !should_restart(container, &spec, code) {
                stopped_not_restartable += 1;
            }
        } else {
            waiting += 1;
        }
    }

    let initialized = pending_regular_init == 0 && failed_init_not_restartable == 0;
    if failed_init_not_restartable > 0 {
        return FAILED;
    }
    if pending_regular_init > 0 || (pending_sidecars > 0 && !initialized) || waiting > 0 {
        return PENDING;
    }
    if running > 0 && unknown == 0 {
        return RUNNING;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        // A pod being deleted whose containers all stopped is terminal: nothing restarts
        // (upstream's podIsTerminal).
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if stopped != stopped_not_restartable && !terminating {
            return RUNNING;
        }
        if stopped == succeeded {
            return SUCCEEDED;
        }
        return FAILED;
    }
    PENDING
}

/// A pod condition: its status, reason and message as computed, the generation it
/// observed (upstream `CalculatePodConditionObservedGeneration`, always the pod's with
/// PodObservedGenerationTracking), and the transition time kept while the status holds.
fn condition(
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    inputs: &StatusInputs<'_>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = inputs
        .previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == kind));
    // Keep the transition time while the condition holds its value.
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(Time(inputs.now)),
    };
    PodCondition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        observed_generation: inputs.pod.metadata.generation,
        last_transition_time,
        ..Default::default()
    }
}

/// Go's `%s` of a string slice: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// Upstream `GeneratePodInitializedCondition`: `(ok, reason, message)`.
fn initialized_condition(
    spec: &PodSpec,
    init: &[ApiContainerStatus],
    app: &[ApiContainerStatus],
    phase: &str,
) -> (bool, Option<&'static str>, Option<String>) {
    if phase == SUCCEEDED {
        return (true, Some("PodCompleted"), None);
    }
    let regular_started = app.iter().any(|s| {
        s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });
    if regular_started {
        return (true, None, None);
    }
    let incomplete: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| {
            let status = init.iter().find(|s| s.name == c.name);
            let initialized = if is_sidecar(c) {
                status.is_some_and(|s| s.started == Some(true))
            } else {
                status
                    .and_then(|s| s.state.as_ref())
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)
            };
            !initialized
        })
        .map(|c| c.name.as_str())
        .collect();
    if incomplete.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                go_list(&incomplete)
            )),
        )
    }
}

/// Upstream `GenerateContainersReadyCondition`: `(ok, reason, message)`; sidecars count
/// with the regular containers.
fn containers_ready_condition(
    spec: &PodSpec,
    init: &[ApiContainerStatus],
    app: &[ApiContainerStatus],
    phase: &str,
) -> (bool, Option<&'static str>, Option<String>) {
    match phase {
        SUCCEEDED => return (false, Some("PodCompleted"), None),
        FAILED => return (false, Some("PodFailed"), None),
        _ => {}
    }
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c));
    let unready: Vec<&str> = sidecars
        .filter(|c| !init.iter().any(|s| s.name == c.name && s.ready))
        .map(|c| c.name.as_str())
        .chain(
            spec.containers
                .iter()
                .filter(|c| !app.iter().any(|s| s.name == c.name && s.ready))
                .map(|c| c.name.as_str()),
        )
        .collect();
    if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                go_list(&unready)
            )),
        )
    }
}

/// Upstream `GeneratePodReadyCondition`: ContainersReady's verdict, then the readiness
/// gates, looked up among the pod's conditions as its source last showed them.
fn pod_ready_condition(
    pod: &Pod,
    containers_ready: &(bool, Option<&'static str>, Option<String>),
) -> (bool, Option<&'static str>, Option<String>) {
    if !containers_ready.0 {
        return containers_ready.clone();
    }
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let unready: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|gate| {
            let kind = &gate.condition_type;
            match conditions.iter().find(|c| &c.type_ == kind) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate {kind:?} does not exist."
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate {kind:?} is not \"True\", but {}",
                    c.status
                )),
                Some(_) => None,
            }
        })
        .collect();
    if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ReadinessGatesNotReady"),
            Some(unready.join(", ")),
        )
    }
}

/// The API status of the pod.
pub fn pod_status(inputs: &StatusInputs<'_>) -> PodStatus {
    let pod = inputs.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let previous_statuses = |list: Option<&Vec<ApiContainerStatus>>, name: &str| {
        list.and_then(|l| l.iter().find(|s| s.name == name).cloned())
    };
    let has_init = spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
    let default_reason = if has_init {
        POD_INITIALIZING
    } else {
        CONTAINER_CREATING
    };
    let init: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let previous = previous_statuses(
                inputs
                    .previous
                    .and_then(|p| p.init_container_statuses.as_ref()),
                &c.name,
            );
            container_status(
                inputs,
                &spec,
                c,
                !is_sidecar(c),
                POD_INITIALIZING,
                previous.as_ref(),
            )
        })
        .collect();
    let app: Vec<_> = spec
        .containers
        .iter()
        .map(|c| {
            let previous = previous_statuses(
                inputs.previous.and_then(|p| p.container_statuses.as_ref()),
                &c.name,
            );
            container_status(inputs, &spec, c, false, default_reason, previous.as_ref())
        })
        .collect();
    let ephemeral: Vec<_> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|e| {
            let previous = previous_statuses(
                inputs
                    .previous
                    .and_then(|p| p.ephemeral_container_statuses.as_ref()),
                &e.name,
            );
            let container = crate::spec::ephemeral_as_container(e);
            container_status(
                inputs,
                &spec,
                &container,
                false,
                CONTAINER_CREATING,
                previous.as_ref(),
            )
        })
        .collect();

    let phase = phase(pod, &init, &app);
    let sandbox = inputs.snapshot.ready_sandbox();
    let sandbox_ready = sandbox.is_some();
    let (initialized, init_reason, init_message) = initialized_condition(&spec, &init, &app, phase);
    let containers_ready = containers_ready_condition(&spec, &init, &app, phase);
    let ready = pod_ready_condition(pod, &containers_ready);
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            sandbox_ready,
            None,
            None,
            inputs,
        ),
        condition(
            "Initialized",
            initialized,
            init_reason,
            init_message,
            inputs,
        ),
        condition("Ready", ready.0, ready.1, ready.2, inputs),
        condition(
            "ContainersReady",
            containers_ready.0,
            containers_ready.1,
            containers_ready.2,
            inputs,
        ),
        condition("PodScheduled", true, None, None, inputs),
    ];
    let mut conditions = conditions;
    // A terminal pod has no resize left to report.
    if let Some(allocations) = inputs.allocations
        && phase != "Succeeded"
        && phase != "Failed"
    {
        conditions.extend(allocations.conditions(&PodRef::of(pod).uid));
    }

    let (pod_ip, pod_ips) = match sandbox {
        Some(s) if !s.namespaces.host_network && !s.ip.is_empty() => {
            let ips: Vec<_> = std::iter::once(s.ip.clone())
                .chain(s.additional_ips.iter().cloned())
                .collect();
            (Some(s.ip.clone()), ips)
        }
        // Host-network pods report the node's addresses, as upstream.
        Some(s) if s.namespaces.host_network => {
            (inputs.host_ips.first().cloned(), inputs.host_ips.to_vec())
        }
        _ => (None, Vec::new()),
    };

    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: inputs.host_ips.first().cloned(),
        host_ips: Some(
            inputs
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect(),
        )
        .filter(|v: &Vec<HostIP>| !v.is_empty()),
        pod_ip,
        pod_ips: Some(pod_ips.into_iter().map(|ip| PodIP { ip }).collect())
            .filter(|v: &Vec<PodIP>| !v.is_empty()),
        start_time: inputs.start_time.cloned(),
        qos_class: Some(kubelet_core::pod_qos(pod).as_str().to_owned()),
        init_container_statuses: Some(init).filter(|v| !v.is_empty()),
        container_statuses: Some(app),
        ephemeral_container_statuses: Some(ephemeral).filter(|v| !v.is_empty()),
        observed_generation: pod.metadata.generation,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kubelet_core::{Container as RuntimeContainer, ContainerMetadata, Sandbox};

    fn pod(policy: &str, init: &[&str], app: &[&str]) -> Pod {
        let container = |name: &&str| Container {
            name: (*name).to_owned(),
            image: Some("busybox".into()),
            ..Default::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: Some(init.iter().map(container).collect()),
                containers: app.iter().map(container).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn instance(name: &str, attempt: u32, state: RuntimeState, exit_code: i32) -> ContainerStatus {
        ContainerStatus {
            container: RuntimeContainer {
                id: format!("{name}-{attempt}"),
                metadata: ContainerMetadata {
                    name: name.into(),
                    attempt,
                },
                state,
                image_ref: "sha256:abc".into(),
                ..Default::default()
            },
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == RuntimeState::Exited {
                1_700_000_001_000_000_000
            } else {
                0
            },
            exit_code,
            reason: match (state, exit_code) {
                (RuntimeState::Exited, 0) => "Completed".into(),
                (RuntimeState::Exited, _) => "Error".into(),
                _ => String::new(),
            },
            ..Default::default()
        }
    }

    fn ready_sandbox() -> SandboxStatus {
        SandboxStatus {
            sandbox: Sandbox {
                id: "s1".into(),
                state: SandboxState::Ready,
                ..Default::default()
            },
            ip: "10.88.0.7".into(),
            ..Default::default()
        }
    }

    fn status_of(
        pod: &Pod,
        containers: Vec<ContainerStatus>,
        waiting: &[(&str, &str)],
    ) -> PodStatus {
        let snapshot = RuntimeSnapshot {
            sandboxes: vec![ready_sandbox()],
            containers,
        };
        let waiting: BTreeMap<_, _> = waiting
            .iter()
            .map(|(name, reason)| {
                (
                    (*name).to_owned(),
                    Waiting {
                        reason: (*reason).to_owned(),
                        message: format!("{reason} for {name}"),
                    },
                )
            })
            .collect();
        pod_status(&StatusInputs {
            pod,
            snapshot: &snapshot,
            waiting: &waiting,
            runtime_name: "containerd",
            host_ips: &["10.88.0.1".to_owned()],
            start_time: None,
            previous: None,
            now: Timestamp::UNIX_EPOCH,
            probes: &BTreeMap::new(),
            allocations: None,
        })
    }

    fn condition_of<'a>(status: &'a PodStatus, kind: &str) -> &'a str {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.as_str())
            .unwrap_or("missing")
    }

    fn waiting_reason(status: &ApiContainerStatus) -> Option<&str> {
        status
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
    }

    #[test]
    fn running_pod_is_ready_with_ip_and_container_ids() {
        let pod = pod("Always", &[], &["app"]);
        let status = status_of(
            &pod,
            vec![instance("app", 0, RuntimeState::Running, 0)],
            &[],
        );
        assert_eq!(status.phase.as_deref(), Some(RUNNING));
        assert_eq!(status.pod_ip.as_deref(), Some("10.88.0.7"));
        assert_eq!(status.host_ip.as_deref(), Some("10.88.0.1"));
        for kind in [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ] {
            assert_eq!(condition_of(&status, kind), "True", "{kind}");
        }
        let app = &status.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(app.container_id.as_deref(), Some("containerd://app-0"));
        assert!(app.ready);
        assert_eq!(app.started, Some(true));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn crash_looping_container_waits_with_last_state_and_restart_count() {
        let pod = pod("Always", &[], &["app"]);
        let mut exited = instance("app", 2, RuntimeState::Exited, 1);
        exited.container.annotations.insert(
            kubelet_core::labels::CONTAINER_RESTART_COUNT_ANNOTATION.into(),
            "2".into(),
        );
        let status = status_of(
            &pod,
            vec![exited, instance("app", 1, RuntimeState::Exited, 1)],
            &[("app", CRASH_LOOP_BACK_OFF)],
        );
        assert_eq!(status.phase.as_deref(), Some(RUNNING));
        let app = &status.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(waiting_reason(app), Some(CRASH_LOOP_BACK_OFF));
        assert_eq!(app.restart_count, 2);
        let last = app
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("last state");
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(condition_of(&status, "Ready"), "False");
    }

    #[test]
    fn never_restarted_pods_end_succeeded_or_failed() {
        let pod = pod("Never", &[], &["a", "b"]);
        let done = status_of(
            &pod,
            vec![
                instance("a", 0, RuntimeState::Exited, 0),
                instance("b", 0, RuntimeState::Exited, 0),
            ],
            &[],
        );
        assert_eq!(done.phase.as_deref(), Some(SUCCEEDED));
        let failed = status_of(
            &pod,
            vec![
                instance("a", 0, RuntimeState::Exited, 0),
                instance("b", 0, RuntimeState::Exited, 3),
            ],
            &[],
        );
        assert_eq!(failed.phase.as_deref(), Some(FAILED));
        let b = &failed.container_statuses.as_ref().expect("statuses")[1];
        let t = b
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated");
        assert_eq!(t.exit_code, 3);
        assert_eq!(condition_of(&failed, "Ready"), "False");
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let pod = pod("Always", &["setup"], &["app"]);
        let initializing = status_of(
            &pod,
            vec![instance("setup", 0, RuntimeState::Running, 0)],
            &[],
        );
        assert_eq!(initializing.phase.as_deref(), Some(PENDING));
        assert_eq!(condition_of(&initializing, "Initialized"), "False");
        let app = &initializing.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(waiting_reason(app), Some(POD_INITIALIZING));

        let failing = status_of(
            &pod,
            vec![instance("setup", 0, RuntimeState::Exited, 1)],
            &[("setup", CRASH_LOOP_BACK_OFF)],
        );
        assert_eq!(
            failing.phase.as_deref(),
            Some(PENDING),
            "Always restarts init containers"
        );

        let never = self::pod("Never", &["setup"], &["app"]);
        let failed = status_of(
            &never,
            vec![instance("setup", 0, RuntimeState::Exited, 1)],
            &[],
        );
        assert_eq!(failed.phase.as_deref(), Some(FAILED));

        let done = status_of(
            &pod,
            vec![
                instance("app", 0, RuntimeState::Running, 0),
                instance("setup", 0, RuntimeState::Exited, 0),
            ],
            &[],
        );
        assert_eq!(done.phase.as_deref(), Some(RUNNING));
        assert_eq!(condition_of(&done, "Initialized"), "True");
    }

    #[test]
    fn image_pull_failures_show_as_waiting() {
        let pod = pod("Always", &[], &["app"]);
        let status = status_of(&pod, vec![], &[("app", IMAGE_PULL_BACK_OFF)]);
        assert_eq!(status.phase.as_deref(), Some(PENDING));
        let app = &status.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(waiting_reason(app), Some(IMAGE_PULL_BACK_OFF));
        assert_eq!(
            app.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.message.as_deref()),
            Some("ImagePullBackOff for app")
        );
    }

    #[test]
    fn transition_times_survive_unchanged_conditions() {
        let pod = pod("Always", &[], &["app"]);
        let snapshot = RuntimeSnapshot {
            sandboxes: vec![ready_sandbox()],
            containers: vec![instance("app", 0, RuntimeState::Running, 0)],
        };
        let waiting = BTreeMap::new();
        let no_probes = BTreeMap::new();
        let inputs = |previous, now| StatusInputs {
            pod: &pod,
            snapshot: &snapshot,
            waiting: &waiting,
            runtime_name: "containerd",
            host_ips: &[],
            start_time: None,
            previous,
            now,
            probes: &no_probes,
            allocations: None,
        };
        let first = pod_status(&inputs(None, Timestamp::UNIX_EPOCH));
        let later = Timestamp::from_second(100).expect("time");
        let second = pod_status(&inputs(Some(&first), later));
        assert_eq!(first, second, "nothing changed, nothing to publish");
    }

    fn full_condition<'a>(status: &'a PodStatus, kind: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .unwrap_or_else(|| panic!("no {kind} condition"))
    }

    #[test]
    fn a_regular_init_container_is_ready_once_it_exited_zero() {
        let pod = pod("Always", &["setup"], &["app"]);
        let running = status_of(
            &pod,
            vec![instance("setup", 0, RuntimeState::Running, 0)],
            &[],
        );
        let init = &running.init_container_statuses.as_ref().expect("init")[0];
        assert!(!init.ready, "not ready while it runs");
        let initialized = full_condition(&running, "Initialized");
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.reason.as_deref(),
            Some("ContainersNotInitialized")
        );
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [setup]")
        );
        let ready = full_condition(&running, "Ready");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [app]")
        );
        let done = status_of(
            &pod,
            vec![
                instance("setup", 0, RuntimeState::Exited, 0),
                instance("app", 0, RuntimeState::Running, 0),
            ],
            &[],
        );
        assert!(done.init_container_statuses.as_ref().expect("init")[0].ready);
        let initialized = full_condition(&done, "Initialized");
        assert_eq!(
            (initialized.status.as_str(), initialized.reason.as_deref()),
            ("True", None),
            "no stale reason when it turns True"
        );
        assert_eq!(full_condition(&done, "Ready").status, "True");
    }

    #[test]
    fn terminal_pods_say_why_they_are_not_ready() {
        let pod = pod("Never", &[], &["app"]);
        let failed = status_of(&pod, vec![instance("app", 0, RuntimeState::Exited, 1)], &[]);
        assert_eq!(failed.phase.as_deref(), Some("Failed"));
        for kind in ["Ready", "ContainersReady"] {
            let c = full_condition(&failed, kind);
            assert_eq!(
                (c.status.as_str(), c.reason.as_deref()),
                ("False", Some("PodFailed"))
            );
            assert_eq!(c.message, None);
        }
        let succeeded = status_of(&pod, vec![instance("app", 0, RuntimeState::Exited, 0)], &[]);
        let initialized = full_condition(&succeeded, "Initialized");
        assert_eq!(
            (initialized.status.as_str(), initialized.reason.as_deref()),
            ("True", Some("PodCompleted"))
        );
        assert_eq!(
            full_condition(&succeeded, "Ready").reason.as_deref(),
            Some("PodCompleted")
        );
    }

    #[test]
    fn readiness_gates_hold_ready_until_their_conditions_are_true() {
        let mut pod = pod("Always", &[], &["app"]);
        if let Some(spec) = pod.spec.as_mut() {
            spec.readiness_gates = Some(vec![
                k8s_openapi::api::core::v1::PodReadinessGate {
                    condition_type: "example.com/lb".into(),
                },
                k8s_openapi::api::core::v1::PodReadinessGate {
                    condition_type: "example.com/dns".into(),
                },
            ]);
        }
        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "example.com/lb".into(),
                status: "False".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let running = vec![instance("app", 0, RuntimeState::Running, 0)];
        let status = status_of(&pod, running.clone(), &[]);
        assert_eq!(condition_of(&status, "ContainersReady"), "True");
        let ready = full_condition(&status, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some(
                "the status of pod readiness gate \"example.com/lb\" is not \"True\", but \
                 False, corresponding condition of pod readiness gate \"example.com/dns\" \
                 does not exist."
            )
        );
        pod.status = Some(PodStatus {
            conditions: Some(
                ["example.com/lb", "example.com/dns"]
                    .iter()
                    .map(|kind| PodCondition {
                        type_: (*kind).into(),
                        status: "True".into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        assert_eq!(
            condition_of(&status_of(&pod, running, &[]), "Ready"),
            "True"
        );
    }
}
