//! Small helpers: running commands, processes and pid files, files, a minimal HTTP client.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Prints a short progress line to stderr.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[xtask] {}", format_args!($($arg)*))
    };
}

/// The PATH given to every command we start: the sbin directories hold iptables, runc, ip.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Builds a command with a PATH that includes the sbin directories.
pub fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    let path = match std::env::var("PATH") {
        Ok(p) if !p.is_empty() => format!("{PATH}:{p}"),
        _ => PATH.to_string(),
    };
    c.env("PATH", path);
    c
}

/// Renders a command for messages.
pub fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with the given timeout, capturing its output. Kills it when the timeout
/// passes and returns an error.
pub fn output_timeout(c: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(c);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    // Drain both pipes in threads so a chatty command cannot block on a full pipe.
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let err_t = thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let start = Instant::now();
    let status: ExitStatus = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{what}` did not finish within {}s", timeout.as_secs());
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Default timeout for helper commands.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a command and returns its stdout; fails with its stderr when it exits non-zero.
pub fn output(c: &mut Command) -> Result<String> {
    let what = describe(c);
    let out = output_timeout(c, CMD_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command, discarding its output unless it fails.
pub fn run(c: &mut Command) -> Result<()> {
    output(c).map(|_| ())
}

/// Runs a command and tells whether it exited 0 (false also when it cannot start).
pub fn succeeds(c: &mut Command, timeout: Duration) -> bool {
    output_timeout(c, timeout)
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Writes a file only when its content differs; returns true when it changed.
pub fn write_if_changed(path: &Path, content: &[u8]) -> Result<bool> {
    if let Ok(old) = fs::read(path)
        && old == content
    {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp-xtask");
    fs::write(&tmp, content).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(true)
}

/// Creates a directory and its parents.
pub fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(data) => {
            let text = String::from_utf8_lossy(&data);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Reads a pid from a pid file.
pub fn read_pidfile(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Tells whether a process exists and is not a zombie. (PID 1 of this machine does not
/// reap orphans, so a dead daemon stays as a zombie.)
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

/// The command line of a process, its arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let data = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        data.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// All process ids currently in /proc.
pub fn all_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Sends a signal (by name, e.g. "TERM") to a process with kill(1).
pub fn signal(pid: u32, sig: &str) -> bool {
    succeeds(
        cmd("kill").arg(format!("-{sig}")).arg(pid.to_string()),
        Duration::from_secs(5),
    )
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL. Returns when the process is gone.
pub fn terminate(pid: u32, grace: Duration) {
    if !process_alive(pid) {
        return;
    }
    signal(pid, "TERM");
    if wait_until(grace, || !process_alive(pid)) {
        return;
    }
    signal(pid, "KILL");
    wait_until(Duration::from_secs(5), || !process_alive(pid));
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A random hex string from /dev/urandom.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Standard base64 (with padding), for HTTP basic auth.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A parsed HTTP response: status code and headers (lower-case names).
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 request over plain TCP (loopback registries only).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Result<HttpResponse> {
    let sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad address {addr}"))?;
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let mut data = Vec::new();
    stream
        .read_to_end(&mut data)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&data[..split]).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().context("empty HTTP answer")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    Ok(HttpResponse { status, headers })
}

/// Splits a line printed by `iptables -S` into arguments (double quotes, backslash escapes).
pub fn split_shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut in_quotes = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            '"' => {
                in_quotes = !in_quotes;
                in_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Decodes the octal escapes (`\040`) of /proc/self/mountinfo fields.
pub fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points currently listed in /proc/self/mountinfo.
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .collect()
}

/// FNV-1a (64 bits) of `bytes`: a cache key for sources embedded in xtask, not a
/// security measure.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn splits_iptables_rules() {
        let w = split_shell_words(
            r#"-A POSTROUTING -s 10.88.0.2/32 -m comment --comment "name: \"k\" id: \"x\"" -j CNI-1"#,
        );
        assert_eq!(
            w,
            vec![
                "-A",
                "POSTROUTING",
                "-s",
                "10.88.0.2/32",
                "-m",
                "comment",
                "--comment",
                "name: \"k\" id: \"x\"",
                "-j",
                "CNI-1"
            ]
        );
    }

    #[test]
    fn unescapes_mount_paths() {
        assert_eq!(unescape_mount_path(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}
