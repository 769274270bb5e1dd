//! `run_probe_loop` on paused time with a scripted prober.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Probe;
use kubelet_core::{Error, ProbeKind, ProbeOutcome, ProbeTarget, Prober, Result};
use kubelet_probes::{ProbeResult, run_probe_loop};
use tokio::time::Instant;

/// Answers attempts from a script (`None` is a prober error) and records when each ran.
struct Scripted {
    script: Mutex<VecDeque<Option<ProbeOutcome>>>,
    at: Mutex<Vec<Duration>>,
    origin: Instant,
}

impl Scripted {
    fn new(script: Vec<Option<ProbeOutcome>>) -> Self {
        Self {
            script: Mutex::new(script.into()),
            at: Mutex::new(Vec::new()),
            origin: Instant::now(),
        }
    }
}

#[async_trait]
impl Prober for Scripted {
    async fn probe(&self, _: ProbeKind, _: &Probe, target: &ProbeTarget) -> Result<ProbeOutcome> {
        self.at.lock().expect("lock").push(self.origin.elapsed());
        match self.script.lock().expect("lock").pop_front().flatten() {
            Some(outcome) => Ok(outcome),
            None => Err(Error::Probe {
                container: target.container_name.clone(),
                reason: "scripted error".into(),
            }),
        }
    }
}

fn fail() -> Option<ProbeOutcome> {
    Some(ProbeOutcome::Failure("down".into()))
}

fn ok() -> Option<ProbeOutcome> {
    Some(ProbeOutcome::Success)
}

fn spec(initial_delay: i32, period: i32, success: i32, failure: i32) -> Probe {
    Probe {
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        success_threshold: Some(success),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn liveness_waits_initial_delay_and_stops_after_failure_threshold() {
    let prober = Scripted::new(vec![ok(), fail(), None, fail(), fail()]);
    let mut reported = Vec::new();
    let last = run_probe_loop(
        &prober,
        ProbeKind::Liveness,
        &spec(15, 10, 1, 3),
        &ProbeTarget::default(),
        Instant::now(),
        |r| {
            reported.push(r);
            ControlFlow::Continue(())
        },
    )
    .await;
    assert_eq!(last, ProbeResult::Failure);
    use ProbeResult::{Failure, Success};
    // The error at 40s is discarded: it neither counts nor breaks the run of failures.
    assert_eq!(reported, [Success, Success, Success, Success, Failure]);
    let secs: Vec<u64> = prober
        .at
        .lock()
        .expect("lock")
        .iter()
        .map(Duration::as_secs)
        .collect();
    // Ticks at 0 and 10s fall inside the 15s initial delay.
    assert_eq!(secs, [20, 30, 40, 50, 60]);
}

#[tokio::test(start_paused = true)]
async fn readiness_reports_until_the_callback_breaks() {
    let prober = Scripted::new(vec![ok(), ok(), fail(), ok()]);
    let mut reported = Vec::new();
    let last = run_probe_loop(
        &prober,
        ProbeKind::Readiness,
        &spec(0, 5, 2, 1),
        &ProbeTarget::default(),
        Instant::now(),
        |r| {
            reported.push(r);
            if reported.len() == 4 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .await;
    use ProbeResult::{Failure, Success};
    assert_eq!(reported, [Failure, Success, Failure, Failure]);
    assert_eq!(last, Failure);
    let secs: Vec<u64> = prober
        .at
        .lock()
        .expect("lock")
        .iter()
        .map(Duration::as_secs)
        .collect();
    assert_eq!(secs, [0, 5, 10, 15]);
}

#[tokio::test(start_paused = true)]
async fn startup_returns_once_it_passes() {
    let prober = Scripted::new(vec![fail(), fail(), ok(), ok()]);
    let last = run_probe_loop(
        &prober,
        ProbeKind::Startup,
        &spec(0, 1, 1, 30),
        &ProbeTarget::default(),
        Instant::now(),
        |_| ControlFlow::Continue(()),
    )
    .await;
    assert_eq!(last, ProbeResult::Success);
    assert_eq!(
        prober.at.lock().expect("lock").len(),
        3,
        "no attempt after success"
    );
}

#[test]
fn loop_future_and_prober_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<kubelet_probes::KubeletProber>();
    let prober = Scripted::new(Vec::new());
    let probe = Probe::default();
    let target = ProbeTarget::default();
    let fut = run_probe_loop(
        &prober,
        ProbeKind::Readiness,
        &probe,
        &target,
        Instant::now(),
        |_| ControlFlow::Continue(()),
    );
    assert_send(&fut);
}
