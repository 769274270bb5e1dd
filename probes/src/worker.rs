//! [`run_probe_loop`]: one probe worker on a tokio timer.

use std::ops::ControlFlow;

use k8s_openapi::api::core::v1::Probe;
use kubelet_core::{ProbeKind, ProbeTarget, Prober};
use tokio::time::{Instant, MissedTickBehavior};

use crate::state::{ProbeResult, ProbeSchedule, ProbeState};

/// Probes `target` every `periodSeconds` until `on_result` breaks or the worker goes on
/// hold (a liveness failure, or any startup result), and returns the last result.
///
/// `started_at` is when the container started: attempts before `initialDelaySeconds`
/// are skipped. The first attempt is due at once, as upstream's worker. `on_result` is
/// called after every attempt with the result to report (the initial value until a
/// threshold is reached). Prober errors are logged and the attempt discarded.
///
/// Gating liveness and readiness on a passed startup probe is the caller's: start
/// their loops once the startup loop has returned [`ProbeResult::Success`].
pub async fn run_probe_loop<F>(
    prober: &dyn Prober,
    kind: ProbeKind,
    probe: &Probe,
    target: &ProbeTarget,
    started_at: Instant,
    mut on_result: F,
) -> ProbeResult
where
    F: FnMut(ProbeResult) -> ControlFlow<()> + Send,
{
    let mut state = ProbeState::new(kind, ProbeSchedule::from_probe(probe));
    let mut ticker = tokio::time::interval(state.schedule().period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !state.should_probe(started_at.elapsed()) {
            continue;
        }
        let attempt = prober.probe(kind, probe, target).await;
        let result = match &attempt {
            Ok(outcome) => state.record(Some(outcome)),
            Err(e) => {
                tracing::debug!(
                    ?kind,
                    container = %target.container_name,
                    error = %e,
                    "probe errored, result discarded"
                );
                state.record(None)
            }
        };
        if on_result(result).is_break() || state.is_on_hold() {
            return result;
        }
    }
}
