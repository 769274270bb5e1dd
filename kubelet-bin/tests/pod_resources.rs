//! The PodResources API on the real control plane and containerd: a monitoring agent on
//! the node connects to `<root-dir>/pod-resources/kubelet.sock` and finds the pods the
//! kubelet runs, with their containers (sidecars first, plain init containers not).

mod common;

use common::{Namespace, lock};
use kubelet_pod_resources::proto::v1::{GetPodResourcesRequest, ListPodResourcesRequest};

#[test]
fn a_node_agent_lists_the_running_pods_through_the_pod_resources_socket() {
    let Some((_env, c)) = common::Cluster::from_env(
        "a_node_agent_lists_the_running_pods_through_the_pod_resources_socket",
    ) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "pod-resources-test");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: listed, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  initContainers:
  - {{name: setup, image: {image}, imagePullPolicy: IfNotPresent, command: ["true"]}}
  - {{name: helper, image: {image}, imagePullPolicy: IfNotPresent, restartPolicy: Always, command: ["sleep", "3600"]}}
  containers:
  - {{name: app, image: {image}, imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}}
"#,
        image = c.busybox
    ));
    c.wait_json(
        "listed Running",
        &["get", "pod", "-n", ns, "listed"],
        90,
        &kubelet,
        |p| p["status"]["phase"] == "Running",
    );
    let socket = dir.path().join("root/pod-resources/kubelet.sock");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (listed, got, missing) = runtime.block_on(async {
        let mut client = kubelet_pod_resources::connect(&socket);
        let listed = client
            .list(ListPodResourcesRequest {})
            .await
            .expect("List")
            .into_inner();
        let got = client
            .get(GetPodResourcesRequest {
                pod_name: "listed".into(),
                pod_namespace: ns.into(),
            })
            .await
            .expect("Get")
            .into_inner();
        let missing = client
            .get(GetPodResourcesRequest {
                pod_name: "absent".into(),
                pod_namespace: ns.into(),
            })
            .await
            .expect_err("Get of an absent pod");
        (listed, got, missing)
    });
    let pod = listed
        .pod_resources
        .iter()
        .find(|p| p.namespace == ns && p.name == "listed")
        .unwrap_or_else(|| panic!("the pod is listed: {listed:?}\n{}", kubelet.log()));
    let containers: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(containers, ["helper", "app"]);
    assert_eq!(got.pod_resources.as_ref(), Some(pod));
    assert_eq!(
        missing.message(),
        format!("pod absent in namespace {ns} not found")
    );
    drop(namespace);
    drop(kubelet);
}
