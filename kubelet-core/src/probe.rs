//! Container probes: the extension point that runs one probe attempt.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Probe;

use crate::{PodRef, Result};

/// Which probe of a container is run; decides what its failure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Failure restarts the container.
    Liveness,
    /// Failure removes the pod from service endpoints.
    Readiness,
    /// Other probes wait for it; failure restarts the container.
    Startup,
}

/// Outcome of one probe attempt, as upstream's prober reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The probe passed.
    Success,
    /// The probe passed with a warning (for example an HTTP redirect to another host).
    Warning(String),
    /// The probe failed; the text becomes the `Unhealthy` event message.
    Failure(String),
}

/// The container a probe runs against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The pod.
    pub pod: PodRef,
    /// The pod's IP, the default host of httpGet, tcpSocket and grpc probes.
    pub pod_ip: String,
    /// Container name in the pod spec.
    pub container_name: String,
    /// Runtime id of the running container (for exec probes).
    pub container_id: String,
}

/// Runs one attempt of a probe. Scheduling, thresholds and results caching belong to the
/// caller; this only answers "did it pass now".
#[async_trait]
pub trait Prober: Send + Sync {
    /// Runs `probe` once against `target`.
    ///
    /// An `Err` means the probe could not be attempted at all (e.g. malformed spec);
    /// a probe that ran and failed is `Ok(ProbeOutcome::Failure(..))`.
    async fn probe(
        &self,
        kind: ProbeKind,
        probe: &Probe,
        target: &ProbeTarget,
    ) -> Result<ProbeOutcome>;
}

const _: Option<&dyn Prober> = None;
