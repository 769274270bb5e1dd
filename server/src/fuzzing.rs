//! The parsers of outside input, for the fuzz targets of `cargo xtask fuzz` (feature
//! `fuzzing`): each takes raw bytes and must return, whatever they are, without a panic
//! or a hang.

use std::path::Component;

/// A kubelet API request target (`path?query`) through everything that reads it before
/// a handler runs: the authorizer's subresources, the debugging-handler switches, the
/// `/containerLogs` query, the streaming routes' path and query, and the `/logs/` path,
/// which must stay below the log directory.
pub fn request_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    assert!(!crate::auth::subresources(path).is_empty());
    let _ = crate::Handlers::default().refusal(path);
    crate::routes::fuzz_log_query(query);
    crate::stream::fuzz_target(path, query);
    let relative = crate::node_logs::fuzz_resolve(path);
    assert!(
        relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
        "{path:?} resolved to {relative:?}"
    );
}
