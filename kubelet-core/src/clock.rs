//! The time seam: what "now" is for back-off, pod start and status timestamps. The
//! kubelet uses [`SystemClock`]; tests give a clock that follows tokio's paused time, so
//! CrashLoopBackOff and the like run in virtual time with exact assertions.

use std::fmt::Debug;
use std::time::SystemTime;

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
