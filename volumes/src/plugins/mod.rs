//! The built-in volume plugins and what they share: where volumes live, the node's
//! allocatable, the pod's fsGroup and fsUser, nested mount points.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::core::v1::{Container, Pod};
use kubelet_core::NodeResources;

use crate::error::{Error, Result};
use crate::sys;

pub(crate) mod config_map;
pub(crate) mod downward_api;
pub(crate) mod empty_dir;
pub(crate) mod host_path;
pub(crate) mod local;
pub(crate) mod projected;
pub(crate) mod publish;
pub(crate) mod secret;

/// Upstream `EscapeQualifiedName`: `kubernetes.io/empty-dir` → `kubernetes.io~empty-dir`.
pub(crate) fn escape_plugin_name(name: &str) -> String {
    name.replace('/', "~")
}

/// `<pod_volume_dir>/<escaped plugin>/<volume>`.
pub(crate) fn volume_path(pod_volume_dir: &Path, plugin: &str, volume: &str) -> PathBuf {
    pod_volume_dir.join(escape_plugin_name(plugin)).join(volume)
}

/// The pod's directory, parent of `pod_volume_dir`.
pub(crate) fn pod_dir(pod_volume_dir: &Path) -> &Path {
    pod_volume_dir.parent().unwrap_or(pod_volume_dir)
}

/// A volume name is one path component: anything else would leave the pod's directory.
pub(crate) fn check_volume_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::Invalid(format!("invalid volume name {name:?}")));
    }
    Ok(())
}

/// The node's allocatable, which may be learnt after the volume manager is built.
#[derive(Debug, Default)]
pub(crate) struct NodeState {
    allocatable: RwLock<NodeResources>,
}

impl NodeState {
    pub(crate) fn get(&self) -> NodeResources {
        *self
            .allocatable
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set(&self, allocatable: NodeResources) {
        *self
            .allocatable
            .write()
            .unwrap_or_else(PoisonError::into_inner) = allocatable;
    }
}

pub(crate) type SharedNode = Arc<NodeState>;

/// The pod's `securityContext.fsGroup`.
pub(crate) fn pod_fs_group(pod: &Pod) -> Option<i64> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.fs_group)
}

/// Upstream `FsUserFrom`: the `runAsUser` every container (init, regular, ephemeral)
/// runs as, when they all set the same one, pod-level or their own.
pub(crate) fn fs_user_from(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let pod_user = spec.security_context.as_ref().and_then(|sc| sc.run_as_user);
    let effective = |own: Option<i64>| own.or(pod_user);
    let users = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c: &Container| effective(c.security_context.as_ref().and_then(|sc| sc.run_as_user)))
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| effective(c.security_context.as_ref().and_then(|sc| sc.run_as_user))),
        );
    let mut fs_user = None;
    for user in users {
        let user = user?;
        match fs_user {
            None => fs_user = Some(user),
            Some(seen) if seen != user => return None,
            Some(_) => {}
        }
    }
    fs_user
}

/// Upstream `getNestedMountpoints`: where a container mounts another volume inside
/// this one (`/etc/cfg` and `/etc/cfg/extra`), the relative paths (`extra`) that must
/// exist in this volume as mount points.
pub(crate) fn nested_mount_points(volume: &str, pod: &Pod) -> Result<Vec<String>> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    let mounts_of = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| c.volume_mounts.as_deref().unwrap_or_default())
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| c.volume_mounts.as_deref().unwrap_or_default()),
        );
    for mounts in mounts_of {
        let mut all: Vec<String> = mounts.iter().map(|m| clean_abs(&m.mount_path)).collect();
        all.sort();
        let mine = mounts
            .iter()
            .filter(|m| m.name == volume)
            .map(|m| clean_abs(&m.mount_path));
        for my_mount_point in mine {
            if my_mount_point.starts_with("../") {
                return Err(Error::Invalid(format!(
                    "invalid container mount point {my_mount_point}"
                )));
            }
            let with_slash = format!("{my_mount_point}/");
            let mut previous: Vec<String> = Vec::new();
            for mount_point in &all {
                if !mount_point.starts_with(&with_slash) {
                    continue;
                }
                if previous.iter().any(|p| mount_point.starts_with(p.as_str())) {
                    continue;
                }
                previous.push(format!("{mount_point}/"));
                found.push(mount_point[with_slash.len()..].to_owned());
            }
        }
    }
    Ok(found)
}

/// Go's `filepath.Clean` of a mount path, as text.
fn clean_abs(path: &str) -> String {
    let cleaned = sys::clean(Path::new(path));
    let text = cleaned.to_string_lossy().into_owned();
    if text.is_empty() {
        ".".to_owned()
    } else {
        text
    }
}

/// Runs blocking filesystem work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, SecurityContext, VolumeMount};

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn nested_mount_points_as_upstream() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    volume_mounts: Some(vec![
                        mount("cfg", "/etc/cfg"),
                        mount("extra", "/etc/cfg/extra/"),
                        mount("deeper", "/etc/cfg/extra/deeper"),
                        mount("other", "/etc/cfgother"),
                        mount("two", "/etc/cfg/b/c"),
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            nested_mount_points("cfg", &pod).expect("nested"),
            vec!["b/c".to_owned(), "extra".to_owned()]
        );
        assert!(nested_mount_points("extra", &pod).expect("nested") == vec!["deeper".to_owned()]);
    }

    #[test]
    fn fs_user_needs_one_user_for_all_containers() {
        let container = |name: &str, user: Option<i64>| Container {
            name: name.into(),
            security_context: user.map(|u| SecurityContext {
                run_as_user: Some(u),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = |pod_user: Option<i64>, containers: Vec<Container>| Pod {
            spec: Some(PodSpec {
                security_context: Some(PodSecurityContext {
                    run_as_user: pod_user,
                    ..Default::default()
                }),
                containers,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            fs_user_from(&pod(Some(1000), vec![container("a", None)])),
            Some(1000)
        );
        assert_eq!(
            fs_user_from(&pod(
                Some(1000),
                vec![container("a", None), container("b", Some(2))]
            )),
            None
        );
        assert_eq!(
            fs_user_from(&pod(None, vec![container("a", Some(5))])),
            Some(5)
        );
        assert_eq!(fs_user_from(&pod(None, vec![container("a", None)])), None);
    }

    #[test]
    fn plugin_names_escape_and_volume_names_are_checked() {
        assert_eq!(
            escape_plugin_name("kubernetes.io/empty-dir"),
            "kubernetes.io~empty-dir"
        );
        assert!(check_volume_name("data").is_ok());
        for bad in ["", ".", "..", "a/b"] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
    }
}
