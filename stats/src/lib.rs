//! Node, pod and container statistics from cgroups, /proc and the runtime's CRI stats, served as the `/stats/summary` API and as Prometheus metrics with upstream's names.
//!
//! **Status: reserved, no API yet.** This crate holds its place in the workspace so the
//! dependency graph in `ARCHITECTURE.md` is real from the start; its implementation
//! lands with issue #7. Until then it exports nothing and must not be depended on
//! for behaviour.
