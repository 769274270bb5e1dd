//! containerd: its config, starting it detached, and checking that it answers.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::daemon::{Daemon, DaemonState};
use crate::layout::{self, CONTAINERD_SOCKET, Layout};
use crate::progress;
use crate::util;

/// containerd as a [`Daemon`].
pub fn daemon(l: &Layout) -> Daemon {
    Daemon {
        pidfile: l.run_dir().join("containerd.pid"),
        log: l.logs_dir().join("containerd.log"),
        program: "containerd".into(),
        args: vec![
            "--config".into(),
            l.containerd_config().to_string_lossy().into_owned(),
        ],
        marker: l.containerd_config().to_string_lossy().into_owned(),
    }
}

/// Quotes a string for TOML.
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The containerd config (version 2).
pub fn config(l: &Layout) -> String {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        r#"# Written by `cargo xtask env up`; changes are overwritten.
version = 2
root = {root}
state = {state}
oom_score = 0

[grpc]
  address = {socket}

[debug]
  level = "info"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}

  [{cri}]
    sandbox_image = {sandbox}
    # This VM lacks CAP_SYS_RESOURCE: without it every sandbox fails in runc.
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false

    [{cri}.containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [{cri}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [{cri}.containerd.runtimes.runc.options]
          # The shim appends the namespace: runc's root is <Root>/k8s.io.
          Root = {runc_root}
          SystemdCgroup = false

      # A second handler, runc underneath, that RuntimeClass tests select by name.
      [{cri}.containerd.runtimes.{test_handler}]
        runtime_type = "io.containerd.runc.v2"

        [{cri}.containerd.runtimes.{test_handler}.options]
          Root = {runc_root}
          SystemdCgroup = false

    [{cri}.cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = {cni_conf}
      max_conf_num = 1

    # localhost registries are reached over plain HTTP by default; the auth registry
    # ({auth}) takes HTTP basic auth from the CRI AuthConfig.
"#,
        root = toml_str(&l.containerd_root().to_string_lossy()),
        state = toml_str(&l.containerd_state().to_string_lossy()),
        socket = toml_str(CONTAINERD_SOCKET),
        opt = toml_str(&l.containerd_opt().to_string_lossy()),
        sandbox = toml_str(&layout::pause_image()),
        runc_root = toml_str(&l.runc_root_base().to_string_lossy()),
        cni_conf = toml_str(&l.cni_conf_dir().to_string_lossy()),
        auth = layout::AUTH_REGISTRY,
        test_handler = layout::TEST_RUNTIME_HANDLER,
    )
}

/// Tells whether something answers on containerd's socket. A plain connect first: ctr
/// keeps retrying until its timeout when nothing listens.
pub fn answers() -> bool {
    if std::os::unix::net::UnixStream::connect(CONTAINERD_SOCKET).is_err() {
        return false;
    }
    util::succeeds(
        util::cmd("ctr").args(["--address", CONTAINERD_SOCKET, "--timeout", "3s", "version"]),
        Duration::from_secs(5),
    )
}

/// containerd's server version, if it answers.
pub fn server_version() -> Option<String> {
    std::os::unix::net::UnixStream::connect(CONTAINERD_SOCKET).ok()?;
    let out = util::output_timeout(
        util::cmd("ctr").args(["--address", CONTAINERD_SOCKET, "--timeout", "3s", "version"]),
        Duration::from_secs(5),
    )
    .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The "Server:" section comes second; its Version line is the last one.
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Version:"))
        .next_back()
        .map(|v| v.trim().to_string())
}

/// Fails when another containerd (not started by xtask) serves the socket.
pub fn preflight(l: &Layout) -> Result<()> {
    let d = daemon(l);
    if !matches!(d.state(), DaemonState::Running(_)) && answers() {
        bail!(
            "something else already serves {CONTAINERD_SOCKET}: not the containerd started by \
             xtask (no matching pid file {}). Find it with `ss -xlp | grep containerd.sock`, \
             stop it, then run `cargo xtask env up` again",
            d.pidfile.display()
        );
    }
    Ok(())
}

/// Writes the config and makes sure our containerd runs with it. Restarts containerd when
/// the config changed.
pub fn ensure(l: &Layout) -> Result<()> {
    for d in [
        l.containerd_root(),
        l.containerd_state(),
        l.containerd_opt(),
        l.runc_root_base(),
    ] {
        util::mkdir(&d)?;
    }
    let changed = util::write_if_changed(&l.containerd_config(), config(l).as_bytes())?;
    let d = daemon(l);
    match d.state() {
        DaemonState::Running(pid) => {
            if changed {
                progress!("containerd config changed: restarting containerd (pid {pid})");
                d.stop(Duration::from_secs(15));
            } else if answers() {
                progress!("containerd already running (pid {pid})");
                return Ok(());
            } else {
                // Still starting, or stuck: give it a moment before restarting it.
                if util::wait_until(Duration::from_secs(10), answers) {
                    progress!("containerd already running (pid {pid})");
                    return Ok(());
                }
                progress!("containerd (pid {pid}) does not answer: restarting it");
                d.stop(Duration::from_secs(10));
            }
        }
        DaemonState::NotOurs(_) | DaemonState::Dead(_) | DaemonState::NoPidfile => {}
    }
    preflight(l)?;
    progress!("starting containerd (log: {})", d.log.display());
    let _ = std::fs::remove_file(crate::env::clean_marker(l));
    let pid = d.start()?;
    let up = util::wait_until(Duration::from_secs(20), || {
        answers() || !util::process_alive(pid)
    });
    if !up || !util::process_alive(pid) {
        let log_tail = util::tail(&d.log, 30);
        d.stop(Duration::from_secs(5));
        bail!(
            "containerd did not come up within 20 s on {CONTAINERD_SOCKET}; last lines of {}:\n{log_tail}",
            d.log.display()
        );
    }
    progress!("containerd is up (pid {pid})");
    Ok(())
}
