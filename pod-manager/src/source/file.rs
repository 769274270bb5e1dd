//! The static pod directory (upstream `pkg/kubelet/config/file.go`, `file_linux.go`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kubelet_inotify::AddWatchFlags;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::ManifestOrigin;
use super::manifest::{
    Decoded, MAX_MANIFEST_BYTES, SnapshotBuilder, decode, prepare_static_pod, rejection_reason,
};
use crate::{PodSource, RejectedManifest, SourceUpdate, UpdateKind};

/// Upstream's default `fileCheckFrequency`.
pub const DEFAULT_FILE_CHECK_FREQUENCY: Duration = Duration::from_secs(20);
/// How often a missing path, or a watch that could not be set up, is tried again
/// (upstream `retryPeriod`).
const RETRY_PERIOD: Duration = Duration::from_secs(1);
/// Quiet time after a change event before reading: an editor or `cp` writes a file in
/// several steps, and reading between them would see it half written.
const SETTLE: Duration = Duration::from_millis(100);
/// The longest a stream of change events may delay a read.
const MAX_SETTLE: Duration = Duration::from_secs(1);

/// The static pod source: a directory of manifests, or a single manifest file.
///
/// Each regular file in the directory whose name does not start with `.` holds one
/// `v1` `Pod` as YAML or JSON (upstream's file source reads a single Pod per file,
/// never a PodList); subdirectories are not read. Pods are defaulted, named
/// `<name>-<node>` and validated ([`prepare_static_pod`]); a file that fails is reported
/// as a [`RejectedManifest`] and logged, and the other files are unaffected.
///
/// [`run`](Self::run) sends a snapshot at start and whenever the pods or rejections
/// change: promptly through inotify when files are added, written, removed or renamed,
/// and by re-reading the path every check frequency as upstream does. A missing path
/// gives an empty snapshot (so the source counts as seen, as upstream) and is checked
/// again every second until it appears.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    node_name: String,
    check_frequency: Duration,
}

impl FileSource {
    /// A source reading `path` (directory or file) for node `node_name`, re-read every
    /// [`DEFAULT_FILE_CHECK_FREQUENCY`].
    pub fn new(path: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        let path: PathBuf = path.into();
        // Upstream trims trailing separators; the path is part of generated UIDs, so
        // `/etc/kubernetes/manifests/` and `.../manifests` must give the same pods.
        let trimmed = path.to_string_lossy().trim_end_matches('/').to_owned();
        let path = if trimmed.is_empty() {
            path
        } else {
            PathBuf::from(trimmed)
        };
        Self {
            path,
            node_name: node_name.into(),
            check_frequency: DEFAULT_FILE_CHECK_FREQUENCY,
        }
    }

    /// Sets how often the path is re-read regardless of inotify (upstream
    /// `fileCheckFrequency`).
    pub fn with_check_frequency(mut self, every: Duration) -> Self {
        self.check_frequency = every;
        self
    }

    /// The path read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Watches the path and sends snapshots on `updates` until the receiver is dropped.
    /// Spawn it as a task; it never fails: unreadable paths and inotify failures are
    /// logged and retried.
    pub async fn run(self, updates: mpsc::Sender<SourceUpdate>) {
        tracing::info!(path = %self.path.display(), "watching static pod path");
        let mut state = State::default();
        // Watch before the first read, so that nothing written after that read is missed.
        let mut watch = self.try_watch(&mut state).await;
        if let Some(snapshot) = self.list(&mut state).await
            && !state.send_if_changed(&updates, snapshot).await
        {
            return;
        }
        let every = self.check_frequency.max(Duration::from_millis(1));
        let mut relist = tokio::time::interval_at(Instant::now() + every, every);
        relist.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut retry = tokio::time::interval_at(Instant::now() + RETRY_PERIOD, RETRY_PERIOD);
        retry.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            let list_now = tokio::select! {
                () = updates.closed() => return,
                _ = relist.tick() => true,
                _ = retry.tick(), if watch.is_none() => {
                    watch = self.try_watch(&mut state).await;
                    // Anything may have changed before the watch existed.
                    watch.is_some()
                }
                event = next_event(&mut watch) => match event {
                    WatchEvent::Changed => {
                        if let Some(w) = watch.as_mut()
                            && w.settle().await == WatchEvent::Gone
                        {
                            watch = self.rewatch(&mut state).await;
                        }
                        true
                    }
                    WatchEvent::Gone => {
                        watch = self.rewatch(&mut state).await;
                        true
                    }
                },
            };
            if list_now
                && let Some(snapshot) = self.list(&mut state).await
                && !state.send_if_changed(&updates, snapshot).await
            {
                return;
            }
        }
    }

    /// After the watched path went away (deleted, or replaced by a rename): watch
    /// whatever is at the path now, so that a replaced file is followed at once; when
    /// nothing is there, the retry timer keeps trying.
    async fn rewatch(&self, state: &mut State) -> Option<Watch> {
        tracing::debug!(path = %self.path.display(), "watched path went away");
        self.try_watch(state).await
    }

    async fn try_watch(&self, state: &mut State) -> Option<Watch> {
        match Watch::new(&self.path).await {
            Ok(w) => {
                tracing::debug!(path = %self.path.display(), "inotify watch set up");
                Some(w)
            }
            Err(err) => {
                state.note_watch_error(&self.path, &err);
                None
            }
        }
    }

    /// Reads the path into a snapshot; `None` when it could not be read at all (the
    /// previous snapshot then stands, as upstream).
    async fn list(&self, state: &mut State) -> Option<(Vec<Pod>, Vec<RejectedManifest>)> {
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if !state.missing {
                    tracing::warn!(path = %self.path.display(), "static pod path does not exist, will retry");
                    state.missing = true;
                }
                return Some((Vec::new(), Vec::new()));
            }
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "unable to read static pod path");
                return None;
            }
        };
        if state.missing {
            tracing::info!(path = %self.path.display(), "static pod path appeared");
            state.missing = false;
        }
        let mut builder = SnapshotBuilder::new();
        if meta.is_dir() {
            let entries = match self.read_dir().await {
                Ok(entries) => entries,
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), error = %err, "unable to list static pod directory");
                    return None;
                }
            };
            for entry in entries {
                self.read_manifest(&entry, &mut builder).await;
            }
        } else if meta.is_file() {
            self.read_manifest(&self.path, &mut builder).await;
        } else {
            tracing::warn!(path = %self.path.display(), "static pod path is not a directory or file");
            return None;
        }
        Some(builder.finish(&mut state.seen))
    }

    /// The entries of the directory that may be manifests, sorted by name.
    async fn read_dir(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut dir = tokio::fs::read_dir(&self.path).await?;
        let mut paths = Vec::new();
        while let Some(entry) = dir.next_entry().await? {
            if !is_hidden(&entry.file_name()) {
                paths.push(entry.path());
            }
        }
        paths.sort();
        Ok(paths)
    }

    async fn read_manifest(&self, path: &Path, builder: &mut SnapshotBuilder) {
        let shown = path.display().to_string();
        // Follows symlinks, as upstream's os.Stat does.
        let meta = match tokio::fs::metadata(path).await {
            Ok(meta) => meta,
            // Removed while listing: the next event or re-list settles it.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => return builder.reject(shown, err.to_string()),
        };
        if meta.is_dir() {
            return builder.reject(
                shown,
                "is a directory; manifests in subdirectories are not read",
            );
        }
        if !meta.is_file() {
            return builder.reject(shown, "not a regular file");
        }
        let data = match read_at_most(path, MAX_MANIFEST_BYTES).await {
            Ok(Some(data)) => data,
            Ok(None) => {
                return builder.reject(
                    shown,
                    format!("larger than the {MAX_MANIFEST_BYTES} byte limit"),
                );
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => return builder.reject(shown, format!("reading: {err}")),
        };
        let pod = match decode(&data, false) {
            Ok(Decoded::Pod(pod)) => *pod,
            // decode() only returns a list when lists are allowed.
            Ok(Decoded::PodList(_)) => {
                return builder.reject(shown, "couldn't parse as pod: a PodList");
            }
            Err(reason) => {
                return builder.reject(shown, format!("couldn't parse as pod: {reason}"));
            }
        };
        let origin = ManifestOrigin::File(path.to_path_buf());
        match prepare_static_pod(pod, &origin, &self.node_name) {
            Ok(pod) => builder.add(&shown, pod),
            Err(err) => builder.reject(shown, rejection_reason(&err)),
        }
    }
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_bytes().first() == Some(&b'.')
}

/// Reads a file, or `None` when it is larger than `limit` bytes.
async fn read_at_most(path: &Path, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let file = tokio::fs::File::open(path).await?;
    let mut data = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut data).await?;
    Ok((data.len() <= limit).then_some(data))
}

/// What the source remembers between reads.
#[derive(Default)]
struct State {
    /// The last snapshot sent.
    last: Option<(Vec<Pod>, Vec<RejectedManifest>)>,
    /// UID to the time the pod was first seen (`kubernetes.io/config.seen`).
    seen: HashMap<String, String>,
    /// Whether the path was missing at the last read (to log transitions only).
    missing: bool,
    /// The last watch error logged (to log each distinct error once).
    last_watch_error: Option<String>,
}

impl State {
    /// Sends the snapshot unless it equals the last one sent; false when the receiver is
    /// gone.
    async fn send_if_changed(
        &mut self,
        updates: &mpsc::Sender<SourceUpdate>,
        snapshot: (Vec<Pod>, Vec<RejectedManifest>),
    ) -> bool {
        if self.last.as_ref() == Some(&snapshot) {
            return true;
        }
        let previously_rejected: Vec<&RejectedManifest> =
            self.last.iter().flat_map(|(_, r)| r.iter()).collect();
        for r in &snapshot.1 {
            if !previously_rejected.contains(&r) {
                tracing::warn!(path = %r.path, reason = %r.reason, "rejected static pod manifest");
            }
        }
        tracing::debug!(
            pods = snapshot.0.len(),
            rejected = snapshot.1.len(),
            "static pod snapshot changed"
        );
        let update = SourceUpdate {
            source: PodSource::File,
            pods: snapshot.0.clone(),
            rejected: snapshot.1.clone(),
            kind: UpdateKind::Snapshot,
        };
        self.last = Some(snapshot);
        updates.send(update).await.is_ok()
    }

    fn note_watch_error(&mut self, path: &Path, err: &std::io::Error) {
        // A missing path is the list's to report; other errors are logged once each.
        if err.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        let text = err.to_string();
        if self.last_watch_error.as_deref() != Some(text.as_str()) {
            tracing::warn!(path = %path.display(), error = %text, "unable to watch static pod path with inotify; relying on periodic re-reads");
            self.last_watch_error = Some(text);
        }
    }
}

/// What an inotify read means for the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchEvent {
    /// Something that may be a manifest changed.
    Changed,
    /// The watched path itself went away (deleted, moved, unmounted); re-watch by path.
    Gone,
}

/// An inotify watch on the source path.
struct Watch(kubelet_inotify::Watch);

impl Watch {
    async fn new(path: &Path) -> std::io::Result<Self> {
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO;
        Ok(Self(kubelet_inotify::Watch::new(path, mask).await?))
    }

    /// Waits for the next batch of events and classifies it.
    async fn next(&mut self) -> WatchEvent {
        loop {
            let events = match self.0.next_batch().await {
                Ok(Some(events)) => events,
                Ok(None) => return WatchEvent::Gone,
                Err(err) => {
                    tracing::warn!(error = %err, "reading inotify events failed");
                    return WatchEvent::Gone;
                }
            };
            // Overflow loses events; a re-read covers whatever they were.
            let relevant = events.iter().any(|event| {
                event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                    || event.name.as_deref().is_none_or(|n| !is_hidden(n))
            });
            if relevant {
                return WatchEvent::Changed;
            }
        }
    }

    /// Waits until events stop for [`SETTLE`] (at most [`MAX_SETTLE`]), so a file being
    /// written is read once, complete.
    async fn settle(&mut self) -> WatchEvent {
        let deadline = Instant::now() + MAX_SETTLE;
        loop {
            let quiet = (Instant::now() + SETTLE).min(deadline);
            tokio::select! {
                // Checked first so that a steady stream of events cannot starve it.
                biased;
                () = tokio::time::sleep_until(quiet) => return WatchEvent::Changed,
                event = self.next() => {
                    if event == WatchEvent::Gone {
                        return WatchEvent::Gone;
                    }
                }
            }
        }
    }
}

/// The next event of the watch, or never when there is none.
async fn next_event(watch: &mut Option<Watch>) -> WatchEvent {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}
