//! Security settings of sandboxes and containers (upstream `generatePodSandboxLinuxConfig`,
//! `determineEffectiveSecurityContext`, `verifyRunAsNonRoot`).

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use kubelet_core::{
    Capabilities, ContainerSecurity, LinuxSandboxConfig, PodRef, StringMap, pod_qos,
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

/// The sandbox's Linux settings (upstream `generatePodSandboxLinuxConfig`).
pub(super) fn sandbox_linux_config(pod: &Pod) -> LinuxSandboxConfig {
    let spec = pod_spec(pod);
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let mut config = LinuxSandboxConfig {
        cgroup_parent: kubelet_cgroups::pod_cgroupfs_path(pod_qos(pod), uid),
        // Upstream only sends namespace options when the pod has a security context,
        // which API defaulting always gives it; sending them always is the same for
        // every defaulted pod.
        namespaces: namespace_options(&spec),
        privileged: has_privileged_container(pod),
        ..Default::default()
    };
    if let Some(sc) = spec.security_context.as_ref() {
        config.run_as_user = sc.run_as_user;
        config.run_as_group = sc.run_as_group;
        // fsGroup first, then the supplemental groups, as upstream orders them.
        config.supplemental_groups = sc
            .fs_group
            .into_iter()
            .chain(sc.supplemental_groups.iter().flatten().copied())
            .collect();
        config.sysctls = sc
            .sysctls
            .iter()
            .flatten()
            .map(|s| (normalize_sysctl(&s.name), s.value.clone()))
            .collect::<StringMap>();
    }
    config
}

/// Upstream `NormalizeName`: a sysctl written with `/` separators (`net/ipv4/ip_forward`)
/// becomes the dotted form runc checks, swapping `.` and `/` so that a dot inside a
/// component (`eno2.100`) survives as a slash.
fn normalize_sysctl(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => name.to_owned(),
    }
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

/// The container's security settings (upstream `determineEffectiveSecurityContext`),
/// without the image's user: see [`apply_image_user`].
pub(super) fn container_security(
    pod: &Pod,
    container: &Container,
    ctx: &NodeContext,
) -> ContainerSecurity {
    let spec = pod_spec(pod);
    let sc = effective_security_context(pod, container);
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
    ContainerSecurity {
        capabilities,
        privileged: sc.privileged.unwrap_or(false),
        namespaces: namespace_options(&spec),
        run_as_user: sc.run_as_user,
        run_as_group: sc.run_as_group,
        run_as_username: String::new(),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups,
        // Only an explicit allowPrivilegeEscalation: false sets no_new_privs.
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths,
        readonly_paths,
    }
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
fn format_pod(pod: &Pod) -> String {
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
    fn sysctl_names_normalize_like_upstream() {
        assert_eq!(
            normalize_sysctl("net.ipv4.ip_forward"),
            "net.ipv4.ip_forward"
        );
        assert_eq!(
            normalize_sysctl("net/ipv4/ip_forward"),
            "net.ipv4.ip_forward"
        );
        assert_eq!(
            normalize_sysctl("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(
            normalize_sysctl("net.ipv4.conf.eno2/100.rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(normalize_sysctl("kernel"), "kernel");
    }

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
