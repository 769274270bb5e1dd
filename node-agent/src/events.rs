//! Pod and node events to the API server as core/v1 Events, as upstream's event recorder
//! writes them.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kubelet_core::{EventRecorder, EventType, NodeEvent, PodEvent, TokenBucket};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Events waiting to be written; more are dropped, as upstream's broadcaster drops them,
/// rather than blocking a pod worker.
const QUEUE: usize = 1000;
/// Distinct events remembered for counting repeats (upstream's LRU holds 4096).
const REMEMBERED: usize = 4096;

/// Writes pod and node events to the API server.
///
/// [`record`](EventRecorder::record) never waits: events go to a bounded queue that a
/// background task drains. A repeat of an event (same pod, container, reason and
/// message) patches the first one's `count` and `lastTimestamp` instead of creating a
/// new object, as upstream's event correlator does. Node events go to the `default`
/// namespace, where upstream's recorder puts events about cluster-scoped objects. An
/// event the API server does not answer (it is down, the connection broke) is tried
/// again, up to 12 times 10 s apart, and the events after it wait, as upstream's
/// broadcaster does; one it answers with a refusal is dropped.
#[derive(Debug, Clone)]
pub struct ApiEvents {
    queue: mpsc::Sender<(Queued, Timestamp)>,
}

/// An event waiting to be written.
#[derive(Debug)]
enum Queued {
    Pod(PodEvent),
    Node(NodeEvent),
}

impl ApiEvents {
    /// A recorder writing events from `node_name`'s kubelet, and its writer: the task
    /// for the caller to run (under its supervisor); it returns once every clone of the
    /// recorder is dropped. Its API requests (creations and repeats' patches) keep to
    /// `rate` (`eventRecordQPS` and `eventBurst`, as upstream's event client; `None`
    /// for no limit), waiting for it while later events queue.
    pub fn new(
        client: kube::Client,
        node_name: &str,
        rate: Option<TokenBucket>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (queue, rx) = mpsc::channel(QUEUE);
        (
            Self { queue },
            write_loop(client, node_name.to_owned(), rx, rate),
        )
    }

    /// Upstream's event rate limit from `eventRecordQPS` and `eventBurst`: none when
    /// the QPS is 0.
    pub fn rate_limit(event_record_qps: i32, event_burst: i32) -> Option<TokenBucket> {
        (event_record_qps > 0).then(|| {
            TokenBucket::new(
                f64::from(event_record_qps),
                u32::try_from(event_burst).unwrap_or(0),
            )
        })
    }
}

impl ApiEvents {
    /// Queues `event` with the time it happened, which it keeps however long it waits
    /// for the rate limit (upstream's recorder stamps it before its sink too).
    fn enqueue(&self, event: Queued) {
        if let Err(mpsc::error::TrySendError::Full((event, _))) =
            self.queue.try_send((event, super::now()))
        {
            debug!(?event, "event queue full, dropping an event");
        }
    }
}

impl EventRecorder for ApiEvents {
    fn record(&self, event: PodEvent) {
        self.enqueue(Queued::Pod(event));
    }

    fn record_node(&self, event: NodeEvent) {
        self.enqueue(Queued::Node(event));
    }
}

/// What an event is about and what it says, whichever its object.
#[derive(Clone, Hash, PartialEq, Eq)]
struct Key {
    namespace: String,
    kind: &'static str,
    name: String,
    uid: Option<String>,
    field_path: Option<String>,
    event_type: EventType,
    reason: std::borrow::Cow<'static, str>,
    message: String,
}

impl Key {
    fn new(event: Queued, node: &str) -> Self {
        match event {
            Queued::Pod(e) => Self {
                namespace: e.pod.namespace,
                kind: "Pod",
                name: e.pod.name,
                uid: Some(e.pod.uid),
                field_path: e.field_path,
                event_type: e.event_type,
                reason: e.reason,
                message: e.message,
            },
            Queued::Node(e) => Self {
                namespace: "default".to_owned(),
                kind: "Node",
                name: node.to_owned(),
                uid: e.node_uid,
                field_path: None,
                event_type: e.event_type,
                reason: e.reason,
                message: e.message,
            },
        }
    }

    fn involved_object(&self) -> ObjectReference {
        // Upstream's node reference carries no apiVersion and no namespace.
        let pod = self.kind == "Pod";
        ObjectReference {
            api_version: pod.then(|| "v1".to_owned()),
            kind: Some(self.kind.to_owned()),
            name: Some(self.name.clone()),
            namespace: pod.then(|| self.namespace.clone()),
            uid: self.uid.clone(),
            field_path: self.field_path.clone(),
            ..ObjectReference::default()
        }
    }
}

/// Waits for `rate`'s next token, if there is a limit.
async fn keep_to(rate: &mut Option<TokenBucket>) {
    if let Some(bucket) = rate {
        let wait = bucket.reserve(tokio::time::Instant::now().into_std());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

async fn write_loop(
    client: kube::Client,
    node: String,
    mut rx: mpsc::Receiver<(Queued, Timestamp)>,
    mut rate: Option<TokenBucket>,
) {
    // The name and count of the first event of each kind, for repeats.
    let mut seen: HashMap<Key, (String, i32)> = HashMap::new();
    while let Some((event, now)) = rx.recv().await {
        let key = Key::new(event, &node);
        let api: Api<Event> = Api::namespaced(client.clone(), &key.namespace);
        // Upstream's recordToSink: an API server that cannot be reached holds this event
        // and the ones after it; one that refuses it (a terminating namespace, a bad
        // object) is not asked again.
        let mut tries = 0;
        loop {
            let Err(e) = write(&api, &key, now, &node, &mut seen, &mut rate).await else {
                break;
            };
            tries += 1;
            if !crate::is_unanswered(&e) || tries >= EVENT_TRIES {
                warn!(
                    kind = key.kind,
                    namespace = %key.namespace,
                    name = %key.name,
                    reason = %key.reason,
                    error = %e,
                    tries,
                    "writing an event failed; it is dropped"
                );
                break;
            }
            debug!(error = %e, tries, "writing an event got no answer; trying again");
            tokio::time::sleep(retry_wait(tries)).await;
        }
    }
}

/// Most tries of one event that gets no answer (upstream's `maxTriesPerEvent`).
const EVENT_TRIES: u32 = 12;
/// Between tries (upstream's `defaultSleepDuration`).
const EVENT_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// The wait after the `tries`-th failed try: a random part of [`EVENT_RETRY`] after the
/// first, so that kubelets do not all come back at once when the API server returns,
/// then all of it.
fn retry_wait(tries: u32) -> std::time::Duration {
    if tries == 1 {
        EVENT_RETRY.mul_f64(crate::random_unit())
    } else {
        EVENT_RETRY
    }
}

/// Writes one event: a repeat of one written before patches its count and last time; a
/// new one (or a repeat whose first is gone) is created.
async fn write(
    api: &Api<Event>,
    key: &Key,
    now: Timestamp,
    node: &str,
    seen: &mut HashMap<Key, (String, i32)>,
    rate: &mut Option<TokenBucket>,
) -> Result<(), kube::Error> {
    keep_to(rate).await;
    if let Some((name, count)) = seen.get(key) {
        let patch = serde_json::json!({
            "count": *count + 1,
            "lastTimestamp": Time(now),
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                if let Some((_, count)) = seen.get_mut(key) {
                    *count += 1;
                }
                return Ok(());
            }
            // Expired (events live an hour) or removed: write a new one.
            Err(e) if crate::is_not_found(&e) => {
                debug!(error = %e, "updating a repeated event");
                seen.remove(key);
                keep_to(rate).await;
            }
            Err(e) => return Err(e),
        }
    }
    let name = format!("{}.{:x}", key.name, now.as_nanosecond().max(0));
    let object = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(key.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: key.involved_object(),
        reason: Some(key.reason.to_string()),
        message: Some(key.message.clone()),
        type_: Some(key.event_type.as_str().to_owned()),
        source: Some(EventSource {
            component: Some("kubelet".to_owned()),
            host: Some(node.to_owned()),
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some("kubelet".to_owned()),
        reporting_instance: Some(node.to_owned()),
        ..Event::default()
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        // A try that reached the API server but lost its answer wrote it already.
        Err(e) if crate::is_conflict(&e) => {}
        Err(e) => return Err(e),
    }
    if seen.len() >= REMEMBERED {
        seen.clear();
    }
    seen.insert(key.clone(), (name, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_core::PodRef;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn pod_event(reason: &'static str) -> PodEvent {
        PodEvent {
            pod: PodRef {
                namespace: "ns".to_owned(),
                name: "web".to_owned(),
                uid: "u-1".to_owned(),
            },
            field_path: None,
            event_type: EventType::Normal,
            reason: reason.into(),
            message: "m".to_owned(),
        }
    }

    /// Writes `events` through a recorder limited to `rate`; each API request the writer
    /// made, with when (virtual time since the start) and its method.
    async fn written(
        events: &[&'static str],
        rate: Option<TokenBucket>,
    ) -> Vec<(Duration, String)> {
        let start = tokio::time::Instant::now();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let client = crate::fake_api::client(move |parts, body| {
            seen.lock()
                .expect("requests")
                .push((start.elapsed(), parts.method.to_string()));
            // A creation answers with what was sent, a patch with some event.
            let object = match parts.method {
                http::Method::POST => serde_json::from_slice(&body).unwrap_or_default(),
                _ => serde_json::json!({"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": "web.1"}, "involvedObject": {}}),
            };
            async move { (200, object) }
        });
        write_all(client, rate, events).await;
        requests.lock().expect("requests").clone()
    }

    /// Records `events` through a recorder writing with `client` at `rate`, and waits
    /// until its writer is done with them.
    async fn write_all(client: kube::Client, rate: Option<TokenBucket>, events: &[&'static str]) {
        let (recorder, writer) = ApiEvents::new(client, "vm", rate);
        for reason in events {
            recorder.record(pod_event(reason));
        }
        drop(recorder);
        writer.await;
    }

    #[tokio::test(start_paused = true)]
    async fn event_writes_keep_to_event_record_qps_after_a_burst() {
        // 10 a second after a burst of 2: creations and a repeat's patch alike.
        let rate = ApiEvents::rate_limit(10, 2);
        let got = written(&["A", "B", "C", "A", "D"], rate).await;
        let want = [
            (0, "POST"),
            (0, "POST"),
            (100, "POST"),
            (200, "PATCH"),
            (300, "POST"),
        ];
        let got: Vec<(u128, &str)> = got
            .iter()
            .map(|(at, method)| (at.as_millis(), method.as_str()))
            .collect();
        assert_eq!(got, want);
    }

    /// The requests (virtual time since the start, method) of a writer whose API server
    /// answers the `n`-th request with `answers[n]`: `Some(code)`, or `None` for no
    /// answer (a failed connection); requests beyond `answers` succeed.
    async fn written_through(
        events: &[&'static str],
        answers: Vec<Option<u16>>,
    ) -> Vec<(Duration, String)> {
        let start = tokio::time::Instant::now();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let mut seen = seen.lock().expect("requests");
            let answer = answers.get(seen.len()).copied().flatten();
            let unanswered = answers.get(seen.len()).is_some_and(Option::is_none);
            seen.push((start.elapsed(), request.method().to_string()));
            async move {
                if unanswered {
                    return Err::<_, tower::BoxError>("connection reset by peer".into());
                }
                let code = answer.unwrap_or(201);
                let body = if code < 300 {
                    serde_json::json!({"apiVersion": "v1", "kind": "Event",
                        "metadata": {"name": "web.1"}, "involvedObject": {}})
                } else {
                    serde_json::json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "code": code, "reason": "Forbidden",
                        "message": "refused"})
                };
                Ok(http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body.to_string().into_bytes()))
                    .expect("response"))
            }
        });
        write_all(kube::Client::new(service, "default"), None, events).await;
        requests.lock().expect("requests").clone()
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_without_an_answer_is_tried_again_and_holds_the_next() {
        let got = written_through(&["A", "B"], vec![None, None]).await;
        let methods: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(methods, ["POST", "POST", "POST", "POST"], "{got:?}");
        // The first wait is a random part of 10 s, the next all of it; B waits for A.
        let first_retry = got[1].0;
        assert!(first_retry <= EVENT_RETRY, "{got:?}");
        assert_eq!(got[2].0 - first_retry, EVENT_RETRY, "{got:?}");
        assert_eq!(got[3].0, got[2].0, "{got:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_is_tried_twelve_times_at_most_and_a_refused_one_once() {
        let got = written_through(&["A"], vec![None; 20]).await;
        assert_eq!(got.len(), 12, "{got:?}");
        // Refused by the API server: not asked again; the next event is written.
        let got = written_through(&["A", "B"], vec![Some(403)]).await;
        let methods: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(methods, ["POST", "POST"], "{got:?}");
        assert_eq!(got[1].0, Duration::ZERO, "{got:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn event_record_qps_zero_is_no_limit() {
        assert!(ApiEvents::rate_limit(0, 100).is_none());
        let got = written(&["A", "B", "C", "D", "E"], None).await;
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|(at, _)| at.is_zero()), "{got:?}");
    }

    #[test]
    fn node_events_name_the_node_as_upstream_s_node_reference() {
        let key = Key::new(
            Queued::Node(NodeEvent {
                node_uid: Some("u-1".to_owned()),
                event_type: EventType::Normal,
                reason: "NodeReady".into(),
                message: "Node vm status is now: NodeReady".to_owned(),
            }),
            "vm",
        );
        assert_eq!(key.namespace, "default");
        let object = key.involved_object();
        assert_eq!(object.kind.as_deref(), Some("Node"));
        assert_eq!(object.name.as_deref(), Some("vm"));
        assert_eq!(object.uid.as_deref(), Some("u-1"));
        assert_eq!(object.namespace, None);
        assert_eq!(object.api_version, None);
    }

    #[test]
    fn pod_events_name_the_pod_and_container() {
        let key = Key::new(
            Queued::Pod(PodEvent {
                pod: PodRef {
                    namespace: "ns".to_owned(),
                    name: "web".to_owned(),
                    uid: "u-2".to_owned(),
                },
                field_path: Some("spec.containers{app}".to_owned()),
                event_type: EventType::Warning,
                reason: "BackOff".into(),
                message: "Back-off restarting failed container app".to_owned(),
            }),
            "vm",
        );
        assert_eq!(key.namespace, "ns");
        let object = key.involved_object();
        assert_eq!(object.kind.as_deref(), Some("Pod"));
        assert_eq!(object.api_version.as_deref(), Some("v1"));
        assert_eq!(object.namespace.as_deref(), Some("ns"));
        assert_eq!(object.field_path.as_deref(), Some("spec.containers{app}"));
    }
}
