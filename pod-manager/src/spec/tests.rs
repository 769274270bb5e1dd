//! Snapshot tests of the translation: a pod in (as the JSON a user writes), the runtime
//! configuration out, compared with [`check`] against the expected rendering.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::ByteString;
use kubelet_core::{DnsConfig, LinuxResources, NodeResources, SeLinuxOptions, SecurityProfile};
use serde_json::json;

use super::*;

/// Compares the pretty `Debug` rendering of `actual` with `expected` (indentation of the
/// expected text is ignored, so snapshots can sit indented in the test).
#[track_caller]
fn check(actual: impl Debug, expected: &str) {
    let actual = format!("{actual:#?}");
    let expected = unindent(expected);
    if actual.trim() != expected.trim() {
        panic!("snapshot mismatch\n--- actual ---\n{actual}\n--- expected ---\n{expected}");
    }
}

fn unindent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or(l.trim_start()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("pod JSON")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("IP literal")
}

fn ctx() -> NodeContext {
    NodeContext {
        node_name: "node-1".into(),
        host_ips: vec![
            ip("192.168.0.10"),
            ip("192.168.0.11"),
            ip("fd00::10"),
            ip("fd00::11"),
        ],
        pod_logs_root: "/var/log/pods".into(),
        container_logs_dir: "/var/log/containers".into(),
        pods_dir: "/var/lib/kubelet/pods".into(),
        cluster_dns: vec![ip("10.96.0.10")],
        cluster_domain: "cluster.local".into(),
        host_resolv_conf: "nameserver 192.168.0.1\nsearch corp.example\noptions edns0\n".into(),
        allocatable: NodeResources {
            milli_cpu: 3500,
            memory: 8 << 30,
            ephemeral_storage: 100 << 30,
            pids: 0,
        },
        capacity: NodeResources {
            memory: 10_000_000_000,
            ..NodeResources::default()
        },
        resolv_conf_disabled: false,
        thermal_throttle_paths: vec!["/sys/devices/system/cpu/cpu0/thermal_throttle".into()],
        pod_cgroups: None,
        cgroup_driver: kubelet_core::CgroupDriver::Cgroupfs,
        user_namespaces: crate::userns::UserNamespaces::default(),
        security: NodeSecurity {
            seccomp_profile_root: "/var/lib/kubelet/seccomp".into(),
            ..NodeSecurity::default()
        },
        pressure: Default::default(),
        container_gc: Default::default(),
        allocations: Default::default(),
    }
}

/// ConfigMaps and Secrets keyed by `namespace/name`, and the services of all
/// namespaces (`None`: standalone).
#[derive(Default)]
struct Objects {
    config_maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    services: Option<Vec<Service>>,
}

impl Objects {
    fn standard() -> Self {
        let mut objects = Self::default();
        objects.config_maps.insert(
            "shop/settings".into(),
            ConfigMap {
                data: Some(
                    [("mode", "prod"), ("level", "debug")]
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .into(),
                ),
                ..Default::default()
            },
        );
        objects.secrets.insert(
            "shop/creds".into(),
            Secret {
                data: Some(
                    [("user", "admin"), ("password", "s3cret")]
                        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
                        .into(),
                ),
                ..Default::default()
            },
        );
        objects
    }
}

impl Objects {
    /// What the pod's environment reads of these objects.
    fn read(&self, pod: &Pod) -> PodObjects {
        futures::executor::block_on(PodObjects::read(pod, self))
    }
}

#[async_trait::async_trait]
impl ObjectSource for Objects {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<Option<ConfigMap>> {
        Ok(self
            .config_maps
            .get(&format!("{namespace}/{name}"))
            .cloned())
    }
    async fn secret(&self, namespace: &str, name: &str) -> kubelet_core::Result<Option<Secret>> {
        Ok(self.secrets.get(&format!("{namespace}/{name}")).cloned())
    }
}

impl EnvObjects for Objects {
    fn services(&self) -> Option<Vec<Service>> {
        self.services.clone()
    }
}

fn pod_ips() -> Vec<String> {
    vec!["fd00:244::5".into(), "10.244.1.5".into()]
}

fn meta() -> serde_json::Value {
    json!({"name": "web-0", "namespace": "shop", "uid": "u-123"})
}

/// A pod on the pod network with one container of the given spec.
fn pod_with(container: serde_json::Value) -> Pod {
    pod(json!({
        "metadata": meta(),
        "spec": {"nodeName": "node-1", "containers": [container]},
    }))
}

fn first_container(pod: &Pod) -> Container {
    pod_spec(pod).containers[0].clone()
}

fn container_config_of(pod: &Pod) -> Result<ContainerConfig> {
    container_config(
        pod,
        &first_container(pod),
        0,
        &pod_ips(),
        &ctx(),
        &Objects::standard().read(pod),
        Vec::new(),
    )
}

/// The environment of the pod's first container before its network is up, with no API
/// objects (standalone).
fn env_without_ips_or_objects(pod: &Pod) -> Result<Vec<(String, String)>> {
    container_env(
        pod,
        &first_container(pod),
        &[],
        &ctx(),
        &PodObjects::default(),
    )
}

fn env_of(container: serde_json::Value) -> Result<Vec<(String, String)>> {
    let pod = pod_with(container);
    container_env(
        &pod,
        &first_container(&pod),
        &pod_ips(),
        &ctx(),
        &Objects::standard().read(&pod),
    )
}

fn env_value(container: serde_json::Value, name: &str) -> String {
    let env = env_of(container).expect("environment");
    env.into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{name} not set"))
}

fn reason(error: Error) -> String {
    match error {
        Error::Spec { reason, .. } => reason,
        Error::InvalidPod { field, reason, .. } => format!("{field}: {reason}"),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn sandbox_of_a_burstable_pod() {
    let pod = pod(json!({
        "metadata": {
            "name": "web-0", "namespace": "shop", "uid": "u-123",
            "labels": {"app": "web"},
            "annotations": {"kubernetes.io/config.source": "api", "note": "n"},
        },
        "spec": {
            "hostname": "web-0",
            "subdomain": "web",
            "dnsPolicy": "ClusterFirst",
            "dnsConfig": {
                "nameservers": ["1.1.1.1", "10.96.0.10"],
                "searches": ["extra.example", "cluster.local"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            },
            "securityContext": {
                "runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
                "supplementalGroups": [4000, 4001],
                "seLinuxOptions": {"level": "s0:c1,c2"},
                "sysctls": [
                    {"name": "net/ipv4/ip_local_port_range", "value": "1024 65000"},
                    {"name": "kernel.shm_rmid_forced", "value": "1"},
                ],
            },
            "initContainers": [
                {"name": "setup", "image": "busybox", "securityContext": {"privileged": true}},
            ],
            "containers": [
                {
                    "name": "app", "image": "nginx",
                    "ports": [
                        {"name": "http", "containerPort": 80, "protocol": "TCP"},
                        {"name": "http", "containerPort": 8080},
                        {"containerPort": 53, "protocol": "UDP", "hostPort": 5353, "hostIP": "::1"},
                        {"containerPort": 53, "protocol": "UDP", "hostPort": 5353, "hostIP": "::1"},
                        {"containerPort": 53, "protocol": "UDP", "hostPort": 5353, "hostIP": "127.0.0.1"},
                        {"containerPort": 9000, "protocol": "SCTP"},
                    ],
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "64Mi"},
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                    },
                },
                {"name": "sidecar", "image": "busybox", "ports": [{"name": "http", "containerPort": 81}]},
            ],
        },
    }));
    check(
        sandbox_config(&pod, 2, "", &ctx()).expect("sandbox config"),
        r#"
        SandboxConfig {
            metadata: SandboxMetadata {
                name: "web-0",
                namespace: "shop",
                uid: "u-123",
                attempt: 2,
            },
            hostname: "web-0",
            log_directory: "/var/log/pods/shop_web-0_u-123",
            dns: Some(
                DnsConfig {
                    servers: [
                        "10.96.0.10",
                        "1.1.1.1",
                    ],
                    searches: [
                        "shop.svc.cluster.local",
                        "svc.cluster.local",
                        "cluster.local",
                        "corp.example",
                        "extra.example",
                    ],
                    options: [
                        "ndots:2",
                        "edns0",
                    ],
                },
            ),
            port_mappings: [
                PortMapping {
                    protocol: Tcp,
                    container_port: 80,
                    host_port: 0,
                    host_ip: "",
                },
                PortMapping {
                    protocol: Udp,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "::1",
                },
                PortMapping {
                    protocol: Udp,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1",
                },
                PortMapping {
                    protocol: Sctp,
                    container_port: 9000,
                    host_port: 0,
                    host_ip: "",
                },
                PortMapping {
                    protocol: Tcp,
                    container_port: 81,
                    host_port: 0,
                    host_ip: "",
                },
            ],
            labels: {
                "app": "web",
                "io.kubernetes.pod.name": "web-0",
                "io.kubernetes.pod.namespace": "shop",
                "io.kubernetes.pod.uid": "u-123",
            },
            annotations: {
                "kubernetes.io/config.source": "api",
                "note": "n",
            },
            linux: LinuxSandboxConfig {
                cgroup_parent: "/kubepods/burstable/podu-123",
                namespaces: NamespaceOptions {
                    host_network: false,
                    host_pid: false,
                    host_ipc: false,
                    share_process_namespace: false,
                    user_namespace: None,
                },
                run_as_user: Some(
                    1000,
                ),
                run_as_group: Some(
                    3000,
                ),
                supplemental_groups: [
                    2000,
                    4000,
                    4001,
                ],
                privileged: true,
                readonly_rootfs: false,
                sysctls: {
                    "kernel.shm_rmid_forced": "1",
                    "net.ipv4.ip_local_port_range": "1024 65000",
                },
                seccomp: Some(
                    RuntimeDefault,
                ),
                selinux: Some(
                    SeLinuxOptions {
                        user: "",
                        role: "",
                        type_: "",
                        level: "s0:c1,c2",
                    },
                ),
            },
            runtime_handler: "",
        }
        "#,
    );
}

#[test]
fn sandbox_of_a_host_network_pod() {
    let pod = pod(json!({
        "metadata": meta(),
        "spec": {
            "hostNetwork": true,
            "hostPID": true,
            "hostIPC": true,
            "hostname": "ignored",
            "dnsPolicy": "ClusterFirst",
            "containers": [{
                "name": "app", "image": "nginx",
                "resources": {
                    "requests": {"cpu": "1", "memory": "1Gi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
            }],
        },
    }));
    check(
        sandbox_config(&pod, 0, "", &ctx()).expect("sandbox config"),
        r#"
        SandboxConfig {
            metadata: SandboxMetadata {
                name: "web-0",
                namespace: "shop",
                uid: "u-123",
                attempt: 0,
            },
            hostname: "",
            log_directory: "/var/log/pods/shop_web-0_u-123",
            dns: Some(
                DnsConfig {
                    servers: [
                        "192.168.0.1",
                    ],
                    searches: [
                        "corp.example",
                    ],
                    options: [
                        "edns0",
                    ],
                },
            ),
            port_mappings: [],
            labels: {
                "io.kubernetes.pod.name": "web-0",
                "io.kubernetes.pod.namespace": "shop",
                "io.kubernetes.pod.uid": "u-123",
            },
            annotations: {},
            linux: LinuxSandboxConfig {
                cgroup_parent: "/kubepods/podu-123",
                namespaces: NamespaceOptions {
                    host_network: true,
                    host_pid: true,
                    host_ipc: true,
                    share_process_namespace: false,
                    user_namespace: None,
                },
                run_as_user: None,
                run_as_group: None,
                supplemental_groups: [],
                privileged: false,
                readonly_rootfs: false,
                sysctls: {},
                seccomp: Some(
                    RuntimeDefault,
                ),
                selinux: None,
            },
            runtime_handler: "",
        }
        "#,
    );
}

#[test]
fn cgroup_parent_follows_the_qos_class() {
    let cases = [
        (json!({}), "/kubepods/besteffort/podu-123"),
        (
            json!({"requests": {"cpu": "100m"}}),
            "/kubepods/burstable/podu-123",
        ),
        (
            json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}),
            "/kubepods/podu-123",
        ),
    ];
    for (resources, expected) in cases {
        let pod = pod_with(json!({"name": "c", "image": "i", "resources": resources}));
        let config = sandbox_config(&pod, 0, "", &ctx()).expect("sandbox config");
        assert_eq!(config.linux.cgroup_parent, expected, "{resources}");
    }
}

#[test]
fn cgroup_parent_is_a_slice_with_the_systemd_driver() {
    let systemd = NodeContext {
        cgroup_driver: kubelet_core::CgroupDriver::Systemd,
        ..ctx()
    };
    let pod =
        pod_with(json!({"name": "c", "image": "i", "resources": {"requests": {"cpu": "100m"}}}));
    let config = sandbox_config(&pod, 0, "", &systemd).expect("sandbox config");
    assert_eq!(
        config.linux.cgroup_parent,
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu_123.slice"
    );
}

#[test]
fn container_of_a_burstable_pod() {
    let pod = pod(json!({
        "metadata": meta(),
        "spec": {
            "nodeName": "node-1",
            "terminationGracePeriodSeconds": 30,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true, "fsGroup": 2000},
            "containers": [{
                "name": "app",
                "image": "registry.example/app:1.0",
                "command": ["/bin/sh", "-c"],
                "args": ["echo $(GREETING) $$(GREETING) $(MISSING) $(POD_IP)"],
                "workingDir": "/srv",
                "envFrom": [
                    {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "creds"}},
                ],
                "env": [
                    {"name": "GREETING", "value": "hello $(CFG_mode)"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                    {"name": "MEM_REQUEST", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}},
                    {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x", "optional": true}}},
                    {"name": "user", "value": "overridden"},
                ],
                "stdin": true,
                "tty": true,
                "securityContext": {
                    "runAsUser": 2000,
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                },
                "resources": {
                    "requests": {"cpu": "250m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            }],
        },
    }));
    let mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: "/var/lib/kubelet/pods/u-123/volumes/data".into(),
        ..Default::default()
    }];
    let config = container_config(
        &pod,
        &first_container(&pod),
        3,
        &pod_ips(),
        &ctx(),
        &Objects::standard().read(&pod),
        mounts,
    )
    .expect("container config");
    check(
        config,
        r#"
        ContainerConfig {
            metadata: ContainerMetadata {
                name: "app",
                attempt: 3,
            },
            image: "registry.example/app:1.0",
            user_specified_image: "registry.example/app:1.0",
            command: [
                "/bin/sh",
                "-c",
            ],
            args: [
                "echo hello prod $(GREETING) $(MISSING) 10.244.1.5",
            ],
            working_dir: "/srv",
            envs: [
                (
                    "CFG_level",
                    "debug",
                ),
                (
                    "CFG_mode",
                    "prod",
                ),
                (
                    "password",
                    "s3cret",
                ),
                (
                    "user",
                    "overridden",
                ),
                (
                    "GREETING",
                    "hello prod",
                ),
                (
                    "POD_NAME",
                    "web-0",
                ),
                (
                    "POD_IP",
                    "10.244.1.5",
                ),
                (
                    "NODE",
                    "node-1",
                ),
                (
                    "CPU_LIMIT",
                    "500",
                ),
                (
                    "MEM_REQUEST",
                    "64",
                ),
                (
                    "LEVEL",
                    "debug",
                ),
                (
                    "PASSWORD",
                    "s3cret",
                ),
            ],
            mounts: [
                Mount {
                    container_path: "/data",
                    host_path: "/var/lib/kubelet/pods/u-123/volumes/data",
                    readonly: false,
                    selinux_relabel: false,
                    propagation: Private,
                },
            ],
            devices: [],
            cdi_devices: [],
            labels: {
                "io.kubernetes.container.name": "app",
                "io.kubernetes.pod.name": "web-0",
                "io.kubernetes.pod.namespace": "shop",
                "io.kubernetes.pod.uid": "u-123",
            },
            annotations: {
                "io.kubernetes.container.hash": "HASH",
                "io.kubernetes.container.restartCount": "3",
                "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                "io.kubernetes.container.terminationMessagePolicy": "File",
                "io.kubernetes.pod.terminationGracePeriod": "30",
            },
            log_path: "app/3.log",
            stdin: true,
            stdin_once: false,
            tty: true,
            resources: Some(
                LinuxResources {
                    cpu_period: 100000,
                    cpu_quota: 50000,
                    cpu_shares: 256,
                    memory_limit_in_bytes: 134217728,
                    oom_score_adj: 994,
                    cpuset_cpus: "",
                    cpuset_mems: "",
                },
            ),
            security: ContainerSecurity {
                capabilities: Capabilities {
                    add: [
                        "NET_ADMIN",
                    ],
                    drop: [
                        "ALL",
                    ],
                },
                privileged: false,
                namespaces: ContainerNamespaces {
                    pod: NamespaceOptions {
                        host_network: false,
                        host_pid: false,
                        host_ipc: false,
                        share_process_namespace: false,
                        user_namespace: None,
                    },
                    pid_target: None,
                },
                run_as_user: Some(
                    2000,
                ),
                run_as_group: Some(
                    3000,
                ),
                run_as_username: "",
                readonly_rootfs: true,
                supplemental_groups: [
                    2000,
                ],
                no_new_privs: true,
                masked_paths: [
                    "/proc/asound",
                    "/proc/acpi",
                    "/proc/interrupts",
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/latency_stats",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/proc/sched_debug",
                    "/proc/scsi",
                    "/sys/firmware",
                    "/sys/devices/virtual/powercap",
                    "/sys/devices/system/cpu/cpu0/thermal_throttle",
                ],
                readonly_paths: [
                    "/proc/bus",
                    "/proc/fs",
                    "/proc/irq",
                    "/proc/sys",
                    "/proc/sysrq-trigger",
                ],
                seccomp: Some(
                    Unconfined,
                ),
                apparmor: None,
                selinux: None,
            },
        }
        "#
        .replace(
            "HASH",
            &format!("{:x}", labels::container_hash(&first_container(&pod))),
        )
        .as_str(),
    );
}

#[test]
fn env_values_reference_earlier_variables_only() {
    let env = env_of(json!({
        "name": "c", "image": "i",
        "env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-$(C)-$$(A)"},
            {"name": "C", "value": "c"},
            {"name": "A", "value": "again-$(A)"},
            {"name": "EMPTY"},
        ],
    }))
    .expect("environment");
    assert_eq!(
        env,
        [
            ("A".to_owned(), "again-a".to_owned()),
            ("B".to_owned(), "a-$(C)-$(A)".to_owned()),
            ("C".to_owned(), "c".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]
    );
}

#[test]
fn env_field_refs() {
    let pod = pod(json!({
        "metadata": {
            "name": "web-0", "namespace": "shop", "uid": "u-123",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"Example.com/Note": "say \"hi\""},
        },
        "spec": {
            "nodeName": "node-1",
            "serviceAccountName": "robot",
            "containers": [{"name": "c", "image": "i"}],
        },
    }));
    let cases = [
        ("metadata.name", "web-0"),
        ("metadata.namespace", "shop"),
        ("metadata.uid", "u-123"),
        ("metadata.labels['app']", "web"),
        ("metadata.labels['missing']", ""),
        ("metadata.labels", "app=\"web\"\ntier=\"front\""),
        ("metadata.annotations['Example.com/Note']", "say \"hi\""),
        (
            "metadata.annotations",
            "Example.com/Note=\"say \\\"hi\\\"\"",
        ),
        ("spec.nodeName", "node-1"),
        ("spec.host", "node-1"),
        ("spec.serviceAccountName", "robot"),
        ("status.hostIP", "192.168.0.10"),
        ("status.hostIPs", "192.168.0.10,fd00::10"),
        ("status.podIP", "10.244.1.5"),
        ("status.podIPs", "10.244.1.5,fd00:244::5"),
    ];
    for (path, expected) in cases {
        let mut container = first_container(&pod);
        container.env = Some(vec![
            serde_json::from_value(json!({
                "name": "V", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}},
            }))
            .expect("env var"),
        ]);
        let env = container_env(&pod, &container, &pod_ips(), &ctx(), &PodObjects::default())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(env, [("V".to_owned(), expected.to_owned())], "{path}");
    }
}

#[test]
fn env_field_ref_errors_are_upstream_messages() {
    let cases = [
        (
            "spec.restartPolicy",
            "unsupported fieldPath: spec.restartPolicy",
        ),
        ("status.phase", "unsupported fieldPath: status.phase"),
        (
            "spec.containers",
            "field label not supported: spec.containers",
        ),
        (
            "spec.nodeName['x']",
            "field label does not support subscript: spec.nodeName['x']",
        ),
    ];
    for (path, expected) in cases {
        let error = env_of(json!({
            "name": "c", "image": "i",
            "env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}],
        }))
        .expect_err(path);
        assert_eq!(reason(error), expected);
    }
    let error = env_of(json!({
        "name": "c", "image": "i",
        "env": [{"name": "V", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}}],
    }))
    .expect_err("v2");
    assert_eq!(reason(error), "unsupported pod version: v2");
    let error = env_of(json!({
        "name": "c", "image": "i",
        "env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a b']"}}}],
    }))
    .expect_err("bad key");
    assert!(
        reason(error).starts_with("invalid key subscript in metadata.labels['a b']: name part"),
    );

    // Without node IPs, status.hostIP cannot be answered.
    let pod = pod_with(json!({
        "name": "c", "image": "i",
        "env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
    }));
    let mut no_ips = ctx();
    no_ips.host_ips.clear();
    let error = container_env(
        &pod,
        &first_container(&pod),
        &[],
        &no_ips,
        &PodObjects::default(),
    )
    .expect_err("no host IP");
    assert_eq!(reason(error), "host IP unknown; known addresses: []");
}

#[test]
fn env_pod_ips_before_the_network_is_up() {
    let pod = pod_with(json!({
        "name": "c", "image": "i",
        "env": [
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
        ],
    }));
    let env = env_without_ips_or_objects(&pod).expect("environment");
    assert_eq!(
        env,
        [
            ("IP".to_owned(), String::new()),
            ("IPS".to_owned(), String::new())
        ]
    );
}

#[test]
fn env_resource_field_refs_round_up_and_default_to_allocatable() {
    let resources = json!({
        "requests": {"cpu": "250m", "memory": "100M", "ephemeral-storage": "1Gi", "hugepages-2Mi": "4Mi"},
        "limits": {"memory": "1Gi", "hugepages-2Mi": "4Mi"},
    });
    let cases = [
        ("requests.cpu", None, "1"),
        ("requests.cpu", Some("1m"), "250"),
        ("requests.cpu", Some("100m"), "3"),
        ("requests.cpu", Some("0"), "1"),
        // No CPU limit: node allocatable (3500m).
        ("limits.cpu", None, "4"),
        ("limits.cpu", Some("1m"), "3500"),
        ("requests.memory", None, "100000000"),
        ("requests.memory", Some("1Mi"), "96"),
        ("limits.memory", Some("1Mi"), "1024"),
        ("limits.memory", Some("1Gi"), "1"),
        ("requests.ephemeral-storage", Some("1Mi"), "1024"),
        // No ephemeral-storage limit: node allocatable (100Gi).
        ("limits.ephemeral-storage", Some("1Gi"), "100"),
        ("requests.hugepages-2Mi", Some("2Mi"), "2"),
        ("limits.hugepages-2Mi", None, "4194304"),
        ("limits.hugepages-1Gi", None, "0"),
    ];
    for (resource, divisor, expected) in cases {
        let mut selector = json!({"resource": resource});
        if let Some(divisor) = divisor {
            selector["divisor"] = json!(divisor);
        }
        let value = env_value(
            json!({
                "name": "c", "image": "i", "resources": resources,
                "env": [{"name": "V", "valueFrom": {"resourceFieldRef": selector}}],
            }),
            "V",
        );
        assert_eq!(value, expected, "{resource} / {divisor:?}");
    }

    let error = env_of(json!({
        "name": "c", "image": "i",
        "env": [{"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}],
    }))
    .expect_err("unsupported resource");
    assert_eq!(reason(error), "unsupported container resource : limits.gpu");
}

#[test]
fn env_resource_field_refs_of_other_containers() {
    let pod = pod(json!({
        "metadata": meta(),
        "spec": {
            "initContainers": [{"name": "init", "image": "i", "resources": {"requests": {"cpu": "1"}}}],
            "containers": [
                {
                    "name": "app", "image": "i",
                    "env": [
                        {"name": "SIDE", "valueFrom": {"resourceFieldRef": {"containerName": "side", "resource": "limits.cpu", "divisor": "1m"}}},
                        {"name": "INIT", "valueFrom": {"resourceFieldRef": {"containerName": "init", "resource": "limits.cpu", "divisor": "1m"}}},
                    ],
                },
                {"name": "side", "image": "i", "resources": {"limits": {"cpu": "0"}}},
            ],
        },
    }));
    let env = env_without_ips_or_objects(&pod).expect("environment");
    // Regular containers get the allocatable for a missing or zero limit; init
    // containers referenced by name do not, as upstream.
    assert_eq!(
        env,
        [
            ("SIDE".to_owned(), "3500".to_owned()),
            ("INIT".to_owned(), "0".to_owned())
        ]
    );

    let mut container = first_container(&pod);
    container.env =
        Some(vec![serde_json::from_value(json!({
        "name": "V",
        "valueFrom": {"resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}},
    }))
    .expect("env var")]);
    let error =
        container_env(&pod, &container, &[], &ctx(), &PodObjects::default()).expect_err("nope");
    assert_eq!(reason(error), "container nope not found");
}

#[test]
fn env_resource_field_refs_use_pod_level_limits() {
    let pod = pod(json!({
        "metadata": meta(),
        "spec": {
            "resources": {"limits": {"cpu": "2", "memory": "2Gi"}},
            "containers": [{
                "name": "app", "image": "i",
                "env": [
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Gi"}}},
                    {"name": "DISK", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage", "divisor": "1Gi"}}},
                ],
            }],
        },
    }));
    let env = env_without_ips_or_objects(&pod).expect("environment");
    assert_eq!(
        env,
        [
            ("CPU".to_owned(), "2".to_owned()),
            ("MEM".to_owned(), "2".to_owned()),
            ("DISK".to_owned(), "100".to_owned()),
        ]
    );
}

#[test]
fn env_objects_missing_and_optional() {
    let ok = |container: serde_json::Value| env_of(container).expect("environment");
    let fails = |container: serde_json::Value| reason(env_of(container).expect_err("an error"));

    assert_eq!(
        fails(
            json!({"name": "c", "image": "i", "envFrom": [{"configMapRef": {"name": "absent"}}]})
        ),
        "couldn't get configMap shop/absent: not found"
    );
    assert_eq!(
        fails(json!({"name": "c", "image": "i", "envFrom": [{"secretRef": {"name": "absent"}}]})),
        "couldn't get secret shop/absent: not found"
    );
    assert_eq!(
        ok(json!({"name": "c", "image": "i", "envFrom": [
            {"configMapRef": {"name": "absent", "optional": true}},
            {"secretRef": {"name": "absent", "optional": true}},
        ]})),
        []
    );
    assert_eq!(
        fails(json!({"name": "c", "image": "i", "env": [
            {"name": "V", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}},
        ]})),
        "couldn't find key nope in ConfigMap shop/settings"
    );
    assert_eq!(
        fails(json!({"name": "c", "image": "i", "env": [
            {"name": "V", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}},
        ]})),
        "couldn't find key nope in Secret shop/creds"
    );
    assert_eq!(
        fails(json!({"name": "c", "image": "i", "env": [
            {"name": "V", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}},
        ]})),
        "couldn't get secret shop/absent: not found"
    );
    // Optional references to a missing object or key leave the variable unset.
    assert_eq!(
        ok(json!({"name": "c", "image": "i", "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope", "optional": true}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": true}}},
            {"name": "C", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope", "optional": true}}},
        ]})),
        []
    );
    // The error names the pod and the container.
    let error = env_of(
        json!({"name": "c", "image": "i", "envFrom": [{"configMapRef": {"name": "absent"}}]}),
    )
    .expect_err("missing");
    assert_eq!(
        error.to_string(),
        "pod shop/web-0 container \"c\": couldn't get configMap shop/absent: not found"
    );
}

#[test]
fn env_from_is_overridden_by_env() {
    let env = env_of(json!({
        "name": "c", "image": "i",
        "envFrom": [
            {"configMapRef": {"name": "settings"}},
            {"secretRef": {"name": "creds"}, "prefix": "mode"},
        ],
        "env": [{"name": "mode", "value": "test"}],
    }))
    .expect("environment");
    assert_eq!(
        env,
        [
            ("level".to_owned(), "debug".to_owned()),
            ("mode".to_owned(), "test".to_owned()),
            ("modepassword".to_owned(), "s3cret".to_owned()),
            ("modeuser".to_owned(), "admin".to_owned()),
        ]
    );
}

#[test]
fn command_and_args_expand_against_the_final_environment() {
    let pod = pod_with(json!({
        "name": "c", "image": "i",
        "command": ["run", "$(LATER)", "$$(LATER)", "$(UNSET)"],
        "args": ["$(A)$(A)", "${A}"],
        "env": [{"name": "A", "value": "a"}, {"name": "LATER", "value": "late"}],
    }));
    let config = container_config_of(&pod).expect("container config");
    assert_eq!(config.command, ["run", "late", "$(LATER)", "$(UNSET)"]);
    assert_eq!(config.args, ["aa", "${A}"]);
}

#[test]
fn container_without_anything_set() {
    let pod = pod_with(json!({"name": "c", "image": "i"}));
    let config = container_config_of(&pod).expect("container config");
    assert!(config.command.is_empty() && config.args.is_empty() && config.envs.is_empty());
    assert_eq!(config.log_path, "c/0.log");
    assert_eq!(
        config.resources,
        Some(LinuxResources {
            cpu_period: 100_000,
            cpu_quota: 0,
            cpu_shares: 2,
            memory_limit_in_bytes: 0,
            oom_score_adj: 1000,
            ..Default::default()
        })
    );
    assert_eq!(config.security.run_as_user, None);
    assert!(!config.security.no_new_privs);
    assert_eq!(config.security.masked_paths.len(), 13);
}

#[test]
fn resources_follow_upstream() {
    let resources = |value: serde_json::Value| {
        let pod = pod_with(json!({"name": "c", "image": "i", "resources": value}));
        container_config_of(&pod)
            .expect("container config")
            .resources
            .expect("resources")
    };
    // A limit without a request: the request defaults to the limit.
    let r = resources(json!({"limits": {"cpu": "1500m", "memory": "1Gi"}}));
    assert_eq!(
        (
            r.cpu_shares,
            r.cpu_quota,
            r.cpu_period,
            r.memory_limit_in_bytes
        ),
        (1536, 150_000, 100_000, 1 << 30)
    );
    // An explicit request wins, even a zero one.
    let r = resources(json!({"requests": {"cpu": "0"}, "limits": {"cpu": "1"}}));
    assert_eq!((r.cpu_shares, r.cpu_quota), (2, 100_000));
    // Tiny values hit the kernel minimums; fractions round up.
    let r = resources(json!({"requests": {"cpu": "1m"}, "limits": {"cpu": "1m", "memory": "0.5"}}));
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
        (2, 1000, 1)
    );
    // Huge requests are capped.
    let r = resources(json!({"requests": {"cpu": "1000"}}));
    assert_eq!((r.cpu_shares, r.cpu_quota), (262_144, 0));

    // Pod-level limits stand in for missing container limits.
    let pod = pod(json!({
        "metadata": meta(),
        "spec": {
            "resources": {"limits": {"cpu": "2", "memory": "2Gi"}},
            "containers": [{"name": "c", "image": "i", "resources": {"limits": {"memory": "1Gi"}}}],
        },
    }));
    let r = container_config_of(&pod)
        .expect("container config")
        .resources
        .expect("resources");
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
        (2048, 200_000, 1 << 30)
    );

    // A quantity that does not parse names the field.
    let pod =
        pod_with(json!({"name": "c", "image": "i", "resources": {"limits": {"cpu": "lots"}}}));
    let error = container_config_of(&pod).expect_err("invalid quantity");
    assert_eq!(
        reason(error),
        "spec.containers[0].resources.limits[cpu]: quantity \"lots\": quantities must match \
         the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );
}

fn burstable(memory_request: &str) -> serde_json::Value {
    json!({
        "name": "c", "image": "i",
        "resources": {"requests": {"memory": memory_request}, "limits": {"memory": "8Gi"}},
    })
}

#[test]
fn oom_score_adj_follows_upstream_policy() {
    let capacity = 10_000_000_000;
    let score = |pod: &Pod, container: &Container| {
        oom_score_adj(pod, container, capacity).expect("oom_score_adj")
    };
    let of = |container: serde_json::Value| {
        let pod = pod_with(container);
        score(&pod, &first_container(&pod))
    };

    assert_eq!(of(json!({"name": "c", "image": "i"})), 1000);
    assert_eq!(
        of(json!({"name": "c", "image": "i", "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"},
        }})),
        -997
    );
    // 1000 - 1000 * 2.5e9 / 1e10 = 750.
    assert_eq!(of(burstable("2.5G")), 750);
    // Integer division as upstream: 1000 - 1000 * 1 / 1e10 = 1000, then 999.
    assert_eq!(of(burstable("1")), 999);
    // No memory request at all: 1000, then 999.
    assert_eq!(
        of(json!({"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}})),
        999
    );
    // Requests near capacity stay above Guaranteed's: at least 3.
    assert_eq!(of(burstable("9999999999")), 3);
    assert_eq!(of(burstable("20G")), 3);

    // A node-critical static pod scores as Guaranteed whatever its class.
    let critical = pod(json!({
        "metadata": {
            "name": "etcd", "namespace": "kube-system", "uid": "u",
            "annotations": {"kubernetes.io/config.source": "file"},
        },
        "spec": {"priorityClassName": "system-node-critical", "containers": [burstable("1G")]},
    }));
    assert_eq!(score(&critical, &first_container(&critical)), -997);
    // Critical priority from the API server counts too, but only with that class name.
    let api_pod = |class: &str| {
        pod(json!({
            "metadata": meta(),
            "spec": {"priority": 2_000_001_000, "priorityClassName": class, "containers": [burstable("1G")]},
        }))
    };
    let p = api_pod("system-node-critical");
    assert_eq!(score(&p, &first_container(&p)), -997);
    let p = api_pod("system-cluster-critical");
    assert_eq!(score(&p, &first_container(&p)), 900);

    // Burstable needs the capacity.
    let p = pod_with(burstable("1G"));
    assert!(oom_score_adj(&p, &first_container(&p), 0).is_err());
    // The container config falls back to allocatable memory when capacity is unknown.
    let mut no_capacity = ctx();
    no_capacity.capacity.memory = 0;
    let config = container_config(
        &p,
        &first_container(&p),
        0,
        &[],
        &no_capacity,
        &PodObjects::default(),
        vec![],
    )
    .expect("container config");
    // 1000 - 1000 * 1e9 / 8Gi = 1000 - 116 = 884.
    assert_eq!(config.resources.map(|r| r.oom_score_adj), Some(884));
}

#[test]
fn oom_score_adj_of_sidecars_and_pod_level_requests() {
    let capacity = 10_000_000_000;
    let pod = pod(json!({
        "metadata": meta(),
        "spec": {
            "initContainers": [
                {"name": "sidecar", "image": "i", "restartPolicy": "Always",
                 "resources": {"requests": {"memory": "100M"}}},
                {"name": "init", "image": "i", "resources": {"requests": {"memory": "100M"}}},
            ],
            "containers": [burstable("2G"), {"name": "big", "image": "i", "resources": {"requests": {"memory": "5G"}}}],
        },
    }));
    let spec = pod_spec(&pod);
    let init = spec.init_containers.clone().unwrap_or_default();
    let score = |c: &Container| oom_score_adj(&pod, c, capacity).expect("oom_score_adj");
    // The sidecar scores no higher than the smallest regular container (2G → 800).
    assert_eq!(score(&init[0]), 800);
    // A plain init container is scored on its own request.
    assert_eq!(score(&init[1]), 990);
    assert_eq!(score(&spec.containers[1]), 500);

    // Pod-level memory requests not claimed by containers are shared out: 9.2G requested,
    // containers need max(2G + 5G + 0.1G sidecar, init peak) = 7.1G, so each of the 4
    // containers gets 0.525G more.
    let mut with_pod_level = pod.clone();
    if let Some(spec) = with_pod_level.spec.as_mut() {
        spec.resources = serde_json::from_value(json!({"requests": {"memory": "9.2G"}})).ok();
    }
    let spec = pod_spec(&with_pod_level);
    let score = |c: &Container| oom_score_adj(&with_pod_level, c, capacity).expect("oom_score_adj");
    // 1000 - 1000 * (2G + 0.525G) / 10G = 1000 - 252 (252.5 truncated) = 748.
    assert_eq!(score(&spec.containers[0]), 748);
}

#[test]
fn security_context_merges_pod_into_container() {
    let security = |pod_sc: serde_json::Value, container_sc: serde_json::Value| {
        let mut container = json!({"name": "c", "image": "i"});
        if !container_sc.is_null() {
            container["securityContext"] = container_sc;
        }
        let mut spec = json!({"containers": [container]});
        if !pod_sc.is_null() {
            spec["securityContext"] = pod_sc;
        }
        let pod = pod(json!({"metadata": meta(), "spec": spec}));
        container_config_of(&pod)
            .expect("container config")
            .security
    };

    let s = security(
        json!({"runAsUser": 1, "runAsGroup": 2}),
        json!({"runAsGroup": 3}),
    );
    assert_eq!((s.run_as_user, s.run_as_group), (Some(1), Some(3)));
    let s = security(
        serde_json::Value::Null,
        json!({"runAsUser": 7, "privileged": true}),
    );
    assert_eq!((s.run_as_user, s.privileged), (Some(7), true));
    let s = security(
        json!({"supplementalGroups": [5, 6], "fsGroup": 4}),
        serde_json::Value::Null,
    );
    assert_eq!(s.supplemental_groups, [4, 5, 6]);
    // allowPrivilegeEscalation: only an explicit false sets no_new_privs.
    assert!(!security(json!({}), json!({"allowPrivilegeEscalation": true})).no_new_privs);
    assert!(!security(json!({}), json!({})).no_new_privs);
    assert!(security(json!({}), json!({"allowPrivilegeEscalation": false})).no_new_privs);
    // procMount Unmasked clears masked and read-only paths; Default keeps them.
    let s = security(json!({}), json!({"procMount": "Unmasked"}));
    assert!(s.masked_paths.is_empty() && s.readonly_paths.is_empty());
    let s = security(json!({}), json!({"procMount": "Default"}));
    assert_eq!((s.masked_paths.len(), s.readonly_paths.len()), (13, 5));
}

#[test]
fn run_as_non_root_messages_are_upstream_messages() {
    let verify = |pod_sc: serde_json::Value,
                  container_sc: serde_json::Value,
                  uid: Option<i64>,
                  user: &str| {
        let pod = pod(json!({
            "metadata": meta(),
            "spec": {
                "securityContext": pod_sc,
                "containers": [{"name": "app", "image": "i", "securityContext": container_sc}],
            },
        }));
        verify_run_as_non_root(&pod, &first_container(&pod), uid, user).map_err(reason)
    };
    let non_root = json!({"runAsNonRoot": true});
    assert_eq!(verify(json!({}), json!({}), Some(0), ""), Ok(()));
    assert_eq!(verify(non_root.clone(), json!({}), Some(1000), ""), Ok(()));
    assert_eq!(
        verify(non_root.clone(), json!({"runAsUser": 5}), Some(0), ""),
        Ok(())
    );
    // The container can switch the check off.
    assert_eq!(
        verify(
            non_root.clone(),
            json!({"runAsNonRoot": false}),
            Some(0),
            ""
        ),
        Ok(())
    );
    assert_eq!(
        verify(non_root.clone(), json!({"runAsUser": 0}), Some(1000), ""),
        Err(
            "container's runAsUser breaks non-root policy (pod: \"web-0_shop(u-123)\", \
             container: app)"
                .to_owned()
        )
    );
    assert_eq!(
        verify(json!({"runAsUser": 0}), non_root.clone(), None, ""),
        Err(
            "container's runAsUser breaks non-root policy (pod: \"web-0_shop(u-123)\", \
             container: app)"
                .to_owned()
        )
    );
    assert_eq!(
        verify(non_root.clone(), json!({}), Some(0), ""),
        Err(
            "container has runAsNonRoot and image will run as root (pod: \
             \"web-0_shop(u-123)\", container: app)"
                .to_owned()
        )
    );
    assert_eq!(
        verify(non_root.clone(), json!({}), None, "nginx"),
        Err(
            "container has runAsNonRoot and image has non-numeric user (nginx), cannot \
             verify user is non-root (pod: \"web-0_shop(u-123)\", container: app)"
                .to_owned()
        )
    );
    assert_eq!(
        verify(non_root.clone(), json!({}), Some(-1), ""),
        Err(
            "container has runAsNonRoot and image has an invalid user id (-1). (Must be \
             1-(2147483647)): must be between 0 and 2147483647, inclusive (pod: \
             \"web-0_shop(u-123)\", container: app)"
                .to_owned()
        )
    );
    // An image without any user information passes, as upstream lets it.
    assert_eq!(verify(non_root, json!({}), None, ""), Ok(()));
}

fn dns(spec: serde_json::Value, ctx: &NodeContext) -> Result<DnsConfig> {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "i"}]);
    pod_dns_config(&pod(json!({"metadata": meta(), "spec": spec})), ctx)
}

fn dns_config(servers: &[&str], searches: &[&str], options: &[&str]) -> DnsConfig {
    let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
    DnsConfig {
        servers: owned(servers),
        searches: owned(searches),
        options: owned(options),
    }
}

#[test]
fn dns_per_policy() {
    let cluster = dns_config(
        &["10.96.0.10"],
        &[
            "shop.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.example",
        ],
        &["ndots:5"],
    );
    let host = dns_config(&["192.168.0.1"], &["corp.example"], &["edns0"]);
    let cases = [
        (json!({"dnsPolicy": "ClusterFirst"}), cluster.clone()),
        (
            json!({"dnsPolicy": "ClusterFirst", "hostNetwork": true}),
            host.clone(),
        ),
        (
            json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true}),
            cluster.clone(),
        ),
        (json!({"dnsPolicy": "Default"}), host.clone()),
        (json!({"dnsPolicy": "None"}), DnsConfig::default()),
        // An unknown or missing policy is treated as ClusterFirst, even on the host network.
        (
            json!({"dnsPolicy": "Bogus", "hostNetwork": true}),
            cluster.clone(),
        ),
        (json!({}), cluster),
        (
            json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.1.1.1", "1.1.1.1"],
                "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}],
            }}),
            dns_config(&["1.1.1.1"], &["a.example"], &["ndots:1", "edns0"]),
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(dns(spec.clone(), &ctx()).expect("dns"), expected, "{spec}");
    }
}

#[test]
fn dns_without_cluster_dns_or_resolv_conf() {
    // ClusterFirst without clusterDNS falls back to Default.
    let mut no_cluster_dns = ctx();
    no_cluster_dns.cluster_dns.clear();
    assert_eq!(
        dns(json!({"dnsPolicy": "ClusterFirst"}), &no_cluster_dns).expect("dns"),
        dns_config(&["192.168.0.1"], &["corp.example"], &["edns0"])
    );
    // No cluster domain: only the node's searches.
    let mut no_domain = ctx();
    no_domain.cluster_domain.clear();
    assert_eq!(
        dns(json!({"dnsPolicy": "ClusterFirst"}), &no_domain).expect("dns"),
        dns_config(&["10.96.0.10"], &["corp.example"], &["ndots:5"])
    );
    // resolvConf "": a localhost nameserver per node IP family and search ".".
    let mut disabled = ctx();
    disabled.resolv_conf_disabled = true;
    assert_eq!(
        dns(json!({"dnsPolicy": "Default"}), &disabled).expect("dns"),
        dns_config(&["127.0.0.1", "::1"], &["."], &[])
    );
    disabled.host_ips.clear();
    assert_eq!(
        dns(json!({"dnsPolicy": "Default"}), &disabled).expect("dns"),
        dns_config(&["127.0.0.1"], &["."], &[])
    );
    assert_eq!(
        dns(json!({"dnsPolicy": "ClusterFirst"}), &disabled).expect("dns"),
        dns_config(
            &["10.96.0.10"],
            &[
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ],
            &["ndots:5"]
        )
    );
    // A broken resolv.conf fails every policy.
    let mut broken = ctx();
    broken.host_resolv_conf = "nameserver\n".into();
    let error = dns(json!({"dnsPolicy": "None"}), &broken).expect_err("broken resolv.conf");
    assert_eq!(
        reason(error),
        "Encountered error while parsing resolv conf file. Error: nameserver list is empty "
    );
}

#[test]
fn dns_limits_as_upstream() {
    let names = |count: usize, len: usize| -> Vec<String> {
        (0..count)
            .map(|i| format!("{i:0>width$}", width = len))
            .collect()
    };
    // More than 3 nameservers: the first 3.
    let config = dns(
        json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}}),
        &ctx(),
    )
    .expect("dns");
    assert_eq!(config.servers, ["1.1.1.1", "2.2.2.2", "3.3.3.3"]);
    // More than 32 search paths: the first 32.
    let searches = names(40, 5);
    let config = dns(
        json!({"dnsPolicy": "None", "dnsConfig": {"searches": searches}}),
        &ctx(),
    )
    .expect("dns");
    assert_eq!(config.searches, searches[..32]);
    // Paths longer than 253 characters are dropped.
    let mut searches = names(3, 10);
    searches.insert(1, "x".repeat(254));
    let config = dns(
        json!({"dnsPolicy": "None", "dnsConfig": {"searches": searches}}),
        &ctx(),
    )
    .expect("dns");
    assert_eq!(config.searches, names(3, 10));
    // A search line over 2048 characters loses whole paths from the end: 10 paths of 250
    // characters make a line of 2509; dropping 2 leaves 2007.
    let searches = names(10, 250);
    let config = dns(
        json!({"dnsPolicy": "None", "dnsConfig": {"searches": searches}}),
        &ctx(),
    )
    .expect("dns");
    assert_eq!(config.searches, searches[..8]);
}

#[test]
fn hostnames_and_domains() {
    let of = |spec: serde_json::Value| {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
        let pod = pod(json!({"metadata": meta(), "spec": spec}));
        (
            pod_hostname_and_domain(&pod, &ctx()).map_err(reason),
            sandbox_config(&pod, 0, "", &ctx())
                .map(|c| c.hostname)
                .map_err(reason),
        )
    };
    let ok = |hostname: &str, domain: &str, kernel: &str| {
        (
            Ok((hostname.to_owned(), domain.to_owned())),
            Ok(kernel.to_owned()),
        )
    };
    assert_eq!(of(json!({})), ok("web-0", "", "web-0"));
    assert_eq!(of(json!({"hostname": "h"})), ok("h", "", "h"));
    assert_eq!(
        of(json!({"hostname": "h", "subdomain": "s"})),
        ok("h", "s.shop.svc.cluster.local", "h")
    );
    assert_eq!(
        of(json!({"hostname": "h", "subdomain": "s", "setHostnameAsFQDN": true})),
        ok(
            "h",
            "s.shop.svc.cluster.local",
            "h.s.shop.svc.cluster.local"
        )
    );
    assert_eq!(
        of(
            json!({"hostnameOverride": "my.host.example", "subdomain": "s", "setHostnameAsFQDN": true})
        ),
        ok("my.host.example", "", "my.host.example")
    );
    // Long names are cut to 63 characters and lose trailing dashes.
    let long = format!("{}-x", "a".repeat(62));
    assert_eq!(
        of(json!({"hostnameOverride": long})),
        ok(&"a".repeat(62), "", &"a".repeat(62))
    );
    let (names, kernel) = of(json!({"hostname": "Bad_Name"}));
    assert!(names.expect_err("invalid hostname").starts_with(
        "pod Hostname \"Bad_Name\" is not a valid DNS label: a lowercase RFC 1123 label"
    ));
    assert!(kernel.is_err());
    let (names, _) = of(json!({"subdomain": "a.b"}));
    assert_eq!(
        names,
        Err("pod Subdomain \"a.b\" is not a valid DNS label: must not contain dots".to_owned())
    );
    let (names, _) = of(json!({"hostnameOverride": "-x"}));
    assert!(
        names
            .expect_err("invalid override")
            .starts_with("pod HostnameOverride \"-x\" is not a valid DNS subdomain")
    );
    // The FQDN must fit the kernel's 64 characters.
    let (_, kernel) =
        of(json!({"hostname": "a".repeat(40), "subdomain": "s", "setHostnameAsFQDN": true}));
    assert_eq!(
        kernel,
        Err(format!(
            "failed to construct FQDN from pod hostname and cluster domain, FQDN {}.s.shop.svc.cluster.local \
             is too long (64 characters is the max, 65 characters requested)",
            "a".repeat(40)
        ))
    );
}

#[test]
fn managed_hosts_file() {
    let with_domain = pod(json!({
        "metadata": meta(),
        "spec": {
            "hostname": "web-0",
            "subdomain": "web",
            "hostAliases": [
                {"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]},
                {"ip": "10.1.2.4", "hostnames": ["baz.local"]},
            ],
            "containers": [{"name": "c", "image": "i"}],
        },
    }));
    assert_eq!(
        hosts_file_content(&with_domain, &pod_ips(), &ctx(), "ignored").expect("hosts file"),
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n\
         fd00:244::5\tweb-0.web.shop.svc.cluster.local\tweb-0\n\
         10.244.1.5\tweb-0.web.shop.svc.cluster.local\tweb-0\n\
         \n\
         # Entries added by HostAliases.\n\
         10.1.2.3\tfoo.local\tbar.local\n\
         10.1.2.4\tbaz.local\n"
    );

    let plain = pod_with(json!({"name": "c", "image": "i"}));
    assert_eq!(
        hosts_file_content(&plain, &["10.244.1.5".to_owned()], &ctx(), "").expect("hosts file"),
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n\
         10.244.1.5\tweb-0\n"
    );

    let host_network = pod(json!({
        "metadata": meta(),
        "spec": {
            "hostNetwork": true,
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local"]}],
            "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "h", "mountPath": "/etc/hosts"}]}],
        },
    }));
    assert_eq!(
        hosts_file_content(&host_network, &[], &ctx(), "127.0.0.1 localhost\n")
            .expect("hosts file"),
        "# Kubernetes-managed hosts file (host network).\n\
         127.0.0.1 localhost\n\
         \n\
         # Entries added by HostAliases.\n\
         10.1.2.3\tfoo.local\n"
    );

    // Mounted for host-network pods and for pods with an IP, unless the container
    // mounts something at /etc/hosts itself.
    assert!(should_mount_hosts_file(
        &plain,
        &first_container(&plain),
        &pod_ips()
    ));
    assert!(!should_mount_hosts_file(
        &plain,
        &first_container(&plain),
        &[]
    ));
    let mut no_own_mount = first_container(&host_network);
    no_own_mount.volume_mounts = None;
    assert!(should_mount_hosts_file(&host_network, &no_own_mount, &[]));
    assert!(!should_mount_hosts_file(
        &host_network,
        &first_container(&host_network),
        &[]
    ));

    assert_eq!(
        hosts_file_mount(&plain, &ctx()),
        Mount {
            container_path: "/etc/hosts".into(),
            host_path: "/var/lib/kubelet/pods/u-123/etc-hosts".into(),
            readonly: false,
            selinux_relabel: true,
            propagation: kubelet_core::MountPropagation::Private,
        }
    );
}

#[test]
fn log_paths() {
    assert_eq!(
        pod_log_dir(&pod_with(json!({"name": "c", "image": "i"})), &ctx()),
        PathBuf::from("/var/log/pods/shop_web-0_u-123")
    );
    assert_eq!(container_log_path("app", 12), "app/12.log");
    assert_eq!(container_log_path("", 1), "1.log");
}

#[test]
fn sloppy_ip_parsing() {
    assert_eq!(parse_ip_sloppy("010.001.000.255"), Some(ip("10.1.0.255")));
    assert_eq!(parse_ip_sloppy("::ffff:10.0.0.1"), Some(ip("10.0.0.1")));
    assert_eq!(parse_ip_sloppy("1.2.3"), None);
    assert_eq!(parse_ip_sloppy("1.2.3.256"), None);
    assert!(is_ipv6_string("fd00::1"));
    assert!(!is_ipv6_string("::ffff:10.0.0.1"));
    assert!(!is_ipv6_string("garbage"));
}

fn service(namespace: &str, name: &str, cluster_ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "ports": ports},
    }))
    .expect("service JSON")
}

/// `web` (ports 80 named http, and 443) and a headless `db` in `ns1`, an IPv6 `my-dns`
/// with UDP, defaulted and SCTP ports in `ns1`, `kubernetes` in `default`, and services
/// the pod must not see: `other` in `ns2`, an ExternalName service (no cluster IP).
fn cluster_services() -> Vec<Service> {
    vec![
        service(
            "ns1",
            "web",
            "10.0.0.5",
            json!([{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]),
        ),
        service(
            "default",
            "kubernetes",
            "10.0.0.1",
            json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
        ),
        service("ns1", "db", "None", json!([{"port": 5432}])),
        service("ns1", "ext", "", json!([])),
        service("ns2", "other", "10.0.0.9", json!([{"port": 8080}])),
        service(
            "ns1",
            "my-dns",
            "fd00::a",
            json!([
                {"name": "dns-udp", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53},
                {"name": "metrics", "port": 9153, "protocol": "SCTP"},
            ]),
        ),
    ]
}

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Upstream `envvars.FromServices` of `kubernetes` (v1.37.2, run on the same service).
const KUBERNETES_VARS: [(&str, &str); 8] = [
    ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
    ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
    ("KUBERNETES_PORT", "tcp://10.0.0.1:443"),
    ("KUBERNETES_PORT_443_TCP", "tcp://10.0.0.1:443"),
    ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
    ("KUBERNETES_PORT_443_TCP_PORT", "443"),
    ("KUBERNETES_PORT_443_TCP_ADDR", "10.0.0.1"),
];

/// Upstream `envvars.FromServices` of `my-dns`.
const MY_DNS_VARS: [(&str, &str); 18] = [
    ("MY_DNS_SERVICE_HOST", "fd00::a"),
    ("MY_DNS_SERVICE_PORT", "53"),
    ("MY_DNS_SERVICE_PORT_DNS_UDP", "53"),
    ("MY_DNS_SERVICE_PORT_DNS_TCP", "53"),
    ("MY_DNS_SERVICE_PORT_METRICS", "9153"),
    ("MY_DNS_PORT", "udp://[fd00::a]:53"),
    ("MY_DNS_PORT_53_UDP", "udp://[fd00::a]:53"),
    ("MY_DNS_PORT_53_UDP_PROTO", "udp"),
    ("MY_DNS_PORT_53_UDP_PORT", "53"),
    ("MY_DNS_PORT_53_UDP_ADDR", "fd00::a"),
    ("MY_DNS_PORT_53_TCP", "tcp://[fd00::a]:53"),
    ("MY_DNS_PORT_53_TCP_PROTO", "tcp"),
    ("MY_DNS_PORT_53_TCP_PORT", "53"),
    ("MY_DNS_PORT_53_TCP_ADDR", "fd00::a"),
    ("MY_DNS_PORT_9153_SCTP", "sctp://[fd00::a]:9153"),
    ("MY_DNS_PORT_9153_SCTP_PROTO", "sctp"),
    ("MY_DNS_PORT_9153_SCTP_PORT", "9153"),
    ("MY_DNS_PORT_9153_SCTP_ADDR", "fd00::a"),
];

/// Upstream `envvars.FromServices` of `web`.
const WEB_VARS: [(&str, &str); 12] = [
    ("WEB_SERVICE_HOST", "10.0.0.5"),
    ("WEB_SERVICE_PORT", "80"),
    ("WEB_SERVICE_PORT_HTTP", "80"),
    ("WEB_PORT", "tcp://10.0.0.5:80"),
    ("WEB_PORT_80_TCP", "tcp://10.0.0.5:80"),
    ("WEB_PORT_80_TCP_PROTO", "tcp"),
    ("WEB_PORT_80_TCP_PORT", "80"),
    ("WEB_PORT_80_TCP_ADDR", "10.0.0.5"),
    ("WEB_PORT_443_TCP", "tcp://10.0.0.5:443"),
    ("WEB_PORT_443_TCP_PROTO", "tcp"),
    ("WEB_PORT_443_TCP_PORT", "443"),
    ("WEB_PORT_443_TCP_ADDR", "10.0.0.5"),
];

#[test]
fn service_env_selects_and_names_like_upstream() {
    let services = cluster_services();
    // Services in name order, each as upstream's FromServices lists it; no `db`
    // (headless), `ext` (no cluster IP) or `other` (another namespace).
    let expected: Vec<_> = KUBERNETES_VARS
        .iter()
        .chain(&MY_DNS_VARS)
        .chain(&WEB_VARS)
        .copied()
        .collect();
    assert_eq!(
        service_env(&services, "ns1", true, "default"),
        vars(&expected)
    );
    // The input order does not matter.
    let reversed: Vec<_> = services.iter().rev().cloned().collect();
    assert_eq!(
        service_env(&reversed, "ns1", true, "default"),
        vars(&expected)
    );

    // Without service links only the master service remains.
    assert_eq!(
        service_env(&services, "ns1", false, "default"),
        vars(&KUBERNETES_VARS)
    );
    // A namespace without services of its own.
    assert_eq!(
        service_env(&services, "empty", true, "default"),
        vars(&KUBERNETES_VARS)
    );
    // Only `kubernetes` of the master namespace is special.
    let mut with_default = services.clone();
    with_default.push(service(
        "default",
        "dashboard",
        "10.0.0.7",
        json!([{"port": 80}]),
    ));
    assert_eq!(
        service_env(&with_default, "ns1", false, "default"),
        vars(&KUBERNETES_VARS)
    );
    assert!(service_env(&services[2..4], "ns1", true, "default").is_empty());
}

#[test]
fn service_env_own_namespace_wins_over_the_master_service() {
    let own = service("ns1", "kubernetes", "10.1.1.1", json!([{"port": 6443}]));
    let master = service("default", "kubernetes", "10.0.0.1", json!([{"port": 443}]));
    for services in [
        vec![own.clone(), master.clone()],
        vec![master.clone(), own.clone()],
    ] {
        let env = service_env(&services, "ns1", true, "default");
        assert_eq!(
            env[0],
            ("KUBERNETES_SERVICE_HOST".into(), "10.1.1.1".into())
        );
        assert_eq!(env.len(), 7, "{env:?}");
        // Without service links the pod's own `kubernetes` is not wanted.
        let env = service_env(&services, "ns1", false, "default");
        assert_eq!(
            env[0],
            ("KUBERNETES_SERVICE_HOST".into(), "10.0.0.1".into())
        );
    }
}

fn pod_in_ns1(spec_extra: serde_json::Value, container: serde_json::Value) -> Pod {
    let mut spec = json!({"nodeName": "node-1", "containers": [container]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        spec.extend(extra.clone());
    }
    pod(json!({
        "metadata": {"name": "web-0", "namespace": "ns1", "uid": "u-1"},
        "spec": spec,
    }))
}

fn env_with_services(pod: &Pod) -> Vec<(String, String)> {
    let objects = Objects {
        services: Some(cluster_services()),
        ..Objects::default()
    };
    container_env(
        pod,
        &first_container(pod),
        &pod_ips(),
        &ctx(),
        &objects.read(pod),
    )
    .expect("environment")
}

#[test]
fn env_service_links_come_after_the_container_variables() {
    let pod = pod_in_ns1(
        json!({}),
        json!({
            "name": "c", "image": "i",
            "env": [
                // A service variable the container defines later is still the
                // service's while this value is expanded (upstream's mapping looks at
                // the container's variables so far, then the services).
                {"name": "EARLY", "value": "$(WEB_SERVICE_PORT)"},
                {"name": "WEB_SERVICE_PORT", "value": "8080"},
                {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)"},
                {"name": "API", "value": "$(KUBERNETES_PORT_443_TCP)/$(OTHER_SERVICE_HOST)"},
            ],
        }),
    );
    let env = env_with_services(&pod);
    let container = vars(&[
        ("EARLY", "80"),
        ("WEB_SERVICE_PORT", "8080"),
        ("URL", "http://10.0.0.5:8080"),
        // `other` lives in another namespace: no variable, the reference stays.
        ("API", "tcp://10.0.0.1:443/$(OTHER_SERVICE_HOST)"),
    ]);
    let services: Vec<_> = KUBERNETES_VARS
        .iter()
        .chain(&MY_DNS_VARS)
        .chain(&WEB_VARS)
        .filter(|(name, _)| *name != "WEB_SERVICE_PORT")
        .copied()
        .collect();
    let expected: Vec<_> = container.into_iter().chain(vars(&services)).collect();
    assert_eq!(env, expected);
}

#[test]
fn env_service_links_disabled_keep_the_master_service() {
    let pod = pod_in_ns1(
        json!({"enableServiceLinks": false}),
        json!({
            "name": "c", "image": "i",
            "env": [{"name": "URL", "value": "$(WEB_SERVICE_HOST)"}],
        }),
    );
    let expected: Vec<_> = vars(&[("URL", "$(WEB_SERVICE_HOST)")])
        .into_iter()
        .chain(vars(&KUBERNETES_VARS))
        .collect();
    assert_eq!(env_with_services(&pod), expected);
}

#[test]
fn env_from_overrides_service_links() {
    let mut objects = Objects {
        services: Some(cluster_services()),
        ..Objects::default()
    };
    objects.config_maps.insert(
        "ns1/links".into(),
        ConfigMap {
            data: Some([("HOST".to_owned(), "web.local".to_owned())].into()),
            ..Default::default()
        },
    );
    let pod = pod_in_ns1(
        json!({"enableServiceLinks": false}),
        json!({
            "name": "c", "image": "i",
            "envFrom": [{"configMapRef": {"name": "links"}, "prefix": "KUBERNETES_SERVICE_"}],
            "env": [{"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST)"}],
        }),
    );
    let env_with = |objects: &Objects| {
        container_env(
            &pod,
            &first_container(&pod),
            &[],
            &ctx(),
            &objects.read(&pod),
        )
        .expect("environment")
    };
    let env = env_with(&objects);
    let services: Vec<_> = KUBERNETES_VARS
        .iter()
        .filter(|(name, _)| *name != "KUBERNETES_SERVICE_HOST")
        .copied()
        .collect();
    let expected: Vec<_> = vars(&[
        ("KUBERNETES_SERVICE_HOST", "web.local"),
        ("API", "https://web.local"),
    ])
    .into_iter()
    .chain(vars(&services))
    .collect();
    assert_eq!(env, expected);

    // Standalone (no services at all): nothing is added.
    objects.services = None;
    let env = env_with(&objects);
    assert_eq!(env.len(), 2);
}

#[test]
fn seccomp_profiles_as_upstream_chooses_them() {
    let seccomp = |pod_profile: serde_json::Value,
                   container_profile: serde_json::Value,
                   default: bool|
     -> std::result::Result<Option<SecurityProfile>, String> {
        let mut container = json!({"name": "app", "image": "busybox"});
        if !container_profile.is_null() {
            container["securityContext"] = json!({"seccompProfile": container_profile});
        }
        let mut spec = json!({"containers": [container]});
        if !pod_profile.is_null() {
            spec["securityContext"] = json!({"seccompProfile": pod_profile});
        }
        let pod = pod(json!({"metadata": meta(), "spec": spec}));
        let mut ctx = ctx();
        ctx.security.seccomp_default = default;
        container_config(
            &pod,
            &first_container(&pod),
            0,
            &pod_ips(),
            &ctx,
            &PodObjects::default(),
            Vec::new(),
        )
        .map(|c| c.security.seccomp)
        .map_err(reason)
    };
    let none = serde_json::Value::Null;
    let runtime_default = json!({"type": "RuntimeDefault"});
    let unconfined = json!({"type": "Unconfined"});
    let localhost = json!({"type": "Localhost", "localhostProfile": "profiles/deny.json"});
    assert_eq!(
        seccomp(none.clone(), none.clone(), false),
        Ok(Some(SecurityProfile::Unconfined))
    );
    assert_eq!(
        seccomp(none.clone(), none.clone(), true),
        Ok(Some(SecurityProfile::RuntimeDefault)),
        "seccompDefault"
    );
    assert_eq!(
        seccomp(runtime_default.clone(), none.clone(), false),
        Ok(Some(SecurityProfile::RuntimeDefault)),
        "the pod's profile"
    );
    assert_eq!(
        seccomp(runtime_default, unconfined.clone(), true),
        Ok(Some(SecurityProfile::Unconfined)),
        "the container's profile wins over the pod's and the default"
    );
    assert_eq!(
        seccomp(unconfined, localhost, false),
        Ok(Some(SecurityProfile::Localhost(
            "/var/lib/kubelet/seccomp/profiles/deny.json".into()
        ))),
        "Localhost profiles are under <root-dir>/seccomp"
    );
    assert_eq!(
        seccomp(none, json!({"type": "Localhost"}), false),
        Err("localhostProfile must be set if seccompProfile type is Localhost.".into())
    );
}

#[test]
fn apparmor_and_selinux_reach_the_container() {
    let pod = pod(json!({
        "metadata": {
            "name": "web", "namespace": "shop", "uid": "u-1",
            "annotations": {
                "container.apparmor.security.beta.kubernetes.io/legacy": "localhost/old-profile",
            },
        },
        "spec": {
            "securityContext": {
                "appArmorProfile": {"type": "RuntimeDefault"},
                "seLinuxOptions": {"user": "system_u", "level": "s0:c1"},
            },
            "containers": [
                {"name": "app", "image": "busybox"},
                {"name": "legacy", "image": "busybox"},
                {
                    "name": "own", "image": "busybox",
                    "securityContext": {
                        "appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-deny"},
                        "seLinuxOptions": {"type": "spc_t"},
                    },
                },
            ],
        },
    }));
    let security = |name: &str| {
        let container = pod_spec(&pod)
            .containers
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .expect("container");
        container_config(
            &pod,
            &container,
            0,
            &pod_ips(),
            &ctx(),
            &PodObjects::default(),
            Vec::new(),
        )
        .expect("config")
        .security
    };
    let app = security("app");
    assert_eq!(
        app.apparmor,
        Some(SecurityProfile::RuntimeDefault),
        "the pod's profile"
    );
    let pod_labels = SeLinuxOptions {
        user: "system_u".into(),
        level: "s0:c1".into(),
        ..Default::default()
    };
    assert_eq!(app.selinux, Some(pod_labels));
    assert_eq!(
        security("legacy").apparmor,
        Some(SecurityProfile::Localhost("old-profile".into())),
        "the deprecated annotation comes before the pod's field"
    );
    let own = security("own");
    assert_eq!(
        own.apparmor,
        Some(SecurityProfile::Localhost("k8s-deny".into()))
    );
    assert_eq!(
        own.selinux,
        Some(SeLinuxOptions {
            type_: "spc_t".into(),
            ..Default::default()
        }),
        "the container's options replace the pod's"
    );
}

#[test]
fn a_pod_in_its_own_user_namespace_gets_its_range_or_is_refused() {
    let pod = pod(json!({
        "metadata": meta(),
        "spec": {"hostUsers": false, "containers": [{"name": "app", "image": "busybox"}]},
    }));
    // Without a range (the handler could not run it), never the host's namespace.
    let node = ctx();
    assert_eq!(
        reason(sandbox_config(&pod, 0, "", &node).expect_err("refused")),
        "the pod asks for its own user namespace (hostUsers: false) and has none allocated"
    );
    let userns = node.user_namespaces.get_or_create("u-123").expect("range");
    assert_eq!(userns.uids[0].container_id, 0);
    assert_eq!(userns.uids[0].length, 65536);
    assert!(
        userns.uids[0].host_id >= 65536,
        "never the host's IDs from 0"
    );
    let config = sandbox_config(&pod, 0, "", &node).expect("own user namespace");
    assert_eq!(
        config.linux.namespaces.user_namespace.as_ref(),
        Some(&userns)
    );
    let container = container_config(
        &pod,
        &first_container(&pod),
        0,
        &pod_ips(),
        &node,
        &Objects::standard().read(&pod),
        Vec::new(),
    )
    .expect("container config");
    assert_eq!(
        container.security.namespaces.pod.user_namespace,
        Some(userns),
        "containers share the sandbox's user namespace"
    );
    let mut host = pod.clone();
    host.spec.as_mut().expect("spec").host_users = Some(true);
    let config = sandbox_config(&host, 0, "kata", &ctx()).expect("host user namespace");
    assert_eq!(config.runtime_handler, "kata");
    assert_eq!(config.linux.namespaces.user_namespace, None);
}

/// A source whose cache never synced, as the API-backed one answers then.
struct Unsynced;

#[async_trait::async_trait]
impl ObjectSource for Unsynced {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<Option<ConfigMap>> {
        Err(kubelet_core::Error::Invalid {
            what: format!("configmap {namespace}/{name}"),
            reason: "failed to sync configmap cache: timed out waiting for the condition".into(),
        })
    }
    async fn secret(&self, namespace: &str, name: &str) -> kubelet_core::Result<Option<Secret>> {
        Err(kubelet_core::Error::Invalid {
            what: format!("secret {namespace}/{name}"),
            reason: "failed to sync secret cache: timed out waiting for the condition".into(),
        })
    }
}

impl EnvObjects for Unsynced {}

#[test]
fn env_objects_that_cannot_be_read_fail_even_when_optional() {
    // Upstream tolerates only "not found" for an optional reference.
    let pod = pod_with(json!({
        "name": "c", "image": "i",
        "envFrom": [{"configMapRef": {"name": "settings", "optional": true}}],
    }));
    let read =
        |source: &dyn EnvObjects| futures::executor::block_on(PodObjects::read(&pod, source));
    let error = container_env(&pod, &first_container(&pod), &[], &ctx(), &read(&Unsynced))
        .expect_err("unsynced");
    assert_eq!(
        reason(error),
        "invalid configmap shop/settings: failed to sync configmap cache: timed out waiting for the condition"
    );
    // Standalone: the object is missing, so the optional reference is skipped.
    let env = container_env(
        &pod,
        &first_container(&pod),
        &[],
        &ctx(),
        &read(&NoEnvObjects),
    )
    .expect("environment");
    assert!(env.is_empty(), "{env:?}");
}

#[test]
fn env_references_name_every_containers_objects_once_without_empty_names() {
    let mut pod = pod_with(json!({
        "name": "c", "image": "i",
        "envFrom": [{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": ""}}],
        "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
        ],
    }));
    let spec = pod.spec.as_mut().expect("spec");
    spec.init_containers = Some(vec![
        serde_json::from_value(json!({
            "name": "init", "image": "i",
            "envFrom": [{"secretRef": {"name": "init-creds"}}],
        }))
        .expect("init container"),
    ]);
    spec.ephemeral_containers = Some(vec![serde_json::from_value(json!({
        "name": "debug", "image": "i",
        "env": [{"name": "C", "valueFrom": {"configMapKeyRef": {"name": "debug-settings", "key": "k"}}}],
    }))
    .expect("ephemeral container")]);
    let (config_maps, secrets) = env_references(&pod);
    assert_eq!(
        config_maps
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>(),
        ["debug-settings", "settings"].map(String::from).into()
    );
    assert_eq!(
        secrets
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>(),
        ["creds", "init-creds"].map(String::from).into()
    );
}

/// Objects each read only once another read has begun: reads one after another never
/// finish.
struct Rendezvous(tokio::sync::Barrier);

#[async_trait::async_trait]
impl ObjectSource for Rendezvous {
    async fn config_map(&self, _: &str, _: &str) -> kubelet_core::Result<Option<ConfigMap>> {
        self.0.wait().await;
        Ok(Some(ConfigMap::default()))
    }
    async fn secret(&self, _: &str, _: &str) -> kubelet_core::Result<Option<Secret>> {
        self.0.wait().await;
        Ok(Some(Secret::default()))
    }
}

impl EnvObjects for Rendezvous {}

#[tokio::test(start_paused = true)]
async fn env_objects_are_read_at_once() {
    // Under paused time an endless wait ends at the timeout at once.
    let pod = pod_with(json!({
        "name": "c", "image": "i",
        "envFrom": [
            {"configMapRef": {"name": "a"}},
            {"configMapRef": {"name": "b"}},
            {"secretRef": {"name": "c"}},
        ],
    }));
    let source = Rendezvous(tokio::sync::Barrier::new(3));
    let objects = tokio::time::timeout(
        std::time::Duration::from_secs(3600),
        PodObjects::read(&pod, &source),
    )
    .await
    .expect("the reads overlap");
    container_env(&pod, &first_container(&pod), &[], &ctx(), &objects).expect("all three read");
}

#[test]
fn default_pod_sysctls_go_where_the_pod_has_the_namespace_and_its_own_go_over_them() {
    let node = NodeContext {
        security: NodeSecurity {
            default_sysctls: [
                ("kernel.shmmni", "1000"),
                ("net/ipv4/ip_unprivileged_port_start", "900"),
                ("kernel.domainname", "example.com"),
                ("user.max_user_namespaces", "10"),
                ("vm.swappiness", "10"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..ctx().security
        },
        ..ctx()
    };
    let sysctls = |spec: serde_json::Value| {
        let mut spec_with_container = spec;
        spec_with_container["containers"] = json!([{"name": "c", "image": "i"}]);
        let pod = pod(json!({"metadata": meta(), "spec": spec_with_container}));
        sandbox_config(&pod, 0, "", &node)
            .expect("sandbox config")
            .linux
            .sysctls
            .into_iter()
            .collect::<Vec<_>>()
    };
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    // Its own IPC, network and UTS namespaces; the host's user namespace; vm.* belongs
    // to no namespace. Names are normalized to dots.
    assert_eq!(
        sysctls(json!({})),
        [
            pair("kernel.domainname", "example.com"),
            pair("kernel.shmmni", "1000"),
            pair("net.ipv4.ip_unprivileged_port_start", "900"),
        ]
    );
    // The pod's own value wins.
    assert_eq!(
        sysctls(json!({"securityContext": {"sysctls": [
            {"name": "net.ipv4.ip_unprivileged_port_start", "value": "1000"}
        ]}})),
        [
            pair("kernel.domainname", "example.com"),
            pair("kernel.shmmni", "1000"),
            pair("net.ipv4.ip_unprivileged_port_start", "1000"),
        ]
    );
    // The host's IPC and network namespaces take none of theirs.
    assert_eq!(
        sysctls(json!({"hostIPC": true, "hostNetwork": true})),
        Vec::<(String, String)>::new()
    );
}
