//! Log lines for the systemd journal. Under systemd (stderr connected to the journal, as
//! `JOURNAL_STREAM` tells), each line starts with its syslog priority (`<3>` error, `<4>`
//! warning, `<6>` info, `<7>` debug), which journald reads as the entry's priority and
//! strips, and carries no timestamp or colours, the journal keeping its own time.
//! Elsewhere the usual text format stays.

use std::fmt;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr is the journal stream systemd connected (`JOURNAL_STREAM` names its
/// device and inode, as sd_journal_stream_fd's documentation says to check).
pub fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    is_journal_stream(&stream, stderr.dev(), stderr.ino())
}

fn is_journal_stream(variable: &str, dev: u64, ino: u64) -> bool {
    variable
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The syslog priority journald reads from a `<N>` prefix.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The text format without time, level words or colours, prefixed with the priority.
pub struct JournaldFormat {
    inner: Format<Full, ()>,
}

impl JournaldFormat {
    /// The format.
    pub fn new() -> Self {
        Self {
            inner: Format::default()
                .without_time()
                .with_level(false)
                .with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournaldFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_carry_the_syslog_priority_and_no_time() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(Level::DEBUG)
            .with_ansi(false)
            .event_format(JournaldFormat::new())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("pod", namespace = "default", name = "web");
            let _entered = span.enter();
            tracing::warn!(container = "app", "probe failed");
            tracing::info!("started");
            tracing::error!("broken");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "<4>pod{namespace=\"default\" name=\"web\"}: kubelet::logging::tests: probe failed container=\"app\"",
                "<6>pod{namespace=\"default\" name=\"web\"}: kubelet::logging::tests: started",
                "<3>pod{namespace=\"default\" name=\"web\"}: kubelet::logging::tests: broken",
                "<7>pod{namespace=\"default\" name=\"web\"}: kubelet::logging::tests: detail",
            ]
        );
    }

    #[test]
    fn the_journal_stream_is_recognised_by_device_and_inode() {
        assert!(is_journal_stream("8:12345", 8, 12345));
        assert!(!is_journal_stream("8:12345", 8, 1));
        assert!(!is_journal_stream("garbage", 8, 12345));
    }
}
