//! Background daemons started by the environment: a pid file, a log, a detached process.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::util;

/// A daemon we start detached (setsid), with its pid file and log.
pub struct Daemon {
    /// The pid file.
    pub pidfile: PathBuf,
    /// The log file (stdout and stderr).
    pub log: PathBuf,
    /// The program.
    pub program: &'static str,
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
            Some(args)
                if args.iter().any(|a| a.contains(self.program))
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
            .arg(self.program)
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
