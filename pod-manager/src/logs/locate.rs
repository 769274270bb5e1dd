//! Which container instance's log a request means, and where that log is: upstream's
//! `validateContainerLogStatus` on the pod's status, then the runtime's container status.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kubelet_core::Runtime;

use crate::{Error, Result};

/// The log of one container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLog {
    /// The runtime's container id (without the `containerd://` scheme).
    pub container_id: String,
    /// The log file.
    pub path: PathBuf,
}

fn unavailable(message: String) -> Error {
    Error::LogsUnavailable { message }
}

/// The id of the container instance whose log to read, as the pod status shows it
/// (`containerd://...`), as upstream's `validateContainerLogStatus`: the running
/// instance, else the last terminated one; with `previous`, the one before the current.
/// Errors carry upstream's messages, e.g. `previous terminated container "app" in pod
/// "web" not found` or `container "app" in pod "web" is waiting to start:
/// ContainerCreating`.
pub fn log_container_id(
    pod_name: &str,
    status: &PodStatus,
    container: &str,
    previous: bool,
) -> Result<String> {
    let found = [
        &status.container_statuses,
        &status.init_container_statuses,
        &status.ephemeral_container_statuses,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .find(|s| s.name == container);
    let Some(found) = found else {
        return Err(unavailable(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        )));
    };
    let non_empty =
        |id: &Option<String>| id.as_deref().filter(|id| !id.is_empty()).map(str::to_owned);
    let last_terminated = found
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let state = found.state.clone().unwrap_or_default();
    let terminated_here = || {
        unavailable(format!(
            "container {container:?} in pod {pod_name:?} is terminated"
        ))
    };
    if previous {
        return last_terminated
            .and_then(|t| non_empty(&t.container_id))
            .ok_or_else(|| {
                unavailable(format!(
                    "previous terminated container {container:?} in pod {pod_name:?} not found"
                ))
            });
    }
    if state.running.is_some() {
        return non_empty(&found.container_id).ok_or_else(|| {
            unavailable(format!(
                "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
            ))
        });
    }
    if let Some(terminated) = &state.terminated {
        // The next instance did not start: the last one's log.
        return non_empty(&terminated.container_id)
            .or_else(|| last_terminated.and_then(|t| non_empty(&t.container_id)))
            .ok_or_else(terminated_here);
    }
    if let Some(last) = last_terminated {
        return non_empty(&last.container_id).ok_or_else(terminated_here);
    }
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let why = match reason {
            "ErrImagePull" => "image can't be pulled",
            "ImagePullBackOff" => "trying and failing to pull image",
            other => other,
        };
        return Err(unavailable(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
        )));
    }
    Err(unavailable(format!(
        "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
    )))
}

/// The runtime's id in a status' container id (`containerd://abc` -> `abc`).
pub fn runtime_container_id(status_id: &str) -> &str {
    status_id.split_once("://").map_or(status_id, |(_, id)| id)
}

/// Whether the pod's spec has a container, init container or ephemeral container of
/// that name.
fn has_container(pod: &Pod, name: &str) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    spec.containers.iter().any(|c| c.name == name)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
}

/// Finds the log of `container` in `pod` (with `previous`, of its instance before the
/// current one): the instance from the pod's status, its log path from the runtime.
/// When the runtime reports no path, the kubelet's own layout under `pod_logs_dir`
/// (`<namespace>_<name>_<uid>/<container>/<attempt>.log`) is used.
pub async fn locate_container_log(
    runtime: &dyn Runtime,
    pod: &Pod,
    container: &str,
    previous: bool,
    pod_logs_dir: &Path,
) -> Result<ContainerLog> {
    let meta = &pod.metadata;
    let pod_name = meta.name.as_deref().unwrap_or_default();
    if !has_container(pod, container) {
        return Err(Error::ContainerNotFound {
            pod: pod_name.to_owned(),
            container: container.to_owned(),
        });
    }
    let status = pod.status.clone().unwrap_or_default();
    let status_id = log_container_id(pod_name, &status, container, previous)?;
    let id = runtime_container_id(&status_id);
    let runtime_status = runtime.container_status(id).await.map_err(|e| {
        tracing::debug!(container = %status_id, error = %e, "container status for its logs");
        unavailable(format!("unable to retrieve container logs for {status_id}"))
    })?;
    let path = if runtime_status.log_path.is_empty() {
        pod_logs_dir
            .join(format!(
                "{}_{}_{}",
                meta.namespace.as_deref().unwrap_or_default(),
                pod_name,
                meta.uid.as_deref().unwrap_or_default()
            ))
            .join(container)
            .join(format!("{}.log", runtime_status.container.metadata.attempt))
    } else {
        PathBuf::from(&runtime_status.log_path)
    };
    Ok(ContainerLog {
        container_id: id.to_owned(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus,
    };

    use super::*;

    fn status(
        name: &str,
        id: Option<&str>,
        state: ContainerState,
        last: Option<&str>,
    ) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            container_id: id.map(str::to_owned),
            state: Some(state),
            last_state: last.map(|id| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(id.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod_status(statuses: Vec<ContainerStatus>) -> PodStatus {
        PodStatus {
            container_statuses: Some(statuses),
            ..Default::default()
        }
    }

    fn id(
        status: &PodStatus,
        container: &str,
        previous: bool,
    ) -> std::result::Result<String, String> {
        log_container_id("web", status, container, previous).map_err(|e| e.to_string())
    }

    #[test]
    fn the_running_instance_or_the_previous_one() {
        let s = pod_status(vec![status(
            "app",
            Some("containerd://b"),
            running(),
            Some("containerd://a"),
        )]);
        assert_eq!(id(&s, "app", false), Ok("containerd://b".into()));
        assert_eq!(id(&s, "app", true), Ok("containerd://a".into()));
        let s = pod_status(vec![status("app", Some("containerd://a"), running(), None)]);
        assert_eq!(
            id(&s, "app", true),
            Err("previous terminated container \"app\" in pod \"web\" not found".into())
        );
        assert_eq!(
            id(&s, "db", false),
            Err("container \"db\" in pod \"web\" is not available".into())
        );
    }

    #[test]
    fn terminated_and_waiting_containers() {
        let terminated = |id: Option<&str>| ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: id.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = pod_status(vec![status(
            "app",
            Some("c://x"),
            terminated(Some("c://x")),
            None,
        )]);
        assert_eq!(id(&s, "app", false), Ok("c://x".into()));
        let s = pod_status(vec![status("app", None, terminated(None), Some("c://old"))]);
        assert_eq!(id(&s, "app", false), Ok("c://old".into()));
        let s = pod_status(vec![status("app", None, terminated(None), None)]);
        assert_eq!(
            id(&s, "app", false),
            Err("container \"app\" in pod \"web\" is terminated".into())
        );
        // Waiting after a crash: the last run's log.
        let s = pod_status(vec![status(
            "app",
            None,
            waiting("CrashLoopBackOff"),
            Some("c://crashed"),
        )]);
        assert_eq!(id(&s, "app", false), Ok("c://crashed".into()));
        let s = pod_status(vec![status(
            "app",
            None,
            waiting("ContainerCreating"),
            None,
        )]);
        assert_eq!(
            id(&s, "app", false),
            Err("container \"app\" in pod \"web\" is waiting to start: ContainerCreating".into())
        );
        let s = pod_status(vec![status("app", None, waiting("ImagePullBackOff"), None)]);
        assert_eq!(
            id(&s, "app", false),
            Err("container \"app\" in pod \"web\" is waiting to start: trying and failing to pull image".into())
        );
        let s = pod_status(vec![status("app", None, waiting("ErrImagePull"), None)]);
        assert_eq!(
            id(&s, "app", false),
            Err(
                "container \"app\" in pod \"web\" is waiting to start: image can't be pulled"
                    .into()
            )
        );
        let s = pod_status(vec![status("app", None, ContainerState::default(), None)]);
        assert_eq!(
            id(&s, "app", false),
            Err("container \"app\" in pod \"web\" is waiting to start - no logs yet".into())
        );
    }

    #[test]
    fn init_containers_are_found_too() {
        let s = PodStatus {
            init_container_statuses: Some(vec![status("init", Some("c://i"), running(), None)]),
            ..Default::default()
        };
        assert_eq!(id(&s, "init", false), Ok("c://i".into()));
    }

    #[test]
    fn runtime_ids_lose_their_scheme() {
        assert_eq!(runtime_container_id("containerd://abc"), "abc");
        assert_eq!(runtime_container_id("abc"), "abc");
    }
}
