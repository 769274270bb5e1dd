//! Upstream's `ValidateKubeletConfiguration` (pkg/kubelet/apis/config/validation), with
//! its messages, for the checks that need neither the host nor the full feature-gate
//! registry; plus the values this kubelet itself must be able to use.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::duration::GoDuration;
use crate::config::feature_gates::FeatureGates;
use crate::config::types::{ConfigTaint, KubeletConfiguration};

/// What the host-dependent checks need to know about the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The host mounts cgroup v1 (no unified hierarchy at `/sys/fs/cgroup`).
    pub cgroup_v1: bool,
    /// The running kernel's `major.minor`, which decides the safe sysctls; `None` when
    /// unknown.
    pub kernel: Option<(u32, u32)>,
}

/// Upstream's `validateKubeletOSConfiguration` for Linux: the reasons `config` cannot run
/// on this host, with upstream's messages; empty when it can.
pub fn validate_host(config: &KubeletConfiguration, host: &HostFacts) -> Vec<String> {
    let mut errors = Vec::new();
    if host.cgroup_v1 && config.fail_cgroup_v1.unwrap_or(true) {
        errors.push(
            "kubelet is configured to not run on a host using cgroup v1. cgroup v1 support \
             is unsupported and will be removed in a future release"
                .to_owned(),
        );
    }
    if host.cgroup_v1 && config.single_process_oom_kill == Some(false) {
        errors.push(
            "invalid configuration: singleProcessOOMKill must not be explicitly set to false \
             when using cgroup v1"
                .to_owned(),
        );
    }
    errors
}

/// Every reason `config` is invalid, each naming its field; empty when valid.
pub fn validate(config: &KubeletConfiguration) -> Vec<String> {
    // As upstream, a gate map that cannot be applied is the only error reported: the
    // other checks consult the gates.
    if let Err(errors) = FeatureGates::new(&config.feature_gates) {
        return errors
            .into_iter()
            .map(|e| format!("featureGates (--feature-gates): {e}"))
            .collect();
    }
    let mut errors = Vec::new();
    let mut fail = |message: String| errors.push(format!("invalid configuration: {message}"));
    let c = config;

    if c.node_lease_duration_seconds <= 0 {
        fail("nodeLeaseDurationSeconds must be greater than 0".into());
    }
    if !c.system_cgroups.is_empty() && c.cgroup_root.is_empty() {
        fail(
            "systemCgroups (--system-cgroups) was specified and cgroupRoot (--cgroup-root) \
             was not specified"
                .into(),
        );
    }
    non_negative(
        &mut fail,
        "eventBurst (--event-burst)",
        c.event_burst.into(),
    );
    non_negative(
        &mut fail,
        "eventRecordQPS (--event-qps)",
        c.event_record_qps.unwrap_or_default().into(),
    );
    let healthz_port = c.healthz_port.unwrap_or_default();
    if healthz_port != 0 && !(1..=65535).contains(&healthz_port) {
        fail(format!(
            "healthzPort (--healthz-port) {healthz_port} must be between 1 and 65535, inclusive"
        ));
    }
    let cfs_period = c.cpu_cfs_quota_period.unwrap_or_default();
    if !c.gate("CustomCPUCFSQuotaPeriod") && cfs_period != GoDuration::from_millis(100) {
        fail(format!(
            "cpuCFSQuotaPeriod (--cpu-cfs-quota-period) {cfs_period} requires feature gate \
             CustomCPUCFSQuotaPeriod"
        ));
    }
    if c.gate("CustomCPUCFSQuotaPeriod")
        && !(GoDuration::from_millis(1)..=GoDuration::from_secs(1)).contains(&cfs_period)
    {
        fail(format!(
            "cpuCFSQuotaPeriod (--cpu-cfs-quota-period) {cfs_period} must be between 1ms and \
             1sec, inclusive"
        ));
    }
    let high = c.image_gc_high_threshold_percent.unwrap_or_default();
    let low = c.image_gc_low_threshold_percent.unwrap_or_default();
    in_range(
        &mut fail,
        "imageGCHighThresholdPercent (--image-gc-high-threshold)",
        high.into(),
        0,
        100,
    );
    in_range(
        &mut fail,
        "imageGCLowThresholdPercent (--image-gc-low-threshold)",
        low.into(),
        0,
        100,
    );
    if low >= high {
        fail(format!(
            "imageGCLowThresholdPercent (--image-gc-low-threshold) {low} must be less than \
             imageGCHighThresholdPercent (--image-gc-high-threshold) {high}"
        ));
    }
    if !c.image_maximum_gc_age.is_zero() && !c.gate("ImageMaximumGCAge") {
        fail(
            "ImageMaximumGCAge feature gate is required for Kubelet configuration option \
             imageMaximumGCAge"
                .into(),
        );
    }
    if !c.default_pod_sysctls.is_empty() {
        if !c.gate("DefaultPodSysctls") {
            fail(
                "DefaultPodSysctls feature gate is required for Kubelet configuration option \
                 defaultPodSysctls"
                    .into(),
            );
        } else {
            for name in c.default_pod_sysctls.keys() {
                if !is_valid_sysctl_name(name) {
                    fail(format!(
                        "{name:?} is not a valid sysctl name for defaultPodSysctls"
                    ));
                }
            }
        }
    }
    let (min_age, max_age) = (c.image_minimum_gc_age, c.image_maximum_gc_age);
    if min_age < GoDuration::ZERO {
        fail(format!("imageMinimumGCAge {min_age} must not be negative"));
    }
    if max_age < GoDuration::ZERO {
        fail(format!("imageMaximumGCAge {max_age} must not be negative"));
    }
    if max_age > GoDuration::ZERO && max_age <= min_age {
        fail(format!(
            "imageMaximumGCAge {max_age} must be greater than imageMinimumGCAge {min_age}"
        ));
    }
    in_range(
        &mut fail,
        "iptablesDropBit (--iptables-drop-bit)",
        c.iptables_drop_bit.unwrap_or_default().into(),
        0,
        31,
    );
    in_range(
        &mut fail,
        "iptablesMasqueradeBit (--iptables-masquerade-bit)",
        c.iptables_masquerade_bit.unwrap_or_default().into(),
        0,
        31,
    );
    non_negative(
        &mut fail,
        "kubeAPIBurst (--kube-api-burst)",
        c.kube_api_burst.into(),
    );
    non_negative(
        &mut fail,
        "kubeAPIQPS (--kube-api-qps)",
        c.kube_api_qps.unwrap_or_default().into(),
    );
    let max_images = c.node_status_max_images.unwrap_or_default();
    if max_images < -1 {
        fail(format!(
            "nodeStatusMaxImages (--node-status-max-images) {max_images} must be -1 or greater"
        ));
    }
    non_negative(
        &mut fail,
        "maxOpenFiles (--max-open-files)",
        c.max_open_files,
    );
    non_negative(&mut fail, "maxPods (--max-pods)", c.max_pods.into());
    in_range(
        &mut fail,
        "oomScoreAdj (--oom-score-adj)",
        c.oom_score_adj.unwrap_or_default().into(),
        -1000,
        1000,
    );
    non_negative(
        &mut fail,
        "podsPerCore (--pods-per-core)",
        c.pods_per_core.into(),
    );
    if !(1..=65535).contains(&c.port) {
        fail(format!(
            "port (--port) {} must be between 1 and 65535, inclusive",
            c.port
        ));
    }
    if c.read_only_port != 0 && !(1..=65535).contains(&c.read_only_port) {
        fail(format!(
            "readOnlyPort (--read-only-port) {} must be between 0 and 65535, inclusive",
            c.read_only_port
        ));
    }
    non_negative(
        &mut fail,
        "registryBurst (--registry-burst)",
        c.registry_burst.into(),
    );
    non_negative(
        &mut fail,
        "registryPullQPS (--registry-qps)",
        c.registry_pull_qps.unwrap_or_default().into(),
    );
    if let Some(parallel) = c.max_parallel_image_pulls {
        if parallel < 1 {
            fail(format!(
                "maxParallelImagePulls {parallel} must be a positive number"
            ));
        }
        if c.serialize_image_pulls == Some(true) && parallel > 1 {
            fail(
                "maxParallelImagePulls cannot be larger than 1 unless SerializeImagePulls \
                 (--serialize-image-pulls) is set to false"
                    .into(),
            );
        }
    }
    if c.server_tls_bootstrap && !c.gate("RotateKubeletServerCertificate") {
        fail("serverTLSBootstrap true requires feature gate RotateKubeletServerCertificate".into());
    }
    if c.run_once {
        fail(
            "runOnce (--runOnce) true, Runonce mode has been deprecated and should not be set"
                .into(),
        );
    }
    for (i, taint) in c.register_with_taints.iter().enumerate() {
        if let Err(reason) = check_taint(taint) {
            fail(format!("registerWithTaints[{i}]: invalid taint: {reason}"));
        }
        if taint.time_added.is_some() {
            fail(format!(
                "registerWithTaints[{i}]: taint.TimeAdded is not nil"
            ));
        }
    }
    one_of(
        &mut fail,
        "topologyManagerPolicy (--topology-manager-policy)",
        &c.topology_manager_policy,
        &["none", "best-effort", "restricted", "single-numa-node"],
    );
    one_of(
        &mut fail,
        "topologyManagerScope (--topology-manager-scope)",
        &c.topology_manager_scope,
        &["container", "pod"],
    );
    validate_shutdown(c, &mut fail);
    if c.gate("NodeSwap") {
        one_of(
            &mut fail,
            "memorySwap.swapBehavior",
            &c.memory_swap.swap_behavior,
            &["", "NoSwap", "LimitedSwap"],
        );
    } else if !c.memory_swap.swap_behavior.is_empty() {
        fail("memorySwap.swapBehavior cannot be set when NodeSwap feature flag is disabled".into());
    }
    let max_restart = c.crash_loop_back_off.max_container_restart_period;
    if c.gate("KubeletCrashLoopBackOffMax") {
        match max_restart {
            None => fail(
                "FeatureGate KubeletCrashLoopBackOffMax is enabled, \
                 CrashLoopBackOff.MaxContainerRestartPeriod must be set"
                    .into(),
            ),
            Some(period)
                if !(GoDuration::from_secs(1)..=GoDuration::from_secs(300)).contains(&period) =>
            {
                fail(format!(
                    "CrashLoopBackOff.MaxContainerRestartPeriod (got: {period}) must be set \
                     between 1s and 300s"
                ));
            }
            Some(_) => {}
        }
    } else if max_restart.is_some() {
        fail(
            "FeatureGate KubeletCrashLoopBackOffMax not enabled, \
             CrashLoopBackOff.MaxContainerRestartPeriod must not be set"
                .into(),
        );
    }
    validate_enforce_node_allocatable(c, &mut fail);
    one_of(
        &mut fail,
        "hairpinMode (--hairpin-mode)",
        &c.hairpin_mode,
        &["none", "hairpin-veth", "promiscuous-bridge"],
    );
    validate_image_pull_verification(c, &mut fail);
    if !c.reserved_system_cpus.is_empty() {
        if !c.system_reserved_cgroup.is_empty() || !c.kube_reserved_cgroup.is_empty() {
            fail(
                "can't use reservedSystemCPUs (--reserved-cpus) with systemReservedCgroup \
                 (--system-reserved-cgroup) or kubeReservedCgroup (--kube-reserved-cgroup)"
                    .into(),
            );
        }
        if !is_cpuset(&c.reserved_system_cpus) {
            fail(format!(
                "unable to parse reservedSystemCPUs (--reserved-cpus) {}",
                c.reserved_system_cpus
            ));
        }
    }
    validate_reserved_memory(c, &mut fail);
    if let Some(ids) = c.user_namespaces.as_ref().and_then(|u| u.ids_per_pod) {
        const UNIT: i64 = 65536;
        if ids < UNIT {
            fail(format!(
                "userNamespaces.idsPerPod must not be less than {UNIT}"
            ));
        } else if ids % UNIT != 0 {
            fail(format!(
                "userNamespaces.idsPerPod must be a multiple of {UNIT}"
            ));
        } else if ids > i64::from(u32::MAX) {
            fail(format!(
                "userNamespaces.idsPerPod must not be more than {}",
                u32::MAX
            ));
        }
    }
    one_of(
        &mut fail,
        "logging.format",
        &c.logging.format,
        &["text", "json"],
    );
    if let Some(factor) = c.memory_throttling_factor {
        if !c.gate("MemoryQoS") && factor != 0.9 {
            fail(
                "memoryThrottlingFactor must not be set when MemoryQoS feature gate is disabled"
                    .into(),
            );
        }
        if factor <= 0.0 || factor > 1.0 {
            fail(format!(
                "memoryThrottlingFactor {factor} must be greater than 0 and less than or equal \
                 to 1.0"
            ));
        }
    }
    if !c.gate("MemoryQoS") && c.memory_reservation_policy == "TieredReservation" {
        fail(
            "memoryReservationPolicy \"TieredReservation\" requires MemoryQoS feature gate to \
             be enabled"
                .into(),
        );
    }
    one_of(
        &mut fail,
        "memoryReservationPolicy",
        &c.memory_reservation_policy,
        &["None", "TieredReservation"],
    );
    if c.container_runtime_endpoint.is_empty() {
        fail("the containerRuntimeEndpoint was not specified or empty".into());
    }
    let log_query = c.enable_system_log_query == Some(true);
    if log_query && !c.gate("NodeLogQuery") {
        fail("NodeLogQuery feature gate is required for enableSystemLogQuery".into());
    }
    if log_query && c.enable_system_log_handler != Some(true) {
        fail("enableSystemLogHandler is required for enableSystemLogQuery".into());
    }
    if c.container_log_max_workers.unwrap_or_default() < 1 {
        fail("containerLogMaxWorkers must be greater than or equal to 1".into());
    }
    if c.container_log_monitor_interval.unwrap_or_default() < GoDuration::from_secs(3) {
        fail(
            "containerLogMonitorInterval must be a positive time duration greater than or \
             equal to 3s"
                .into(),
        );
    }
    if c.container_log_max_files.unwrap_or_default() <= 1 {
        fail("containerLogMaxFiles must be greater than 1".into());
    }
    validate_pod_logs_dir(&c.pod_logs_dir, &mut fail);

    // Not in upstream's validation.go, but values upstream checks elsewhere (the cgroup
    // manager, the server) and this kubelet needs.
    one_of(
        &mut fail,
        "cgroupDriver",
        &c.cgroup_driver,
        &["cgroupfs", "systemd"],
    );
    one_of(
        &mut fail,
        "authorization.mode",
        &c.authorization.mode,
        &["AlwaysAllow", "Webhook"],
    );
    errors
}

fn non_negative(fail: &mut impl FnMut(String), field: &str, value: i64) {
    if value < 0 {
        fail(format!("{field} {value} must not be a negative number"));
    }
}

fn in_range(fail: &mut impl FnMut(String), field: &str, value: i64, min: i64, max: i64) {
    if !(min..=max).contains(&value) {
        fail(format!(
            "{field} {value} must be between {min} and {max}, inclusive"
        ));
    }
}

fn one_of(fail: &mut impl FnMut(String), field: &str, value: &str, allowed: &[&str]) {
    if !allowed.contains(&value) {
        fail(format!(
            "option {value:?} specified for {field}. Valid options are {allowed:?}"
        ));
    }
}

fn validate_shutdown(c: &KubeletConfiguration, fail: &mut impl FnMut(String)) {
    let (grace, critical) = (
        c.shutdown_grace_period,
        c.shutdown_grace_period_critical_pods,
    );
    let one_second = GoDuration::from_secs(1);
    if c.gate("GracefulNodeShutdown") {
        if critical > grace {
            fail(format!(
                "shutdownGracePeriodCriticalPods {critical} must be <= shutdownGracePeriod {grace}"
            ));
        }
        if grace < GoDuration::ZERO || (grace > GoDuration::ZERO && grace < one_second) {
            fail(format!(
                "shutdownGracePeriod {grace} must be either zero or otherwise >= 1 sec"
            ));
        }
        if critical < GoDuration::ZERO || (critical > GoDuration::ZERO && critical < one_second) {
            fail(format!(
                "shutdownGracePeriodCriticalPods {critical} must be either zero or otherwise \
                 >= 1 sec"
            ));
        }
    } else if grace > GoDuration::ZERO || critical > GoDuration::ZERO {
        fail(
            "specifying shutdownGracePeriod or shutdownGracePeriodCriticalPods requires feature \
             gate GracefulNodeShutdown"
                .into(),
        );
    }
    let by_priority = !c.shutdown_grace_period_by_pod_priority.is_empty();
    if c.gate("GracefulNodeShutdownBasedOnPodPriority") {
        if by_priority && (grace > GoDuration::ZERO || critical > GoDuration::ZERO) {
            fail(
                "Cannot specify both shutdownGracePeriodByPodPriority and shutdownGracePeriod \
                 at the same time"
                    .into(),
            );
        }
    } else if by_priority {
        fail(
            "Specifying shutdownGracePeriodByPodPriority requires feature gate \
             GracefulNodeShutdownBasedOnPodPriority"
                .into(),
        );
    }
}

fn validate_enforce_node_allocatable(c: &KubeletConfiguration, fail: &mut impl FnMut(String)) {
    const FIELD: &str = "enforceNodeAllocatable (--enforce-node-allocatable)";
    let values = c.enforce_node_allocatable.as_deref().unwrap_or_default();
    let has = |key: &str| values.iter().any(|v| v == key);
    for (plain, compressible) in [
        ("system-reserved", "system-reserved-compressible"),
        ("kube-reserved", "kube-reserved-compressible"),
    ] {
        if has(plain) && has(compressible) {
            fail(format!(
                "both {plain:?} and {compressible:?} cannot be specified together in {FIELD}"
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for value in values {
        if !seen.insert(value.as_str()) {
            fail(format!("duplicated enforcements {value:?} in {FIELD}"));
            continue;
        }
        match value.as_str() {
            "pods" => {}
            "system-reserved" | "system-reserved-compressible" => {
                if c.system_reserved_cgroup.is_empty() {
                    fail(format!(
                        "systemReservedCgroup (--system-reserved-cgroup) must be specified when \
                         \"system-reserved\" or \"system-reserved-compressible\" included in \
                         {FIELD}"
                    ));
                }
            }
            "kube-reserved" | "kube-reserved-compressible" => {
                if c.kube_reserved_cgroup.is_empty() {
                    fail(format!(
                        "kubeReservedCgroup (--kube-reserved-cgroup) must be specified when \
                         \"kube-reserved\" or \"kube-reserved-compressible\" included in {FIELD}"
                    ));
                }
            }
            "none" => {
                if values.len() > 1 {
                    fail(format!(
                        "{FIELD} may not contain additional enforcements when \"none\" is \
                         specified"
                    ));
                }
                continue;
            }
            other => {
                fail(format!(
                    "option {other:?} specified for {FIELD}. Valid options are \"pods\", \
                     \"system-reserved\", \"system-reserved-compressible\", \"kube-reserved\", \
                     \"kube-reserved-compressible\" or \"none\""
                ));
                continue;
            }
        }
        if c.cgroups_per_qos == Some(false) {
            fail(format!(
                "cgroupsPerQOS (--cgroups-per-qos) must be set to true when {value:?} contained \
                 in {FIELD}"
            ));
        }
    }
}

fn validate_image_pull_verification(c: &KubeletConfiguration, fail: &mut impl FnMut(String)) {
    let policy = c.image_pull_credentials_verification_policy.as_str();
    let allowlist = &c.preloaded_images_verification_allowlist;
    if c.gate("KubeletEnsureSecretPulledImages") {
        one_of(
            fail,
            "imagePullCredentialsVerificationPolicy",
            policy,
            &[
                "NeverVerify",
                "NeverVerifyPreloadedImages",
                "NeverVerifyAllowlistedImages",
                "AlwaysVerify",
            ],
        );
        if !allowlist.is_empty() && policy != "NeverVerifyAllowlistedImages" {
            fail(
                "can't set `preloadedImagesVerificationAllowlist` if \
                 `imagePullCredentialsVertificationPolicy` is not \"NeverVerifyAllowlistedImages\""
                    .into(),
            );
        }
    } else {
        if !policy.is_empty() {
            fail(
                "`imagePullCredentialsVerificationPolicy` must not be set if \
                 KubeletEnsureSecretPulledImages feature gate is not enabled"
                    .into(),
            );
        }
        if !allowlist.is_empty() {
            fail(
                "`preloadedImagesVerificationAllowlist` must not be set if \
                 KubeletEnsureSecretPulledImages feature gate is not enabled"
                    .into(),
            );
        }
    }
}

fn validate_reserved_memory(c: &KubeletConfiguration, fail: &mut impl FnMut(String)) {
    let mut seen: BTreeMap<i32, BTreeSet<&str>> = BTreeMap::new();
    for reservation in &c.reserved_memory {
        let node = reservation.numa_node;
        for (resource, quantity) in &reservation.limits {
            if resource != "memory" && !resource.starts_with("hugepages-") {
                fail(format!(
                    "the limit type {resource:?} for NUMA node {node} is not supported, only \
                     [memory hugepages-<HugePageSize>] is accepted"
                ));
            }
            if quantity.parse().is_ok_and(|q| q.is_zero()) {
                fail(format!(
                    "reserved memory may not be zero for NUMA node {node} and resource \
                     {resource:?}"
                ));
            }
            if !seen.entry(node).or_default().insert(resource.as_str()) {
                fail(format!(
                    "the reserved memory has a duplicate value for NUMA node {node} and \
                     resource {resource:?}"
                ));
            }
        }
    }
}

fn validate_pod_logs_dir(dir: &str, fail: &mut impl FnMut(String)) {
    if dir.is_empty() {
        fail("podLogsDir was not specified".into());
    }
    if !dir.starts_with('/') {
        fail(format!("pod logs path {dir:?} must be absolute path"));
    }
    if !is_clean_path(dir) {
        fail(format!("pod logs path {dir:?} must be normalized"));
    }
    if !dir.is_ascii() {
        fail(format!(
            "pod logs path {dir:?} mut contains ASCII characters only"
        ));
    }
}

/// Go's `filepath.Clean(p) == p` for an absolute path: no `.`, `..` or empty segments
/// and no trailing slash (except the root).
fn is_clean_path(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    match path.strip_prefix('/') {
        Some(rest) => rest
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".."),
        None => false,
    }
}

/// upstream's `CheckTaintValidation`: a qualified-name key, a label-value value, a
/// known effect (or none).
fn check_taint(taint: &ConfigTaint) -> Result<(), String> {
    if !is_qualified_name(&taint.key) {
        return Err(format!(
            "invalid taint key {:?}: must be a qualified name ([prefix/]name, name of at most \
             63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric)",
            taint.key
        ));
    }
    if !taint.value.is_empty() && !is_label_value(&taint.value) {
        return Err(format!(
            "invalid taint value {:?}: must be at most 63 alphanumerics, '-', '_' or '.', \
             starting and ending with an alphanumeric",
            taint.value
        ));
    }
    if !taint.effect.is_empty()
        && !matches!(
            taint.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        )
    {
        return Err(format!(
            "invalid taint effect {:?}: must be NoSchedule, PreferNoSchedule or NoExecute",
            taint.effect
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 of `[-_.A-Za-z0-9]`, alphanumeric at both ends.
fn is_label_value(value: &str) -> bool {
    crate::validation::label_value_errors(value).is_empty()
}

/// `IsQualifiedName`: `[prefix/]name`.
fn is_qualified_name(key: &str) -> bool {
    crate::validation::qualified_name_errors(key).is_empty()
}

/// `isValidSysctlName`: segments of `[a-z0-9]([-_a-z0-9]*[a-z0-9])?` joined by `.` or
/// `/`, at most 253 characters.
fn is_valid_sysctl_name(name: &str) -> bool {
    name.len() <= 253
        && name.split(['.', '/']).all(|segment| {
            let bytes = segment.as_bytes();
            !segment.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(b))
                && bytes
                    .first()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// A Linux CPU list (`0-3,8,10-11`), as `cpuset.Parse` accepts it.
fn is_cpuset(text: &str) -> bool {
    text.split(',').all(|part| {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) => a <= b,
                _ => false,
            },
            None => part.parse::<u32>().is_ok(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(edit: impl FnOnce(&mut KubeletConfiguration)) -> Vec<String> {
        let mut config = KubeletConfiguration::defaulted();
        edit(&mut config);
        validate(&config)
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            validate(&KubeletConfiguration::defaulted()),
            Vec::<String>::new()
        );
        assert_eq!(
            validate(&KubeletConfiguration::flag_defaults()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn messages_name_the_field() {
        type Edit = Box<dyn FnOnce(&mut KubeletConfiguration)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|c| c.max_pods = -1),
                "maxPods (--max-pods) -1 must not be a negative number",
            ),
            (
                Box::new(|c| c.node_lease_duration_seconds = -5),
                "nodeLeaseDurationSeconds must be greater than 0",
            ),
            (
                Box::new(|c| c.port = 70000),
                "port (--port) 70000 must be between 1 and 65535, inclusive",
            ),
            (
                Box::new(|c| c.read_only_port = -1),
                "readOnlyPort (--read-only-port) -1 must be between 0 and 65535, inclusive",
            ),
            (
                Box::new(|c| c.cgroup_driver = "upstart".into()),
                "option \"upstart\" specified for cgroupDriver",
            ),
            (
                Box::new(|c| c.container_log_max_files = Some(1)),
                "containerLogMaxFiles must be greater than 1",
            ),
            (
                Box::new(|c| c.image_gc_low_threshold_percent = Some(90)),
                "imageGCLowThresholdPercent (--image-gc-low-threshold) 90 must be less than \
                 imageGCHighThresholdPercent (--image-gc-high-threshold) 85",
            ),
            (
                Box::new(|c| c.pod_logs_dir = "/var/log/../pods".into()),
                "pod logs path \"/var/log/../pods\" must be normalized",
            ),
            (
                Box::new(|c| c.shutdown_grace_period = GoDuration::from_millis(500)),
                "shutdownGracePeriod 500ms must be either zero or otherwise >= 1 sec",
            ),
            (
                Box::new(|c| {
                    c.register_with_taints = vec![ConfigTaint {
                        key: "example.com/x".into(),
                        effect: "Sometimes".into(),
                        ..ConfigTaint::default()
                    }]
                }),
                "registerWithTaints[0]: invalid taint: invalid taint effect \"Sometimes\"",
            ),
            (
                Box::new(|c| c.enforce_node_allocatable = Some(vec!["kube-reserved".into()])),
                "kubeReservedCgroup (--kube-reserved-cgroup) must be specified",
            ),
            (
                Box::new(|c| c.container_runtime_endpoint.clear()),
                "the containerRuntimeEndpoint was not specified or empty",
            ),
            (
                Box::new(|c| {
                    c.feature_gates
                        .insert("KubeletCrashLoopBackOffMax".into(), false);
                }),
                "FeatureGate KubeletCrashLoopBackOffMax not enabled",
            ),
        ];
        for (edit, expected) in cases {
            let errors = errors_of(edit);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with("invalid configuration: ") && errors[0].contains(expected),
                "{errors:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn feature_gates_are_upstreams() {
        let errors = errors_of(|c| {
            c.feature_gates.insert("NoSuchGate".into(), true);
            c.max_pods = -1;
        });
        assert_eq!(
            errors,
            ["featureGates (--feature-gates): unrecognized feature gate: NoSuchGate"]
        );
        let errors = errors_of(|c| {
            c.feature_gates.insert("AllAlpha".into(), true);
            c.feature_gates.insert("AllBeta".into(), true);
        });
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn all_errors_are_reported() {
        let errors = errors_of(|c| {
            c.max_pods = -1;
            c.port = 0;
        });
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn name_checks() {
        assert!(is_qualified_name("node-role.kubernetes.io/control-plane"));
        assert!(is_qualified_name("dedicated"));
        assert!(!is_qualified_name("-bad"));
        assert!(!is_qualified_name("Example.com/x"));
        assert!(!is_qualified_name(""));
        assert!(is_valid_sysctl_name("net.ipv4.ip_forward"));
        assert!(!is_valid_sysctl_name("net..x"));
        assert!(is_cpuset("0-3,8"));
        assert!(!is_cpuset("3-1"));
        assert!(is_clean_path("/var/log/pods"));
        assert!(!is_clean_path("/var/log/pods/"));
        assert!(!is_clean_path("var/log"));
    }

    #[test]
    fn cgroup_v1_hosts_need_fail_cgroup_v1_false() {
        let v1 = HostFacts {
            cgroup_v1: true,
            ..HostFacts::default()
        };
        let mut config = KubeletConfiguration::default();
        assert!(validate_host(&config, &HostFacts::default()).is_empty());
        let errors = validate_host(&config, &v1);
        assert_eq!(
            errors,
            [
                "kubelet is configured to not run on a host using cgroup v1. cgroup v1 support is unsupported and will be removed in a future release"
            ]
        );
        config.fail_cgroup_v1 = Some(false);
        assert!(validate_host(&config, &v1).is_empty());
        config.single_process_oom_kill = Some(false);
        assert_eq!(
            validate_host(&config, &v1),
            [
                "invalid configuration: singleProcessOOMKill must not be explicitly set to false when using cgroup v1"
            ]
        );
        assert!(validate_host(&config, &HostFacts::default()).is_empty());
    }
}
