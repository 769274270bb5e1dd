//! The quality-of-service class of a pod, as upstream's `GetPodQOS` decides it.
//!
//! The class picks the pod's cgroup parent (`/kubepods`, `/kubepods/burstable`,
//! `/kubepods/besteffort`), its containers' `oom_score_adj`, and the eviction order, so it
//! must be the class the API server and the upstream kubelet compute.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::quantity::Quantity;

/// Quality-of-service class of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QosClass {
    /// Every container (or the pod level) has equal, non-zero CPU and memory requests and
    /// limits.
    Guaranteed,
    /// Something in between.
    Burstable,
    /// No CPU or memory requests or limits anywhere.
    BestEffort,
}

impl QosClass {
    /// The API string: `Guaranteed`, `Burstable` or `BestEffort`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guaranteed => "Guaranteed",
            Self::Burstable => "Burstable",
            Self::BestEffort => "BestEffort",
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QosClass {
    type Err = String;

    /// Parses the API string; anything else is returned as the error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Guaranteed" => Ok(Self::Guaranteed),
            "Burstable" => Ok(Self::Burstable),
            "BestEffort" => Ok(Self::BestEffort),
            other => Err(other.to_owned()),
        }
    }
}

/// The pod's QoS class: `status.qosClass` when the API server set it (the class of a pod
/// never changes once computed), otherwise [`compute_pod_qos`].
pub fn pod_qos(pod: &Pod) -> QosClass {
    pod.status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .and_then(|class| class.parse().ok())
        .unwrap_or_else(|| compute_pod_qos(pod))
}

/// Computes the QoS class from the spec, as upstream `ComputePodQOS` with its default
/// feature gates (PodLevelResources and PodLevelResourcesFixKubeletQOSClass on).
///
/// Only CPU and memory count. Pod-level resources, when they name a resource pod-level
/// resources support, decide alone. Otherwise every init and regular container is classed
/// on its own: any Burstable container, or a mix of Guaranteed and BestEffort ones, makes
/// the pod Burstable. A quantity that does not parse cannot be shown equal or zero and
/// counts as Burstable.
pub fn compute_pod_qos(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    if let Some(resources) = spec.resources.as_ref()
        && pod_level_resources_set(resources)
    {
        return requirements_qos(resources);
    }

    let mut pod_class = None;
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    for container in containers {
        let class = container
            .resources
            .as_ref()
            .map_or(QosClass::BestEffort, requirements_qos);
        match (class, pod_class) {
            (QosClass::Burstable, _) => return QosClass::Burstable,
            (class, None) => pod_class = Some(class),
            (class, Some(seen)) if class != seen => return QosClass::Burstable,
            _ => {}
        }
    }
    // No containers at all cannot happen in a valid pod.
    pod_class.unwrap_or(QosClass::BestEffort)
}

/// Upstream `IsPodLevelResourcesSet`: requests or limits name CPU, memory or hugepages.
fn pod_level_resources_set(resources: &ResourceRequirements) -> bool {
    let supported =
        |name: &String| name == "cpu" || name == "memory" || name.starts_with("hugepages-");
    resources
        .requests
        .iter()
        .chain(resources.limits.iter())
        .flat_map(BTreeMap::keys)
        .any(supported)
}

fn requirements_qos(resources: &ResourceRequirements) -> QosClass {
    let empty =
        |list: &Option<BTreeMap<String, ApiQuantity>>| list.as_ref().is_none_or(BTreeMap::is_empty);
    if empty(&resources.requests) && empty(&resources.limits) {
        return QosClass::BestEffort;
    }
    let mut class = None;
    for name in ["cpu", "memory"] {
        let resource_class = resource_qos(resources, name);
        match (resource_class, class) {
            (QosClass::Burstable, _) => return QosClass::Burstable,
            (c, None) => class = Some(c),
            // Some but not all resources specified.
            (c, Some(seen)) if c != seen => return QosClass::Burstable,
            _ => {}
        }
    }
    class.unwrap_or(QosClass::BestEffort)
}

/// The class one resource alone implies: equal and zero is BestEffort, equal and
/// non-zero Guaranteed, anything else Burstable. A missing entry is zero.
fn resource_qos(resources: &ResourceRequirements, name: &str) -> QosClass {
    let get = |list: &Option<BTreeMap<String, ApiQuantity>>| -> Option<Quantity> {
        match list.as_ref().and_then(|l| l.get(name)) {
            None => Some(Quantity::ZERO),
            Some(q) => Quantity::try_from(q).ok(),
        }
    };
    match (get(&resources.requests), get(&resources.limits)) {
        (Some(request), Some(limit)) if request == limit => {
            if request.is_zero() {
                QosClass::BestEffort
            } else {
                QosClass::Guaranteed
            }
        }
        _ => QosClass::Burstable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};

    fn list(entries: &[(&str, &str)]) -> Option<BTreeMap<String, ApiQuantity>> {
        Some(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ApiQuantity((*v).to_owned())))
                .collect(),
        )
    }

    fn res(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
        ResourceRequirements {
            requests: if requests.is_empty() {
                None
            } else {
                list(requests)
            },
            limits: if limits.is_empty() {
                None
            } else {
                list(limits)
            },
            ..Default::default()
        }
    }

    fn container(resources: ResourceRequirements) -> Container {
        Container {
            name: "c".into(),
            resources: Some(resources),
            ..Default::default()
        }
    }

    fn pod(init: Vec<ResourceRequirements>, regular: Vec<ResourceRequirements>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                init_containers: Some(init.into_iter().map(container).collect()),
                containers: regular.into_iter().map(container).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const GUARANTEED: &[(&str, &str)] = &[("cpu", "1"), ("memory", "1Gi")];

    #[test]
    fn classes_follow_upstream() {
        let g = || res(GUARANTEED, GUARANTEED);
        let cases: Vec<(&str, Pod, QosClass)> = vec![
            (
                "no resources",
                pod(vec![], vec![res(&[], &[])]),
                QosClass::BestEffort,
            ),
            ("no containers", pod(vec![], vec![]), QosClass::BestEffort),
            (
                "equal cpu and memory",
                pod(vec![], vec![g(), g()]),
                QosClass::Guaranteed,
            ),
            (
                "equal values in other units",
                pod(
                    vec![],
                    vec![res(
                        &[("cpu", "1000m"), ("memory", "1073741824")],
                        GUARANTEED,
                    )],
                ),
                QosClass::Guaranteed,
            ),
            (
                "limits only (no API defaulting of requests here)",
                pod(vec![], vec![res(&[], GUARANTEED)]),
                QosClass::Burstable,
            ),
            (
                "cpu only",
                pod(vec![], vec![res(&[("cpu", "1")], &[("cpu", "1")])]),
                QosClass::Burstable,
            ),
            (
                "requests below limits",
                pod(
                    vec![],
                    vec![res(&[("cpu", "500m"), ("memory", "1Gi")], GUARANTEED)],
                ),
                QosClass::Burstable,
            ),
            (
                "guaranteed and best-effort containers",
                pod(vec![], vec![g(), res(&[], &[])]),
                QosClass::Burstable,
            ),
            (
                "best-effort init container of a guaranteed pod",
                pod(vec![res(&[], &[])], vec![g()]),
                QosClass::Burstable,
            ),
            (
                "guaranteed init container",
                pod(vec![g()], vec![g()]),
                QosClass::Guaranteed,
            ),
            (
                "only ephemeral storage",
                pod(vec![], vec![res(&[("ephemeral-storage", "1Gi")], &[])]),
                QosClass::BestEffort,
            ),
            (
                "unparsable quantity",
                pod(
                    vec![],
                    vec![res(
                        &[("cpu", "1x"), ("memory", "1Gi")],
                        &[("cpu", "1x"), ("memory", "1Gi")],
                    )],
                ),
                QosClass::Burstable,
            ),
        ];
        for (name, pod, expected) in cases {
            assert_eq!(compute_pod_qos(&pod), expected, "{name}");
        }
    }

    #[test]
    fn pod_level_resources_decide_alone() {
        let mut p = pod(vec![], vec![res(&[], &[])]);
        if let Some(spec) = p.spec.as_mut() {
            spec.resources = Some(res(GUARANTEED, GUARANTEED));
        }
        assert_eq!(compute_pod_qos(&p), QosClass::Guaranteed);

        // Pod-level resources naming nothing pod-level resources support are ignored.
        if let Some(spec) = p.spec.as_mut() {
            spec.resources = Some(res(&[("ephemeral-storage", "1Gi")], &[]));
        }
        assert_eq!(compute_pod_qos(&p), QosClass::BestEffort);
    }

    #[test]
    fn status_class_wins() {
        let mut p = pod(vec![], vec![res(&[], &[])]);
        p.status = Some(PodStatus {
            qos_class: Some("Guaranteed".into()),
            ..Default::default()
        });
        assert_eq!(pod_qos(&p), QosClass::Guaranteed);
        assert_eq!(compute_pod_qos(&p), QosClass::BestEffort);
        p.status = Some(PodStatus {
            qos_class: Some("Weird".into()),
            ..Default::default()
        });
        assert_eq!(pod_qos(&p), QosClass::BestEffort);
    }

    #[test]
    fn strings_round_trip() {
        for class in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            assert_eq!(class.as_str().parse::<QosClass>(), Ok(class));
            assert_eq!(class.to_string(), class.as_str());
        }
        assert_eq!(
            "guaranteed".parse::<QosClass>(),
            Err("guaranteed".to_owned())
        );
    }
}
