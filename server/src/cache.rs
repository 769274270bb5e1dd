//! A bounded cache whose entries expire, for webhook answers (upstream caches
//! TokenReview and SubjectAccessReview results the same way).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most `capacity` entries, each dropped after its time to live; when full, the
/// entry closest to expiring makes room.
pub struct TtlCache<K, V> {
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: HashMap<K, (V, Instant, u64)>,
    by_expiry: BTreeMap<(Instant, u64), K>,
    next: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                by_expiry: BTreeMap::new(),
                next: 0,
            }),
        }
    }

    /// The value of `key` unless it expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (value, expires, seq) = inner.entries.get(key)?.clone();
        if expires > Instant::now() {
            return Some(value);
        }
        inner.entries.remove(key);
        inner.by_expiry.remove(&(expires, seq));
        None
    }

    /// Keeps `value` for `ttl`; a zero `ttl` keeps nothing.
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        if let Some((_, expires, seq)) = inner.entries.remove(&key) {
            inner.by_expiry.remove(&(expires, seq));
        }
        while let Some(entry) = inner.by_expiry.first_entry() {
            if entry.key().0 > now && inner.entries.len() < self.capacity {
                break;
            }
            let old = entry.remove();
            inner.entries.remove(&old);
        }
        let seq = inner.next;
        inner.next += 1;
        let expires = now + ttl;
        inner.by_expiry.insert((expires, seq), key.clone());
        inner.entries.insert(key, (value, expires, seq));
    }

    /// How many entries are kept (expired ones not yet dropped included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_the_size_is_bounded() {
        let cache = TtlCache::new(3);
        cache.insert("a", 1, Duration::from_secs(10));
        cache.insert("b", 2, Duration::from_secs(60));
        cache.insert("zero", 0, Duration::ZERO);
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"zero"), None, "a zero TTL is not cached");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.get(&"a"), None, "expired");
        assert_eq!(cache.get(&"b"), Some(2));
        cache.insert("c", 3, Duration::from_secs(30));
        cache.insert("d", 4, Duration::from_secs(90));
        cache.insert("e", 5, Duration::from_secs(90));
        assert_eq!(cache.len(), 3);
        // The entry closest to expiring made room.
        assert_eq!(cache.get(&"c"), None);
        assert_eq!(cache.get(&"b"), Some(2));
        // Replacing a key keeps one entry for it.
        cache.insert("b", 20, Duration::from_secs(5));
        assert_eq!(cache.get(&"b"), Some(20));
        assert_eq!(cache.len(), 3);
        tokio::time::advance(Duration::from_secs(6)).await;
        cache.insert("f", 6, Duration::from_secs(5));
        assert_eq!(cache.len(), 3, "the expired entry made room first");
        assert_eq!(cache.get(&"d"), Some(4));
    }
}
