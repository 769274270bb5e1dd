//! Pod sources (manifest directory, manifest URL, API server), one worker per pod, the sync loop and pod lifecycle event generator, init containers, sidecars, restart policies with CrashLoopBackOff, termination and pod status. It drives containers only through `kubelet_core::Runtime` and publishes status through `kubelet_core::StatusReporter`.
//!
//! **Status: reserved, no API yet.** This crate holds its place in the workspace so the
//! dependency graph in `ARCHITECTURE.md` is real from the start; its implementation
//! lands with issue #4. Until then it exports nothing and must not be depended on
//! for behaviour.
