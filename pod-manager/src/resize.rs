//! Applying a pod's allocated resources to its running containers and its cgroup, as
//! upstream's `computePodResizeAction` and `doPodResizeAction`: memory first, then CPU;
//! within each, the pod cgroup grows before its containers and shrinks after them, and
//! decreasing containers go before increasing ones. A container whose `resizePolicy`
//! says `RestartContainer` for a changed resource is restarted instead.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kubelet_cgroups::tree::{ResourceConfig, pod_resource_config};
use kubelet_core::{ContainerState, ContainerStatus, EventType, PodRef, Quantity, pod_qos};
use tracing::{info, warn};

use crate::allocation::{REASON_ERROR, resize_message, same_requirements};
use crate::sync::{SyncContext, pod_event};

/// The four values a resize changes, as upstream's `containerResources`: millicores and
/// bytes, 0 when not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Values {
    cpu_request: i64,
    cpu_limit: i64,
    memory_request: i64,
    memory_limit: i64,
}

fn amount(list: Option<&std::collections::BTreeMap<String, ApiQuantity>>, name: &str) -> Quantity {
    list.and_then(|l| l.get(name))
        .and_then(|q| Quantity::try_from(q).ok())
        .unwrap_or_default()
}

impl Values {
    fn of(resources: &ResourceRequirements) -> Self {
        let requests = resources.requests.as_ref();
        let limits = resources.limits.as_ref();
        Self {
            cpu_request: amount(requests, "cpu").milli_value(),
            cpu_limit: amount(limits, "cpu").milli_value(),
            memory_request: amount(requests, "memory").value(),
            memory_limit: amount(limits, "memory").value(),
        }
    }
}

/// One running container and what it runs with.
pub(crate) struct Running<'a> {
    pub container: &'a Container,
    pub instance: &'a ContainerStatus,
}

/// What the resize pass leaves to the sync: containers whose policy asks for a restart.
#[derive(Default)]
pub(crate) struct ResizeActions<'a> {
    /// Containers to kill and start again with their allocated resources.
    pub restart: Vec<Running<'a>>,
}

fn requirements(container: &Container) -> ResourceRequirements {
    container.resources.clone().unwrap_or_default()
}

fn restart_policy_for(container: &Container, resource: &str) -> bool {
    container
        .resize_policy
        .iter()
        .flatten()
        .find(|p| p.resource_name == resource)
        .is_some_and(|p| p.restart_policy == "RestartContainer")
}

/// One container to update for one resource, with the resources it gets.
struct Update<'a> {
    running: &'a Running<'a>,
    /// What the container will run with after this step.
    resources: ResourceRequirements,
    /// Whether this step lowers its value (lowering steps go first).
    decreasing: bool,
    /// For a memory limit going down: the new limit, checked against usage first.
    lower_memory_limit: Option<i64>,
}

/// `current` with `resource`'s requests and limits taken from `desired`.
fn with_resource(
    current: &ResourceRequirements,
    desired: &ResourceRequirements,
    resource: &str,
) -> ResourceRequirements {
    let merge =
        |current: Option<&std::collections::BTreeMap<String, ApiQuantity>>,
         desired: Option<&std::collections::BTreeMap<String, ApiQuantity>>| {
            let mut out = current.cloned().unwrap_or_default();
            out.remove(resource);
            if let Some(q) = desired.and_then(|d| d.get(resource)) {
                out.insert(resource.to_owned(), q.clone());
            }
            Some(out).filter(|o| !o.is_empty())
        };
    ResourceRequirements {
        requests: merge(current.requests.as_ref(), desired.requests.as_ref()),
        limits: merge(current.limits.as_ref(), desired.limits.as_ref()),
        claims: desired.claims.clone(),
    }
}

/// Brings the running containers of `pod` (its allocated version) to their allocated
/// resources. Containers never recorded are taken to run with their allocation (a pod
/// from before this kubelet tracked them). Errors are reported on the pod
/// (`PodResizeInProgress` with reason `Error` and a `ResizeError` event); the containers
/// keep running.
pub(crate) async fn resize_running<'a>(
    ctx: &SyncContext,
    pod: &Pod,
    running: &'a [Running<'a>],
) -> ResizeActions<'a> {
    let allocations = &ctx.node.allocations;
    let uid = PodRef::of(pod).uid;
    let mut actions = ResizeActions::default();
    let mut memory: Vec<Update<'_>> = Vec::new();
    let mut cpu: Vec<Update<'_>> = Vec::new();
    let mut recorded = false;
    for r in running {
        let desired = requirements(r.container);
        let Some(actuated) = allocations.actuated(&uid, &r.container.name) else {
            allocations.set_actuated(&uid, &r.container.name, desired);
            recorded = true;
            continue;
        };
        let (want, have) = (Values::of(&desired), Values::of(&actuated));
        if want == have {
            continue;
        }
        let memory_changed =
            want.memory_limit != have.memory_limit || want.memory_request != have.memory_request;
        let cpu_changed = want.cpu_limit != have.cpu_limit || want.cpu_request != have.cpu_request;
        if (memory_changed && restart_policy_for(r.container, "memory"))
            || (cpu_changed && restart_policy_for(r.container, "cpu"))
        {
            actions.restart.push(Running {
                container: r.container,
                instance: r.instance,
            });
            continue;
        }
        let after_memory = with_resource(&actuated, &desired, "memory");
        if memory_changed {
            let (new, old) = if want.memory_limit != have.memory_limit {
                (want.memory_limit, have.memory_limit)
            } else {
                (want.memory_request, have.memory_request)
            };
            let limit_lowered = want.memory_limit != 0
                && (have.memory_limit == 0 || want.memory_limit < have.memory_limit);
            memory.push(Update {
                running: r,
                resources: after_memory.clone(),
                decreasing: new < old,
                lower_memory_limit: limit_lowered.then_some(want.memory_limit),
            });
        }
        if cpu_changed {
            let (new, old) = if want.cpu_limit != have.cpu_limit {
                (want.cpu_limit, have.cpu_limit)
            } else {
                (want.cpu_request, have.cpu_request)
            };
            cpu.push(Update {
                running: r,
                resources: desired.clone(),
                decreasing: new < old,
                lower_memory_limit: None,
            });
        }
    }
    if memory.is_empty() && cpu.is_empty() {
        if recorded {
            allocations.save().await;
        }
        return actions;
    }
    // Lowering steps first, as upstream orders its container updates.
    memory.sort_by_key(|u| !u.decreasing);
    cpu.sort_by_key(|u| !u.decreasing);
    let result = apply(ctx, pod, &uid, &memory, &cpu).await;
    allocations.save().await;
    if let Err(message) = result {
        warn!(%message, "resizing the pod's containers failed");
        let generation = pod.metadata.generation.unwrap_or(0);
        let (generation, changed) =
            allocations.set_in_progress(&uid, REASON_ERROR, &message, generation);
        if changed {
            pod_event(
                ctx,
                pod,
                EventType::Warning,
                "ResizeError",
                resize_message("Pod resize error", pod, generation, &message),
            );
        }
    }
    actions
}

/// The pod cgroup's settings for `pod` with its containers at `resources`.
fn pod_config(ctx: &SyncContext, pod: &Pod) -> Option<ResourceConfig> {
    let settings = ctx.node.pod_cgroups.as_ref()?;
    let resources = crate::pod_cgroup::pod_resources(pod).ok()?;
    Some(pod_resource_config(
        pod_qos(pod),
        &resources,
        settings.cpu_cfs_quota,
        settings.cpu_cfs_quota_period_us,
        None,
    ))
}

/// `pod` with each container at what it was last given.
fn actuated_pod(ctx: &SyncContext, pod: &Pod, uid: &str) -> Pod {
    let mut actuated = pod.clone();
    if let Some(spec) = actuated.spec.as_mut() {
        let containers = spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut());
        for container in containers {
            if let Some(resources) = ctx.node.allocations.actuated(uid, &container.name) {
                container.resources = Some(resources);
            }
        }
    }
    actuated
}

async fn apply(
    ctx: &SyncContext,
    pod: &Pod,
    uid: &str,
    memory: &[Update<'_>],
    cpu: &[Update<'_>],
) -> Result<(), String> {
    let current = pod_config(ctx, &actuated_pod(ctx, pod, uid));
    let target = pod_config(ctx, pod);
    let pod_cgroup = match (&ctx.cgroups, current, target) {
        (Some(cgroups), Some(current), Some(target)) => Some((cgroups, current, target)),
        _ => None,
    };
    let unlimited = |v: Option<i64>| v.filter(|v| *v > 0).unwrap_or(i64::MAX);

    // Memory: requests are not written to cgroups, so only the limit orders the steps.
    if !memory.is_empty() {
        check_memory_usage(ctx, memory).await?;
        let grow = pod_cgroup
            .as_ref()
            .map(|(_, c, t)| (unlimited(c.memory), unlimited(t.memory)));
        let memory_only = |t: &ResourceConfig| ResourceConfig {
            memory: t.memory.filter(|m| *m > 0),
            ..ResourceConfig::default()
        };
        if let (Some((cgroups, _, target)), Some((old, new))) = (&pod_cgroup, grow)
            && new > old
        {
            set_pod_cgroup(cgroups, pod, memory_only(target)).await?;
        }
        update_containers(ctx, pod, uid, memory).await?;
        if let (Some((cgroups, _, target)), Some((old, new))) = (&pod_cgroup, grow)
            && new < old
        {
            set_pod_cgroup(cgroups, pod, memory_only(target)).await?;
        }
    }
    if !cpu.is_empty() {
        let quota = pod_cgroup
            .as_ref()
            .map(|(_, c, t)| (unlimited(c.cpu_quota), unlimited(t.cpu_quota)));
        let shares = pod_cgroup
            .as_ref()
            .map(|(_, c, t)| (c.cpu_shares.unwrap_or(0), t.cpu_shares.unwrap_or(0)));
        let quota_only = |t: &ResourceConfig| ResourceConfig {
            cpu_quota: t.cpu_quota,
            cpu_period: t.cpu_period,
            ..ResourceConfig::default()
        };
        let shares_only = |t: &ResourceConfig| ResourceConfig {
            cpu_shares: t.cpu_shares,
            ..ResourceConfig::default()
        };
        if let Some((cgroups, _, target)) = &pod_cgroup {
            // Limits grow before requests, and requests shrink before limits, so
            // requests never exceed limits on the way.
            if quota.is_some_and(|(old, new)| new > old) && target.cpu_quota.is_some() {
                set_pod_cgroup(cgroups, pod, quota_only(target)).await?;
            }
            if shares.is_some_and(|(old, new)| new > old) {
                set_pod_cgroup(cgroups, pod, shares_only(target)).await?;
            }
        }
        update_containers(ctx, pod, uid, cpu).await?;
        if let Some((cgroups, _, target)) = &pod_cgroup {
            if shares.is_some_and(|(old, new)| new < old) {
                set_pod_cgroup(cgroups, pod, shares_only(target)).await?;
            }
            if quota.is_some_and(|(old, new)| new < old) && target.cpu_quota.is_some() {
                set_pod_cgroup(cgroups, pod, quota_only(target)).await?;
            }
        }
    }
    Ok(())
}

/// Sets the pod cgroup to the pod's allocation, for containers restarted by a resize
/// (upstream's `UpdatePodResources`): called between their kill and their start.
pub(crate) async fn update_pod_cgroup(ctx: &SyncContext, pod: &Pod) {
    let (Some(cgroups), Some(target)) = (&ctx.cgroups, pod_config(ctx, pod)) else {
        return;
    };
    let config = ResourceConfig {
        pids_limit: None,
        ..target
    };
    if let Err(message) = set_pod_cgroup(cgroups, pod, config).await {
        warn!(%message, "resizing the pod cgroup for restarted containers");
    }
}

/// Upstream's best-effort check before lowering a memory limit: never below what the
/// container uses now, since the kernel would have to reclaim or OOM-kill.
async fn check_memory_usage(ctx: &SyncContext, memory: &[Update<'_>]) -> Result<(), String> {
    let mut errors = Vec::new();
    for update in memory {
        let Some(limit) = update.lower_memory_limit else {
            continue;
        };
        let name = &update.running.container.name;
        let usage = ctx
            .runtime
            .container_stats(&update.running.instance.container.id)
            .await
            .ok()
            .and_then(|s| s.memory_usage_bytes);
        match usage {
            None => errors.push(format!("missing container {name:?} memory usage")),
            Some(usage) if usage >= u64::try_from(limit).unwrap_or(0) => errors.push(format!(
                "attempting to set container {name:?} memory limit ({limit}) below current usage ({usage})"
            )),
            Some(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "cannot decrease memory limits: [{}]",
            errors.join(", ")
        ))
    }
}

async fn set_pod_cgroup(
    cgroups: &Arc<dyn kubelet_cgroups::CgroupManager>,
    pod: &Pod,
    config: ResourceConfig,
) -> Result<(), String> {
    let uid = PodRef::of(pod).uid;
    let name = kubelet_cgroups::pod_cgroupfs_path(pod_qos(pod), &uid);
    let cgroups = cgroups.clone();
    match tokio::task::spawn_blocking(move || cgroups.apply(&name, &config)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("setting the pod cgroup of {uid}: {e}")),
        Err(e) => Err(format!("setting the pod cgroup of {uid}: {e}")),
    }
}

async fn update_containers(
    ctx: &SyncContext,
    pod: &Pod,
    uid: &str,
    updates: &[Update<'_>],
) -> Result<(), String> {
    for update in updates {
        let container = Container {
            resources: Some(update.resources.clone()),
            ..update.running.container.clone()
        };
        let linux = crate::spec::container_resources(pod, &container, &ctx.node)
            .map_err(|e| e.to_string())?;
        let id = &update.running.instance.container.id;
        ctx.runtime
            .update_container_resources(id, &linux)
            .await
            .map_err(|e| {
                format!(
                    "updating the resources of container {:?}: {e}",
                    container.name
                )
            })?;
        info!(container = %container.name, "container resources updated in place");
        ctx.node
            .allocations
            .set_actuated(uid, &container.name, update.resources.clone());
    }
    Ok(())
}

/// After a sync: `PodResizeInProgress` while a running container's resources differ from
/// its allocation, cleared with a `ResizeCompleted` event once none does (upstream's
/// `IsPodResizeInProgress` in `SyncPod`).
pub(crate) fn report_progress(ctx: &SyncContext, pod: &Pod, running: &[Running<'_>]) {
    let allocations = &ctx.node.allocations;
    let uid = PodRef::of(pod).uid;
    let in_progress = running.iter().any(|r| {
        r.instance.container.state == ContainerState::Running
            && allocations
                .actuated(&uid, &r.container.name)
                .is_some_and(|a| !same_requirements(&a, &requirements(r.container)))
    });
    let generation = pod.metadata.generation.unwrap_or(0);
    if in_progress {
        allocations.set_in_progress(&uid, "", "", generation);
    } else if let Some(generation) = allocations.clear_in_progress(&uid, generation) {
        pod_event(
            ctx,
            pod,
            EventType::Normal,
            "ResizeCompleted",
            resize_message("Pod resize completed", pod, generation, ""),
        );
    }
}
