//! The kubelet's metric families, with upstream's names, help texts, label names,
//! stability levels and buckets (`pkg/kubelet/metrics/metrics.go`,
//! `pkg/kubelet/server/metrics`, `pkg/kubelet/prober`), held by one [`KubeletMetrics`]
//! per kubelet. Each crate records into the families it owns through the registry it is
//! given; the kubelet API renders [`KubeletMetrics::component`] on `/metrics` and
//! [`KubeletMetrics::probes`] on `/metrics/probes`.

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

/// The kubelet's metric families: one registry per kubelet, made by whoever assembles
/// it and shared (`Arc`) with every part that records, so two kubelets in one process
/// (or two tests) never see each other's series.
#[derive(Debug)]
pub struct KubeletMetrics {
    /// `process_start_time_seconds`: when the kubelet started, seconds since the Unix epoch.
    pub process_start_time: Family,
    /// `kubelet_node_name{node}`, always 1.
    pub node_name: Family,
    /// `kubelet_certificate_manager_client_ttl_seconds`: seconds until the client
    /// certificate expires (with `rotateCertificates`).
    pub certificate_manager_client_ttl: Family,
    /// `kubelet_certificate_manager_client_expiration_renew_errors`: failed rotations.
    pub certificate_manager_client_renew_errors: Family,
    /// `kubelet_certificate_manager_server_ttl_seconds`: seconds until the serving
    /// certificate expires (with `serverTLSBootstrap`).
    pub certificate_manager_server_ttl: Family,
    /// `kubelet_server_expiration_renew_errors`: failed serving certificate rotations.
    pub server_expiration_renew_errors: Family,
    /// `kubelet_certificate_manager_server_rotation_seconds`: how long the previous serving
    /// certificate lived before it was rotated.
    pub certificate_manager_server_rotation_seconds: Family,
    /// `kubelet_running_pods`: pods with a running sandbox.
    pub running_pods: Family,
    /// `kubelet_running_containers{container_state}`: containers by state (`created`,
    /// `running`, `exited`, `unknown`).
    pub running_containers: Family,
    /// `kubelet_pod_worker_duration_seconds{operation_type}`: one sync of a pod (`create`,
    /// `update`, `sync`).
    pub pod_worker_duration: Family,
    /// `kubelet_pod_start_duration_seconds`: from first seeing a pod to it running.
    pub pod_start_duration: Family,
    /// `kubelet_pod_start_sli_duration_seconds`: pod creation to all containers started,
    /// image pulls excluded.
    pub pod_start_sli_duration: Family,
    /// `kubelet_pleg_relist_duration_seconds`: one relist of the runtime.
    pub pleg_relist_duration: Family,
    /// `kubelet_pleg_relist_interval_seconds`: time between relists.
    pub pleg_relist_interval: Family,
    /// `kubelet_pleg_last_seen_seconds`: Unix time of the last relist.
    pub pleg_last_seen: Family,
    /// `kubelet_runtime_operations_total{operation_type}`.
    pub runtime_operations_total: Family,
    /// `kubelet_runtime_operations_duration_seconds{operation_type}`.
    pub runtime_operations_duration: Family,
    /// `kubelet_runtime_operations_errors_total{operation_type}`.
    pub runtime_operations_errors_total: Family,
    /// `kubelet_started_pods_total`: sandboxes created.
    pub started_pods_total: Family,
    /// `kubelet_started_pods_errors_total`: sandboxes that failed to start.
    pub started_pods_errors_total: Family,
    /// `kubelet_started_containers_total{container_type}` (`container`,
    /// `init_container`).
    pub started_containers_total: Family,
    /// `kubelet_started_containers_errors_total{container_type,code}`.
    pub started_containers_errors_total: Family,
    /// `kubelet_http_requests_total{method,path,server_type,long_running}`.
    pub http_requests_total: Family,
    /// `kubelet_http_inflight_requests{method,path,server_type,long_running}`.
    pub http_inflight_requests: Family,
    /// `prober_probe_total{probe_type,result,container,pod,namespace,pod_uid}`; results
    /// `successful`, `failed`, `unknown`; probe types `Liveness`, `Readiness`, `Startup`.
    pub prober_probe_total: Family,
    /// `prober_probe_duration_seconds{probe_type,container,pod,namespace}`.
    pub prober_probe_duration: Family,
    /// `kubelet_evictions{eviction_signal}`: pods the eviction manager evicted.
    pub evictions: Family,
    /// `kubelet_eviction_stats_age_seconds{eviction_signal}`: how old the stats an eviction
    /// was decided on were.
    pub eviction_stats_age: Family,
    /// `kubelet_image_garbage_collected_total{reason}`: images removed by image GC, reason
    /// `age` or `space`.
    pub image_garbage_collected_total: Family,
    /// `kubelet_admission_rejections_total{reason}`: pods the kubelet refused, by upstream's
    /// known reasons (see [`admission_rejection_reason`]).
    pub admission_rejections_total: Family,
    /// `kubelet_credential_provider_plugin_duration{plugin_name}`: one run of an image
    /// credential provider plugin, in seconds.
    pub credential_provider_plugin_duration: Family,
    /// `kubelet_credential_provider_plugin_errors_total{plugin_name}`: plugin runs that
    /// failed or timed out.
    pub credential_provider_plugin_errors: Family,
    /// `kubelet_credential_provider_config_info{hash}`: the SHA-256 of the credential
    /// provider configuration in use, always 1.
    pub credential_provider_config_info: Family,
    /// `kubelet_pod_resources_endpoint_requests_total{server_api_version}`.
    pub pod_resources_requests_total: Family,
    /// `kubelet_pod_resources_endpoint_requests_list{server_api_version}`.
    pub pod_resources_requests_list: Family,
    /// `kubelet_pod_resources_endpoint_requests_get_allocatable{server_api_version}`.
    pub pod_resources_requests_get_allocatable: Family,
    /// `kubelet_pod_resources_endpoint_errors_list{server_api_version}`.
    pub pod_resources_errors_list: Family,
    /// `kubelet_pod_resources_endpoint_errors_get_allocatable{server_api_version}`.
    pub pod_resources_errors_get_allocatable: Family,
    /// `kubelet_pod_resources_endpoint_requests_get{server_api_version}`.
    pub pod_resources_requests_get: Family,
    /// `kubelet_pod_resources_endpoint_errors_get{server_api_version}`.
    pub pod_resources_errors_get: Family,
    /// `kubelet_device_plugin_registration_total{resource_name}`.
    pub device_plugin_registration_total: Family,
    /// `kubelet_volume_stats_*` (upstream's volume stats collector): each claim's volume as
    /// its plugin last measured it, labelled by the claim.
    pub volume_stats_capacity_bytes: Family,
    /// See [`KubeletMetrics::volume_stats_capacity_bytes`].
    pub volume_stats_available_bytes: Family,
    /// See [`KubeletMetrics::volume_stats_capacity_bytes`].
    pub volume_stats_used_bytes: Family,
    /// See [`KubeletMetrics::volume_stats_capacity_bytes`].
    pub volume_stats_inodes: Family,
    /// See [`KubeletMetrics::volume_stats_capacity_bytes`].
    pub volume_stats_inodes_free: Family,
    /// See [`KubeletMetrics::volume_stats_capacity_bytes`].
    pub volume_stats_inodes_used: Family,
    /// `kubernetes_healthcheck` (component-base `slis`): the last result of each health
    /// check, 1 passing, 0 failing.
    pub healthcheck: Family,
    /// `kubernetes_healthchecks_total` (component-base `slis`).
    pub healthchecks_total: Family,
}

impl KubeletMetrics {
    /// Every family, without series.
    pub const fn new() -> Self {
        Self {
            process_start_time: Family::gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                Alpha,
                &[],
            ),
            node_name: Family::gauge(
                "kubelet_node_name",
                "The node's name. The count is always 1.",
                Alpha,
                &["node"],
            ),
            certificate_manager_client_ttl: Family::gauge(
                "kubelet_certificate_manager_client_ttl_seconds",
                "Gauge of the TTL (time-to-live) of the Kubelet's client certificate. The value is in seconds until certificate expiry (negative if already expired). If client certificate is invalid or unused, the value will be +INF.",
                Alpha,
                &[],
            ),
            certificate_manager_client_renew_errors: Family::counter(
                "kubelet_certificate_manager_client_expiration_renew_errors",
                "Counter of certificate renewal errors.",
                Alpha,
                &[],
            ),
            certificate_manager_server_ttl: Family::gauge(
                "kubelet_certificate_manager_server_ttl_seconds",
                "Gauge of the shortest TTL (time-to-live) of the Kubelet's serving certificate. The value is in seconds until certificate expiry (negative if already expired). If serving certificate is invalid or unused, the value will be +INF.",
                Alpha,
                &[],
            ),
            server_expiration_renew_errors: Family::counter(
                "kubelet_server_expiration_renew_errors",
                "Counter of certificate renewal errors.",
                Alpha,
                &[],
            ),
            certificate_manager_server_rotation_seconds: Family::histogram(
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
            ),
            running_pods: Family::gauge(
                "kubelet_running_pods",
                "Number of pods that have a running pod sandbox",
                Alpha,
                &[],
            ),
            running_containers: Family::gauge(
                "kubelet_running_containers",
                "Number of containers currently running",
                Alpha,
                &["container_state"],
            ),
            pod_worker_duration: Family::histogram(
                "kubelet_pod_worker_duration_seconds",
                "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
                Alpha,
                &["operation_type"],
                DEFAULT_BUCKETS,
            ),
            pod_start_duration: Family::histogram(
                "kubelet_pod_start_duration_seconds",
                "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
                Alpha,
                &[],
                POD_STARTUP_BUCKETS,
            ),
            pod_start_sli_duration: Family::histogram(
                "kubelet_pod_start_sli_duration_seconds",
                "Duration in seconds to start a pod, excluding time to pull images and run init containers, measured from pod creation timestamp to when all its containers are reported as started and observed via watch",
                Alpha,
                &[],
                POD_STARTUP_BUCKETS,
            ),
            pleg_relist_duration: Family::histogram(
                "kubelet_pleg_relist_duration_seconds",
                "Duration in seconds for relisting pods in PLEG.",
                Alpha,
                &[],
                DEFAULT_BUCKETS,
            ),
            pleg_relist_interval: Family::histogram(
                "kubelet_pleg_relist_interval_seconds",
                "Interval in seconds between relisting in PLEG.",
                Alpha,
                &[],
                DEFAULT_BUCKETS,
            ),
            pleg_last_seen: Family::gauge(
                "kubelet_pleg_last_seen_seconds",
                "Timestamp in seconds when PLEG was last seen active.",
                Alpha,
                &[],
            ),
            runtime_operations_total: Family::counter(
                "kubelet_runtime_operations_total",
                "Cumulative number of runtime operations by operation type.",
                Alpha,
                &["operation_type"],
            ),
            runtime_operations_duration: Family::histogram(
                "kubelet_runtime_operations_duration_seconds",
                "Duration in seconds of runtime operations. Broken down by operation type.",
                Alpha,
                &["operation_type"],
                RUNTIME_OPERATION_BUCKETS,
            ),
            runtime_operations_errors_total: Family::counter(
                "kubelet_runtime_operations_errors_total",
                "Cumulative number of runtime operation errors by operation type.",
                Alpha,
                &["operation_type"],
            ),
            started_pods_total: Family::counter(
                "kubelet_started_pods_total",
                "Cumulative number of pods started",
                Alpha,
                &[],
            ),
            started_pods_errors_total: Family::counter(
                "kubelet_started_pods_errors_total",
                "Cumulative number of errors when starting pods",
                Alpha,
                &[],
            ),
            started_containers_total: Family::counter(
                "kubelet_started_containers_total",
                "Cumulative number of containers started",
                Alpha,
                &["container_type"],
            ),
            started_containers_errors_total: Family::counter(
                "kubelet_started_containers_errors_total",
                "Cumulative number of errors when starting containers",
                Alpha,
                &["container_type", "code"],
            ),
            http_requests_total: Family::counter(
                "kubelet_http_requests_total",
                "Number of the http requests received since the server started",
                Alpha,
                &["method", "path", "server_type", "long_running"],
            ),
            http_inflight_requests: Family::gauge(
                "kubelet_http_inflight_requests",
                "Number of the inflight http requests",
                Alpha,
                &["method", "path", "server_type", "long_running"],
            ),
            prober_probe_total: Family::counter(
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
            ),
            prober_probe_duration: Family::histogram(
                "prober_probe_duration_seconds",
                "Duration in seconds for a probe response.",
                Alpha,
                &["probe_type", "container", "pod", "namespace"],
                DEFAULT_BUCKETS,
            ),
            evictions: Family::counter(
                "kubelet_evictions",
                "Cumulative number of pod evictions by eviction signal",
                Alpha,
                &["eviction_signal"],
            ),
            eviction_stats_age: Family::histogram(
                "kubelet_eviction_stats_age_seconds",
                "Time between when stats are collected, and when pod is evicted based on those stats by eviction signal",
                Alpha,
                &["eviction_signal"],
                DEFAULT_BUCKETS,
            ),
            image_garbage_collected_total: Family::counter(
                "kubelet_image_garbage_collected_total",
                "Total number of images garbage collected by the kubelet, whether through disk usage or image age.",
                Alpha,
                &["reason"],
            ),
            admission_rejections_total: Family::counter(
                "kubelet_admission_rejections_total",
                "Cumulative number pod admission rejections by the Kubelet.",
                Alpha,
                &["reason"],
            ),
            credential_provider_plugin_duration: Family::histogram(
                "kubelet_credential_provider_plugin_duration",
                "Duration of execution in seconds for credential provider plugin",
                Alpha,
                &["plugin_name"],
                DEFAULT_BUCKETS,
            ),
            credential_provider_plugin_errors: Family::counter(
                "kubelet_credential_provider_plugin_errors_total",
                "Number of errors from credential provider plugin",
                Alpha,
                &["plugin_name"],
            ),
            credential_provider_config_info: Family::gauge(
                "kubelet_credential_provider_config_info",
                "Information about the last applied credential provider configuration with hash as label",
                Alpha,
                &["hash"],
            ),
            pod_resources_requests_total: Family::counter(
                "kubelet_pod_resources_endpoint_requests_total",
                "Cumulative number of requests to the PodResource endpoint. Broken down by server api version.",
                Alpha,
                &["server_api_version"],
            ),
            pod_resources_requests_list: Family::counter(
                "kubelet_pod_resources_endpoint_requests_list",
                "Number of requests to the PodResource List endpoint. Broken down by server api version.",
                Alpha,
                &["server_api_version"],
            ),
            pod_resources_requests_get_allocatable: Family::counter(
                "kubelet_pod_resources_endpoint_requests_get_allocatable",
                "Number of requests to the PodResource GetAllocatableResources endpoint. Broken down by server api version.",
                Alpha,
                &["server_api_version"],
            ),
            pod_resources_errors_list: Family::counter(
                "kubelet_pod_resources_endpoint_errors_list",
                "Number of requests to the PodResource List endpoint which returned error. Broken down by server api version.",
                Alpha,
                &["server_api_version"],
            ),
            pod_resources_errors_get_allocatable: Family::counter(
                "kubelet_pod_resources_endpoint_errors_get_allocatable",
                "Number of requests to the PodResource GetAllocatableResources endpoint which returned error. Broken down by server api version.",
                Alpha,
                &["server_api_version"],
            ),
            pod_resources_requests_get: Family::counter(
                "kubelet_pod_resources_endpoint_requests_get",
                "Number of requests to the PodResource Get endpoint. Broken down by server api version.",
                Alpha,
                &["server_api_version"],
            ),
            pod_resources_errors_get: Family::counter(
                "kubelet_pod_resources_endpoint_errors_get",
                "Number of requests to the PodResource Get endpoint which returned error. Broken down by server api version.",
                Alpha,
                &["server_api_version"],
            ),
            device_plugin_registration_total: Family::counter(
                "kubelet_device_plugin_registration_total",
                "Cumulative number of device plugin registrations. Broken down by resource name.",
                Alpha,
                &["resource_name"],
            ),
            volume_stats_capacity_bytes: Family::gauge(
                "kubelet_volume_stats_capacity_bytes",
                "Capacity in bytes of the volume",
                Alpha,
                &["namespace", "persistentvolumeclaim"],
            ),
            volume_stats_available_bytes: Family::gauge(
                "kubelet_volume_stats_available_bytes",
                "Number of available bytes in the volume",
                Alpha,
                &["namespace", "persistentvolumeclaim"],
            ),
            volume_stats_used_bytes: Family::gauge(
                "kubelet_volume_stats_used_bytes",
                "Number of used bytes in the volume",
                Alpha,
                &["namespace", "persistentvolumeclaim"],
            ),
            volume_stats_inodes: Family::gauge(
                "kubelet_volume_stats_inodes",
                "Maximum number of inodes in the volume",
                Alpha,
                &["namespace", "persistentvolumeclaim"],
            ),
            volume_stats_inodes_free: Family::gauge(
                "kubelet_volume_stats_inodes_free",
                "Number of free inodes in the volume",
                Alpha,
                &["namespace", "persistentvolumeclaim"],
            ),
            volume_stats_inodes_used: Family::gauge(
                "kubelet_volume_stats_inodes_used",
                "Number of used inodes in the volume",
                Alpha,
                &["namespace", "persistentvolumeclaim"],
            ),
            healthcheck: Family::gauge(
                "kubernetes_healthcheck",
                "This metric records the result of a single healthcheck.",
                Stable,
                &["name", "type"],
            ),
            healthchecks_total: Family::counter(
                "kubernetes_healthchecks_total",
                "This metric records the results of all healthcheck.",
                Stable,
                &["name", "status", "type"],
            ),
        }
    }

    /// The six `kubelet_volume_stats_*` families, in the order upstream describes them.
    pub fn volume_stats(&self) -> [&Family; 6] {
        [
            &self.volume_stats_capacity_bytes,
            &self.volume_stats_available_bytes,
            &self.volume_stats_used_bytes,
            &self.volume_stats_inodes,
            &self.volume_stats_inodes_free,
            &self.volume_stats_inodes_used,
        ]
    }

    /// What `/metrics` shows, in order (the volume stats last).
    pub fn component(&self) -> Vec<&Family> {
        let mut families = vec![
            &self.process_start_time,
            &self.certificate_manager_server_rotation_seconds,
            &self.certificate_manager_server_ttl,
            &self.server_expiration_renew_errors,
            &self.certificate_manager_client_renew_errors,
            &self.certificate_manager_client_ttl,
            &self.http_inflight_requests,
            &self.http_requests_total,
            &self.admission_rejections_total,
            &self.credential_provider_config_info,
            &self.credential_provider_plugin_duration,
            &self.credential_provider_plugin_errors,
            &self.eviction_stats_age,
            &self.evictions,
            &self.image_garbage_collected_total,
            &self.node_name,
            &self.pleg_last_seen,
            &self.pleg_relist_duration,
            &self.pleg_relist_interval,
            &self.pod_start_duration,
            &self.pod_start_sli_duration,
            &self.pod_worker_duration,
            &self.running_containers,
            &self.running_pods,
            &self.runtime_operations_duration,
            &self.runtime_operations_errors_total,
            &self.runtime_operations_total,
            &self.started_containers_errors_total,
            &self.started_containers_total,
            &self.started_pods_errors_total,
            &self.started_pods_total,
            &self.pod_resources_requests_total,
            &self.pod_resources_requests_list,
            &self.pod_resources_requests_get_allocatable,
            &self.pod_resources_errors_list,
            &self.pod_resources_errors_get_allocatable,
            &self.pod_resources_requests_get,
            &self.pod_resources_errors_get,
            &self.device_plugin_registration_total,
        ];
        families.extend(self.volume_stats());
        families
    }

    /// The families of `/metrics/slis`.
    pub fn slis(&self) -> [&Family; 3] {
        [
            &self.process_start_time,
            &self.healthcheck,
            &self.healthchecks_total,
        ]
    }

    /// What `/metrics/probes` shows.
    pub fn probes(&self) -> [&Family; 3] {
        [
            &self.process_start_time,
            &self.prober_probe_duration,
            &self.prober_probe_total,
        ]
    }
}

impl Default for KubeletMetrics {
    fn default() -> Self {
        Self::new()
    }
}
/// The `reason` label of [`KubeletMetrics::admission_rejections_total`], as upstream's
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
    fn each_registry_keeps_its_own_series() {
        let (one, other) = (KubeletMetrics::new(), KubeletMetrics::new());
        one.runtime_operations_total.inc(&["run_podsandbox"]);
        assert_eq!(
            one.runtime_operations_total.value(&["run_podsandbox"]),
            Some(1.0)
        );
        assert_eq!(
            other.runtime_operations_total.value(&["run_podsandbox"]),
            None
        );
    }

    #[test]
    fn metrics_endpoints_list_each_family_once() {
        let metrics = KubeletMetrics::new();
        for families in [
            &metrics.component()[..],
            &metrics.probes()[..],
            &metrics.slis()[..],
            &metrics.volume_stats()[..],
        ] {
            let mut names: Vec<&str> = families.iter().map(|f| f.name()).collect();
            names.sort_unstable();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count, "{names:?}");
        }
    }

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
