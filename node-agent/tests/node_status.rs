//! The node status loop against a real API server: it registers the Node, posts its
//! status, posts it again when the Node object says otherwise (the node lifecycle
//! controller marked it Unknown), and registers again when the Node object is deleted;
//! it learns both from its watch of the Node.

mod common;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kubelet_cri_client::{FakeCriServer, Timeouts};
use kubelet_node_agent::{NodeAgent, NodeConfig};

const TEST: &str = "the_status_loop_follows_its_node_object";

fn ready(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// Waits up to 60 s for the Node to satisfy `check`; returns it.
async fn wait_for(
    nodes: &Api<Node>,
    name: &str,
    what: &str,
    check: impl Fn(&Node) -> bool,
) -> Node {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(node)) = nodes.get_opt(name).await
            && check(&node)
        {
            return node;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The GETs of Node objects the API server has answered.
async fn node_gets(client: &kube::Client) -> u64 {
    let metrics = client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("the API server's metrics");
    kubelet_test_support::node_gets(&metrics)
}

#[tokio::test]
async fn the_status_loop_follows_its_node_object() {
    let Some(client) = common::admin_client(TEST).await else {
        return;
    };
    // A node no kubelet runs; its runtime a fake that is ready.
    let name = format!("node-status-test-{}", std::process::id());
    let fake = FakeCriServer::start();
    let runtime = Arc::new(fake.client(Timeouts::default()));
    let root = tempfile::tempdir().expect("root dir");
    let mut config = NodeConfig::new(&name);
    config.root_dir = root.path().to_owned();
    config.status_update_frequency = Duration::from_millis(500);
    let agent = NodeAgent::new(client.clone(), config, runtime.clone(), runtime);
    let running = tokio::spawn(agent.run());
    let nodes: Api<Node> = Api::all(client.clone());
    let admin = client;

    let first = wait_for(&nodes, &name, "registered and Ready", |n| {
        ready(n).as_deref() == Some("True")
    })
    .await;

    // With nothing new, the loop reads nothing: its watch says the Node is unchanged
    // (upstream reads the Node at every update). Six updates, no GET of a Node (the
    // API server's count; one spare for another client).
    let before = node_gets(&admin).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let gets = node_gets(&admin).await - before;
    assert!(
        gets <= 1,
        "{gets} GETs of Node objects in 3 s of status updates every 500 ms"
    );

    // The node lifecycle controller's doing, while this kubelet was unreachable.
    let unknown = serde_json::json!({"status": {"conditions": [{
        "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
    }]}});
    nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&unknown))
        .await
        .expect("mark the node Unknown");
    wait_for(&nodes, &name, "Ready again after Unknown", |n| {
        ready(n).as_deref() == Some("True")
    })
    .await;

    nodes
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete the node");
    let again = wait_for(&nodes, &name, "registered again", |n| {
        n.metadata.uid != first.metadata.uid && ready(n).as_deref() == Some("True")
    })
    .await;
    assert_ne!(again.metadata.uid, first.metadata.uid);

    running.abort();
    let _ = running.await;
    let _ = nodes.delete(&name, &DeleteParams::default()).await;
}
