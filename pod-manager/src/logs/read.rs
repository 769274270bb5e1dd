//! Reading a container's log file in the CRI format, as upstream's `ReadLogs`
//! (`k8s.io/cri-client/pkg/logs`): `tailLines`, `limitBytes`, `since`, `timestamps`,
//! the stream filter, and `follow` until the container exits.
//!
//! A CRI log line is `<RFC3339Nano time> <stdout|stderr> <P|F> <content>`; `P` marks a
//! partial line whose content continues on the next line, so the parts are written one
//! after another with one timestamp prefix. Lines that do not parse are skipped, as
//! upstream does (the Docker JSON format is not read).
//!
//! Following polls the open file for growth (every [`POLL_INTERVAL`]) and asks whether
//! the container still runs at most once per [`RUNNING_CHECK_INTERVAL`]; once it has
//! exited, the rest of the file is written and the read ends. A rotation (the file
//! renamed and a new one created at the path) is followed: the old file is read to its
//! end, then the new one from its start. A file cut short (copytruncate) is read again
//! from its start. Without `follow`, only the current file is read, as upstream.
//!
//! Memory stays bounded: one read buffer and one line of at most [`MAX_LINE_BYTES`]
//! (longer lines are cut there, with a warning).

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use jiff::fmt::temporal::Pieces;
use jiff::tz::Offset;
use kubelet_core::{ContainerState, Runtime};
use tokio::io::{
    AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tracing::{debug, warn};

use crate::{Error, Result};

/// How often a followed log is checked for new content.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often a follower asks the runtime whether the container still runs.
pub const RUNNING_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Longest log line kept; runtimes split longer output into partial lines (containerd
/// at 16 KiB by default), so only a runtime configured not to split reaches it.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// The read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// Block size of the backward scan for `tailLines`.
const TAIL_BLOCK: usize = 8 * 1024;

/// Which of the container's streams to return (upstream `PodLogOptions.stream`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogStream {
    /// Both, interleaved as written.
    #[default]
    All,
    /// Standard output only.
    Stdout,
    /// Standard error only.
    Stderr,
}

/// What to read, as upstream's `LogOptions` (from `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep reading as the container writes, until it exits.
    pub follow: bool,
    /// Only the last lines of the file (counted as file lines, partial ones included).
    pub tail_lines: Option<u64>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
    /// Only lines written at or after this time.
    pub since: Option<SystemTime>,
    /// Prefix each line with its time (RFC 3339, nanoseconds).
    pub timestamps: bool,
    /// Which streams.
    pub stream: LogStream,
}

/// Whether the container whose log is followed still runs; a follower stops once it
/// does not.
pub trait ContainerRunning: Send + Sync {
    /// True while the container runs (or when that cannot be told right now).
    fn is_running(&self) -> impl Future<Output = bool> + Send;
}

/// A container of a runtime, for following its log.
#[derive(Clone)]
pub struct RuntimeContainer {
    runtime: Arc<dyn Runtime>,
    id: String,
}

impl std::fmt::Debug for RuntimeContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeContainer")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RuntimeContainer {
    /// The container `id` (the runtime's id, without `containerd://`) of `runtime`.
    pub fn new(runtime: Arc<dyn Runtime>, id: impl Into<String>) -> Self {
        Self {
            runtime,
            id: id.into(),
        }
    }
}

impl ContainerRunning for RuntimeContainer {
    async fn is_running(&self) -> bool {
        match self.runtime.container_status(&self.id).await {
            Ok(status) => status.container.state == ContainerState::Running,
            // As upstream: a runtime that cannot be reached still runs its containers.
            Err(e) if e.is_unavailable() => true,
            Err(e) => {
                debug!(container = %self.id, error = %e, "container status while following its log");
                false
            }
        }
    }
}

/// One parsed log line.
#[derive(Debug, PartialEq, Eq)]
struct Message<'a> {
    time: Timestamp,
    offset: Offset,
    stderr: bool,
    content: &'a [u8],
}

/// Parses one line of the CRI log format (upstream `parseCRILog`); the error says why
/// the line is not one.
fn parse_cri_line(line: &[u8]) -> std::result::Result<Message<'_>, &'static str> {
    let mut rest = line;
    let mut field = |missing: &'static str| -> std::result::Result<&[u8], &'static str> {
        let end = rest.iter().position(|b| *b == b' ').ok_or(missing)?;
        let value = &rest[..end];
        rest = &rest[end + 1..];
        Ok(value)
    };
    let time = field("timestamp is not found")?;
    let (time, offset) = parse_time(time).ok_or("unexpected timestamp format")?;
    let stderr = match field("stream type is not found")? {
        b"stdout" => false,
        b"stderr" => true,
        _ => return Err("unexpected stream type"),
    };
    let tags = field("log tag is not found")?;
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    let mut content = rest;
    if partial && content.last() == Some(&b'\n') {
        content = &content[..content.len() - 1];
    }
    Ok(Message {
        time,
        offset,
        stderr,
        content,
    })
}

/// A line parsed and its time printed again, as the log reader does with each.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_parse_line(line: &[u8]) {
    if let Ok(message) = parse_cri_line(line) {
        let _ = format_time(message.time, message.offset);
    }
}

/// An RFC 3339 time with its offset, as Go's `time.Parse(RFC3339Nano)` reads it.
fn parse_time(text: &[u8]) -> Option<(Timestamp, Offset)> {
    let pieces = Pieces::parse(text).ok()?;
    let time = pieces.time()?;
    let offset = pieces.to_numeric_offset()?;
    let instant = offset.to_timestamp(pieces.date().to_datetime(time)).ok()?;
    Some((instant, offset))
}

/// The time as upstream writes it (`RFC3339NanoFixed`: nine fraction digits, `Z` for
/// UTC), in the offset it was logged with.
fn format_time(time: Timestamp, offset: Offset) -> String {
    let civil = offset.to_datetime(time);
    let mut text = civil.strftime("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    let seconds = offset.seconds();
    if seconds == 0 {
        text.push('Z');
    } else {
        let sign = if seconds < 0 { '-' } else { '+' };
        let minutes = seconds.unsigned_abs() / 60;
        text.push_str(&format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60));
    }
    text
}

/// Where the last `n` lines of the file start (upstream `findTailLineStartIndex`): a
/// last line without its newline is not counted.
async fn tail_start(file: &mut tokio::fs::File, n: u64) -> std::io::Result<u64> {
    let size = file.seek(std::io::SeekFrom::End(0)).await?;
    let mut newlines = 0u64;
    let mut end = size;
    let mut block = vec![0u8; TAIL_BLOCK];
    while end > 0 {
        let start = end.saturating_sub(TAIL_BLOCK as u64);
        let len = usize::try_from(end - start).unwrap_or(TAIL_BLOCK);
        file.seek(std::io::SeekFrom::Start(start)).await?;
        file.read_exact(&mut block[..len]).await?;
        for (i, byte) in block[..len].iter().enumerate().rev() {
            if *byte == b'\n' {
                newlines += 1;
                if newlines > n {
                    return Ok(start + i as u64 + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

/// How a bounded line read ended.
#[derive(Debug, PartialEq, Eq)]
enum LineEnd {
    /// A whole line, newline included, is in the buffer.
    Newline,
    /// The end of the file; the buffer holds what there is of an unfinished line.
    Eof,
}

/// Reads up to the next newline into `line`, keeping at most [`MAX_LINE_BYTES`] (the
/// rest of a longer line is dropped; `cut` tells). Bytes already in `line` (an unfinished
/// line from an earlier read) are continued.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    cut: &mut bool,
) -> std::io::Result<(LineEnd, u64)> {
    let mut consumed = 0u64;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok((LineEnd::Eof, consumed));
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        if take > room {
            *cut = true;
        }
        line.extend_from_slice(&available[..take.min(room)]);
        if done && line.last() != Some(&b'\n') {
            // Cut: keep the line a line.
            line.push(b'\n');
        }
        reader.consume(take);
        consumed += take as u64;
        if done {
            return Ok((LineEnd::Newline, consumed));
        }
    }
}

/// Writes messages to the output as the options say (upstream `logWriter`).
struct Writer<'w, W> {
    out: &'w mut W,
    remain: Option<u64>,
    since: Option<Timestamp>,
    timestamps: bool,
    stream: LogStream,
    written: u64,
}

/// Whether the output can take more.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    More,
    LimitReached,
}

impl<W: AsyncWrite + Unpin> Writer<'_, W> {
    async fn write(&mut self, message: &Message<'_>, new_line: bool) -> std::io::Result<Written> {
        if self.since.is_some_and(|since| message.time < since) {
            return Ok(Written::More);
        }
        let wanted = match self.stream {
            LogStream::All => true,
            LogStream::Stdout => !message.stderr,
            LogStream::Stderr => message.stderr,
        };
        if !wanted {
            return Ok(Written::More);
        }
        let prefix = if self.timestamps && new_line {
            let mut prefix = format_time(message.time, message.offset);
            prefix.push(' ');
            prefix
        } else {
            String::new()
        };
        let mut parts = [prefix.as_bytes(), message.content];
        for part in &mut parts {
            if let Some(remain) = self.remain {
                let keep = usize::try_from(remain)
                    .unwrap_or(usize::MAX)
                    .min(part.len());
                *part = &part[..keep];
            }
            if part.is_empty() {
                continue;
            }
            self.out.write_all(part).await?;
            let n = part.len() as u64;
            self.written += n;
            if let Some(remain) = &mut self.remain {
                *remain -= n;
            }
        }
        Ok(match self.remain {
            Some(0) => Written::LimitReached,
            _ => Written::More,
        })
    }
}

/// A container log file opened for reading, positioned where the options want it.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    file: tokio::fs::File,
    start: u64,
    options: LogOptions,
}

impl LogReader {
    /// Opens the log at `path` (symlinks resolved, as upstream) and finds where
    /// `tail_lines` starts. Errors carry upstream's messages (`failed to open log file
    /// "...": ...`).
    pub async fn open(path: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        let given = path.as_ref();
        let path = tokio::fs::canonicalize(given)
            .await
            .map_err(|e| Error::LogsUnavailable {
                message: format!(
                    "failed to try resolving symlinks in path {:?}: {e}",
                    given.display().to_string()
                ),
            })?;
        let shown = || path.display().to_string();
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::LogsUnavailable {
                message: format!("failed to open log file {:?}: {e}", shown()),
            })?;
        let start = match options.tail_lines {
            Some(n) => tail_start(&mut file, n)
                .await
                .map_err(|e| Error::LogsUnavailable {
                    message: format!("failed to tail {n} lines of log file {:?}: {e}", shown()),
                })?,
            None => 0,
        };
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| Error::LogsUnavailable {
                message: format!("failed to seek {start} in log file {:?}: {e}", shown()),
            })?;
        Ok(Self {
            path,
            file,
            start,
            options,
        })
    }

    /// The file read (symlinks resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the log to `out` as the options say; with `follow`, waits for more until
    /// `container` has exited and the file is read to its end. Returns the bytes
    /// written. A failed write (the client went away) ends the read with the error.
    pub async fn copy_to<W, C>(self, out: &mut W, container: &C) -> Result<u64>
    where
        W: AsyncWrite + Unpin,
        C: ContainerRunning,
    {
        let Self {
            path,
            file,
            start,
            options,
        } = self;
        let io_error = |operation: &'static str, path: &Path, source| Error::Io {
            operation,
            path: path.to_owned(),
            source,
        };
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let mut position = start;
        let mut writer = Writer {
            out,
            remain: options.limit_bytes,
            since: options.since.and_then(|t| Timestamp::try_from(t).ok()),
            timestamps: options.timestamps,
            stream: options.stream,
            written: 0,
        };
        if writer.remain == Some(0) {
            return Ok(0);
        }
        // Tail without follow counts the lines written, as upstream.
        let mut lines_left = options.tail_lines.filter(|_| !options.follow);
        let mut line = Vec::with_capacity(1024);
        let mut cut = false;
        let mut new_line = true;
        let mut exited = false;
        let mut rotated = false;
        let mut last_check: Option<Instant> = None;
        while lines_left != Some(0) {
            let (end, consumed) = read_line(&mut reader, &mut line, &mut cut)
                .await
                .map_err(|e| io_error("reading the log", &path, e))?;
            position += consumed;
            if end == LineEnd::Newline {
                let written = emit(&mut writer, &line, &mut new_line, &mut lines_left, &path)
                    .await
                    .map_err(|e| io_error("writing the log of", &path, e))?;
                line.clear();
                if written == Written::LimitReached {
                    break;
                }
                continue;
            }
            if !options.follow || exited {
                // The end: an unfinished last line is written as it is, as upstream.
                if !line.is_empty() {
                    debug!(path = %path.display(), "incomplete line at the end of the log");
                    emit(&mut writer, &line, &mut new_line, &mut lines_left, &path)
                        .await
                        .map_err(|e| io_error("writing the log of", &path, e))?;
                }
                break;
            }
            if rotated {
                rotated = false;
                match tokio::fs::File::open(&path).await {
                    Ok(file) => {
                        // The old file is read to its end: go on with the new one.
                        debug!(path = %path.display(), "following the rotated log");
                        reader = BufReader::with_capacity(READ_BUFFER, file);
                        position = 0;
                        if !line.is_empty() {
                            let written =
                                emit(&mut writer, &line, &mut new_line, &mut lines_left, &path)
                                    .await
                                    .map_err(|e| io_error("writing the log of", &path, e))?;
                            line.clear();
                            if written == Written::LimitReached {
                                break;
                            }
                        }
                        continue;
                    }
                    // Renamed, not created again yet: wait for it.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("reopening the log", &path, e)),
                }
            }
            let change = wait_for_change(&mut reader, &path, position, container, &mut last_check)
                .await
                .map_err(|e| io_error("following the log", &path, e))?;
            match change {
                Change::Grown => {}
                Change::Truncated => {
                    reader
                        .seek(std::io::SeekFrom::Start(0))
                        .await
                        .map_err(|e| io_error("seeking in the log", &path, e))?;
                    position = 0;
                    line.clear();
                }
                Change::Rotated => rotated = true,
                Change::Exited => exited = true,
            }
        }
        if cut {
            warn!(path = %path.display(), limit = MAX_LINE_BYTES, "log lines too long: cut");
        }
        writer
            .out
            .flush()
            .await
            .map_err(|e| io_error("writing the log of", &path, e))?;
        Ok(writer.written)
    }
}

/// Parses one line and writes it; a line that is not in the CRI format is skipped, as
/// upstream does.
async fn emit<W: AsyncWrite + Unpin>(
    writer: &mut Writer<'_, W>,
    line: &[u8],
    new_line: &mut bool,
    lines_left: &mut Option<u64>,
    path: &Path,
) -> std::io::Result<Written> {
    let message = match parse_cri_line(line) {
        Ok(message) => message,
        Err(reason) => {
            debug!(path = %path.display(), reason, "skipping a line that is not in the CRI log format");
            return Ok(Written::More);
        }
    };
    let written = writer.write(&message, *new_line).await?;
    *new_line = message.content.last().is_none_or(|b| *b == b'\n');
    if let Some(left) = lines_left {
        *left = left.saturating_sub(1);
    }
    Ok(written)
}

/// What a follower saw while waiting.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// The open file has more to read.
    Grown,
    /// The open file is shorter than what was read (copytruncate).
    Truncated,
    /// The path names another file now (rotation).
    Rotated,
    /// The container no longer runs.
    Exited,
}

/// Waits until the open file grows, is cut, or is replaced at `path`, or the container
/// exits.
async fn wait_for_change<C: ContainerRunning>(
    reader: &mut BufReader<tokio::fs::File>,
    path: &Path,
    position: u64,
    container: &C,
    last_check: &mut Option<Instant>,
) -> std::io::Result<Change> {
    loop {
        if last_check.is_none_or(|t| t.elapsed() >= RUNNING_CHECK_INTERVAL) {
            *last_check = Some(Instant::now());
            if !container.is_running().await {
                return Ok(Change::Exited);
            }
        }
        let open = reader.get_ref().metadata().await?;
        if open.len() > position {
            return Ok(Change::Grown);
        }
        if open.len() < position {
            return Ok(Change::Truncated);
        }
        match tokio::fs::metadata(path).await {
            Ok(current) if current.ino() != open.ino() || current.dev() != open.dev() => {
                return Ok(Change::Rotated);
            }
            // Renamed away and not created again yet: wait.
            Ok(_) | Err(_) => {}
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests;
