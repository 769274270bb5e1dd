//! Upstream's request limiter of the PodResources server (`apis/grpc.WithRateLimiter`):
//! a token bucket of `burst` tokens refilled at `qps` a second.

use std::sync::Mutex;

use tokio::time::Instant;

/// A token bucket; `try_take` never waits.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// Full at first, as `rate.NewLimiter`.
    pub(crate) fn new(qps: u32, burst: u32) -> Self {
        Self {
            qps: f64::from(qps),
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes a token if one is there.
    pub(crate) fn try_take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(state.1).as_secs_f64();
        state.0 = (state.0 + elapsed * self.qps).min(self.burst);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let bucket = TokenBucket::new(100, 10);
        assert_eq!((0..20).filter(|_| bucket.try_take()).count(), 10);
        tokio::time::advance(Duration::from_millis(50)).await;
        // 50 ms at 100/s: 5 more.
        assert_eq!((0..20).filter(|_| bucket.try_take()).count(), 5);
        tokio::time::advance(Duration::from_secs(10)).await;
        // Never more than the burst.
        assert_eq!((0..20).filter(|_| bucket.try_take()).count(), 10);
    }
}
