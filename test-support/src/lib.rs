//! One rule for tests that need something the machine may lack (root, containerd, a
//! control plane, cgroup v2, systemd): [`skip`] says so *visibly* (`SKIPPED` on the
//! terminal, even under libtest's output capture) and lets the test return, or, when
//! `KUBELET_TEST_REQUIRE_ENV=1` (as `cargo xtask test` and CI set it), fails the test:
//! there a skipped test would hide a broken set-up.
//!
//! # Example
//!
//! ```
//! fn is_root() -> bool {
//!     std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
//! }
//!
//! // In a test:
//! fn mounts_tmpfs() {
//!     if !is_root() {
//!         return kubelet_test_support::skip("mounts_tmpfs", "mounting tmpfs needs root");
//!     }
//!     // ... mount, check, unmount
//! }
//! # if !kubelet_test_support::env_required() { mounts_tmpfs(); }
//! ```

use std::io::Write;

/// The variable that turns a skip into a failure.
pub const REQUIRE_ENV: &str = "KUBELET_TEST_REQUIRE_ENV";

/// Whether missing environments fail tests (`KUBELET_TEST_REQUIRE_ENV=1`).
pub fn env_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// Reports that `test` cannot run here because of `reason`: panics (the test fails)
/// when the environment is required, else writes `<test>: SKIPPED: <reason>` straight
/// to the process's stderr, past libtest's capture, so the skip shows in the run's
/// output. The caller returns right after.
#[track_caller]
pub fn skip(test: &str, reason: impl std::fmt::Display) {
    let line = format!("{test}: SKIPPED: {reason}");
    assert!(!env_required(), "{line} ({REQUIRE_ENV}=1 requires it)");
    // `eprintln!` would be captured and hidden for a passing test; a direct write is not.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_fails_only_when_the_environment_is_required() {
        let outcome = std::panic::catch_unwind(|| skip("t", "needs root"));
        assert_eq!(outcome.is_err(), env_required());
    }
}
