//! Liveness, readiness and startup probes for the kubelet, following upstream's
//! `pkg/kubelet/prober` and `pkg/probe` (Kubernetes v1.37).
//!
//! - [`KubeletProber`] implements [`kubelet_core::Prober`]: one attempt of an exec probe
//!   (through the runtime's `ExecSync`), an httpGet probe (HTTP/1.1 from the node, over
//!   TLS without certificate verification for `scheme: HTTPS`, as upstream) or a
//!   tcpSocket probe, or a grpc probe (`grpc.health.v1.Health/Check`, plaintext).
//! - [`lifecycle_http_get`]: an httpGet lifecycle hook with the same client, as
//!   upstream's hook runner (any answer succeeds, HTTPS falls back to HTTP).
//! - [`prepare_probe`] resolves what needs the container's spec, which
//!   [`ProbeTarget`](kubelet_core::ProbeTarget) does not carry: named ports
//!   ([`resolve_port`]) and `$(VAR)` in exec commands. Call it once per container.
//! - [`ProbeState`] is the worker's threshold logic without clocks: initial results per
//!   kind, `successThreshold`/`failureThreshold` runs, and the hold after a liveness
//!   failure or a startup result. [`ProbeSchedule`] reads a probe's timing with upstream's
//!   defaults.
//! - [`run_probe_loop`] drives a prober on a tokio timer with that logic.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use std::sync::Arc;
//!
//! use k8s_openapi::api::core::v1::Container;
//! use kubelet_core::{ContainerExec, ProbeKind, ProbeTarget};
//! use kubelet_probes::{KubeletProber, ProbeResult, prepare_probe, run_probe_loop};
//!
//! async fn watch_readiness(
//!     runtime: Arc<dyn ContainerExec>,
//!     container: &Container,
//!     target: ProbeTarget,
//! ) -> kubelet_core::Result<()> {
//!     let Some(spec) = &container.readiness_probe else {
//!         return Ok(());
//!     };
//!     let probe = prepare_probe(spec, container)?;
//!     let prober = KubeletProber::new(runtime);
//!     let started = tokio::time::Instant::now();
//!     run_probe_loop(&prober, ProbeKind::Readiness, &probe, &target, started, |result| {
//!         println!("ready: {}", result == ProbeResult::Success);
//!         ControlFlow::Continue(())
//!     })
//!     .await;
//!     Ok(())
//! }
//! ```

mod exec;
mod grpc;
mod http;
mod prepare;
mod prober;
mod state;
mod tcp;
mod tls;
mod worker;

pub use http::{HookHttp, LIFECYCLE_USER_AGENT, USER_AGENT, lifecycle_http_get};
pub use prepare::{prepare_probe, resolve_port};
pub use prober::KubeletProber;
pub use state::{ProbeResult, ProbeSchedule, ProbeState};
pub use worker::run_probe_loop;
