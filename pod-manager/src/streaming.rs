//! Which runtime object an exec, attach or port-forward request of the kubelet API
//! means: the running container of a pod by name, or the pod's ready sandbox, found as
//! upstream's `findContainer` and `GetPortForward` find them (among what the runtime
//! runs, not what the pod's status last said).

use kubelet_core::labels::{CONTAINER_NAME_LABEL, POD_UID_LABEL};
use kubelet_core::{
    ContainerFilter, ContainerState, Runtime, SandboxFilter, SandboxState, StringMap,
};

use crate::{Error, Result};

fn by_pod(pod_uid: &str) -> StringMap {
    StringMap::from([(POD_UID_LABEL.to_owned(), pod_uid.to_owned())])
}

/// The id of the running container named `container` in the pod with `pod_uid`, the
/// newest when several run; upstream's message `container not found ("app")` when none
/// does.
pub async fn running_container_id(
    runtime: &dyn Runtime,
    pod_uid: &str,
    container: &str,
) -> Result<String> {
    let mut labels = by_pod(pod_uid);
    labels.insert(CONTAINER_NAME_LABEL.to_owned(), container.to_owned());
    let filter = ContainerFilter {
        state: Some(ContainerState::Running),
        labels,
        ..ContainerFilter::default()
    };
    runtime
        .list_containers(&filter)
        .await?
        .into_iter()
        .max_by_key(|c| c.created_at)
        .map(|c| c.id)
        .ok_or_else(|| Error::StreamTargetNotFound {
            message: format!("container not found ({container:?})"),
        })
}

/// The id of the ready sandbox of the pod with `pod_uid`, the newest when several are;
/// upstream's message `pod not found ("web_default")` when there is none.
pub async fn ready_sandbox_id(
    runtime: &dyn Runtime,
    pod_uid: &str,
    pod_full_name: &str,
) -> Result<String> {
    let filter = SandboxFilter {
        state: Some(SandboxState::Ready),
        labels: by_pod(pod_uid),
        ..SandboxFilter::default()
    };
    runtime
        .list_sandboxes(&filter)
        .await?
        .into_iter()
        .max_by_key(|s| s.created_at)
        .map(|s| s.id)
        .ok_or_else(|| Error::StreamTargetNotFound {
            message: format!("pod not found ({pod_full_name:?})"),
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kubelet_core::{ContainerConfig, ContainerMetadata, SandboxConfig, SandboxMetadata};
    use kubelet_cri_client::{FakeCriServer, Timeouts};

    use super::*;

    #[tokio::test]
    async fn finds_the_running_container_and_ready_sandbox_of_a_pod() {
        let fake = FakeCriServer::start();
        fake.add_local_image("busybox");
        let runtime: Arc<dyn Runtime> = Arc::new(fake.client(Timeouts::default()));
        let sandbox = SandboxConfig {
            metadata: SandboxMetadata {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u-1".into(),
                attempt: 0,
            },
            labels: by_pod("u-1"),
            ..SandboxConfig::default()
        };
        let sandbox_id = runtime.run_sandbox(&sandbox).await.expect("sandbox");
        let mut labels = by_pod("u-1");
        labels.insert(CONTAINER_NAME_LABEL.into(), "app".into());
        let config = ContainerConfig {
            metadata: ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            },
            image: "busybox".into(),
            labels,
            ..ContainerConfig::default()
        };
        let id = runtime
            .create_container(&sandbox_id, &config, &sandbox)
            .await
            .expect("create");
        let missing = running_container_id(runtime.as_ref(), "u-1", "app")
            .await
            .expect_err("created, not running");
        assert_eq!(missing.to_string(), r#"container not found ("app")"#);
        runtime.start_container(&id).await.expect("start");
        assert_eq!(
            running_container_id(runtime.as_ref(), "u-1", "app")
                .await
                .expect("running"),
            id
        );
        assert!(
            running_container_id(runtime.as_ref(), "u-2", "app")
                .await
                .is_err(),
            "another pod's container is not this one's"
        );
        assert_eq!(
            ready_sandbox_id(runtime.as_ref(), "u-1", "web_default")
                .await
                .expect("ready"),
            sandbox_id
        );
        runtime.stop_sandbox(&sandbox_id).await.expect("stop");
        let gone = ready_sandbox_id(runtime.as_ref(), "u-1", "web_default")
            .await
            .expect_err("stopped");
        assert_eq!(gone.to_string(), r#"pod not found ("web_default")"#);
    }
}
