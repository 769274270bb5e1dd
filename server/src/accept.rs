//! The one accept loop every listener of the crate runs. At most `total` connections at
//! once (more wait in the kernel's backlog), a failed `accept` retried after a pause
//! instead of spinning, each connection served on its own task. The connections belong
//! to the loop: dropping it (the server's task aborted) ends them too.
//!
//! Connections that have not authenticated yet (all of them until their TLS client
//! certificate or first request says who they are) cannot crowd out the others: each
//! source address may hold at most `per_source` of them (more are closed at once), and
//! all together at most `unauthenticated`; a new connection past that closes the oldest
//! unauthenticated one instead of waiting, so a flood of idle or failing connections
//! never keeps the API server's connections out.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How long to pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How many connections a listener serves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// All connections at once.
    pub(crate) total: usize,
    /// Connections not authenticated yet, at once.
    pub(crate) unauthenticated: usize,
    /// Connections not authenticated yet from one source address.
    pub(crate) per_source: usize,
}

#[derive(Default)]
struct Pending {
    /// Ids in arrival order; ids of connections that left are skipped and compacted.
    order: VecDeque<u64>,
    /// Unauthenticated connections: their source and how to close them.
    connections: HashMap<u64, (IpAddr, Arc<Notify>)>,
    per_source: HashMap<IpAddr, usize>,
    next: u64,
}

impl Pending {
    fn remove(&mut self, id: u64) {
        if let Some((source, _)) = self.connections.remove(&id)
            && let Some(count) = self.per_source.get_mut(&source)
        {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
        // Ids of connections that left stay in `order` until popped; keep it within
        // twice the live ones.
        if self.order.len() > 2 * self.connections.len() + 16 {
            let live = &self.connections;
            self.order.retain(|id| live.contains_key(id));
        }
    }

    /// Closes the oldest unauthenticated connection.
    fn evict_oldest(&mut self) {
        while let Some(id) = self.order.pop_front() {
            if let Some((_, close)) = self.connections.get(&id) {
                close.notify_one();
                self.remove(id);
                return;
            }
        }
    }
}

/// A connection's standing: unauthenticated until [`Admission::authenticated`].
/// Dropping it (the connection ended) frees its place.
pub(crate) struct Admission {
    id: u64,
    pending: Arc<Mutex<Pending>>,
}

fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Admission {
    /// The connection proved who it is: it no longer counts against the limits of
    /// unauthenticated connections and is never closed to make room. Idempotent.
    pub(crate) fn authenticated(&self) {
        lock(&self.pending).remove(self.id);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        lock(&self.pending).remove(self.id);
    }
}

/// Admits a new connection from `source`: `None` when its source already holds
/// `per_source` unauthenticated connections; otherwise its admission and the signal
/// that closes it, after closing the oldest unauthenticated connection when there are
/// `unauthenticated` of them.
fn admit(
    pending: &Arc<Mutex<Pending>>,
    limits: Limits,
    source: IpAddr,
) -> Option<(Admission, Arc<Notify>)> {
    let mut p = lock(pending);
    if p.per_source.get(&source).copied().unwrap_or(0) >= limits.per_source {
        return None;
    }
    while p.connections.len() >= limits.unauthenticated.max(1) {
        p.evict_oldest();
    }
    p.next += 1;
    let id = p.next;
    let close = Arc::new(Notify::new());
    p.connections.insert(id, (source, close.clone()));
    *p.per_source.entry(source).or_default() += 1;
    p.order.push_back(id);
    drop(p);
    Some((
        Admission {
            id,
            pending: pending.clone(),
        },
        close,
    ))
}

/// Accepts connections on `listener` until the task is dropped, serving each with
/// `serve` within `limits`.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, limits: Limits, serve: F)
where
    F: Fn(TcpStream, SocketAddr, Arc<Admission>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.total));
    let pending = Arc::new(Mutex::new(Pending::default()));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Finished connections gave their slot back; forget them so the set stays
        // within `total`.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some((admission, close)) = admit(&pending, limits, peer.ip()) else {
            tracing::debug!(%peer, "too many unauthenticated connections from this source; closed");
            continue;
        };
        let connection = serve(stream, peer, Arc::new(admission));
        connections.spawn(async move {
            let _slot = slot;
            tokio::select! {
                () = connection => {}
                () = close.notified() => {
                    tracing::debug!(%peer, "closed to make room: unauthenticated too long");
                }
            }
        });
    }
}

/// Binds `address` for `what`.
pub(crate) async fn bind(address: SocketAddr, what: &'static str) -> crate::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|source| crate::Error::Listen {
            what,
            address,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        total: 100,
        unauthenticated: 3,
        per_source: 2,
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// Whether `close` was signalled (a permit is kept for a signal before the wait).
    async fn closed(close: &Notify) -> bool {
        tokio::time::timeout(Duration::from_millis(10), close.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn unauthenticated_connections_are_limited_per_source_and_the_oldest_makes_room() {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (a1, close_a1) = admit(&pending, LIMITS, ip(2)).expect("a1");
        let (_a2, close_a2) = admit(&pending, LIMITS, ip(2)).expect("a2");
        assert!(admit(&pending, LIMITS, ip(2)).is_none(), "per source");
        let (_b1, _) = admit(&pending, LIMITS, ip(3)).expect("b1");
        // Full: the next one closes the oldest (a1).
        assert!(!closed(&close_a1).await);
        let (_c1, _) = admit(&pending, LIMITS, ip(4)).expect("c1");
        assert!(closed(&close_a1).await, "a1 closed");
        drop(a1);
        // ip(2) has room again (a1 left); still full, so a2, now the oldest, makes room.
        let (a3, _) = admit(&pending, LIMITS, ip(2)).expect("a3");
        assert!(closed(&close_a2).await, "a2 closed");
        // An authenticated connection counts no more, and is never closed to make room.
        a3.authenticated();
        assert_eq!(lock(&pending).connections.len(), 2);
        assert_eq!(lock(&pending).per_source.get(&ip(2)), None);
        drop(a3);
        assert_eq!(lock(&pending).connections.len(), 2);
    }

    #[test]
    fn the_arrival_order_stays_bounded() {
        let pending = Arc::new(Mutex::new(Pending::default()));
        for _ in 0..10_000 {
            let (admission, _) = admit(&pending, LIMITS, ip(2)).expect("room");
            admission.authenticated();
        }
        assert!(lock(&pending).order.len() <= 16 + 1);
        assert!(lock(&pending).per_source.is_empty());
    }
}
