//! Client-side rate limits as client-go keeps them (`golang.org/x/time/rate`).

use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens, refilled at `qps` a second, full at first (as
/// `rate.NewLimiter`). The time is passed in, so callers decide the clock
/// (`tokio::time::Instant::now().into_std()` follows tokio's paused time).
///
/// ```
/// use std::time::{Duration, Instant};
/// use kubelet_core::TokenBucket;
///
/// let start = Instant::now();
/// let mut bucket = TokenBucket::new(10.0, 2);
/// assert!(bucket.try_take(start) && bucket.try_take(start));
/// assert!(!bucket.try_take(start));
/// // The next token is 100 ms away: reserving it says how long to wait.
/// assert_eq!(bucket.reserve(start), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    /// Tokens left when last counted; below zero when reservations wait for tokens.
    tokens: f64,
    /// When `tokens` was last counted; `None` before the first use (full).
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens (at least one) refilled at `qps` a second.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps: qps.max(0.0),
            burst,
            tokens: burst,
            at: None,
        }
    }

    fn refill(&mut self, now: Instant) -> f64 {
        let elapsed = self
            .at
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.tokens
    }

    /// Takes a token if there is one now (upstream's `TryAccept`, `Allow`).
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.refill(now) >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes the next token, now or in the future, and says how long to wait for it
    /// (upstream's `Wait`, which sleeps that long): waiters are served in order.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.tokens = self.refill(now) - 1.0;
        if self.tokens >= 0.0 || self.qps <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.tokens / self.qps)
    }

    /// Whether the bucket is full at `now`: the same as a new one.
    pub fn is_full(&self, now: Instant) -> bool {
        let mut copy = *self;
        copy.refill(now) >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_never_more_than_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 10);
        assert_eq!((0..20).filter(|_| bucket.try_take(start)).count(), 10);
        // 50 ms at 100/s: 5 more.
        let later = start + Duration::from_millis(50);
        assert_eq!((0..20).filter(|_| bucket.try_take(later)).count(), 5);
        let much_later = later + Duration::from_secs(10);
        assert!(bucket.is_full(much_later));
        assert_eq!((0..20).filter(|_| bucket.try_take(much_later)).count(), 10);
        assert!(!bucket.is_full(much_later));
    }

    #[test]
    fn reservations_queue_behind_each_other() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(50.0, 2);
        assert_eq!(bucket.reserve(start), Duration::ZERO);
        assert_eq!(bucket.reserve(start), Duration::ZERO);
        // 50 a second: one every 20 ms, each waiting behind the one before.
        assert_eq!(bucket.reserve(start), Duration::from_millis(20));
        assert_eq!(bucket.reserve(start), Duration::from_millis(40));
        // Once the waits have passed the bucket is empty, not in debt.
        let after = start + Duration::from_millis(40);
        assert!(!bucket.try_take(after));
        assert!(bucket.try_take(after + Duration::from_millis(20)));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut bucket = TokenBucket::new(10.0, 1);
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start - Duration::from_secs(1)));
        assert!(bucket.try_take(start + Duration::from_millis(100)));
    }
}
