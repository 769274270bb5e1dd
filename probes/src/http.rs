//! httpGet probes: an HTTP/1.1 GET from the node with upstream's headers, redirect rules,
//! status mapping and messages.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::HTTPGetAction;
use kubelet_core::ProbeOutcome;
use tokio::net::TcpStream;
use tokio_util::task::AbortOnDropHandle;

use crate::tcp::{dial_error, join_host_port};

/// The `User-Agent` upstream's kubelet sends: `kube-probe/<major>.<minor>` of the
/// Kubernetes release this kubelet follows.
pub const USER_AGENT: &str = "kube-probe/1.37";

/// The `User-Agent` of lifecycle hook requests (upstream `kube-lifecycle/<major>.<minor>`).
pub const LIFECYCLE_USER_AGENT: &str = "kube-lifecycle/1.37";

/// Upstream's `maxRespBodyLength`: at most 10 KiB of a response body is read.
const MAX_BODY: usize = 10 * 1024;

/// Redirects followed before giving up, as Go's default client.
const MAX_REDIRECTS: usize = 10;

/// A probe request: where to go and with which headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpProbeRequest {
    url: Url,
    /// Value of the `Host` header when the spec sets one.
    host_header: Option<String>,
    /// Headers other than `Host`, in spec order, with upstream's defaults added.
    headers: Vec<(String, String)>,
}

impl HttpProbeRequest {
    /// Upstream `NewRequestForHTTPGetAction` with the port already resolved, sending
    /// `user_agent` unless the action sets one ([`USER_AGENT`] for probes).
    pub(crate) fn from_action(
        action: &HTTPGetAction,
        host: &str,
        port: u16,
        user_agent: &str,
    ) -> Self {
        let scheme = action
            .scheme
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "http".to_owned());
        let path = action.path.clone().unwrap_or_default();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let url = Url {
            scheme,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            explicit_port: true,
            path,
        };
        let spec_headers = action.http_headers.as_deref().unwrap_or_default();
        let mut headers: Vec<(String, String)> = spec_headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let has = |headers: &[(String, String)], name: &str| {
            headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        if !has(&headers, "user-agent") {
            headers.push(("User-Agent".to_owned(), user_agent.to_owned()));
        }
        match headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            None => headers.push(("Accept".to_owned(), "*/*".to_owned())),
            Some((_, v)) if v.is_empty() => {
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case("accept"))
            }
            Some(_) => {}
        }
        let host_header = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty());
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("host"));
        Self {
            url,
            host_header,
            headers,
        }
    }
}

/// A parsed http(s) URL: enough for probe requests and their redirects.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: String,
    /// Host name or IP, IPv6 without brackets.
    host: String,
    port: u16,
    /// Whether the port was written in the URL (it then appears in `Host` and messages).
    explicit_port: bool,
    /// Path and query, starting with `/`.
    path: String,
}

impl Url {
    fn authority(&self) -> String {
        if self.explicit_port {
            join_host_port(&self.host, self.port)
        } else if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// Resolves a `Location` header against this URL.
    fn join(&self, location: &str) -> Option<Url> {
        if let Some((scheme, rest)) = location.split_once("://") {
            return Self::parse_absolute(&scheme.to_ascii_lowercase(), rest);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Self::parse_absolute(&self.scheme, rest);
        }
        let path = if location.starts_with('/') {
            location.to_owned()
        } else {
            let dir = self.path.split('?').next().unwrap_or("/");
            let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Some(Url {
            path,
            ..self.clone()
        })
    }

    fn parse_absolute(scheme: &str, rest: &str) -> Option<Url> {
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, tail) = v6.split_once(']')?;
            (host, tail.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let (port, explicit_port) = match port {
            Some(p) if !p.is_empty() => (p.parse().ok()?, true),
            _ => (default_port, false),
        };
        Some(Url {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            explicit_port,
            path,
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

/// A response as far as the probe cares.
struct Response {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

/// Runs the probe with `timeout` over the whole exchange, redirects included (Go's
/// `http.Client.Timeout`).
pub(crate) async fn probe(request: &HttpProbeRequest, timeout: Duration) -> ProbeOutcome {
    let mut current = request.url.clone();
    let exchange = follow(request, &mut current);
    let result = tokio::time::timeout(timeout, exchange).await;
    let response = match result {
        Ok(Ok(response)) => response,
        Ok(Err(message)) => return ProbeOutcome::Failure(message),
        Err(_) => {
            return ProbeOutcome::Failure(format!(
                "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                current.to_string()
            ));
        }
    };
    let code = response.status.as_u16();
    if (200..300).contains(&code) {
        ProbeOutcome::Success
    } else if (300..400).contains(&code) {
        ProbeOutcome::Warning(format!(
            "Probe terminated redirects, Response body: {}",
            response.body
        ))
    } else {
        // Upstream keeps the body out of the message (kubernetes#99425).
        ProbeOutcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// How an httpGet lifecycle hook got its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookHttp {
    /// As the handler said.
    Answered,
    /// The handler said HTTPS, the server answered in plain HTTP, and the retry over HTTP
    /// succeeded: upstream records a `LifecycleHTTPFallback` Warning event with this
    /// message.
    FellBackToHttp(String),
}

/// Runs an httpGet lifecycle handler against `host:port` as upstream's
/// `runHTTPHandler`: the probe's request and redirect rules with the
/// [`LIFECYCLE_USER_AGENT`], certificates not verified, and any answer is success (the
/// status code is not looked at). An HTTPS request answered in plain HTTP is retried
/// over HTTP without its `Authorization` header. The error is Go's `Get "url": cause`.
pub async fn lifecycle_http_get(
    action: &HTTPGetAction,
    host: &str,
    port: u16,
) -> Result<HookHttp, String> {
    let request = HttpProbeRequest::from_action(action, host, port, LIFECYCLE_USER_AGENT);
    let mut current = request.url.clone();
    let error = match follow(&request, &mut current).await {
        Ok(_) => return Ok(HookHttp::Answered),
        Err(error) => error,
    };
    if !error.contains(crate::tls::HTTP_RESPONSE_TO_HTTPS) {
        return Err(error);
    }
    let mut plain = request;
    plain.url.scheme = "http".to_owned();
    plain
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
    let mut current = plain.url.clone();
    match follow(&plain, &mut current).await {
        Ok(_) => Ok(HookHttp::FellBackToHttp(format!(
            "request to HTTPS lifecycle hook {} got HTTP response, retry with HTTP succeeded",
            plain.url.authority()
        ))),
        Err(_) => Err(error),
    }
}

/// Sends the request and follows redirects to the same host name; `current` is the URL
/// in flight, for the timeout message. Errors are Go's `Get "url": cause` texts.
async fn follow(request: &HttpProbeRequest, current: &mut Url) -> Result<Response, String> {
    let original_host = &request.url.host;
    let mut redirects = 0;
    loop {
        let host_header = match &request.host_header {
            Some(h) if current.authority() == request.url.authority() => h.clone(),
            _ => current.authority(),
        };
        let response = send(current, &host_header, &request.headers).await?;
        let is_redirect = matches!(response.status.as_u16(), 301 | 302 | 303 | 307 | 308);
        let next = match (&response.location, is_redirect) {
            (Some(location), true) => current.join(location).ok_or_else(|| {
                format!(
                    "Get {:?}: failed to parse Location header {location:?}",
                    current.to_string()
                )
            })?,
            _ => return Ok(response),
        };
        if next.host != *original_host {
            // Upstream's redirect checker compares `URL.Hostname()` as written:
            // ErrUseLastResponse for another host.
            return Ok(response);
        }
        redirects += 1;
        if redirects >= MAX_REDIRECTS {
            return Err(format!(
                "Get {:?}: stopped after 10 redirects",
                next.to_string()
            ));
        }
        *current = next;
    }
}

async fn send(
    url: &Url,
    host_header: &str,
    headers: &[(String, String)],
) -> Result<Response, String> {
    let fail = |cause: String| format!("Get {:?}: {cause}", url.to_string());
    if !matches!(url.scheme.as_str(), "http" | "https") {
        return Err(fail(format!(
            "unsupported protocol scheme {:?}",
            url.scheme
        )));
    }
    let addr = join_host_port(&url.host, url.port);
    let stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| fail(dial_error(&addr, &e)))?;
    let request = (url, host_header, headers);
    if url.scheme == "https" {
        let stream = crate::tls::connect(&url.host, stream).await.map_err(fail)?;
        exchange(TokioIo::new(stream), request).await.map_err(fail)
    } else {
        exchange(TokioIo::new(stream), request).await.map_err(fail)
    }
}

/// One GET over an established connection; errors are the cause part of Go's texts.
async fn exchange<S>(
    io: TokioIo<S>,
    (url, host_header, headers): (&Url, &str, &[(String, String)]),
) -> Result<Response, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    // Aborted when the exchange ends or is cancelled by the probe's timeout.
    let _connection = AbortOnDropHandle::new(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::trace!(error = %e, "probe connection ended");
        }
    }));
    let mut builder = Request::get(url.path.as_str())
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::CONNECTION, "close");
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building request: {e}"))?;
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while body.len() < MAX_BODY {
        match response.body_mut().frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    body.extend_from_slice(data);
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => break,
        }
    }
    body.truncate(MAX_BODY);
    Ok(Response {
        status,
        location,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        let (scheme, rest) = s.split_once("://").expect("absolute");
        Url::parse_absolute(scheme, rest).expect("parses")
    }

    #[test]
    fn locations_resolve_like_a_browser() {
        let base = url("http://10.0.0.1:8080/a/b?x=1");
        assert_eq!(
            base.join("/c").map(|u| u.to_string()).as_deref(),
            Some("http://10.0.0.1:8080/c")
        );
        assert_eq!(
            base.join("c").map(|u| u.to_string()).as_deref(),
            Some("http://10.0.0.1:8080/a/c")
        );
        assert_eq!(
            base.join("//other/x").map(|u| u.host),
            Some("other".to_owned())
        );
        let abs = base.join("HTTP://[fd00::1]/z").expect("absolute");
        assert_eq!(
            (abs.host.as_str(), abs.port, abs.to_string().as_str()),
            ("fd00::1", 80, "http://[fd00::1]/z")
        );
        assert_eq!(base.join("http://h:notaport/"), None);
    }

    #[test]
    fn request_from_action_defaults() {
        let action = HTTPGetAction {
            scheme: Some("HTTP".into()),
            ..Default::default()
        };
        let request = HttpProbeRequest::from_action(&action, "fd00::1", 8080, USER_AGENT);
        assert_eq!(request.url.to_string(), "http://[fd00::1]:8080/");
        assert_eq!(request.host_header, None);
        assert_eq!(
            request.headers,
            [
                ("User-Agent".to_owned(), USER_AGENT.to_owned()),
                ("Accept".to_owned(), "*/*".to_owned())
            ]
        );
    }
}
