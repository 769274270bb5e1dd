//! The one accept loop every listener of the crate runs: at most `max` connections at
//! once (more wait in the kernel's backlog), a failed `accept` retried after a pause
//! instead of spinning, each connection served on its own task. The connections belong
//! to the loop: dropping it (the server's task aborted) ends them too.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long to pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` until the task is dropped, serving each with
/// `serve` while holding one of `max` slots.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, max: usize, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Finished connections gave their slot back; forget them so the set stays
        // within `max`.
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
        let connection = serve(stream, peer);
        connections.spawn(async move {
            let _slot = slot;
            connection.await;
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
