//! Whether the pod manager's loop still goes round (upstream's `syncLoopMonitor` and
//! `SyncLoopHealthCheck`, the `syncloop` check of the kubelet's `/healthz`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// When the pod manager's loop last began an iteration. Cheap to clone; the manager
/// marks it, the health check reads it.
#[derive(Debug, Clone, Default)]
pub struct SyncLoopMonitor {
    /// Milliseconds since the epoch; 0 before the loop first runs.
    entered_ms: Arc<AtomicU64>,
}

/// Upstream's floor for how long one iteration may take before the kubelet is unhealthy.
const MIN_STALL: Duration = Duration::from_secs(5 * 60);

impl SyncLoopMonitor {
    /// Records that an iteration begins at `now`.
    pub fn entered(&self, now: SystemTime) {
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.entered_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Healthy unless the last iteration began longer ago than twice `resync_period`
    /// (at least five minutes) before `now`, as upstream; a loop not yet started is
    /// healthy.
    ///
    /// # Errors
    ///
    /// Upstream's message, when the loop is stuck.
    pub fn check(&self, now: SystemTime, resync_period: Duration) -> Result<(), String> {
        let ms = self.entered_ms.load(Ordering::Relaxed);
        if ms == 0 {
            return Ok(());
        }
        let entered = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let allowed = resync_period.saturating_mul(2).max(MIN_STALL);
        match now.duration_since(entered) {
            Ok(stalled) if stalled > allowed => Err("sync Loop took longer than expected".into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_only_past_twice_the_resync_period_and_at_least_five_minutes() {
        let monitor = SyncLoopMonitor::default();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let minute = Duration::from_secs(60);
        assert_eq!(
            monitor.check(start + 60 * minute, minute),
            Ok(()),
            "not started"
        );
        monitor.entered(start);
        assert_eq!(monitor.check(start + 5 * minute, minute), Ok(()));
        assert_eq!(
            monitor.check(start + 5 * minute + Duration::from_secs(1), minute),
            Err("sync Loop took longer than expected".to_owned())
        );
        // A long resync period allows twice itself.
        assert_eq!(monitor.check(start + 19 * minute, 10 * minute), Ok(()));
        assert!(monitor.check(start + 21 * minute, 10 * minute).is_err());
        // A clone reads what the loop marks.
        let reader = monitor.clone();
        monitor.entered(start + 30 * minute);
        assert_eq!(reader.check(start + 31 * minute, minute), Ok(()));
    }
}
