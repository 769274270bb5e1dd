//! Closing every connection of the kubelet's API clients at once (upstream's
//! `closeAllConns`, a `connrotation.Dialer`'s `CloseAll`).
//!
//! Upstream closes them when the client certificate rotates, so that every connection
//! presents the new certificate (the API server checks a client certificate's validity
//! on each request, so a connection kept past the old one's expiry fails), and when the
//! heartbeat fails, so that no request or watch waits on a connection gone half-open (a
//! NAT or load balancer that forgot it answers nothing and resets nothing; TCP would take
//! ~15 minutes to notice). Requests with a deadline give up their own connection when it
//! passes; a watch, or a connection waiting in a pool for the next request, would
//! otherwise stay on it until its own timeout.
//!
//! Every connection made through [`Connections::connector`] is closed by
//! [`Connections::close_all`]: its next read or write fails, and the task blocked
//! reading it is woken to find that out, so the client drops it and the next request
//! opens a new one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::BoxError;

/// The connections of one or more API clients, closed together on demand. Cloning it
/// gives another handle on the same connections.
#[derive(Clone, Debug, Default)]
pub struct Connections {
    /// Cancelled by `close_all`, then replaced: connections made later are not closed.
    current: Arc<Mutex<CancellationToken>>,
}

impl Connections {
    /// A handle on no connections yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Closes every connection made so far (those made later are not affected).
    pub fn close_all(&self) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.cancel();
        *current = CancellationToken::new();
    }

    /// `connector` with each of its connections closed by [`close_all`](Self::close_all).
    pub(crate) fn connector<C>(&self, connector: C) -> ClosableConnector<C> {
        ClosableConnector {
            inner: connector,
            connections: self.clone(),
        }
    }

    fn token(&self) -> CancellationToken {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A connector whose connections [`Connections::close_all`] closes.
#[derive(Clone, Debug)]
pub(crate) struct ClosableConnector<C> {
    inner: C,
    connections: Connections,
}

impl<C> tower::Service<Uri> for ClosableConnector<C>
where
    C: tower::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = ClosableStream<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // The token is taken when the connection is asked for: a `close_all` while it
        // is being made closes it too.
        let closed = Box::pin(self.connections.token().cancelled_owned());
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let stream = connecting.await.map_err(Into::into)?;
            Ok(ClosableStream {
                inner: stream,
                closed,
            })
        })
    }
}

/// A connection that fails every read and write once its [`Connections`] closed it.
pub(crate) struct ClosableStream<T> {
    inner: T,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<T> std::fmt::Debug for ClosableStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosableStream").finish_non_exhaustive()
    }
}

impl<T> ClosableStream<T> {
    /// An error once closed; else registers the task to be woken by the closing.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the kubelet closed its connections to the API server",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for ClosableStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for ClosableStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for ClosableStream<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

/// After a heartbeat request (a Lease renewal, a node status update) failed with
/// `error`: when no answer came from the API server (its deadline passed, the connection
/// failed), closes `connections`. Upstream closes them when a second attempt in a row
/// fails, as its attempts share one HTTP/2 connection and the second finds it still
/// stuck; here an attempt given up at its deadline takes its connection with it and the
/// next attempt opens a new one that may well work, so the first failure is the one that
/// says the others may be stuck too.
pub(crate) fn heartbeat_failed(connections: Option<&Connections>, error: &kube::Error) {
    if let Some(connections) = connections.filter(|_| crate::is_unanswered(error)) {
        tracing::info!(error = %error, "a heartbeat got no answer: closing every connection to the API server");
        connections.close_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    /// A connector to one in-memory peer per connection; the peers are sent out.
    #[derive(Clone)]
    struct Pipes(tokio::sync::mpsc::UnboundedSender<tokio::io::DuplexStream>);

    impl tower::Service<Uri> for Pipes {
        type Response = TokioIo<tokio::io::DuplexStream>;
        type Error = io::Error;
        type Future = std::future::Ready<io::Result<Self::Response>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Uri) -> Self::Future {
            let (mine, peer) = tokio::io::duplex(64);
            let _ = self.0.send(peer);
            std::future::ready(Ok(TokioIo::new(mine)))
        }
    }

    async fn connect(
        connector: &ClosableConnector<Pipes>,
    ) -> TokioIo<ClosableStream<TokioIo<tokio::io::DuplexStream>>> {
        let stream = connector
            .clone()
            .oneshot(Uri::from_static("https://api:6443"))
            .await
            .expect("connected");
        TokioIo::new(stream)
    }

    #[tokio::test]
    async fn close_all_wakes_a_blocked_read_and_spares_later_connections() {
        let (tx, mut peers) = tokio::sync::mpsc::unbounded_channel();
        let connections = Connections::new();
        let connector = connections.connector(Pipes(tx));
        let mut old = connect(&connector).await;
        let mut old_peer = peers.recv().await.expect("peer");

        // The connection works until closed.
        old_peer.write_all(b"hi").await.expect("peer writes");
        let mut buf = [0u8; 2];
        old.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi");

        // A read blocked on a connection whose peer says nothing (half-open) ends with an
        // error once the connections are closed.
        let blocked = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let read = old.read(&mut buf).await;
            (read, old)
        });
        tokio::task::yield_now().await;
        connections.close_all();
        let (read, mut old) = tokio::time::timeout(std::time::Duration::from_secs(10), blocked)
            .await
            .expect("the blocked read is woken by the closing")
            .expect("reader");
        let e = read.expect_err("a closed connection fails its read");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        let e = old.write_all(b"x").await.expect_err("and its writes");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);

        // A connection made after the closing is not affected by it.
        let mut new = connect(&connector).await;
        let mut new_peer = peers.recv().await.expect("peer");
        new.write_all(b"ok")
            .await
            .expect("write on a new connection");
        let mut buf = [0u8; 2];
        new_peer.read_exact(&mut buf).await.expect("peer reads");
        assert_eq!(&buf, b"ok");
        drop(old_peer);
    }

    #[tokio::test]
    async fn only_a_heartbeat_without_an_answer_closes_the_connections() {
        let (tx, _peers) = tokio::sync::mpsc::unbounded_channel();
        let connections = Connections::new();
        let mut stream = connect(&connections.connector(Pipes(tx))).await;

        // The API server answered (busy): the path to it works.
        let busy: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 503, "reason": "ServiceUnavailable", "message": "busy"
        }))
        .expect("a Status");
        heartbeat_failed(Some(&connections), &kube::Error::Api(Box::new(busy)));
        stream
            .write_all(b"a")
            .await
            .expect("an answer leaves the connections open");

        // No answer within the deadline: every connection may be stuck.
        let unanswered = crate::Error::NoAnswer {
            limit: std::time::Duration::from_secs(10),
        };
        heartbeat_failed(
            Some(&connections),
            &kube::Error::Service(Box::new(unanswered)),
        );
        let e = stream
            .write_all(b"b")
            .await
            .expect_err("no answer closes the connections");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    }
}
