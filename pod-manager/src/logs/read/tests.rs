use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncReadExt;

use super::*;

/// A container whose running state the test sets.
#[derive(Clone, Default)]
struct Fake(Arc<AtomicBool>);

impl Fake {
    fn running() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
    fn exit(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl ContainerRunning for Fake {
    async fn is_running(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

const LOG: &str = "\
2024-05-01T10:00:00.000000001Z stdout F one
2024-05-01T10:00:01.5Z stderr F two
2024-05-01T10:00:02Z stdout P thr
2024-05-01T10:00:02.1Z stdout F ee
not a log line
2024-05-01T10:00:03.000000004Z stdout F four
";

fn log_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("0.log");
    std::fs::write(&path, text).expect("write log");
    (dir, path)
}

async fn read(text: &str, options: LogOptions) -> String {
    let (_dir, path) = log_file(text);
    let mut out = Vec::new();
    let reader = LogReader::open(&path, options).await.expect("open");
    let written = reader
        .copy_to(&mut out, &Fake::default())
        .await
        .expect("copy");
    assert_eq!(written, out.len() as u64);
    String::from_utf8(out).expect("utf-8")
}

fn since(text: &str) -> Option<SystemTime> {
    let t: Timestamp = text.parse().expect("time");
    Some(SystemTime::from(t))
}

#[test]
fn cri_lines_are_parsed_as_upstream() {
    let m = parse_cri_line(b"2016-10-06T00:17:09.669794202Z stdout F log content 1\n")
        .expect("full line");
    assert!(!m.stderr);
    assert_eq!(m.content, b"log content 1\n");
    assert_eq!(m.time.to_string(), "2016-10-06T00:17:09.669794202Z");
    let m = parse_cri_line(b"2016-10-06T00:17:09.669794203Z stderr P part\n").expect("partial");
    assert!(m.stderr);
    assert_eq!(m.content, b"part", "a partial line loses its newline");
    let m = parse_cri_line(b"2016-10-06T02:17:09+02:00 stdout F:x y\n").expect("tags, offset");
    assert_eq!(m.time.to_string(), "2016-10-06T00:17:09Z");
    assert_eq!(m.content, b"y\n");
    assert_eq!(parse_cri_line(b"garbage\n"), Err("timestamp is not found"));
    assert_eq!(
        parse_cri_line(b"yesterday stdout F x\n"),
        Err("unexpected timestamp format")
    );
    assert_eq!(
        parse_cri_line(b"2016-10-06T00:17:09Z stdin F x\n"),
        Err("unexpected stream type")
    );
    assert_eq!(
        parse_cri_line(b"2016-10-06T00:17:09Z stdout F"),
        Err("log tag is not found")
    );
}

#[test]
fn timestamps_are_written_fixed_width_in_their_offset() {
    let (t, o) = parse_time(b"2016-10-06T00:17:09.5Z").expect("utc");
    assert_eq!(format_time(t, o), "2016-10-06T00:17:09.500000000Z");
    let (t, o) = parse_time(b"2016-10-06T02:17:09.123456789+02:00").expect("offset");
    assert_eq!(format_time(t, o), "2016-10-06T02:17:09.123456789+02:00");
    let (t, o) = parse_time(b"2016-10-05T22:47:09-01:30").expect("negative");
    assert_eq!(format_time(t, o), "2016-10-05T22:47:09.000000000-01:30");
    assert_eq!(parse_time(b"2016-10-06"), None, "a date alone is no time");
    assert_eq!(parse_time(b"2016-10-06T00:17:09"), None, "no offset");
}

#[tokio::test]
async fn whole_log_joins_partial_lines_and_skips_garbage() {
    let out = read(LOG, LogOptions::default()).await;
    assert_eq!(out, "one\ntwo\nthree\nfour\n");
}

#[tokio::test]
async fn timestamps_prefix_each_line_once() {
    let out = read(
        LOG,
        LogOptions {
            timestamps: true,
            ..LogOptions::default()
        },
    )
    .await;
    assert_eq!(
        out,
        "2024-05-01T10:00:00.000000001Z one\n\
         2024-05-01T10:00:01.500000000Z two\n\
         2024-05-01T10:00:02.000000000Z three\n\
         2024-05-01T10:00:03.000000004Z four\n"
    );
}

#[tokio::test]
async fn tail_counts_file_lines() {
    let tail = |n| LogOptions {
        tail_lines: Some(n),
        ..LogOptions::default()
    };
    assert_eq!(read(LOG, tail(1)).await, "four\n");
    assert_eq!(read(LOG, tail(0)).await, "");
    // The last three file lines: "ee" (the end of a partial line), garbage, "four".
    assert_eq!(read(LOG, tail(3)).await, "ee\nfour\n");
    assert_eq!(read(LOG, tail(100)).await, "one\ntwo\nthree\nfour\n");
    // A last line without its newline is not counted, but written.
    let unfinished = "2024-05-01T10:00:00Z stdout F a\n2024-05-01T10:00:01Z stdout F b\n\
                      2024-05-01T10:00:02Z stdout F c";
    assert_eq!(read(unfinished, tail(1)).await, "b\n");
    assert_eq!(read(unfinished, LogOptions::default()).await, "a\nb\nc");
}

#[tokio::test]
async fn tail_scans_back_over_many_blocks() {
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("2024-05-01T10:00:00Z stdout F line {i}\n"));
    }
    let out = read(
        &text,
        LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        },
    )
    .await;
    assert_eq!(out, "line 4998\nline 4999\n");
}

#[tokio::test]
async fn limit_bytes_cuts_the_output() {
    let limit = |n| LogOptions {
        limit_bytes: Some(n),
        ..LogOptions::default()
    };
    assert_eq!(read(LOG, limit(6)).await, "one\ntw");
    assert_eq!(read(LOG, limit(4)).await, "one\n");
    assert_eq!(read(LOG, limit(1000)).await, "one\ntwo\nthree\nfour\n");
    let out = read(
        LOG,
        LogOptions {
            limit_bytes: Some(10),
            timestamps: true,
            ..LogOptions::default()
        },
    )
    .await;
    assert_eq!(out, "2024-05-01", "the prefix counts");
}

#[tokio::test]
async fn since_skips_older_lines() {
    let out = read(
        LOG,
        LogOptions {
            since: since("2024-05-01T10:00:01.5Z"),
            ..LogOptions::default()
        },
    )
    .await;
    assert_eq!(out, "two\nthree\nfour\n");
    let out = read(
        LOG,
        LogOptions {
            since: since("2024-05-01T10:00:02.05Z"),
            ..LogOptions::default()
        },
    )
    .await;
    // As upstream, each part of a split line is checked on its own.
    assert_eq!(out, "ee\nfour\n");
}

#[tokio::test]
async fn stream_selects_stdout_or_stderr() {
    let only = |stream| LogOptions {
        stream,
        ..LogOptions::default()
    };
    assert_eq!(read(LOG, only(LogStream::Stderr)).await, "two\n");
    assert_eq!(
        read(LOG, only(LogStream::Stdout)).await,
        "one\nthree\nfour\n"
    );
}

#[tokio::test]
async fn overlong_lines_are_cut() {
    let long = "x".repeat(MAX_LINE_BYTES + 100);
    let text =
        format!("2024-05-01T10:00:00Z stdout F {long}\n2024-05-01T10:00:01Z stdout F next\n");
    let out = read(&text, LogOptions::default()).await;
    let (first, rest) = out.split_once('\n').expect("two lines");
    let header = "2024-05-01T10:00:00Z stdout F ".len();
    assert_eq!(first.len(), MAX_LINE_BYTES - header);
    assert_eq!(rest, "next\n");
}

#[tokio::test]
async fn missing_files_report_upstreams_message() {
    let err = LogReader::open("/nonexistent/0.log", LogOptions::default())
        .await
        .expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("failed to try resolving symlinks in path \"/nonexistent/0.log\""),
        "{err}"
    );
}

/// Reads from `pipe` until `want` arrived or 10 s passed.
async fn expect_output(pipe: &mut tokio::io::DuplexStream, got: &mut String, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !got.contains(want) {
        let n = tokio::time::timeout_at(deadline, pipe.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{want:?} not written; so far {got:?}"))
            .expect("read");
        assert!(n > 0, "output closed before {want:?}; got {got:?}");
        got.push_str(std::str::from_utf8(&buf[..n]).expect("utf-8"));
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}

#[tokio::test]
async fn follow_streams_new_lines_until_the_container_exits() {
    let (_dir, path) = log_file("2024-05-01T10:00:00Z stdout F old\n");
    let container = Fake::running();
    let (mut theirs, mut ours) = tokio::io::duplex(1024);
    let reader = LogReader::open(
        &path,
        LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        },
    )
    .await
    .expect("open");
    let task = {
        let container = container.clone();
        tokio::spawn(async move { reader.copy_to(&mut ours, &container).await })
    };
    let mut got = String::new();
    expect_output(&mut theirs, &mut got, "old\n").await;
    // Half a line first: nothing is written until it is complete.
    append(&path, "2024-05-01T10:00:01Z stdout F ne");
    tokio::time::sleep(POLL_INTERVAL * 3).await;
    append(&path, "w\n2024-05-01T10:00:02Z stderr P par");
    append(&path, "t\n2024-05-01T10:00:03Z stderr F ial\n");
    expect_output(&mut theirs, &mut got, "partial\n").await;
    assert_eq!(got, "old\nnew\npartial\n");
    assert!(!task.is_finished(), "still following a running container");
    // Lines written as it exits are read before the follower stops.
    append(&path, "2024-05-01T10:00:04Z stdout F last\n");
    container.exit();
    let written = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the follower ends once the container exited")
        .expect("task")
        .expect("copy");
    expect_output(&mut theirs, &mut got, "last\n").await;
    assert_eq!(got, "old\nnew\npartial\nlast\n");
    assert_eq!(written, got.len() as u64);
}

#[tokio::test]
async fn follow_goes_on_in_the_rotated_file() {
    let (dir, path) = log_file("2024-05-01T10:00:00Z stdout F first\n");
    let container = Fake::running();
    let (mut theirs, mut ours) = tokio::io::duplex(1024);
    let reader = LogReader::open(
        &path,
        LogOptions {
            follow: true,
            ..LogOptions::default()
        },
    )
    .await
    .expect("open");
    let task = {
        let container = container.clone();
        tokio::spawn(async move { reader.copy_to(&mut ours, &container).await })
    };
    let mut got = String::new();
    expect_output(&mut theirs, &mut got, "first\n").await;
    // The runtime wrote once more, then the log was rotated and reopened.
    append(&path, "2024-05-01T10:00:01Z stdout F second\n");
    std::fs::rename(&path, dir.path().join("0.log.20240501-100002")).expect("rotate");
    tokio::time::sleep(POLL_INTERVAL * 2).await;
    append(&path, "2024-05-01T10:00:02Z stdout F third\n");
    expect_output(&mut theirs, &mut got, "third\n").await;
    assert_eq!(got, "first\nsecond\nthird\n");
    container.exit();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ends")
        .expect("task")
        .expect("copy");
}

#[tokio::test]
async fn follow_reads_a_truncated_file_from_its_start() {
    let (_dir, path) = log_file("2024-05-01T10:00:00Z stdout F before the truncation\n");
    let container = Fake::running();
    let (mut theirs, mut ours) = tokio::io::duplex(1024);
    let reader = LogReader::open(
        &path,
        LogOptions {
            follow: true,
            ..LogOptions::default()
        },
    )
    .await
    .expect("open");
    let task = {
        let container = container.clone();
        tokio::spawn(async move { reader.copy_to(&mut ours, &container).await })
    };
    let mut got = String::new();
    expect_output(&mut theirs, &mut got, "truncation\n").await;
    std::fs::write(&path, "2024-05-01T10:00:01Z stdout F new\n").expect("truncate");
    expect_output(&mut theirs, &mut got, "new\n").await;
    container.exit();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ends")
        .expect("task")
        .expect("copy");
}

#[tokio::test]
async fn follow_of_an_exited_container_reads_to_the_end() {
    let out = {
        let (_dir, path) = log_file(LOG);
        let mut out = Vec::new();
        let reader = LogReader::open(
            &path,
            LogOptions {
                follow: true,
                tail_lines: Some(1),
                ..LogOptions::default()
            },
        )
        .await
        .expect("open");
        tokio::time::timeout(
            Duration::from_secs(10),
            reader.copy_to(&mut out, &Fake::default()),
        )
        .await
        .expect("does not wait for an exited container")
        .expect("copy");
        String::from_utf8(out).expect("utf-8")
    };
    assert_eq!(out, "four\n");
}

#[tokio::test]
async fn a_closed_output_ends_the_follower() {
    let (_dir, path) = log_file("2024-05-01T10:00:00Z stdout F one\n");
    let (theirs, mut ours) = tokio::io::duplex(16);
    drop(theirs);
    let reader = LogReader::open(
        &path,
        LogOptions {
            follow: true,
            ..LogOptions::default()
        },
    )
    .await
    .expect("open");
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reader.copy_to(&mut ours, &Fake::running()),
    )
    .await
    .expect("ends");
    assert!(result.is_err(), "{result:?}");
}
