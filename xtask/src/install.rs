//! `install`: the kubelet as a node service, laid out as upstream's packages and kubeadm
//! lay it out: the binary in `/usr/bin/kubelet`, the unit in
//! `/lib/systemd/system/kubelet.service`, its flags in the drop-in
//! `/etc/systemd/system/kubelet.service.d/10-kubelet.conf` (kubeconfigs under
//! `/etc/kubernetes`, the configuration file `/var/lib/kubelet/config.yaml`, extra flags
//! in `/etc/default/kubelet`), static pods in `/etc/kubernetes/manifests`.
//!
//! Files an operator owns (the configuration, `/etc/default/kubelet`) are written only
//! when absent; the binary, the unit and the drop-in are replaced.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::progress;
use crate::util;

const UNIT: &str = include_str!("../../dist/systemd/kubelet.service");
const DROP_IN: &str = include_str!("../../dist/systemd/10-kubelet.conf");
const CONFIG: &str = include_str!("../../dist/config.yaml");
const DEFAULTS: &str = include_str!("../../dist/default-kubelet");

/// Whether an installed file is replaced or kept when present.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Existing {
    Replace,
    Keep,
}

/// One file of the installation.
struct Item {
    path: &'static str,
    mode: u32,
    existing: Existing,
    content: &'static str,
}

const FILES: [Item; 4] = [
    Item {
        path: "lib/systemd/system/kubelet.service",
        mode: 0o644,
        existing: Existing::Replace,
        content: UNIT,
    },
    Item {
        path: "etc/systemd/system/kubelet.service.d/10-kubelet.conf",
        mode: 0o644,
        existing: Existing::Replace,
        content: DROP_IN,
    },
    Item {
        path: "var/lib/kubelet/config.yaml",
        mode: 0o644,
        existing: Existing::Keep,
        content: CONFIG,
    },
    Item {
        path: "etc/default/kubelet",
        mode: 0o644,
        existing: Existing::Keep,
        content: DEFAULTS,
    },
];

/// Directories the kubelet expects, with their modes.
const DIRECTORIES: [(&str, u32); 5] = [
    ("etc/kubernetes/manifests", 0o755),
    ("etc/kubernetes/pki", 0o755),
    ("var/lib/kubelet", 0o700),
    ("var/lib/kubelet/pki", 0o700),
    ("var/log/pods", 0o755),
];

/// Installs `binary` and the service files under `destdir` (`/` for this machine);
/// returns what it wrote or kept, one line each.
pub fn install(binary: &Path, destdir: &Path) -> Result<Vec<String>> {
    let mut report = Vec::new();
    for (dir, mode) in DIRECTORIES {
        let path = destdir.join(dir);
        util::mkdir(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    let bin = destdir.join("usr/bin/kubelet");
    util::mkdir(bin.parent().unwrap_or(destdir))?;
    // Through a temporary name: a running kubelet keeps its old binary.
    let partial = bin.with_extension("partial");
    fs::copy(binary, &partial)
        .with_context(|| format!("cannot copy {} to {}", binary.display(), partial.display()))?;
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))?;
    fs::rename(&partial, &bin).with_context(|| format!("cannot install {}", bin.display()))?;
    report.push(format!("installed {}", bin.display()));
    for item in FILES {
        let path = destdir.join(item.path);
        if item.existing == Existing::Keep && path.exists() {
            report.push(format!("kept {} (already there)", path.display()));
            continue;
        }
        util::mkdir(path.parent().unwrap_or(destdir))?;
        fs::write(&path, item.content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(item.mode))?;
        report.push(format!("installed {}", path.display()));
    }
    Ok(report)
}

/// `cargo xtask install [--destdir DIR] [--binary FILE]`: builds the release binary
/// unless given one, installs, and on this machine reloads systemd when it runs.
pub fn run(workspace: &Path, args: &[String]) -> Result<()> {
    let mut destdir = PathBuf::from("/");
    let mut binary: Option<PathBuf> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--destdir" => destdir = rest.next().context("--destdir needs a directory")?.into(),
            "--binary" => binary = Some(rest.next().context("--binary needs a file")?.into()),
            other => anyhow::bail!("unknown flag {other:?} (--destdir DIR, --binary FILE)"),
        }
    }
    let binary = match binary {
        Some(binary) => binary,
        None => {
            progress!("building the kubelet (release)");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            util::run(util::cmd(&cargo).current_dir(workspace).args([
                "build",
                "--release",
                "--package",
                "kubelet-bin",
                "--bin",
                "kubelet",
            ]))?;
            workspace.join("target/release/kubelet")
        }
    };
    for line in install(&binary, &destdir)? {
        progress!("{line}");
    }
    if destdir == Path::new("/") && Path::new("/run/systemd/system").is_dir() {
        util::run(util::cmd("systemctl").arg("daemon-reload"))?;
        progress!("systemd reloaded: `systemctl enable --now kubelet` starts the kubelet");
    } else {
        progress!(
            "on a node with systemd: `systemctl daemon-reload && systemctl enable --now kubelet`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    #[test]
    fn installs_the_upstream_layout_and_keeps_the_operators_files() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let binary = dir.path().join("kubelet-build");
        fs::write(&binary, "#!/bin/sh\n")?;
        let root = dir.path().join("root");
        install(&binary, &root)?;
        assert_eq!(mode(&root.join("usr/bin/kubelet")), 0o755);
        assert_eq!(
            fs::read_to_string(root.join("lib/systemd/system/kubelet.service"))?,
            UNIT
        );
        let drop_in =
            fs::read_to_string(root.join("etc/systemd/system/kubelet.service.d/10-kubelet.conf"))?;
        assert!(
            drop_in.contains("--config=/var/lib/kubelet/config.yaml"),
            "{drop_in}"
        );
        assert!(root.join("etc/kubernetes/manifests").is_dir());
        assert_eq!(mode(&root.join("var/lib/kubelet")), 0o700);

        // An operator's configuration survives a reinstall; the unit is replaced.
        fs::write(root.join("var/lib/kubelet/config.yaml"), "maxPods: 50\n")?;
        fs::write(root.join("lib/systemd/system/kubelet.service"), "old")?;
        let report = install(&binary, &root)?;
        assert_eq!(
            fs::read_to_string(root.join("var/lib/kubelet/config.yaml"))?,
            "maxPods: 50\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("lib/systemd/system/kubelet.service"))?,
            UNIT
        );
        assert!(report.iter().any(|l| l.starts_with("kept ")), "{report:?}");
        Ok(())
    }

    #[test]
    fn the_unit_passes_systemds_own_check() -> Result<()> {
        if !Path::new("/usr/bin/systemd-analyze").is_file() {
            kubelet_test_support::skip(
                "the_unit_passes_systemds_own_check",
                "systemd-analyze is not installed",
            );
            return Ok(());
        }
        let dir = tempfile::tempdir()?;
        let unit = dir.path().join("kubelet.service");
        // The ExecStart binary must exist for verify: point it at one that does.
        fs::write(&unit, UNIT.replace("/usr/bin/kubelet", "/bin/true"))?;
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let problems: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("kubelet.service"))
            .collect();
        assert!(problems.is_empty(), "{stderr}");
        Ok(())
    }
}
