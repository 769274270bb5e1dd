//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/` (the parsers of outside input),
//! built with the nightly toolchain and libFuzzer's coverage instrumentation, each run
//! for a number of inputs (a million by default) from the corpus kept in the repo;
//! inputs that reach new code are merged back into that corpus. A panic, a hang (10 s
//! for one input) or a runaway allocation stops the run and leaves the input in
//! `target/fuzz/artifacts/<target>/`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::layout::Layout;
use crate::progress;

/// The targets, as `fuzz/Cargo.toml` names them.
pub const TARGETS: [&str; 4] = [
    "static_pod_manifest",
    "kubelet_config",
    "request_target",
    "cri_log_line",
];

/// Inputs per target unless `--runs` says otherwise.
const DEFAULT_RUNS: u64 = 1_000_000;

/// The flags cargo-fuzz builds with: coverage counters, comparison tracing, `cfg(fuzzing)`.
const RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
     -Cdebug-assertions -Coverflow-checks --cfg fuzzing";

/// The target triple: given explicitly so the flags apply to the targets and not to
/// build scripts.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// `cargo xtask fuzz [--runs N] [TARGET...]`.
pub fn run(l: &Layout, args: &[String]) -> Result<()> {
    let mut runs = DEFAULT_RUNS;
    let mut targets = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--runs" => {
                let n = words.next().context("--runs needs a number")?;
                runs = n.parse().with_context(|| format!("--runs {n}"))?;
            }
            other => match TARGETS.iter().find(|t| **t == other) {
                Some(target) => targets.push(*target),
                None => bail!("unknown fuzz target or flag {other:?}; targets: {TARGETS:?}"),
            },
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    let fuzz = l.workspace.join("fuzz");
    let target_dir = l.workspace.join("target/fuzz");
    progress!("building the fuzz targets (nightly, libFuzzer)");
    let status = Command::new("cargo")
        .args([
            "+nightly",
            "build",
            "--release",
            "--bins",
            "--target",
            TRIPLE,
        ])
        .arg("--manifest-path")
        .arg(fuzz.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO")
        .status()
        .context("running cargo +nightly (rustup toolchain install nightly)")?;
    if !status.success() {
        bail!("building the fuzz targets failed");
    }
    let mut figures = Vec::new();
    for target in targets {
        figures.push(run_target(&fuzz, &target_dir, target, runs)?);
    }
    println!(
        "\n{:<22} {:>10} {:>9} {:>10} {:>8}",
        "target", "inputs", "seconds", "inputs/s", "corpus"
    );
    for f in &figures {
        println!(
            "{:<22} {:>10} {:>9.1} {:>10.0} {:>8}",
            f.target,
            f.runs,
            f.seconds,
            f.runs as f64 / f.seconds.max(0.001),
            f.corpus
        );
    }
    Ok(())
}

/// What one target's run did.
struct Figures {
    target: &'static str,
    runs: u64,
    seconds: f64,
    corpus: usize,
}

fn run_target(fuzz: &Path, target_dir: &Path, target: &'static str, runs: u64) -> Result<Figures> {
    let binary = target_dir.join(TRIPLE).join("release").join(target);
    let seeds = fuzz.join("corpus").join(target);
    let work = target_dir.join("corpus").join(target);
    let artifacts = target_dir.join("artifacts").join(target);
    for dir in [&seeds, &work, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    progress!("fuzzing {target}: {runs} inputs");
    let started = Instant::now();
    let status = Command::new(&binary)
        .arg(format!("-runs={runs}"))
        .args([
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-max_len=65536",
            "-print_final_stats=1",
        ])
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // New inputs go to the work corpus; the repo's corpus is read.
        .arg(&work)
        .arg(&seeds)
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "{target} failed ({status}): the input is in {}",
            artifacts.display()
        );
    }
    // Keep what reaches new code in the repo's corpus.
    let merged = Command::new(&binary)
        .arg("-merge=1")
        .arg(&seeds)
        .arg(&work)
        .output()
        .with_context(|| format!("merging the corpus of {target}"))?;
    if !merged.status.success() {
        bail!(
            "merging the corpus of {target} failed: {}",
            String::from_utf8_lossy(&merged.stderr)
        );
    }
    let corpus = std::fs::read_dir(&seeds)?.count();
    Ok(Figures {
        target,
        runs,
        seconds,
        corpus,
    })
}
