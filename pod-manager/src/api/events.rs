//! Pod events to the API server as core/v1 Events, as upstream's event recorder writes
//! them.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kubelet_core::{EventRecorder, PodEvent};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Events waiting to be written; more are dropped, as upstream's broadcaster drops them,
/// rather than blocking a pod worker.
const QUEUE: usize = 1000;
/// Distinct events remembered for counting repeats (upstream's LRU holds 4096).
const REMEMBERED: usize = 4096;

/// Writes pod events to the API server.
///
/// [`record`](EventRecorder::record) never waits: events go to a bounded queue that a
/// background task drains. A repeat of an event (same pod, container, reason and
/// message) patches the first one's `count` and `lastTimestamp` instead of creating a
/// new object, as upstream's event correlator does.
#[derive(Debug, Clone)]
pub struct ApiEvents {
    queue: mpsc::Sender<PodEvent>,
}

impl ApiEvents {
    /// A recorder writing events from `node_name`'s kubelet; spawns its writer task
    /// (needs a tokio runtime).
    pub fn start(client: kube::Client, node_name: &str) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(client, node_name.to_owned(), rx));
        Self { queue }
    }
}

impl EventRecorder for ApiEvents {
    fn record(&self, event: PodEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.queue.try_send(event) {
            debug!(reason = %event.reason, "event queue full, dropping an event");
        }
    }
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    uid: String,
    field_path: Option<String>,
    reason: std::borrow::Cow<'static, str>,
    message: String,
}

async fn write_loop(client: kube::Client, node: String, mut rx: mpsc::Receiver<PodEvent>) {
    // The name and count of the first event of each kind, for repeats.
    let mut seen: HashMap<Key, (String, i32)> = HashMap::new();
    while let Some(event) = rx.recv().await {
        let now = super::now();
        let api: Api<Event> = Api::namespaced(client.clone(), &event.pod.namespace);
        let key = Key {
            uid: event.pod.uid.clone(),
            field_path: event.field_path.clone(),
            reason: event.reason.clone(),
            message: event.message.clone(),
        };
        if let Some((name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({
                "count": *count,
                "lastTimestamp": Time(now),
            });
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                // Expired (events live an hour) or removed: write a new one.
                Err(e) => debug!(error = %e, "updating a repeated event"),
            }
            seen.remove(&key);
        }
        let name = format!("{}.{:x}", event.pod.name, now.as_nanosecond().max(0));
        let object = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(event.pod.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(event.pod.name.clone()),
                namespace: Some(event.pod.namespace.clone()),
                uid: Some(event.pod.uid.clone()),
                field_path: event.field_path.clone(),
                ..ObjectReference::default()
            },
            reason: Some(event.reason.to_string()),
            message: Some(event.message.clone()),
            type_: Some(event.event_type.as_str().to_owned()),
            source: Some(EventSource {
                component: Some("kubelet".to_owned()),
                host: Some(node.clone()),
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some("kubelet".to_owned()),
            reporting_instance: Some(node.clone()),
            ..Event::default()
        };
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {
                if seen.len() >= REMEMBERED {
                    seen.clear();
                }
                seen.insert(key, (name, 1));
            }
            Err(e) => warn!(
                pod = %event.pod,
                reason = %event.reason,
                error = %e,
                "writing an event"
            ),
        }
    }
}
