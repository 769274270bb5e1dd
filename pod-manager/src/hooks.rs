//! Lifecycle hooks (postStart, preStop): exec, httpGet and sleep handlers.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet_core::Runtime;

use kubelet_core::downward::go_quote;

use crate::spec::format_pod;

/// The container a hook runs against.
#[derive(Clone, Copy)]
pub struct HookTarget<'a> {
    /// Its pod.
    pub pod: &'a Pod,
    /// Its spec.
    pub container: &'a Container,
    /// Its runtime id, for exec handlers.
    pub container_id: &'a str,
    /// The pod's IP, the host of httpGet handlers that name none.
    pub pod_ip: &'a str,
}

/// Runs a lifecycle handler against a container; `Err` carries upstream's message
/// (the container's PostStartHookError message). `on_fallback` gets the message of the
/// `LifecycleHTTPFallback` event when an HTTPS hook had to be retried over HTTP.
pub async fn run_handler(
    runtime: &dyn Runtime,
    handler: &LifecycleHandler,
    target: &HookTarget<'_>,
    timeout: Duration,
    on_fallback: &(dyn Fn(String) + Send + Sync),
) -> Result<(), String> {
    let HookTarget {
        pod,
        container,
        container_id,
        pod_ip,
    } = *target;
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        // Go's `%v` of the command and `%q` of the pod, as upstream's message.
        let failed = |error: String, output: &str| {
            format!(
                "Exec lifecycle hook ([{}]) for Container {:?} in Pod {} failed - error: \
                 {error}, message: {}",
                command.join(" "),
                container.name,
                go_quote(&format_pod(pod)),
                go_quote(output)
            )
        };
        let result = runtime
            .exec_sync(container_id, &command, timeout)
            .await
            .map_err(|e| failed(e.to_string(), ""))?;
        if result.exit_code != 0 {
            let stderr = String::from_utf8_lossy(&result.stderr);
            let output = String::from_utf8_lossy(&result.stdout) + stderr.clone();
            return Err(failed(
                format!(
                    "command '{}' exited with {}: {stderr}",
                    command.join(" "),
                    result.exit_code
                ),
                &output,
            ));
        }
        return Ok(());
    }
    if let Some(get) = &handler.http_get {
        return tokio::time::timeout(timeout, http_get(get, pod, container, pod_ip, on_fallback))
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

/// An httpGet handler through the probes' client (upstream `runHTTPHandler`).
async fn http_get(
    get: &HTTPGetAction,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    on_fallback: &(dyn Fn(String) + Send + Sync),
) -> Result<(), String> {
    let host = get
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod_ip.to_owned());
    let path = get.path.clone().unwrap_or_default();
    let failed = |error: String| {
        format!(
            "HTTP lifecycle hook ({path}) for Container {:?} in Pod {} failed - error: {error}",
            container.name,
            go_quote(&format_pod(pod))
        )
    };
    let port = port_number(&get.port, container).map_err(failed)?;
    match kubelet_probes::lifecycle_http_get(get, &host, port).await {
        Ok(kubelet_probes::HookHttp::Answered) => Ok(()),
        Ok(kubelet_probes::HookHttp::FellBackToHttp(message)) => {
            on_fallback(message);
            Ok(())
        }
        Err(error) => Err(failed(error)),
    }
}
