//! The `kubelet` binary: parses flags, sets up logging, wires the libraries together.
//!
//! Until the pod manager lands, it connects to the container runtime, prints the
//! runtime's version and readiness, and exits non-zero when the runtime is not usable.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kubelet_core::Runtime;
use kubelet_cri_client::{CriClient, DEFAULT_ENDPOINT, Timeouts};

/// Upstream kubelet's own OOM score: the kernel should kill pods before the node agent.
const KUBELET_OOM_SCORE_ADJ: i32 = -999;

/// A Kubernetes node agent that runs pods through a CRI container runtime.
#[derive(Debug, Parser)]
#[command(name = "kubelet", version, about)]
struct Flags {
    /// The endpoint of the container runtime service (unix socket).
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    container_runtime_endpoint: String,

    /// The endpoint of the image service; defaults to --container-runtime-endpoint.
    #[arg(long)]
    image_service_endpoint: Option<String>,

    /// Timeout of all runtime requests except long-running pulls (e.g. 2m, 30s).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    runtime_request_timeout: Duration,

    /// Log verbosity (0 = info, 4 = debug, 6 and above = trace).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    verbosity: u8,
}

/// Parses Go-style durations as upstream flags take them: `90s`, `2m`, `1h`, `1m30s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: expected a number before {unit:?}"))?;
        let seconds = match unit.as_str() {
            "h" => value * 3600.0,
            "m" => value * 60.0,
            "s" => value,
            "ms" => value / 1000.0,
            other => return Err(format!("invalid duration {text:?}: unknown unit {other:?}")),
        };
        total += Duration::from_secs_f64(seconds);
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!("invalid duration {text:?}: missing unit (s, m, h)"));
    }
    Ok(total)
}

fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0..=3 => "info",
        4 | 5 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Lowers our OOM score like upstream; on machines that forbid it (no CAP_SYS_RESOURCE)
/// the kubelet carries on.
fn lower_own_oom_score() {
    if let Err(e) = std::fs::write(
        "/proc/self/oom_score_adj",
        KUBELET_OOM_SCORE_ADJ.to_string(),
    ) {
        tracing::warn!(error = %e, "could not set the kubelet's oom_score_adj to {KUBELET_OOM_SCORE_ADJ}; continuing");
    }
}

async fn run(flags: Flags) -> anyhow::Result<bool> {
    if let Some(image_endpoint) = &flags.image_service_endpoint
        && image_endpoint != &flags.container_runtime_endpoint
    {
        anyhow::bail!(
            "--image-service-endpoint {image_endpoint:?} differs from --container-runtime-endpoint; \
             a separate image service is not supported yet"
        );
    }
    let timeouts = Timeouts {
        request: flags.runtime_request_timeout,
        ..Timeouts::default()
    };
    let runtime = CriClient::new(&flags.container_runtime_endpoint, timeouts)
        .context("--container-runtime-endpoint")?;
    let version = Runtime::version(&runtime)
        .await
        .with_context(|| format!("container runtime at {}", flags.container_runtime_endpoint))?;
    println!(
        "runtime: {} {} (CRI {}) at {}",
        version.runtime_name,
        version.runtime_version,
        version.runtime_api_version,
        flags.container_runtime_endpoint
    );
    let status = Runtime::status(&runtime).await?;
    for condition in &status.conditions {
        if condition.status {
            println!("  {}: true", condition.condition_type);
        } else {
            println!(
                "  {}: false (reason {:?}: {})",
                condition.condition_type, condition.reason, condition.message
            );
        }
    }
    Ok(status.runtime_ready() && status.network_ready())
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    init_logging(flags.verbosity);
    lower_own_oom_score();
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(e) => {
            eprintln!("kubelet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match tokio.block_on(run(flags)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("kubelet: the container runtime is not ready (see the conditions above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("kubelet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn flags_have_upstream_names_and_defaults() {
        let flags = Flags::try_parse_from(["kubelet"]).expect("defaults");
        assert_eq!(flags.container_runtime_endpoint, DEFAULT_ENDPOINT);
        assert_eq!(flags.runtime_request_timeout, Duration::from_secs(120));
        let flags = Flags::try_parse_from([
            "kubelet",
            "--container-runtime-endpoint=unix:///run/crio/crio.sock",
            "--runtime-request-timeout=30s",
            "-v=4",
        ])
        .expect("flags");
        assert_eq!(
            flags.container_runtime_endpoint,
            "unix:///run/crio/crio.sock"
        );
        assert_eq!(flags.runtime_request_timeout, Duration::from_secs(30));
        assert_eq!(flags.verbosity, 4);
    }
}
