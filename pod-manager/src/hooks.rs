//! Lifecycle hooks (postStart, preStop): exec, httpGet and sleep handlers.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet_core::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs a lifecycle handler against a container; `Err` carries the message upstream
/// would put in the FailedPostStartHook / FailedPreStopHook event.
pub async fn run_handler(
    runtime: &dyn Runtime,
    handler: &LifecycleHandler,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        let result = runtime
            .exec_sync(container_id, &command, timeout)
            .await
            .map_err(|e| format!("exec {command:?}: {e}"))?;
        if result.exit_code != 0 {
            return Err(format!(
                "Exec lifecycle hook ({command:?}) for Container {:?} failed - error: command '{}' exited with {}: {}",
                container.name,
                command.join(" "),
                result.exit_code,
                String::from_utf8_lossy(&result.stdout) + String::from_utf8_lossy(&result.stderr)
            ));
        }
        return Ok(());
    }
    if let Some(get) = &handler.http_get {
        return tokio::time::timeout(timeout, http_get(get, container, pod_ip))
            .await
            .map_err(|_| format!("HTTP lifecycle hook timed out after {timeout:?}"))?;
    }
    if let Some(sleep) = &handler.sleep {
        let seconds = u64::try_from(sleep.seconds).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(seconds).min(timeout)).await;
        return Ok(());
    }
    if handler.tcp_socket.is_some() {
        return Err("tcpSocket is not supported as a lifecycle handler".to_owned());
    }
    Err("lifecycle handler has no action".to_owned())
}

fn port_number(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| {
                format!(
                    "couldn't find port {name:?} in container {:?}",
                    container.name
                )
            }),
    }
}

/// A plain HTTP/1.1 GET; a 2xx or 3xx answer is success, as upstream.
async fn http_get(get: &HTTPGetAction, container: &Container, pod_ip: &str) -> Result<(), String> {
    if get
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return Err("HTTPS lifecycle hooks are not supported yet".to_owned());
    }
    let host = get
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod_ip.to_owned());
    let port = port_number(&get.port, container)?;
    let path = get
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| format!("Get \"http://{address}{path}\": {e}"))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: kube-lifecycle/1.37\r\nConnection: close\r\n"
    );
    for header in get.http_headers.iter().flatten() {
        request.push_str(&format!("{}: {}\r\n", header.name, header.value));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("Get \"http://{address}{path}\": {e}"))?;
    let mut head = [0_u8; 64];
    let n = stream
        .read(&mut head)
        .await
        .map_err(|e| format!("Get \"http://{address}{path}\": {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"http://{address}{path}\": malformed response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!(
            "HTTP lifecycle hook ({path}) for Container {:?} failed - error: received status {code}",
            container.name
        ))
    }
}
