//! Admission decisions compared with upstream's.
//!
//! `cases.json` holds pods, active pods and nodes with the decision upstream's
//! `lifecycle.NewPredicateAdmitHandler(...).Admit` (Kubernetes v1.37.2, default feature
//! gates, no device plugins) made on exactly those objects: a small Go program ran it on
//! each case and its `admit`, `reason` and `message` were stored as `expect`.

use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use serde_json::json;

use super::*;

#[derive(Deserialize)]
struct Case {
    name: String,
    pod: Pod,
    active: Vec<Pod>,
    node: Node,
    expect: Expected,
}

#[derive(Deserialize)]
struct Expected {
    admit: bool,
    reason: String,
    message: String,
}

fn cases() -> Vec<Case> {
    serde_json::from_str(include_str!("cases.json")).expect("cases.json")
}

fn case(name: &str) -> Case {
    cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name:?}"))
}

/// The decision on the named case of `cases.json`.
fn decide(name: &str) -> Result<(), Rejection> {
    let case = case(name);
    admit(&case.pod, &case.active, &NodeFacts::from_node(&case.node))
}

#[track_caller]
fn rejected(name: &str, reason: &str, message: &str) {
    assert_eq!(
        decide(name),
        Err(Rejection::new(reason, message)),
        "case {name:?}"
    );
}

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("pod JSON")
}

#[test]
fn every_case_decided_as_upstream() {
    let cases = cases();
    assert!(cases.len() > 60);
    for case in cases {
        let node = NodeFacts::from_node(&case.node);
        let expected = if case.expect.admit {
            Ok(())
        } else {
            Err(Rejection::new(case.expect.reason, case.expect.message))
        };
        assert_eq!(
            admit(&case.pod, &case.active, &node),
            expected,
            "case {:?}",
            case.name
        );
    }
}

#[test]
fn a_pod_that_fits_is_admitted() {
    assert_eq!(decide("fits"), Ok(()));
    // Requests equal to what is left still fit.
    assert_eq!(decide("fits exactly"), Ok(()));
    // A pod requesting nothing only needs a pod slot.
    assert_eq!(decide("best effort on a full node"), Ok(()));
}

#[test]
fn out_of_pods() {
    rejected(
        "too many pods",
        "OutOfpods",
        "Node didn't have enough resource: pods, requested: 1, used: 4, capacity: 4",
    );
    // Counted before anything else can fail.
    rejected(
        "too many pods comes first",
        "OutOfpods",
        "Node didn't have enough resource: pods, requested: 1, used: 4, capacity: 4",
    );
}

#[test]
fn out_of_cpu_memory_and_ephemeral_storage() {
    // CPU in millicores, memory and storage in bytes.
    rejected(
        "out of cpu",
        "OutOfcpu",
        "Node didn't have enough resource: cpu, requested: 1000, used: 500, capacity: 1200",
    );
    rejected(
        "out of memory",
        "OutOfmemory",
        "Node didn't have enough resource: memory, requested: 3670016000, used: 1073741824, \
         capacity: 4294967296",
    );
    rejected(
        "out of ephemeral storage",
        "OutOfephemeral-storage",
        "Node didn't have enough resource: ephemeral-storage, requested: 10737418240, used: \
         1073741824, capacity: 10737418240",
    );
    // 0.7005 CPUs are 701 millicores.
    rejected(
        "cpu rounds up per pod",
        "OutOfcpu",
        "Node didn't have enough resource: cpu, requested: 701, used: 500, capacity: 1200",
    );
}

#[test]
fn effective_requests_follow_the_sidecar_rules() {
    // App 300m + sidecars 100m and 50m; the init container needs 800m plus the 100m
    // sidecar started before it: 900m, plus 50m overhead.
    rejected(
        "sidecars exceed",
        "OutOfcpu",
        "Node didn't have enough resource: cpu, requested: 950, used: 251, capacity: 1200",
    );
    assert_eq!(
        decide("sidecars add to app and later init containers"),
        Ok(())
    );
    rejected(
        "init containers take the max",
        "OutOfcpu",
        "Node didn't have enough resource: cpu, requested: 1300, used: 0, capacity: 1200",
    );
    rejected(
        "pod-level requests replace containers",
        "OutOfcpu",
        "Node didn't have enough resource: cpu, requested: 1300, used: 0, capacity: 1200",
    );

    let case = case("sidecars exceed");
    let requests = pod_requests(&case.pod).expect("requests");
    assert_eq!(requests.get("cpu").map(Quantity::milli_value), Some(950));
}

#[test]
fn extended_resources_and_hugepages() {
    assert_eq!(
        decide("extended resource missing on node is ignored"),
        Ok(())
    );
    rejected(
        "extended resource used",
        "OutOfexample.com/gpu",
        "Node didn't have enough resource: example.com/gpu, requested: 1, used: 1, capacity: 1",
    );
    rejected(
        "hugepages",
        "OutOfhugepages-2Mi",
        "Node didn't have enough resource: hugepages-2Mi, requested: 4194304, used: 0, \
         capacity: 0",
    );
}

#[test]
fn node_selector_and_affinity() {
    let message = "Predicate NodeAffinity failed: node(s) didn't match Pod's node \
                   affinity/selector";
    rejected("node selector", "NodeAffinity", message);
    rejected("affinity In", "NodeAffinity", message);
    rejected("affinity match fields other node", "NodeAffinity", message);
    assert_eq!(decide("node selector matches"), Ok(()));
    assert_eq!(decide("affinity terms are ORed"), Ok(()));
    assert_eq!(decide("affinity invalid term is no match"), Ok(()));
}

#[test]
fn node_name() {
    rejected(
        "node name",
        "NodeName",
        "Predicate NodeName failed: node(s) didn't match the requested node name",
    );
}

#[test]
fn host_ports() {
    let message =
        "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports";
    rejected("host port in use", "NodePorts", message);
    rejected("host port all ips", "NodePorts", message);
    rejected("host port of a sidecar", "NodePorts", message);
    assert_eq!(decide("host port other protocol"), Ok(()));
    assert_eq!(decide("host port of an init container"), Ok(()));
}

#[test]
fn no_execute_taints() {
    let message =
        "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate";
    rejected("NoExecute taint", "TaintToleration", message);
    rejected("NoExecute Gt not enabled", "TaintToleration", message);
    assert_eq!(decide("NoSchedule taint is not the kubelet's"), Ok(()));
    assert_eq!(decide("NoExecute tolerated"), Ok(()));
    assert_eq!(decide("NoExecute static pod"), Ok(()));
}

#[test]
fn os_and_supplemental_groups_come_first() {
    rejected(
        "os label",
        "PodOSSelectorNodeLabelDoesNotMatch",
        "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label",
    );
    rejected(
        "os field",
        "PodOSNotSupported",
        "Failed to admit pod as the OS field doesn't match node OS",
    );
    rejected(
        "supplemental groups strict",
        "SupplementalGroupsPolicyNotSupported",
        "SupplementalGroupsPolicy=Strict is not supported in this node",
    );
    assert_eq!(decide("supplemental groups strict supported"), Ok(()));
}

#[test]
fn the_pod_itself_among_the_active_pods_is_not_counted() {
    let case = case("out of cpu");
    let node = NodeFacts::from_node(&case.node);
    // Alone, the pod fits.
    assert_eq!(admit(&case.pod, &[], &node), Ok(()));
    // Listed as active (e.g. re-admitted after a restart), it does not count twice.
    assert_eq!(
        admit(&case.pod, std::slice::from_ref(&case.pod), &node),
        Ok(())
    );
}

#[test]
fn invalid_quantities() {
    let mut node = NodeFacts::from_node(&case("fits").node);
    let bad = pod(json!({
        "metadata": {"name": "p", "uid": "u"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "lots"}}}]},
    }));
    let rejection = admit(&bad, &[], &node).expect_err("invalid request");
    assert_eq!(rejection.reason, "UnexpectedAdmissionError");
    // A broken active pod does not block others.
    assert_eq!(admit(&case("fits").pod, &[bad], &node), Ok(()));

    node.allocatable
        .insert("cpu".into(), ApiQuantity("1 cpu".into()));
    let rejection = admit(&case("fits").pod, &[], &node).expect_err("invalid node");
    assert_eq!(rejection.reason, "InvalidNodeInfo");
}

#[test]
fn node_facts_from_a_node() {
    let node = case("supplemental groups strict supported").node;
    let facts = NodeFacts::from_node(&node);
    assert_eq!(facts.name, "node-1");
    assert_eq!(facts.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(
        facts.allocatable.get("pods"),
        Some(&ApiQuantity("4".into()))
    );
    assert!(facts.supplemental_groups_policy);
    assert!(facts.taints.is_empty());
    assert_eq!(NodeFacts::from_node(&Node::default()), NodeFacts::default());
}

#[test]
fn rejected_status_is_what_reject_pod_sets() {
    let rejection = decide("out of cpu").expect_err("rejected");
    let mut pod = case("out of cpu").pod;
    pod.metadata.generation = Some(3);
    assert_eq!(
        rejected_status(&pod, &rejection),
        PodStatus {
            phase: Some("Failed".into()),
            reason: Some("OutOfcpu".into()),
            message: Some(
                "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000, \
                 used: 500, capacity: 1200"
                    .into()
            ),
            qos_class: Some("Burstable".into()),
            observed_generation: Some(3),
            ..PodStatus::default()
        }
    );

    // The class and start time the pod already has are kept.
    let started = Time(jiff::Timestamp::from_second(1_700_000_000).expect("timestamp"));
    pod.status = Some(PodStatus {
        qos_class: Some("Guaranteed".into()),
        start_time: Some(started.clone()),
        ..PodStatus::default()
    });
    let status = rejected_status(&pod, &rejection);
    assert_eq!(status.qos_class.as_deref(), Some("Guaranteed"));
    assert_eq!(status.start_time, Some(started));

    let best_effort = case("node name").pod;
    let status = rejected_status(&best_effort, &decide("node name").expect_err("rejected"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Pod was rejected: Predicate NodeName failed: node(s) didn't match the requested \
             node name"
        )
    );
}

fn isolation(spec: serde_json::Value, annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u", "annotations": annotations},
        "spec": spec,
    }))
    .expect("pod")
}

fn security(apparmor_enabled: bool, unsafe_sysctls: &[&str]) -> NodeSecurity {
    let patterns: Vec<String> = unsafe_sysctls.iter().map(|s| (*s).to_owned()).collect();
    NodeSecurity {
        apparmor_enabled,
        sysctls: SysctlAllowlist::new(Some((6, 1)), &patterns).expect("allowlist"),
        ..NodeSecurity::default()
    }
}

#[test]
fn sysctls_outside_the_allowlist_are_forbidden() {
    let with_sysctl = |name: &str, host_network: bool| {
        isolation(
            json!({
                "hostNetwork": host_network,
                "securityContext": {"sysctls": [{"name": name, "value": "1"}]},
                "containers": [{"name": "c", "image": "busybox"}],
            }),
            json!({}),
        )
    };
    let node = security(false, &["net.core.somaxconn"]);
    assert_eq!(
        admit_isolation(&with_sysctl("net.ipv4.tcp_syncookies", false), &node),
        Ok(())
    );
    assert_eq!(
        admit_isolation(&with_sysctl("net.core.somaxconn", false), &node),
        Ok(())
    );
    assert_eq!(
        admit_isolation(&with_sysctl("kernel.msgmax", false), &node),
        Err(Rejection::new(
            "SysctlForbidden",
            "forbidden sysctl: \"kernel.msgmax\" not allowlisted"
        ))
    );
    assert_eq!(
        admit_isolation(&with_sysctl("net.core.somaxconn", true), &node),
        Err(Rejection::new(
            "SysctlForbidden",
            "forbidden sysctl: \"net.core.somaxconn\" not allowed with host Net enabled"
        ))
    );
}

#[test]
fn apparmor_pods_need_a_host_with_apparmor() {
    let container = json!([{"name": "c", "image": "busybox"}]);
    let confined = isolation(
        json!({
            "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
            "containers": container,
        }),
        json!({}),
    );
    let annotated = isolation(
        json!({"containers": container}),
        json!({"container.apparmor.security.beta.kubernetes.io/c": "runtime/default"}),
    );
    let unconfined = isolation(
        json!({
            "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
            "containers": container,
        }),
        json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}),
    );
    let refused = Err(Rejection::new(
        "AppArmor",
        "Cannot enforce AppArmor: AppArmor is not enabled on the host",
    ));
    assert_eq!(admit_isolation(&confined, &security(false, &[])), refused);
    assert_eq!(admit_isolation(&annotated, &security(false, &[])), refused);
    assert_eq!(admit_isolation(&unconfined, &security(false, &[])), Ok(()));
    assert_eq!(admit_isolation(&confined, &security(true, &[])), Ok(()));
    let nameless = isolation(
        json!({
            "containers": [{
                "name": "c", "image": "busybox",
                "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": " "}},
            }],
        }),
        json!({}),
    );
    assert_eq!(
        admit_isolation(&nameless, &security(true, &[])),
        Err(Rejection::new(
            "AppArmor",
            "Cannot enforce AppArmor: invalid empty AppArmor profile name: \
             \"&AppArmorProfile{Type:Localhost,LocalhostProfile:* ,}\""
        ))
    );
}

#[test]
fn node_pressure_refuses_pods_as_upstream_eviction_admission() {
    use crate::pressure::PressureCondition::{Disk, Memory};
    let best_effort = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
    let burstable = pod(json!({"spec": {"containers": [{"name": "c",
        "resources": {"requests": {"memory": "8Mi"}}}]}}));
    let tolerating = pod(
        json!({"spec": {"containers": [{"name": "c"}], "tolerations": [
        {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]}}),
    );
    let static_pod = pod(
        json!({"metadata": {"annotations": {"kubernetes.io/config.source": "file"}},
        "spec": {"containers": [{"name": "c"}]}}),
    );
    let critical = pod(json!({"spec": {"priority": 2_000_000_000, "containers": [{"name": "c"}]}}));

    assert_eq!(admit_under_pressure(&best_effort, &[]), Ok(()));
    let refused = admit_under_pressure(&best_effort, &[Memory]).expect_err("refused");
    assert_eq!(refused.reason, "Evicted");
    assert_eq!(
        refused.message,
        "The node had condition: [MemoryPressure]. "
    );
    assert_eq!(admit_under_pressure(&burstable, &[Memory]), Ok(()));
    assert_eq!(admit_under_pressure(&tolerating, &[Memory]), Ok(()));
    // Any other pressure refuses all but critical pods.
    assert_eq!(
        admit_under_pressure(&burstable, &[Memory, Disk])
            .expect_err("refused")
            .message,
        "The node had condition: [MemoryPressure DiskPressure]. "
    );
    assert!(admit_under_pressure(&tolerating, &[Disk]).is_err());
    assert_eq!(admit_under_pressure(&static_pod, &[Disk]), Ok(()));
    assert_eq!(admit_under_pressure(&critical, &[Memory, Disk]), Ok(()));
}
