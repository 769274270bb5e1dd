//! Installs the Debian packages the environment needs, only when some are missing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::progress;
use crate::util;

/// The Debian packages the environment uses.
pub const PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "docker-registry",
    "skopeo",
    "protobuf-compiler",
    "busybox-static",
    "iptables",
    "iproute2",
    "apache2-utils",
    "procps",
    "openssl",
    "curl",
    // A private bus for the graceful node shutdown test's fake logind.
    "dbus-daemon",
];

/// Debian's hook that keeps maintainer scripts from starting daemons (docker-registry's
/// init script would otherwise grab port 5000 with its own config).
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Tells whether dpkg reports the package installed.
fn installed(pkg: &str) -> Result<bool> {
    let out = util::output_timeout(
        util::cmd("dpkg-query").args(["-W", "-f=${Status}", pkg]),
        Duration::from_secs(30),
    )
    .context("dpkg-query is needed (the environment expects Debian 12)")?;
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

/// Installs whatever is missing of [`PACKAGES`].
pub fn ensure() -> Result<()> {
    let mut missing = Vec::new();
    for p in PACKAGES {
        if !installed(p)? {
            missing.push(*p);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    progress!("installing Debian packages: {}", missing.join(" "));
    let created_policy = !Path::new(POLICY_RC_D).exists();
    if created_policy {
        fs::write(POLICY_RC_D, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("cannot write {POLICY_RC_D}"))?;
        fs::set_permissions(POLICY_RC_D, fs::Permissions::from_mode(0o755))?;
    }
    let result = apt_install(&missing);
    if created_policy {
        let _ = fs::remove_file(POLICY_RC_D);
    }
    result?;
    for p in &missing {
        if !installed(p)? {
            bail!("package {p} is still not installed after apt-get install");
        }
    }
    Ok(())
}

/// `apt-get update` then `apt-get install` of the given packages.
fn apt_install(pkgs: &[&str]) -> Result<()> {
    let timeout = Duration::from_secs(900);
    let check = |out: std::process::Output, what: &str| -> Result<()> {
        if !out.status.success() {
            bail!(
                "{what} failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                tail_str(&String::from_utf8_lossy(&out.stdout), 20)
            );
        }
        Ok(())
    };
    let out = util::output_timeout(
        util::cmd("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-q", "update"]),
        timeout,
    )?;
    check(out, "apt-get update")?;
    let out = util::output_timeout(
        util::cmd("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "-q",
                "-y",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                "install",
            ])
            .args(pkgs),
        timeout,
    )?;
    check(out, "apt-get install")
}

/// The last `n` lines of a string.
fn tail_str(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
