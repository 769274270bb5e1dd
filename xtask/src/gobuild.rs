//! Builds the upstream control plane programs (kube-apiserver, kube-controller-manager,
//! kube-scheduler, kubectl, etcd) from the Go module proxy, once, into a cache under
//! `target/k8s-bin/<version>` that `env down` keeps.
//!
//! `k8s.io/kubernetes` refers to its staging modules (`k8s.io/api`, ...) at v0.0.0 and
//! replaces them with directories of its own repository, which a module download lacks;
//! a scratch module that requires it must therefore pin each staging module itself.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::layout::{ETCD_VERSION, K8S_VERSION, Layout};
use crate::progress;
use crate::util;

/// The staging modules of `k8s.io/kubernetes`, all released as `v0.<minor>.<patch>`.
const STAGING_MODULES: [&str; 33] = [
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "cri-streaming",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
    "streaming",
];

/// The Kubernetes programs built from `k8s.io/kubernetes/cmd/<name>`: the control plane,
/// kubectl, and the upstream kubelet the swap test runs beside this one.
pub const K8S_PROGRAMS: [&str; 5] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
];

/// Every program in the cache.
const ALL_PROGRAMS: [&str; 6] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "etcd",
];

/// The Go version the scratch modules declare (k8s.io/kubernetes v1.37 needs 1.26).
const GO_DIRECTIVE: &str = "1.26.0";

/// How long a build may take: about 7 minutes on 2 cores from an empty Go cache, plus
/// the module downloads.
const BUILD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The path of a cached program.
pub fn binary(l: &Layout, name: &str) -> PathBuf {
    l.k8s_bin_dir().join(name)
}

/// The file in the cache that records what the binaries were built from.
fn stamp_path(l: &Layout) -> PathBuf {
    l.k8s_bin_dir().join("BUILD-INFO")
}

/// What the binaries are built from; a cache with another stamp is rebuilt.
fn stamp() -> Result<String> {
    Ok(format!(
        "k8s.io/kubernetes {K8S_VERSION}\ngo.etcd.io/etcd/server/v3 {ETCD_VERSION}\n\
         ldflags {}\n",
        ldflags()?
    ))
}

/// `K8S_VERSION` as (major, minor, patch).
fn k8s_version_parts() -> Result<(u32, u32, u32)> {
    let v = K8S_VERSION.trim_start_matches('v');
    let parts: Vec<u32> = v
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad Kubernetes version {K8S_VERSION}"))?;
    match parts.as_slice() {
        [major, minor, patch] => Ok((*major, *minor, *patch)),
        _ => bail!("bad Kubernetes version {K8S_VERSION}"),
    }
}

/// The linker flags that stamp the version: without them the programs report v0.0.0,
/// which `kubectl version` and version-skew checks cannot parse.
fn ldflags() -> Result<String> {
    let (major, minor, _) = k8s_version_parts()?;
    let mut flags = Vec::new();
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        flags.push(format!("-X {pkg}.gitVersion={K8S_VERSION}"));
        flags.push(format!("-X {pkg}.gitMajor={major}"));
        flags.push(format!("-X {pkg}.gitMinor={minor}"));
        flags.push(format!("-X {pkg}.gitTreeState=clean"));
    }
    Ok(flags.join(" "))
}

/// The scratch module that builds the Kubernetes programs.
fn k8s_go_mod() -> Result<String> {
    let (_, minor, patch) = k8s_version_parts()?;
    let staging = format!("v0.{minor}.{patch}");
    let mut s = format!(
        "// Written by `cargo xtask env up --control-plane`.\n\
         module kubelet-rs/k8s-build\n\ngo {GO_DIRECTIVE}\n\n\
         require k8s.io/kubernetes {K8S_VERSION}\n\nreplace (\n"
    );
    for m in STAGING_MODULES {
        s.push_str(&format!("\tk8s.io/{m} => k8s.io/{m} {staging}\n"));
    }
    s.push_str(")\n");
    Ok(s)
}

/// The file that makes `go mod tidy` keep the programs' dependencies.
fn k8s_tools_go() -> String {
    let mut s = String::from(
        "//go:build tools\n\n\
         // Package tools only names the programs to build, so that go mod tidy keeps\n\
         // their dependencies.\npackage tools\n\nimport (\n",
    );
    for p in K8S_PROGRAMS {
        s.push_str(&format!("\t_ \"k8s.io/kubernetes/cmd/{p}\"\n"));
    }
    s.push_str(")\n");
    s
}

/// The scratch module that builds etcd.
fn etcd_go_mod() -> String {
    format!(
        "// Written by `cargo xtask env up --control-plane`.\n\
         module kubelet-rs/etcd-build\n\ngo {GO_DIRECTIVE}\n\n\
         require go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
    )
}

/// etcd's main package: upstream's `etcdmain`, as etcd's own main does.
const ETCD_MAIN_GO: &str = "// Command etcd is upstream etcd's server.
package main

import (
\t\"os\"

\t\"go.etcd.io/etcd/server/v3/etcdmain\"
)

func main() {
\tetcdmain.Main(os.Args)
}
";

/// A `go` command: the Go of PATH, else the one the official tarball puts in
/// /usr/local/go; modules resolved from the proxy, no cgo (static programs).
fn go(dir: &Path) -> Command {
    let mut c = Command::new("go");
    let path = match std::env::var("PATH") {
        Ok(p) if !p.is_empty() => format!("{p}:/usr/local/go/bin"),
        _ => format!("{}:/usr/local/go/bin", util::PATH),
    };
    c.env("PATH", path)
        .env("CGO_ENABLED", "0")
        // VCS stamping would look at the workspace's git repository around target/.
        .env("GOFLAGS", "-mod=mod -buildvcs=false")
        .env("GOWORK", "off")
        .current_dir(dir);
    c
}

/// Tells whether every program is in the cache, built from what [`stamp`] says.
pub fn cached(l: &Layout) -> bool {
    ALL_PROGRAMS.iter().all(|p| binary(l, p).is_file())
        && fs::read_to_string(stamp_path(l)).is_ok_and(|s| stamp().is_ok_and(|want| s == want))
}

/// Builds the programs unless the cache has them.
pub fn ensure(l: &Layout) -> Result<()> {
    if cached(l) {
        return Ok(());
    }
    let start = Instant::now();
    let version = util::output(go(Path::new("/")).arg("version")).context(
        "Go 1.26 or newer is needed to build the control plane (go.dev/dl; the tarball \
         goes to /usr/local/go)",
    )?;
    progress!(
        "building the control plane ({K8S_VERSION}, etcd {ETCD_VERSION}) with {}: \
         about 7 minutes on 2 cores the first time; cached in {}",
        version.trim(),
        l.k8s_bin_dir().display()
    );
    let build = l.k8s_build_dir();
    let staging = build.join("bin.partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    util::mkdir(&staging)?;

    let k8s = build.join("kubernetes");
    util::mkdir(&k8s)?;
    fs::write(k8s.join("go.mod"), k8s_go_mod()?)?;
    let _ = fs::remove_file(k8s.join("go.sum"));
    fs::write(k8s.join("tools.go"), k8s_tools_go())?;
    tidy(&k8s)?;
    let mut args = vec!["build".to_string(), "-v".into()];
    args.extend(["-ldflags".into(), ldflags()?]);
    args.extend(["-o".into(), format!("{}/", staging.display())]);
    args.extend(
        K8S_PROGRAMS
            .iter()
            .map(|p| format!("k8s.io/kubernetes/cmd/{p}")),
    );
    go_build(&k8s, &args, &build.join("kubernetes-build.log"))?;

    let etcd = build.join("etcd");
    util::mkdir(&etcd)?;
    fs::write(etcd.join("go.mod"), etcd_go_mod())?;
    let _ = fs::remove_file(etcd.join("go.sum"));
    fs::write(etcd.join("main.go"), ETCD_MAIN_GO)?;
    tidy(&etcd)?;
    let args: Vec<String> = [
        "build",
        "-v",
        "-o",
        &staging.join("etcd").to_string_lossy(),
        ".",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    go_build(&etcd, &args, &build.join("etcd-build.log"))?;

    let bin = l.k8s_bin_dir();
    util::mkdir(&bin)?;
    for p in ALL_PROGRAMS {
        let from = staging.join(p);
        if !from.is_file() {
            bail!("go build did not produce {}", from.display());
        }
        fs::rename(&from, binary(l, p))
            .with_context(|| format!("cannot move {} into {}", from.display(), bin.display()))?;
    }
    let _ = fs::remove_dir_all(&staging);
    // Written last: a build cut short leaves no stamp and is redone.
    fs::write(stamp_path(l), stamp()?)?;
    progress!(
        "built the control plane in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds upstream's sample device plugin (`test/images/sample-device-plugin`, resource
/// `example.com/resource`, devices `Dev-1` and `Dev-2`) in the Kubernetes build module
/// unless the cache has it (about 20 s once the control plane is built).
pub fn ensure_sample_device_plugin(l: &Layout) -> Result<()> {
    ensure_test_program(
        l,
        "sample-device-plugin",
        "k8s.io/kubernetes/test/images/sample-device-plugin",
        None,
    )
}

/// The CSI test driver: upstream's mock CSI driver (`test/e2e/storage/drivers/csi-test`)
/// behind a small main that serves it on a unix socket, registers it in the kubelet's
/// `plugins_registry` and bind-mounts a data directory at each published target.
const CSI_MOCK_DRIVER_GO: &str = include_str!("go/csi_mock_driver.go");

/// Builds the CSI test driver (see [`CSI_MOCK_DRIVER_GO`]) in the Kubernetes build module
/// unless the cache has it.
pub fn ensure_csi_mock_driver(l: &Layout) -> Result<()> {
    ensure_test_program(
        l,
        "csi-mock-driver",
        "./csi-mock-driver",
        Some(CSI_MOCK_DRIVER_GO),
    )
}

/// Builds the test program `name` from `package` of the Kubernetes build module (with
/// `main_go` as its only file when it is ours) unless the cache has this very build.
fn ensure_test_program(l: &Layout, name: &str, package: &str, main_go: Option<&str>) -> Result<()> {
    let bin = binary(l, name);
    let stamp_path = l.k8s_bin_dir().join(format!("{name}.BUILD-INFO"));
    let mut stamp = format!("k8s.io/kubernetes {K8S_VERSION} {package}\n");
    if let Some(source) = main_go {
        stamp.push_str(&format!(
            "main.go {:016x}\n",
            util::fnv1a64(source.as_bytes())
        ));
    }
    if bin.is_file() && fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        return Ok(());
    }
    let k8s = l.k8s_build_dir().join("kubernetes");
    if let Some(source) = main_go {
        let dir = k8s.join(name);
        util::mkdir(&dir)?;
        fs::write(dir.join("main.go"), source)?;
    }
    let staging = l.k8s_build_dir().join(format!("{name}.partial"));
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    util::mkdir(&staging)?;
    let args: Vec<String> = [
        "build",
        "-v",
        "-o",
        &format!("{}/{name}", staging.display()),
        package,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    go_build(
        &k8s,
        &args,
        &l.k8s_build_dir().join(format!("{name}-build.log")),
    )?;
    util::mkdir(&l.k8s_bin_dir())?;
    fs::rename(staging.join(name), &bin)
        .with_context(|| format!("cannot move {name} into {}", bin.display()))?;
    let _ = fs::remove_dir_all(&staging);
    fs::write(&stamp_path, stamp)?;
    Ok(())
}

/// The metrics-server release built for `kubectl top`.
pub const METRICS_SERVER_VERSION: &str = "v0.8.0";

/// Builds metrics-server from its Go module unless the cache has it (about two minutes
/// on 2 cores from an empty Go cache). It is a module of its own, with its own
/// dependencies, so `go install <program>@<version>` builds it exactly as released.
pub fn ensure_metrics_server(l: &Layout) -> Result<()> {
    let bin = binary(l, "metrics-server");
    let stamp_path = l.k8s_bin_dir().join("metrics-server.BUILD-INFO");
    let stamp = format!("sigs.k8s.io/metrics-server {METRICS_SERVER_VERSION}\n");
    if bin.is_file() && fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        return Ok(());
    }
    let start = Instant::now();
    let staging = l.k8s_build_dir().join("metrics-server.partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    util::mkdir(&staging)?;
    let log = l.k8s_build_dir().join("metrics-server-build.log");
    progress!(
        "building metrics-server {METRICS_SERVER_VERSION} (log: {})",
        log.display()
    );
    let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    let status = go(Path::new("/"))
        // `-mod=mod` does not apply to `go install <program>@<version>`.
        .env("GOFLAGS", "-buildvcs=false")
        .env("GOBIN", &staging)
        .args([
            "install",
            &format!("sigs.k8s.io/metrics-server/cmd/metrics-server@{METRICS_SERVER_VERSION}"),
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .context("cannot start go install")?;
    if !status.success() {
        bail!(
            "building metrics-server failed ({status}); last lines of {}:\n{}",
            log.display(),
            util::tail(&log, 30)
        );
    }
    util::mkdir(&l.k8s_bin_dir())?;
    fs::rename(staging.join("metrics-server"), &bin)
        .with_context(|| format!("cannot move metrics-server into {}", bin.display()))?;
    let _ = fs::remove_dir_all(&staging);
    fs::write(&stamp_path, stamp)?;
    progress!(
        "built metrics-server in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `go mod tidy` in a scratch module.
fn tidy(dir: &Path) -> Result<()> {
    progress!("go mod tidy in {}", dir.display());
    let out = util::output_timeout(go(dir).args(["mod", "tidy"]), Duration::from_secs(600))?;
    if !out.status.success() {
        bail!(
            "go mod tidy in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `go <args>` in `dir` with its output in `log`, printing a progress line every
/// half minute (go build -v names each package it compiles).
fn go_build(dir: &Path, args: &[String], log: &Path) -> Result<()> {
    // The package arguments, without the long -ldflags.
    let packages: Vec<&str> = args
        .iter()
        .skip_while(|a| *a != "-o")
        .skip(2)
        .map(String::as_str)
        .collect();
    progress!(
        "go build {} in {} (log: {})",
        packages.join(" "),
        dir.display(),
        log.display()
    );
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    let mut child = go(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("cannot start go build")?;
    let start = Instant::now();
    let mut last = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > BUILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "go build did not finish within {} minutes; see {}",
                BUILD_TIMEOUT.as_secs() / 60,
                log.display()
            );
        }
        if last.elapsed() >= Duration::from_secs(30) {
            last = Instant::now();
            let packages = fs::read_to_string(log)
                .map(|s| s.lines().count())
                .unwrap_or(0);
            progress!(
                "  still building: {:.0}s, {packages} packages compiled",
                start.elapsed().as_secs_f64()
            );
        }
        thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        bail!(
            "go build failed ({status}); last lines of {}:\n{}",
            log.display(),
            util::tail(log, 30)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_pins_every_staging_module() -> Result<()> {
        let m = k8s_go_mod()?;
        assert!(m.contains("require k8s.io/kubernetes v1.37.2\n"));
        assert!(m.contains("\tk8s.io/client-go => k8s.io/client-go v0.37.2\n"));
        assert_eq!(m.matches(" => ").count(), 33);
        Ok(())
    }

    #[test]
    fn ldflags_stamp_both_version_packages() -> Result<()> {
        let f = ldflags()?;
        assert!(f.contains("-X k8s.io/component-base/version.gitVersion=v1.37.2"));
        assert!(f.contains("-X k8s.io/client-go/pkg/version.gitMinor=37"));
        Ok(())
    }
}
