//! `usageNanoCores` from two samples of a cumulative CPU counter.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::time::Time;

/// Samples closer together than this do not replace the previous one: a burst of
/// requests would otherwise compute the rate over a few milliseconds.
pub const MIN_CPU_WINDOW_NANOS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    time: i64,
    usage: u64,
    nano_cores: Option<u64>,
}

/// The last CPU sample and the rate computed from it, per container, pod or node
/// (upstream's `cpuUsageCache` of `getAndUpdateContainerUsageNanoCores`).
#[derive(Debug, Default)]
pub struct CpuUsageCache {
    records: Mutex<HashMap<String, Record>>,
}

impl CpuUsageCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a sample of the cumulative usage `usage_ns` taken at `time` and returns the
    /// usage in nanocores since the previous sample of `key`; `None` for the first sample
    /// or after the counter went backwards (a new cgroup with the same key).
    pub fn update(&self, key: &str, time: Time, usage_ns: u64) -> Option<u64> {
        let mut records = self.lock();
        let now = time.unix_nanos();
        let fresh = Record {
            time: now,
            usage: usage_ns,
            nano_cores: None,
        };
        let Some(prev) = records.get(key).copied() else {
            records.insert(key.to_owned(), fresh);
            return None;
        };
        if usage_ns < prev.usage {
            records.insert(key.to_owned(), fresh);
            return None;
        }
        let interval = now - prev.time;
        if interval < MIN_CPU_WINDOW_NANOS {
            return prev.nano_cores;
        }
        let rate = ((usage_ns - prev.usage) as f64 / interval as f64 * 1e9) as u64;
        records.insert(
            key.to_owned(),
            Record {
                time: now,
                usage: usage_ns,
                nano_cores: Some(rate),
            },
        );
        Some(rate)
    }

    /// Drops every key not in `keep`: the cache holds only listed containers and pods.
    pub fn retain(&self, keep: &HashSet<String>) {
        self.lock().retain(|k, _| keep.contains(k));
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_from_two_samples() {
        let cache = CpuUsageCache::new();
        let s = |secs: i64| Time::from_unix_nanos(secs * 1_000_000_000);
        assert_eq!(cache.update("c1", s(100), 1_000_000_000), None);
        // 5 s of CPU over 10 s: half a core.
        assert_eq!(cache.update("c1", s(110), 6_000_000_000), Some(500_000_000));
        // Too soon: the last rate again, the sample is not replaced.
        assert_eq!(
            cache.update("c1", Time::from_unix_nanos(110_100_000_000), 6_050_000_000),
            Some(500_000_000)
        );
        // 2 cores over the next 10 s (measured from the sample at 110 s).
        assert_eq!(
            cache.update("c1", s(120), 26_000_000_000),
            Some(2_000_000_000)
        );
        // A counter that went backwards starts over.
        assert_eq!(cache.update("c1", s(130), 10), None);

        cache.update("c2", s(100), 1);
        assert_eq!(cache.len(), 2);
        cache.retain(&HashSet::from(["c2".to_owned()]));
        assert_eq!(cache.len(), 1);
    }
}
