//! The pause program of the test environment's sandbox image: it becomes PID 1 of a pod
//! sandbox, reaps every child that gets re-parented to it and exits 0 on SIGINT or SIGTERM.
//!
//! Built statically by `cargo xtask env up` (`-C target-feature=+crt-static`).

// Signal masks, sigwait and waitpid exist only as libc calls; this file is the only place
// in xtask that needs `unsafe`.
#![allow(unsafe_code)]

use std::process::ExitCode;

/// Blocks SIGINT, SIGTERM and SIGCHLD and waits for them synchronously.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-v" || a == "--version") {
        println!(
            "pause (kubelet-rs test image) {}",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    // SAFETY: plain calls on a stack-allocated sigset_t that sigemptyset initialises.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            eprintln!("pause: sigprocmask failed");
            return ExitCode::FAILURE;
        }
        set
    };
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        eprintln!("pause: warning: not running as PID 1");
    }
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is an initialised sigset_t and `sig` a valid out pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc != 0 {
            continue;
        }
        match sig {
            libc::SIGINT | libc::SIGTERM => return ExitCode::SUCCESS,
            libc::SIGCHLD => reap(),
            _ => {}
        }
    }
}

/// Reaps every exited child without blocking.
fn reap() {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid with a valid status pointer and WNOHANG.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}
