//! The PodResources service over its unix socket, with an in-memory provider: what
//! upstream's `server_v1_test.go` checks (containers listed, sidecars included, plain
//! init containers not, `Get` of an unknown pod), and the request limit.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_pod_resources::proto::v1::pod_resources_lister_server::PodResourcesLister;
use kubelet_pod_resources::proto::v1::{
    AllocatableResourcesRequest, ContainerDevices, GetPodResourcesRequest, ListPodResourcesRequest,
};
use kubelet_pod_resources::{PodResourcesProvider, PodResourcesService, connect, serve};

struct Pods {
    active: Vec<Pod>,
    finished: Vec<Pod>,
}

#[async_trait::async_trait]
impl PodResourcesProvider for Pods {
    async fn active_pods(&self) -> Vec<Pod> {
        self.active.clone()
    }

    async fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.active
            .iter()
            .chain(&self.finished)
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }

    fn container_devices(&self, pod_uid: &str, container: &str) -> Vec<ContainerDevices> {
        (pod_uid == "uid-web" && container == "app")
            .then(|| ContainerDevices {
                resource_name: "example.com/gpu".into(),
                device_ids: vec!["gpu-0".into()],
                topology: None,
            })
            .into_iter()
            .collect()
    }
}

fn container(name: &str, restart_policy: Option<&str>) -> Container {
    Container {
        name: name.into(),
        restart_policy: restart_policy.map(str::to_owned),
        ..Default::default()
    }
}

fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            init_containers: Some(vec![
                container("setup", None),
                container("sidecar", Some("Always")),
            ]),
            containers: vec![container("app", None), container("log", None)],
            ..Default::default()
        }),
        status: None,
    }
}

fn provider() -> Arc<Pods> {
    Arc::new(Pods {
        active: vec![pod("web")],
        finished: vec![pod("done")],
    })
}

#[tokio::test]
async fn lists_and_gets_pods_over_the_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The directory is made, and a stale socket file replaced.
    let socket = dir.path().join("pod-resources/kubelet.sock");
    std::fs::create_dir_all(socket.parent().expect("parent")).expect("mkdir");
    std::fs::write(&socket, b"stale").expect("stale file");
    let path = socket.clone();
    let server =
        tokio::spawn(async move { serve(&path, PodResourcesService::new(provider())).await });
    let mut client = connect(&socket);
    let mut listed = None;
    for _ in 0..100 {
        match client.list(ListPodResourcesRequest {}).await {
            Ok(response) => {
                listed = Some(response.into_inner());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let listed = listed.expect("the server answers");
    assert_eq!(
        listed.pod_resources.len(),
        1,
        "only active pods: {listed:?}"
    );
    let web = &listed.pod_resources[0];
    assert_eq!(
        (web.name.as_str(), web.namespace.as_str()),
        ("web", "default")
    );
    let names: Vec<&str> = web.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["sidecar", "app", "log"],
        "sidecars first, no plain init containers"
    );
    assert_eq!(web.containers[1].devices[0].device_ids, ["gpu-0"]);
    assert!(web.containers[1].cpu_ids.is_empty());

    // Get finds finished pods too, and names what it cannot find as upstream.
    let done = client
        .get(GetPodResourcesRequest {
            pod_name: "done".into(),
            pod_namespace: "default".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(done.pod_resources.expect("pod").name, "done");
    let missing = client
        .get(GetPodResourcesRequest {
            pod_name: "nope".into(),
            pod_namespace: "default".into(),
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(missing.code(), tonic::Code::Unknown);
    assert_eq!(missing.message(), "pod nope in namespace default not found");

    let allocatable = client
        .get_allocatable_resources(AllocatableResourcesRequest {})
        .await
        .expect("allocatable")
        .into_inner();
    assert!(allocatable.devices.is_empty() && allocatable.cpu_ids.is_empty());
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn requests_past_the_limit_are_refused_until_tokens_come_back() {
    let service = PodResourcesService::new(provider());
    let list = || service.list(tonic::Request::new(ListPodResourcesRequest {}));
    for _ in 0..10 {
        list().await.expect("within the burst");
    }
    let refused = list().await.expect_err("past the burst");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(refused.message(), "rejected by rate limit");
    // 100 a second: one more after 10 ms.
    tokio::time::advance(Duration::from_millis(10)).await;
    list().await.expect("a token came back");
    list().await.expect_err("and only one");
}
