//! Background daemons started by the environment: a pid file, a log, a detached process.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::env::shell_quote;
use crate::util;

/// A daemon we start detached (setsid), with its pid file and log.
pub struct Daemon {
    /// The pid file.
    pub pidfile: PathBuf,
    /// The log file (stdout and stderr).
    pub log: PathBuf,
    /// The program: a name looked up in PATH, or an absolute path.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// A string that the command line of our process contains (its config path), to tell
    /// our process from an unrelated one that got the same pid.
    pub marker: String,
}

/// What the pid file says about a daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonState {
    /// Our process runs.
    Running(u32),
    /// There is no pid file.
    NoPidfile,
    /// The pid file names a process that has exited.
    Dead(u32),
    /// The pid file names a live process that is not ours.
    NotOurs(u32),
}

impl fmt::Display for DaemonState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonState::Running(pid) => write!(f, "pid {pid}"),
            DaemonState::NoPidfile => write!(f, "no pid file"),
            DaemonState::Dead(pid) => write!(f, "process {pid} from the pid file is dead"),
            DaemonState::NotOurs(pid) => {
                write!(f, "pid {pid} from the pid file is another program")
            }
        }
    }
}

impl Daemon {
    /// Reads the pid file and checks the process.
    pub fn state(&self) -> DaemonState {
        let Some(pid) = util::read_pidfile(&self.pidfile) else {
            return DaemonState::NoPidfile;
        };
        if !util::process_alive(pid) {
            return DaemonState::Dead(pid);
        }
        match util::cmdline(pid) {
            // By file name, not path: a daemon that another checkout's xtask started from
            // its own copy of the program, with the same state dir, is still ours.
            Some(args)
                if args.iter().any(|a| a.contains(self.name()))
                    && args.iter().any(|a| a.contains(&self.marker)) =>
            {
                DaemonState::Running(pid)
            }
            _ => DaemonState::NotOurs(pid),
        }
    }

    /// Starts the daemon detached from us (new session, stdin from /dev/null, output to the
    /// log) and writes the pid file.
    pub fn start(&self) -> Result<u32> {
        for p in [&self.pidfile, &self.log] {
            if let Some(dir) = p.parent() {
                util::mkdir(dir)?;
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let log2 = log.try_clone()?;
        // setsid(1) execs the program in the same process (we are not a group leader), so
        // the pid we get is the daemon's.
        let child = util::cmd("setsid")
            .arg(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program))?;
        let pid = child.id();
        fs::write(&self.pidfile, format!("{pid}\n"))
            .with_context(|| format!("cannot write {}", self.pidfile.display()))?;
        Ok(pid)
    }

    /// A shell script that does what [`Daemon::start`] does, unless the process of the pid
    /// file still runs, so that tests can start the daemon again after stopping it.
    pub fn start_script(&self) -> String {
        let q = |p: &Path| shell_quote(&p.to_string_lossy());
        let mut command = format!("setsid {}", shell_quote(&self.program));
        for a in &self.args {
            command.push_str(" \\\n    ");
            command.push_str(&shell_quote(a));
        }
        let lines = [
            "#!/bin/sh".to_string(),
            format!(
                "# Written by `cargo xtask env up`: starts {} detached as xtask does",
                self.name()
            ),
            "# (new session, output appended to the log, pid in the pid file). Does nothing".into(),
            "# while the process named by the pid file runs.".into(),
            "set -e".into(),
            format!("PATH={}", util::PATH),
            "export PATH".into(),
            format!("pidfile={}", q(&self.pidfile)),
            self.running_check(&[
                "echo \"already running (pid $pid)\"".into(),
                "exit 0".into(),
            ]),
            format!(
                "mkdir -p {}",
                q(self.log.parent().unwrap_or(Path::new("/")))
            ),
            "cd /".into(),
            "# Without job control the background child leads no process group, so setsid(1)"
                .into(),
            "# execs in place and $! is the daemon's pid.".into(),
            format!("{command} \\\n    </dev/null >>{} 2>&1 &", q(&self.log)),
            "echo $! >\"$pidfile\"".into(),
        ];
        lines.join("\n") + "\n"
    }

    /// A shell script that stops the daemon as [`Daemon::stop`] does: SIGTERM, SIGKILL
    /// after `grace`; it waits until the process is gone.
    pub fn stop_script(&self, grace: Duration) -> String {
        let lines = [
            "#!/bin/sh".to_string(),
            format!(
                "# Written by `cargo xtask env up`: stops {} (SIGTERM, then SIGKILL",
                self.name()
            ),
            format!("# after {} s) and waits until it is gone.", grace.as_secs()),
            format!("PATH={}", util::PATH),
            "export PATH".into(),
            format!("pidfile={}", shell_quote(&self.pidfile.to_string_lossy())),
            "alive() { tr '\\000' '\\n' <\"/proc/$1/cmdline\" 2>/dev/null | grep -q .; }".into(),
            self.running_check(&[
                "kill -TERM \"$pid\"".into(),
                "i=0".into(),
                format!(
                    "while alive \"$pid\" && [ $i -lt {} ]; do sleep 0.1; i=$((i + 1)); done",
                    grace.as_secs() * 10
                ),
                "if alive \"$pid\"; then".into(),
                "    kill -KILL \"$pid\"".into(),
                "    while alive \"$pid\"; do sleep 0.1; done".into(),
                "fi".into(),
            ]),
            "rm -f \"$pidfile\"".into(),
        ];
        lines.join("\n") + "\n"
    }

    /// A shell `if` that runs `body` with `$pid` set when the pid file names our process,
    /// by the test of [`Daemon::state`] (a zombie has an empty command line: not ours).
    fn running_check(&self, body: &[String]) -> String {
        let mut s = format!(
            "if [ -s \"$pidfile\" ]; then\n    pid=$(cat \"$pidfile\")\n    \
             args=$(tr '\\000' '\\n' <\"/proc/$pid/cmdline\" 2>/dev/null || true)\n    \
             if printf '%s\\n' \"$args\" | grep -qF -- {} &&\n        \
             printf '%s\\n' \"$args\" | grep -qF -- {}; then\n",
            shell_quote(self.name()),
            shell_quote(&self.marker)
        );
        for line in body {
            s.push_str("        ");
            s.push_str(line);
            s.push('\n');
        }
        s.push_str("    fi\nfi");
        s
    }

    /// The program's file name, for messages.
    pub fn name(&self) -> &str {
        self.program.rsplit('/').next().unwrap_or(&self.program)
    }

    /// Stops our process if it runs (SIGTERM, then SIGKILL after `grace`) and removes the
    /// pid file. Returns true when a process was stopped.
    pub fn stop(&self, grace: Duration) -> bool {
        let stopped = match self.state() {
            DaemonState::Running(pid) => {
                util::terminate(pid, grace);
                true
            }
            _ => false,
        };
        let _ = fs::remove_file(&self.pidfile);
        stopped
    }
}
