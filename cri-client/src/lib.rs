//! A client of the Kubernetes Container Runtime Interface (CRI v1).
//!
//! [`CriClient`] speaks `runtime.v1.RuntimeService` and `runtime.v1.ImageService` over a
//! unix socket (containerd, CRI-O), with a deadline on every call and errors that name
//! the RPC, the object and the cause as variants a caller can match ([`Error::NotFound`],
//! [`Error::Unavailable`], [`Error::DeadlineExceeded`]). It reconnects by itself after
//! the runtime restarts. It implements [`kubelet_core::Runtime`] and
//! [`kubelet_core::ImageService`], the traits the pod manager uses; every RPC is also
//! available with its raw CRI messages ([`proto`]).
//!
//! With the `testing` feature, `FakeCriServer` is an in-memory CRI runtime served in
//! process, so other crates can test against this real client without a socket.
//!
//! # Example
//!
//! ```no_run
//! use kubelet_cri_client::{CriClient, Timeouts, DEFAULT_ENDPOINT};
//!
//! # async fn run() -> Result<(), kubelet_cri_client::Error> {
//! let client = CriClient::new(DEFAULT_ENDPOINT, Timeouts::default())?;
//! let version = client.version().await?;
//! println!("{} {}", version.runtime_name, version.runtime_version);
//! match client.container_status("no-such-container", false).await {
//!     Err(e) if e.is_not_found() => println!("gone: {e}"),
//!     other => println!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod convert;
mod error;
#[cfg(feature = "testing")]
mod fake;
mod runtime;
#[cfg(feature = "testing")]
mod test_env;

pub use client::{CriClient, DEFAULT_ENDPOINT, MAX_MESSAGE_SIZE, Timeouts, socket_path};
pub use error::{Error, Result};
#[cfg(feature = "testing")]
pub use fake::{FakeCriServer, FakeImage};
#[cfg(feature = "testing")]
pub use test_env::TestEnv;

/// The CRI v1 messages and generated clients and servers (from the `k8s-cri` crate).
pub use k8s_cri::v1 as proto;
