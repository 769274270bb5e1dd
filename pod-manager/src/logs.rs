//! Container logs: rotation, as upstream's container log manager (when a running
//! container's log grows past `containerLogMaxSize`, it is renamed with a timestamp, the
//! runtime reopens the log, and only `containerLogMaxFiles` files are kept), and reading
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
            Err(_) => continue,
        };
        if size <= policy.max_size {
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
    // Make room: after the rename there are the rotated files plus the new current log.
    let keep = max_files.max(2) - 2;
    let rotated = rotated_files(log).await;
    for old in rotated.iter().take(rotated.len().saturating_sub(keep)) {
        tokio::fs::remove_file(old)
            .await
            .map_err(|e| format!("removing {}: {e}", old.display()))?;
    }
    let mut target = PathBuf::from(format!("{}.{}", log.display(), timestamp()));
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        // Two rotations within one second: keep both.
        target = PathBuf::from(format!("{}.{}-1", log.display(), timestamp()));
    }
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
