//! `cargo xtask env up|down|status`: the test environment (containerd with CRI and CNI,
//! two loopback registries, the test images) and, with `--control-plane`, the control
//! plane of [`crate::control_plane`].

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cni;
use crate::containerd;
use crate::control_plane::ControlPlane;
use crate::daemon::DaemonState;
use crate::images;
use crate::layout::{self, CONTAINERD_SOCKET, Layout};
use crate::packages;
use crate::progress;
use crate::registry::Registry;
use crate::util;

/// The variables that tell tests where the environment is, in the order printed.
pub fn variables(l: &Layout) -> Result<Vec<(String, String)>> {
    let auth = Registry::with_auth(l);
    let vars = [
        (
            "CONTAINER_RUNTIME_ENDPOINT",
            layout::CRI_ENDPOINT.to_string(),
        ),
        (
            "KUBELET_TEST_CONTAINERD_CONFIG",
            l.containerd_config().to_string_lossy().into_owned(),
        ),
        ("KUBELET_TEST_REGISTRY", layout::REGISTRY.to_string()),
        ("KUBELET_TEST_BUSYBOX_IMAGE", layout::busybox_image()),
        ("KUBELET_TEST_PAUSE_IMAGE", layout::pause_image()),
        (
            "KUBELET_TEST_AUTH_REGISTRY",
            layout::AUTH_REGISTRY.to_string(),
        ),
        ("KUBELET_TEST_AUTH_USER", layout::AUTH_USER.to_string()),
        ("KUBELET_TEST_AUTH_PASSWORD", auth.password()?),
        (
            "KUBELET_TEST_RUNTIME_HANDLER",
            layout::TEST_RUNTIME_HANDLER.to_string(),
        ),
        ("KUBELET_ENV_DIR", l.state.to_string_lossy().into_owned()),
    ];
    Ok(vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Quotes a value for a POSIX shell, only when it needs it.
pub fn shell_quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

/// Brings the environment up (idempotent) and returns the variables for the tests.
pub fn up(l: &Layout) -> Result<Vec<(String, String)>> {
    let start = Instant::now();
    progress!("environment state dir: {}", l.state.display());
    packages::ensure()?;
    containerd::preflight(l)?;
    for d in [l.state.clone(), l.logs_dir(), l.run_dir()] {
        util::mkdir(&d)?;
    }
    if cni::write_config(l)? {
        progress!("wrote {}", l.cni_conflist().display());
    }
    cni::ensure_isolation()?;
    Registry::plain(l).ensure(l)?;
    Registry::with_auth(l).ensure(l)?;
    images::ensure(l)?;
    containerd::ensure(l)?;
    check_cri_plugin(l)?;
    progress!("environment up in {:.1}s", start.elapsed().as_secs_f64());
    variables(l)
}

/// [`up`], then, when `control_plane` is set, the control plane; returns the variables of
/// both.
pub fn up_with(l: &Layout, control_plane: bool) -> Result<Vec<(String, String)>> {
    let mut vars = up(l)?;
    if control_plane {
        vars.extend(ControlPlane::new(l)?.up()?);
    }
    Ok(vars)
}

/// Fails when containerd's CRI plugin did not load (a bad config only shows in the log).
fn check_cri_plugin(l: &Layout) -> Result<()> {
    let out = util::output(util::cmd("ctr").args([
        "--address",
        CONTAINERD_SOCKET,
        "--timeout",
        "10s",
        "plugins",
        "ls",
    ]))?;
    let line = out.lines().find(|line| {
        let w: Vec<&str> = line.split_whitespace().collect();
        w.first() == Some(&"io.containerd.grpc.v1") && w.get(1) == Some(&"cri")
    });
    match line {
        Some(line) if line.split_whitespace().last() == Some("ok") => Ok(()),
        _ => bail!(
            "containerd's CRI plugin is not loaded; last lines of {}:\n{}",
            containerd::daemon(l).log.display(),
            util::tail(&containerd::daemon(l).log, 30)
        ),
    }
}

/// Runs ctr against our socket in one namespace.
fn ctr(ns: &str, args: &[&str]) -> Result<String> {
    util::output(
        util::cmd("ctr")
            .args(["--address", CONTAINERD_SOCKET, "--timeout", "30s", "-n", ns])
            .args(args),
    )
}

/// Kills and deletes every task and container containerd knows (all namespaces), so the
/// next `up` starts without stale pods. Images are kept. Returns the number of containers.
fn remove_all_containers() -> Result<usize> {
    let mut n = 0;
    let namespaces = ctr("default", &["namespaces", "ls", "-q"])?;
    for ns in namespaces.lines().map(str::trim).filter(|s| !s.is_empty()) {
        let tasks = ctr(ns, &["tasks", "ls", "-q"])?;
        for id in tasks.lines().map(str::trim).filter(|s| !s.is_empty()) {
            // CRI itself deletes a sandbox's task once the sandbox's pause exits, so the
            // task may be gone by the time we get to it.
            if let Err(e) = ctr(ns, &["tasks", "rm", "-f", id])
                && !format!("{e:#}").contains("not found")
            {
                progress!("warning: {e:#}");
            }
        }
        let containers = ctr(ns, &["containers", "ls", "-q"])?;
        for id in containers.lines().map(str::trim).filter(|s| !s.is_empty()) {
            match ctr(ns, &["containers", "rm", id]) {
                Ok(_) => n += 1,
                Err(e) => progress!("warning: {e:#}"),
            }
        }
    }
    Ok(n)
}

/// Kills and deletes the containers runc still knows under its roots. Returns their ids.
fn remove_runc_containers(l: &Layout) -> Vec<String> {
    let mut ids = Vec::new();
    for root in l.runc_roots() {
        if !root.is_dir() {
            continue;
        }
        let root_s = root.to_string_lossy().into_owned();
        let list = match util::output(util::cmd("runc").args(["--root", &root_s, "list", "-q"])) {
            Ok(l) => l,
            Err(e) => {
                progress!("warning: {e:#}");
                continue;
            }
        };
        for id in list.lines().map(str::trim).filter(|s| !s.is_empty()) {
            let _ = util::output(
                util::cmd("runc").args(["--root", &root_s, "kill", "--all", id, "KILL"]),
            );
            match util::run(util::cmd("runc").args(["--root", &root_s, "delete", "--force", id])) {
                Ok(()) => ids.push(id.to_string()),
                Err(e) => progress!("warning: {e:#}"),
            }
        }
    }
    ids
}

/// The containerd-shim processes serving our socket.
fn our_shims() -> Vec<u32> {
    util::all_pids()
        .into_iter()
        .filter(|pid| {
            let Some(args) = util::cmdline(*pid) else {
                return false;
            };
            args.first().is_some_and(|a| a.contains("containerd-shim"))
                && args
                    .windows(2)
                    .any(|w| w[0] == "-address" && w[1] == CONTAINERD_SOCKET)
        })
        .filter(|pid| util::process_alive(*pid))
        .collect()
}

/// The cgroup directories pods leave behind: containerd's CRI puts pods without a cgroup
/// parent under `k8s.io`, the kubelet puts its pods under `kubepods` (as upstream with
/// the cgroupfs driver), in every v1 controller or at the v2 root.
fn k8s_cgroup_roots() -> Vec<PathBuf> {
    const NAMES: [&str; 2] = ["k8s.io", "kubepods"];
    let base = Path::new("/sys/fs/cgroup");
    let mut roots = Vec::new();
    for name in NAMES {
        if base.join(name).is_dir() {
            roots.push(base.join(name));
        }
    }
    if let Ok(rd) = fs::read_dir(base) {
        for e in rd.flatten() {
            for name in NAMES {
                let p = e.path().join(name);
                if p.is_dir() {
                    roots.push(p);
                }
            }
        }
    }
    roots.sort();
    roots.dedup();
    roots
}

/// All directories below (and including) `root`, deepest first.
fn dirs_deepest_first(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out.push(d);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Kills what is left in containerd's cgroups and removes the directories. Returns the
/// number of directories removed.
fn remove_cgroups() -> usize {
    let mut removed = 0;
    for root in k8s_cgroup_roots() {
        for d in dirs_deepest_first(&root) {
            if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|p| p.trim().parse::<u32>().ok()) {
                    progress!("killing leftover process {pid} in {}", d.display());
                    util::signal(pid, "KILL");
                }
            }
        }
        for d in dirs_deepest_first(&root) {
            // A cgroup directory can be removed once it has no processes and no children;
            // retry briefly while killed processes exit.
            let ok = util::wait_until(Duration::from_secs(3), || {
                fs::remove_dir(&d).is_ok() || !d.exists()
            });
            if ok {
                removed += 1;
            } else {
                progress!("warning: cannot remove cgroup {}", d.display());
            }
        }
    }
    removed
}

/// Tells whether `p` is `base` or below it.
fn under(p: &Path, base: &Path) -> bool {
    p.starts_with(base)
}

/// Unmounts everything under the state dir (and, unless another containerd runs, CRI's
/// netns mounts and containerd's default state), deepest first. Returns the count.
fn unmount_all(l: &Layout, include_runtime: bool) -> usize {
    let mut count = 0;
    for _pass in 0..5 {
        let mut targets: Vec<PathBuf> = util::mount_points()
            .into_iter()
            .filter(|m| {
                under(m, &l.state)
                    || (include_runtime
                        && (under(m, Path::new("/run/containerd"))
                            || (m.parent() == Some(Path::new(layout::NETNS_DIR))
                                && m.file_name()
                                    .is_some_and(|n| n.to_string_lossy().starts_with("cni-")))))
            })
            .collect();
        if targets.is_empty() {
            break;
        }
        targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        targets.dedup();
        for t in targets {
            if util::succeeds(util::cmd("umount").arg(&t), Duration::from_secs(10))
                || util::succeeds(
                    util::cmd("umount").arg("-l").arg(&t),
                    Duration::from_secs(10),
                )
            {
                count += 1;
            } else {
                progress!("warning: cannot unmount {}", t.display());
            }
        }
    }
    count
}

/// Removes CRI's per-sandbox and per-container directories (after all containers are
/// gone from containerd's metadata).
fn remove_cri_dirs(l: &Layout) {
    for base in [l.containerd_root(), l.containerd_state()] {
        for sub in ["sandboxes", "containers"] {
            let d = base.join("io.containerd.grpc.v1.cri").join(sub);
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// Stops everything `up` started and removes what the pods left behind. Safe to run when
/// nothing runs. Keeps the state dir (image cache).
pub fn down(l: &Layout) -> Result<()> {
    let start = Instant::now();
    ControlPlane::new(l)?.down()?;
    let cd = containerd::daemon(l);
    let mut containers_removed = false;
    match cd.state() {
        DaemonState::Running(pid) => {
            if containerd::answers() {
                match remove_all_containers() {
                    Ok(n) => {
                        containers_removed = true;
                        if n > 0 {
                            progress!("removed {n} containers/sandboxes from containerd");
                        }
                    }
                    Err(e) => progress!("warning: cannot list containers: {e:#}"),
                }
            }
            progress!("stopping containerd (pid {pid})");
            cd.stop(Duration::from_secs(15));
        }
        state => {
            let _ = fs::remove_file(&cd.pidfile);
            if state != DaemonState::NoPidfile {
                progress!("containerd: {state}");
            }
        }
    }
    let foreign = Path::new(CONTAINERD_SOCKET).exists() && containerd::answers();
    if foreign {
        progress!(
            "warning: another containerd (not ours) serves {CONTAINERD_SOCKET}: leaving its \
             shims, network namespaces, CNI interfaces and iptables chains alone"
        );
    } else {
        let ids = remove_runc_containers(l);
        if !ids.is_empty() {
            progress!("runc: killed and deleted {} containers", ids.len());
        }
        let shims = our_shims();
        for pid in &shims {
            util::signal(*pid, "KILL");
        }
        if !shims.is_empty() {
            util::wait_until(Duration::from_secs(5), || {
                shims.iter().all(|p| !util::process_alive(*p))
            });
            progress!("killed {} containerd shims", shims.len());
        }
        // Stale sockets of killed shims, and of containerd when it was killed.
        if let Ok(rd) = fs::read_dir("/run/containerd/s") {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        for sock in [
            CONTAINERD_SOCKET.to_string(),
            format!("{CONTAINERD_SOCKET}.ttrpc"),
        ] {
            let _ = fs::remove_file(sock);
        }
    }
    if !foreign && !containers_removed {
        match purge_with_temporary_containerd(l) {
            Ok(true) => containers_removed = true,
            Ok(false) => {}
            Err(e) => progress!("warning: {e:#}"),
        }
    }
    if containers_removed {
        let _ = fs::write(clean_marker(l), "");
    }
    let n = remove_cgroups_if(!foreign);
    if n > 0 {
        progress!("removed {n} cgroup directories under */k8s.io and */kubepods");
    }
    let n = unmount_all(l, !foreign);
    if n > 0 {
        progress!("unmounted {n} mounts");
    }
    if !foreign {
        let n = cni::remove_netns();
        if n > 0 {
            progress!("deleted {n} network namespaces");
        }
        let links = cni::remove_links();
        if !links.is_empty() {
            progress!("deleted interfaces: {}", links.join(" "));
        }
        let n = cni::remove_cni_chains();
        if n > 0 {
            progress!("deleted {n} CNI iptables chains");
        }
        cni::clear_ipam(l)?;
        if containers_removed {
            remove_cri_dirs(l);
        }
    }
    if cni::remove_isolation() > 0 {
        progress!("removed the FORWARD isolation rules");
    }
    for reg in [Registry::plain(l), Registry::with_auth(l)] {
        let d = reg.daemon(l);
        if let DaemonState::Running(pid) = d.state() {
            progress!("stopping {} (pid {pid})", reg.name);
        }
        d.stop(Duration::from_secs(10));
    }
    progress!(
        "environment down in {:.1}s (state kept in {})",
        start.elapsed().as_secs_f64(),
        l.state.display()
    );
    Ok(())
}

/// The file that says containerd's metadata holds no container (written by `down`,
/// removed when `up` starts containerd).
pub fn clean_marker(l: &Layout) -> PathBuf {
    l.run_dir().join("no-containers")
}

/// When containerd was not running (killed, crashed), its metadata still lists the dead
/// pods, which CRI would report as NotReady after the next `up`. Starts containerd
/// briefly (its shims are gone by now) to delete them. Returns true when it did.
fn purge_with_temporary_containerd(l: &Layout) -> Result<bool> {
    if clean_marker(l).exists() || !l.containerd_config().exists() {
        return Ok(false);
    }
    let d = containerd::daemon(l);
    progress!("starting containerd briefly to delete the containers it still lists");
    let pid = d.start()?;
    let up = util::wait_until(Duration::from_secs(20), || {
        containerd::answers() || !util::process_alive(pid)
    });
    let result = if up && util::process_alive(pid) {
        remove_all_containers()
    } else {
        Err(anyhow::anyhow!(
            "containerd did not come up; last lines of {}:\n{}",
            d.log.display(),
            util::tail(&d.log, 20)
        ))
    };
    d.stop(Duration::from_secs(15));
    let n = result?;
    if n > 0 {
        progress!("removed {n} containers/sandboxes from containerd");
    }
    // The brief run may have left mounts or sockets; the steps after this clean them.
    Ok(true)
}

/// [`remove_cgroups`] unless another containerd runs.
fn remove_cgroups_if(yes: bool) -> usize {
    if yes { remove_cgroups() } else { 0 }
}

/// Prints one line per component; returns true when everything runs.
pub fn status(l: &Layout) -> Result<bool> {
    let mut all_ok = true;
    let mut line = |name: &str, ok: bool, detail: String| {
        all_ok &= ok;
        let word = match (name, ok) {
            ("images" | "cni config", true) => "present",
            ("images", false) => "missing",
            ("cni config", false) => "not ready",
            (_, true) => "running",
            (_, false) => "not running",
        };
        println!("{:<25} {word} ({detail})", format!("{name}:"));
    };

    let cd = containerd::daemon(l);
    match cd.state() {
        DaemonState::Running(pid) => match containerd::server_version() {
            Some(v) => line(
                "containerd",
                true,
                format!("pid {pid}, {CONTAINERD_SOCKET} answers, containerd {v}"),
            ),
            None => line(
                "containerd",
                false,
                format!("pid {pid} runs but {CONTAINERD_SOCKET} does not answer"),
            ),
        },
        state => {
            let extra = if containerd::answers() {
                format!("; another containerd answers on {CONTAINERD_SOCKET}")
            } else {
                String::new()
            };
            line("containerd", false, format!("{state}{extra}"));
        }
    }

    for reg in [Registry::plain(l), Registry::with_auth(l)] {
        let d = reg.daemon(l);
        match d.state() {
            DaemonState::Running(pid) => match reg.check() {
                Ok(()) => line(
                    reg.name,
                    true,
                    format!(
                        "pid {pid}, http://{}/v2/ answers{}",
                        reg.addr,
                        if reg.auth {
                            " 401 without and 200 with credentials"
                        } else {
                            ""
                        }
                    ),
                ),
                Err(e) => line(reg.name, false, format!("pid {pid} runs but {e:#}")),
            },
            state => line(reg.name, false, state.to_string()),
        }
    }

    let conf = l.cni_conflist();
    let conf_ok = match (fs::read_to_string(&conf), cni::conflist(l)) {
        (Ok(have), Ok(want)) if have == want => true,
        (Ok(_), _) => {
            line(
                "cni config",
                false,
                format!("{} differs from what up writes", conf.display()),
            );
            false
        }
        (Err(_), _) => {
            line(
                "cni config",
                false,
                format!("{} is missing", conf.display()),
            );
            false
        }
    };
    if conf_ok {
        if cni::isolation_present() {
            line(
                "cni config",
                true,
                format!("{}, FORWARD isolation rules present", conf.display()),
            );
        } else {
            line(
                "cni config",
                false,
                format!(
                    "{} present but the FORWARD isolation rules are missing",
                    conf.display()
                ),
            );
        }
    }

    let mut present = Vec::new();
    let mut missing = Vec::new();
    let mut unreachable: Vec<&str> = Vec::new();
    for (reg, repo, tag) in images::expected(l) {
        let name = format!("{}/{repo}:{tag}", reg.host);
        if unreachable.contains(&reg.host) {
            continue;
        }
        if reg.ping(false).is_err() {
            unreachable.push(reg.host);
            missing.push(format!("cannot check {}: it does not answer", reg.host));
            continue;
        }
        match reg.manifest_digest(repo, &tag) {
            Ok(Some(_)) => present.push(name),
            Ok(None) => missing.push(format!("{name} missing")),
            Err(e) => missing.push(format!("{name}: {e:#}")),
        }
    }
    if missing.is_empty() {
        line("images", true, present.join(", "));
    } else {
        line("images", false, missing.join("; "));
    }
    ControlPlane::new(l)?.status(&mut line);
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("unix:///run/x.sock"), "unix:///run/x.sock");
        assert_eq!(shell_quote("/a b"), "'/a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
