//! The `kubelet` binary: parses flags, sets up logging, wires the libraries together.
//!
//! Standalone mode (upstream's `--pod-manifest-path` without `--kubeconfig`): runs the
//! static pods of a manifest directory and/or URL on the container runtime and serves the
//! read-only `/pods` view.
//!
//! With `--kubeconfig`, the kubelet also joins the cluster: registers its Node, keeps its
//! status and Lease fresh, runs the pods bound to it, and reports their status, events and
//! mirror pods to the API server.
//!
//! The wiring is `kubelet-builder`'s (`Kubelet::builder()`); this binary parses flags and
//! the configuration, sets up logging and connects to the CRI runtime.
//!
//! The kubelet API (`kubelet-server`) is served on `address:port` over HTTPS with
//! authentication and authorization, and `/healthz` on `healthzBindAddress:healthzPort`.
//!
//! `--config` and `--config-dir` load a `KubeletConfiguration` (see [`config`]); flags
//! typed on the command line override it.

mod config;
mod logging;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use kubelet_builder::Kubelet;
use kubelet_core::config::feature_gates::FeatureGates;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_cri_client::{CriClient, DEFAULT_ENDPOINT, Timeouts};

use crate::config::{ConfigTaint, GoDuration, Settings};

/// Upstream kubelet's own OOM score: the kernel should kill pods before the node agent.
const KUBELET_OOM_SCORE_ADJ: i32 = -999;

/// A Kubernetes node agent that runs pods through a CRI container runtime.
///
/// Flags that have a field in the configuration file override it only when given on the
/// command line; their defaults are those of a kubelet started without `--config`.
#[derive(Debug, Parser)]
#[command(name = "kubelet", version = kubelet_builder::KUBELET_VERSION, about)]
struct Flags {
    /// A KubeletConfiguration file (kubelet.config.k8s.io/v1beta1, YAML or JSON) to load
    /// the configuration from; flags given on the command line override it.
    #[arg(long)]
    config: Option<PathBuf>,

    /// A directory of drop-in KubeletConfiguration files (`*.conf`, in lexical order)
    /// merged over --config; flags given on the command line override them.
    #[arg(long)]
    config_dir: Option<PathBuf>,

    /// The endpoint of the container runtime service (unix socket).
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    container_runtime_endpoint: String,

    /// The endpoint of the image service; defaults to --container-runtime-endpoint.
    #[arg(long)]
    image_service_endpoint: Option<String>,

    /// Timeout of all runtime requests except long-running pulls (e.g. 2m, 30s).
    #[arg(long, default_value = "2m", value_parser = config::parse_duration_flag)]
    runtime_request_timeout: GoDuration,

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
    #[arg(long, default_value = "20s", value_parser = config::parse_duration_flag)]
    file_check_frequency: GoDuration,

    /// How often the manifest URL is re-read.
    #[arg(long, default_value = "20s", value_parser = config::parse_duration_flag)]
    http_check_frequency: GoDuration,

    /// How often each pod is synced without any event.
    #[arg(long, default_value = "1m", value_parser = config::parse_duration_flag)]
    sync_frequency: GoDuration,

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
    #[arg(long, default_value = "10Mi", value_parser = config::parse_quantity_flag)]
    container_log_max_size: String,

    /// Most log files kept per container, the current one included (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    container_log_max_files: u16,

    /// Address of the kubelet API and of the read-only port (0.0.0.0: every interface).
    #[arg(long, default_value = "0.0.0.0")]
    address: IpAddr,

    /// Port of the unauthenticated read-only endpoints (/pods, /healthz, /configz); 0,
    /// the default, disables them (upstream's legacy flag default is 10255).
    #[arg(long, default_value_t = 0)]
    read_only_port: u16,

    /// Port of the kubelet API (HTTPS, authenticated: /pods, /containerLogs, /healthz,
    /// /configz), on --address.
    #[arg(long, default_value_t = 10250)]
    port: u16,

    /// Port of the plain-HTTP /healthz endpoint; 0 disables it.
    #[arg(long, default_value_t = 10248)]
    healthz_port: u16,

    /// Address of the /healthz endpoint.
    #[arg(long, default_value = "127.0.0.1")]
    healthz_bind_address: IpAddr,

    /// Serving certificate (PEM, with its chain) of the kubelet API; without it and
    /// --tls-private-key-file, a self-signed one is kept in <root-dir>/pki.
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert-file.
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,

    /// TLS 1.2 cipher suites of the kubelet API, Go's names, comma separated (TLS 1.3
    /// suites are not configurable); a suite rustls cannot offer stops start-up.
    #[arg(long, value_delimiter = ',')]
    tls_cipher_suites: Vec<String>,

    /// Minimum TLS version of the kubelet API: VersionTLS12 or VersionTLS13
    /// (VersionTLS10/11 are accepted with a warning: TLS 1.2 is the minimum offered).
    #[arg(long)]
    tls_min_version: Option<String>,

    /// CA bundle of the client certificates the kubelet API accepts (user = CN,
    /// groups = O).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,

    /// Serve requests without credentials as system:anonymous. Off by default, unlike
    /// upstream's flag.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    anonymous_auth: bool,

    /// Authenticate bearer tokens through the API server's TokenReview. On by default,
    /// unlike upstream's flag.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    authentication_token_webhook: bool,

    /// How kubelet API requests are authorized: Webhook (SubjectAccessReview; the
    /// default, unlike upstream's flag) or AlwaysAllow.
    #[arg(long, default_value = "Webhook")]
    authorization_mode: String,

    /// Kubeconfig of the API server to join; without it the kubelet runs standalone.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Path to a kubeconfig file that will be used to get a client certificate for the
    /// kubelet. If the file specified by --kubeconfig does not exist (or its client
    /// certificate has expired), the bootstrap kubeconfig is used to request a client
    /// certificate from the API server. On success, a kubeconfig file referencing the
    /// generated client certificate and key is written to the path specified by
    /// --kubeconfig. The client certificate and key file will be stored in the directory
    /// pointed by --cert-dir.
    #[arg(long)]
    bootstrap_kubeconfig: Option<PathBuf>,

    /// Refuse to start when swap is on (/proc/swaps lists a device).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    fail_swap_on: bool,

    /// The kubelet process's oom_score_adj, in [-1000, 1000].
    #[arg(long, default_value_t = KUBELET_OOM_SCORE_ADJ, allow_negative_numbers = true)]
    oom_score_adj: i32,

    /// The kubelet process's open file limit.
    #[arg(long, default_value_t = 1_000_000)]
    max_open_files: i64,

    /// Pods per core at most (0: no such limit); caps --max-pods.
    #[arg(long, default_value_t = 0)]
    pods_per_core: i32,

    /// Rotate the client certificate before it expires, requesting a new one from the
    /// API server (`rotateCertificates`).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    rotate_certificates: bool,

    /// The directory where the TLS certs are located (the bootstrapped and rotated client
    /// certificate: kubelet-client-current.pem).
    #[arg(long, default_value = "/var/lib/kubelet/pki")]
    cert_dir: PathBuf,

    /// Path to a credential provider plugin config file (JSON/YAML/YML) or a directory of
    /// such files (merged in lexicographical order; non-recursive search).
    #[arg(long, requires = "image_credential_provider_bin_dir")]
    image_credential_provider_config: Option<PathBuf>,

    /// The path to the directory where credential provider plugin binaries are located.
    #[arg(long, requires = "image_credential_provider_config")]
    image_credential_provider_bin_dir: Option<PathBuf>,

    /// Register the node with the API server (`--register-node=false` only updates an
    /// existing Node).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    register_node: bool,

    /// Taints the node registers with, `key=value:Effect`, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_taint)]
    register_with_taints: Vec<ConfigTaint>,

    /// Labels the node registers with, `key=value`, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    node_labels: Vec<(String, String)>,

    /// Most pods this node runs.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,

    /// The cgroup to run the kubelet in (`kubeletCgroups`), e.g. `/kubelet`.
    #[arg(long)]
    kubelet_cgroups: Option<String>,

    /// The cgroup to move the host's other processes into (`systemCgroups`, needs
    /// `--cgroup-root`), e.g. `/system`.
    #[arg(long)]
    system_cgroups: Option<String>,

    /// The container runtime's cgroup, reported as the `runtime` system container of the
    /// summary API, e.g. `/system.slice/containerd.service`.
    #[arg(long)]
    runtime_cgroups: Option<String>,

    /// The root cgroup for pods (`cgroupRoot`).
    #[arg(long)]
    cgroup_root: Option<String>,

    /// How cgroups are made (`cgroupDriver`): `cgroupfs` or `systemd`; a runtime that
    /// reports its own driver (CRI RuntimeConfig) overrides it.
    #[arg(long, default_value = "cgroupfs")]
    cgroup_driver: String,

    /// Refuse to start on a host using cgroup v1, as upstream does by default
    /// (`--fail-cgroupv1=false` runs there).
    #[arg(long = "fail-cgroupv1", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    fail_cgroupv1: bool,

    /// Unsafe sysctls (or `prefix*` patterns) pods may set, comma separated; the safe
    /// ones are always allowed.
    #[arg(long, value_delimiter = ',')]
    allowed_unsafe_sysctls: Vec<String>,

    /// Give containers without a seccomp profile the runtime's default profile.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    seccomp_default: bool,

    /// Hard eviction thresholds, `signal<quantity` comma separated, e.g.
    /// `memory.available<100Mi,nodefs.available<10%`.
    #[arg(long, value_delimiter = ',', value_parser = parse_threshold)]
    eviction_hard: Vec<(String, String)>,

    /// Soft eviction thresholds, `signal<quantity` comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_threshold)]
    eviction_soft: Vec<(String, String)>,

    /// Grace periods of the soft thresholds, `signal=duration` comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    eviction_soft_grace_period: Vec<(String, String)>,

    /// Minimum reclaims, `signal=quantity` comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    eviction_minimum_reclaim: Vec<(String, String)>,

    /// How long a pressure condition stays after its threshold was last met.
    #[arg(long, value_parser = config::parse_duration_flag)]
    eviction_pressure_transition_period: Option<GoDuration>,

    /// The most a soft eviction gives a pod to stop, in seconds.
    #[arg(long)]
    eviction_max_pod_grace_period: Option<i32>,

    /// Resources reserved for Kubernetes system daemons, `name=quantity` comma separated
    /// (`cpu`, `memory`, `ephemeral-storage`, `pid`).
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    kube_reserved: Vec<(String, String)>,

    /// Resources reserved for the operating system, `name=quantity` comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    system_reserved: Vec<(String, String)>,

    /// What node allocatable is enforced on (`pods`, `system-reserved`, `kube-reserved`,
    /// or `none`), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "pods")]
    enforce_node_allocatable: Vec<String>,

    /// Minimum age of a finished container before it is garbage collected (deprecated
    /// upstream, kept for the units that pass it).
    #[arg(long, default_value = "0s", value_parser = config::parse_duration_flag)]
    minimum_container_ttl_duration: GoDuration,

    /// Dead instances kept per container of a pod; negative keeps all (deprecated).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    maximum_dead_containers_per_container: i32,

    /// Dead containers kept on the node in all; negative: no limit (deprecated).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    maximum_dead_containers: i32,

    /// How often the node's status is computed and, when changed, posted.
    #[arg(long, default_value = "10s", value_parser = config::parse_duration_flag)]
    node_status_update_frequency: GoDuration,

    /// Feature gates, `Name=bool` comma separated (upstream's names; unknown names are
    /// refused); merged over the configuration's `featureGates`.
    #[arg(long, value_delimiter = ',', value_parser = parse_feature_gate)]
    feature_gates: Vec<Option<(String, bool)>>,

    /// Log verbosity (0 = info, 4 = debug, 6 and above = trace).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    verbosity: u8,
}
/// The container GC flags upstream deprecated (still honoured, with its warning).
const DEPRECATED_GC_FLAGS: [&str; 3] = [
    "minimum-container-ttl-duration",
    "maximum-dead-containers-per-container",
    "maximum-dead-containers",
];

/// Parses a `--node-labels` entry, `key=value`.
fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected key=value"))?;
    Ok((key.trim().to_owned(), value.trim().to_owned()))
}

/// Parses a `--feature-gates` entry, `Name=bool` with Go's boolean spellings (`1`, `t`,
/// `TRUE`, ...); an empty entry is nothing, as upstream's map flag skips it.
fn parse_feature_gate(text: &str) -> Result<Option<(String, bool)>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| "malformed pair, expect string=bool".to_owned())?;
    let (name, value) = (name.trim(), value.trim());
    let value =
        config::parse_go_bool(value).ok_or_else(|| format!("invalid value of {name}: {value}"))?;
    Ok(Some((name.to_owned(), value)))
}

/// Parses an eviction threshold flag entry, `signal<quantity`.
fn parse_threshold(text: &str) -> Result<(String, String), String> {
    let (signal, value) = text
        .split_once('<')
        .ok_or_else(|| format!("{text:?}: expected signal<quantity"))?;
    Ok((signal.trim().to_owned(), value.trim().to_owned()))
}

/// Parses a `--register-with-taints` entry, `key=value:Effect` or `key:Effect`.
fn parse_taint(text: &str) -> Result<ConfigTaint, String> {
    let (key_value, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: expected key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "{text:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = key_value.split_once('=').unwrap_or((key_value, ""));
    if key.is_empty() {
        return Err(format!("{text:?}: the taint key is empty"));
    }
    Ok(ConfigTaint {
        key: key.to_owned(),
        value: value.to_owned(),
        effect: effect.to_owned(),
        time_added: None,
    })
}

fn init_logging(verbosity: u32) -> kubelet_builder::VerbositySetter {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_level(verbosity)));
    // Reloadable so that `PUT /debug/flags/v` can change the verbosity, as upstream's.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if logging::stderr_is_journal() {
        registry
            .with(
                output
                    .with_ansi(false)
                    .event_format(logging::JournaldFormat::new()),
            )
            .init();
    } else {
        registry
            .with(output.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
            .init();
    }
    Arc::new(move |verbosity| {
        handle
            .reload(tracing_subscriber::EnvFilter::new(log_level(verbosity)))
            .map_err(|e| format!("failed set klog.logging.verbosity {verbosity}: {e}"))
    })
}

/// The tracing level of a `-v` verbosity.
fn log_level(verbosity: u32) -> &'static str {
    match verbosity {
        0..=3 => "info",
        4 | 5 => "debug",
        _ => "trace",
    }
}

/// Sets the kubelet's own `oom_score_adj` (`oomScoreAdj`, default -999) as upstream; on
/// machines that forbid it (no CAP_SYS_RESOURCE) the kubelet carries on.
fn set_own_oom_score(score: i32) {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", score.to_string()) {
        tracing::warn!(error = %e, "could not set the kubelet's oom_score_adj to {score}; continuing");
    }
}

/// Raises the kubelet's open file limit to `maxOpenFiles` (soft and hard), as upstream's
/// `rlimit.SetNumFiles`; a failure is logged.
fn set_max_open_files(max: i64) {
    let Ok(max) = u64::try_from(max) else {
        return;
    };
    if let Err(e) =
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, max, max)
    {
        tracing::error!(error = %e, max, "Failed to set rlimit on max file handles");
    }
}

/// Connects to the runtime and runs the kubelet until SIGTERM or Ctrl-C.
async fn run(
    flags: Flags,
    cfg: Settings,
    set_verbosity: kubelet_builder::VerbositySetter,
    metrics: Arc<KubeletMetrics>,
) -> anyhow::Result<()> {
    let timeouts = Timeouts {
        request: cfg.runtime_request_timeout,
        ..Timeouts::default()
    };
    let runtime = Arc::new(
        CriClient::new(&cfg.container_runtime_endpoint, timeouts)
            .context("containerRuntimeEndpoint (--container-runtime-endpoint)")?
            .with_metrics(metrics.clone()),
    );
    let mut builder = Kubelet::builder(cfg)
        .metrics(metrics)
        .runtime(runtime.clone(), runtime)
        .root_dir(flags.root_dir)
        .node_labels(flags.node_labels)
        .log_verbosity_setter(set_verbosity);
    if let Some(name) = flags.hostname_override {
        builder = builder.hostname_override(name);
    }
    if let Some(ips) = flags.node_ip {
        builder = builder.node_ips(ips);
    }
    builder = builder.cert_dir(flags.cert_dir.clone());
    if let Some(path) = flags.kubeconfig {
        builder = builder.kubeconfig(path);
    }
    if let Some(path) = flags.bootstrap_kubeconfig {
        builder = builder.bootstrap_kubeconfig(path, flags.cert_dir);
    }
    if let Some(cgroup) = flags.runtime_cgroups {
        builder = builder.runtime_cgroups(cgroup);
    }
    if let (Some(config), Some(bin_dir)) = (
        flags.image_credential_provider_config,
        flags.image_credential_provider_bin_dir,
    ) {
        builder = builder.image_credential_provider(config, bin_dir);
    }
    builder = builder.container_gc(kubelet_builder::ContainerGcPolicy {
        min_age: flags
            .minimum_container_ttl_duration
            .to_std()
            .unwrap_or_default(),
        max_per_pod_container: flags.maximum_dead_containers_per_container,
        max_containers: flags.maximum_dead_containers,
    });
    let kubelet = builder.build().await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    kubelet.run(stop).await?;
    Ok(())
}

/// An error and its causes on one line, each cause left out when the message before it
/// already says it (the libraries' messages name their source).
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// glibc's malloc arenas the kubelet's threads share.
const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas before the async runtime starts its threads. By default every
/// thread that allocates may get an arena of its own (up to eight per core), and the async
/// runtime's blocking pool starts threads on demand for file I/O; each arena keeps the memory
/// freed into it, so without a cap the resident set can follow how many threads have run
/// rather than the pods. (glibc's documented behaviour; the bench has not isolated the cap's
/// own effect.)
#[cfg(target_env = "gnu")]
fn limit_malloc_arenas() {
    // SAFETY: mallopt takes no pointers; it sets a parameter under malloc's own lock.
    #[allow(unsafe_code)]
    let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
    if set != 1 {
        tracing::warn!("cannot limit malloc arenas to {MALLOC_ARENAS}: mallopt refused");
    }
}

#[cfg(not(target_env = "gnu"))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    // Upstream's deprecated field flags and flags without a field, taken out first.
    let (args, more) = match config::MoreFlags::split(std::env::args_os().collect()) {
        Ok(split) => split,
        Err(e) => {
            eprintln!("kubelet: {e}");
            return ExitCode::FAILURE;
        }
    };
    let matches = Flags::command().get_matches_from(args);
    let flags = Flags::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // A broken configuration stops the kubelet before it touches the runtime.
    let cfg = match config::resolve(&flags, &matches, &more) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("kubelet: {}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let set_verbosity = init_logging(cfg.verbosity);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let metrics = Arc::new(KubeletMetrics::new());
    metrics.process_start_time.set(&[], started.as_secs_f64());
    tracing::info!(sources = %cfg.sources, "configuration loaded");
    for file in &cfg.skipped_drop_ins {
        tracing::debug!(file = %file.display(), "skipped file in --config-dir (not a .conf file)");
    }
    for note in more.notes.iter().chain(&cfg.unsupported()) {
        tracing::warn!("{note}");
    }
    for warning in FeatureGates::warnings(&cfg.config.feature_gates) {
        tracing::warn!("Warning: {warning}");
    }
    for flag in DEPRECATED_GC_FLAGS {
        if matches.value_source(&flag.replace('-', "_"))
            == Some(clap::parser::ValueSource::CommandLine)
        {
            tracing::warn!(
                "Flag --{flag} has been deprecated, Use --eviction-hard or --eviction-soft instead. Will be removed in a future version."
            );
        }
    }
    set_own_oom_score(cfg.config.oom_score_adj.unwrap_or(KUBELET_OOM_SCORE_ADJ));
    set_max_open_files(cfg.config.max_open_files);
    limit_malloc_arenas();
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
    match tokio.block_on(run(flags, cfg, set_verbosity, metrics)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubelet: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn flags_have_upstream_names_and_defaults() {
        let flags = Flags::try_parse_from(["kubelet"]).expect("defaults");
        assert_eq!(flags.container_runtime_endpoint, DEFAULT_ENDPOINT);
        assert_eq!(flags.runtime_request_timeout, GoDuration::from_secs(120));
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
        assert_eq!(flags.runtime_request_timeout, GoDuration::from_secs(30));
        assert_eq!(flags.verbosity, 4);
        assert_eq!(flags.container_log_max_size, "10Mi");
        let flags =
            Flags::try_parse_from(["kubelet", "--container-log-max-size=500k"]).expect("flags");
        assert_eq!(flags.container_log_max_size, "500k");
        assert!(Flags::try_parse_from(["kubelet", "--container-log-max-size=ten"]).is_err());
        assert!(Flags::try_parse_from(["kubelet", "--container-log-max-files=1"]).is_err());
        assert!(Flags::try_parse_from(["kubelet", "--sync-frequency=10"]).is_err());
        assert_eq!(flags.cert_dir, PathBuf::from("/var/lib/kubelet/pki"));
        assert_eq!(flags.bootstrap_kubeconfig, None);
        let flags = Flags::try_parse_from([
            "kubelet",
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            "--cert-dir=pki",
        ])
        .expect("flags");
        assert_eq!(
            flags.bootstrap_kubeconfig.as_deref(),
            Some(Path::new("/etc/kubernetes/bootstrap-kubelet.conf"))
        );
        assert_eq!(flags.cert_dir, PathBuf::from("pki"));
    }

    #[test]
    fn credential_provider_flags_come_together() {
        let flags = Flags::try_parse_from([
            "kubelet",
            "--image-credential-provider-config=/etc/kubernetes/credential-providers.yaml",
            "--image-credential-provider-bin-dir=/usr/libexec/kubernetes/credential-providers",
        ])
        .expect("flags");
        assert_eq!(
            flags.image_credential_provider_config.as_deref(),
            Some(Path::new("/etc/kubernetes/credential-providers.yaml"))
        );
        for alone in [
            "--image-credential-provider-config=/etc/c.yaml",
            "--image-credential-provider-bin-dir=/usr/libexec",
        ] {
            let err = Flags::try_parse_from(["kubelet", alone]).expect_err("needs the other");
            assert!(
                err.to_string().contains("--image-credential-provider-"),
                "{err}"
            );
        }
    }

    #[test]
    fn taint_flag_is_parsed() {
        let taint = parse_taint("example.com/soft=yes:PreferNoSchedule").expect("taint");
        assert_eq!(
            (
                taint.key.as_str(),
                taint.value.as_str(),
                taint.effect.as_str()
            ),
            ("example.com/soft", "yes", "PreferNoSchedule")
        );
        assert_eq!(parse_taint("dedicated:NoExecute").expect("taint").value, "");
        assert!(parse_taint("dedicated=x:Sometimes").is_err());
        assert!(parse_taint("=x:NoSchedule").is_err());
    }
}
