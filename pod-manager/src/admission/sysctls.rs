//! Which sysctls a pod may set (upstream `pkg/kubelet/sysctl`, v1.37): the safe set for
//! the running kernel plus the node's `allowedUnsafeSysctls`, each only where the pod
//! has its own namespace for it.

use std::collections::BTreeMap;
use std::fmt;

/// The kernel namespace a sysctl belongs to (upstream `utilsysctl.Namespace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Namespace {
    Ipc,
    Net,
    Uts,
    User,
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ipc => "IPC",
            Self::Net => "Net",
            Self::Uts => "UTS",
            Self::User => "User",
        })
    }
}

/// The safe sysctls of v1.37 and the kernel version from which each is namespaced
/// (`safe_sysctls.go`).
const SAFE_SYSCTLS: &[(&str, Option<(u32, u32)>)] = &[
    ("kernel.shm_rmid_forced", None),
    ("net.ipv4.ip_local_port_range", None),
    ("net.ipv4.tcp_syncookies", None),
    ("net.ipv4.ping_group_range", None),
    ("net.ipv4.ip_unprivileged_port_start", None),
    ("net.ipv4.ip_local_reserved_ports", Some((3, 16))),
    ("net.ipv4.tcp_keepalive_time", Some((4, 5))),
    ("net.ipv4.tcp_fin_timeout", Some((4, 6))),
    ("net.ipv4.tcp_keepalive_intvl", Some((4, 5))),
    ("net.ipv4.tcp_keepalive_probes", Some((4, 5))),
    ("net.ipv4.tcp_rmem", Some((4, 15))),
    ("net.ipv4.tcp_wmem", Some((4, 15))),
    ("net.ipv4.tcp_slow_start_after_idle", Some((4, 15))),
    ("net.ipv4.tcp_notsent_lowat", Some((4, 6))),
];

/// Longest sysctl name or pattern the API accepts (upstream `SysctlMaxLength`).
const MAX_LENGTH: usize = 253;

/// The sysctls pods may set on this node (upstream `patternAllowlist`): exact names and
/// `prefix*` patterns, each with its namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysctlAllowlist {
    names: BTreeMap<String, Namespace>,
    prefixes: BTreeMap<String, Namespace>,
}

impl SysctlAllowlist {
    /// The safe sysctls the running kernel (`major.minor`; `None` when unknown, which
    /// keeps only those without a minimum) namespaces, plus `allowed_unsafe`
    /// (`allowedUnsafeSysctls`, names or `prefix*` patterns). Fails with upstream's
    /// message on a pattern that is malformed or not known to be namespaced.
    pub fn new(kernel: Option<(u32, u32)>, allowed_unsafe: &[String]) -> Result<Self, String> {
        let safe = SAFE_SYSCTLS
            .iter()
            .filter(|(_, since)| since.is_none_or(|since| kernel.is_some_and(|k| k >= since)))
            .map(|(name, _)| (*name).to_owned());
        let mut list = Self::default();
        for pattern in safe.chain(allowed_unsafe.iter().cloned()) {
            if !is_valid_pattern(&pattern) {
                return Err(format!(
                    "sysctl {pattern:?} must have at most {MAX_LENGTH} characters and match \
                     regex ([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]"
                ));
            }
            let normalized = normalize_name(&pattern);
            let (name, prefixed) = match normalized.find('*') {
                Some(star) => (normalized[..star].to_owned(), true),
                None => (normalized, false),
            };
            let Some(namespace) = namespace_of(&name) else {
                return Err(format!(
                    "the sysctls {name:?} are not known to be namespaced"
                ));
            };
            if prefixed {
                list.prefixes.insert(name, namespace);
            } else {
                list.names.insert(name, namespace);
            }
        }
        Ok(list)
    }

    /// Whether a pod may set `sysctl` given the namespaces it shares with the host;
    /// the error is upstream's, e.g. `"kernel.msgmax" not allowlisted`.
    pub fn check(
        &self,
        sysctl: &str,
        host_network: bool,
        host_ipc: bool,
        host_users: bool,
    ) -> Result<(), String> {
        let sysctl = normalize_name(sysctl);
        let namespace = self.names.get(&sysctl).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| sysctl.starts_with(prefix.as_str()))
                .map(|(_, ns)| *ns)
        });
        let Some(namespace) = namespace else {
            return Err(format!("{sysctl:?} not allowlisted"));
        };
        let shared = match namespace {
            Namespace::Ipc => host_ipc,
            Namespace::Net => host_network,
            Namespace::User => host_users,
            Namespace::Uts => false,
        };
        if shared {
            return Err(format!(
                "{sysctl:?} not allowed with host {namespace} enabled"
            ));
        }
        Ok(())
    }
}

/// The running kernel's `major.minor`, from `/proc/sys/kernel/osrelease`.
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel_version(&release)
}

fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Upstream `NormalizeName`: a sysctl written with `/` separators (`net/ipv4/ip_forward`)
/// becomes the dotted form runc checks, swapping `.` and `/` so that a dot inside a
/// component (`eno2.100`) survives as a slash.
pub(crate) fn normalize_name(name: &str) -> String {
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

/// The sysctls of `defaults` (`defaultPodSysctls`) that a pod whose spec is `spec`
/// takes, by normalized name (upstream `applyPodSysctls`): IPC ones unless it shares the
/// host's IPC namespace, network ones and `kernel.domainname` unless it shares the
/// host's network, user ones only in its own user namespace; a sysctl of no pod
/// namespace is left out. The pod's own `securityContext.sysctls` go over them.
pub(crate) fn pod_defaults(
    defaults: &BTreeMap<String, String>,
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> impl Iterator<Item = (String, String)> {
    let host_ipc = spec.host_ipc.unwrap_or(false);
    let host_network = spec.host_network.unwrap_or(false);
    let own_users = spec.host_users == Some(false);
    defaults.iter().filter_map(move |(name, value)| {
        let name = normalize_name(name);
        // The prefix patterns' stems are no sysctls of their own.
        let taken = match namespace_of(&name) {
            _ if name == "kernel.shm" || name == "kernel.msg" => false,
            Some(Namespace::Ipc) => !host_ipc,
            Some(Namespace::Net | Namespace::Uts) => !host_network,
            Some(Namespace::User) => own_users,
            None => false,
        };
        taken.then(|| (name, value.clone()))
    })
}

/// Upstream `namespaceOf`.
fn namespace_of(name: &str) -> Option<Namespace> {
    let exact = match name {
        "kernel.domainname" => Some(Namespace::Uts),
        // `kernel.shm` and `kernel.msg` are there for the prefix patterns `kernel.shm*`
        // and `kernel.msg*`.
        "kernel.sem"
        | "kernel.shmall"
        | "kernel.shmmax"
        | "kernel.shmmni"
        | "kernel.shm_rmid_forced"
        | "kernel.shm"
        | "kernel.msgmax"
        | "kernel.msgmnb"
        | "kernel.msgmni"
        | "kernel.msg" => Some(Namespace::Ipc),
        _ => None,
    };
    exact.or_else(|| {
        [
            ("net.", Namespace::Net),
            ("fs.mqueue.", Namespace::Ipc),
            ("user.", Namespace::User),
        ]
        .into_iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, ns)| ns)
    })
}

/// Upstream `IsValidSysctlPattern`: segments of `[a-z0-9]([-_a-z0-9]*[a-z0-9])?` joined by
/// `.` or `/`, the last one `([a-z0-9][-_a-z0-9]*)?[a-z0-9*]` (so `*` only at the end).
fn is_valid_pattern(pattern: &str) -> bool {
    if pattern.len() > MAX_LENGTH {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let inner = |c: u8| alnum(c) || c == b'-' || c == b'_';
    let segments: Vec<&[u8]> = pattern
        .as_bytes()
        .split(|c| *c == b'.' || *c == b'/')
        .collect();
    let Some((last, rest)) = segments.split_last() else {
        return false;
    };
    let inner_ok = rest.iter().all(|s| match s {
        [] => false,
        [only] => alnum(*only),
        [first, middle @ .., end] => {
            alnum(*first) && alnum(*end) && middle.iter().all(|c| inner(*c))
        }
    });
    let last_ok = match last {
        [] => false,
        [only] => alnum(*only) || *only == b'*',
        [first, middle @ .., end] => {
            alnum(*first) && middle.iter().all(|c| inner(*c)) && (alnum(*end) || *end == b'*')
        }
    };
    inner_ok && last_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(unsafe_sysctls: &[&str]) -> SysctlAllowlist {
        let patterns: Vec<String> = unsafe_sysctls.iter().map(|s| (*s).to_owned()).collect();
        SysctlAllowlist::new(Some((6, 1)), &patterns).expect("valid")
    }

    #[test]
    fn safe_sysctls_are_allowed_and_others_are_not() {
        let list = list(&[]);
        assert_eq!(
            list.check("net.ipv4.tcp_syncookies", false, false, true),
            Ok(())
        );
        assert_eq!(
            list.check("kernel.shm_rmid_forced", false, false, true),
            Ok(())
        );
        assert_eq!(
            list.check("kernel.msgmax", false, false, true),
            Err("\"kernel.msgmax\" not allowlisted".to_owned())
        );
    }

    #[test]
    fn safe_sysctls_follow_the_kernel_version() {
        let old = SysctlAllowlist::new(Some((4, 4)), &[]).expect("valid");
        assert!(old.check("net.ipv4.tcp_rmem", false, false, true).is_err());
        assert!(
            old.check("net.ipv4.ip_local_reserved_ports", false, false, true)
                .is_ok()
        );
        let unknown = SysctlAllowlist::new(None, &[]).expect("valid");
        assert!(
            unknown
                .check("net.ipv4.ip_local_reserved_ports", false, false, true)
                .is_err()
        );
        assert!(
            unknown
                .check("net.ipv4.tcp_syncookies", false, false, true)
                .is_ok()
        );
    }

    #[test]
    fn unsafe_patterns_allow_by_prefix_unless_the_namespace_is_the_hosts() {
        let list = list(&["kernel.msg*", "net.core.somaxconn"]);
        assert_eq!(list.check("kernel.msgmax", false, false, true), Ok(()));
        assert_eq!(list.check("net/core/somaxconn", false, false, true), Ok(()));
        assert_eq!(
            list.check("net.core.somaxconn", true, false, true),
            Err("\"net.core.somaxconn\" not allowed with host Net enabled".to_owned())
        );
        assert_eq!(
            list.check("kernel.msgmax", false, true, true),
            Err("\"kernel.msgmax\" not allowed with host IPC enabled".to_owned())
        );
    }

    #[test]
    fn bad_patterns_are_refused_as_upstream() {
        let error = |p: &str| SysctlAllowlist::new(None, &[p.to_owned()]).expect_err(p);
        assert_eq!(
            error("kernel.panic"),
            "the sysctls \"kernel.panic\" are not known to be namespaced"
        );
        assert!(error("Net.Core").starts_with("sysctl \"Net.Core\" must have at most 253"));
        assert!(error("net.*.x").contains("must have at most"));
        assert!(SysctlAllowlist::new(None, &["net.*".to_owned()]).is_ok());
        assert!(SysctlAllowlist::new(None, &["fs.mqueue.*".to_owned()]).is_ok());
    }

    #[test]
    fn names_normalize_like_upstream() {
        assert_eq!(normalize_name("net.ipv4.ip_forward"), "net.ipv4.ip_forward");
        assert_eq!(normalize_name("net/ipv4/ip_forward"), "net.ipv4.ip_forward");
        assert_eq!(
            normalize_name("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(
            normalize_name("net.ipv4.conf.eno2/100.rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(normalize_name("kernel"), "kernel");
        assert_eq!(parse_kernel_version("6.18.44-fc-v1147\n"), Some((6, 18)));
    }
}
