//! A [`Clock`] that follows tokio's time, for tests that run the pod manager under
//! `#[tokio::test(start_paused = true)]`: CrashLoopBackOff, image pull back-off and
//! activeDeadlineSeconds then play out in virtual time, with exact assertions and no
//! real waiting. A kubelet uses [`kubelet_core::SystemClock`].

use std::time::SystemTime;

use kubelet_core::Clock;

/// The wall-clock time when made, advanced by tokio's clock since: under paused time it
/// moves only when tokio's time does.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting at the current wall-clock time.
    pub fn new() -> Self {
        Self {
            base: SystemTime::now(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }
}
