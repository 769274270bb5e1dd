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

/// The GETs of single Node objects an API server has answered, all response codes, from
/// the text of its `/metrics` (`apiserver_request_total`): what a test compares before
/// and after a period to see whether a kubelet read its Node.
pub fn node_gets(metrics: &str) -> u64 {
    api_requests(metrics, "nodes", "", "GET")
}

/// The `verb` requests on `resource`'s `subresource` ("" for the object itself) an API
/// server has answered, all response codes, from the text of its `/metrics`
/// (`apiserver_request_total`).
pub fn api_requests(metrics: &str, resource: &str, subresource: &str, verb: &str) -> u64 {
    let labels = [
        format!("resource=\"{resource}\""),
        format!("subresource=\"{subresource}\""),
        format!("verb=\"{verb}\""),
    ];
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{") && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Path variants for traversal tests: every sequence of up to `max_len` of `segments`
/// joined with `/` (each also with a leading `/` and with doubled slashes), in a fixed
/// order, so a failure names a variant that can be tried again.
pub fn path_variants(segments: &[&str], max_len: usize) -> Vec<String> {
    let mut sequences: Vec<Vec<&str>> = vec![Vec::new()];
    let mut all = Vec::new();
    for _ in 0..max_len {
        let longer: Vec<Vec<&str>> = sequences
            .iter()
            .flat_map(|s| {
                segments.iter().map(move |segment| {
                    let mut s = s.clone();
                    s.push(segment);
                    s
                })
            })
            .collect();
        all.extend(longer.iter().map(|s| s.join("/")));
        sequences = longer;
    }
    let mut variants = Vec::with_capacity(all.len() * 3);
    for path in all {
        variants.push(format!("/{path}"));
        variants.push(path.replace('/', "//"));
        variants.push(path);
    }
    variants.sort();
    variants.dedup();
    variants
}

/// A temporary directory for a kubelet's root directory and files, removed on drop after
/// everything mounted at or below it is lazily unmounted: the kubelet makes its root
/// directory a bind mount of itself (as upstream's kubelet does) and mounts volumes
/// below it, none of which it undoes when it stops.
#[derive(Debug)]
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    /// A new directory under the system's temporary directory.
    ///
    /// # Panics
    ///
    /// When it cannot be made (a test helper: the test fails).
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("a temporary directory"))
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let Ok(base) = std::fs::canonicalize(self.path()) else {
            return;
        };
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut below: Vec<std::path::PathBuf> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|p| std::path::PathBuf::from(p.replace("\\040", " ")))
            .filter(|p| p.starts_with(&base))
            .collect();
        // Deepest last in mount order: undo newest first.
        below.reverse();
        for path in below {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&path)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A private D-Bus daemon on a socket of its own, for a fake system service (logind,
/// systemd) on a machine without systemd; stopped on drop.
#[derive(Debug)]
pub struct PrivateBus {
    child: std::process::Child,
    address: String,
}

impl PrivateBus {
    /// Starts `dbus-daemon` with its socket in `dir`; waits up to 10 s for the socket.
    ///
    /// # Errors
    ///
    /// `dbus-daemon` (package dbus) is missing or did not come up: the reason, for
    /// [`skip`].
    pub fn start(dir: &std::path::Path) -> Result<Self, String> {
        let socket = dir.join("bus");
        let address = format!("unix:path={}", socket.display());
        let child = std::process::Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("dbus-daemon (package dbus) cannot run: {e}"))?;
        let mut bus = Self { child, address };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !socket.exists() {
            if std::time::Instant::now() > deadline || bus.child.try_wait().ok().flatten().is_some()
            {
                return Err("dbus-daemon did not start within 10s".to_owned());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(bus)
    }

    /// The bus's address (`unix:path=...`), for `DBUS_SYSTEM_BUS_ADDRESS` or a client.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_gets_sums_the_gets_of_single_nodes_over_response_codes() {
        let metrics = "\
# HELP apiserver_request_total Counter of apiserver requests
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"nodes\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 7
apiserver_request_total{code=\"404\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"nodes\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 2
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"nodes\",scope=\"resource\",subresource=\"status\",verb=\"GET\",version=\"v1\"} 5
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"nodes\",scope=\"cluster\",subresource=\"\",verb=\"LIST\",version=\"v1\"} 3
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 11
";
        assert_eq!(node_gets(metrics), 9);
        assert_eq!(node_gets(""), 0);
    }

    #[test]
    fn a_skip_fails_only_when_the_environment_is_required() {
        let outcome = std::panic::catch_unwind(|| skip("t", "needs root"));
        assert_eq!(outcome.is_err(), env_required());
    }
}
