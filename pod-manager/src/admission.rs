//! Node-side pod admission, as upstream's predicate admit handler
//! (`pkg/kubelet/lifecycle/predicate.go`, v1.37) decides it before a new pod is started:
//! [`admit`] a pod against the pods already running and what the node offers, and
//! [`rejected_status`] for a pod that does not fit.
//!
//! The checks run in upstream's order and the first failure is reported, with upstream's
//! reason and message:
//!
//! 1. The pod's `kubernetes.io/os` label and `spec.os.name` against the node's OS
//!    (`PodOSSelectorNodeLabelDoesNotMatch`, `PodOSNotSupported`), and
//!    `supplementalGroupsPolicy: Strict` on a node without support
//!    (`SupplementalGroupsPolicyNotSupported`).
//! 2. Resources (the scheduler's `noderesources.Fits`): the number of pods against
//!    allocatable `pods`, then the pod's effective requests (see [`pod_requests`]) of
//!    cpu, memory, ephemeral-storage, then hugepages and extended resources, against
//!    allocatable minus what the other pods request (`OutOfcpu`, `OutOfmemory`, ...).
//! 3. nodeSelector and required node affinity (`NodeAffinity`), `spec.nodeName`
//!    (`NodeName`), host ports (`NodePorts`).
//! 4. NoExecute taints the pod does not tolerate (`TaintToleration`); static pods are
//!    exempt. NoSchedule and PreferNoSchedule taints are the scheduler's business.
//!
//! [`admit_isolation`] is upstream's sysctl and AppArmor admit handlers, which the pod
//! manager applies to every new pod, static or not (`SysctlForbidden`, `AppArmor`).
//!
//! Not covered: upstream's other admit handlers (eviction pressure, node shutdown,
//! topology/CPU/memory managers, device plugin resources) and the
//! preemption of lower-priority pods that upstream attempts for a critical pod that
//! does not fit; such a pod is rejected here like any other.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    PodStatus, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kubelet_core::{Quantity, QuantityError, pod_qos};

use crate::source::CONFIG_SOURCE_ANNOTATION;
use crate::spec::NodeSecurity;
use kubelet_core::validation::{label_value_errors, qualified_name_errors as label_key_errors};

mod sysctls;
pub use sysctls::{SysctlAllowlist, kernel_version};
pub(crate) use sysctls::{
    normalize_name as normalize_sysctl_name, pod_defaults as pod_default_sysctls,
};

/// Upstream's `runtime.GOOS`: this kubelet runs on Linux only.
const NODE_OS: &str = "linux";
/// The label pods and nodes carry their OS in (upstream `LabelOSStable`).
const OS_LABEL: &str = "kubernetes.io/os";

/// What admission needs to know about the node, as in its Node object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`, for nodeSelector and node affinity.
    pub labels: BTreeMap<String, String>,
    /// `status.allocatable`; `pods` must be present, or no pod fits (as upstream).
    pub allocatable: BTreeMap<String, ApiQuantity>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `status.features.supplementalGroupsPolicy`: whether the runtime honours
    /// `supplementalGroupsPolicy: Strict`.
    pub supplemental_groups_policy: bool,
}

impl NodeFacts {
    /// The facts of a Node object.
    pub fn from_node(node: &Node) -> Self {
        let status = node.status.as_ref();
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            allocatable: status
                .and_then(|s| s.allocatable.clone())
                .unwrap_or_default(),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
            supplemental_groups_policy: status
                .and_then(|s| s.features.as_ref())
                .and_then(|f| f.supplemental_groups_policy)
                .unwrap_or(false),
        }
    }
}

/// Why a pod was not admitted: the `reason` and `message` upstream puts in the pod's
/// status and the Warning event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// E.g. `OutOfcpu`, `NodeAffinity`.
    pub reason: String,
    /// E.g. `Node didn't have enough resource: cpu, requested: 1000, used: 500,
    /// capacity: 1200`.
    pub message: String,
}

impl Rejection {
    pub(crate) fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Counts the rejection in `kubelet_admission_rejections_total`, once per refused
    /// pod, as upstream's `recordAdmissionRejection`.
    pub fn record(&self, metrics: &kubelet_core::metrics::kubelet::KubeletMetrics) {
        use kubelet_core::metrics::kubelet::admission_rejection_reason;
        metrics
            .admission_rejections_total
            .inc(&[admission_rejection_reason(&self.reason)]);
    }

    /// Upstream `PredicateFailureError`: the plugin name is the reason.
    fn predicate(name: &str, description: &str) -> Self {
        Self::new(name, format!("Predicate {name} failed: {description}"))
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Rejection {}

/// Decides whether `pod` may run on the node, as upstream's predicate admit handler.
///
/// `active` are the pods already admitted and not terminal; a pod with the same UID as
/// `pod` among them is ignored, as upstream's allocation manager leaves the pod being
/// admitted out. Other pods count with their spec requests (upstream counts resized pods
/// at their checkpointed allocation, which is not tracked here).
///
/// A resource quantity that does not parse (which the API server never lets through)
/// rejects the pod with `UnexpectedAdmissionError` when it is the pod's own, or
/// `InvalidNodeInfo` when it is the node's; in another active pod it counts as zero.
pub fn admit(pod: &Pod, active: &[Pod], node: &NodeFacts) -> Result<(), Rejection> {
    // Checks that preemption could not help with come first, as upstream.
    if pod_os_label_mismatch(pod) {
        return Err(Rejection::new(
            "PodOSSelectorNodeLabelDoesNotMatch",
            "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label",
        ));
    }
    let spec = pod
        .spec
        .as_ref()
        .map_or_else(|| Cow::Owned(PodSpec::default()), Cow::Borrowed);
    if spec.os.as_ref().is_some_and(|os| os.name != NODE_OS) {
        return Err(Rejection::new(
            "PodOSNotSupported",
            "Failed to admit pod as the OS field doesn't match node OS",
        ));
    }
    let strict = spec
        .security_context
        .as_ref()
        .and_then(|s| s.supplemental_groups_policy.as_deref())
        == Some("Strict");
    if strict && !node.supplemental_groups_policy {
        return Err(Rejection::new(
            "SupplementalGroupsPolicyNotSupported",
            "SupplementalGroupsPolicy=Strict is not supported in this node",
        ));
    }

    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let others: Vec<&Pod> = active
        .iter()
        .filter(|p| p.metadata.uid.as_deref().unwrap_or_default() != uid)
        .collect();

    fits_resources(pod, &others, node)?;
    if !node_affinity_matches(pod, node) {
        return Err(Rejection::predicate(
            "NodeAffinity",
            "node(s) didn't match Pod's node affinity/selector",
        ));
    }
    let node_name = spec.node_name.as_deref().unwrap_or_default();
    if !node_name.is_empty() && node_name != node.name {
        return Err(Rejection::predicate(
            "NodeName",
            "node(s) didn't match the requested node name",
        ));
    }
    if !fits_host_ports(pod, &others) {
        return Err(Rejection::predicate(
            "NodePorts",
            "node(s) didn't have free ports for the requested pod ports",
        ));
    }
    if !is_static(pod) {
        let tolerations = spec.tolerations.as_deref().unwrap_or_default();
        let untolerated = node
            .taints
            .iter()
            // Evicting running pods is all the kubelet enforces; the scheduler handles
            // the other effects.
            .filter(|taint| taint.effect == "NoExecute")
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)));
        if untolerated {
            return Err(Rejection::predicate(
                "TaintToleration",
                "node(s) had taints that the pod didn't tolerate",
            ));
        }
    }
    Ok(())
}

/// Whether the node can confine `pod` as it asks, as upstream's sysctl allowlist and
/// AppArmor admit handlers decide: each sysctl must be allowed on this node
/// (`SysctlForbidden`, `forbidden sysctl: "kernel.msgmax" not allowlisted`), and a pod
/// asking for an AppArmor profile needs a host that enforces AppArmor (`AppArmor`,
/// `Cannot enforce AppArmor: AppArmor is not enabled on the host`). A pod whose restart
/// rules ask to restart all its containers is refused (`PodFeatureUnsupported`).
pub fn admit_isolation(pod: &Pod, security: &NodeSecurity) -> Result<(), Rejection> {
    let spec = pod
        .spec
        .as_ref()
        .map_or_else(|| Cow::Owned(PodSpec::default()), Cow::Borrowed);
    let host_users = spec.host_users.unwrap_or(true);
    for sysctl in spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_deref())
        .unwrap_or_default()
    {
        security
            .sysctls
            .check(
                &sysctl.name,
                spec.host_network.unwrap_or(false),
                spec.host_ipc.unwrap_or(false),
                host_users,
            )
            .map_err(|why| Rejection::new("SysctlForbidden", format!("forbidden sysctl: {why}")))?;
    }
    crate::spec::validate_apparmor(pod, security.apparmor_enabled)
        .map_err(|why| Rejection::new("AppArmor", format!("Cannot enforce AppArmor: {why}")))?;
    // Upstream restarts every container of the pod in place for this action; running the
    // pod while restarting only one would do less than it asked.
    if let Some(container) = crate::restart::restarts_all_containers(&spec) {
        return Err(Rejection::new(
            "PodFeatureUnsupported",
            format!(
                "container {container:?} asks for the restartPolicyRules action \
                 RestartAllContainers, which this kubelet does not support"
            ),
        ));
    }
    Ok(())
}

/// Upstream's `scheduling.SystemCriticalPriority` (2 * 10^9): pods at or above it are
/// critical.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Reason of a pod refused, or evicted, for node pressure (upstream's `eviction.Reason`).
pub const EVICTED_REASON: &str = "Evicted";

/// Whether the node takes `pod` under the resource pressure it has now, as upstream's
/// eviction manager admits: no pressure admits everything, and so does a critical pod
/// (static, mirror, or system-critical priority); under memory pressure alone only a
/// BestEffort pod is refused, unless it tolerates the `node.kubernetes.io/memory-pressure`
/// NoSchedule taint; any other pressure refuses every other pod. The rejection is
/// `Evicted`, `The node had condition: [MemoryPressure]. `.
pub fn admit_under_pressure(
    pod: &Pod,
    conditions: &[crate::pressure::PressureCondition],
) -> Result<(), Rejection> {
    use crate::pressure::PressureCondition;
    if conditions.is_empty() || is_critical(pod) {
        return Ok(());
    }
    if conditions == [PressureCondition::Memory] {
        if pod_qos(pod) != kubelet_core::QosClass::BestEffort {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/memory-pressure".to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Taint::default()
        };
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref());
        if tolerations
            .unwrap_or_default()
            .iter()
            .any(|t| tolerates(t, &taint))
        {
            return Ok(());
        }
    }
    let names: Vec<&str> = conditions.iter().map(|c| c.as_str()).collect();
    Err(Rejection::new(
        EVICTED_REASON,
        format!("The node had condition: [{}]. ", names.join(" ")),
    ))
}

/// Upstream `IsCriticalPod`: static, mirror, or of system-critical priority.
pub fn is_critical(pod: &Pod) -> bool {
    let is_mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    is_static(pod)
        || is_mirror
        || pod
            .spec
            .as_ref()
            .and_then(|s| s.priority)
            .is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// The status upstream's `rejectPod` gives a pod that was not admitted: phase Failed,
/// the rejection's reason, message `Pod was rejected: <message>`, the pod's QoS class,
/// and the observed generation and start time the status manager adds. A pod that has
/// no start time yet gets none here; upstream's status manager stamps the current time,
/// which the caller should do when it records the status.
pub fn rejected_status(pod: &Pod, rejection: &Rejection) -> PodStatus {
    PodStatus {
        phase: Some("Failed".to_owned()),
        reason: Some(rejection.reason.clone()),
        message: Some(format!("Pod was rejected: {}", rejection.message)),
        qos_class: Some(pod_qos(pod).as_str().to_owned()),
        observed_generation: pod.metadata.generation,
        start_time: pod.status.as_ref().and_then(|s| s.start_time.clone()),
        ..PodStatus::default()
    }
}

/// Resource amounts by name, e.g. `cpu` → `500m`.
pub type ResourceList = BTreeMap<String, Quantity>;

/// The pod's effective requests, as upstream `resourcehelper.PodRequests` computes them
/// for scheduling and admission (PodLevelResources on, no in-place resize accounting):
///
/// - regular containers and sidecars (restartable init containers) add up;
/// - each other init container needs its own requests plus those of the sidecars
///   started before it, and the pod needs the largest of these if that is more;
/// - pod-level requests of cpu, memory and hugepages, when the pod sets any of them,
///   replace the containers' sums of those resources;
/// - `spec.overhead` is added.
///
/// Fails on the first request that is not a valid quantity.
pub fn pod_requests(pod: &Pod) -> Result<ResourceList, QuantityError> {
    pod_requests_keeping(pod, |_| true)
}

/// The pod's effective limits, as upstream `resourcehelper.PodLimits`: summed and
/// maximised over the containers like [`pod_requests`], pod-level cpu and memory limits
/// replacing the containers' when set, and `spec.overhead` added only to the resources
/// that have a limit.
pub fn pod_limits(pod: &Pod) -> Result<ResourceList, QuantityError> {
    pod_totals(pod, Totals::Limits, |_| true)
}

/// Requests or limits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Totals {
    Requests,
    Limits,
}

/// [`pod_requests`] counting only the container requests `keep` accepts.
fn pod_requests_keeping(
    pod: &Pod,
    keep: impl Fn(&str) -> bool,
) -> Result<ResourceList, QuantityError> {
    pod_totals(pod, Totals::Requests, keep)
}

fn pod_totals(
    pod: &Pod,
    totals: Totals,
    keep: impl Fn(&str) -> bool,
) -> Result<ResourceList, QuantityError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(ResourceList::new());
    };
    let pick = |r: &k8s_openapi::api::core::v1::ResourceRequirements| match totals {
        Totals::Requests => r.requests.clone(),
        Totals::Limits => r.limits.clone(),
    };
    let requests = |container: &Container| -> Result<ResourceList, QuantityError> {
        container
            .resources
            .as_ref()
            .and_then(pick)
            .into_iter()
            .flatten()
            .filter(|(name, _)| keep(name))
            .map(|(name, quantity)| Ok((name, Quantity::try_from(&quantity)?)))
            .collect()
    };

    let mut result = ResourceList::new();
    for container in &spec.containers {
        add_into(&mut result, &requests(container)?);
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for container in spec.init_containers.iter().flatten() {
        let own = requests(container)?;
        let needed = if container.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running next to the app containers.
            add_into(&mut result, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut combined = own;
            add_into(&mut combined, &sidecars);
            combined
        };
        max_into(&mut init_peak, &needed);
    }
    max_into(&mut result, &init_peak);

    let pod_level = spec.resources.as_ref().and_then(pick);
    if let Some(pod_level) = pod_level
        && pod_level.keys().any(|name| is_pod_level_resource(name))
    {
        for (name, quantity) in &pod_level {
            if is_pod_level_resource(name) {
                result.insert(name.clone(), Quantity::try_from(quantity)?);
            }
        }
    }
    let overhead: ResourceList = spec
        .overhead
        .iter()
        .flatten()
        .filter(|(name, _)| totals == Totals::Requests || result.contains_key(*name))
        .map(|(name, quantity)| Ok((name.clone(), Quantity::try_from(quantity)?)))
        .collect::<Result<_, QuantityError>>()?;
    add_into(&mut result, &overhead);
    Ok(result)
}

fn add_into(total: &mut ResourceList, more: &ResourceList) {
    for (name, quantity) in more {
        let sum = total
            .get(name)
            .map_or(*quantity, |q| q.saturating_add(*quantity));
        total.insert(name.clone(), sum);
    }
}

fn max_into(peak: &mut ResourceList, candidate: &ResourceList) {
    for (name, quantity) in candidate {
        if peak.get(name).is_none_or(|q| quantity > q) {
            peak.insert(name.clone(), *quantity);
        }
    }
}

/// Upstream `IsSupportedPodLevelResource`.
fn is_pod_level_resource(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

/// Upstream `IsExtendedResourceName`: outside the `kubernetes.io/` namespace, and a
/// valid quota name once prefixed with `requests.`.
fn is_extended_resource(name: &str) -> bool {
    name.contains('/')
        && !name.contains("kubernetes.io/")
        && !name.starts_with("requests.")
        && label_key_errors(&format!("requests.{name}")).is_empty()
}

/// Upstream `IsScalarResourceName`: what the scheduler counts besides cpu, memory,
/// ephemeral-storage and pods.
fn is_scalar_resource(name: &str) -> bool {
    is_extended_resource(name)
        || name.starts_with("hugepages-")
        || name.contains("kubernetes.io/")
        || name.starts_with("attachable-volumes-")
}

/// Upstream's `framework.Resource`: whole milli-CPUs and units, as the scheduler counts.
#[derive(Debug, Default)]
struct Resources {
    milli_cpu: i64,
    memory: i64,
    ephemeral_storage: i64,
    pods: i64,
    scalars: BTreeMap<String, i64>,
}

impl Resources {
    /// Upstream `Resource.Add`: each list is rounded up on its own, then summed
    /// (saturating where Go would wrap around).
    fn add(&mut self, list: &ResourceList) {
        for (name, quantity) in list {
            let (total, amount) = match name.as_str() {
                "cpu" => (&mut self.milli_cpu, quantity.milli_value()),
                "memory" => (&mut self.memory, quantity.value()),
                "pods" => (&mut self.pods, quantity.value()),
                "ephemeral-storage" => (&mut self.ephemeral_storage, quantity.value()),
                other if is_scalar_resource(other) => (
                    self.scalars.entry(other.to_owned()).or_default(),
                    quantity.value(),
                ),
                _ => continue,
            };
            *total = total.saturating_add(amount);
        }
    }

    /// Upstream `Resource.SetMaxResource` on an empty resource: the pod's request.
    fn request(list: &ResourceList) -> Self {
        let mut request = Self::default();
        for (name, quantity) in list {
            match name.as_str() {
                "cpu" => request.milli_cpu = quantity.milli_value().max(0),
                "memory" => request.memory = quantity.value().max(0),
                "ephemeral-storage" => request.ephemeral_storage = quantity.value().max(0),
                other if is_scalar_resource(other) => {
                    request
                        .scalars
                        .insert(other.to_owned(), quantity.value().max(0));
                }
                _ => {}
            }
        }
        request
    }
}

/// Upstream `InsufficientResourceError`; the reason is `OutOf<resource>`.
fn insufficient(name: &str, requested: i64, used: i64, capacity: i64) -> Rejection {
    Rejection::new(
        format!("OutOf{name}"),
        format!(
            "Node didn't have enough resource: {name}, requested: {requested}, used: {used}, \
             capacity: {capacity}"
        ),
    )
}

/// Upstream `noderesources.Fits`, reporting the first shortage.
fn fits_resources(pod: &Pod, others: &[&Pod], node: &NodeFacts) -> Result<(), Rejection> {
    let mut allocatable_list = ResourceList::new();
    for (name, quantity) in &node.allocatable {
        let quantity = Quantity::try_from(quantity).map_err(|e| {
            Rejection::new(
                "InvalidNodeInfo",
                format!("Kubelet cannot get node info: allocatable {name}: {e}"),
            )
        })?;
        allocatable_list.insert(name.clone(), quantity);
    }
    let mut allocatable = Resources::default();
    allocatable.add(&allocatable_list);

    let mut used = Resources::default();
    for other in others {
        // An active pod was admitted with valid quantities; a broken one cannot be
        // counted and should not block every later pod.
        used.add(&pod_requests(other).unwrap_or_default());
    }

    let pods = i64::try_from(others.len()).unwrap_or(i64::MAX);
    if pods.saturating_add(1) > allocatable.pods {
        return Err(insufficient("pods", 1, pods, allocatable.pods));
    }

    // Extended resources the node does not know are managed elsewhere (cluster-level
    // resources, DRA), so upstream drops them from the pod's containers first.
    let keep = |name: &str| !is_extended_resource(name) || node.allocatable.contains_key(name);
    let requests = pod_requests_keeping(pod, keep).map_err(|e| {
        Rejection::new(
            "UnexpectedAdmissionError",
            format!("invalid resource request: {e}"),
        )
    })?;
    let request = Resources::request(&requests);

    let fixed = [
        (
            "cpu",
            request.milli_cpu,
            used.milli_cpu,
            allocatable.milli_cpu,
        ),
        ("memory", request.memory, used.memory, allocatable.memory),
        (
            "ephemeral-storage",
            request.ephemeral_storage,
            used.ephemeral_storage,
            allocatable.ephemeral_storage,
        ),
    ];
    for (name, requested, used, capacity) in fixed {
        if requested > 0 && requested > capacity.saturating_sub(used) {
            return Err(insufficient(name, requested, used, capacity));
        }
    }
    // Upstream walks these in Go map order; name order makes the report stable.
    for (name, &requested) in &request.scalars {
        let capacity = allocatable.scalars.get(name).copied().unwrap_or(0);
        let used = used.scalars.get(name).copied().unwrap_or(0);
        if requested > 0 && requested > capacity.saturating_sub(used) {
            return Err(insufficient(name, requested, used, capacity));
        }
    }
    Ok(())
}

/// Upstream `rejectPodAdmissionBasedOnOSSelector`: the node's label is taken to be the
/// kubelet's own OS whatever the Node object says.
fn pod_os_label_mismatch(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(OS_LABEL))
        .is_some_and(|os| os != NODE_OS)
}

/// Upstream `IsStaticPod`: a source annotation other than `api`.
fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_SOURCE_ANNOTATION))
        .is_some_and(|source| source != "api")
}

/// Upstream `ToleratesTaint` with the alpha comparison operators (`Lt`, `Gt`) off.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// Upstream `GetRequiredNodeAffinity(pod).Match(node)`: every nodeSelector label, and
/// one of the required node affinity terms.
fn node_affinity_matches(pod: &Pod, node: &NodeFacts) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let selector_matches = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(key, value)| node.labels.get(key) == Some(value));
    if !selector_matches {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        // Empty terms select nothing; a term that does not parse never matches.
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .filter(|term| !is_empty_term(term))
            .any(|term| term_matches(term, node)),
        None => true,
    }
}

fn is_empty_term(term: &NodeSelectorTerm) -> bool {
    term.match_expressions
        .as_deref()
        .unwrap_or_default()
        .is_empty()
        && term.match_fields.as_deref().unwrap_or_default().is_empty()
}

/// One node selector term: all its label expressions, and its field expressions unless
/// the node has no name (upstream then has no fields to match).
fn term_matches(term: &NodeSelectorTerm, node: &NodeFacts) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    // Upstream parses the whole term before matching any of it.
    if !expressions.iter().all(label_requirement_is_valid)
        || !fields.iter().all(field_requirement_is_valid)
    {
        return false;
    }
    if !expressions
        .iter()
        .all(|r| label_requirement_matches(r, &node.labels))
    {
        return false;
    }
    if node.name.is_empty() {
        return true;
    }
    fields.iter().all(|r| {
        // `metadata.name` is the only field a node has; others read as empty.
        let value = if r.key == "metadata.name" {
            node.name.as_str()
        } else {
            ""
        };
        let wanted = r.values.as_deref().unwrap_or_default();
        match r.operator.as_str() {
            "In" => wanted.first().is_some_and(|w| w == value),
            _ => wanted.first().is_some_and(|w| w != value),
        }
    })
}

/// Upstream `labels.NewRequirement` validation of a node selector expression.
fn label_requirement_is_valid(requirement: &NodeSelectorRequirement) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let operator_ok = match requirement.operator.as_str() {
        "In" | "NotIn" => !values.is_empty(),
        "Exists" | "DoesNotExist" => values.is_empty(),
        "Gt" | "Lt" => values.len() == 1 && values[0].parse::<i64>().is_ok(),
        _ => false,
    };
    operator_ok
        && label_key_errors(&requirement.key).is_empty()
        && values.iter().all(|v| label_value_errors(v).is_empty())
}

/// Upstream `nodeSelectorRequirementsAsFieldSelector` validation.
fn field_requirement_is_valid(requirement: &NodeSelectorRequirement) -> bool {
    matches!(requirement.operator.as_str(), "In" | "NotIn")
        && requirement.values.as_deref().unwrap_or_default().len() == 1
}

/// Upstream `labels.Requirement.Matches`.
fn label_requirement_matches(
    requirement: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let label = labels.get(&requirement.key);
    match requirement.operator.as_str() {
        "In" => label.is_some_and(|l| values.contains(l)),
        "NotIn" => label.is_none_or(|l| !values.contains(l)),
        "Exists" => label.is_some(),
        "DoesNotExist" => label.is_none(),
        operator @ ("Gt" | "Lt") => {
            let (Some(have), Some(want)) = (
                label.and_then(|l| l.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Upstream `GetHostPorts`: ports with a host port of the regular containers and of the
/// sidecars, which run as long as the pod; other init containers do not count.
fn host_ports(pod: &Pod) -> Vec<&ContainerPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    sidecars
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .collect()
}

/// A host port as upstream's `HostPortInfo` keys it: IP (empty meaning `0.0.0.0`),
/// protocol (empty meaning TCP) and port.
fn host_port_key(port: &ContainerPort) -> (String, String, i32) {
    let ip = port.host_ip.as_deref().filter(|ip| !ip.is_empty());
    let protocol = port.protocol.as_deref().filter(|p| !p.is_empty());
    (
        ip.unwrap_or(ALL_IPS).to_owned(),
        protocol.unwrap_or("TCP").to_owned(),
        port.host_port.unwrap_or(0),
    )
}

/// Upstream `DefaultBindAllHostIP`; `::` is not special there either.
const ALL_IPS: &str = "0.0.0.0";

/// Upstream `nodeports.Fits`: a wanted host port conflicts with one of another pod on
/// the same IP, or on any IP when either side binds all of them.
fn fits_host_ports(pod: &Pod, others: &[&Pod]) -> bool {
    let mut used: HashMap<String, HashSet<(String, i32)>> = HashMap::new();
    for other in others {
        for port in host_ports(other) {
            let (ip, protocol, number) = host_port_key(port);
            used.entry(ip).or_default().insert((protocol, number));
        }
    }
    host_ports(pod).into_iter().all(|port| {
        let (ip, protocol, number) = host_port_key(port);
        let wanted = (protocol, number);
        if ip == ALL_IPS {
            !used.values().any(|ports| ports.contains(&wanted))
        } else {
            [ALL_IPS, ip.as_str()]
                .iter()
                .all(|ip| used.get(*ip).is_none_or(|ports| !ports.contains(&wanted)))
        }
    })
}

#[cfg(test)]
mod tests;
