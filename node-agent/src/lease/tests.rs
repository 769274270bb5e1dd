//! The lease controller against a fake API server under tokio's paused time: every
//! request is recorded with its virtual time, so intervals and back-off are asserted
//! exactly.

use std::sync::Mutex;
use std::time::SystemTime;

use kubelet_pod_manager::TokioClock;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;

const NODE: &str = "node-1";
const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";

#[derive(Debug, Clone, PartialEq)]
struct Request {
    /// Virtual time since the test started.
    at: Duration,
    method: String,
    path: String,
    /// The renewTime the request wrote, for POST and PUT.
    renew_time: Option<String>,
}

#[derive(Default)]
struct State {
    lease: Option<Value>,
    resource_version: u64,
    node_readable_after: Duration,
    api_down_until: Duration,
    requests: Vec<Request>,
}

/// The Lease and Node endpoints of an API server, in memory.
#[derive(Clone)]
struct FakeApi {
    state: Arc<Mutex<State>>,
    start: Instant,
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": reason, "reason": reason, "code": code});
    (code, status)
}

impl FakeApi {
    fn new() -> Self {
        Self {
            state: Arc::default(),
            start: Instant::now(),
        }
    }

    fn client(&self) -> kube::Client {
        let api = self.clone();
        crate::fake_api::client(move |parts, body| {
            let answer = api.answer(&parts.method, parts.uri.path(), &body);
            async move { answer }
        })
    }

    fn answer(&self, method: &http::Method, path: &str, body: &[u8]) -> (u16, Value) {
        let at = self.start.elapsed();
        let sent: Option<Value> = serde_json::from_slice(body).ok();
        let mut state = self.state.lock().expect("state");
        state.requests.push(Request {
            at,
            method: method.to_string(),
            path: path.to_owned(),
            renew_time: sent
                .as_ref()
                .and_then(|v| v["spec"]["renewTime"].as_str())
                .map(str::to_owned),
        });
        if at < state.api_down_until {
            return status(503, "ServiceUnavailable");
        }
        let lease_path = format!("{LEASE_PATH}/{NODE}");
        match (method.as_str(), path) {
            ("GET", "/api/v1/nodes/node-1") if at >= state.node_readable_after => (
                200,
                json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": NODE, "uid": "node-uid"}}),
            ),
            ("GET", "/api/v1/nodes/node-1") => status(404, "NotFound"),
            ("GET", p) if p == lease_path => match &state.lease {
                Some(lease) => (200, lease.clone()),
                None => status(404, "NotFound"),
            },
            ("POST", LEASE_PATH) => {
                let Some(mut lease) = sent else {
                    return status(400, "BadRequest");
                };
                if state.lease.is_some() {
                    return status(409, "AlreadyExists");
                }
                state.resource_version += 1;
                lease["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
                state.lease = Some(lease.clone());
                (201, lease)
            }
            ("PUT", p) if p == lease_path => {
                let Some(mut lease) = sent else {
                    return status(400, "BadRequest");
                };
                let current = state.resource_version.to_string();
                if lease["metadata"]["resourceVersion"].as_str() != Some(current.as_str()) {
                    return status(409, "Conflict");
                }
                state.resource_version += 1;
                lease["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
                state.lease = Some(lease.clone());
                (200, lease)
            }
            _ => status(404, "NotFound"),
        }
    }

    /// The Lease as the API server holds it now.
    fn stored_lease(&self) -> Value {
        let state = self.state.lock().expect("state");
        state.lease.clone().expect("a lease was written")
    }

    fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("state").requests.clone()
    }

    /// Another writer (an administrator, a second kubelet) changes the Lease.
    fn touch_lease(&self) {
        let mut state = self.state.lock().expect("state");
        state.resource_version += 1;
        let rv = state.resource_version.to_string();
        if let Some(lease) = &mut state.lease {
            lease["metadata"]["resourceVersion"] = json!(rv);
        }
    }
}

/// Starts a controller for a 40 s Lease with a clock that follows tokio's.
fn start(api: &FakeApi) -> (tokio::task::JoinHandle<()>, TokioClock) {
    let clock = TokioClock::new();
    let controller = LeaseController::new(api.client(), NODE, 40, Arc::new(clock), None);
    (tokio::spawn(controller.run()), clock)
}

/// Runs a controller for `seconds` of virtual time; the requests it made.
async fn run_for(api: &FakeApi, seconds: f64) -> (Vec<Request>, TokioClock) {
    let (task, clock) = start(api);
    tokio::time::sleep(secs(seconds)).await;
    task.abort();
    (api.requests(), clock)
}

fn micro_time(t: SystemTime) -> String {
    serde_json::to_value(MicroTime(
        k8s_openapi::jiff::Timestamp::try_from(t).expect("timestamp"),
    ))
    .expect("json")
    .as_str()
    .expect("string")
    .to_owned()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(start_paused = true)]
async fn renews_every_quarter_of_the_duration_with_one_put_and_the_clocks_time() {
    let api = FakeApi::new();
    let (requests, clock) = run_for(&api, 45.0).await;
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    let lease = format!("{LEASE_PATH}/{NODE}");
    // Created at once (read, owner, create), then only PUTs of the Lease last written.
    assert_eq!(
        calls,
        [
            ("GET", lease.as_str()),
            ("GET", "/api/v1/nodes/node-1"),
            ("POST", LEASE_PATH),
            ("PUT", lease.as_str()),
            ("PUT", lease.as_str()),
            ("PUT", lease.as_str()),
            ("PUT", lease.as_str()),
        ]
    );
    let writes: Vec<&Request> = requests.iter().filter(|r| r.method != "GET").collect();
    assert_eq!(writes[0].at, Duration::ZERO);
    for pair in writes.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= secs(10.0) && gap <= secs(10.4),
            "renewals {gap:?} apart, want 10 s plus at most 4%"
        );
    }
    // Each write carries the clock's time of that moment.
    let start = clock.now() - secs(45.0);
    for w in &writes {
        assert_eq!(
            w.renew_time.as_deref(),
            Some(micro_time(start + w.at).as_str())
        );
    }
    let stored = api.stored_lease();
    assert_eq!(stored["spec"]["holderIdentity"], NODE);
    assert_eq!(stored["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(stored["metadata"]["ownerReferences"][0]["uid"], "node-uid");
    assert_eq!(stored["metadata"]["ownerReferences"][0]["kind"], "Node");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_api_server_is_retried_with_upstreams_backoff() {
    let api = FakeApi::new();
    api.state.lock().expect("state").api_down_until = secs(5.0);
    let (requests, _) = run_for(&api, 20.0).await;
    let reads: Vec<f64> = requests
        .iter()
        .take_while(|r| r.method == "GET" && r.path.starts_with(LEASE_PATH))
        .map(|r| r.at.as_secs_f64())
        .collect();
    // 200 ms, doubling: 0.2, 0.4, 0.8, 1.6, 3.2 s between attempts; the API is back at 5 s.
    let want = [0.0, 0.2, 0.6, 1.4, 3.0, 6.2];
    assert_eq!(reads.len(), want.len(), "{requests:?}");
    for (got, want) in reads.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "read at {got} s, want {want} s");
    }
    let created = requests
        .iter()
        .find(|r| r.method == "POST")
        .expect("the lease is created");
    assert!((created.at.as_secs_f64() - 6.2).abs() < 1e-6);
}

#[tokio::test(start_paused = true)]
async fn the_backoff_stops_growing_at_seven_seconds() {
    let api = FakeApi::new();
    api.state.lock().expect("state").api_down_until = secs(60.0);
    let (requests, _) = run_for(&api, 40.0).await;
    let times: Vec<Duration> = requests.iter().map(|r| r.at).collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 7.0, 7.0, 7.0]
            .map(secs)
            .to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_changed_by_someone_else_is_read_again_then_renewed() {
    let api = FakeApi::new();
    let (task, _clock) = start(&api);
    tokio::time::sleep(secs(1.0)).await;
    api.touch_lease();
    tokio::time::sleep(secs(10.0)).await;
    task.abort();

    let calls: Vec<(String, f64)> = api
        .requests()
        .iter()
        .skip(3)
        .map(|r| (r.method.clone(), r.at.as_secs_f64().round()))
        .collect();
    // The renewal at 10 s: PUT refused (conflict), GET the new version, PUT it renewed.
    assert_eq!(
        calls,
        [
            ("PUT".to_owned(), 10.0),
            ("GET".to_owned(), 10.0),
            ("PUT".to_owned(), 10.0)
        ]
    );
    let state = api.state.lock().expect("state");
    assert_eq!(state.resource_version, 3);
}

#[tokio::test(start_paused = true)]
async fn the_lease_waits_for_its_node_to_own_it() {
    let api = FakeApi::new();
    api.state.lock().expect("state").node_readable_after = secs(1.0);
    let (requests, _) = run_for(&api, 5.0).await;
    let created = requests
        .iter()
        .find(|r| r.method == "POST")
        .expect("the lease is created once the node can be read");
    // Node reads at 0, 0.2, 0.6 (404) and 1.4 s (found): created then, never without owner.
    assert!(
        (created.at.as_secs_f64() - 1.4).abs() < 1e-6,
        "{requests:?}"
    );
    let stored = api.stored_lease();
    assert_eq!(stored["metadata"]["ownerReferences"][0]["uid"], "node-uid");
}
