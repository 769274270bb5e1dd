//! `cargo xtask test`: brings the environment and the control plane up, then runs the workspace's checks and
//! tests against it.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::env;
use crate::layout::Layout;
use crate::progress;

/// One step: a name, the cargo arguments and extra environment.
struct Step {
    /// Shown in progress lines.
    name: &'static str,
    /// Arguments to cargo.
    args: Vec<String>,
    /// Variables set for this step only.
    env: Vec<(&'static str, &'static str)>,
}

/// Runs `env up --control-plane` in-process, then fmt, clippy, the tests, the docs and the
/// packages with the environment's variables and `KUBELET_TEST_REQUIRE_ENV=1`. `extra` goes to both `cargo test` runs.
pub fn run(l: &Layout, extra: &[String]) -> Result<()> {
    let vars = env::up_with(l, true).context("env up --control-plane failed")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let strs = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut test_all = strs(&["test", "--workspace", "--all-targets"]);
    test_all.extend(extra.iter().cloned());
    let mut test_doc = strs(&["test", "--workspace", "--doc"]);
    test_doc.extend(extra.iter().cloned());
    let steps = [
        Step {
            name: "fmt",
            args: strs(&["fmt", "--all", "--check"]),
            env: Vec::new(),
        },
        Step {
            name: "clippy",
            args: strs(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            env: Vec::new(),
        },
        // The soak and node bench targets are left out of `--all-targets` (`test =
        // false`); lint them too.
        Step {
            name: "clippy-soak",
            args: strs(&[
                "clippy",
                "-p",
                "kubelet-bin",
                "--test",
                "soak",
                "--test",
                "node_bench",
                "--",
                "-D",
                "warnings",
            ]),
            env: Vec::new(),
        },
        Step {
            name: "test",
            args: test_all,
            env: Vec::new(),
        },
        Step {
            name: "doctest",
            args: test_doc,
            env: Vec::new(),
        },
        // What docs.rs builds: every library's documentation, broken links and bad HTML
        // refused (docs.rs builds none for the binary-only kubelet-bin, whose doc
        // comments are its --help text).
        Step {
            name: "doc",
            args: strs(&[
                "doc",
                "--workspace",
                "--no-deps",
                "--exclude",
                "xtask",
                "--exclude",
                "kubelet-bin",
            ]),
            env: vec![("RUSTDOCFLAGS", "-D warnings")],
        },
    ];
    let mut failed = Vec::new();
    for step in &steps {
        progress!("==> cargo {}", step.args.join(" "));
        let started = Instant::now();
        let status = Command::new(&cargo)
            .current_dir(&l.workspace)
            .args(&step.args)
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("KUBELET_TEST_REQUIRE_ENV", "1")
            .envs(step.env.iter().copied())
            .status()
            .with_context(|| format!("cannot run {cargo}"))?;
        let secs = started.elapsed().as_secs_f64();
        if status.success() {
            progress!("<== {} ok ({secs:.1}s)", step.name);
        } else {
            progress!("<== {} FAILED ({status}, {secs:.1}s)", step.name);
            failed.push(step.name);
        }
    }
    progress!("==> packages");
    let started = Instant::now();
    let packaged = package(l);
    let secs = started.elapsed().as_secs_f64();
    match packaged {
        Ok(()) => progress!("<== package ok ({secs:.1}s)"),
        Err(e) => {
            progress!("<== package FAILED ({e:#}, {secs:.1}s)");
            failed.push("package");
        }
    }
    progress!("the environment is left up; tear it down with `cargo xtask env down`");
    if failed.is_empty() {
        progress!("all steps passed");
        Ok(())
    } else {
        bail!("failed steps: {}", failed.join(", "))
    }
}

/// `cargo xtask soak`: the environment with the control plane, then the soak runs of
/// kubelet-bin's `tests/soak.rs` (a `test = false` target the default test run leaves
/// out), one at a time, their figures printed.
pub fn soak(l: &Layout) -> Result<()> {
    run_environment_target(l, "soak", &[]).context("soak runs failed")
}

/// `cargo xtask bench --node`: the environment with the control plane (which builds the
/// upstream kubelet), then kubelet-bin's `tests/node_bench.rs` in a release build: the
/// same measurements on this kubelet and the upstream one, one table.
pub fn node_bench(l: &Layout) -> Result<()> {
    run_environment_target(l, "node_bench", &["--release"]).context("the node benchmark failed")
}

/// `env up --control-plane`, then kubelet-bin's test target `target` (one left out of
/// the default run) with `cargo_args`, one test at a time, output shown, the environment
/// required.
fn run_environment_target(l: &Layout, target: &str, cargo_args: &[&str]) -> Result<()> {
    let vars = env::up_with(l, true).context("env up --control-plane failed")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(&cargo)
        .current_dir(&l.workspace)
        .arg("test")
        .args(cargo_args)
        .args(["-p", "kubelet-bin", "--test", target, "--"])
        .args(["--nocapture", "--test-threads=1"])
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("KUBELET_TEST_REQUIRE_ENV", "1")
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("cargo test --test {target} failed ({status})");
    }
    Ok(())
}

/// `cargo xtask package` and the test run's last step: every library as crates.io would
/// receive it, packaged (`cargo package --no-verify`), then each package checked alone
/// by `check_packages`, in a target directory of its own emptied before and after (see
/// `forget_packaged_sources`).
pub fn package(l: &Layout) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let target_dir = l.workspace.join(PACKAGE_TARGET_DIR);
    forget_packaged_sources(&target_dir)?;
    let status = Command::new(&cargo)
        .current_dir(&l.workspace)
        .args(["package", "--workspace", "--exclude", "xtask"])
        .args(["--allow-dirty", "--no-verify", "--target-dir"])
        .arg(&target_dir)
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    let checked = if status.success() {
        check_packages(&cargo, &l.workspace, &target_dir)
    } else {
        Err(anyhow::anyhow!("cargo package failed ({status})"))
    };
    forget_packaged_sources(&target_dir)?;
    checked
}

/// Where `cargo package` puts the crates and `check_packages` checks them.
const PACKAGE_TARGET_DIR: &str = "target/package-verify";

/// What `cargo package` would verify, in check mode: each `.crate` made in
/// `<target_dir>/package` is unpacked into one scratch workspace whose `[patch.crates-io]`
/// points every `kubelet-*` dependency at its unpacked package (as crates.io would serve
/// them), with the workspace's Cargo.lock, and each package is checked alone (`cargo check
/// -p`, so its own features, not the workspace's union) in one shared target directory.
/// `cargo package`'s own verification builds each crate fully in turn, generating code
/// that is thrown away, about twice the time.
fn check_packages(
    cargo: &str,
    workspace: &std::path::Path,
    target_dir: &std::path::Path,
) -> Result<()> {
    let unpacked = target_dir.join("unpacked");
    std::fs::create_dir_all(&unpacked)
        .with_context(|| format!("creating {}", unpacked.display()))?;
    let mut packages = Vec::new();
    let listing = target_dir.join("package");
    for entry in
        std::fs::read_dir(&listing).with_context(|| format!("listing {}", listing.display()))?
    {
        let path = entry?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".crate"))
        else {
            continue;
        };
        let Some((name, _version)) = stem.rsplit_once('-') else {
            bail!("{}: not <name>-<version>.crate", path.display());
        };
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&path)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .context("cannot run tar")?;
        if !status.success() {
            bail!("unpacking {}: tar {status}", path.display());
        }
        packages.push((name.to_owned(), stem.to_owned()));
    }
    if packages.is_empty() {
        bail!("cargo package made no .crate in {}", listing.display());
    }
    packages.sort();
    let members: Vec<String> = packages.iter().map(|(_, dir)| format!("{dir:?}")).collect();
    let mut manifest = format!(
        "[workspace]\nresolver = \"3\"\nmembers = [{}]\n\n[patch.crates-io]\n",
        members.join(", ")
    );
    for (name, dir) in &packages {
        manifest.push_str(&format!("{name} = {{ path = {dir:?} }}\n"));
    }
    std::fs::write(unpacked.join("Cargo.toml"), manifest)
        .context("writing the packages' workspace")?;
    std::fs::copy(workspace.join("Cargo.lock"), unpacked.join("Cargo.lock"))
        .context("copying Cargo.lock")?;
    let mut failed = Vec::new();
    for (name, _) in &packages {
        progress!("checking the package of {name}");
        let status = Command::new(cargo)
            .current_dir(&unpacked)
            .args(["check", "--quiet", "-p", name, "--target-dir"])
            .arg(target_dir.join("check"))
            .env("CARGO_INCREMENTAL", "0")
            .status()
            .with_context(|| format!("cannot run {cargo}"))?;
        if !status.success() {
            failed.push(name.as_str());
        }
    }
    if !failed.is_empty() {
        bail!("these packages do not build alone: {}", failed.join(", "));
    }
    Ok(())
}

/// Removes what an earlier `cargo package --workspace` left: it verifies each crate
/// against the packages made before it through a local registry, and cargo treats
/// registry crates as immutable, so a crate changed since (same version) would be
/// verified against its old dependencies, both from the sources it extracted under
/// `$CARGO_HOME/registry/src/-<hash>` and from what it compiled in `target_dir`. Only
/// directories of local registries (named `-<hash>`; crates.io's is
/// `index.crates.io-<hash>`) and of this workspace's `kubelet-*` crates are removed.
fn forget_packaged_sources(target_dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(target_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", target_dir.display())),
    }
    let cargo_home = match std::env::var_os("CARGO_HOME") {
        Some(home) => std::path::PathBuf::from(home),
        None => match std::env::var_os("HOME") {
            Some(home) => std::path::PathBuf::from(home).join(".cargo"),
            None => return Ok(()),
        },
    };
    let Ok(registries) = std::fs::read_dir(cargo_home.join("registry/src")) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(crates) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for extracted in crates.flatten() {
            if extracted
                .file_name()
                .to_string_lossy()
                .starts_with("kubelet-")
            {
                std::fs::remove_dir_all(extracted.path())
                    .with_context(|| format!("removing {}", extracted.path().display()))?;
            }
        }
    }
    Ok(())
}
