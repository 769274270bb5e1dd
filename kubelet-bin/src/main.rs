//! The `kubelet` binary: parses flags, sets up logging, wires the libraries together.
//!
//! Standalone mode (upstream's `--pod-manifest-path` without `--kubeconfig`): runs the
//! static pods of a manifest directory and/or URL on the container runtime and serves the
//! read-only `/pods` view.
//!
//! With `--kubeconfig`, the kubelet also joins the cluster: registers its Node, keeps its
//! status and Lease fresh, runs the pods bound to it, and reports their status, events and
//! mirror pods to the API server.

mod cluster;
mod node;
mod serve;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kubelet_core::{Backoff, Runtime};
use kubelet_cri_client::{CriClient, DEFAULT_ENDPOINT, Timeouts};
use kubelet_pod_manager::source::{FileSource, UrlSource};
use kubelet_pod_manager::spec::{NoEnvObjects, NodeContext};
use kubelet_pod_manager::{
    LocalPods, LogRotation, ManagerConfig, PodManager, PodSource, SyncContext,
};
use kubelet_probes::KubeletProber;

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

    /// Directory (or file) of static pod manifests to run.
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,

    /// URL of static pod manifests to run.
    #[arg(long)]
    manifest_url: Option<String>,

    /// HTTP header `Name:Value` sent with --manifest-url requests (repeatable).
    #[arg(long)]
    manifest_url_header: Vec<String>,

    /// How often the manifest path is re-read.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    file_check_frequency: Duration,

    /// How often the manifest URL is re-read.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    http_check_frequency: Duration,

    /// How often each pod is synced without any event.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    sync_frequency: Duration,

    /// Node name to use instead of the host name.
    #[arg(long)]
    hostname_override: Option<String>,

    /// IP address(es) of the node, comma separated; detected when unset.
    #[arg(long)]
    node_ip: Option<String>,

    /// Directory for the kubelet's files (pod directories live in <root-dir>/pods).
    #[arg(long, default_value = "/var/lib/kubelet")]
    root_dir: PathBuf,

    /// DNS server IPs for pods with dnsPolicy ClusterFirst, comma separated.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<IpAddr>,

    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,

    /// The resolver configuration pods with dnsPolicy Default inherit.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,

    /// Largest size of a container log before it is rotated (a quantity, e.g. 10Mi).
    #[arg(long, default_value = "10Mi", value_parser = parse_quantity_bytes)]
    container_log_max_size: u64,

    /// Most log files kept per container, the current one included (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    container_log_max_files: u16,

    /// Address of the read-only endpoints. Unlike upstream (0.0.0.0) the default is
    /// loopback, because these endpoints have no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,

    /// Port of the read-only endpoints (/pods, /healthz); 0 disables them.
    #[arg(long, default_value_t = 10255)]
    read_only_port: u16,

    /// Kubeconfig of the API server to join; without it the kubelet runs standalone.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Register the node with the API server (`--register-node=false` only updates an
    /// existing Node).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    register_node: bool,

    /// Taints the node registers with, `key=value:Effect`, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_taint)]
    register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,

    /// Labels the node registers with, `key=value`, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    node_labels: Vec<(String, String)>,

    /// Most pods this node runs.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,

    /// How often the node's status is computed and, when changed, posted.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    node_status_update_frequency: Duration,

    /// Log verbosity (0 = info, 4 = debug, 6 and above = trace).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    verbosity: u8,
}
/// Parses a `--node-labels` entry, `key=value`.
fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected key=value"))?;
    Ok((key.trim().to_owned(), value.trim().to_owned()))
}

/// Parses a `--register-with-taints` entry, `key=value:Effect` or `key:Effect`.
fn parse_taint(text: &str) -> Result<k8s_openapi::api::core::v1::Taint, String> {
    let (key_value, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: expected key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "{text:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match key_value.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (key_value, None),
    };
    if key.is_empty() {
        return Err(format!("{text:?}: the taint key is empty"));
    }
    Ok(k8s_openapi::api::core::v1::Taint {
        key: key.to_owned(),
        value,
        effect: effect.to_owned(),
        time_added: None,
    })
}

/// Parses a Kubernetes quantity of bytes (`10Mi`, `500k`).
fn parse_quantity_bytes(text: &str) -> Result<u64, String> {
    let quantity: kubelet_core::Quantity = text.parse().map_err(|e| format!("{e}"))?;
    u64::try_from(quantity.value()).map_err(|_| format!("{text:?} must not be negative"))
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

/// Waits until the runtime answers, logging why it does not; a runtime that is down at
/// start is a reason to wait, not to exit.
async fn wait_for_runtime(runtime: &CriClient, endpoint: &str) -> kubelet_core::RuntimeVersion {
    let mut delay = Duration::from_millis(500);
    loop {
        match Runtime::version(runtime).await {
            Ok(version) => return version,
            Err(e) => {
                tracing::error!(endpoint, error = %e, "container runtime not available, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn run(flags: Flags) -> anyhow::Result<()> {
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
    let node_name = node::node_name(flags.hostname_override.as_deref())?;
    let host_ips = node::node_ips(flags.node_ip.as_deref())?;
    let host_resolv_conf = tokio::fs::read_to_string(&flags.resolv_conf).await.unwrap_or_else(|e| {
        tracing::warn!(path = %flags.resolv_conf.display(), error = %e, "cannot read --resolv-conf; pods get no host DNS");
        String::new()
    });

    let version = wait_for_runtime(&runtime, &flags.container_runtime_endpoint).await;
    tracing::info!(
        runtime = %version.runtime_name,
        version = %version.runtime_version,
        api = %version.runtime_api_version,
        node = %node_name,
        ips = ?host_ips,
        "connected to the container runtime"
    );
    match Runtime::status(&runtime).await {
        Ok(status) => {
            for condition in status.conditions.iter().filter(|c| !c.status) {
                tracing::warn!(condition = %condition.condition_type, reason = %condition.reason, message = %condition.message, "runtime not ready");
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the runtime's status"),
    }

    let runtime: Arc<CriClient> = Arc::new(runtime);
    let mut cluster = match &flags.kubeconfig {
        Some(path) => Some(
            cluster::Cluster::start(path, &flags, &node_name, &host_ips, runtime.clone()).await?,
        ),
        None => None,
    };
    let node = NodeContext {
        node_name: node_name.clone(),
        host_ips,
        pod_logs_root: PathBuf::from("/var/log/pods"),
        pods_dir: flags.root_dir.join("pods"),
        cluster_dns: flags.cluster_dns.clone(),
        cluster_domain: flags.cluster_domain.clone(),
        host_resolv_conf,
        allocatable_milli_cpu: node::milli_cpus(),
        allocatable_memory: node::memory_bytes(),
        memory_capacity: node::memory_bytes(),
        thermal_throttle_paths: kubelet_pod_manager::spec::host_thermal_throttle_paths(),
        ..NodeContext::default()
    };
    let volume_sources: Arc<dyn kubelet_core::VolumeSources> = match &cluster {
        Some(c) => Arc::new(c.objects.clone()),
        None => Arc::new(kubelet_core::NoVolumeSources),
    };
    let volumes = kubelet_volumes::VolumeManager::new(node.pods_dir.clone(), volume_sources)
        .with_node_allocatable(node.allocatable());
    let ctx = SyncContext {
        runtime: runtime.clone(),
        images: runtime.clone(),
        node,
        env_objects: match &cluster {
            Some(c) => Arc::new(c.objects.clone()),
            None => Arc::new(NoEnvObjects),
        },
        runtime_name: version.runtime_name.clone(),
        crash_backoff: Mutex::new(Backoff::crash_loop()),
        image_backoff: Mutex::new(Backoff::image_pull()),
        prober: Some(Arc::new(KubeletProber::new(runtime))),
        events: match &cluster {
            Some(c) => Arc::new(c.events.clone()),
            None => Arc::new(kubelet_core::NoEvents),
        },
        volumes: Arc::new(volumes),
    };

    let (updates, updates_rx) = tokio::sync::mpsc::channel(16);
    let mut sources = Vec::new();
    let mut source_kinds = Vec::new();
    if let Some(path) = &flags.pod_manifest_path {
        let source = FileSource::new(path.clone(), node_name.clone())
            .with_check_frequency(flags.file_check_frequency);
        sources.push(tokio::spawn(source.run(updates.clone())));
        source_kinds.push(PodSource::File);
    }
    if let Some(url) = &flags.manifest_url {
        let mut source = UrlSource::new(url.clone(), node_name.clone())
            .context("--manifest-url")?
            .with_check_frequency(flags.http_check_frequency);
        for header in &flags.manifest_url_header {
            let (name, value) = header.split_once(':').with_context(|| {
                format!("--manifest-url-header {header:?}: expected Name:Value")
            })?;
            source = source
                .with_header(name.trim(), value.trim())
                .with_context(|| format!("--manifest-url-header {header:?}"))?;
        }
        sources.push(tokio::spawn(source.run(updates.clone())));
        source_kinds.push(PodSource::Http);
    }
    if let Some(c) = &cluster {
        sources.push(tokio::spawn(c.pod_source().run(updates.clone())));
        source_kinds.push(PodSource::Api);
    }
    if sources.is_empty() {
        tracing::warn!(
            "no pod source configured (--kubeconfig, --pod-manifest-path, --manifest-url): no pods will run"
        );
    }
    drop(updates);

    let pods = Arc::new(match &cluster {
        Some(c) => LocalPods::forwarding_to(Arc::new(c.status.clone())),
        None => LocalPods::new(),
    });
    let node_agent = cluster
        .as_mut()
        .and_then(cluster::Cluster::take_node_agent)
        .map(|agent| tokio::spawn(agent.run()));
    let manager = PodManager::new(
        Arc::new(ctx),
        pods.clone(),
        ManagerConfig {
            resync_period: flags.sync_frequency,
            sources: source_kinds,
            log_rotation: Some(LogRotation {
                max_size: flags.container_log_max_size,
                max_files: usize::from(flags.container_log_max_files),
                ..LogRotation::default()
            }),
            ..ManagerConfig::default()
        },
    );
    if let Some(c) = &cluster {
        c.objects.poke_pods_on_change(manager.poker());
    }
    let mut manager = tokio::spawn(manager.run(updates_rx));
    let server = (flags.read_only_port != 0).then(|| {
        tokio::spawn(serve::serve(
            SocketAddr::new(flags.address, flags.read_only_port),
            pods,
        ))
    });

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
        served = async {
            match server {
                Some(server) => server.await,
                None => std::future::pending().await,
            }
        } => match served {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("the /pods server stopped: {e}")),
        },
        _ = &mut manager => Ok(()),
    };
    // Stopping leaves the pods running: the next kubelet adopts them.
    tracing::info!("stopping; pods keep running");
    for source in sources {
        source.abort();
    }
    manager.abort();
    if let Some(agent) = node_agent {
        agent.abort();
    }
    outcome
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
        Ok(()) => ExitCode::SUCCESS,
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
        assert_eq!(flags.container_log_max_size, 10 * 1024 * 1024);
        let flags =
            Flags::try_parse_from(["kubelet", "--container-log-max-size=500k"]).expect("flags");
        assert_eq!(flags.container_log_max_size, 500_000);
        assert!(Flags::try_parse_from(["kubelet", "--container-log-max-size=ten"]).is_err());
        assert!(Flags::try_parse_from(["kubelet", "--container-log-max-files=1"]).is_err());
    }
}
