//! Container logs: rotation, as upstream's container log manager (when a running
//! container's log reaches `containerLogMaxSize`, it is renamed with a timestamp and the
//! runtime reopens the log; older rotated files are gzipped and only
//! `containerLogMaxFiles` files are kept), and reading
//! them for `/containerLogs` ([`LogReader`], [`locate_container_log`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use kubelet_pod_manager::logs::{LogOptions, LogReader, RuntimeContainer, locate_container_log};
//!
//! async fn last_lines(
//!     runtime: Arc<dyn kubelet_core::Runtime>,
//!     pod: &k8s_openapi::api::core::v1::Pod,
//! ) -> kubelet_pod_manager::Result<Vec<u8>> {
//!     let log = locate_container_log(runtime.as_ref(), pod, "app", false, "/var/log/pods".as_ref()).await?;
//!     let options = LogOptions { tail_lines: Some(10), ..LogOptions::default() };
//!     let mut out = Vec::new();
//!     let container = RuntimeContainer::new(runtime, log.container_id);
//!     LogReader::open(&log.path, options).await?.copy_to(&mut out, &container).await?;
//!     Ok(out)
//! }
//! ```

mod locate;
mod read;
#[cfg(feature = "fuzzing")]
pub(crate) use read::fuzz_parse_line;

pub use locate::{ContainerLog, locate_container_log, log_container_id, runtime_container_id};
pub use read::{
    ContainerRunning, LogOptions, LogReader, LogStream, MAX_LINE_BYTES, POLL_INTERVAL,
    RUNNING_CHECK_INTERVAL, RuntimeContainer,
};

use std::path::{Path, PathBuf};
use std::time::Duration;

use kubelet_core::labels::POD_UID_LABEL;
use kubelet_core::{ContainerFilter, ContainerState, Runtime};
use tracing::{debug, warn};

/// Rotation limits (upstream `containerLogMaxSize`, `containerLogMaxFiles`,
/// `containerLogMonitorInterval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// A log larger than this many bytes is rotated (upstream default 10Mi).
    pub max_size: u64,
    /// Most log files kept per container, the current one included (default 5, min 2).
    pub max_files: usize,
    /// How often the logs are checked (default 10 s).
    pub interval: Duration,
}

impl Default for LogRotation {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
            interval: Duration::from_secs(10),
        }
    }
}

/// Checks every running container of the kubelet's pods once per interval.
pub(crate) async fn rotation_loop(runtime: std::sync::Arc<dyn Runtime>, policy: LogRotation) {
    let mut interval = tokio::time::interval(policy.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = rotate_all(runtime.as_ref(), policy).await {
            debug!(error = %e, "log rotation pass failed");
        }
    }
}

async fn rotate_all(runtime: &dyn Runtime, policy: LogRotation) -> kubelet_core::Result<()> {
    let running = runtime
        .list_containers(&ContainerFilter {
            state: Some(ContainerState::Running),
            ..Default::default()
        })
        .await?;
    for container in running
        .iter()
        .filter(|c| c.labels.contains_key(POD_UID_LABEL))
    {
        let status = match runtime.container_status(&container.id).await {
            Ok(status) => status,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        if status.log_path.is_empty() {
            continue;
        }
        let log = PathBuf::from(&status.log_path);
        let size = match tokio::fs::metadata(&log).await {
            Ok(meta) => meta.len(),
            // As upstream: a log gone (removed by hand, a rotation interrupted) is
            // reopened by the runtime.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Err(e) = runtime.reopen_container_log(&container.id).await {
                    warn!(container = %container.id, error = %e, "container log doesn't exist, reopening it failed");
                }
                continue;
            }
            Err(_) => continue,
        };
        if size < policy.max_size {
            continue;
        }
        if let Err(message) = rotate(runtime, &container.id, &log, policy.max_files).await {
            warn!(container = %container.id, log = %log.display(), %message, "rotating a container log");
        }
    }
    Ok(())
}

fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let t = k8s_openapi::jiff::Timestamp::from_second(i64::try_from(now.as_secs()).unwrap_or(0))
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    // Upstream's rotated-log suffix: Go layout 20060102-150405, UTC here.
    t.strftime("%Y%m%d-%H%M%S").to_string()
}

/// Rotated files of `log`, oldest first (their suffixes sort by time).
async fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut files = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let file = entry.file_name();
            if file.to_str().is_some_and(|f| f.starts_with(&prefix)) {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

async fn rotate(
    runtime: &dyn Runtime,
    id: &str,
    log: &Path,
    max_files: usize,
) -> Result<(), String> {
    make_room(log, max_files).await?;
    let mut target = PathBuf::from(format!("{}.{}", log.display(), timestamp()));
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        // Two rotations within one second: keep both.
        target = PathBuf::from(format!("{}.{}-1", log.display(), timestamp()));
    }
    // The latest rotated file stays uncompressed: the runtime may still be writing its
    // last lines and log shippers finish reading it.
    tokio::fs::rename(log, &target)
        .await
        .map_err(|e| format!("renaming to {}: {e}", target.display()))?;
    if let Err(e) = runtime.reopen_container_log(id).await {
        // Put the log back so the runtime's open file stays the current log.
        let _ = tokio::fs::rename(&target, log).await;
        return Err(format!("reopening: {e}"));
    }
    debug!(container = id, rotated = %target.display(), "rotated container log");
    Ok(())
}

/// Before a rotation, as upstream: leftovers of an interrupted rotation removed, the
/// oldest rotated files removed so that after the rename at most `max_files` files remain
/// (the new current log included), and the rotated files that stay gzipped.
async fn make_room(log: &Path, max_files: usize) -> Result<(), String> {
    let rotated = clean_up_unused(rotated_files(log).await).await?;
    let keep = max_files.max(2) - 2;
    let excess = rotated.len().saturating_sub(keep);
    for old in &rotated[..excess] {
        tokio::fs::remove_file(old)
            .await
            .map_err(|e| format!("removing {}: {e}", old.display()))?;
    }
    for older in rotated[excess..]
        .iter()
        .filter(|f| !has_suffix(f, COMPRESSED_SUFFIX))
    {
        let file = older.clone();
        tokio::task::spawn_blocking(move || compress(&file))
            .await
            .map_err(|e| format!("compressing {}: {e}", older.display()))??;
    }
    Ok(())
}

/// Suffix of a gzipped rotated log (upstream's `compressSuffix`).
const COMPRESSED_SUFFIX: &str = ".gz";
/// Suffix of a log being compressed (upstream's `tmpSuffix`).
const TMP_SUFFIX: &str = ".tmp";

fn has_suffix(path: &Path, suffix: &str) -> bool {
    path.to_str().is_some_and(|p| p.ends_with(suffix))
}

/// Upstream's `cleanupUnusedLogs`: removes what an interrupted rotation left (files being
/// compressed, and originals whose compressed copy exists); returns the rest, oldest
/// first.
async fn clean_up_unused(rotated: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
    let mut in_use = Vec::with_capacity(rotated.len());
    for file in &rotated {
        let compressed = PathBuf::from(format!("{}{COMPRESSED_SUFFIX}", file.display()));
        let compressed_exists = rotated.contains(&compressed);
        if has_suffix(file, TMP_SUFFIX) || compressed_exists {
            tokio::fs::remove_file(file)
                .await
                .map_err(|e| format!("removing unused log {}: {e}", file.display()))?;
        } else {
            in_use.push(file.clone());
        }
    }
    Ok(in_use)
}

/// Upstream's `compressLog`: `<log>` gzipped into `<log>.tmp`, renamed `<log>.gz`, then
/// `<log>` removed.
fn compress(log: &Path) -> Result<(), String> {
    use std::io::Write;
    let failed = |what: &str, e: std::io::Error| format!("{what} {}: {e}", log.display());
    let mut input = std::fs::File::open(log).map_err(|e| failed("opening", e))?;
    let mode = input
        .metadata()
        .map_err(|e| failed("reading the mode of", e))?
        .permissions();
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", log.display()));
    let output =
        std::fs::File::create(&tmp).map_err(|e| failed("creating the temporary file of", e))?;
    let result = (|| {
        output.set_permissions(mode)?;
        let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.flush()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed("compressing", e));
    }
    let compressed = PathBuf::from(format!("{}{COMPRESSED_SUFFIX}", log.display()));
    std::fs::rename(&tmp, &compressed).map_err(|e| failed("renaming the compressed copy of", e))?;
    std::fs::remove_file(log).map_err(|e| failed("removing after compressing", e))
}

#[cfg(test)]
mod rotation_tests;
