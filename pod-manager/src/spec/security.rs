//! Security settings of sandboxes and containers (upstream `generatePodSandboxLinuxConfig`,
//! `determineEffectiveSecurityContext`, `verifyRunAsNonRoot`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, Pod, PodSecurityContext, SELinuxOptions as ApiSeLinuxOptions,
    SeccompProfile, SecurityContext,
};
use kubelet_core::{
    Capabilities, CgroupDriver, ContainerSecurity, LinuxSandboxConfig, NamespaceOptions, PodRef,
    SeLinuxOptions, SecurityProfile, UserNamespace, pod_qos,
};

use super::{NodeContext, namespace_options, pod_spec, spec_error};
use crate::Result;

/// Paths masked in every container unless its procMount is `Unmasked` (upstream's list,
/// kept in sync with moby's defaults); the host's thermal_throttle paths follow.
const DEFAULT_MASKED_PATHS: &[&str] = &[
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
];

/// Paths made read-only in every container unless its procMount is `Unmasked`.
const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The host's `/sys/devices/system/cpu/cpu<N>/thermal_throttle` directories that exist,
/// for every possible CPU: upstream masks them in containers after the default masked
/// paths. Reads `/sys` once; store the result in [`NodeContext::thermal_throttle_paths`].
pub fn host_thermal_throttle_paths() -> Vec<String> {
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|text| parse_cpu_list(&text))
        .unwrap_or_else(|| {
            let count = std::thread::available_parallelism().map_or(1, usize::from);
            (0..count).collect()
        });
    cpus.into_iter()
        .map(|cpu| format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle"))
        .filter(|path| std::path::Path::new(path).exists())
        .collect()
}

/// Parses a kernel CPU list such as `0-3,8`; `None` when malformed.
fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        match part.split_once('-') {
            Some((start, end)) => {
                let (start, end): (usize, usize) = (start.parse().ok()?, end.parse().ok()?);
                cpus.extend(start..=end);
            }
            None => cpus.push(part.parse::<usize>().ok()?),
        }
    }
    Some(cpus)
}

/// How the node confines pods: what the kubelet's configuration and the host decide
/// about seccomp, AppArmor and sysctls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSecurity {
    /// `seccompDefault`: a container without a seccomp profile gets the runtime's
    /// default profile instead of none.
    pub seccomp_default: bool,
    /// Where `Localhost` seccomp profiles are found (upstream `<root-dir>/seccomp`).
    pub seccomp_profile_root: PathBuf,
    /// Whether the host enforces AppArmor (see [`host_apparmor_enabled`]); pods that ask
    /// for a profile are refused when it does not.
    pub apparmor_enabled: bool,
    /// The sysctls pods may set.
    pub sysctls: crate::admission::SysctlAllowlist,
    /// `defaultPodSysctls` (with its feature gate): sysctls every pod's sandbox gets in
    /// the namespaces it has of its own, unless the pod sets them itself.
    pub default_sysctls: BTreeMap<String, String>,
    /// Whether the host enforces SELinux (see [`host_selinux_enabled`]): the files the
    /// kubelet mounts into containers are then relabelled by the runtime.
    pub selinux_enabled: bool,
}

/// Whether this host has SELinux enabled, as go-selinux decides it: selinuxfs is
/// mounted.
pub fn host_selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Whether this host enforces AppArmor, as runc decides it: the securityfs directory
/// exists and the module's `enabled` parameter is `Y`.
pub fn host_apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|enabled| enabled.starts_with('Y'))
}

/// The pod's own user namespace when it asks for one (`hostUsers: false`): the range
/// given to it before its sandbox was made ([`crate::userns`]). A pod without one here
/// never runs in the host's namespace instead: its sandbox is refused.
pub(super) fn user_namespace(pod: &Pod, ctx: &NodeContext) -> Result<Option<UserNamespace>> {
    if pod_spec(pod).host_users != Some(false) {
        return Ok(None);
    }
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    ctx.user_namespaces.mapping(uid).map(Some).ok_or_else(|| {
        spec_error(
            pod,
            "",
            "the pod asks for its own user namespace (hostUsers: false) and has none allocated",
        )
    })
}

/// The sandbox's Linux settings (upstream `generatePodSandboxLinuxConfig`).
pub(super) fn sandbox_linux_config(
    pod: &Pod,
    cgroup_driver: CgroupDriver,
    user_namespace: Option<UserNamespace>,
    default_sysctls: &BTreeMap<String, String>,
) -> LinuxSandboxConfig {
    let spec = pod_spec(pod);
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let mut config = LinuxSandboxConfig {
        cgroup_parent: kubelet_cgroups::pod_cgroup_parent(cgroup_driver, pod_qos(pod), uid),
        // Upstream only sends namespace options when the pod has a security context,
        // which API defaulting always gives it; sending them always is the same for
        // every defaulted pod.
        namespaces: NamespaceOptions {
            user_namespace,
            ..namespace_options(&spec)
        },
        privileged: has_privileged_container(pod),
        // The pause container always runs under the runtime's default profile, so that
        // the pod's own profiles can be as strict as they like (upstream #84623).
        seccomp: Some(SecurityProfile::RuntimeDefault),
        sysctls: crate::admission::pod_default_sysctls(default_sysctls, &spec).collect(),
        ..Default::default()
    };
    if let Some(sc) = spec.security_context.as_ref() {
        config.selinux = sc.se_linux_options.as_ref().map(selinux_options);
        config.run_as_user = sc.run_as_user;
        config.run_as_group = sc.run_as_group;
        // fsGroup first, then the supplemental groups, as upstream orders them.
        config.supplemental_groups = sc
            .fs_group
            .into_iter()
            .chain(sc.supplemental_groups.iter().flatten().copied())
            .collect();
        config.sysctls.extend(sc.sysctls.iter().flatten().map(|s| {
            (
                crate::admission::normalize_sysctl_name(&s.name),
                s.value.clone(),
            )
        }));
    }
    config
}

/// Whether any init, regular or ephemeral container of the pod is privileged: upstream
/// then makes the whole sandbox privileged.
fn has_privileged_container(pod: &Pod) -> bool {
    let spec = pod_spec(pod);
    let privileged = |sc: Option<&SecurityContext>| sc.and_then(|sc| sc.privileged) == Some(true);
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| privileged(c.security_context.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| privileged(c.security_context.as_ref()))
}

/// The container's security context with the pod's merged in (upstream
/// `DetermineEffectiveSecurityContext`): the pod contributes runAsUser, runAsGroup,
/// runAsNonRoot and SELinux options; each field the container sets wins.
fn effective_security_context(pod: &Pod, container: &Container) -> SecurityContext {
    let spec = pod_spec(pod);
    let from_pod = spec.security_context.as_ref().map(|sc| SecurityContext {
        se_linux_options: sc.se_linux_options.clone(),
        run_as_user: sc.run_as_user,
        run_as_group: sc.run_as_group,
        run_as_non_root: sc.run_as_non_root,
        ..Default::default()
    });
    let Some(own) = container.security_context.as_ref() else {
        return from_pod.unwrap_or_default();
    };
    let Some(mut merged) = from_pod else {
        return own.clone();
    };
    merged.se_linux_options = own.se_linux_options.clone().or(merged.se_linux_options);
    merged.capabilities = own.capabilities.clone();
    merged.privileged = own.privileged;
    merged.run_as_user = own.run_as_user.or(merged.run_as_user);
    merged.run_as_group = own.run_as_group.or(merged.run_as_group);
    merged.run_as_non_root = own.run_as_non_root.or(merged.run_as_non_root);
    merged.read_only_root_filesystem = own.read_only_root_filesystem;
    merged.allow_privilege_escalation = own.allow_privilege_escalation;
    merged.proc_mount = own.proc_mount.clone();
    merged
}

fn selinux_options(options: &ApiSeLinuxOptions) -> SeLinuxOptions {
    SeLinuxOptions {
        user: options.user.clone().unwrap_or_default(),
        role: options.role.clone().unwrap_or_default(),
        type_: options.type_.clone().unwrap_or_default(),
        level: options.level.clone().unwrap_or_default(),
    }
}

/// The container's seccomp profile (upstream `getSeccompProfile`): the container's
/// field, else the pod's, else the runtime's default with `seccompDefault` and none
/// without.
fn seccomp_profile(
    pod_sc: Option<&PodSecurityContext>,
    container_sc: Option<&SecurityContext>,
    security: &NodeSecurity,
) -> std::result::Result<SecurityProfile, String> {
    let field: Option<&SeccompProfile> = container_sc
        .and_then(|sc| sc.seccomp_profile.as_ref())
        .or_else(|| pod_sc.and_then(|sc| sc.seccomp_profile.as_ref()));
    let Some(field) = field else {
        return Ok(if security.seccomp_default {
            SecurityProfile::RuntimeDefault
        } else {
            SecurityProfile::Unconfined
        });
    };
    match field.type_.as_str() {
        "RuntimeDefault" => Ok(SecurityProfile::RuntimeDefault),
        "Localhost" => match field.localhost_profile.as_deref() {
            Some(profile) if !profile.is_empty() => Ok(SecurityProfile::Localhost(
                security
                    .seccomp_profile_root
                    .join(profile)
                    .display()
                    .to_string(),
            )),
            _ => Err("localhostProfile must be set if seccompProfile type is Localhost.".into()),
        },
        _ => Ok(SecurityProfile::Unconfined),
    }
}

/// The pod annotation that gave a container its AppArmor profile before the field.
const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// The container's AppArmor profile as the API says it (upstream `apparmor.GetProfile`):
/// the container's field, else the deprecated per-container annotation (static pods may
/// still carry only that), else the pod's field.
fn apparmor_field(pod: &Pod, container: &Container) -> Option<AppArmorProfile> {
    if let Some(profile) = container
        .security_context
        .as_ref()
        .and_then(|sc| sc.app_armor_profile.clone())
    {
        return Some(profile);
    }
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{APPARMOR_ANNOTATION_PREFIX}{}", container.name)));
    if let Some(value) = annotation {
        let (type_, localhost_profile) = match value.as_str() {
            "runtime/default" => ("RuntimeDefault", None),
            "unconfined" => ("Unconfined", None),
            other => match other.strip_prefix("localhost/") {
                Some(name) => ("Localhost", Some(name.to_owned())),
                None => return None,
            },
        };
        return Some(AppArmorProfile {
            type_: type_.to_owned(),
            localhost_profile,
        });
    }
    pod_spec(pod)
        .security_context
        .as_ref()
        .and_then(|sc| sc.app_armor_profile.clone())
}

/// The container's AppArmor profile for the runtime (upstream `getAppArmorProfile`).
fn apparmor_profile(
    pod: &Pod,
    container: &Container,
) -> std::result::Result<Option<SecurityProfile>, String> {
    let Some(profile) = apparmor_field(pod, container) else {
        return Ok(None);
    };
    match profile.type_.as_str() {
        "RuntimeDefault" => Ok(Some(SecurityProfile::RuntimeDefault)),
        "Unconfined" => Ok(Some(SecurityProfile::Unconfined)),
        "Localhost" => match profile.localhost_profile {
            Some(name) => Ok(Some(SecurityProfile::Localhost(name))),
            None => Err("missing localhost apparmor profile name".to_owned()),
        },
        other => Err(format!("unknown apparmor profile type: {other:?}")),
    }
}

/// Upstream's AppArmor admission (`apparmor.Validator`): `Err` with the message after
/// `Cannot enforce AppArmor: ` when the pod needs AppArmor and the host lacks it, or a
/// Localhost profile has no name.
pub(crate) fn validate_apparmor(pod: &Pod, host_enabled: bool) -> std::result::Result<(), String> {
    if !requires_apparmor(pod) {
        return Ok(());
    }
    if !host_enabled {
        return Err("AppArmor is not enabled on the host".to_owned());
    }
    let spec = pod_spec(pod);
    for container in super::all_containers(&spec) {
        if let Some(profile) = apparmor_field(pod, container)
            && profile.type_ == "Localhost"
            && profile
                .localhost_profile
                .as_deref()
                .is_none_or(|name| name.trim().is_empty())
        {
            let name = profile
                .localhost_profile
                .as_deref()
                .map_or_else(|| "nil".to_owned(), |name| format!("*{name}"));
            return Err(format!(
                "invalid empty AppArmor profile name: {}",
                go_quote(&format!(
                    "&AppArmorProfile{{Type:{},LocalhostProfile:{name},}}",
                    profile.type_
                ))
            ));
        }
    }
    Ok(())
}

/// Upstream `isRequired`: a pod or container profile other than Unconfined, or a
/// deprecated annotation other than `unconfined`.
fn requires_apparmor(pod: &Pod) -> bool {
    let confining = |p: Option<&AppArmorProfile>| p.is_some_and(|p| p.type_ != "Unconfined");
    let spec = pod_spec(pod);
    if confining(
        spec.security_context
            .as_ref()
            .and_then(|sc| sc.app_armor_profile.as_ref()),
    ) {
        return true;
    }
    if super::all_containers(&spec).any(|c| {
        confining(
            c.security_context
                .as_ref()
                .and_then(|sc| sc.app_armor_profile.as_ref()),
        )
    }) {
        return true;
    }
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .any(|(key, value)| key.starts_with(APPARMOR_ANNOTATION_PREFIX) && value != "unconfined")
}

/// The container's security settings (upstream `determineEffectiveSecurityContext`),
/// without the image's user: see [`apply_image_user`]. Fails on a Localhost seccomp or
/// AppArmor profile without a name.
pub(super) fn container_security(
    pod: &Pod,
    container: &Container,
    ctx: &NodeContext,
) -> Result<ContainerSecurity> {
    let spec = pod_spec(pod);
    let sc = effective_security_context(pod, container);
    let seccomp = seccomp_profile(
        spec.security_context.as_ref(),
        container.security_context.as_ref(),
        &ctx.security,
    )
    .map_err(|reason| spec_error(pod, &container.name, reason))?;
    let apparmor = apparmor_profile(pod, container)
        .map_err(|reason| spec_error(pod, &container.name, reason))?;
    let capabilities = sc
        .capabilities
        .as_ref()
        .map(|c| Capabilities {
            add: c.add.clone().unwrap_or_default(),
            drop: c.drop.clone().unwrap_or_default(),
        })
        .unwrap_or_default();
    let pod_sc = spec.security_context.as_ref();
    let supplemental_groups = pod_sc
        .and_then(|sc| sc.fs_group)
        .into_iter()
        .chain(
            pod_sc
                .and_then(|sc| sc.supplemental_groups.clone())
                .into_iter()
                .flatten(),
        )
        .collect();
    let unmasked = sc.proc_mount.as_deref() == Some("Unmasked");
    let (masked_paths, readonly_paths) = if unmasked {
        (Vec::new(), Vec::new())
    } else {
        (
            DEFAULT_MASKED_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .chain(ctx.thermal_throttle_paths.iter().cloned())
                .collect(),
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
        )
    };
    Ok(ContainerSecurity {
        capabilities,
        privileged: sc.privileged.unwrap_or(false),
        namespaces: kubelet_core::ContainerNamespaces {
            pod: NamespaceOptions {
                user_namespace: user_namespace(pod, ctx)?,
                ..namespace_options(&spec)
            },
            pid_target: None,
        },
        run_as_user: sc.run_as_user,
        run_as_group: sc.run_as_group,
        run_as_username: String::new(),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups,
        // Only an explicit allowPrivilegeEscalation: false sets no_new_privs.
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths,
        readonly_paths,
        seccomp: Some(seccomp),
        apparmor,
        selinux: sc.se_linux_options.as_ref().map(selinux_options),
    })
}

/// Runs the container as the image's user when neither the pod nor the container sets
/// runAsUser (upstream sets `RunAsUser` from the image's numeric user, and
/// `RunAsUsername` from its user name).
pub fn apply_image_user(
    security: &mut ContainerSecurity,
    image_uid: Option<i64>,
    image_user: &str,
) {
    if security.run_as_user.is_none() {
        security.run_as_user = image_uid;
        security.run_as_username = image_user.to_owned();
    }
}

/// Upstream `verifyRunAsNonRoot`: with runAsNonRoot set (pod or container), the effective
/// runAsUser must not be 0, or, without one, the image's user must be numeric, non-zero
/// and a valid UID. `image_uid` is the image's numeric user, `image_user` its user name
/// when not numeric. Fails with [`crate::Error::Spec`] whose reason is upstream's message.
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<()> {
    let sc = effective_security_context(pod, container);
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let described = go_quote(&format_pod(pod));
    let name = &container.name;
    let fail = |reason: String| Err(spec_error(pod, name, reason));
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            return fail(format!(
                "container's runAsUser breaks non-root policy (pod: {described}, container: {name})"
            ));
        }
        return Ok(());
    }
    match image_uid {
        None if !image_user.is_empty() => fail(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user}), cannot \
             verify user is non-root (pod: {described}, container: {name})"
        )),
        Some(0) => fail(format!(
            "container has runAsNonRoot and image will run as root (pod: {described}, \
             container: {name})"
        )),
        Some(uid) if !(0..=i64::from(i32::MAX)).contains(&uid) => fail(format!(
            "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be \
             1-({})): must be between 0 and {}, inclusive (pod: {described}, container: \
             {name})",
            i32::MAX,
            i32::MAX
        )),
        _ => Ok(()),
    }
}

/// Upstream `format.Pod`: `name_namespace(uid)`.
pub(crate) fn format_pod(pod: &Pod) -> String {
    let PodRef {
        namespace,
        name,
        uid,
    } = PodRef::of(pod);
    format!("{name}_{namespace}({uid})")
}

/// A string quoted as Go's `%q` (`strconv.Quote`), shared with the downward API.
pub(super) use kubelet_core::downward::go_quote;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,8\n"), Some(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("web_default(u-1)"), "\"web_default(u-1)\"");
        assert_eq!(go_quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\x01é\"");
    }

    #[test]
    fn image_user_only_without_run_as_user() {
        let mut security = ContainerSecurity::default();
        apply_image_user(&mut security, Some(1000), "");
        assert_eq!(security.run_as_user, Some(1000));
        let mut security = ContainerSecurity {
            run_as_user: Some(5),
            ..Default::default()
        };
        apply_image_user(&mut security, Some(1000), "app");
        assert_eq!(security.run_as_user, Some(5));
        assert_eq!(security.run_as_username, "");
        let mut security = ContainerSecurity::default();
        apply_image_user(&mut security, None, "nobody");
        assert_eq!(
            (security.run_as_user, security.run_as_username.as_str()),
            (None, "nobody")
        );
    }
}
