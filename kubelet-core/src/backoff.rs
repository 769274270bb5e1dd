//! Per-key exponential back-off, as the upstream kubelet uses for CrashLoopBackOff and
//! ImagePullBackOff (client-go's `flowcontrol.Backoff` without jitter).
//!
//! Pure bookkeeping: the caller passes the times, so the maths is tested without clocks.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// First delay of CrashLoopBackOff and ImagePullBackOff.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Longest delay of CrashLoopBackOff and ImagePullBackOff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A key whose last back-off is older than this starts again from [`INITIAL_BACKOFF`]:
/// a container that ran this long is considered stable.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    backoff: Duration,
    last_update: SystemTime,
}

/// Delays per key (a container or an image), doubling from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// A back-off starting at `initial`, doubling up to `max`, forgotten after
    /// `reset_after` without a new failure.
    pub fn new(initial: Duration, max: Duration, reset_after: Duration) -> Self {
        Self {
            initial: initial.min(max),
            max,
            reset_after,
            entries: HashMap::new(),
        }
    }

    /// Upstream's container restart back-off: 10 s doubling to 300 s, reset after 10
    /// minutes.
    pub fn crash_loop() -> Self {
        Self::new(INITIAL_BACKOFF, MAX_BACKOFF, BACKOFF_RESET_AFTER)
    }

    /// The container restart back-off with `crashLoopBackOff.maxContainerRestartPeriod`
    /// as its longest delay (the first one no longer than it), forgotten after twice
    /// that, as upstream's `newCrashLoopBackOff`.
    pub fn crash_loop_up_to(max: Duration) -> Self {
        Self::new(INITIAL_BACKOFF.min(max), max, max * 2)
    }

    /// Upstream's image pull back-off: 10 s doubling to 300 s, reset after twice the
    /// maximum.
    pub fn image_pull() -> Self {
        Self::new(INITIAL_BACKOFF, MAX_BACKOFF, MAX_BACKOFF * 2)
    }

    fn expired(&self, event_time: SystemTime, entry: &Entry) -> bool {
        event_time
            .duration_since(entry.last_update)
            .is_ok_and(|since| since > self.reset_after)
    }

    /// The current delay of `key`, zero when it has none.
    pub fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.backoff)
    }

    /// Records a failure of `key` that happened at `event_time` (for a container: when
    /// it finished), observed at `now`: the delay starts at `initial`, or doubles.
    pub fn next(&mut self, key: &str, event_time: SystemTime, now: SystemTime) {
        let backoff = match self.entries.get(key) {
            Some(entry) if !self.expired(event_time, entry) => (entry.backoff * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.to_owned(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// Whether `key` must still wait at `now` after a failure at `event_time`.
    pub fn is_in_backoff_since(&self, key: &str, event_time: SystemTime, now: SystemTime) -> bool {
        let Some(entry) = self.entries.get(key) else {
            return false;
        };
        if self.expired(event_time, entry) {
            return false;
        }
        now.duration_since(event_time)
            .map_or(true, |elapsed| elapsed < entry.backoff)
    }

    /// When `key` may be retried after a failure at `event_time`.
    pub fn retry_at(&self, key: &str, event_time: SystemTime) -> SystemTime {
        event_time + self.get(key)
    }

    /// Forgets `key` (after a success, or when its pod is gone).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets every key whose last failure is older than the reset period, so the map
    /// stays bounded by the keys that failed recently.
    pub fn gc(&mut self, now: SystemTime) {
        let reset_after = self.reset_after;
        self.entries.retain(|_, e| {
            now.duration_since(e.last_update)
                .map_or(true, |since| since <= reset_after)
        });
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn a_configured_maximum_caps_the_crash_loop() {
        let mut b = Backoff::crash_loop_up_to(Duration::from_secs(2));
        let t0 = SystemTime::UNIX_EPOCH;
        b.next("c", t0, t0);
        assert_eq!(b.get("c"), Duration::from_secs(2));
        b.next("c", t0, t0);
        assert_eq!(b.get("c"), Duration::from_secs(2));
        assert_eq!(Backoff::crash_loop_up_to(MAX_BACKOFF).max, MAX_BACKOFF);
    }

    #[test]
    fn crash_loop_doubles_from_10s_to_300s() {
        // A container that exits one second after every start, driven as upstream's
        // doBackOff does: wait while in back-off since the exit, then record and restart.
        let mut b = Backoff::crash_loop();
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let exited = t(now);
            let mut wait = 0;
            while b.is_in_backoff_since("c", exited, t(now + wait)) {
                wait += 1;
            }
            waits.push(wait);
            b.next("c", exited, t(now + wait));
            now += wait + 1;
        }
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn waits_out_the_delay_from_the_failure_time() {
        let mut b = Backoff::crash_loop();
        assert!(!b.is_in_backoff_since("c", t(0), t(0)), "no entry, no wait");
        b.next("c", t(0), t(1));
        assert!(b.is_in_backoff_since("c", t(0), t(5)));
        assert!(b.is_in_backoff_since("c", t(0), t(9)));
        assert!(!b.is_in_backoff_since("c", t(0), t(10)));
        assert_eq!(b.retry_at("c", t(0)), t(10));
        assert!(!b.is_in_backoff_since("other", t(0), t(1)));
    }

    #[test]
    fn resets_after_ten_stable_minutes() {
        let mut b = Backoff::crash_loop();
        b.next("c", t(0), t(0));
        b.next("c", t(20), t(20));
        assert_eq!(b.get("c"), Duration::from_secs(20));
        // The container then ran for more than 10 minutes before failing again.
        let failed = t(20 + 601);
        assert!(!b.is_in_backoff_since("c", failed, failed));
        b.next("c", failed, failed);
        assert_eq!(b.get("c"), INITIAL_BACKOFF);
    }

    #[test]
    fn gc_and_reset_bound_the_entries() {
        let mut b = Backoff::image_pull();
        b.next("old", t(0), t(0));
        b.next("new", t(500), t(500));
        b.gc(t(700));
        assert_eq!(b.len(), 1);
        assert_eq!(b.get("old"), Duration::ZERO);
        b.reset("new");
        assert!(b.is_empty());
    }
}
