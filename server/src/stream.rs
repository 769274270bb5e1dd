//! `/exec`, `/attach` and `/portForward`, as upstream's `getExec`, `getAttach` and
//! `getPortForward`: the runtime answers the request with a URL on its streaming server,
//! and the kubelet proxies the client's upgraded connection there. The proxy copies
//! bytes once both sides switched protocols, so SPDY and WebSocket clients (and every
//! sub-protocol version they negotiate with the runtime) work alike.

use std::net::SocketAddr;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use kubelet_core::{RuntimeErrorKind, StreamRequest};
use kubelet_pod_manager::streaming::{ready_sandbox_id, running_container_id};
use tokio::net::TcpStream;

use crate::routes::{ApiBody, Endpoints, text};

/// Most exec, attach and port-forward sessions proxied at once. An upgraded connection
/// leaves the server's connection limit once it switched protocols, so the sessions
/// have a bound of their own.
const MAX_STREAMS: usize = 256;

/// The sessions' slots: one is held by each proxied connection until it closes.
static STREAM_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_STREAMS);

/// Most sessions one user holds: the API server (one user for every `kubectl exec`) may
/// take most, but no user can take them all.
const MAX_STREAMS_PER_USER: usize = MAX_STREAMS * 3 / 4;

/// The sessions each user holds.
static USER_STREAMS: std::sync::Mutex<Option<std::collections::HashMap<String, usize>>> =
    std::sync::Mutex::new(None);

/// How long the runtime's streaming server may take to accept a connection, and to
/// answer the upgrade.
const BACKEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One user's hold on a session; dropping it gives the session back.
struct UserSlot(String);

impl UserSlot {
    /// A session for `user`, unless it holds its share already.
    fn take(user: &str) -> Option<Self> {
        let mut streams = USER_STREAMS.lock().unwrap_or_else(|p| p.into_inner());
        let held = streams
            .get_or_insert_with(Default::default)
            .entry(user.to_owned())
            .or_default();
        if *held >= MAX_STREAMS_PER_USER {
            return None;
        }
        *held += 1;
        Some(Self(user.to_owned()))
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut streams = USER_STREAMS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = streams.as_mut()
            && let Some(held) = map.get_mut(&self.0)
        {
            *held -= 1;
            if *held == 0 {
                map.remove(&self.0);
            }
        }
    }
}

/// The streaming endpoints' path prefixes.
const PREFIXES: [&str; 3] = ["/exec/", "/attach/", "/portForward/"];

/// Whether `path` is one of the streaming endpoints.
pub fn is_stream_path(path: &str) -> bool {
    PREFIXES.iter().any(|p| path.starts_with(p))
}

fn plain(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ApiBody> {
    text(status, "text/plain; charset=utf-8", body)
}

/// What a streaming request asks for, from its path and query.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `/exec/{namespace}/{pod}[/{uid}]/{container}?command=...`
    Exec {
        namespace: String,
        pod: String,
        uid: Option<String>,
        container: String,
        command: Vec<String>,
        streams: Streams,
    },
    /// `/attach/{namespace}/{pod}[/{uid}]/{container}`
    Attach {
        namespace: String,
        pod: String,
        uid: Option<String>,
        container: String,
        streams: Streams,
    },
    /// `/portForward/{namespace}/{pod}[/{uid}]`
    PortForward {
        namespace: String,
        pod: String,
        uid: Option<String>,
        ports: Vec<i32>,
    },
}

/// The `input`, `output`, `error` and `tty` parameters (stdin, stdout, stderr, TTY).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// Why a streaming request is refused before the runtime is asked.
#[derive(Debug, PartialEq, Eq)]
enum BadRequest {
    /// No such route (404).
    NotFound,
    /// Upstream's option errors (400).
    Invalid(String),
}

/// A streaming request's path and query parsed as for a SPDY and a WebSocket client.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_target(path: &str, query: &str) {
    let _ = Target::parse(path, query, false);
    let _ = Target::parse(path, query, true);
}

fn query_values(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((
                crate::routes::percent_decode(key)?,
                crate::routes::percent_decode(value)?,
            ))
        })
        .collect()
}

impl Target {
    fn parse(path: &str, query: &str, websocket: bool) -> Result<Self, BadRequest> {
        let values = query_values(query);
        let first = |name: &str| {
            values
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let all = |name: &str| -> Vec<String> {
            values
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        // As upstream's remotecommand NewOptions: a stream is on only when its value is
        // "1"; the parameters have the core API's names (`input`, `output`, `error`).
        let streams = || -> Result<Streams, BadRequest> {
            let on = |name: &str| first(name) == Some("1");
            let mut streams = Streams {
                stdin: on("input"),
                stdout: on("output"),
                stderr: on("error"),
                tty: on("tty"),
            };
            // A TTY merges stderr into stdout.
            if streams.tty {
                streams.stderr = false;
            }
            if !streams.stdin && !streams.stdout && !streams.stderr {
                return Err(BadRequest::Invalid(
                    "you must specify at least 1 of stdin, stdout, stderr".into(),
                ));
            }
            Ok(streams)
        };
        let (kind, rest) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .ok_or(BadRequest::NotFound)?;
        let parts: Vec<String> = rest.split('/').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(BadRequest::NotFound);
        }
        match (kind, parts.as_slice()) {
            ("exec" | "attach", [namespace, pod, rest @ ..]) => {
                let (uid, container) = match rest {
                    [container] => (None, container.clone()),
                    [uid, container] => (Some(uid.clone()), container.clone()),
                    _ => return Err(BadRequest::NotFound),
                };
                let (namespace, pod) = (namespace.clone(), pod.clone());
                if kind == "exec" {
                    Ok(Target::Exec {
                        namespace,
                        pod,
                        uid,
                        container,
                        command: all("command"),
                        streams: streams()?,
                    })
                } else {
                    Ok(Target::Attach {
                        namespace,
                        pod,
                        uid,
                        container,
                        streams: streams()?,
                    })
                }
            }
            ("portForward", [namespace, pod, rest @ ..]) if rest.len() <= 1 => {
                // As upstream's NewV4Options: a WebSocket client names its ports in the
                // query; an SPDY client names them per stream, later.
                let mut ports = Vec::new();
                if websocket {
                    let given = all("port");
                    if given.is_empty() {
                        return Err(BadRequest::Invalid(
                            "query parameter \"port\" is required".into(),
                        ));
                    }
                    for port in given {
                        let parsed: u16 = port.parse().map_err(|e| {
                            BadRequest::Invalid(format!("unable to parse {port:?} as a port: {e}"))
                        })?;
                        if parsed == 0 {
                            return Err(BadRequest::Invalid(format!("port {port:?} must be > 0")));
                        }
                        ports.push(i32::from(parsed));
                    }
                }
                Ok(Target::PortForward {
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    uid: rest.first().cloned(),
                    ports,
                })
            }
            _ => Err(BadRequest::NotFound),
        }
    }

    fn pod(&self) -> (&str, &str, Option<&str>) {
        match self {
            Target::Exec {
                namespace,
                pod,
                uid,
                ..
            }
            | Target::Attach {
                namespace,
                pod,
                uid,
                ..
            }
            | Target::PortForward {
                namespace,
                pod,
                uid,
                ..
            } => (namespace, pod, uid.as_deref()),
        }
    }
}

/// Whether the request asks to switch protocols (`Connection: Upgrade`).
fn is_upgrade(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

fn is_websocket(request: &Request<Incoming>) -> bool {
    is_upgrade(request)
        && request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

impl Endpoints {
    /// Answers an authorized `/exec`, `/attach` or `/portForward` request.
    pub async fn stream(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        user: &str,
    ) -> Response<ApiBody> {
        if request.method() != Method::GET && request.method() != Method::POST {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        }
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let target = match Target::parse(&path, &query, is_websocket(&request)) {
            Ok(target) => target,
            Err(BadRequest::NotFound) => {
                return plain(StatusCode::NOT_FOUND, "404 page not found\n");
            }
            Err(BadRequest::Invalid(why)) => return plain(StatusCode::BAD_REQUEST, why),
        };
        let (namespace, pod_name, uid) = target.pod();
        let Some(pod) = self.pods.get(namespace, pod_name) else {
            return plain(StatusCode::NOT_FOUND, "pod does not exist");
        };
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        if matches!(target, Target::PortForward { .. }) && uid.is_some_and(|u| u != pod_uid) {
            return plain(StatusCode::NOT_FOUND, "pod not found");
        }
        let url = match self.stream_url(&target, &pod_uid).await {
            Ok(url) => url,
            Err(response) => return response,
        };
        tracing::debug!(namespace, pod = pod_name, %path, "proxying to the runtime's streaming server");
        closing(proxy_upgrade(request, &url, peer, user, self.stream_idle_timeout).await)
    }

    /// Asks the runtime for the URL serving `target`; errors answer as upstream's
    /// `streaming.WriteError`.
    async fn stream_url(
        &self,
        target: &Target,
        pod_uid: &str,
    ) -> Result<String, Response<ApiBody>> {
        let runtime = self.runtime.as_ref();
        let not_found = |e: kubelet_pod_manager::Error| {
            let status = match &e {
                kubelet_pod_manager::Error::Core(core) => runtime_status(core),
                // Upstream's findContainer error is not a gRPC status: a 500.
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            plain(status, e.to_string())
        };
        let request = match target {
            Target::Exec {
                container,
                command,
                streams,
                ..
            } => StreamRequest::Exec {
                container_id: running_container_id(runtime, pod_uid, container)
                    .await
                    .map_err(not_found)?,
                command: command.clone(),
                tty: streams.tty,
                stdin: streams.stdin,
                stdout: streams.stdout,
                stderr: streams.stderr,
            },
            Target::Attach {
                container, streams, ..
            } => StreamRequest::Attach {
                container_id: running_container_id(runtime, pod_uid, container)
                    .await
                    .map_err(not_found)?,
                tty: streams.tty,
                stdin: streams.stdin,
                stdout: streams.stdout,
                stderr: streams.stderr,
            },
            Target::PortForward {
                namespace,
                pod,
                ports,
                ..
            } => StreamRequest::PortForward {
                sandbox_id: ready_sandbox_id(runtime, pod_uid, &format!("{pod}_{namespace}"))
                    .await
                    .map_err(not_found)?,
                ports: ports.clone(),
            },
        };
        runtime
            .stream_url(&request)
            .await
            .map_err(|e| plain(runtime_status(&e), e.to_string()))
    }
}

/// The HTTP status of a runtime error, as upstream's `streaming.WriteError` maps gRPC
/// codes (NotFound 404, anything else 500).
fn runtime_status(error: &kubelet_core::Error) -> StatusCode {
    match error {
        kubelet_core::Error::Runtime(e) if e.kind == RuntimeErrorKind::NotFound => {
            StatusCode::NOT_FOUND
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A response that did not switch protocols ends its connection: a client whose
/// upgrade failed does not keep it for other requests.
fn closing(mut response: Response<ApiBody>) -> Response<ApiBody> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Upstream's responder: proxy failures are 500s naming the cause.
fn proxy_error(why: impl std::fmt::Display) -> Response<ApiBody> {
    tracing::warn!(error = %why, "error while proxying a streaming request");
    plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{why}\n"))
}

/// Headers that describe one hop, not the request; never forwarded.
const HOP_BY_HOP: [&str; 5] = [
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
];

/// Forwards an upgrade request to `url` and, once the runtime switched protocols, copies
/// bytes both ways until either side closes (upstream's `UpgradeAwareHandler` with
/// `upgradeRequired`).
async fn proxy_upgrade(
    mut request: Request<Incoming>,
    url: &str,
    peer: SocketAddr,
    user: &str,
    idle_timeout: Option<std::time::Duration>,
) -> Response<ApiBody> {
    if !is_upgrade(&request) {
        return proxy_error("Upgrade request required");
    }
    let Some(user_slot) = UserSlot::take(user) else {
        tracing::warn!(
            user,
            limit = MAX_STREAMS_PER_USER,
            "refusing a streaming session: the user holds its share"
        );
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many streaming sessions (exec, attach, port-forward) open by {user}: at most {MAX_STREAMS_PER_USER}\n"
            ),
        );
    };
    let Ok(slot) = STREAM_SLOTS.try_acquire() else {
        tracing::warn!(
            limit = MAX_STREAMS,
            "refusing a streaming session: too many open"
        );
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many streaming sessions (exec, attach, port-forward) open: at most {MAX_STREAMS}\n"
            ),
        );
    };
    let uri: Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return proxy_error(format!("the runtime's streaming URL {url:?}: {e}")),
    };
    if uri.scheme_str() != Some("http") {
        return proxy_error(format!(
            "the runtime's streaming URL {url:?}: only http streaming servers are supported"
        ));
    }
    let Some(authority) = uri.authority().cloned() else {
        return proxy_error(format!("the runtime's streaming URL {url:?} has no host"));
    };
    let address = match authority.port_u16() {
        Some(_) => authority.as_str().to_owned(),
        None => format!("{}:80", authority.host()),
    };
    let stream = match tokio::time::timeout(BACKEND_TIMEOUT, TcpStream::connect(&address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return proxy_error(format!("error dialing backend {address}: {e}")),
        Err(_) => {
            return proxy_error(format!(
                "error dialing backend {address}: no connection within {BACKEND_TIMEOUT:?}"
            ));
        }
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(handshake) => handshake,
            Err(e) => return proxy_error(format!("error dialing backend {address}: {e}")),
        };
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "streaming server connection ended");
        }
    });

    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = Request::builder()
        .method(request.method().clone())
        .uri(path);
    for (name, value) in request.headers() {
        if name == header::HOST
            || name == header::AUTHORIZATION
            || HOP_BY_HOP.contains(&name.as_str())
        {
            continue;
        }
        upstream = upstream.header(name, value);
    }
    let forwarded_for = match request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    upstream = upstream
        .header(header::HOST, authority.as_str())
        .header("x-forwarded-for", forwarded_for);
    let upstream = match upstream.body(http_body_util::Empty::<bytes::Bytes>::new()) {
        Ok(upstream) => upstream,
        Err(e) => return proxy_error(format!("building the streaming request: {e}")),
    };
    let mut response =
        match tokio::time::timeout(BACKEND_TIMEOUT, sender.send_request(upstream)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return proxy_error(format!("error proxying to {address}: {e}")),
            Err(_) => {
                return proxy_error(format!(
                    "error proxying to {address}: no answer within {BACKEND_TIMEOUT:?}"
                ));
            }
        };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The runtime refused (e.g. an expired token): pass its answer on.
        let (parts, body) = response.into_parts();
        let body = body.map_err(std::io::Error::other).boxed();
        return Response::from_parts(parts, body);
    }
    let backend = hyper::upgrade::on(&mut response);
    let client = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let _slots = (slot, user_slot);
        let (client, backend) = match tokio::time::timeout(BACKEND_TIMEOUT, async {
            tokio::try_join!(client, backend)
        })
        .await
        {
            Ok(Ok(both)) => both,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "a streaming connection did not upgrade");
                return;
            }
            Err(_) => {
                tracing::debug!("a streaming connection did not upgrade in time");
                return;
            }
        };
        let client = TokioIo::new(client);
        let backend = TokioIo::new(backend);
        match copy_until_idle(client, backend, idle_timeout).await {
            Ok((sent, received)) => {
                tracing::debug!(sent, received, "streaming connection closed");
            }
            Err(e) => tracing::debug!(error = %e, "streaming connection ended"),
        }
    });
    let mut switching = Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in response.headers() {
        switching.headers_mut().append(name, value.clone());
    }
    if !switching.headers().contains_key(header::CONNECTION) {
        switching
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    switching
}

/// Copies bytes both ways until either side closes, or until nothing went either way
/// for `idle_timeout` (`streamingConnectionIdleTimeout`; `None`: no limit). Returns the
/// bytes sent to the backend and received from it.
async fn copy_until_idle<C, B>(
    client: C,
    backend: B,
    idle_timeout: Option<std::time::Duration>,
) -> std::io::Result<(u64, u64)>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut backend_read, mut backend_write) = tokio::io::split(backend);
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut sent, mut received) = (0u64, 0u64);
    let (mut client_open, mut backend_open) = (true, true);
    while client_open || backend_open {
        let idle = async {
            match idle_timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = client_read.read(&mut up), if client_open => {
                let n = read?;
                if n == 0 {
                    client_open = false;
                    backend_write.shutdown().await?;
                } else {
                    backend_write.write_all(&up[..n]).await?;
                    sent += n as u64;
                }
            }
            read = backend_read.read(&mut down), if backend_open => {
                let n = read?;
                if n == 0 {
                    backend_open = false;
                    client_write.shutdown().await?;
                } else {
                    client_write.write_all(&down[..n]).await?;
                    received += n as u64;
                }
            }
            () = idle => {
                tracing::debug!(?idle_timeout, "closing an idle streaming connection");
                break;
            }
        }
    }
    Ok((sent, received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_streams_are_closed_and_busy_ones_are_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (backend, mut backend_peer) = tokio::io::duplex(64);
        let limit = std::time::Duration::from_secs(60);
        let copy = tokio::spawn(copy_until_idle(client, backend, Some(limit)));
        // Traffic keeps it open past the limit.
        for _ in 0..3 {
            tokio::time::sleep(std::time::Duration::from_secs(40)).await;
            client_peer.write_all(b"ping").await.expect("write");
            let mut got = [0u8; 4];
            backend_peer.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"ping");
        }
        assert!(!copy.is_finished());
        // Silence: closed once the limit passes.
        tokio::time::sleep(limit + std::time::Duration::from_secs(1)).await;
        let (sent, received) = copy.await.expect("task").expect("copied");
        assert_eq!((sent, received), (12, 0));
    }

    #[test]
    fn a_user_holds_at_most_its_share_of_the_sessions() {
        let held: Vec<UserSlot> = (0..MAX_STREAMS_PER_USER)
            .map(|_| UserSlot::take("kube-apiserver-kubelet-client").expect("within the share"))
            .collect();
        assert!(UserSlot::take("kube-apiserver-kubelet-client").is_none());
        let other = UserSlot::take("someone-else");
        assert!(other.is_some(), "others keep theirs");
        drop(held);
        assert!(UserSlot::take("kube-apiserver-kubelet-client").is_some());
    }

    fn exec(path: &str, query: &str) -> Result<Target, BadRequest> {
        Target::parse(path, query, false)
    }

    #[test]
    fn exec_and_attach_requests_are_read_as_upstream() {
        let target = exec(
            "/exec/default/web/app",
            "command=sh&command=-c&command=echo+hi&input=1&output=1&error=1&tty=1",
        )
        .expect("exec");
        assert_eq!(
            target,
            Target::Exec {
                namespace: "default".into(),
                pod: "web".into(),
                uid: None,
                container: "app".into(),
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                // A TTY drops stderr, as upstream.
                streams: Streams {
                    stdin: true,
                    stdout: true,
                    stderr: false,
                    tty: true
                },
            }
        );
        let with_uid = exec("/exec/default/web/u-1/app", "command=ls&output=1").expect("uid");
        assert_eq!(with_uid.pod(), ("default", "web", Some("u-1")));
        assert_eq!(
            exec("/exec/default/web/app", "command=ls&output=true"),
            Err(BadRequest::Invalid(
                "you must specify at least 1 of stdin, stdout, stderr".into()
            )),
            "only \"1\" turns a stream on, as upstream"
        );
        assert!(matches!(
            exec("/attach/ns/web/app", "output=1&error=1"),
            Ok(Target::Attach { .. })
        ));
        assert_eq!(
            exec("/exec/default/web", "output=1"),
            Err(BadRequest::NotFound)
        );
        assert_eq!(
            exec("/exec/default/web/u/app/extra", "output=1"),
            Err(BadRequest::NotFound)
        );
        assert_eq!(
            exec("/exec/default//app", "output=1"),
            Err(BadRequest::NotFound)
        );
    }

    #[test]
    fn port_forward_ports_come_from_the_query_for_websocket_clients_only() {
        let spdy = Target::parse("/portForward/ns/web", "", false).expect("spdy");
        assert_eq!(
            spdy,
            Target::PortForward {
                namespace: "ns".into(),
                pod: "web".into(),
                uid: None,
                ports: vec![],
            }
        );
        let ws = Target::parse("/portForward/ns/web/u-1", "port=80&port=8080", true).expect("ws");
        assert_eq!(
            ws,
            Target::PortForward {
                namespace: "ns".into(),
                pod: "web".into(),
                uid: Some("u-1".into()),
                ports: vec![80, 8080],
            }
        );
        assert_eq!(
            Target::parse("/portForward/ns/web", "", true),
            Err(BadRequest::Invalid(
                "query parameter \"port\" is required".into()
            ))
        );
        assert_eq!(
            Target::parse("/portForward/ns/web", "port=0", true),
            Err(BadRequest::Invalid("port \"0\" must be > 0".into()))
        );
        assert!(matches!(
            Target::parse("/portForward/ns/web", "port=http", true),
            Err(BadRequest::Invalid(why)) if why.starts_with("unable to parse \"http\" as a port")
        ));
    }
}
