use std::path::Path;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde_json::{Value, json};

use std::time::Duration;

use kubelet_builder::configz_json;
use kubelet_core::config::{API_VERSION, KIND};

use super::*;

const HEADER: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

/// Resolves the configuration as `main` does for these command-line arguments, on a
/// cgroup v2 host.
fn resolve_args(args: &[&str]) -> anyhow::Result<Settings> {
    resolve_args_on(args, &HostFacts::default())
}

fn resolve_args_on(args: &[&str], host: &HostFacts) -> anyhow::Result<Settings> {
    let args = args.iter().map(std::ffi::OsString::from).collect();
    let (args, more) = MoreFlags::split(args).map_err(anyhow::Error::msg)?;
    let matches = Flags::command().try_get_matches_from(args)?;
    let flags = Flags::from_arg_matches(&matches)?;
    resolve_on(&flags, &matches, &more, host)
}

#[test]
fn cgroup_v1_is_refused_unless_the_file_or_the_flag_says_false() {
    let v1 = HostFacts {
        cgroup_v1: true,
        ..HostFacts::default()
    };
    let refused = resolve_args_on(&["kubelet"], &v1).expect_err("refused on cgroup v1");
    assert!(
        format!("{refused:#}")
            .contains("kubelet is configured to not run on a host using cgroup v1"),
        "{refused:#}"
    );
    resolve_args_on(&["kubelet", "--fail-cgroupv1=false"], &v1).expect("flag");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kubelet.yaml");
    write(&file, &format!("{HEADER}failCgroupV1: false\n"));
    let file = file.to_string_lossy();
    resolve_args_on(&["kubelet", "--config", &file], &v1).expect("file");
    // The flag beats the file.
    resolve_args_on(&["kubelet", "--config", &file, "--fail-cgroupv1"], &v1)
        .expect_err("--fail-cgroupv1 over the file");
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

/// A config file holding `HEADER` and `body`.
fn config_file(dir: &tempfile::TempDir, body: &str) -> std::path::PathBuf {
    let path = dir.path().join("kubelet.yaml");
    write(&path, &format!("{HEADER}{body}"));
    path
}

fn load_error(body: &str) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config_file(&dir, body);
    let err = load_file(&path).expect_err("invalid file");
    (format!("{err:#}"), path.display().to_string())
}

fn upstream_fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/config/testdata")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn as_served(mut config: KubeletConfiguration) -> Value {
    config.api_version = API_VERSION.into();
    config.kind = KIND.into();
    serde_json::to_value(config).expect("JSON")
}

#[test]
fn defaults_equal_upstream() {
    // upstream-defaults.json is what upstream v1.37.2 makes of a file with only
    // apiVersion and kind (see testdata/upstream_dump.go).
    assert_eq!(
        as_served(KubeletConfiguration::defaulted()),
        upstream_fixture("upstream-defaults.json")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut loaded = load_file(&config_file(&dir, "")).expect("empty config");
    // loadConfigFile's own default, added after what the fixture shows.
    let eviction = loaded.eviction_hard.take().expect("evictionHard defaulted");
    assert_eq!(
        eviction.get("memory.available").map(String::as_str),
        Some("100Mi")
    );
    assert_eq!(eviction.len(), 5);
    assert_eq!(
        as_served(loaded),
        upstream_fixture("upstream-defaults.json")
    );
}

#[test]
fn a_file_loads_as_upstream_loads_it() {
    // testdata/some.yaml sets durations, pointers, explicit empties and gates.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/some.yaml");
    write(&path, include_str!("testdata/some.yaml"));
    let config = load_file(&path).expect("some.yaml");
    let mut expected = upstream_fixture("upstream-some.json");
    // Upstream was given the relative path sub/some.yaml; here the file is absolute.
    expected["staticPodPath"] = json!(dir.path().join("sub/manifests"));
    assert_eq!(as_served(config), expected);
}

#[test]
fn a_kubeadm_file_loads_as_upstream_loads_it() {
    // testdata/kubeadm.yaml is the file `kubeadm init` writes (zero durations, an
    // integer flushFrequency, an empty containerRuntimeEndpoint, ...).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    write(&path, include_str!("testdata/kubeadm.yaml"));
    let mut config = load_file(&path).expect("kubeadm's config");
    assert_eq!(config.eviction_hard.take().map(|e| e.len()), Some(5));
    assert_eq!(as_served(config), upstream_fixture("upstream-kubeadm.json"));
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let (err, file) = load_error("maxPod: 3\n");
    assert!(err.contains(&file), "{err}");
    assert!(err.ends_with("field \"maxPod\": unknown field"), "{err}");
    let (err, _) = load_error("authentication:\n  x509:\n    clientCAfile: /ca.crt\n");
    assert!(
        err.ends_with("field \"authentication.x509.clientCAfile\": unknown field"),
        "{err}"
    );
    let (err, _) =
        load_error("registerWithTaints:\n- key: a\n  effect: NoSchedule\n  operator: Exists\n");
    assert!(
        err.ends_with("field \"registerWithTaints[0].operator\": unknown field"),
        "{err}"
    );
}

#[test]
fn wrong_types_are_refused_with_their_path() {
    let (err, file) = load_error("maxPods: lots\n");
    assert_eq!(
        err,
        format!(
            "config file {file}: field \"maxPods\": invalid type: string \"lots\", expected i32"
        )
    );
    let (err, _) = load_error("syncFrequency: 10\n");
    assert!(
        err.contains("field \"syncFrequency\": invalid type: integer `10`, expected a duration"),
        "{err}"
    );
    let (err, _) = load_error("syncFrequency: 10x\n");
    assert!(
        err.ends_with("field \"syncFrequency\": time: unknown unit in duration \"10x\""),
        "{err}"
    );
    let (err, _) = load_error("kubeReserved:\n  cpu: 1\n");
    assert!(
        err.contains("field \"kubeReserved.cpu\": invalid type: integer `1`"),
        "{err}"
    );
    let (err, _) = load_error("readOnlyPort: 99999999999\n");
    assert!(err.contains("field \"readOnlyPort\""), "{err}");
    let (err, _) = load_error("registerNode: \"yes\"\n");
    assert!(
        err.contains("field \"registerNode\": invalid type: string"),
        "{err}"
    );
}

#[test]
fn the_document_must_be_a_kubelet_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubelet.yaml");
    write(
        &path,
        "apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n",
    );
    let err = format!("{:#}", load_file(&path).expect_err("wrong version"));
    assert!(
        err.contains("field \"apiVersion\": \"kubelet.config.k8s.io/v1\" is not supported"),
        "{err}"
    );
    write(
        &path,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeProxyConfiguration\n",
    );
    let err = format!("{:#}", load_file(&path).expect_err("wrong kind"));
    assert!(err.contains("field \"kind\""), "{err}");
    write(&path, "maxPods: 3\n");
    let err = format!("{:#}", load_file(&path).expect_err("no type"));
    assert!(err.contains("field \"apiVersion\": missing"), "{err}");
    write(&path, "  \n");
    let err = format!("{:#}", load_file(&path).expect_err("empty"));
    assert!(err.ends_with("the file is empty"), "{err}");
    write(&path, "maxPods: [\n");
    let err = format!("{:#}", load_file(&path).expect_err("broken"));
    assert!(err.contains("invalid YAML"), "{err}");
    let err = format!(
        "{:#}",
        load_file(&dir.path().join("missing.yaml")).expect_err("missing")
    );
    assert!(err.contains("missing.yaml: cannot read it"), "{err}");
}

#[test]
fn json_files_load_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubelet.json");
    write(
        &path,
        r#"{"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "maxPods": 20, "clusterDNS": ["10.96.0.10"]}"#,
    );
    let config = load_file(&path).expect("JSON config");
    assert_eq!(config.max_pods, 20);
    assert_eq!(config.cluster_dns, ["10.96.0.10"]);
}

#[test]
fn relative_paths_follow_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config_file(
        &dir,
        "staticPodPath: manifests\nresolvConf: \"\"\npodLogsDir: /logs\n",
    );
    let config = load_file(&path).expect("config");
    assert_eq!(
        Path::new(&config.static_pod_path),
        dir.path().join("manifests")
    );
    assert_eq!(config.resolv_conf.as_deref(), Some(""));
    assert_eq!(config.pod_logs_dir, "/logs");
}

#[test]
fn drop_ins_merge_in_lexical_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_file(
        &dir,
        "maxPods: 50\nsyncFrequency: 30s\nclusterDNS: [10.0.0.1]\n\
         evictionHard:\n  memory.available: 200Mi\n",
    );
    let drop_ins = dir.path().join("kubelet.conf.d");
    write(
        &drop_ins.join("20-pods.conf"),
        &format!("{HEADER}maxPods: 60\nclusterDNS: [10.0.0.2, 10.0.0.3]\n"),
    );
    write(
        &drop_ins.join("10-pods.conf"),
        &format!("{HEADER}maxPods: 40\nnodeLeaseDurationSeconds: 20\n"),
    );
    // Subdirectories are walked in their place in the order: "30" after "20-pods.conf".
    write(
        &drop_ins.join("30/a.conf"),
        &format!("{HEADER}evictionHard:\n  nodefs.available: 5%\nsyncFrequency: null\n"),
    );
    write(&drop_ins.join("README"), "not a drop-in");
    let cfg = resolve_args(&[
        "kubelet",
        "--config",
        &file.to_string_lossy(),
        "--config-dir",
        &drop_ins.to_string_lossy(),
    ])
    .expect("config with drop-ins");
    assert_eq!(cfg.config.max_pods, 60, "the last drop-in wins");
    assert_eq!(
        cfg.config.node_lease_duration_seconds, 20,
        "an earlier one stays"
    );
    assert_eq!(
        cfg.config.cluster_dns,
        ["10.0.0.2", "10.0.0.3"],
        "lists replace"
    );
    assert_eq!(
        cfg.config.eviction_hard,
        Some(
            [("memory.available", "200Mi"), ("nodefs.available", "5%")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        ),
        "maps merge"
    );
    assert_eq!(
        cfg.sync_frequency,
        Duration::from_secs(60),
        "null resets to the default"
    );
    assert!(cfg.sources.contains("--config-dir"), "{}", cfg.sources);
    assert_eq!(cfg.skipped_drop_ins, [drop_ins.join("README")]);
}

#[test]
fn a_bad_drop_in_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let drop_ins = dir.path().join("conf.d");
    write(
        &drop_ins.join("10-a.conf"),
        &format!("{HEADER}maxPods: 40\n"),
    );
    write(
        &drop_ins.join("20-b.conf"),
        &format!("{HEADER}maxPod: 40\n"),
    );
    let err = resolve_args(&["kubelet", "--config-dir", &drop_ins.to_string_lossy()])
        .expect_err("unknown field in a drop-in");
    let err = format!("{err:#}");
    assert!(
        err.contains("drop-in config file") && err.contains("20-b.conf"),
        "{err}"
    );
    assert!(err.ends_with("field \"maxPod\": unknown field"), "{err}");
    write(&drop_ins.join("20-b.conf"), "maxPods: 40\n");
    let err = resolve_args(&["kubelet", "--config-dir", &drop_ins.to_string_lossy()])
        .expect_err("no apiVersion");
    assert!(format!("{err:#}").contains("apiVersion"), "{err:#}");
    let err = resolve_args(&["kubelet", "--config-dir", "/nonexistent/conf.d"])
        .expect_err("missing directory");
    assert!(
        format!("{err:#}").contains("/nonexistent/conf.d"),
        "{err:#}"
    );
}

#[test]
fn drop_ins_without_a_config_file_start_from_the_flag_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("a.conf"),
        &format!("{HEADER}maxPods: 40\n"),
    );
    let cfg = resolve_args(&["kubelet", "--config-dir", &dir.path().to_string_lossy()])
        .expect("drop-ins only");
    assert_eq!(cfg.max_pods, 40);
    assert_eq!(
        cfg.read_only_port, None,
        "no read-only port unless asked for"
    );
}

#[test]
fn typed_flags_beat_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_file(
        &dir,
        "maxPods: 50\nsyncFrequency: 30s\nreadOnlyPort: 10255\nclusterDomain: example.org\n",
    );
    let file = file.to_string_lossy();
    let cfg = resolve_args(&["kubelet", "--config", &file]).expect("file only");
    assert_eq!(cfg.max_pods, 50);
    assert_eq!(cfg.sync_frequency, Duration::from_secs(30));
    assert_eq!(cfg.read_only_port, Some(10255));
    assert_eq!(cfg.cluster_domain, "example.org");
    let cfg = resolve_args(&[
        "kubelet",
        "--config",
        &file,
        "--max-pods",
        "30",
        "--read-only-port=0",
        "--cluster-dns=10.96.0.10",
        "-v",
        "4",
    ])
    .expect("file and flags");
    assert_eq!(cfg.max_pods, 30, "a typed flag wins");
    assert_eq!(cfg.config.max_pods, 30, "and is what /configz shows");
    assert_eq!(cfg.read_only_port, None);
    assert_eq!(cfg.cluster_dns, [IpAddr::from([10, 96, 0, 10])]);
    assert_eq!(cfg.verbosity, 4);
    assert_eq!(
        cfg.sync_frequency,
        Duration::from_secs(30),
        "a flag left at its default does not"
    );
    assert_eq!(cfg.cluster_domain, "example.org");
}

#[test]
fn without_a_file_the_flags_and_their_defaults_decide() {
    let cfg = resolve_args(&["kubelet"]).expect("no file");
    assert_eq!(cfg.config, KubeletConfiguration::flag_defaults());
    assert_eq!(cfg.read_only_port, None);
    assert_eq!(cfg.address, IpAddr::from([0, 0, 0, 0]));
    assert_eq!(cfg.cluster_domain, "cluster.local");
    assert_eq!(
        cfg.resolv_conf.as_deref(),
        Some(Path::new("/etc/resolv.conf"))
    );
    assert_eq!(cfg.container_log_max_size, 10 * 1024 * 1024);
    let cfg = resolve_args(&[
        "kubelet",
        "--pod-manifest-path=/etc/kubernetes/manifests",
        "--manifest-url-header=Authorization: Bearer x",
        "--manifest-url-header=Authorization:Bearer y",
        "--register-with-taints=example.com/soft=yes:PreferNoSchedule",
        "--container-log-max-size=500k",
        "--node-status-update-frequency=2s",
    ])
    .expect("flags");
    assert_eq!(
        cfg.static_pod_path.as_deref(),
        Some(Path::new("/etc/kubernetes/manifests"))
    );
    assert_eq!(
        cfg.static_pod_url_headers,
        [
            ("Authorization".to_owned(), "Bearer x".to_owned()),
            ("Authorization".to_owned(), "Bearer y".to_owned())
        ]
    );
    assert_eq!(cfg.register_with_taints[0].value.as_deref(), Some("yes"));
    assert_eq!(cfg.container_log_max_size, 500_000);
    assert_eq!(cfg.node_status_update_frequency, Duration::from_secs(2));
    assert_eq!(
        cfg.node_status_report_frequency,
        Duration::from_secs(300),
        "defaulted before the flags, as upstream"
    );
}

#[test]
fn flag_defaults_match_the_configuration_defaults() {
    // Every flag with a configuration field, applied at its default, changes nothing.
    let flags = Flags::try_parse_from(["kubelet"]).expect("defaults");
    let mut config = KubeletConfiguration::flag_defaults();
    apply_flags(&mut config, &flags, |_| true).expect("apply");
    assert_eq!(config, KubeletConfiguration::flag_defaults());
}

#[test]
fn invalid_values_are_reported_with_their_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_file(
        &dir,
        "maxPods: -1\nclusterDNS: [10.96.0.300]\ncontainerLogMaxSize: ten\n",
    );
    let err = resolve_args(&["kubelet", "--config", &file.to_string_lossy()])
        .expect_err("invalid values");
    let err = format!("{err:#}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(
        err.contains(
            "invalid configuration: maxPods (--max-pods) -1 must not be a negative number"
        ),
        "{err}"
    );
    assert!(
        err.contains("clusterDNS[0]: \"10.96.0.300\" is not an IP address"),
        "{err}"
    );
    assert!(
        err.contains("containerLogMaxSize: quantity \"ten\""),
        "{err}"
    );
    let err = resolve_args(&["kubelet", "--sync-frequency=0s"]).expect_err("zero period");
    assert!(
        format!("{err:#}").contains("syncFrequency: 0s must be greater than 0"),
        "{err:#}"
    );
}

#[test]
fn configz_is_upstreams_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_file(
        &dir,
        "staticPodURL: http://example.com/pods\nstaticPodURLHeader:\n  Authorization: [Bearer secret]\n",
    );
    let cfg = resolve_args(&[
        "kubelet",
        "--config",
        &file.to_string_lossy(),
        "--max-pods=7",
    ])
    .expect("config");
    let configz = configz_json(&cfg);
    let served = &configz["kubeletconfig"];
    assert_eq!(served["apiVersion"], "kubelet.config.k8s.io/v1beta1");
    assert_eq!(served["kind"], "KubeletConfiguration");
    assert_eq!(served["maxPods"], 7);
    assert_eq!(served["syncFrequency"], "1m0s");
    assert_eq!(
        served["staticPodURLHeader"]["Authorization"],
        json!(["<masked>"])
    );
    assert!(!configz.to_string().contains("secret"));
    assert_eq!(configz.as_object().map(|o| o.len()), Some(1));
}

#[test]
fn unsupported_settings_are_noted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // MemoryQoS, on by default, would set memory.min/high on cgroup v2.
    let cfg = resolve_args(&["kubelet"]).expect("config");
    assert_eq!(
        cfg.unsupported(),
        [
            "feature gate MemoryQoS is not supported yet: memory.min and memory.high are not \
          set on cgroup v2"
        ]
    );
    // The systemd driver is supported: nothing to note.
    let file = config_file(
        &dir,
        "cgroupDriver: systemd\nfeatureGates:\n  MemoryQoS: false\n",
    );
    let cfg = resolve_args(&["kubelet", "--config", &file.to_string_lossy()]).expect("config");
    assert!(cfg.unsupported().is_empty(), "{:?}", cfg.unsupported());
    let cfg = resolve_args(&["kubelet", "--cgroup-driver", "systemd"]).expect("config");
    assert_eq!(cfg.config.cgroup_driver, "systemd");
    let err = resolve_args(&["kubelet", "--cgroup-driver", "upstart"]).expect_err("refused");
    assert!(format!("{err:#}").contains("cgroupDriver"), "{err:#}");
    let cfg = resolve_args(&[
        "kubelet",
        "--cgroup-root",
        "/custom",
        "--feature-gates=MemoryQoS=false",
    ])
    .expect("config");
    assert_eq!(
        cfg.unsupported(),
        ["cgroupRoot \"/custom\" is not supported yet: pod cgroups are under /kubepods"]
    );
}

/// The JSON names of upstream's v1beta1 `KubeletConfiguration` fields (k8s.io/kubelet
/// v0.37.2, config/v1beta1/types.go).
const UPSTREAM_FIELDS: [&str; 126] = [
    "enableServer",
    "staticPodPath",
    "podLogsDir",
    "syncFrequency",
    "fileCheckFrequency",
    "httpCheckFrequency",
    "staticPodURL",
    "staticPodURLHeader",
    "address",
    "port",
    "readOnlyPort",
    "tlsCertFile",
    "tlsPrivateKeyFile",
    "tlsCipherSuites",
    "tlsCurvePreferences",
    "tlsMinVersion",
    "rotateCertificates",
    "serverTLSBootstrap",
    "authentication",
    "authorization",
    "registryPullQPS",
    "registryBurst",
    "imagePullCredentialsVerificationPolicy",
    "preloadedImagesVerificationAllowlist",
    "eventRecordQPS",
    "eventBurst",
    "enableDebuggingHandlers",
    "enableContentionProfiling",
    "healthzPort",
    "healthzBindAddress",
    "oomScoreAdj",
    "clusterDomain",
    "clusterDNS",
    "streamingConnectionIdleTimeout",
    "nodeStatusUpdateFrequency",
    "nodeStatusReportFrequency",
    "nodeLeaseDurationSeconds",
    "imageMinimumGCAge",
    "imageMaximumGCAge",
    "imageGCHighThresholdPercent",
    "imageGCLowThresholdPercent",
    "volumeStatsAggPeriod",
    "kubeletCgroups",
    "systemCgroups",
    "cgroupRoot",
    "cgroupsPerQOS",
    "cgroupDriver",
    "cpuManagerPolicy",
    "singleProcessOOMKill",
    "cpuManagerPolicyOptions",
    "cpuManagerReconcilePeriod",
    "memoryManagerPolicy",
    "topologyManagerPolicy",
    "topologyManagerScope",
    "topologyManagerPolicyOptions",
    "qosReserved",
    "runtimeRequestTimeout",
    "hairpinMode",
    "maxPods",
    "podCIDR",
    "podPidsLimit",
    "resolvConf",
    "runOnce",
    "cpuCFSQuota",
    "cpuCFSQuotaPeriod",
    "nodeStatusMaxImages",
    "maxOpenFiles",
    "contentType",
    "kubeAPIQPS",
    "kubeAPIBurst",
    "serializeImagePulls",
    "maxParallelImagePulls",
    "evictionHard",
    "evictionSoft",
    "evictionSoftGracePeriod",
    "evictionPressureTransitionPeriod",
    "evictionMaxPodGracePeriod",
    "evictionMinimumReclaim",
    "mergeDefaultEvictionSettings",
    "podsPerCore",
    "enableControllerAttachDetach",
    "protectKernelDefaults",
    "makeIPTablesUtilChains",
    "iptablesMasqueradeBit",
    "iptablesDropBit",
    "featureGates",
    "failSwapOn",
    "memorySwap",
    "containerLogMaxSize",
    "containerLogMaxFiles",
    "containerLogMaxWorkers",
    "containerLogMonitorInterval",
    "configMapAndSecretChangeDetectionStrategy",
    "systemReserved",
    "kubeReserved",
    "reservedSystemCPUs",
    "showHiddenMetricsForVersion",
    "systemReservedCgroup",
    "kubeReservedCgroup",
    "enforceNodeAllocatable",
    "allowedUnsafeSysctls",
    "defaultPodSysctls",
    "volumePluginDir",
    "providerID",
    "kernelMemcgNotification",
    "logging",
    "enableSystemLogHandler",
    "enableSystemLogQuery",
    "shutdownGracePeriod",
    "shutdownGracePeriodCriticalPods",
    "shutdownGracePeriodByPodPriority",
    "crashLoopBackOff",
    "reservedMemory",
    "enableProfilingHandler",
    "enableDebugFlagsHandler",
    "seccompDefault",
    "memoryThrottlingFactor",
    "memoryReservationPolicy",
    "registerWithTaints",
    "registerNode",
    "tracing",
    "localStorageCapacityIsolation",
    "containerRuntimeEndpoint",
    "imageServiceEndpoint",
    "failCgroupV1",
    "userNamespaces",
];

#[test]
fn every_upstream_field_is_classified() {
    let mut ours: Vec<&str> = kubelet_builder::support::FIELDS
        .iter()
        .map(|(f, _)| *f)
        .collect();
    let mut upstream = UPSTREAM_FIELDS.to_vec();
    ours.sort_unstable();
    upstream.sort_unstable();
    assert_eq!(ours, upstream);
}

#[test]
fn every_upstream_field_is_accepted() {
    for name in UPSTREAM_FIELDS {
        // A boolean is the right type for some fields and the wrong one for the others;
        // either way the field must be known.
        if let Err(err) = load::decode(json!({ name: true })) {
            assert_eq!(err.field, name, "{err}");
            assert_ne!(err.reason, "unknown field", "{name} is not accepted");
        }
    }
}

#[test]
fn the_installed_configuration_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/config.yaml");
    let cfg = resolve_args(&["kubelet", "--config", &path.to_string_lossy()])
        .expect("dist/config.yaml is valid");
    assert_eq!(cfg.read_only_port, None);
    assert_eq!(cfg.cluster_dns, [IpAddr::from([10, 96, 0, 10])]);
    assert_eq!(
        cfg.config.authentication.x509.client_ca_file,
        "/etc/kubernetes/pki/ca.crt"
    );
    assert_eq!(cfg.config.authorization.mode, "Webhook");
    assert_eq!(
        cfg.static_pod_path.as_deref(),
        Some(Path::new("/etc/kubernetes/manifests"))
    );
}

#[test]
fn system_cgroup_flags_set_their_fields() {
    let cfg = resolve_args(&[
        "kubelet",
        "--kubelet-cgroups",
        "/kubelet",
        "--system-cgroups",
        "/system",
        "--cgroup-root",
        "/",
    ])
    .expect("valid");
    assert_eq!(cfg.config.kubelet_cgroups, "/kubelet");
    assert_eq!(cfg.config.system_cgroups, "/system");
    assert_eq!(cfg.config.cgroup_root, "/");
    let err = resolve_args(&["kubelet", "--system-cgroups", "/system"]).expect_err("no root");
    assert!(format!("{err:#}").contains("cgroupRoot"), "{err:#}");
    let err = resolve_args(&["kubelet", "--system-cgroups", "/", "--cgroup-root", "/"])
        .expect_err("root");
    assert!(
        format!("{err:#}").contains("system container cannot be root (\"/\")"),
        "{err:#}"
    );
}

#[test]
fn sysctl_allowlist_and_seccomp_default_come_from_file_or_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_file(
        &dir,
        "allowedUnsafeSysctls: [\"kernel.msg*\"]\nseccompDefault: true\n",
    );
    let file = file.to_string_lossy();
    let settings = resolve_args(&["kubelet", "--config", &file]).expect("valid");
    assert_eq!(settings.config.seccomp_default, Some(true));
    assert!(
        settings
            .sysctls
            .check("kernel.msgmax", false, false, true)
            .is_ok()
    );
    assert!(
        settings
            .sysctls
            .check("kernel.sem", false, false, true)
            .is_err()
    );
    let settings = resolve_args(&[
        "kubelet",
        "--config",
        &file,
        "--allowed-unsafe-sysctls",
        "kernel.sem,net.core.somaxconn",
        "--seccomp-default=false",
    ])
    .expect("valid");
    assert_eq!(
        settings.config.seccomp_default,
        Some(false),
        "the flag wins"
    );
    assert!(
        settings
            .sysctls
            .check("kernel.sem", false, false, true)
            .is_ok()
    );
    assert!(
        settings
            .sysctls
            .check("kernel.msgmax", false, false, true)
            .is_err()
    );
}

#[test]
fn a_sysctl_pattern_that_is_not_namespaced_stops_start_up() {
    let refused = resolve_args(&["kubelet", "--allowed-unsafe-sysctls", "kernel.panic"])
        .expect_err("refused");
    assert!(
        format!("{refused:#}").contains(
            "allowedUnsafeSysctls: the sysctls \"kernel.panic\" are not known to be namespaced"
        ),
        "{refused:#}"
    );
}

#[test]
fn eviction_and_reservation_flags_override_the_file_and_bad_values_name_the_field() {
    use kubelet_core::NodeResources;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_file(&dir, "kubeReserved: {cpu: 50m}\n");
    let file = file.to_string_lossy();
    let settings = resolve_args(&["kubelet", "--config", &file]).expect("valid");
    // A configuration file gets upstream's default hard thresholds.
    // Five, the allocatable-memory one (enforcing `pods`) and containerfs as nodefs.
    assert_eq!(
        settings.eviction.thresholds.len(),
        8,
        "{:?}",
        settings.eviction
    );
    assert_eq!(settings.kube_reserved.milli_cpu, 50);
    assert!(settings.enforce_pods_allocatable);
    let settings = resolve_args(&[
        "kubelet",
        "--config",
        &file,
        "--eviction-hard=memory.available<200Mi",
        "--eviction-soft=nodefs.available<20%",
        "--eviction-soft-grace-period=nodefs.available=1m",
        "--eviction-pressure-transition-period=30s",
        "--kube-reserved=cpu=100m,memory=1Gi",
        "--system-reserved=pid=1000",
        "--enforce-node-allocatable=",
    ])
    .expect("valid");
    let signals: Vec<&str> = settings
        .eviction
        .thresholds
        .iter()
        .map(|t| t.signal.as_str())
        .collect();
    assert_eq!(
        signals,
        vec![
            "memory.available",
            "nodefs.available",
            "containerfs.available"
        ]
    );
    assert_eq!(
        settings.eviction.pressure_transition_period,
        Duration::from_secs(30)
    );
    assert_eq!(
        settings.kube_reserved,
        NodeResources {
            milli_cpu: 100,
            memory: 1 << 30,
            ..NodeResources::default()
        }
    );
    assert_eq!(settings.system_reserved.pids, 1000);
    assert!(!settings.enforce_pods_allocatable);

    for (args, expected) in [
        (
            vec!["--eviction-hard=nodefs.available<150%"],
            "evictionHard: eviction percentage threshold nodefs.available must be <= 100%: 150%",
        ),
        (
            vec!["--kube-reserved=gpu=1"],
            "kubeReserved: cannot reserve \"gpu\" resource",
        ),
        (
            vec!["--eviction-soft=memory.available<1Gi"],
            "evictionSoftGracePeriod: grace period must be specified for the soft eviction threshold memory.available",
        ),
    ] {
        let mut all = vec!["kubelet", "--config", &file];
        all.extend(args);
        let err = resolve_args(&all).expect_err("refused");
        assert!(format!("{err:#}").contains(expected), "{err:#}");
    }
}

#[test]
fn the_deprecated_container_gc_flags_parse_as_upstreams() {
    let defaults = Flags::try_parse_from(["kubelet"]).expect("defaults");
    assert_eq!(defaults.maximum_dead_containers_per_container, 1);
    assert_eq!(defaults.maximum_dead_containers, -1);
    assert!(defaults.minimum_container_ttl_duration.is_zero());
    let given = Flags::try_parse_from([
        "kubelet",
        "--maximum-dead-containers-per-container",
        "-1",
        "--maximum-dead-containers=100",
        "--minimum-container-ttl-duration=1m30s",
    ])
    .expect("given");
    assert_eq!(given.maximum_dead_containers_per_container, -1);
    assert_eq!(given.maximum_dead_containers, 100);
    assert_eq!(
        given.minimum_container_ttl_duration.to_std(),
        Some(Duration::from_secs(90))
    );
}

#[test]
fn feature_gates_come_from_file_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_file(
        &dir,
        "featureGates:\n  DefaultPodSysctls: true\n  EventedPLEG: false\n  MemoryQoS: false\n",
    );
    let path = file.to_string_lossy();
    let cfg = resolve_args(&[
        "kubelet",
        "--config",
        &path,
        "--feature-gates=EventedPLEG=1,",
        "--feature-gates",
        "RotateKubeletServerCertificate=F",
    ])
    .expect("config");
    assert!(cfg.config.gate("DefaultPodSysctls"));
    assert!(!cfg.config.gate("RotateKubeletServerCertificate"));
    assert!(cfg.config.gate("EventedPLEG"));
    assert_eq!(
        cfg.unsupported(),
        [
            "feature gates not acted on by this kubelet (it behaves as with their defaults): \
          EventedPLEG=true"
        ]
    );

    let err = resolve_args(&["kubelet", "--feature-gates=NoSuchGate=true"]).expect_err("unknown");
    assert!(
        format!("{err:#}").contains("unrecognized feature gate: NoSuchGate"),
        "{err:#}"
    );
    let err = resolve_args(&["kubelet", "--feature-gates=NodeSwap=false"]).expect_err("locked");
    assert!(
        format!("{err:#}")
            .contains("cannot set feature gate NodeSwap to false, feature is locked to true"),
        "{err:#}"
    );
    let err = resolve_args(&["kubelet", "--feature-gates=EventedPLEG=maybe"]).expect_err("bool");
    assert!(
        format!("{err:#}").contains("invalid value of EventedPLEG: maybe"),
        "{err:#}"
    );
}

#[test]
fn tls_flags_are_checked_at_start() {
    let cfg = resolve_args(&[
        "kubelet",
        "--tls-min-version=VersionTLS13",
        "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256",
    ])
    .expect("config");
    assert_eq!(cfg.config.tls_min_version, "VersionTLS13");
    assert_eq!(cfg.config.tls_cipher_suites.len(), 2);
    let err = resolve_args(&["kubelet", "--tls-cipher-suites=TLS_RSA_WITH_RC4_128_SHA"])
        .expect_err("not offered");
    assert!(
        format!("{err:#}").contains("tlsCipherSuites (--tls-cipher-suites): cipher suite TLS_RSA_WITH_RC4_128_SHA is not offered"),
        "{err:#}"
    );
    let err = resolve_args(&["kubelet", "--tls-min-version=VersionTLS14"]).expect_err("unknown");
    assert!(
        format!("{err:#}").contains("unknown tls version"),
        "{err:#}"
    );
}

#[test]
fn upstreams_other_flags_set_their_fields() {
    let cfg = resolve_args(&[
        "kubelet",
        "--event-qps=7",
        "--serialize-image-pulls=false",
        "--image-gc-high-threshold",
        "90",
        "--cloud-provider=external",
        "--hairpin-mode=hairpin-veth",
    ])
    .expect("config");
    assert_eq!(cfg.config.event_record_qps, Some(7));
    assert_eq!(cfg.config.serialize_image_pulls, Some(false));
    assert_eq!(cfg.config.image_gc_high_threshold_percent, Some(90));
    let unsupported = cfg.unsupported();
    assert!(
        unsupported
            .iter()
            .any(|n| n.starts_with("hairpinMode is not supported yet")),
        "{unsupported:?}"
    );
    assert!(
        !unsupported.iter().any(|n| n.starts_with("eventRecordQPS")),
        "{unsupported:?}"
    );
    let err = resolve_args(&["kubelet", "--image-gc-high-threshold=lots"]).expect_err("refused");
    assert!(
        format!("{err:#}").contains("--image-gc-high-threshold"),
        "{err:#}"
    );
}
