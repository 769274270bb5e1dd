//! Pod volumes: emptyDir, hostPath, configMap, secret, downwardAPI and projected (service-account tokens), each a `kubelet_core::VolumePlugin`, with a volume manager that keeps desired and actual state and rebuilds it from disk.
//!
//! **Status: reserved, no API yet.** This crate holds its place in the workspace so the
//! dependency graph in `ARCHITECTURE.md` is real from the start; its implementation
//! lands with issue #5. Until then it exports nothing and must not be depended on
//! for behaviour.
