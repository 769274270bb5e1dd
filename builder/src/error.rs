//! The kubelet assembly's error type.

use std::path::PathBuf;

/// Result of assembling or running a kubelet.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a kubelet could not start, or stopped. Each names what failed and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; every problem is listed.
    #[error("the configuration ({sources}) is invalid:\n  {}", problems.join("\n  "))]
    InvalidConfig {
        /// Where it came from (`--config ...`, `--config-dir ...`, flags).
        sources: String,
        /// One line per problem.
        problems: Vec<String>,
    },

    /// A setting cannot be acted on as given.
    #[error("{field}: {reason}")]
    Config {
        /// The field or flag, e.g. `--node-ip`.
        field: &'static str,
        /// Why.
        reason: String,
    },

    /// A fact about this machine could not be read.
    #[error("{what}: {source}")]
    Host {
        /// What was being read.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The root directory could not be made or made a shared mount.
    #[error("error configuring root directory {}: {source}", path.display())]
    RootDir {
        /// `--root-dir`.
        path: PathBuf,
        /// Why.
        #[source]
        source: kubelet_volumes::Error,
    },

    /// The node's cgroups could not be made.
    #[error("{what}: {source}")]
    Cgroups {
        /// What was being made, in upstream's words.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// TLS bootstrapping of the client certificate failed.
    #[error("TLS bootstrapping with --bootstrap-kubeconfig {} failed: {source}", path.display())]
    Bootstrap {
        /// The bootstrap kubeconfig.
        path: PathBuf,
        /// Why.
        #[source]
        source: kubelet_node_agent::Error,
    },

    /// The self-signed serving certificate of the kubelet API could not be made.
    #[error("the self-signed serving certificate: {0}")]
    ServingCertificate(#[source] kubelet_node_agent::Error),

    /// Joining the cluster failed.
    #[error("{what}: {source}")]
    Cluster {
        /// What was being done, e.g. `--kubeconfig`.
        what: &'static str,
        /// Why.
        #[source]
        source: kubelet_node_agent::Error,
    },

    /// The image credential provider configuration or its plugins are unusable.
    #[error("--image-credential-provider-config: {source}")]
    CredentialProvider {
        /// The configuration file or directory.
        path: PathBuf,
        /// Why, naming the file (or the plugin) and the field.
        #[source]
        source: kubelet_credential_provider::Error,
    },

    /// A pod source could not be made.
    #[error("{what}: {source}")]
    PodSource {
        /// The setting, e.g. `staticPodURL (--manifest-url)`.
        what: String,
        /// Why.
        #[source]
        source: kubelet_pod_manager::Error,
    },

    /// A server of the kubelet (the kubelet API, the read-only port, /healthz) failed.
    #[error(transparent)]
    Server(#[from] kubelet_server::Error),

    /// The device manager could not start or serve device plugin registration.
    #[error("device plugins: {0}")]
    Devices(#[source] kubelet_device_manager::Error),

    /// The plugin manager could not watch `<root-dir>/plugins_registry`.
    #[error("plugin registration: {0}")]
    Plugins(#[source] kubelet_plugin_manager::Error),

    /// The PodResources API could not be served.
    #[error(transparent)]
    PodResources(#[from] kubelet_pod_resources::Error),

    /// A background task the kubelet cannot run without ended or panicked.
    #[error("the kubelet's {task} task {how}")]
    TaskEnded {
        /// The task, e.g. `node status`.
        task: &'static str,
        /// How: `ended unexpectedly`, `panicked: ...`, `failed: ...`.
        how: String,
    },

    /// Kernel settings the kubelet needs are not as it needs them and were not to be
    /// (`protectKernelDefaults`) or could not be changed.
    #[error("kernel settings under /proc/sys: {}", problems.join("; "))]
    KernelTunables {
        /// One line per setting, upstream's `invalid kernel flag: ...` when protected.
        problems: Vec<String>,
    },

    /// The kubelet was built without a container runtime.
    #[error("no container runtime: call KubeletBuilder::runtime")]
    NoRuntime,
}
