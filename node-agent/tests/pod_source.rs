//! The API server's pod source against a real API server: a snapshot after the first
//! list, then one change per watch event (the pod, or a deleted pod's UID), never the
//! node's whole set again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kubelet_node_agent::{ApiPodSource, PodView};
use kubelet_pod_manager::{SourceUpdate, UpdateKind};
use tokio::sync::mpsc;

const TEST: &str = "api_pod_source_sends_one_change_per_event";

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }))
    .expect("pod")
}

async fn next(rx: &mut mpsc::Receiver<SourceUpdate>) -> SourceUpdate {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("an update within 30 s")
        .expect("the source runs")
}

fn names(update: &SourceUpdate) -> Vec<&str> {
    update
        .pods
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect()
}

#[tokio::test]
async fn api_pod_source_sends_one_change_per_event() {
    let Some(client) = common::admin_client(TEST).await else {
        return;
    };
    // A node no kubelet runs: nothing but this source acts on its pods.
    let suffix = std::process::id();
    let node = format!("pod-source-test-{suffix}");
    let ns_name = format!("pod-source-{suffix}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns_name}}))
            .expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns_name);
    pods.create(&PostParams::default(), &pod("before", &node))
        .await
        .expect("pod");

    let view = Arc::new(PodView::new());
    let (tx, mut rx) = mpsc::channel(16);
    let source = tokio::spawn(ApiPodSource::new(client.clone(), &node, view.clone()).run(tx));

    // The first complete list: a snapshot.
    let first = next(&mut rx).await;
    assert_eq!(first.kind, UpdateKind::Snapshot);
    assert_eq!(names(&first), ["before"]);
    assert!(view.is_synced());

    // A new pod: only it.
    let created = pods
        .create(&PostParams::default(), &pod("after", &node))
        .await
        .expect("pod");
    let uid = created.metadata.uid.clone().expect("uid");
    let added = next(&mut rx).await;
    assert_eq!(added.kind, UpdateKind::Changes { removed: vec![] });
    assert_eq!(names(&added), ["after"]);
    assert!(view.get(&uid).is_some());

    // A change of one pod: only it, as the API server has it now.
    let labels = serde_json::json!({"metadata": {"labels": {"changed": "yes"}}});
    pods.patch("before", &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("patch");
    let changed = next(&mut rx).await;
    assert_eq!(names(&changed), ["before"]);
    assert_eq!(
        changed.pods[0]
            .metadata
            .labels
            .as_ref()
            .map(|l| l["changed"].as_str()),
        Some("yes")
    );

    // A deletion: the pod with its deletion timestamp while it may still run (no kubelet
    // confirms it here, so it stays), then, forced, its UID among the removed.
    pods.delete("after", &DeleteParams::default())
        .await
        .expect("delete");
    let deleting = next(&mut rx).await;
    assert_eq!(names(&deleting), ["after"]);
    assert!(deleting.pods[0].metadata.deletion_timestamp.is_some());
    pods.delete("after", &DeleteParams::default().grace_period(0))
        .await
        .expect("force delete");
    // (The grace period set to 0 may come first as a change of the pod.)
    let mut removed = next(&mut rx).await;
    while removed.kind == (UpdateKind::Changes { removed: vec![] }) {
        assert_eq!(names(&removed), ["after"]);
        removed = next(&mut rx).await;
    }
    assert_eq!(
        removed.kind,
        UpdateKind::Changes {
            removed: vec![uid.clone()]
        }
    );
    assert!(removed.pods.is_empty());
    assert!(view.get(&uid).is_none());

    source.abort();
    let _ = namespaces.delete(&ns_name, &DeleteParams::default()).await;
}
