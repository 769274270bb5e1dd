//! gRPC on unix sockets for a Rust kubelet.
//!
//! The kubelet serves gRPC on unix sockets that programs written in Go call: device
//! plugins register on `/var/lib/kubelet/device-plugins/kubelet.sock`, node agents read
//! `<root-dir>/pod-resources/kubelet.sock`. grpc-go, dialing a socket path as its
//! target, sends that path as the HTTP/2 `:authority` (upstream's own device plugin
//! stub does), which the `h2` server under tonic refuses as malformed, resetting every
//! call (`PROTOCOL_ERROR`). [`incoming`] wraps each accepted connection in
//! [`LocalhostAuthority`], which rewrites such an authority to `localhost` (what
//! Kubernetes' own clients send since kubernetes#112597) before `h2` sees it.
//!
//! - [`listen`]: the socket, its directory made 0750 if missing, a stale socket replaced;
//! - [`incoming`]: accepted connections for `Server::serve_with_incoming`;
//! - [`connect`]: a lazily connected channel to a socket (for clients of plugins).
//!
//! # Example
//!
//! ```no_run
//! # async fn run(router: tonic::transport::server::Router) -> Result<(), Box<dyn std::error::Error>> {
//! let listener = kubelet_grpc_uds::listen("/var/lib/kubelet/pod-resources/kubelet.sock".as_ref()).await?;
//! router.serve_with_incoming(kubelet_grpc_uds::incoming(listener)).await?;
//! # Ok(())
//! # }
//! ```

mod authority;

pub use authority::LocalhostAuthority;

use std::path::Path;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint, Uri};

/// The socket `path`, ready to accept: its directory made (0750) if missing, a stale
/// socket file removed first, as upstream's `util.CreateListener`.
///
/// # Errors
///
/// When the directory or the socket cannot be made; the error names the path.
pub async fn listen(path: &Path) -> std::io::Result<UnixListener> {
    let named = |e: std::io::Error, what: &str| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .await
            .map_err(|e| named(e, "creating the directory of"))?;
    }
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(named(e, "removing the stale socket")),
    }
    UnixListener::bind(path).map_err(|e| named(e, "listening on"))
}

/// The connections `listener` accepts, each with its `:authority` made acceptable
/// ([`LocalhostAuthority`]); an accept error ends nothing (it is logged and skipped).
pub fn incoming(
    listener: UnixListener,
) -> impl Stream<Item = std::io::Result<LocalhostAuthority<UnixStream>>> {
    tokio_stream::wrappers::UnixListenerStream::new(listener).filter_map(
        |accepted| match accepted {
            Ok(stream) => Some(Ok(LocalhostAuthority::new(stream))),
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection on a unix socket");
                None
            }
        },
    )
}

/// A channel to the gRPC server on the socket `path`, connected when first used (and
/// again after the server restarts); connecting is bounded by `connect_timeout`.
pub fn connect(path: &Path, connect_timeout: std::time::Duration) -> Channel {
    let path = path.to_owned();
    Endpoint::from_static("http://localhost")
        .connect_timeout(connect_timeout)
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(&path).await.map(TokioIo::new) }
        }))
}
