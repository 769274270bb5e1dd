//! A container's cgroup resources (upstream `generateLinuxContainerResources`) and its
//! `oom_score_adj` (upstream `pkg/kubelet/qos/policy.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kubelet_cgroups::{QUOTA_PERIOD_US, milli_cpu_to_quota, milli_cpu_to_shares};
use kubelet_core::{LinuxResources, QosClass, Quantity, pod_qos};

use super::{NodeContext, container_field, pod_spec, spec_error};
use crate::{Error, Result};

/// `oom_score_adj` of Guaranteed containers and node-critical pods.
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
/// `oom_score_adj` of BestEffort containers.
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// The container's cgroup resources, as upstream computes them with its default
/// configuration (CFS quota enforced, 100 ms period, no swap, no MemoryQoS):
///
/// - CPU shares from the CPU request, or from the limit when no request is given;
/// - CFS quota from the CPU limit (0, unlimited, without one), period 100000 µs;
/// - the memory limit in bytes (0 without one);
/// - with pod-level resources, the pod's CPU and memory limits stand in for a
///   container's missing ones;
/// - `oom_score_adj` per [`oom_score_adj`].
pub fn container_resources(
    pod: &Pod,
    container: &Container,
    ctx: &NodeContext,
) -> Result<LinuxResources> {
    let own = Resources::of(pod, container.resources.as_ref(), || {
        format!("{}.resources", container_field(pod, &container.name))
    });
    let cpu_limit = pod_level_fallback(pod, own.limit("cpu")?, "cpu")?;
    let memory_limit = pod_level_fallback(pod, own.limit("memory")?, "memory")?;
    let cpu_request = match own.requests.get("cpu") {
        Some(_) => own.request("cpu")?,
        None => cpu_limit,
    };

    let capacity = if ctx.capacity.memory > 0 {
        ctx.capacity.memory
    } else {
        ctx.allocatable.memory
    };
    Ok(LinuxResources {
        cpu_period: QUOTA_PERIOD_US as i64,
        cpu_quota: cfs_quota(cpu_limit.milli_value()),
        cpu_shares: milli_cpu_to_shares(cpu_request.milli_value().max(0) as u64) as i64,
        memory_limit_in_bytes: memory_limit.value(),
        oom_score_adj: oom_score_adj(pod, container, capacity)?,
        cpuset_cpus: String::new(),
        cpuset_mems: String::new(),
    })
}

/// Upstream `MilliCPUToQuota` on signed values: a negative limit (which validation
/// rejects) gets the minimum quota, as upstream's arithmetic gives it.
fn cfs_quota(milli_cpu: i64) -> i64 {
    if milli_cpu < 0 {
        return kubelet_cgroups::MIN_QUOTA_PERIOD_US as i64;
    }
    i64::try_from(milli_cpu_to_quota(milli_cpu as u64, QUOTA_PERIOD_US)).unwrap_or(i64::MAX)
}

/// With pod-level resources set, a container without its own limit gets the pod's
/// (upstream `getCPULimit`, `getMemoryLimit`).
fn pod_level_fallback(pod: &Pod, limit: Quantity, name: &str) -> Result<Quantity> {
    if !limit.is_zero() {
        return Ok(limit);
    }
    let spec = pod_spec(pod);
    match spec.resources.as_ref().filter(|r| pod_level_set(r)) {
        Some(resources) => {
            Resources::of(pod, Some(resources), || "spec.resources".into()).limit(name)
        }
        None => Ok(limit),
    }
}

/// Upstream `IsPodLevelResourcesSet`.
fn pod_level_set(resources: &ResourceRequirements) -> bool {
    resources
        .requests
        .iter()
        .chain(resources.limits.iter())
        .flat_map(BTreeMap::keys)
        .any(|name| supported_pod_level(name))
}

fn supported_pod_level(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

/// The `oom_score_adj` of `container`, as upstream `GetContainerOOMScoreAdjust`:
///
/// - node-critical pods (static, mirror or priority ≥ 2000000000, with priority class
///   `system-node-critical`) and Guaranteed pods: -997;
/// - BestEffort pods: 1000;
/// - Burstable: `1000 - 1000 * memoryRequest / memoryCapacity`, where the request grows
///   by an equal share of pod-level memory requests not claimed by containers, a sidecar
///   scores no higher than the smallest regular container, and the result lies in
///   3..=999.
///
/// `memory_capacity` is the machine's memory in bytes; it must be non-zero for
/// Burstable pods.
pub fn oom_score_adj(pod: &Pod, container: &Container, memory_capacity: u64) -> Result<i64> {
    if is_node_critical(pod) {
        return Ok(GUARANTEED_OOM_SCORE_ADJ);
    }
    match pod_qos(pod) {
        QosClass::Guaranteed => return Ok(GUARANTEED_OOM_SCORE_ADJ),
        QosClass::BestEffort => return Ok(BEST_EFFORT_OOM_SCORE_ADJ),
        QosClass::Burstable => {}
    }
    if memory_capacity == 0 {
        return Err(spec_error(
            pod,
            &container.name,
            "node memory capacity unknown: cannot compute oom_score_adj of a Burstable pod",
        ));
    }
    let capacity = i128::from(memory_capacity);
    let score = |request: i128| 1000 - (1000 * request) / capacity;

    let spec = pod_spec(pod);
    let remaining_per_container = match spec.resources.as_ref() {
        Some(resources) if pod_level_requests_set(resources) => {
            remaining_pod_memory_per_container(pod)?
        }
        _ => 0,
    };
    let request = i128::from(memory_request(pod, container)?);
    let mut adjust = score(request + remaining_per_container);

    let is_sidecar = container.restart_policy.as_deref() == Some("Always")
        && spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == container.name);
    if is_sidecar {
        // A sidecar must not be killed before the regular containers it serves.
        let mut smallest: Option<i64> = None;
        for regular in &spec.containers {
            let request = memory_request(pod, regular)?;
            smallest = Some(smallest.map_or(request, |s| s.min(request)));
        }
        if let Some(smallest) = smallest {
            adjust = adjust.min(score(i128::from(smallest) + remaining_per_container));
        }
    }

    // A Guaranteed container using all memory scores about 10; Burstable ones must stay
    // above that, and below BestEffort ones.
    let adjust = if adjust < 1000 + GUARANTEED_OOM_SCORE_ADJ as i128 {
        1000 + GUARANTEED_OOM_SCORE_ADJ
    } else if adjust == BEST_EFFORT_OOM_SCORE_ADJ as i128 {
        BEST_EFFORT_OOM_SCORE_ADJ - 1
    } else {
        adjust as i64
    };
    Ok(adjust)
}

/// Upstream `IsNodeCriticalPod`.
fn is_node_critical(pod: &Pod) -> bool {
    crate::admission::is_critical(pod)
        && pod_spec(pod).priority_class_name.as_deref() == Some("system-node-critical")
}

/// Upstream `IsPodLevelRequestsSet`.
fn pod_level_requests_set(resources: &ResourceRequirements) -> bool {
    resources
        .requests
        .iter()
        .flat_map(BTreeMap::keys)
        .any(|name| supported_pod_level(name))
}

/// The container's memory request in bytes (0 without one).
fn memory_request(pod: &Pod, container: &Container) -> Result<i64> {
    Ok(Resources::of(pod, container.resources.as_ref(), || {
        format!("{}.resources", container_field(pod, &container.name))
    })
    .request("memory")?
    .value())
}

/// The pod-level memory request not claimed by the containers' requests, shared out
/// equally between all containers (upstream `remainingPodMemReqPerContainer`).
fn remaining_pod_memory_per_container(pod: &Pod) -> Result<i128> {
    let spec = pod_spec(pod);
    let pod_request = Resources::of(pod, spec.resources.as_ref(), || "spec.resources".into())
        .request("memory")?;
    if pod_request.is_zero() {
        return Ok(0);
    }
    let count = spec.containers.len() + spec.init_containers.as_ref().map_or(0, Vec::len);
    let containers = aggregate_container_memory_requests(pod)?;
    let remaining = (i128::from(pod_request.value()) - i128::from(containers.value())).max(0);
    Ok(remaining / count.max(1) as i128)
}

/// The memory the pod's containers need at the busiest moment (upstream
/// `AggregateContainerRequests` for memory): regular containers and sidecars together,
/// or an init container with the sidecars started before it, whichever is larger.
fn aggregate_container_memory_requests(pod: &Pod) -> Result<Quantity> {
    let spec = pod_spec(pod);
    let request = |c: &Container| -> Result<Quantity> {
        Resources::of(pod, c.resources.as_ref(), || {
            format!("{}.resources", container_field(pod, &c.name))
        })
        .request("memory")
    };
    let mut total = Quantity::ZERO;
    for container in &spec.containers {
        total = total.saturating_add(request(container)?);
    }
    let mut sidecars = Quantity::ZERO;
    let mut init_peak = Quantity::ZERO;
    for container in spec.init_containers.iter().flatten() {
        let own = request(container)?;
        let in_use = if container.restart_policy.as_deref() == Some("Always") {
            total = total.saturating_add(own);
            sidecars = sidecars.saturating_add(own);
            sidecars
        } else {
            own.saturating_add(sidecars)
        };
        init_peak = init_peak.max(in_use);
    }
    Ok(total.max(init_peak))
}

/// Parsed requests and limits of one ResourceRequirements; a quantity that does not
/// parse is an invalid pod, naming the field.
struct Resources<'a> {
    pod: &'a Pod,
    requests: &'a BTreeMap<String, ApiQuantity>,
    limits: &'a BTreeMap<String, ApiQuantity>,
    field: String,
}

static EMPTY: BTreeMap<String, ApiQuantity> = BTreeMap::new();

impl<'a> Resources<'a> {
    fn of(
        pod: &'a Pod,
        resources: Option<&'a ResourceRequirements>,
        field: impl FnOnce() -> String,
    ) -> Self {
        Self {
            pod,
            requests: resources
                .and_then(|r| r.requests.as_ref())
                .unwrap_or(&EMPTY),
            limits: resources.and_then(|r| r.limits.as_ref()).unwrap_or(&EMPTY),
            field: field(),
        }
    }

    fn request(&self, name: &str) -> Result<Quantity> {
        self.get(self.requests, "requests", name)
    }

    fn limit(&self, name: &str) -> Result<Quantity> {
        self.get(self.limits, "limits", name)
    }

    fn get(
        &self,
        list: &BTreeMap<String, ApiQuantity>,
        kind: &str,
        name: &str,
    ) -> Result<Quantity> {
        match list.get(name) {
            None => Ok(Quantity::ZERO),
            Some(q) => Quantity::try_from(q).map_err(|e| Error::InvalidPod {
                pod: kubelet_core::PodRef::of(self.pod).to_string(),
                field: format!("{}.{kind}[{name}]", self.field),
                reason: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_and_zero_quota() {
        assert_eq!(cfs_quota(0), 0);
        assert_eq!(cfs_quota(-5), 1000);
        assert_eq!(cfs_quota(250), 25_000);
    }
}
