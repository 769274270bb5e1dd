//! The kubelet's metric families, with upstream's names, help texts, label names,
//! stability levels and buckets (`pkg/kubelet/metrics/metrics.go`,
//! `pkg/kubelet/server/metrics`, `pkg/kubelet/prober`). Each crate records into the
//! ones it owns; the binary renders [`COMPONENT`] on `/metrics` and [`PROBES`] on
//! `/metrics/probes`.

use super::{DEFAULT_BUCKETS, Family, Stability::*};

/// Upstream's `podStartupDurationBuckets`.
pub const POD_STARTUP_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// `ExponentialBuckets(.005, 2.5, 14)`, upstream's runtime operation buckets.
pub const RUNTIME_OPERATION_BUCKETS: &[f64] = &[
    0.005,
    0.0125,
    0.03125,
    0.078125,
    0.1953125,
    0.48828125,
    1.220703125,
    3.0517578125,
    7.62939453125,
    19.073486328125,
    47.6837158203125,
    119.20928955078125,
    298.0232238769531,
    745.0580596923828,
];

/// `process_start_time_seconds`: when the kubelet started, seconds since the Unix epoch.
pub static PROCESS_START_TIME: Family = Family::gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
    Alpha,
    &[],
);

/// `kubelet_node_name{node}`, always 1.
pub static NODE_NAME: Family = Family::gauge(
    "kubelet_node_name",
    "The node's name. The count is always 1.",
    Alpha,
    &["node"],
);

/// `kubelet_certificate_manager_client_ttl_seconds`: seconds until the client
/// certificate expires (with `rotateCertificates`).
pub static CERTIFICATE_MANAGER_CLIENT_TTL: Family = Family::gauge(
    "kubelet_certificate_manager_client_ttl_seconds",
    "Gauge of the TTL (time-to-live) of the Kubelet's client certificate. The value is in seconds until certificate expiry (negative if already expired). If client certificate is invalid or unused, the value will be +INF.",
    Alpha,
    &[],
);

/// `kubelet_certificate_manager_client_expiration_renew_errors`: failed rotations.
pub static CERTIFICATE_MANAGER_CLIENT_RENEW_ERRORS: Family = Family::counter(
    "kubelet_certificate_manager_client_expiration_renew_errors",
    "Counter of certificate renewal errors.",
    Alpha,
    &[],
);

/// `kubelet_certificate_manager_server_ttl_seconds`: seconds until the serving
/// certificate expires (with `serverTLSBootstrap`).
pub static CERTIFICATE_MANAGER_SERVER_TTL: Family = Family::gauge(
    "kubelet_certificate_manager_server_ttl_seconds",
    "Gauge of the shortest TTL (time-to-live) of the Kubelet's serving certificate. The value is in seconds until certificate expiry (negative if already expired). If serving certificate is invalid or unused, the value will be +INF.",
    Alpha,
    &[],
);

/// `kubelet_server_expiration_renew_errors`: failed serving certificate rotations.
pub static SERVER_EXPIRATION_RENEW_ERRORS: Family = Family::counter(
    "kubelet_server_expiration_renew_errors",
    "Counter of certificate renewal errors.",
    Alpha,
    &[],
);

/// `kubelet_certificate_manager_server_rotation_seconds`: how long the previous serving
/// certificate lived before it was rotated.
pub static CERTIFICATE_MANAGER_SERVER_ROTATION_SECONDS: Family = Family::histogram(
    "kubelet_certificate_manager_server_rotation_seconds",
    "Histogram of the number of seconds the previous certificate lived before being rotated.",
    Alpha,
    &[],
    &[
        60.0,
        3600.0,
        14400.0,
        86400.0,
        604800.0,
        2592000.0,
        7776000.0,
        15552000.0,
        31104000.0,
        124416000.0,
    ],
);

/// `kubelet_running_pods`: pods with a running sandbox.
pub static RUNNING_PODS: Family = Family::gauge(
    "kubelet_running_pods",
    "Number of pods that have a running pod sandbox",
    Alpha,
    &[],
);

/// `kubelet_running_containers{container_state}`: containers by state (`created`,
/// `running`, `exited`, `unknown`).
pub static RUNNING_CONTAINERS: Family = Family::gauge(
    "kubelet_running_containers",
    "Number of containers currently running",
    Alpha,
    &["container_state"],
);

/// `kubelet_pod_worker_duration_seconds{operation_type}`: one sync of a pod (`create`,
/// `update`, `sync`).
pub static POD_WORKER_DURATION: Family = Family::histogram(
    "kubelet_pod_worker_duration_seconds",
    "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
    Alpha,
    &["operation_type"],
    DEFAULT_BUCKETS,
);

/// `kubelet_pod_start_duration_seconds`: from first seeing a pod to it running.
pub static POD_START_DURATION: Family = Family::histogram(
    "kubelet_pod_start_duration_seconds",
    "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
    Alpha,
    &[],
    POD_STARTUP_BUCKETS,
);

/// `kubelet_pod_start_sli_duration_seconds`: pod creation to all containers started,
/// image pulls excluded.
pub static POD_START_SLI_DURATION: Family = Family::histogram(
    "kubelet_pod_start_sli_duration_seconds",
    "Duration in seconds to start a pod, excluding time to pull images and run init containers, measured from pod creation timestamp to when all its containers are reported as started and observed via watch",
    Alpha,
    &[],
    POD_STARTUP_BUCKETS,
);

/// `kubelet_pleg_relist_duration_seconds`: one relist of the runtime.
pub static PLEG_RELIST_DURATION: Family = Family::histogram(
    "kubelet_pleg_relist_duration_seconds",
    "Duration in seconds for relisting pods in PLEG.",
    Alpha,
    &[],
    DEFAULT_BUCKETS,
);

/// `kubelet_pleg_relist_interval_seconds`: time between relists.
pub static PLEG_RELIST_INTERVAL: Family = Family::histogram(
    "kubelet_pleg_relist_interval_seconds",
    "Interval in seconds between relisting in PLEG.",
    Alpha,
    &[],
    DEFAULT_BUCKETS,
);

/// `kubelet_pleg_last_seen_seconds`: Unix time of the last relist.
pub static PLEG_LAST_SEEN: Family = Family::gauge(
    "kubelet_pleg_last_seen_seconds",
    "Timestamp in seconds when PLEG was last seen active.",
    Alpha,
    &[],
);

/// `kubelet_runtime_operations_total{operation_type}`.
pub static RUNTIME_OPERATIONS_TOTAL: Family = Family::counter(
    "kubelet_runtime_operations_total",
    "Cumulative number of runtime operations by operation type.",
    Alpha,
    &["operation_type"],
);

/// `kubelet_runtime_operations_duration_seconds{operation_type}`.
pub static RUNTIME_OPERATIONS_DURATION: Family = Family::histogram(
    "kubelet_runtime_operations_duration_seconds",
    "Duration in seconds of runtime operations. Broken down by operation type.",
    Alpha,
    &["operation_type"],
    RUNTIME_OPERATION_BUCKETS,
);

/// `kubelet_runtime_operations_errors_total{operation_type}`.
pub static RUNTIME_OPERATIONS_ERRORS_TOTAL: Family = Family::counter(
    "kubelet_runtime_operations_errors_total",
    "Cumulative number of runtime operation errors by operation type.",
    Alpha,
    &["operation_type"],
);

/// `kubelet_started_pods_total`: sandboxes created.
pub static STARTED_PODS_TOTAL: Family = Family::counter(
    "kubelet_started_pods_total",
    "Cumulative number of pods started",
    Alpha,
    &[],
);

/// `kubelet_started_pods_errors_total`: sandboxes that failed to start.
pub static STARTED_PODS_ERRORS_TOTAL: Family = Family::counter(
    "kubelet_started_pods_errors_total",
    "Cumulative number of errors when starting pods",
    Alpha,
    &[],
);

/// `kubelet_started_containers_total{container_type}` (`container`,
/// `init_container`).
pub static STARTED_CONTAINERS_TOTAL: Family = Family::counter(
    "kubelet_started_containers_total",
    "Cumulative number of containers started",
    Alpha,
    &["container_type"],
);

/// `kubelet_started_containers_errors_total{container_type,code}`.
pub static STARTED_CONTAINERS_ERRORS_TOTAL: Family = Family::counter(
    "kubelet_started_containers_errors_total",
    "Cumulative number of errors when starting containers",
    Alpha,
    &["container_type", "code"],
);

/// `kubelet_http_requests_total{method,path,server_type,long_running}`.
pub static HTTP_REQUESTS_TOTAL: Family = Family::counter(
    "kubelet_http_requests_total",
    "Number of the http requests received since the server started",
    Alpha,
    &["method", "path", "server_type", "long_running"],
);

/// `kubelet_http_inflight_requests{method,path,server_type,long_running}`.
pub static HTTP_INFLIGHT_REQUESTS: Family = Family::gauge(
    "kubelet_http_inflight_requests",
    "Number of the inflight http requests",
    Alpha,
    &["method", "path", "server_type", "long_running"],
);

/// `prober_probe_total{probe_type,result,container,pod,namespace,pod_uid}`; results
/// `successful`, `failed`, `unknown`; probe types `Liveness`, `Readiness`, `Startup`.
pub static PROBER_PROBE_TOTAL: Family = Family::counter(
    "prober_probe_total",
    "Cumulative number of a liveness, readiness or startup probe for a container by result.",
    Beta,
    &[
        "probe_type",
        "result",
        "container",
        "pod",
        "namespace",
        "pod_uid",
    ],
);

/// `prober_probe_duration_seconds{probe_type,container,pod,namespace}`.
pub static PROBER_PROBE_DURATION: Family = Family::histogram(
    "prober_probe_duration_seconds",
    "Duration in seconds for a probe response.",
    Alpha,
    &["probe_type", "container", "pod", "namespace"],
    DEFAULT_BUCKETS,
);

/// `kubelet_evictions{eviction_signal}`: pods the eviction manager evicted.
pub static EVICTIONS: Family = Family::counter(
    "kubelet_evictions",
    "Cumulative number of pod evictions by eviction signal",
    Alpha,
    &["eviction_signal"],
);

/// `kubelet_eviction_stats_age_seconds{eviction_signal}`: how old the stats an eviction
/// was decided on were.
pub static EVICTION_STATS_AGE: Family = Family::histogram(
    "kubelet_eviction_stats_age_seconds",
    "Time between when stats are collected, and when pod is evicted based on those stats by eviction signal",
    Alpha,
    &["eviction_signal"],
    DEFAULT_BUCKETS,
);

/// `kubelet_image_garbage_collected_total{reason}`: images removed by image GC, reason
/// `age` or `space`.
pub static IMAGE_GARBAGE_COLLECTED_TOTAL: Family = Family::counter(
    "kubelet_image_garbage_collected_total",
    "Total number of images garbage collected by the kubelet, whether through disk usage or image age.",
    Alpha,
    &["reason"],
);

/// `kubelet_admission_rejections_total{reason}`: pods the kubelet refused, by upstream's
/// known reasons (see [`admission_rejection_reason`]).
pub static ADMISSION_REJECTIONS_TOTAL: Family = Family::counter(
    "kubelet_admission_rejections_total",
    "Cumulative number pod admission rejections by the Kubelet.",
    Alpha,
    &["reason"],
);

/// `kubelet_credential_provider_plugin_duration{plugin_name}`: one run of an image
/// credential provider plugin, in seconds.
pub static CREDENTIAL_PROVIDER_PLUGIN_DURATION: Family = Family::histogram(
    "kubelet_credential_provider_plugin_duration",
    "Duration of execution in seconds for credential provider plugin",
    Alpha,
    &["plugin_name"],
    DEFAULT_BUCKETS,
);

/// `kubelet_credential_provider_plugin_errors_total{plugin_name}`: plugin runs that
/// failed or timed out.
pub static CREDENTIAL_PROVIDER_PLUGIN_ERRORS: Family = Family::counter(
    "kubelet_credential_provider_plugin_errors_total",
    "Number of errors from credential provider plugin",
    Alpha,
    &["plugin_name"],
);

/// `kubelet_credential_provider_config_info{hash}`: the SHA-256 of the credential
/// provider configuration in use, always 1.
pub static CREDENTIAL_PROVIDER_CONFIG_INFO: Family = Family::gauge(
    "kubelet_credential_provider_config_info",
    "Information about the last applied credential provider configuration with hash as label",
    Alpha,
    &["hash"],
);

/// The `reason` label of [`ADMISSION_REJECTIONS_TOTAL`], as upstream's
/// `recordAdmissionRejection`: a known reason as it is, an `OutOf<extended resource>`
/// as `OutOfExtendedResources`, anything else `Other` (the label stays bounded).
pub fn admission_rejection_reason(reason: &str) -> &str {
    const KNOWN: [&str; 21] = [
        "AppArmor",
        "PodOSSelectorNodeLabelDoesNotMatch",
        "PodOSNotSupported",
        "InvalidNodeInfo",
        "InitContainerRestartPolicyForbidden",
        "SupplementalGroupsPolicyNotSupported",
        "UnexpectedAdmissionError",
        "UnknownReason",
        "UnexpectedPredicateFailureType",
        "OutOfcpu",
        "OutOfmemory",
        "OutOfephemeral-storage",
        "OutOfpods",
        "PodLevelResourcesNotSupported",
        "PodFeatureUnsupported",
        // Upstream lists the taint predicate's message, not its reason
        // (`TaintToleration`), so a taint rejection counts as `Other` there, and here.
        "node(s) had taints that the pod didn't tolerate",
        "Evicted",
        "SysctlForbidden",
        "TopologyAffinityError",
        "NodeShutdown",
        "VolumeAttachmentLimitExceeded",
    ];
    if KNOWN.contains(&reason) {
        reason
    } else if reason.starts_with("OutOf") {
        // Upstream's `InsufficientResourcePrefix`; cpu, memory, ephemeral-storage and
        // pods are known above.
        "OutOfExtendedResources"
    } else {
        "Other"
    }
}

/// `kubelet_pod_resources_endpoint_requests_total{server_api_version}`.
pub static POD_RESOURCES_REQUESTS_TOTAL: Family = Family::counter(
    "kubelet_pod_resources_endpoint_requests_total",
    "Cumulative number of requests to the PodResource endpoint. Broken down by server api version.",
    Alpha,
    &["server_api_version"],
);

/// `kubelet_pod_resources_endpoint_requests_list{server_api_version}`.
pub static POD_RESOURCES_REQUESTS_LIST: Family = Family::counter(
    "kubelet_pod_resources_endpoint_requests_list",
    "Number of requests to the PodResource List endpoint. Broken down by server api version.",
    Alpha,
    &["server_api_version"],
);

/// `kubelet_pod_resources_endpoint_requests_get_allocatable{server_api_version}`.
pub static POD_RESOURCES_REQUESTS_GET_ALLOCATABLE: Family = Family::counter(
    "kubelet_pod_resources_endpoint_requests_get_allocatable",
    "Number of requests to the PodResource GetAllocatableResources endpoint. Broken down by server api version.",
    Alpha,
    &["server_api_version"],
);

/// `kubelet_pod_resources_endpoint_errors_list{server_api_version}`.
pub static POD_RESOURCES_ERRORS_LIST: Family = Family::counter(
    "kubelet_pod_resources_endpoint_errors_list",
    "Number of requests to the PodResource List endpoint which returned error. Broken down by server api version.",
    Alpha,
    &["server_api_version"],
);

/// `kubelet_pod_resources_endpoint_errors_get_allocatable{server_api_version}`.
pub static POD_RESOURCES_ERRORS_GET_ALLOCATABLE: Family = Family::counter(
    "kubelet_pod_resources_endpoint_errors_get_allocatable",
    "Number of requests to the PodResource GetAllocatableResources endpoint which returned error. Broken down by server api version.",
    Alpha,
    &["server_api_version"],
);

/// `kubelet_pod_resources_endpoint_requests_get{server_api_version}`.
pub static POD_RESOURCES_REQUESTS_GET: Family = Family::counter(
    "kubelet_pod_resources_endpoint_requests_get",
    "Number of requests to the PodResource Get endpoint. Broken down by server api version.",
    Alpha,
    &["server_api_version"],
);

/// `kubelet_pod_resources_endpoint_errors_get{server_api_version}`.
pub static POD_RESOURCES_ERRORS_GET: Family = Family::counter(
    "kubelet_pod_resources_endpoint_errors_get",
    "Number of requests to the PodResource Get endpoint which returned error. Broken down by server api version.",
    Alpha,
    &["server_api_version"],
);

/// `kubelet_device_plugin_registration_total{resource_name}`.
pub static DEVICE_PLUGIN_REGISTRATION_TOTAL: Family = Family::counter(
    "kubelet_device_plugin_registration_total",
    "Cumulative number of device plugin registrations. Broken down by resource name.",
    Alpha,
    &["resource_name"],
);

/// `kubelet_volume_stats_*` (upstream's volume stats collector): each claim's volume as
/// its plugin last measured it, labelled by the claim.
pub static VOLUME_STATS_CAPACITY_BYTES: Family = Family::gauge(
    "kubelet_volume_stats_capacity_bytes",
    "Capacity in bytes of the volume",
    Alpha,
    &["namespace", "persistentvolumeclaim"],
);

/// See [`VOLUME_STATS_CAPACITY_BYTES`].
pub static VOLUME_STATS_AVAILABLE_BYTES: Family = Family::gauge(
    "kubelet_volume_stats_available_bytes",
    "Number of available bytes in the volume",
    Alpha,
    &["namespace", "persistentvolumeclaim"],
);

/// See [`VOLUME_STATS_CAPACITY_BYTES`].
pub static VOLUME_STATS_USED_BYTES: Family = Family::gauge(
    "kubelet_volume_stats_used_bytes",
    "Number of used bytes in the volume",
    Alpha,
    &["namespace", "persistentvolumeclaim"],
);

/// See [`VOLUME_STATS_CAPACITY_BYTES`].
pub static VOLUME_STATS_INODES: Family = Family::gauge(
    "kubelet_volume_stats_inodes",
    "Maximum number of inodes in the volume",
    Alpha,
    &["namespace", "persistentvolumeclaim"],
);

/// See [`VOLUME_STATS_CAPACITY_BYTES`].
pub static VOLUME_STATS_INODES_FREE: Family = Family::gauge(
    "kubelet_volume_stats_inodes_free",
    "Number of free inodes in the volume",
    Alpha,
    &["namespace", "persistentvolumeclaim"],
);

/// See [`VOLUME_STATS_CAPACITY_BYTES`].
pub static VOLUME_STATS_INODES_USED: Family = Family::gauge(
    "kubelet_volume_stats_inodes_used",
    "Number of used inodes in the volume",
    Alpha,
    &["namespace", "persistentvolumeclaim"],
);

/// The six `kubelet_volume_stats_*` families, in the order upstream describes them.
pub static VOLUME_STATS: [&Family; 6] = [
    &VOLUME_STATS_CAPACITY_BYTES,
    &VOLUME_STATS_AVAILABLE_BYTES,
    &VOLUME_STATS_USED_BYTES,
    &VOLUME_STATS_INODES,
    &VOLUME_STATS_INODES_FREE,
    &VOLUME_STATS_INODES_USED,
];

/// What `/metrics` shows, in order.
pub static COMPONENT: [&Family; 45] = [
    &PROCESS_START_TIME,
    &CERTIFICATE_MANAGER_SERVER_ROTATION_SECONDS,
    &CERTIFICATE_MANAGER_SERVER_TTL,
    &SERVER_EXPIRATION_RENEW_ERRORS,
    &CERTIFICATE_MANAGER_CLIENT_RENEW_ERRORS,
    &CERTIFICATE_MANAGER_CLIENT_TTL,
    &HTTP_INFLIGHT_REQUESTS,
    &HTTP_REQUESTS_TOTAL,
    &ADMISSION_REJECTIONS_TOTAL,
    &CREDENTIAL_PROVIDER_CONFIG_INFO,
    &CREDENTIAL_PROVIDER_PLUGIN_DURATION,
    &CREDENTIAL_PROVIDER_PLUGIN_ERRORS,
    &EVICTION_STATS_AGE,
    &EVICTIONS,
    &IMAGE_GARBAGE_COLLECTED_TOTAL,
    &NODE_NAME,
    &PLEG_LAST_SEEN,
    &PLEG_RELIST_DURATION,
    &PLEG_RELIST_INTERVAL,
    &POD_START_DURATION,
    &POD_START_SLI_DURATION,
    &POD_WORKER_DURATION,
    &RUNNING_CONTAINERS,
    &RUNNING_PODS,
    &RUNTIME_OPERATIONS_DURATION,
    &RUNTIME_OPERATIONS_ERRORS_TOTAL,
    &RUNTIME_OPERATIONS_TOTAL,
    &STARTED_CONTAINERS_ERRORS_TOTAL,
    &STARTED_CONTAINERS_TOTAL,
    &STARTED_PODS_ERRORS_TOTAL,
    &STARTED_PODS_TOTAL,
    &POD_RESOURCES_REQUESTS_TOTAL,
    &POD_RESOURCES_REQUESTS_LIST,
    &POD_RESOURCES_REQUESTS_GET_ALLOCATABLE,
    &POD_RESOURCES_ERRORS_LIST,
    &POD_RESOURCES_ERRORS_GET_ALLOCATABLE,
    &POD_RESOURCES_REQUESTS_GET,
    &POD_RESOURCES_ERRORS_GET,
    &DEVICE_PLUGIN_REGISTRATION_TOTAL,
    &VOLUME_STATS_CAPACITY_BYTES,
    &VOLUME_STATS_AVAILABLE_BYTES,
    &VOLUME_STATS_USED_BYTES,
    &VOLUME_STATS_INODES,
    &VOLUME_STATS_INODES_FREE,
    &VOLUME_STATS_INODES_USED,
];

/// `kubernetes_healthcheck` (component-base `slis`): the last result of each health
/// check, 1 passing, 0 failing.
pub static HEALTHCHECK: Family = Family::gauge(
    "kubernetes_healthcheck",
    "This metric records the result of a single healthcheck.",
    Stable,
    &["name", "type"],
);

/// `kubernetes_healthchecks_total` (component-base `slis`).
pub static HEALTHCHECKS_TOTAL: Family = Family::counter(
    "kubernetes_healthchecks_total",
    "This metric records the results of all healthcheck.",
    Stable,
    &["name", "status", "type"],
);

/// The families of `/metrics/slis`.
pub static SLIS: [&Family; 3] = [&PROCESS_START_TIME, &HEALTHCHECK, &HEALTHCHECKS_TOTAL];

/// What `/metrics/probes` shows.
pub static PROBES: [&Family; 3] = [
    &PROCESS_START_TIME,
    &PROBER_PROBE_DURATION,
    &PROBER_PROBE_TOTAL,
];

/// Upstream's `operation_type` of a CRI call (`RunPodSandbox` -> `run_podsandbox`).
pub fn runtime_operation(rpc: &str) -> &'static str {
    match rpc {
        "Version" => "version",
        "Status" => "status",
        "RunPodSandbox" => "run_podsandbox",
        "StopPodSandbox" => "stop_podsandbox",
        "RemovePodSandbox" => "remove_podsandbox",
        "PodSandboxStatus" => "podsandbox_status",
        "ListPodSandbox" => "list_podsandbox",
        "CreateContainer" => "create_container",
        "StartContainer" => "start_container",
        "StopContainer" => "stop_container",
        "RemoveContainer" => "remove_container",
        "ListContainers" => "list_containers",
        "ContainerStatus" => "container_status",
        "UpdateContainerResources" => "update_container",
        "ReopenContainerLog" => "reopen_container_log",
        "ExecSync" => "exec_sync",
        "Exec" => "exec",
        "Attach" => "attach",
        "PortForward" => "port_forward",
        "ContainerStats" => "container_stats",
        "ListContainerStats" => "list_container_stats",
        "PodSandboxStats" => "podsandbox_stats",
        "ListPodSandboxStats" => "list_podsandbox_stats",
        "UpdateRuntimeConfig" => "update_runtime_config",
        "RuntimeConfig" => "runtime_config",
        "GetContainerEvents" => "get_container_events",
        "ListImages" => "list_images",
        "ImageStatus" => "image_status",
        "PullImage" => "pull_image",
        "RemoveImage" => "remove_image",
        "ImageFsInfo" => "image_fs_info",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_rejection_reasons_stay_bounded_as_upstreams() {
        assert_eq!(admission_rejection_reason("OutOfcpu"), "OutOfcpu");
        assert_eq!(admission_rejection_reason("Evicted"), "Evicted");
        assert_eq!(
            admission_rejection_reason("OutOfexample.com/gpu"),
            "OutOfExtendedResources"
        );
        assert_eq!(admission_rejection_reason("TaintToleration"), "Other");
        assert_eq!(admission_rejection_reason("NodeAffinity"), "Other");
    }

    #[test]
    fn runtime_buckets_are_upstreams_exponential_buckets() {
        let mut bound = 0.005;
        for b in RUNTIME_OPERATION_BUCKETS {
            assert!((b - bound).abs() < 1e-9, "{b} vs {bound}");
            bound *= 2.5;
        }
        assert_eq!(RUNTIME_OPERATION_BUCKETS.len(), 14);
    }

    #[test]
    fn cri_calls_have_upstream_operation_names() {
        assert_eq!(runtime_operation("RunPodSandbox"), "run_podsandbox");
        assert_eq!(
            runtime_operation("UpdateContainerResources"),
            "update_container"
        );
        assert_eq!(
            runtime_operation("ListPodSandboxStats"),
            "list_podsandbox_stats"
        );
    }
}
