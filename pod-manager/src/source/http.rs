//! The manifest URL (upstream `pkg/kubelet/config/http.go`).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::ManifestOrigin;
use super::manifest::{
    Decoded, MAX_MANIFEST_BYTES, SnapshotBuilder, decode, prepare_static_pod, rejection_reason,
};
use crate::{Error, PodSource, RejectedManifest, Result, SourceUpdate, UpdateKind};

/// Upstream's default `httpCheckFrequency`.
pub const DEFAULT_HTTP_CHECK_FREQUENCY: Duration = Duration::from_secs(20);
/// Upstream's client timeout: a hung server delays only one check.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The manifest URL source: a single `v1` `Pod` or a `v1` `PodList`, as YAML or JSON.
///
/// [`run`](Self::run) fetches the URL at start and every check frequency, with the
/// configured headers (upstream `staticPodURLHeader`), and sends a snapshot when the pods
/// or rejections change; a body identical to the previous one is not parsed again.
/// Pods are defaulted, named `<name>-<node>` and validated ([`prepare_static_pod`]), with
/// UIDs derived from the URL; an invalid pod (or PodList item) is reported as a
/// [`RejectedManifest`] and the other pods are unaffected.
///
/// When the URL cannot be fetched (connection error, timeout, status other than 200) or
/// its body is not a Pod or PodList at all, the pods of the last good fetch stay, as
/// upstream keeps them, and the error is added to the snapshot as a rejection naming the
/// URL. Before the first good fetch such errors are only logged, so that the source does
/// not count as seen (upstream sends nothing either) and pod clean-up waits for it. An
/// empty body is a deliberate "no pods", as upstream treats it.
///
/// Only `http://` URLs are supported; HTTPS is not implemented yet.
#[derive(Debug, Clone)]
pub struct UrlSource {
    url: String,
    uri: Uri,
    headers: HeaderMap,
    node_name: String,
    check_frequency: Duration,
}

impl UrlSource {
    /// A source for `url` on node `node_name`, checked every
    /// [`DEFAULT_HTTP_CHECK_FREQUENCY`].
    ///
    /// # Errors
    ///
    /// [`Error::Manifest`] naming the URL when it does not parse or is not `http://`.
    pub fn new(url: impl Into<String>, node_name: impl Into<String>) -> Result<Self> {
        let url = url.into();
        let invalid = |reason: String| Error::Manifest {
            path: url.clone(),
            reason,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(format!("invalid URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid(
                    "https manifest URLs are not supported yet".to_owned(),
                ));
            }
            _ => {
                return Err(invalid(
                    "the manifest URL must start with http://".to_owned(),
                ));
            }
        }
        Ok(Self {
            url,
            uri,
            headers: HeaderMap::new(),
            node_name: node_name.into(),
            check_frequency: DEFAULT_HTTP_CHECK_FREQUENCY,
        })
    }

    /// Adds a header sent with every request (one entry of upstream
    /// `staticPodURLHeader`; call again for more values of the same name).
    ///
    /// # Errors
    ///
    /// [`Error::Manifest`] naming the URL when the name or value is not a valid header.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self> {
        let invalid = |reason: String| Error::Manifest {
            path: self.url.clone(),
            reason,
        };
        let name: HeaderName = name
            .parse()
            .map_err(|e| invalid(format!("invalid header name {name:?}: {e}")))?;
        let value: HeaderValue = value
            .parse()
            .map_err(|e| invalid(format!("invalid value for header {name}: {e}")))?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Sets how often the URL is fetched (upstream `httpCheckFrequency`).
    pub fn with_check_frequency(mut self, every: Duration) -> Self {
        self.check_frequency = every;
        self
    }

    /// The URL fetched.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches the URL periodically and sends snapshots on `updates` until the receiver
    /// is dropped. Spawn it as a task; it never fails: fetch errors are reported and
    /// retried at the next check.
    pub async fn run(self, updates: mpsc::Sender<SourceUpdate>) {
        tracing::info!(url = %self.url, "watching manifest URL");
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut state = State::default();
        let mut ticker = tokio::time::interval(self.check_frequency.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = updates.closed() => return,
                _ = ticker.tick() => {}
            }
            let fetched = tokio::select! {
                () = updates.closed() => return,
                fetched = self.fetch(&client) => fetched,
            };
            let Some(snapshot) = self.snapshot(&mut state, fetched) else {
                continue;
            };
            if state.last.as_ref() == Some(&snapshot) {
                continue;
            }
            for r in &snapshot.1 {
                let before = state.last.iter().flat_map(|(_, rs)| rs.iter());
                if !before.clone().any(|b| b == r) {
                    tracing::warn!(url = %self.url, path = %r.path, reason = %r.reason, "rejected manifest from URL");
                }
            }
            let update = SourceUpdate {
                source: PodSource::Http,
                pods: snapshot.0.clone(),
                rejected: snapshot.1.clone(),
                kind: UpdateKind::Snapshot,
            };
            state.last = Some(snapshot);
            if updates.send(update).await.is_err() {
                return;
            }
        }
    }

    /// One GET of the URL: the body of a 200 response, or why there is none.
    async fn fetch(
        &self,
        client: &Client<HttpConnector, Empty<Bytes>>,
    ) -> std::result::Result<Bytes, String> {
        let exchange = async {
            let mut request = Request::get(self.uri.clone())
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            *request.headers_mut() = self.headers.clone();
            let response = client.request(request).await.map_err(|e| error_chain(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_MANIFEST_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(status.to_string());
            }
            Ok(body)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no response within {}s", REQUEST_TIMEOUT.as_secs())),
        }
    }

    /// The snapshot to offer after a fetch, or `None` when nothing is to be sent.
    fn snapshot(
        &self,
        state: &mut State,
        fetched: std::result::Result<Bytes, String>,
    ) -> Option<(Vec<Pod>, Vec<RejectedManifest>)> {
        let data = match fetched {
            Ok(data) => data,
            Err(reason) => return self.failed(state, reason),
        };
        if state.last_failure.take().is_some() {
            tracing::info!(url = %self.url, "read pods from URL again");
        }
        if data.is_empty() {
            state.body = None;
            state.good_pods.clear();
            let (pods, _) = SnapshotBuilder::new().finish(&mut state.seen);
            let reason = format!("zero-length data received from {}", self.url);
            return Some((pods, vec![self.rejection(reason)]));
        }
        if state.body.as_ref() != Some(&data) {
            match self.parse(&data, &mut state.seen) {
                Ok(parsed) => {
                    state.good_pods = parsed.0.clone();
                    state.parsed = parsed;
                    state.body = Some(data);
                }
                Err(reason) => return self.failed(state, reason),
            }
        }
        Some(state.parsed.clone())
    }

    /// A failed fetch or unusable body: the last good pods stand, with the error.
    fn failed(
        &self,
        state: &mut State,
        reason: String,
    ) -> Option<(Vec<Pod>, Vec<RejectedManifest>)> {
        let reason = format!("{}: {reason}", self.url);
        if state.last_failure.as_deref() != Some(reason.as_str()) {
            tracing::warn!(url = %self.url, reason = %reason, "failed to read pods from URL");
        } else {
            tracing::debug!(url = %self.url, reason = %reason, "failed to read pods from URL");
        }
        state.last_failure = Some(reason.clone());
        // Forget the body so the same content is parsed again once it is readable.
        state.body = None;
        state.last.as_ref()?;
        Some((state.good_pods.clone(), vec![self.rejection(reason)]))
    }

    fn rejection(&self, reason: String) -> RejectedManifest {
        RejectedManifest {
            path: self.url.clone(),
            reason,
        }
    }

    /// Parses a body into pods and per-pod rejections; `Err` when it is not a Pod or
    /// PodList at all.
    fn parse(
        &self,
        data: &[u8],
        seen: &mut HashMap<String, String>,
    ) -> std::result::Result<(Vec<Pod>, Vec<RejectedManifest>), String> {
        let origin = ManifestOrigin::Url(self.url.clone());
        let mut builder = SnapshotBuilder::new();
        match decode(data, true).map_err(|e| format!("couldn't parse as pod or pod list: {e}"))? {
            Decoded::Pod(pod) => match prepare_static_pod(*pod, &origin, &self.node_name) {
                Ok(pod) => builder.add(&self.url, pod),
                Err(err) => builder.reject(&self.url, rejection_reason(&err)),
            },
            Decoded::PodList(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    let result = serde_json::from_value::<Pod>(item)
                        .map_err(|e| format!("couldn't parse as pod: {e}"))
                        .and_then(|pod| {
                            prepare_static_pod(pod, &origin, &self.node_name)
                                .map_err(|e| rejection_reason(&e))
                        });
                    match result {
                        Ok(pod) => builder.add(&self.url, pod),
                        Err(reason) => builder.reject(&self.url, format!("items[{i}]: {reason}")),
                    }
                }
            }
        }
        Ok(builder.finish(seen))
    }
}

/// What the source remembers between fetches.
#[derive(Default)]
struct State {
    /// The last snapshot sent; `None` until the first good fetch.
    last: Option<(Vec<Pod>, Vec<RejectedManifest>)>,
    /// The last body parsed, to skip parsing an unchanged one.
    body: Option<Bytes>,
    /// What that body parsed to.
    parsed: (Vec<Pod>, Vec<RejectedManifest>),
    /// The pods of the last usable body, kept while fetches fail.
    good_pods: Vec<Pod>,
    /// UID to first-seen time.
    seen: HashMap<String, String>,
    /// The last failure logged, to log each distinct failure once.
    last_failure: Option<String>,
}

/// An error with its causes: hyper's top-level errors ("client error (Connect)") say
/// little on their own.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
