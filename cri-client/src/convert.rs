//! Translations between kubelet-core's runtime types and CRI v1 messages.

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1 as cri;
use kubelet_core as core;

fn to_hash(map: &core::StringMap) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn to_btree(map: HashMap<String, String>) -> core::StringMap {
    map.into_iter().collect::<BTreeMap<_, _>>()
}

fn int64(value: Option<i64>) -> Option<cri::Int64Value> {
    value.map(|value| cri::Int64Value { value })
}

fn uint64(value: Option<cri::UInt64Value>) -> Option<u64> {
    value.map(|v| v.value)
}

fn namespace_mode(host: bool) -> i32 {
    if host {
        cri::NamespaceMode::Node as i32
    } else {
        cri::NamespaceMode::Pod as i32
    }
}

pub(crate) fn namespace_options(ns: &core::NamespaceOptions) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: namespace_mode(ns.host_network),
        pid: if ns.host_pid {
            cri::NamespaceMode::Node as i32
        } else if ns.share_process_namespace {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        },
        ipc: namespace_mode(ns.host_ipc),
        // Upstream names the host's user namespace explicitly.
        userns_options: Some(match &ns.user_namespace {
            None => cri::UserNamespace {
                mode: cri::NamespaceMode::Node as i32,
                ..Default::default()
            },
            Some(userns) => {
                let mappings = |ids: &[core::IdMapping]| {
                    ids.iter()
                        .map(|m| cri::IdMapping {
                            host_id: m.host_id,
                            container_id: m.container_id,
                            length: m.length,
                        })
                        .collect()
                };
                cri::UserNamespace {
                    mode: cri::NamespaceMode::Pod as i32,
                    uids: mappings(&userns.uids),
                    gids: mappings(&userns.gids),
                }
            }
        }),
        ..Default::default()
    }
}

/// A container's namespaces: the pod's, with the PID namespace of a target container
/// when it names one.
fn container_namespace_options(ns: &core::ContainerNamespaces) -> cri::NamespaceOption {
    let mut options = namespace_options(&ns.pod);
    if let Some(target) = &ns.pid_target {
        options.pid = cri::NamespaceMode::Target as i32;
        options.target_id = target.clone();
    }
    options
}

fn security_profile(profile: &core::SecurityProfile) -> cri::SecurityProfile {
    let (profile_type, localhost_ref) = match profile {
        core::SecurityProfile::Unconfined => (cri::security_profile::ProfileType::Unconfined, ""),
        core::SecurityProfile::RuntimeDefault => {
            (cri::security_profile::ProfileType::RuntimeDefault, "")
        }
        core::SecurityProfile::Localhost(reference) => (
            cri::security_profile::ProfileType::Localhost,
            reference.as_str(),
        ),
    };
    cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref: localhost_ref.to_owned(),
    }
}

/// Sets the deprecated AppArmor profile string that runtimes older than the `apparmor`
/// field read; upstream still sends both.
#[allow(deprecated)]
fn with_deprecated_apparmor_profile(
    context: &mut cri::LinuxContainerSecurityContext,
    profile: Option<&core::SecurityProfile>,
) {
    context.apparmor_profile = match profile {
        None => String::new(),
        Some(core::SecurityProfile::Unconfined) => "unconfined".to_owned(),
        Some(core::SecurityProfile::RuntimeDefault) => "runtime/default".to_owned(),
        Some(core::SecurityProfile::Localhost(name)) => format!("localhost/{name}"),
    };
}

fn selinux_option(options: &core::SeLinuxOptions) -> cri::SeLinuxOption {
    cri::SeLinuxOption {
        user: options.user.clone(),
        role: options.role.clone(),
        r#type: options.type_.clone(),
        level: options.level.clone(),
    }
}

fn namespaces_from(options: Option<&cri::NamespaceOption>) -> core::NamespaceOptions {
    let node = cri::NamespaceMode::Node as i32;
    options
        .map(|o| core::NamespaceOptions {
            host_network: o.network == node,
            host_pid: o.pid == node,
            host_ipc: o.ipc == node,
            share_process_namespace: o.pid == cri::NamespaceMode::Pod as i32,
            user_namespace: o
                .userns_options
                .as_ref()
                .filter(|u| u.mode == cri::NamespaceMode::Pod as i32)
                .map(|u| {
                    let mappings = |ids: &[cri::IdMapping]| {
                        ids.iter()
                            .map(|m| core::IdMapping {
                                host_id: m.host_id,
                                container_id: m.container_id,
                                length: m.length,
                            })
                            .collect()
                    };
                    core::UserNamespace {
                        uids: mappings(&u.uids),
                        gids: mappings(&u.gids),
                    }
                }),
        })
        .unwrap_or_default()
}

fn protocol(p: core::Protocol) -> i32 {
    match p {
        core::Protocol::Tcp => cri::Protocol::Tcp as i32,
        core::Protocol::Udp => cri::Protocol::Udp as i32,
        core::Protocol::Sctp => cri::Protocol::Sctp as i32,
    }
}

/// The CRI sandbox config for a kubelet-core one.
pub fn sandbox_config(config: &core::SandboxConfig) -> cri::PodSandboxConfig {
    let linux = &config.linux;
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: config.metadata.name.clone(),
            uid: config.metadata.uid.clone(),
            namespace: config.metadata.namespace.clone(),
            attempt: config.metadata.attempt,
        }),
        hostname: config.hostname.clone(),
        log_directory: config.log_directory.clone(),
        dns_config: config.dns.as_ref().map(|dns| cri::DnsConfig {
            servers: dns.servers.clone(),
            searches: dns.searches.clone(),
            options: dns.options.clone(),
        }),
        port_mappings: config
            .port_mappings
            .iter()
            .map(|p| cri::PortMapping {
                protocol: protocol(p.protocol),
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        labels: to_hash(&config.labels),
        annotations: to_hash(&config.annotations),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: linux.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(&linux.namespaces)),
                run_as_user: int64(linux.run_as_user),
                run_as_group: int64(linux.run_as_group),
                readonly_rootfs: linux.readonly_rootfs,
                supplemental_groups: linux.supplemental_groups.clone(),
                privileged: linux.privileged,
                seccomp: linux.seccomp.as_ref().map(security_profile),
                selinux_options: linux.selinux.as_ref().map(selinux_option),
                ..Default::default()
            }),
            sysctls: to_hash(&linux.sysctls),
            ..Default::default()
        }),
        windows: None,
    }
}

fn sandbox_metadata(m: Option<cri::PodSandboxMetadata>) -> core::SandboxMetadata {
    m.map(|m| core::SandboxMetadata {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        attempt: m.attempt,
    })
    .unwrap_or_default()
}

fn sandbox_state(state: i32) -> core::SandboxState {
    if state == cri::PodSandboxState::SandboxReady as i32 {
        core::SandboxState::Ready
    } else {
        core::SandboxState::NotReady
    }
}

fn sandbox_state_value(state: core::SandboxState) -> cri::PodSandboxStateValue {
    cri::PodSandboxStateValue {
        state: match state {
            core::SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
            core::SandboxState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
        },
    }
}

pub fn sandbox(s: cri::PodSandbox) -> core::Sandbox {
    core::Sandbox {
        id: s.id,
        metadata: sandbox_metadata(s.metadata),
        state: sandbox_state(s.state),
        created_at: s.created_at,
        labels: to_btree(s.labels),
        annotations: to_btree(s.annotations),
        runtime_handler: s.runtime_handler,
    }
}

pub fn sandbox_status(s: cri::PodSandboxStatus) -> core::SandboxStatus {
    let (ip, additional_ips) = s
        .network
        .map(|n| (n.ip, n.additional_ips.into_iter().map(|ip| ip.ip).collect()))
        .unwrap_or_default();
    let namespaces = namespaces_from(
        s.linux
            .as_ref()
            .and_then(|l| l.namespaces.as_ref())
            .and_then(|n| n.options.as_ref()),
    );
    core::SandboxStatus {
        sandbox: sandbox(cri::PodSandbox {
            id: s.id,
            metadata: s.metadata,
            state: s.state,
            created_at: s.created_at,
            labels: s.labels,
            annotations: s.annotations,
            runtime_handler: s.runtime_handler,
        }),
        ip,
        additional_ips,
        namespaces,
    }
}

pub fn sandbox_filter(f: &core::SandboxFilter) -> cri::PodSandboxFilter {
    cri::PodSandboxFilter {
        id: f.id.clone().unwrap_or_default(),
        state: f.state.map(sandbox_state_value),
        label_selector: to_hash(&f.labels),
    }
}

fn propagation(p: core::MountPropagation) -> i32 {
    match p {
        core::MountPropagation::Private => cri::MountPropagation::PropagationPrivate as i32,
        core::MountPropagation::HostToContainer => {
            cri::MountPropagation::PropagationHostToContainer as i32
        }
        core::MountPropagation::Bidirectional => {
            cri::MountPropagation::PropagationBidirectional as i32
        }
    }
}

fn propagation_from(p: i32) -> core::MountPropagation {
    if p == cri::MountPropagation::PropagationHostToContainer as i32 {
        core::MountPropagation::HostToContainer
    } else if p == cri::MountPropagation::PropagationBidirectional as i32 {
        core::MountPropagation::Bidirectional
    } else {
        core::MountPropagation::Private
    }
}

pub fn resources(r: &core::LinuxResources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        ..Default::default()
    }
}

/// The CRI container config for a kubelet-core one.
pub fn container_config(config: &core::ContainerConfig) -> cri::ContainerConfig {
    let sec = &config.security;
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: config.metadata.name.clone(),
            attempt: config.metadata.attempt,
        }),
        image: Some(cri::ImageSpec {
            image: config.image.clone(),
            user_specified_image: config.user_specified_image.clone(),
            ..Default::default()
        }),
        command: config.command.clone(),
        args: config.args.clone(),
        working_dir: config.working_dir.clone(),
        envs: config
            .envs
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts: config
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                selinux_relabel: m.selinux_relabel,
                propagation: propagation(m.propagation),
                ..Default::default()
            })
            .collect(),
        devices: config
            .devices
            .iter()
            .map(|d| cri::Device {
                container_path: d.container_path.clone(),
                host_path: d.host_path.clone(),
                permissions: d.permissions.clone(),
            })
            .collect(),
        cdi_devices: config
            .cdi_devices
            .iter()
            .map(|name| cri::CdiDevice { name: name.clone() })
            .collect(),
        labels: to_hash(&config.labels),
        annotations: to_hash(&config.annotations),
        log_path: config.log_path.clone(),
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        tty: config.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: config.resources.as_ref().map(resources),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: sec.capabilities.add.clone(),
                    drop_capabilities: sec.capabilities.drop.clone(),
                    ..Default::default()
                }),
                privileged: sec.privileged,
                namespace_options: Some(container_namespace_options(&sec.namespaces)),
                run_as_user: int64(sec.run_as_user),
                run_as_group: int64(sec.run_as_group),
                run_as_username: sec.run_as_username.clone(),
                readonly_rootfs: sec.readonly_rootfs,
                supplemental_groups: sec.supplemental_groups.clone(),
                no_new_privs: sec.no_new_privs,
                masked_paths: sec.masked_paths.clone(),
                readonly_paths: sec.readonly_paths.clone(),
                seccomp: sec.seccomp.as_ref().map(security_profile),
                apparmor: sec.apparmor.as_ref().map(security_profile),
                selinux_options: sec.selinux.as_ref().map(selinux_option),
                ..Default::default()
            })
            .map(|mut context| {
                with_deprecated_apparmor_profile(&mut context, sec.apparmor.as_ref());
                context
            }),
        }),
        ..Default::default()
    }
}

fn container_metadata(m: Option<cri::ContainerMetadata>) -> core::ContainerMetadata {
    m.map(|m| core::ContainerMetadata {
        name: m.name,
        attempt: m.attempt,
    })
    .unwrap_or_default()
}

fn container_state(state: i32) -> core::ContainerState {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => core::ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => core::ContainerState::Running,
        Ok(cri::ContainerState::ContainerExited) => core::ContainerState::Exited,
        _ => core::ContainerState::Unknown,
    }
}

fn container_state_value(state: core::ContainerState) -> cri::ContainerStateValue {
    let state = match state {
        core::ContainerState::Created => cri::ContainerState::ContainerCreated,
        core::ContainerState::Running => cri::ContainerState::ContainerRunning,
        core::ContainerState::Exited => cri::ContainerState::ContainerExited,
        core::ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    };
    cri::ContainerStateValue {
        state: state as i32,
    }
}

fn image_name(spec: Option<cri::ImageSpec>) -> String {
    spec.map(|s| s.image).unwrap_or_default()
}

pub fn container(c: cri::Container) -> core::Container {
    core::Container {
        id: c.id,
        sandbox_id: c.pod_sandbox_id,
        metadata: container_metadata(c.metadata),
        image: image_name(c.image),
        image_ref: c.image_ref,
        state: container_state(c.state),
        created_at: c.created_at,
        labels: to_btree(c.labels),
        annotations: to_btree(c.annotations),
    }
}

pub fn container_status(s: cri::ContainerStatus) -> core::ContainerStatus {
    core::ContainerStatus {
        container: core::Container {
            id: s.id,
            sandbox_id: String::new(),
            metadata: container_metadata(s.metadata),
            image: image_name(s.image),
            image_ref: s.image_ref,
            state: container_state(s.state),
            created_at: s.created_at,
            labels: to_btree(s.labels),
            annotations: to_btree(s.annotations),
        },
        started_at: s.started_at,
        finished_at: s.finished_at,
        exit_code: s.exit_code,
        reason: s.reason,
        message: s.message,
        log_path: s.log_path,
        mounts: s
            .mounts
            .into_iter()
            .map(|m| core::Mount {
                container_path: m.container_path,
                host_path: m.host_path,
                readonly: m.readonly,
                selinux_relabel: m.selinux_relabel,
                propagation: propagation_from(m.propagation),
            })
            .collect(),
    }
}

pub fn container_filter(f: &core::ContainerFilter) -> cri::ContainerFilter {
    cri::ContainerFilter {
        id: f.id.clone().unwrap_or_default(),
        state: f.state.map(container_state_value),
        pod_sandbox_id: f.sandbox_id.clone().unwrap_or_default(),
        label_selector: to_hash(&f.labels),
    }
}

pub fn container_stats_filter(f: &core::ContainerFilter) -> cri::ContainerStatsFilter {
    cri::ContainerStatsFilter {
        id: f.id.clone().unwrap_or_default(),
        pod_sandbox_id: f.sandbox_id.clone().unwrap_or_default(),
        label_selector: to_hash(&f.labels),
    }
}

pub fn container_stats(s: cri::ContainerStats) -> core::ContainerStats {
    let (id, metadata, labels) = s
        .attributes
        .map(|a| (a.id, container_metadata(a.metadata), to_btree(a.labels)))
        .unwrap_or_default();
    let cpu = s.cpu.unwrap_or_default();
    let memory = s.memory.unwrap_or_default();
    let writable = s.writable_layer.unwrap_or_default();
    core::ContainerStats {
        id,
        metadata,
        labels,
        timestamp: cpu.timestamp.max(memory.timestamp),
        cpu_usage_core_nano_seconds: uint64(cpu.usage_core_nano_seconds),
        cpu_usage_nano_cores: uint64(cpu.usage_nano_cores),
        memory_working_set_bytes: uint64(memory.working_set_bytes),
        memory_usage_bytes: uint64(memory.usage_bytes),
        memory_rss_bytes: uint64(memory.rss_bytes),
        writable_layer_used_bytes: uint64(writable.used_bytes),
        writable_layer_inodes_used: uint64(writable.inodes_used),
    }
}

pub fn filesystem_usage(f: cri::FilesystemUsage) -> core::FilesystemUsage {
    core::FilesystemUsage {
        timestamp: f.timestamp,
        mountpoint: f.fs_id.map(|id| id.mountpoint).unwrap_or_default(),
        used_bytes: uint64(f.used_bytes),
        inodes_used: uint64(f.inodes_used),
    }
}

pub fn image(i: cri::Image) -> core::Image {
    core::Image {
        id: i.id,
        repo_tags: i.repo_tags,
        repo_digests: i.repo_digests,
        size: i.size,
        uid: i.uid.map(|u| u.value),
        username: i.username,
        pinned: i.pinned,
    }
}

pub fn auth(a: &core::RegistryAuth) -> cri::AuthConfig {
    cri::AuthConfig {
        username: a.username.clone(),
        password: a.password.clone(),
        auth: a.auth.clone(),
        server_address: a.server_address.clone(),
        identity_token: a.identity_token.clone(),
        registry_token: a.registry_token.clone(),
    }
}

pub fn container_event(e: cri::ContainerEventResponse) -> core::ContainerEvent {
    let kind = match cri::ContainerEventType::try_from(e.container_event_type) {
        Ok(cri::ContainerEventType::ContainerCreatedEvent) => core::ContainerEventKind::Created,
        Ok(cri::ContainerEventType::ContainerStartedEvent) => core::ContainerEventKind::Started,
        Ok(cri::ContainerEventType::ContainerDeletedEvent) => core::ContainerEventKind::Deleted,
        _ => core::ContainerEventKind::Stopped,
    };
    core::ContainerEvent {
        container_id: e.container_id,
        kind,
        created_at: e.created_at,
        sandbox_labels: e
            .pod_sandbox_status
            .map(|s| to_btree(s.labels))
            .unwrap_or_default(),
    }
}

pub fn runtime_status(s: cri::StatusResponse) -> core::RuntimeStatus {
    core::RuntimeStatus {
        conditions: s
            .status
            .map(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .map(|c| core::RuntimeCondition {
                condition_type: c.r#type,
                status: c.status,
                reason: c.reason,
                message: c.message,
            })
            .collect(),
        handlers: s
            .runtime_handlers
            .into_iter()
            .map(|h| {
                let features = h.features.unwrap_or_default();
                core::RuntimeHandler {
                    name: h.name,
                    recursive_read_only_mounts: features.recursive_read_only_mounts,
                    user_namespaces: features.user_namespaces,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_sandbox() -> core::SandboxConfig {
        core::SandboxConfig {
            metadata: core::SandboxMetadata {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                attempt: 2,
            },
            hostname: "web".into(),
            log_directory: "/var/log/pods/default_web_u1".into(),
            port_mappings: vec![core::PortMapping {
                protocol: core::Protocol::Udp,
                container_port: 53,
                host_port: 0,
                host_ip: String::new(),
            }],
            labels: [("io.kubernetes.pod.name".to_owned(), "web".to_owned())].into(),
            linux: core::LinuxSandboxConfig {
                namespaces: core::NamespaceOptions {
                    host_network: true,
                    ..Default::default()
                },
                run_as_user: Some(1000),
                seccomp: Some(core::SecurityProfile::RuntimeDefault),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_config_carries_identity_ports_and_namespaces() {
        let cri = sandbox_config(&sample_sandbox());
        let meta = cri.metadata.expect("metadata");
        assert_eq!(
            (
                meta.name.as_str(),
                meta.namespace.as_str(),
                meta.uid.as_str(),
                meta.attempt
            ),
            ("web", "default", "u1", 2)
        );
        assert_eq!(cri.port_mappings[0].protocol, cri::Protocol::Udp as i32);
        assert_eq!(
            cri.labels.get("io.kubernetes.pod.name").map(String::as_str),
            Some("web")
        );
        let sec = cri
            .linux
            .and_then(|l| l.security_context)
            .expect("security context");
        let ns = sec.namespace_options.expect("namespaces");
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
        assert_eq!(ns.ipc, cri::NamespaceMode::Pod as i32);
        assert_eq!(sec.run_as_user.map(|u| u.value), Some(1000));
        assert_eq!(
            sec.seccomp.map(|p| p.profile_type),
            Some(cri::security_profile::ProfileType::RuntimeDefault as i32)
        );
        assert_eq!(sec.run_as_group, None);
    }

    #[test]
    fn sandbox_status_round_trips_namespaces_and_ips() {
        let status = cri::PodSandboxStatus {
            id: "s1".into(),
            metadata: sandbox_config(&sample_sandbox()).metadata,
            state: cri::PodSandboxState::SandboxReady as i32,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: "10.88.0.5".into(),
                additional_ips: vec![cri::PodIp {
                    ip: "fd00::5".into(),
                }],
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(namespace_options(&core::NamespaceOptions {
                        host_network: true,
                        ..Default::default()
                    })),
                }),
            }),
            ..Default::default()
        };
        let s = sandbox_status(status);
        assert_eq!(s.sandbox.state, core::SandboxState::Ready);
        assert_eq!(s.ip, "10.88.0.5");
        assert_eq!(s.additional_ips, vec!["fd00::5".to_owned()]);
        assert!(s.namespaces.host_network);
        assert!(!s.namespaces.host_pid);
        assert_eq!(s.sandbox.metadata.attempt, 2);
    }

    #[test]
    fn container_config_keeps_env_order_mounts_and_security() {
        let config = core::ContainerConfig {
            metadata: core::ContainerMetadata {
                name: "app".into(),
                attempt: 3,
            },
            image: "localhost:5000/busybox:latest".into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec!["echo hi".into()],
            envs: vec![("B".into(), "2".into()), ("A".into(), "1".into())],
            mounts: vec![core::Mount {
                container_path: "/data".into(),
                host_path: "/var/lib/kubelet/pods/u1/volumes/x".into(),
                readonly: true,
                propagation: core::MountPropagation::HostToContainer,
                ..Default::default()
            }],
            log_path: "app/3.log".into(),
            resources: Some(core::LinuxResources {
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            }),
            security: core::ContainerSecurity {
                capabilities: core::Capabilities {
                    add: vec!["NET_ADMIN".into()],
                    drop: vec!["ALL".into()],
                },
                no_new_privs: true,
                run_as_user: Some(0),
                seccomp: Some(core::SecurityProfile::Localhost(
                    "/var/lib/kubelet/seccomp/deny.json".into(),
                )),
                apparmor: Some(core::SecurityProfile::Localhost("k8s-deny".into())),
                selinux: Some(core::SeLinuxOptions {
                    type_: "spc_t".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let cri = container_config(&config);
        assert_eq!(cri.metadata.as_ref().map(|m| m.attempt), Some(3));
        assert_eq!(
            cri.envs
                .iter()
                .map(|kv| kv.key.as_str())
                .collect::<Vec<_>>(),
            ["B", "A"]
        );
        assert_eq!(
            cri.mounts[0].propagation,
            cri::MountPropagation::PropagationHostToContainer as i32
        );
        assert_eq!(cri.log_path, "app/3.log");
        let linux = cri.linux.expect("linux");
        assert_eq!(
            linux.resources.map(|r| r.memory_limit_in_bytes),
            Some(64 << 20)
        );
        let sec = linux.security_context.expect("security");
        assert!(sec.no_new_privs);
        assert_eq!(sec.run_as_user.map(|u| u.value), Some(0));
        let caps = sec.capabilities.expect("caps");
        assert_eq!(caps.drop_capabilities, ["ALL"]);
        let localhost = cri::security_profile::ProfileType::Localhost as i32;
        let seccomp = sec.seccomp.as_ref().expect("seccomp");
        assert_eq!(
            (seccomp.profile_type, seccomp.localhost_ref.as_str()),
            (localhost, "/var/lib/kubelet/seccomp/deny.json")
        );
        let apparmor = sec.apparmor.as_ref().expect("apparmor");
        assert_eq!(
            (apparmor.profile_type, apparmor.localhost_ref.as_str()),
            (localhost, "k8s-deny")
        );
        #[allow(deprecated)]
        let deprecated = sec.apparmor_profile.as_str();
        assert_eq!(
            deprecated, "localhost/k8s-deny",
            "older runtimes read this one"
        );
        assert_eq!(
            sec.selinux_options.map(|o| o.r#type),
            Some("spc_t".to_owned())
        );
        let host = cri::NamespaceMode::Node as i32;
        assert_eq!(
            sec.namespace_options
                .and_then(|n| n.userns_options)
                .map(|u| u.mode),
            Some(host),
            "the host's user namespace, said explicitly as upstream does"
        );
    }

    #[test]
    fn unknown_container_state_maps_to_unknown() {
        assert_eq!(container_state(42), core::ContainerState::Unknown);
        assert_eq!(
            container_state(cri::ContainerState::ContainerExited as i32),
            core::ContainerState::Exited
        );
    }
}
