//! Every field of upstream's `KubeletConfiguration` (v1beta1, Kubernetes 1.37) and what
//! this kubelet does with it: acted on, or not supported yet, in which case a value other
//! than upstream's default is reported at start-up, one warning naming the field, instead
//! of being silently ignored.

use kubelet_core::config::KubeletConfiguration;

/// What this kubelet does with a configuration field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// The field's value is used (some fields accept only part of upstream's values and
    /// refuse or report the rest on their own).
    ActedOn,
    /// Not supported yet: what happens instead.
    NotYet(&'static str),
}

use Support::{ActedOn, NotYet};

/// Each upstream field, by its JSON name, in upstream's order.
pub const FIELDS: [(&str, Support); 126] = [
    ("enableServer", ActedOn),
    ("staticPodPath", ActedOn),
    ("podLogsDir", ActedOn),
    ("syncFrequency", ActedOn),
    ("fileCheckFrequency", ActedOn),
    ("httpCheckFrequency", ActedOn),
    ("staticPodURL", ActedOn),
    ("staticPodURLHeader", ActedOn),
    ("address", ActedOn),
    ("port", ActedOn),
    ("readOnlyPort", ActedOn),
    ("tlsCertFile", ActedOn),
    ("tlsPrivateKeyFile", ActedOn),
    ("tlsCipherSuites", ActedOn),
    ("tlsCurvePreferences", ActedOn),
    ("tlsMinVersion", ActedOn),
    ("rotateCertificates", ActedOn),
    ("serverTLSBootstrap", ActedOn),
    ("authentication", ActedOn),
    ("authorization", ActedOn),
    ("registryPullQPS", ActedOn),
    ("registryBurst", ActedOn),
    ("imagePullCredentialsVerificationPolicy", ActedOn),
    ("preloadedImagesVerificationAllowlist", ActedOn),
    ("eventRecordQPS", ActedOn),
    ("eventBurst", ActedOn),
    ("enableDebuggingHandlers", ActedOn),
    (
        "enableContentionProfiling",
        NotYet("there is no Go runtime to profile"),
    ),
    ("healthzPort", ActedOn),
    ("healthzBindAddress", ActedOn),
    ("oomScoreAdj", ActedOn),
    ("clusterDomain", ActedOn),
    ("clusterDNS", ActedOn),
    ("streamingConnectionIdleTimeout", ActedOn),
    ("nodeStatusUpdateFrequency", ActedOn),
    ("nodeStatusReportFrequency", ActedOn),
    ("nodeLeaseDurationSeconds", ActedOn),
    ("imageMinimumGCAge", ActedOn),
    ("imageMaximumGCAge", ActedOn),
    ("imageGCHighThresholdPercent", ActedOn),
    ("imageGCLowThresholdPercent", ActedOn),
    ("volumeStatsAggPeriod", ActedOn),
    ("kubeletCgroups", ActedOn),
    ("systemCgroups", ActedOn),
    ("cgroupRoot", ActedOn),
    ("cgroupsPerQOS", ActedOn),
    ("cgroupDriver", ActedOn),
    (
        "cpuManagerPolicy",
        NotYet("there is no CPU manager: containers share all CPUs (policy none)"),
    ),
    (
        "singleProcessOOMKill",
        NotYet("memory.oom.group is never set: the kernel kills single processes"),
    ),
    ("cpuManagerPolicyOptions", NotYet("there is no CPU manager")),
    (
        "cpuManagerReconcilePeriod",
        NotYet("there is no CPU manager"),
    ),
    (
        "memoryManagerPolicy",
        NotYet("there is no memory manager (policy None)"),
    ),
    (
        "topologyManagerPolicy",
        NotYet("there is no topology manager (policy none)"),
    ),
    (
        "topologyManagerScope",
        NotYet("there is no topology manager"),
    ),
    (
        "topologyManagerPolicyOptions",
        NotYet("there is no topology manager"),
    ),
    (
        "qosReserved",
        NotYet("QoS tiers reserve no memory for higher tiers"),
    ),
    ("runtimeRequestTimeout", ActedOn),
    (
        "hairpinMode",
        NotYet("hairpin traffic is left to the CNI plugin's configuration"),
    ),
    ("maxPods", ActedOn),
    (
        "podCIDR",
        NotYet("the pod network is the CNI plugin's configuration"),
    ),
    ("podPidsLimit", ActedOn),
    ("resolvConf", ActedOn),
    (
        "runOnce",
        NotYet("the kubelet keeps running and syncing pods"),
    ),
    ("cpuCFSQuota", ActedOn),
    ("cpuCFSQuotaPeriod", ActedOn),
    ("nodeStatusMaxImages", ActedOn),
    ("maxOpenFiles", ActedOn),
    ("contentType", NotYet("requests to the API server are JSON")),
    ("kubeAPIQPS", ActedOn),
    ("kubeAPIBurst", ActedOn),
    ("serializeImagePulls", ActedOn),
    ("maxParallelImagePulls", ActedOn),
    ("evictionHard", ActedOn),
    ("evictionSoft", ActedOn),
    ("evictionSoftGracePeriod", ActedOn),
    ("evictionPressureTransitionPeriod", ActedOn),
    ("evictionMaxPodGracePeriod", ActedOn),
    ("evictionMinimumReclaim", ActedOn),
    ("mergeDefaultEvictionSettings", ActedOn),
    ("podsPerCore", ActedOn),
    (
        "enableControllerAttachDetach",
        NotYet("the kubelet attaches no volumes itself"),
    ),
    ("protectKernelDefaults", ActedOn),
    (
        "makeIPTablesUtilChains",
        NotYet("the kubelet makes no iptables chains"),
    ),
    (
        "iptablesMasqueradeBit",
        NotYet("the kubelet makes no iptables chains"),
    ),
    (
        "iptablesDropBit",
        NotYet("the kubelet makes no iptables chains"),
    ),
    ("featureGates", ActedOn),
    ("failSwapOn", ActedOn),
    ("memorySwap", NotYet("containers get no swap (NoSwap)")),
    ("containerLogMaxSize", ActedOn),
    ("containerLogMaxFiles", ActedOn),
    (
        "containerLogMaxWorkers",
        NotYet("logs are rotated by one worker"),
    ),
    ("containerLogMonitorInterval", ActedOn),
    (
        "configMapAndSecretChangeDetectionStrategy",
        NotYet("ConfigMaps and Secrets are always watched (Watch)"),
    ),
    ("systemReserved", ActedOn),
    ("kubeReserved", ActedOn),
    (
        "reservedSystemCPUs",
        NotYet("no CPUs are set apart for system daemons"),
    ),
    (
        "showHiddenMetricsForVersion",
        NotYet("deprecated metrics are not kept hidden or shown by version"),
    ),
    ("systemReservedCgroup", ActedOn),
    ("kubeReservedCgroup", ActedOn),
    ("enforceNodeAllocatable", ActedOn),
    ("allowedUnsafeSysctls", ActedOn),
    ("defaultPodSysctls", ActedOn),
    (
        "volumePluginDir",
        NotYet("FlexVolume plugins are not loaded"),
    ),
    ("providerID", ActedOn),
    ("kernelMemcgNotification", ActedOn),
    ("logging", ActedOn),
    ("enableSystemLogHandler", ActedOn),
    (
        "enableSystemLogQuery",
        NotYet("/logs/ serves files; its ?query= parameters are not supported"),
    ),
    ("shutdownGracePeriod", ActedOn),
    ("shutdownGracePeriodCriticalPods", ActedOn),
    ("crashLoopBackOff", ActedOn),
    ("reservedMemory", NotYet("there is no memory manager")),
    ("enableProfilingHandler", ActedOn),
    ("enableDebugFlagsHandler", ActedOn),
    ("seccompDefault", ActedOn),
    (
        "memoryThrottlingFactor",
        NotYet("MemoryQoS's memory.high is not set"),
    ),
    (
        "memoryReservationPolicy",
        NotYet("MemoryQoS's memory.min is not set"),
    ),
    ("registerWithTaints", ActedOn),
    ("registerNode", ActedOn),
    ("tracing", NotYet("no OpenTelemetry spans are exported")),
    ("localStorageCapacityIsolation", ActedOn),
    ("containerRuntimeEndpoint", ActedOn),
    ("imageServiceEndpoint", ActedOn),
    ("failCgroupV1", ActedOn),
    ("shutdownGracePeriodByPodPriority", ActedOn),
    ("userNamespaces", ActedOn),
];

/// One warning per field not supported yet whose value in `config` differs from
/// upstream's default.
pub fn not_supported(config: &KubeletConfiguration) -> Vec<String> {
    let (Ok(serde_json::Value::Object(set)), Ok(serde_json::Value::Object(default))) = (
        serde_json::to_value(config),
        serde_json::to_value(KubeletConfiguration::defaulted()),
    ) else {
        return Vec::new();
    };
    FIELDS
        .iter()
        .filter_map(|(field, support)| {
            let NotYet(instead) = support else {
                return None;
            };
            let value = set.get(*field);
            (value != default.get(*field)).then(|| {
                let shown = value.map_or_else(|| "unset".to_owned(), ToString::to_string);
                format!("{field} is not supported yet and is ignored ({shown}): {instead}")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A configuration with `field` set away from its default, if some simple value of
    /// the right type is accepted for it.
    fn with_non_default(field: &str) -> Option<KubeletConfiguration> {
        let candidates = [
            json!(true),
            json!(false),
            json!(7),
            json!("3m0s"),
            json!("x"),
            json!(["x"]),
            json!([7]),
            json!({"x": "1"}),
            json!({"x": ["1"]}),
            json!({"x": true}),
            json!({"anonymous": {"enabled": true}}),
            json!({"mode": "AlwaysAllow"}),
            json!({"verbosity": 3}),
            json!({"maxContainerRestartPeriod": "1m0s"}),
            json!({"idsPerPod": 131072}),
            json!([{"priority": 1, "shutdownGracePeriodSeconds": 5}]),
            json!([{"key": "k", "effect": "NoSchedule"}]),
            json!({"enabled": true}),
            json!({"swapBehavior": "LimitedSwap"}),
            json!({"endpoint": "localhost:4317"}),
            json!({"featureGates": {"x": true}}),
            json!([{"numaNode": 0, "limits": {"memory": "1Gi"}}]),
        ];
        let default = serde_json::to_value(KubeletConfiguration::defaulted()).ok()?;
        candidates.into_iter().find_map(|value| {
            let mut edited = default.clone();
            edited[field] = value;
            let config: KubeletConfiguration = serde_json::from_value(edited.clone()).ok()?;
            let back = serde_json::to_value(&config).ok()?;
            (back.get(field) != default.get(field)).then_some(config)
        })
    }

    #[test]
    fn every_upstream_field_is_classified_once() {
        let mut names: Vec<&str> = FIELDS.iter().map(|(f, _)| *f).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len(), "a field is listed twice");
        // Each name is a field of the type: a value of some type decodes for it.
        let missing: Vec<&str> = FIELDS
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| with_non_default(f).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "no simple value decodes for {missing:?}"
        );
    }

    #[test]
    fn defaults_are_silent_and_each_unsupported_field_is_named() {
        assert_eq!(
            not_supported(&KubeletConfiguration::defaulted()),
            Vec::<String>::new()
        );
        for (field, support) in FIELDS {
            let Some(config) = with_non_default(field) else {
                continue;
            };
            let notes = not_supported(&config);
            match support {
                NotYet(_) => assert!(
                    notes.len() == 1 && notes[0].starts_with(&format!("{field} is not supported")),
                    "{field}: {notes:?}"
                ),
                ActedOn => assert!(notes.is_empty(), "{field}: {notes:?}"),
            }
        }
    }
}
