//! The kubelet API's endpoints, once a request is authenticated and authorized:
//! `/healthz` (and its checks), `/pods`, `/runningpods`, `/configz`, `/metrics`,
//! `/metrics/probes`, `/metrics/resource`, `/metrics/slis`, `/stats/summary`, `/logs/` and
//! `/containerLogs/{namespace}/{pod}/{container}` (the streaming endpoints are in
//! [`crate::stream`]).

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::{Method, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kubelet_core::Runtime;
use kubelet_core::metrics;
use kubelet_pod_manager::LocalPods;
use kubelet_pod_manager::logs::{
    LogOptions, LogReader, LogStream, RuntimeContainer, locate_container_log,
};
use tokio_stream::Stream;
use tokio_util::io::ReaderStream;
use tokio_util::task::AbortOnDropHandle;

/// A response body: a whole text, or a log as it is read.
pub type ApiBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Bytes of log in flight between the reader task and the connection.
const LOG_PIPE: usize = 64 * 1024;

/// What the endpoints serve from.
#[derive(Clone)]
pub struct Endpoints {
    /// The pods and their statuses (`/pods`, and the containers of `/containerLogs`).
    pub pods: Arc<LocalPods>,
    /// The body of `/configz`.
    pub configz: Arc<String>,
    /// The runtime (log paths, whether a followed container still runs).
    pub runtime: Arc<dyn Runtime>,
    /// `podLogsDir`, for logs the runtime reports no path of.
    pub pod_logs_dir: PathBuf,
    /// Node, pod and container stats (`/stats/summary`, `/metrics/resource`).
    pub stats: Arc<kubelet_stats::StatsProvider>,
    /// The directory `/logs/` serves (upstream: `/var/log`).
    pub node_logs_dir: PathBuf,
    /// `streamingConnectionIdleTimeout`: an exec, attach or port-forward session with no
    /// traffic that long is closed; `None` never closes one.
    pub stream_idle_timeout: Option<std::time::Duration>,
    /// Which optional handler groups are served.
    pub handlers: Handlers,
    /// Sets the log verbosity (`PUT /debug/flags/v`); `None`: the endpoint answers that
    /// the verbosity cannot be changed.
    pub set_verbosity: Option<VerbositySetter>,
    /// The checks of `/healthz` and `/healthz/<check>`.
    pub healthz: crate::Healthz,
    /// The kubelet's metric families (`/metrics`, `/metrics/probes`, `/metrics/slis`),
    /// where the API's own requests are counted too.
    pub metrics: Arc<kubelet_core::metrics::kubelet::KubeletMetrics>,
}

/// Changes the kubelet's log verbosity (`-v`) while it runs.
pub type VerbositySetter = Arc<dyn Fn(u32) -> Result<(), String> + Send + Sync>;

/// The path of the log verbosity handler.
pub const DEBUG_FLAGS_PATH: &str = "/debug/flags/v";

/// The handlers `enableDebuggingHandlers: false` turns off (upstream's
/// `InstallDebuggingDisabledHandlers`), matched as Go's mux matches a pattern ending in
/// `/`.
const DEBUGGING_PATHS: [&str; 8] = [
    "/run/",
    "/exec/",
    "/attach/",
    "/portForward/",
    "/containerLogs/",
    "/runningpods/",
    "/debug/pprof/",
    "/logs/",
];

/// Upstream's optional handler groups of the kubelet API, from `enableDebuggingHandlers`,
/// `enableSystemLogHandler`, `enableProfilingHandler` and `enableDebugFlagsHandler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handlers {
    /// exec, attach, port-forward, run, container logs, running pods, `/configz` and
    /// the groups below.
    pub debugging: bool,
    /// `/logs/` (the node's log files).
    pub system_log: bool,
    /// `/debug/pprof/`.
    pub profiling: bool,
    /// `/debug/flags/v`.
    pub debug_flags: bool,
}

impl Default for Handlers {
    /// Upstream's defaults: all served.
    fn default() -> Self {
        Self {
            debugging: true,
            system_log: true,
            profiling: true,
            debug_flags: true,
        }
    }
}

impl Handlers {
    /// The groups a configuration turns on (unset fields at upstream's default, true).
    pub fn from_config(c: &kubelet_core::config::KubeletConfiguration) -> Self {
        Self {
            debugging: c.enable_debugging_handlers.unwrap_or(true),
            system_log: c.enable_system_log_handler.unwrap_or(true),
            profiling: c.enable_profiling_handler.unwrap_or(true),
            debug_flags: c.enable_debug_flags_handler.unwrap_or(true),
        }
    }

    /// The answer for `path` when its handler is turned off, with upstream's status and
    /// text; `None` when it is served.
    pub fn refusal(&self, path: &str) -> Option<Response<ApiBody>> {
        let under =
            |pattern: &str| path.starts_with(pattern) || path == pattern.trim_end_matches('/');
        let disabled = |message: &str| {
            Some(plain(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{message}\n"),
            ))
        };
        if !self.debugging {
            if DEBUGGING_PATHS.iter().any(|p| under(p)) {
                return disabled("Debug endpoints are disabled.");
            }
            // Upstream installs these with the debugging handlers only.
            if path == "/configz" || path == DEBUG_FLAGS_PATH {
                return Some(plain(StatusCode::NOT_FOUND, "404 page not found\n"));
            }
            return None;
        }
        if !self.system_log && under("/logs/") {
            return disabled("logs endpoint is disabled.");
        }
        if under("/debug/pprof/") {
            if !self.profiling {
                return disabled("profiling endpoint is disabled.");
            }
            // Go's runtime profiles have no equivalent here; say so rather than 404.
            return Some(plain(
                StatusCode::NOT_IMPLEMENTED,
                "/debug/pprof/ (Go's runtime profiler) is not served by this kubelet\n",
            ));
        }
        if !self.debug_flags && path == DEBUG_FLAGS_PATH {
            return disabled("flags endpoint is disabled.");
        }
        None
    }
}

/// A response with a whole body.
pub fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<ApiBody> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<ApiBody> {
    text(status, "text/plain; charset=utf-8", body)
}

/// Endpoints of upstream's kubelet API this kubelet does not serve yet.
const NOT_YET: [&str; 4] = ["/run", "/metrics/cadvisor", "/checkpoint", "/allocatedPods"];

impl Endpoints {
    /// Answers an authorized request.
    pub async fn route(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Response<ApiBody> {
        if let Some(health) = self.healthz.serve(path, query) {
            return health;
        }
        match path {
            "/configz" => text(
                StatusCode::OK,
                "application/json",
                self.configz.as_bytes().to_vec(),
            ),
            "/pods" | "/pods/" => {
                if method != Method::GET {
                    return method_not_allowed();
                }
                match self.pods.pod_list_json() {
                    Ok(json) => text(StatusCode::OK, "application/json", json),
                    Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                }
            }
            "/metrics" | "/metrics/probes" | "/metrics/resource" | "/stats/summary"
            | "/runningpods" | "/runningpods/"
                if method != Method::GET
                    && !(path == "/stats/summary" && method == Method::POST) =>
            {
                method_not_allowed()
            }
            "/metrics/slis" => match *method {
                Method::GET => text(
                    StatusCode::OK,
                    metrics::TEXT_CONTENT_TYPE,
                    metrics::render(&self.metrics.slis()),
                ),
                Method::DELETE => {
                    self.metrics.healthcheck.reset();
                    self.metrics.healthchecks_total.reset();
                    plain(StatusCode::OK, "metrics reset\n")
                }
                _ => method_not_allowed(),
            },
            "/metrics" => text(
                StatusCode::OK,
                metrics::TEXT_CONTENT_TYPE,
                metrics::render(&self.metrics.component()),
            ),
            "/metrics/probes" => text(
                StatusCode::OK,
                metrics::TEXT_CONTENT_TYPE,
                metrics::render(&self.metrics.probes()),
            ),
            "/metrics/resource" => match self.stats.resource_metrics().await {
                Ok(body) => text(StatusCode::OK, kubelet_stats::metrics::CONTENT_TYPE, body),
                Err(e) => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Internal Error: {e}"),
                ),
            },
            "/stats/summary" => self.summary(query).await,
            "/runningpods" | "/runningpods/" => self.running_pods().await,
            _ => {
                if path == "/logs" || path.starts_with("/logs/") {
                    if method != Method::GET && method != Method::HEAD {
                        return method_not_allowed();
                    }
                    return crate::node_logs::serve(&self.node_logs_dir, path).await;
                }
                if let Some(rest) = path.strip_prefix("/containerLogs/") {
                    if method != Method::GET {
                        return method_not_allowed();
                    }
                    let parts: Vec<&str> = rest.split('/').collect();
                    if let [namespace, pod, container] = parts[..]
                        && !namespace.is_empty()
                        && !pod.is_empty()
                        && !container.is_empty()
                    {
                        return self.container_logs(namespace, pod, container, query).await;
                    }
                } else if let Some(endpoint) = NOT_YET.iter().find(|p| {
                    path == **p || path.strip_prefix(**p).is_some_and(|r| r.starts_with('/'))
                }) {
                    return plain(
                        StatusCode::NOT_IMPLEMENTED,
                        format!("{endpoint} is not supported by this kubelet yet\n"),
                    );
                }
                plain(StatusCode::NOT_FOUND, "404 page not found\n")
            }
        }
    }

    /// `PUT /debug/flags/v` with the verbosity as its body, as upstream's
    /// `StringFlagPutHandler(GlogSetter)`.
    pub async fn debug_flags(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Response<ApiBody> {
        /// A verbosity is a few digits; more is not a verbosity.
        const MAX_BODY: usize = 64;
        if request.method() != Method::PUT {
            return plain(StatusCode::NOT_ACCEPTABLE, "unsupported http method");
        }
        let limited = http_body_util::Limited::new(request.into_body(), MAX_BODY);
        let body = match limited.collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("error reading request body: {e}"),
                );
            }
        };
        let value = String::from_utf8_lossy(&body).into_owned();
        let level: u32 = match value.parse() {
            Ok(level) => level,
            Err(e) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("strconv.ParseUint: parsing {value:?}: {e}"),
                );
            }
        };
        let Some(set) = &self.set_verbosity else {
            return plain(
                StatusCode::BAD_REQUEST,
                "the log verbosity of this kubelet cannot be changed while it runs",
            );
        };
        match set(level) {
            Ok(()) => {
                tracing::info!(
                    verbosity = level,
                    "log verbosity changed through {DEBUG_FLAGS_PATH}"
                );
                plain(
                    StatusCode::OK,
                    format!("successfully set klog.logging.verbosity to {value}"),
                )
            }
            Err(e) => plain(StatusCode::BAD_REQUEST, e),
        }
    }

    /// `/stats/summary[?only_cpu_and_memory=true]`, as upstream's `handleSummary`.
    async fn summary(&self, query: Option<&str>) -> Response<ApiBody> {
        let values: Vec<&str> = query
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.strip_prefix("only_cpu_and_memory="))
            .collect();
        let only_cpu_and_memory = values == ["true"];
        let summary = match self.stats.summary(only_cpu_and_memory).await {
            Ok(summary) => summary,
            Err(e) => {
                tracing::warn!(error = %e, "serving /stats/summary");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Internal Error: {e}"),
                );
            }
        };
        match serde_json::to_vec(&summary) {
            Ok(json) => text(StatusCode::OK, "application/json", json),
            Err(e) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Internal Error: {e}"),
            ),
        }
    }

    /// `/runningpods/`: the pods the runtime runs, as upstream's `getRunningPods`: a
    /// PodList of name, namespace, uid and each running container's name and image.
    async fn running_pods(&self) -> Response<ApiBody> {
        match kubelet_pod_manager::streaming::running_pods(self.runtime.as_ref()).await {
            Ok(list) => match serde_json::to_vec(&list) {
                Ok(json) => text(StatusCode::OK, "application/json", json),
                Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            },
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        }
    }

    /// `/containerLogs/{namespace}/{pod}/{container}`, as upstream's `getContainerLogs`.
    async fn container_logs(
        &self,
        namespace: &str,
        pod_name: &str,
        container: &str,
        query: Option<&str>,
    ) -> Response<ApiBody> {
        let request = match LogQuery::parse(query.unwrap_or_default(), SystemTime::now()) {
            Ok(request) => request,
            Err(QueryError::Decode) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    r#"{"message": "Unable to decode query."}"#,
                );
            }
            Err(QueryError::Invalid) => {
                return plain(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    r#"{"message": "Invalid request."}"#,
                );
            }
            Err(QueryError::Stream(stream)) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unable to return the given log stream: {stream:?}. Please enable \
                         PodLogsQuerySplitStreams feature gate in kubelet"
                    ),
                );
            }
        };
        let Some(pod) = self.pods.get(namespace, pod_name) else {
            return plain(
                StatusCode::NOT_FOUND,
                format!("pod {pod_name:?} does not exist"),
            );
        };
        let log = match locate_container_log(
            self.runtime.as_ref(),
            &pod,
            container,
            request.previous,
            &self.pod_logs_dir,
        )
        .await
        {
            Ok(log) => log,
            Err(e @ kubelet_pod_manager::Error::ContainerNotFound { .. }) => {
                return plain(StatusCode::NOT_FOUND, e.to_string());
            }
            Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let reader = match LogReader::open(&log.path, request.options).await {
            Ok(reader) => reader,
            Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let (read_half, mut write_half) = tokio::io::duplex(LOG_PIPE);
        let running = RuntimeContainer::new(self.runtime.clone(), log.container_id.clone());
        let (namespace, pod_name, container) = (
            namespace.to_owned(),
            pod_name.to_owned(),
            container.to_owned(),
        );
        let task = tokio::spawn(async move {
            match reader.copy_to(&mut write_half, &running).await {
                Ok(bytes) => {
                    tracing::debug!(%namespace, pod = %pod_name, %container, bytes, "served container log");
                }
                // Mostly a client that went away.
                Err(e) => {
                    tracing::debug!(%namespace, pod = %pod_name, %container, error = %e, "container log ended");
                }
            }
        });
        let body = LogBody {
            stream: ReaderStream::new(read_half),
            _task: AbortOnDropHandle::new(task),
        };
        let mut response = Response::new(body.boxed());
        if let Ok(value) = "text/plain; charset=utf-8".parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    }
}

fn method_not_allowed() -> Response<ApiBody> {
    plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

/// A log streamed from its reader task, which stops when the body is dropped (the
/// client went away).
struct LogBody {
    stream: ReaderStream<tokio::io::DuplexStream>,
    _task: AbortOnDropHandle<()>,
}

impl Body for LogBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.stream)
            .poll_next(cx)
            .map(|chunk| chunk.map(|bytes| bytes.map(Frame::data)))
    }
}

/// A `/containerLogs` query parsed and validated.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_log_query(query: &str) {
    let _ = LogQuery::parse(query, SystemTime::now());
}

/// Why a `/containerLogs` query is refused.
#[derive(Debug, PartialEq, Eq)]
enum QueryError {
    /// A value of the wrong type (400).
    Decode,
    /// Values that fail upstream's `ValidatePodLogOptions` (422).
    Invalid,
    /// A stream other than `All`: upstream's `PodLogsQuerySplitStreams` gate (alpha,
    /// off) is not on.
    Stream(String),
}

/// A `/containerLogs` query: upstream's `PodLogOptions` (v1 query parameters).
#[derive(Debug, PartialEq, Eq)]
struct LogQuery {
    options: LogOptions,
    previous: bool,
}

impl LogQuery {
    /// Decodes the query as upstream's parameter codec does (`tail` is the old name of
    /// `tailLines`, `tail=all` means all), then validates it; `now` anchors
    /// `sinceSeconds`.
    fn parse(query: &str, now: SystemTime) -> Result<Self, QueryError> {
        let mut values: Vec<(String, String)> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key).ok_or(QueryError::Decode)?;
            let value = percent_decode(value).ok_or(QueryError::Decode)?;
            values.push((key, value));
        }
        // The first value of a parameter counts, as Go's url.Values.Get.
        let get = |name: &str| {
            values
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        // Go's query booleans: absent, "0" or "false" are false; anything else is true.
        let flag =
            |name: &str| get(name).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"));
        let int = |name: &str| -> Result<Option<i64>, QueryError> {
            get(name)
                .map(|v| v.parse::<i64>().map_err(|_| QueryError::Decode))
                .transpose()
        };
        let tail_lines = match get("tail") {
            Some("all") => None,
            Some(tail) => Some(tail.parse::<i64>().map_err(|_| QueryError::Decode)?),
            None => int("tailLines")?,
        };
        let limit_bytes = int("limitBytes")?;
        let since_seconds = int("sinceSeconds")?;
        let since_time = get("sinceTime")
            .filter(|t| !t.is_empty())
            .map(|t| t.parse::<Timestamp>().map_err(|_| QueryError::Decode))
            .transpose()?;
        if tail_lines.is_some_and(|n| n < 0)
            || limit_bytes.is_some_and(|n| n < 1)
            || since_seconds.is_some_and(|n| n < 1)
            || (since_seconds.is_some() && since_time.is_some())
        {
            return Err(QueryError::Invalid);
        }
        let stream = match get("stream") {
            None | Some("All") => LogStream::All,
            Some(other) => return Err(QueryError::Stream(other.to_owned())),
        };
        let since = match (since_seconds, since_time) {
            (Some(secs), _) => now.checked_sub(Duration::from_secs(secs.unsigned_abs())),
            (None, Some(time)) => Some(SystemTime::from(time)),
            (None, None) => None,
        };
        Ok(Self {
            options: LogOptions {
                follow: flag("follow"),
                tail_lines: tail_lines.map(i64::unsigned_abs),
                limit_bytes: limit_bytes.map(i64::unsigned_abs),
                since,
                timestamps: flag("timestamps"),
                stream,
            },
            previous: flag("previous"),
        })
    }
}

/// Decodes `%XX` escapes and `+` (a space), as a query is encoded; `None` for a bad
/// escape or text that is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<LogQuery, QueryError> {
        LogQuery::parse(
            query,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        )
    }

    #[test]
    fn log_queries_are_decoded_as_upstream() {
        let q = parse("").expect("empty");
        assert_eq!(q.options, LogOptions::default());
        assert!(!q.previous);
        let q = parse("follow=true&tailLines=10&limitBytes=500&timestamps=1&previous=yes")
            .expect("options");
        assert!(q.options.follow && q.options.timestamps && q.previous);
        assert_eq!(q.options.tail_lines, Some(10));
        assert_eq!(q.options.limit_bytes, Some(500));
        let q = parse("follow=false&timestamps=0&previous=FALSE").expect("false values");
        assert!(!q.options.follow && !q.options.timestamps && !q.previous);
        assert!(parse("follow").expect("bare flag").options.follow);
        assert_eq!(parse("tail=3").expect("tail").options.tail_lines, Some(3));
        assert_eq!(
            parse("tail=all&tailLines=3")
                .expect("all")
                .options
                .tail_lines,
            None
        );
        let q = parse("sinceSeconds=10").expect("since seconds");
        assert_eq!(
            q.options.since,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(999_990))
        );
        let q = parse("sinceTime=2024-05-01T10%3A00%3A00Z").expect("since time");
        let want: Timestamp = "2024-05-01T10:00:00Z".parse().expect("time");
        assert_eq!(q.options.since, Some(SystemTime::from(want)));
        assert_eq!(
            parse("stream=All").expect("all").options.stream,
            LogStream::All
        );
    }

    #[test]
    fn bad_log_queries_are_refused_as_upstream() {
        assert_eq!(parse("tailLines=ten"), Err(QueryError::Decode));
        assert_eq!(parse("sinceTime=yesterday"), Err(QueryError::Decode));
        assert_eq!(parse("limitBytes=%zz"), Err(QueryError::Decode));
        assert_eq!(parse("tailLines=-1"), Err(QueryError::Invalid));
        assert_eq!(parse("limitBytes=0"), Err(QueryError::Invalid));
        assert_eq!(parse("sinceSeconds=0"), Err(QueryError::Invalid));
        assert_eq!(
            parse("sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z"),
            Err(QueryError::Invalid)
        );
        assert_eq!(
            parse("stream=Stdout"),
            Err(QueryError::Stream("Stdout".into()))
        );
    }

    #[test]
    fn queries_are_percent_decoded() {
        assert_eq!(percent_decode("a%3Ab+c").as_deref(), Some("a:b c"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
