//! Liveness, readiness and startup probes: exec (through the runtime's `ExecSync`), httpGet, tcpSocket and grpc, implementing `kubelet_core::Prober`, plus the per-container probe workers with initial delay, period, timeout and thresholds.
//!
//! **Status: reserved, no API yet.** This crate holds its place in the workspace so the
//! dependency graph in `ARCHITECTURE.md` is real from the start; its implementation
//! lands with issue #4. Until then it exports nothing and must not be depended on
//! for behaviour.
