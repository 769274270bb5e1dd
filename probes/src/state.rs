//! Thresholds of a probe worker, without clocks or I/O.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;
use kubelet_core::{ProbeKind, ProbeOutcome};

use crate::prober::probe_timeout;

/// The cached result of a probe, as upstream's results manager holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// Not known yet (the initial value of a startup probe).
    Unknown,
    /// The probe passed `successThreshold` times in a row.
    Success,
    /// The probe failed `failureThreshold` times in a row.
    Failure,
}

/// The timing and thresholds of a probe, with upstream's API defaults applied
/// (initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1, successThreshold 1,
/// failureThreshold 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSchedule {
    /// Attempts are skipped until the container has run this long.
    pub initial_delay: Duration,
    /// Time between attempts.
    pub period: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Consecutive successes needed to report success.
    pub success_threshold: u32,
    /// Consecutive failures needed to report failure.
    pub failure_threshold: u32,
}

impl ProbeSchedule {
    /// Reads the schedule of `probe`, defaulting what is unset or not positive.
    pub fn from_probe(probe: &Probe) -> Self {
        let positive = |v: Option<i32>, default: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        let initial_delay = probe
            .initial_delay_seconds
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
        Self {
            initial_delay: Duration::from_secs(initial_delay),
            period: Duration::from_secs(u64::from(positive(probe.period_seconds, 10))),
            timeout: probe_timeout(probe),
            success_threshold: positive(probe.success_threshold, 1),
            failure_threshold: positive(probe.failure_threshold, 3),
        }
    }
}

/// One probe worker's state (upstream `worker`: `lastResult`, `resultRun`, `onHold`).
///
/// Feed it the outcome of every attempt with [`ProbeState::record`]; it answers the
/// result to report. After a liveness failure or any startup result it goes on hold:
/// the container is about to restart (or has started) and upstream stops probing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    kind: ProbeKind,
    schedule: ProbeSchedule,
    result: ProbeResult,
    last: Option<ProbeResult>,
    run: u32,
    on_hold: bool,
}

impl ProbeState {
    /// A fresh worker for one container. The initial result is upstream's: Failure for
    /// readiness, Success for liveness, Unknown for startup.
    pub fn new(kind: ProbeKind, schedule: ProbeSchedule) -> Self {
        let result = match kind {
            ProbeKind::Readiness => ProbeResult::Failure,
            ProbeKind::Liveness => ProbeResult::Success,
            ProbeKind::Startup => ProbeResult::Unknown,
        };
        Self {
            kind,
            schedule,
            result,
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    /// The schedule this state was built with.
    pub fn schedule(&self) -> &ProbeSchedule {
        &self.schedule
    }

    /// The result to report now.
    pub fn result(&self) -> ProbeResult {
        self.result
    }

    /// True once the worker stopped probing this container (see the type's docs).
    pub fn is_on_hold(&self) -> bool {
        self.on_hold
    }

    /// Whether an attempt is due for a container that has been running for
    /// `running_for`: not on hold and past `initialDelaySeconds` (whole seconds, as
    /// upstream compares them).
    pub fn should_probe(&self, running_for: Duration) -> bool {
        !self.on_hold && running_for.as_secs() >= self.schedule.initial_delay.as_secs()
    }

    /// Records one attempt and returns the result to report. `None` is an attempt that
    /// could not run (the prober returned an error): upstream discards it.
    pub fn record(&mut self, outcome: Option<&ProbeOutcome>) -> ProbeResult {
        let Some(outcome) = outcome else {
            return self.result;
        };
        let attempt = match outcome {
            ProbeOutcome::Success | ProbeOutcome::Warning(_) => ProbeResult::Success,
            ProbeOutcome::Failure(_) => ProbeResult::Failure,
        };
        if self.last == Some(attempt) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(attempt);
            self.run = 1;
        }
        let below = match attempt {
            ProbeResult::Failure => self.run < self.schedule.failure_threshold,
            ProbeResult::Success => self.run < self.schedule.success_threshold,
            ProbeResult::Unknown => false,
        };
        if below {
            return self.result;
        }
        self.result = attempt;
        if (self.kind == ProbeKind::Liveness && attempt == ProbeResult::Failure)
            || self.kind == ProbeKind::Startup
        {
            self.on_hold = true;
            self.run = 0;
        }
        self.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(success: u32, failure: u32) -> ProbeSchedule {
        ProbeSchedule {
            initial_delay: Duration::from_secs(5),
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    fn fail() -> ProbeOutcome {
        ProbeOutcome::Failure("nope".into())
    }

    #[test]
    fn defaults_are_upstreams() {
        let s = ProbeSchedule::from_probe(&Probe::default());
        assert_eq!(
            s,
            ProbeSchedule {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
    }

    #[test]
    fn initial_results_per_kind() {
        assert_eq!(
            ProbeState::new(ProbeKind::Readiness, schedule(1, 3)).result(),
            ProbeResult::Failure
        );
        assert_eq!(
            ProbeState::new(ProbeKind::Liveness, schedule(1, 3)).result(),
            ProbeResult::Success
        );
        assert_eq!(
            ProbeState::new(ProbeKind::Startup, schedule(1, 3)).result(),
            ProbeResult::Unknown
        );
    }

    #[test]
    fn readiness_needs_success_threshold_in_a_row() {
        let mut s = ProbeState::new(ProbeKind::Readiness, schedule(2, 3));
        assert_eq!(s.record(Some(&ProbeOutcome::Success)), ProbeResult::Failure);
        assert_eq!(s.record(Some(&fail())), ProbeResult::Failure);
        assert_eq!(s.record(Some(&ProbeOutcome::Success)), ProbeResult::Failure);
        assert_eq!(
            s.record(Some(&ProbeOutcome::Warning("redirect".into()))),
            ProbeResult::Success
        );
        // Readiness failures flip back after failureThreshold and never hold.
        assert_eq!(s.record(Some(&fail())), ProbeResult::Success);
        assert_eq!(s.record(Some(&fail())), ProbeResult::Success);
        assert_eq!(s.record(Some(&fail())), ProbeResult::Failure);
        assert!(!s.is_on_hold());
    }

    #[test]
    fn liveness_fails_after_threshold_then_holds() {
        let mut s = ProbeState::new(ProbeKind::Liveness, schedule(1, 3));
        assert_eq!(s.record(Some(&fail())), ProbeResult::Success);
        // An errored attempt is discarded: it neither counts nor resets the run.
        assert_eq!(s.record(None), ProbeResult::Success);
        assert_eq!(s.record(Some(&fail())), ProbeResult::Success);
        assert!(!s.is_on_hold());
        assert_eq!(s.record(Some(&fail())), ProbeResult::Failure);
        assert!(s.is_on_hold());
        assert!(!s.should_probe(Duration::from_secs(100)));
    }

    #[test]
    fn startup_holds_once_it_succeeds() {
        let mut s = ProbeState::new(ProbeKind::Startup, schedule(1, 3));
        assert_eq!(s.record(Some(&fail())), ProbeResult::Unknown);
        assert_eq!(s.record(Some(&ProbeOutcome::Success)), ProbeResult::Success);
        assert!(s.is_on_hold());
    }

    #[test]
    fn initial_delay_counts_whole_seconds() {
        let s = ProbeState::new(ProbeKind::Readiness, schedule(1, 3));
        assert!(!s.should_probe(Duration::from_millis(4_999)));
        assert!(s.should_probe(Duration::from_secs(5)));
    }
}
