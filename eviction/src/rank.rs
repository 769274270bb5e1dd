//! Which pod goes first, as upstream's ranking functions (`rankMemoryPressure`,
//! `rankDiskPressureFunc`, `rankPIDPressure`), and the message an evicted pod gets
//! (`evictionMessage`).

use std::cmp::Reverse;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kubelet_core::Quantity;
use kubelet_stats::summary::PodStats;

use crate::signals::{Observations, format_quantity};
use crate::threshold::{Resource, Signal, Threshold};

/// The pods' stats by uid.
pub(crate) type StatsByUid<'a> = HashMap<&'a str, &'a PodStats>;

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// The pod's request of `resource` in its unit (0 when none or unparsable).
fn request(pod: &Pod, resource: Resource) -> i64 {
    let name = match resource {
        Resource::Memory => "memory",
        Resource::EphemeralStorage => "ephemeral-storage",
        Resource::Inodes | Resource::Pids => return 0,
    };
    kubelet_pod_manager::admission::pod_requests(pod)
        .ok()
        .and_then(|r| r.get(name).map(Quantity::value))
        .unwrap_or(0)
}

fn signed(v: Option<u64>) -> i64 {
    v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// What the pod uses of `resource`: the working set of its cgroup, the bytes or inodes
/// of its ephemeral storage (writable layers, logs, local volumes), its processes.
fn usage(stats: &PodStats, resource: Resource) -> i64 {
    match resource {
        Resource::Memory => signed(stats.memory.as_ref().and_then(|m| m.working_set_bytes)),
        Resource::EphemeralStorage => {
            signed(stats.ephemeral_storage.as_ref().and_then(|s| s.used_bytes))
        }
        Resource::Inodes => signed(stats.ephemeral_storage.as_ref().and_then(|s| s.inodes_used)),
        Resource::Pids => signed(stats.process_stats.as_ref().and_then(|p| p.process_count)),
    }
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Orders `pods` for eviction under `signal`, first to go first: pods without stats,
/// then (memory and disk) pods using more than they request, then lower priority, then
/// larger usage above the request (processes for pids). Each pod's key is computed once:
/// requests are parsed quantities, too dear to redo in every comparison.
pub(crate) fn rank(pods: &mut [Pod], signal: Signal, stats: &StatsByUid<'_>) {
    let resource = signal.resource();
    pods.sort_by_cached_key(|pod| {
        let priority = priority(pod);
        let Some(s) = stats.get(uid(pod)) else {
            return (false, false, priority, Reverse(0));
        };
        let used = usage(s, resource);
        match resource {
            Resource::Pids => (true, false, priority, Reverse(used)),
            _ => {
                let requested = request(pod, resource);
                (true, used <= requested, priority, Reverse(used - requested))
            }
        }
    });
}

/// Upstream's `evictionMessage`: `The node was low on resource: memory. Threshold
/// quantity: 100Mi, available: 50Mi. Container app was using 300Mi, request is 0, has
/// larger consumption of memory. `
pub(crate) fn eviction_message(
    resource: Resource,
    pod: &Pod,
    stats: Option<&PodStats>,
    thresholds: &[Threshold],
    observations: &Observations,
) -> String {
    let mut message = format!("The node was low on resource: {resource}. ");
    let met = thresholds
        .iter()
        .filter(|t| t.signal.resource() == resource)
        .find_map(|t| observations.get(&t.signal).map(|o| (t, o)));
    if let Some((threshold, observed)) = met {
        message += &format!(
            "Threshold quantity: {}, available: {}. ",
            format_quantity(threshold.value.amount(observed.capacity), resource),
            format_quantity(observed.available, resource),
        );
    }
    let Some(stats) = stats else {
        return message;
    };
    let Some(spec) = pod.spec.as_ref() else {
        return message;
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        let Some(c) = stats.containers.iter().find(|c| c.name == container.name) else {
            continue;
        };
        let usage = match resource {
            Resource::Memory => c
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes)
                .map(|v| signed(Some(v))),
            Resource::EphemeralStorage => match (
                c.rootfs.as_ref().and_then(|r| r.used_bytes),
                c.logs.as_ref().and_then(|l| l.used_bytes),
            ) {
                (Some(root), Some(logs)) => Some(signed(Some(root.saturating_add(logs)))),
                _ => None,
            },
            Resource::Inodes | Resource::Pids => None,
        };
        let requested = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource.as_str()))
            .map(|q| {
                (
                    q.0.clone(),
                    Quantity::parse(&q.0).map(|q| q.value()).unwrap_or(0),
                )
            });
        let (request_text, request_value) = requested.unwrap_or_else(|| ("0".to_owned(), 0));
        if let Some(usage) = usage
            && usage > request_value
        {
            message += &format!(
                "Container {} was using {}, request is {request_text}, has larger consumption of {resource}. ",
                container.name,
                format_quantity(usage, resource),
            );
        }
    }
    message
}

#[cfg(test)]
pub(crate) mod tests;
