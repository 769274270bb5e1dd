use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kubelet_stats::summary::{ContainerStats, MemoryStats, PodReference, PodStats};

use super::*;
use crate::signals::Observation;
use crate::threshold::ThresholdValue;

const MI: u64 = 1024 * 1024;

pub(crate) fn pod(name: &str, priority: i32, memory_request: Option<&str>) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.to_owned());
    pod.metadata.namespace = Some("default".to_owned());
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod.spec = Some(PodSpec {
        priority: Some(priority),
        containers: vec![Container {
            name: "app".to_owned(),
            resources: memory_request.map(|r| ResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "memory".to_owned(),
                    ApiQuantity(r.to_owned()),
                )])),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }],
        ..PodSpec::default()
    });
    pod
}

pub(crate) fn stats(name: &str, working_set: u64) -> PodStats {
    let memory = Some(MemoryStats {
        working_set_bytes: Some(working_set),
        ..MemoryStats::default()
    });
    PodStats {
        pod_ref: PodReference {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            uid: format!("uid-{name}"),
        },
        containers: vec![ContainerStats {
            name: "app".to_owned(),
            memory: memory.clone(),
            ..ContainerStats::default()
        }],
        memory,
        ..PodStats::default()
    }
}

fn names(pods: &[Pod]) -> Vec<&str> {
    pods.iter()
        .map(|p| p.metadata.name.as_deref().unwrap_or_default())
        .collect()
}

#[test]
fn memory_ranks_pods_over_their_requests_then_by_priority_then_usage() {
    let all = [
        stats("within", 50 * MI),
        stats("over-high-priority", 300 * MI),
        stats("over-small", 200 * MI),
        stats("over-large", 400 * MI),
    ];
    let by_uid: StatsByUid<'_> = all.iter().map(|s| (s.pod_ref.uid.as_str(), s)).collect();
    let mut pods = vec![
        pod("within", 0, Some("100Mi")),
        pod("over-high-priority", 1000, None),
        pod("over-small", 0, None),
        pod("no-stats", 1000, None),
        pod("over-large", 0, Some("100Mi")),
    ];
    rank(&mut pods, Signal::MemoryAvailable, &by_uid);
    assert_eq!(
        names(&pods),
        vec![
            "no-stats",
            // 400Mi - 100Mi requested is above 200Mi - 0.
            "over-large",
            "over-small",
            "over-high-priority",
            "within",
        ]
    );
}

#[test]
fn the_message_names_the_threshold_and_the_containers_over_their_requests() {
    let threshold = Threshold {
        signal: Signal::MemoryAvailable,
        value: ThresholdValue::Quantity(100 * 1024 * 1024),
        grace_period: Duration::ZERO,
        min_reclaim: None,
    };
    let observations: Observations = [(
        Signal::MemoryAvailable,
        Observation {
            available: 50 * 1024 * 1024,
            capacity: 1 << 30,
            time: kubelet_stats::Time::now(),
        },
    )]
    .into();
    let s = stats("hog", 300 * MI);
    let message = eviction_message(
        Resource::Memory,
        &pod("hog", 0, Some("10Mi")),
        Some(&s),
        &[threshold],
        &observations,
    );
    assert_eq!(
        message,
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
         Container app was using 300Mi, request is 10Mi, has larger consumption of memory. "
    );
    let within = eviction_message(
        Resource::Memory,
        &pod("hog", 0, Some("1Gi")),
        Some(&s),
        &[threshold],
        &observations,
    );
    assert_eq!(
        within,
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
    );
}
