//! Local ephemeral storage limits, as upstream's `localStorageEviction`
//! (localStorageCapacityIsolation): an emptyDir over its `sizeLimit`, a pod over the sum
//! of its containers' `ephemeral-storage` limits, a container over its own.

use k8s_openapi::api::core::v1::Pod;
use kubelet_core::Quantity;
use kubelet_stats::summary::PodStats;

fn bytes(text: &str) -> Option<i64> {
    Quantity::parse(text).ok().map(|q| q.value())
}

fn used(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Why `pod` must be evicted for its local storage, with upstream's message; `None`
/// when it is within its limits.
pub(crate) fn exceeded(pod: &Pod, stats: &PodStats) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    for volume in spec.volumes.iter().flatten() {
        let Some(size) = volume
            .empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.as_ref())
        else {
            continue;
        };
        let Some(limit) = bytes(&size.0).filter(|l| *l > 0) else {
            continue;
        };
        let usage = stats
            .volume_stats
            .iter()
            .find(|v| v.name == volume.name)
            .and_then(|v| used(v.fs.used_bytes));
        if usage.is_some_and(|u| u > limit) {
            return Some(format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                volume.name, size.0
            ));
        }
    }
    let limits = kubelet_pod_manager::admission::pod_limits(pod).ok()?;
    if let Some(limit) = limits.get("ephemeral-storage") {
        let total = used(stats.ephemeral_storage.as_ref().and_then(|s| s.used_bytes));
        if total.is_some_and(|t| t > limit.value()) {
            let text = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .filter_map(|c| {
                    c.resources
                        .as_ref()?
                        .limits
                        .as_ref()?
                        .get("ephemeral-storage")
                })
                .map(|q| q.0.clone());
            // Upstream prints the summed quantity; with one limit that is its text.
            let texts: Vec<String> = text.collect();
            let shown = if texts.len() == 1 {
                texts[0].clone()
            } else {
                crate::signals::format_quantity(
                    limit.value(),
                    crate::threshold::Resource::EphemeralStorage,
                )
            };
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {shown}. "
            ));
        }
    }
    for container in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let Some(limit_text) = container
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("ephemeral-storage"))
        else {
            continue;
        };
        let Some(limit) = bytes(&limit_text.0) else {
            continue;
        };
        let Some(c) = stats.containers.iter().find(|c| c.name == container.name) else {
            continue;
        };
        let root = used(c.rootfs.as_ref().and_then(|r| r.used_bytes)).unwrap_or(0);
        let logs = used(c.logs.as_ref().and_then(|l| l.used_bytes)).unwrap_or(0);
        if root.saturating_add(logs) > limit {
            return Some(format!(
                "Container {} exceeded its local ephemeral storage limit {:?}. ",
                container.name, limit_text.0
            ));
        }
    }
    None
}
