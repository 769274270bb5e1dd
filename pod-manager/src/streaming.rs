//! What the runtime runs, for the kubelet API: the object an exec, attach or
//! port-forward request means (the running container of a pod by name, or the pod's
//! ready sandbox, found as upstream's `findContainer` and `GetPortForward` find them,
//! among what the runtime runs, not what the pod's status last said), and the pods of
//! `/runningpods`.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::labels::{
    CONTAINER_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL,
};
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

/// The pods the runtime runs, as upstream's `GetRunningPods`: a v1 `PodList` whose pods
/// carry only name, namespace, uid and their running containers' names and images
/// (every pod with a ready sandbox or a running container, sorted by namespace and name).
pub async fn running_pods(runtime: &dyn Runtime) -> Result<serde_json::Value> {
    let sandboxes = runtime
        .list_sandboxes(&SandboxFilter {
            state: Some(SandboxState::Ready),
            ..SandboxFilter::default()
        })
        .await?;
    let containers = runtime
        .list_containers(&ContainerFilter {
            state: Some(ContainerState::Running),
            ..ContainerFilter::default()
        })
        .await?;
    let mut pods: std::collections::BTreeMap<String, Pod> = std::collections::BTreeMap::new();
    let identity = |labels: &StringMap| -> Option<(String, Pod)> {
        let uid = labels.get(POD_UID_LABEL)?;
        let pod = Pod {
            metadata: ObjectMeta {
                name: labels.get(POD_NAME_LABEL).cloned(),
                namespace: labels.get(POD_NAMESPACE_LABEL).cloned(),
                uid: Some(uid.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            ..Pod::default()
        };
        Some((uid.clone(), pod))
    };
    for sandbox in &sandboxes {
        if let Some((uid, pod)) = identity(&sandbox.labels) {
            pods.entry(uid).or_insert(pod);
        }
    }
    for container in &containers {
        let Some((uid, pod)) = identity(&container.labels) else {
            continue;
        };
        let pod = pods.entry(uid).or_insert(pod);
        if let Some(spec) = pod.spec.as_mut() {
            spec.containers.push(Container {
                name: container.metadata.name.clone(),
                image: Some(container.image.clone()),
                ..Container::default()
            });
        }
    }
    let mut items: Vec<Pod> = pods.into_values().collect();
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    Ok(serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    }))
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
        let list = running_pods(runtime.as_ref()).await.expect("running pods");
        assert_eq!(list["kind"], "PodList");
        assert_eq!(list["items"][0]["metadata"]["uid"], "u-1");
        assert_eq!(list["items"][0]["spec"]["containers"][0]["name"], "app");
        assert_eq!(
            list["items"][0]["spec"]["containers"][0]["image"],
            "busybox"
        );
        runtime.stop_sandbox(&sandbox_id).await.expect("stop");
        let gone = ready_sandbox_id(runtime.as_ref(), "u-1", "web_default")
            .await
            .expect_err("stopped");
        assert_eq!(gone.to_string(), r#"pod not found ("web_default")"#);
    }
}
