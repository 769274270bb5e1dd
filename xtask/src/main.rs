//! Development tasks of the kubelet-rs workspace, run as `cargo xtask <task>`:
//!
//! - `env up [--control-plane]`: installs what is missing (Debian packages), starts
//!   containerd with CRI and CNI, two loopback image registries (one with basic auth) and
//!   pushes the test images; with `--control-plane` also etcd, kube-apiserver (on the CNI
//!   bridge, https://10.88.0.1:6443), kube-controller-manager and kube-scheduler, built
//!   once from upstream's Go modules. Prints `export` lines for the tests as its last
//!   lines.
//! - `env down [--control-plane]`: stops all of it (or only the control plane) and removes
//!   what pods left behind; keeps the image cache, the control plane's certificates and
//!   its binaries.
//! - `env status`: one line per component; exit code 1 unless all run (the control plane
//!   counts only when it was started).
//! - `run [-- FLAGS]`: `env up`, then the kubelet on its embedded default.
//! - `install [--destdir DIR] [--binary FILE]`: the kubelet as a systemd service, laid
//!   out as upstream's packages (see [`install`]).
//! - `bench`: the benchmarks (relist, pod status, the stats endpoints and the eviction
//!   manager's rounds at 110 pods).
//! - `test [ARGS]`: `env up --control-plane`, then fmt, clippy and the workspace tests
//!   against it, the docs, and `package`.
//! - `package`: every library packaged as crates.io would receive it, each package then
//!   checked alone (see [`test_cmd::package`]).
//!
//! All state lives under `$KUBELET_ENV_DIR` (default `<workspace>/target/env`).

mod cni;
mod containerd;
mod control_plane;
mod daemon;
mod env;
mod fuzz;
mod gobuild;
mod images;
mod install;
mod layout;
mod packages;
mod pki;
mod registry;
mod test_cmd;
mod util;

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::layout::Layout;

/// The usage text.
const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  env up [--control-plane]
               start the test environment (idempotent); prints export lines last;
               --control-plane adds etcd, kube-apiserver (https://10.88.0.1:6443),
               kube-controller-manager and kube-scheduler (built from Go modules once,
               about 7 minutes, cached in target/k8s-bin)
  env down [--control-plane]
               stop it and clean up processes, mounts, interfaces, iptables, cgroups;
               --control-plane stops only the control plane (and drops its etcd data)
  env status   one line per component; exit code 1 unless everything runs
  run [-- FLAGS]
               env up, then the kubelet in standalone mode on this machine's
               containerd with the sample manifests of examples/static-pods;
               FLAGS go to the kubelet
  install [--destdir DIR] [--binary FILE]
               build the release kubelet and install it as a node service:
               /usr/bin/kubelet, the systemd unit and its drop-in, /etc/default/kubelet,
               /var/lib/kubelet/config.yaml (kept when present), /etc/kubernetes/manifests
  bench        benchmarks: relist, pod status, /stats/summary, /metrics/resource and
               the eviction manager's rounds at 110 pods (release build)
  bench --node env up --control-plane, then the whole node beside the upstream kubelet
               v1.37.2 (kubelet-bin/tests/node_bench.rs, release build): pod start-up,
               a 100-pod burst, RSS and CPU, restart, binary size; one table
  soak         env up --control-plane, then the soak runs (kubelet-bin/tests/soak.rs):
               the kubelet SIGKILLed 20 times while 30 pods start, stop and probe
  fuzz [--runs N] [TARGET...]
               libFuzzer over the parsers of outside input (static pod manifests,
               KubeletConfiguration and drop-ins, kubelet API paths and queries, CRI
               log lines), N inputs each (default 1000000) from fuzz/corpus; needs the
               nightly toolchain
  test [-- ARGS]
               env up --control-plane, then cargo fmt --check, clippy -D warnings,
               cargo test (ARGS go to both `cargo test` runs), the docs, then package
  package      every library packaged as crates.io would receive it, then each
               package checked alone against the others' packages

environment:
  KUBELET_ENV_DIR   state directory (default <workspace>/target/env)";

/// Parses the arguments and runs the task.
fn run(args: &[String]) -> Result<ExitCode> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["env", "up", flags @ ..] => {
            let control_plane = match flags {
                [] => false,
                ["--control-plane"] => true,
                _ => bail!("unknown flags `{}`\n\n{USAGE}", flags.join(" ")),
            };
            let l = Layout::from_env()?;
            let vars = env::up_with(&l, control_plane)?;
            for (k, v) in vars {
                println!("export {k}={}", env::shell_quote(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        ["env", "down"] => {
            env::down(&Layout::from_env()?)?;
            Ok(ExitCode::SUCCESS)
        }
        ["env", "down", "--control-plane"] => {
            control_plane::ControlPlane::new(&Layout::from_env()?)?.down()?;
            Ok(ExitCode::SUCCESS)
        }
        ["env", "status"] => {
            if env::status(&Layout::from_env()?)? {
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
        ["run", rest @ ..] => {
            let rest = match rest.first() {
                Some(&"--") => &args[2..],
                _ => &args[1..],
            };
            run_kubelet(&Layout::from_env()?, rest)
        }
        ["install", ..] => {
            install::run(&Layout::from_env()?.workspace, &args[1..])?;
            Ok(ExitCode::SUCCESS)
        }
        ["bench"] => {
            let l = Layout::from_env()?;
            for (package, example) in [
                ("kubelet-pod-manager", "bench_relist"),
                ("kubelet-stats", "bench_summary"),
                ("kubelet-eviction", "bench_housekeeping"),
            ] {
                let args = [
                    "run",
                    "--release",
                    "--quiet",
                    "--package",
                    package,
                    "--example",
                    example,
                ];
                if !cargo_succeeds(&l, &args)? {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ["bench", "--node"] => {
            test_cmd::node_bench(&Layout::from_env()?)?;
            Ok(ExitCode::SUCCESS)
        }
        ["soak"] => {
            test_cmd::soak(&Layout::from_env()?)?;
            Ok(ExitCode::SUCCESS)
        }
        ["package"] => {
            test_cmd::package(&Layout::from_env()?)?;
            Ok(ExitCode::SUCCESS)
        }
        ["fuzz", ..] => {
            fuzz::run(&Layout::from_env()?, &args[1..])?;
            Ok(ExitCode::SUCCESS)
        }
        ["test", rest @ ..] => {
            let rest = match rest.first() {
                Some(&"--") => &args[2..],
                _ => &args[1..],
            };
            test_cmd::run(&Layout::from_env()?, rest)?;
            Ok(ExitCode::SUCCESS)
        }
        [] | ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!("unknown task `{}`\n\n{USAGE}", args.join(" ")),
    }
}

/// `cargo xtask run`: the environment, then the kubelet in standalone mode on the sample
/// manifests, plus `flags`.
fn run_kubelet(l: &Layout, flags: &[String]) -> Result<ExitCode> {
    env::up(l)?;
    let manifests = l.workspace.join("examples/static-pods");
    let mut args = vec![
        "run".to_owned(),
        "--quiet".to_owned(),
        "--package".to_owned(),
        "kubelet-bin".to_owned(),
        "--bin".to_owned(),
        "kubelet".to_owned(),
        "--".to_owned(),
        "--pod-manifest-path".to_owned(),
        manifests.display().to_string(),
        // The unauthenticated read-only endpoints are off unless asked for; the README's
        // `curl http://127.0.0.1:10255/pods` looks at a standalone kubelet through them.
        "--read-only-port".to_owned(),
        "10255".to_owned(),
    ];
    if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        // Like upstream, the kubelet refuses a cgroup v1 host unless told otherwise.
        args.push("--fail-cgroupv1=false".to_owned());
    }
    args.extend(flags.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cargo(l, &args)
}

/// Runs cargo with `args` in the workspace; its exit status becomes ours.
fn cargo(l: &Layout, args: &[&str]) -> Result<ExitCode> {
    Ok(if cargo_succeeds(l, args)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cargo_succeeds(l: &Layout, args: &[&str]) -> Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = std::process::Command::new(&cargo)
        .current_dir(&l.workspace)
        .args(args)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {cargo}: {e}"))?;
    Ok(status.success())
}

/// Entry point.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
