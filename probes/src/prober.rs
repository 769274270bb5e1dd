//! [`KubeletProber`]: one probe attempt, dispatched on the probe's action.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet_core::{ContainerExec, Error, ProbeKind, ProbeOutcome, ProbeTarget, Prober, Result};

use crate::{exec, http, tcp};

/// Upstream's `maxProbeRetries`: a probe that errors (could not be attempted) is retried
/// this many times in one attempt before the error is returned.
const MAX_PROBE_RETRIES: usize = 3;

/// Default `timeoutSeconds` of a probe (upstream API defaulting).
pub(crate) const DEFAULT_TIMEOUT_SECONDS: i32 = 1;

/// The kubelet's prober: runs exec probes through the container runtime's `ExecSync`,
/// and httpGet and tcpSocket probes from the node.
///
/// Named ports (`port: http`) cannot be resolved here because [`ProbeTarget`] carries no
/// pod spec: resolve them first with [`prepare_probe`](crate::prepare_probe); a probe
/// that still names a port makes [`Prober::probe`] return [`Error::Probe`].
#[derive(Clone)]
pub struct KubeletProber {
    runtime: Arc<dyn ContainerExec>,
}

impl std::fmt::Debug for KubeletProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletProber").finish_non_exhaustive()
    }
}

impl KubeletProber {
    /// A prober that runs exec probes through `runtime`.
    pub fn new(runtime: Arc<dyn ContainerExec>) -> Self {
        Self { runtime }
    }

    async fn run_once(&self, probe: &Probe, target: &ProbeTarget) -> Result<ProbeOutcome> {
        let timeout = probe_timeout(probe);
        if let Some(action) = &probe.exec {
            let command = action.command.clone().unwrap_or_default();
            exec::probe(
                self.runtime.as_ref(),
                &target.container_id,
                &command,
                timeout,
            )
            .await
        } else if let Some(action) = &probe.http_get {
            let port = numeric_port(&action.port, target)?;
            let host = host_or_pod_ip(action.host.as_deref(), target);
            let request = http::HttpProbeRequest::from_action(action, host, port, http::USER_AGENT);
            Ok(http::probe(&request, timeout).await)
        } else if let Some(action) = &probe.tcp_socket {
            let port = numeric_port(&action.port, target)?;
            let host = host_or_pod_ip(action.host.as_deref(), target);
            Ok(tcp::probe(host, port, timeout).await)
        } else if let Some(action) = &probe.grpc {
            let port = crate::prepare::check_port(action.port)
                .map_err(|reason| probe_error(target, reason))?;
            let service = action.service.as_deref().unwrap_or_default();
            Ok(crate::grpc::probe(&target.pod_ip, port, service, timeout).await)
        } else {
            Err(probe_error(
                target,
                format!(
                    "missing probe handler for {}/{}:{}",
                    target.pod.namespace, target.pod.name, target.container_name
                ),
            ))
        }
    }
}

#[async_trait]
impl Prober for KubeletProber {
    async fn probe(
        &self,
        kind: ProbeKind,
        probe: &Probe,
        target: &ProbeTarget,
    ) -> Result<ProbeOutcome> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.run_once(probe, target).await {
                Ok(outcome) => {
                    tracing::debug!(
                        ?kind,
                        container = %target.container_name,
                        ?outcome,
                        "probe finished"
                    );
                    return Ok(outcome);
                }
                Err(e) if attempt >= MAX_PROBE_RETRIES => {
                    tracing::debug!(
                        ?kind,
                        container = %target.container_name,
                        error = %e,
                        "probe errored"
                    );
                    return Err(e);
                }
                Err(_) => {}
            }
        }
    }
}

/// `timeoutSeconds`, defaulted to 1 second as the API server does.
pub(crate) fn probe_timeout(probe: &Probe) -> Duration {
    let secs = probe
        .timeout_seconds
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    Duration::from_secs(u64::try_from(secs).unwrap_or(1))
}

fn probe_error(target: &ProbeTarget, reason: String) -> Error {
    Error::Probe {
        container: target.container_name.clone(),
        reason,
    }
}

/// The probe's host, or the pod IP when it names none, as upstream.
fn host_or_pod_ip<'a>(host: Option<&'a str>, target: &'a ProbeTarget) -> &'a str {
    host.filter(|h| !h.is_empty()).unwrap_or(&target.pod_ip)
}

fn numeric_port(port: &IntOrString, target: &ProbeTarget) -> Result<u16> {
    match port {
        IntOrString::Int(n) => {
            crate::prepare::check_port(*n).map_err(|reason| probe_error(target, reason))
        }
        IntOrString::String(name) => Err(probe_error(
            target,
            format!("named port {name:?} must be resolved with prepare_probe before probing"),
        )),
    }
}
