//! The container runtime as the kubelet sees it: sandboxes, containers, images.
//!
//! The types mirror the concepts of the Kubernetes Container Runtime Interface (CRI v1)
//! without tying callers to its wire format; `kubelet-cri-client` translates them.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// Labels or annotations: ordered so that translations are deterministic.
pub type StringMap = BTreeMap<String, String>;

/// Name and version of the runtime (CRI `Version`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// Version of the kubelet API the runtime speaks, e.g. `0.1.0`.
    pub version: String,
    /// Name of the runtime, e.g. `containerd`.
    pub runtime_name: String,
    /// Version of the runtime, e.g. `1.6.20`.
    pub runtime_version: String,
    /// CRI API version, e.g. `v1`.
    pub runtime_api_version: String,
}

/// One condition reported by the runtime's `Status` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeCondition {
    /// Condition type, e.g. `RuntimeReady` or `NetworkReady`.
    pub condition_type: String,
    /// Whether the condition holds.
    pub status: bool,
    /// Machine-readable reason when it does not.
    pub reason: String,
    /// Human-readable message when it does not.
    pub message: String,
}

/// Health of the runtime (CRI `Status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// All conditions the runtime reported.
    pub conditions: Vec<RuntimeCondition>,
    /// The runtime handlers it offers and their features; empty when the runtime is too
    /// old to say (containerd 1.6).
    pub handlers: Vec<RuntimeHandler>,
}

/// A runtime handler (what a RuntimeClass names) and what it supports (CRI
/// `RuntimeHandler`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeHandler {
    /// The handler's name; empty for the default handler.
    pub name: String,
    /// Whether read-only mounts can be made recursively read-only.
    pub recursive_read_only_mounts: bool,
    /// Whether pods can run in their own user namespace.
    pub user_namespaces: bool,
}

impl RuntimeStatus {
    /// Condition type for the runtime being ready to run containers.
    pub const RUNTIME_READY: &'static str = "RuntimeReady";
    /// Condition type for the pod network being ready.
    pub const NETWORK_READY: &'static str = "NetworkReady";

    /// The condition of the given type, if reported.
    pub fn condition(&self, condition_type: &str) -> Option<&RuntimeCondition> {
        self.conditions
            .iter()
            .find(|c| c.condition_type == condition_type)
    }

    /// True when the runtime reports `RuntimeReady`.
    pub fn runtime_ready(&self) -> bool {
        self.condition(Self::RUNTIME_READY)
            .is_some_and(|c| c.status)
    }

    /// True when the runtime reports `NetworkReady`.
    pub fn network_ready(&self) -> bool {
        self.condition(Self::NETWORK_READY)
            .is_some_and(|c| c.status)
    }
}

/// How the node's cgroups are named and made: directories under the cgroup mount
/// (`cgroupfs`, `/kubepods/burstable/pod<uid>`) or systemd slices made over D-Bus
/// (`systemd`, `kubepods-burstable-pod<uid>.slice`). The kubelet and the runtime must use
/// the same one (`cgroupDriver`, CRI `RuntimeConfig`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CgroupDriver {
    /// Cgroups are directories the kubelet makes itself.
    #[default]
    Cgroupfs,
    /// Cgroups are systemd units (slices) made through systemd's D-Bus API.
    Systemd,
}

impl CgroupDriver {
    /// The driver named as in `cgroupDriver` (`cgroupfs`, `systemd`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cgroupfs" => Some(Self::Cgroupfs),
            "systemd" => Some(Self::Systemd),
            _ => None,
        }
    }

    /// The name `cgroupDriver` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cgroupfs => "cgroupfs",
            Self::Systemd => "systemd",
        }
    }
}

impl std::fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a pod sandbox: the pod it belongs to and which attempt it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SandboxMetadata {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID.
    pub uid: String,
    /// How many sandboxes were created for this pod before this one.
    pub attempt: u32,
}

/// DNS configuration written into the sandbox's resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name server addresses.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// resolv.conf options, e.g. `ndots:5`.
    pub options: Vec<String>,
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A container port, optionally published on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// Protocol.
    pub protocol: Protocol,
    /// Port inside the pod.
    pub container_port: i32,
    /// Port on the host, 0 when not published.
    pub host_port: i32,
    /// Host address to bind, empty for all.
    pub host_ip: String,
}

/// One range of a user namespace's ID mapping: `length` IDs from `container_id` inside
/// start at `host_id` on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdMapping {
    /// The first ID on the host.
    pub host_id: u32,
    /// The first ID inside the namespace.
    pub container_id: u32,
    /// How many IDs.
    pub length: u32,
}

/// A pod's own user namespace (`hostUsers: false`): how its UIDs and GIDs map to the
/// host's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserNamespace {
    /// The UID mappings.
    pub uids: Vec<IdMapping>,
    /// The GID mappings.
    pub gids: Vec<IdMapping>,
}

/// Which Linux namespaces a sandbox shares with the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceOptions {
    /// Use the host's network namespace.
    pub host_network: bool,
    /// Use the host's PID namespace.
    pub host_pid: bool,
    /// Use the host's IPC namespace.
    pub host_ipc: bool,
    /// Share one PID namespace between the pod's containers.
    pub share_process_namespace: bool,
    /// The pod's own user namespace; `None` runs it in the host's.
    pub user_namespace: Option<UserNamespace>,
}

/// A container's namespaces: the pod's, and optionally another container's PID
/// namespace to join (CRI `NamespaceMode::TARGET`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerNamespaces {
    /// What the pod shares with the host.
    pub pod: NamespaceOptions,
    /// The id of the container whose PID namespace this one joins.
    pub pid_target: Option<String>,
}

/// Linux settings of a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinuxSandboxConfig {
    /// Parent cgroup of the pod, empty to let the runtime choose.
    pub cgroup_parent: String,
    /// Namespaces shared with the host.
    pub namespaces: NamespaceOptions,
    /// UID of the sandbox's processes.
    pub run_as_user: Option<i64>,
    /// GID of the sandbox's processes.
    pub run_as_group: Option<i64>,
    /// Extra groups of the sandbox's processes.
    pub supplemental_groups: Vec<i64>,
    /// Run the sandbox privileged.
    pub privileged: bool,
    /// Mount the sandbox's root filesystem read-only.
    pub readonly_rootfs: bool,
    /// Namespaced sysctls.
    pub sysctls: StringMap,
    /// The sandbox's seccomp profile; `None` leaves the runtime's choice.
    pub seccomp: Option<SecurityProfile>,
    /// The sandbox's SELinux labels.
    pub selinux: Option<SeLinuxOptions>,
}

/// A seccomp or AppArmor profile (CRI `SecurityProfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SecurityProfile {
    /// No profile.
    #[default]
    Unconfined,
    /// The runtime's default profile.
    RuntimeDefault,
    /// A profile of the node: for seccomp the absolute path of its file, for AppArmor
    /// the name of a loaded profile.
    Localhost(String),
}

/// SELinux labels of a sandbox or container (CRI `SELinuxOption`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeLinuxOptions {
    /// SELinux user label.
    pub user: String,
    /// SELinux role label.
    pub role: String,
    /// SELinux type label.
    pub type_: String,
    /// SELinux level label.
    pub level: String,
}

/// Everything the runtime needs to create a pod sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Which pod this sandbox is for.
    pub metadata: SandboxMetadata,
    /// Hostname inside the sandbox; must be empty with host networking.
    pub hostname: String,
    /// Directory where the pod's container logs go.
    pub log_directory: String,
    /// DNS settings; `None` leaves the runtime's default.
    pub dns: Option<DnsConfig>,
    /// Ports of the pod's containers.
    pub port_mappings: Vec<PortMapping>,
    /// Labels, queryable through list filters.
    pub labels: StringMap,
    /// Opaque annotations.
    pub annotations: StringMap,
    /// Linux settings.
    pub linux: LinuxSandboxConfig,
    /// Runtime handler (RuntimeClass handler), empty for the default.
    pub runtime_handler: String,
}

/// Whether a sandbox is usable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SandboxState {
    /// Running and ready for containers.
    Ready,
    /// Stopped or broken.
    #[default]
    NotReady,
}

/// A sandbox as listed by the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// Runtime-assigned id.
    pub id: String,
    /// Which pod it is for.
    pub metadata: SandboxMetadata,
    /// Current state.
    pub state: SandboxState,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_at: i64,
    /// Labels given at creation.
    pub labels: StringMap,
    /// Annotations given at creation.
    pub annotations: StringMap,
    /// Runtime handler used.
    pub runtime_handler: String,
}

/// Detailed status of one sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxStatus {
    /// Identity, state and labels.
    pub sandbox: Sandbox,
    /// Primary pod IP, empty with host networking or before the network is set up.
    pub ip: String,
    /// Further pod IPs (dual stack).
    pub additional_ips: Vec<String>,
    /// Namespaces shared with the host.
    pub namespaces: NamespaceOptions,
}

/// Filter for listing sandboxes; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxFilter {
    /// Match one id.
    pub id: Option<String>,
    /// Match one state.
    pub state: Option<SandboxState>,
    /// All these labels must match.
    pub labels: StringMap,
}

/// Identity of a container within its sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ContainerMetadata {
    /// Container name from the pod spec.
    pub name: String,
    /// How many times this container was created before (the restart count).
    pub attempt: u32,
}

/// How a mount propagates between host and container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MountPropagation {
    /// No propagation (private).
    #[default]
    Private,
    /// Host mounts propagate into the container (rslave).
    HostToContainer,
    /// Both ways (rshared).
    Bidirectional,
}

/// A bind mount into a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    /// Path inside the container.
    pub container_path: String,
    /// Path on the host.
    pub host_path: String,
    /// Mount read-only.
    pub readonly: bool,
    /// Ask the runtime to relabel for SELinux.
    pub selinux_relabel: bool,
    /// Propagation mode.
    pub propagation: MountPropagation,
}

/// A host device in a container (CRI `Device`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// Path inside the container.
    pub container_path: String,
    /// Path on the host.
    pub host_path: String,
    /// Cgroup permissions: any of `r`, `w` and `m`.
    pub permissions: String,
}

/// Cgroup resource settings of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinuxResources {
    /// CFS period in microseconds (0 = unset).
    pub cpu_period: i64,
    /// CFS quota in microseconds (0 = unset).
    pub cpu_quota: i64,
    /// Relative CPU weight.
    pub cpu_shares: i64,
    /// Memory limit in bytes (0 = unset).
    pub memory_limit_in_bytes: i64,
    /// OOM score adjustment.
    pub oom_score_adj: i64,
    /// CPUs the container may run on, e.g. `0-1`.
    pub cpuset_cpus: String,
    /// Memory nodes the container may use.
    pub cpuset_mems: String,
}

/// Linux capabilities to add to or drop from the default set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Capabilities to add, without the `CAP_` prefix.
    pub add: Vec<String>,
    /// Capabilities to drop, without the `CAP_` prefix.
    pub drop: Vec<String>,
}

/// Security settings of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSecurity {
    /// Capability changes.
    pub capabilities: Capabilities,
    /// Run privileged.
    pub privileged: bool,
    /// Namespaces shared with the host (must match the sandbox's), and the container
    /// whose PID namespace it joins, if any.
    pub namespaces: ContainerNamespaces,
    /// UID to run as; `None` keeps the image's user.
    pub run_as_user: Option<i64>,
    /// GID to run as.
    pub run_as_group: Option<i64>,
    /// User name to run as, when the image user is a name.
    pub run_as_username: String,
    /// Mount the root filesystem read-only.
    pub readonly_rootfs: bool,
    /// Extra groups.
    pub supplemental_groups: Vec<i64>,
    /// Set no_new_privs (allowPrivilegeEscalation: false).
    pub no_new_privs: bool,
    /// Paths masked in the container.
    pub masked_paths: Vec<String>,
    /// Paths made read-only in the container.
    pub readonly_paths: Vec<String>,
    /// The container's seccomp profile; `None` leaves the runtime's choice.
    pub seccomp: Option<SecurityProfile>,
    /// The container's AppArmor profile; `None` leaves the runtime's choice.
    pub apparmor: Option<SecurityProfile>,
    /// The container's SELinux labels.
    pub selinux: Option<SeLinuxOptions>,
}

/// Everything the runtime needs to create a container in a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Name and attempt.
    pub metadata: ContainerMetadata,
    /// Image reference (name or id); the kubelet gives the id of the image it made sure
    /// of, as upstream, so a tag moved since cannot change what runs.
    pub image: String,
    /// The image as the pod names it (CRI `user_specified_image`).
    pub user_specified_image: String,
    /// Entrypoint override; empty keeps the image's.
    pub command: Vec<String>,
    /// Arguments; empty keeps the image's.
    pub args: Vec<String>,
    /// Working directory; empty keeps the image's.
    pub working_dir: String,
    /// Environment, in order.
    pub envs: Vec<(String, String)>,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// Host devices made available in the container (from device plugins).
    pub devices: Vec<Device>,
    /// Fully qualified CDI device names the runtime resolves (from device plugins).
    pub cdi_devices: Vec<String>,
    /// Labels, queryable through list filters.
    pub labels: StringMap,
    /// Opaque annotations.
    pub annotations: StringMap,
    /// Log path relative to the sandbox's log directory.
    pub log_path: String,
    /// Keep stdin open.
    pub stdin: bool,
    /// Close stdin after the first attach disconnects.
    pub stdin_once: bool,
    /// Allocate a TTY.
    pub tty: bool,
    /// Cgroup resources; `None` leaves the runtime's defaults.
    pub resources: Option<LinuxResources>,
    /// Security settings.
    pub security: ContainerSecurity,
}

/// State of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// The runtime does not know.
    #[default]
    Unknown,
}

/// A container as listed by the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// Runtime-assigned id.
    pub id: String,
    /// The sandbox it runs in.
    pub sandbox_id: String,
    /// Name and attempt.
    pub metadata: ContainerMetadata,
    /// Image as requested.
    pub image: String,
    /// Image id the runtime resolved.
    pub image_ref: String,
    /// Current state.
    pub state: ContainerState,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_at: i64,
    /// Labels given at creation.
    pub labels: StringMap,
    /// Annotations given at creation.
    pub annotations: StringMap,
}

/// Detailed status of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Identity, state and labels (`sandbox_id` may be empty: CRI does not report it here).
    pub container: Container,
    /// Start time, nanoseconds since the Unix epoch (0 = not started).
    pub started_at: i64,
    /// Exit time, nanoseconds since the Unix epoch (0 = not exited).
    pub finished_at: i64,
    /// Exit code, meaningful once exited.
    pub exit_code: i32,
    /// Short reason for the state, e.g. `Completed`, `Error`, `OOMKilled`.
    pub reason: String,
    /// Longer message for the state.
    pub message: String,
    /// Absolute path of the container's log file.
    pub log_path: String,
    /// Mounts as the runtime applied them.
    pub mounts: Vec<Mount>,
}

/// Filter for listing containers; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    /// Match one id.
    pub id: Option<String>,
    /// Match one state.
    pub state: Option<ContainerState>,
    /// Match containers of one sandbox.
    pub sandbox_id: Option<String>,
    /// All these labels must match.
    pub labels: StringMap,
}

/// Output of a command run to completion in a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// Exit code of the command.
    pub exit_code: i32,
}

/// A streaming request; the runtime answers with a URL on its streaming server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    /// Run a command in a container.
    Exec {
        /// Container id.
        container_id: String,
        /// Command and arguments.
        command: Vec<String>,
        /// Allocate a TTY.
        tty: bool,
        /// Stream stdin.
        stdin: bool,
        /// Stream stdout.
        stdout: bool,
        /// Stream stderr.
        stderr: bool,
    },
    /// Attach to a running container's streams.
    Attach {
        /// Container id.
        container_id: String,
        /// Allocate a TTY.
        tty: bool,
        /// Stream stdin.
        stdin: bool,
        /// Stream stdout.
        stdout: bool,
        /// Stream stderr.
        stderr: bool,
    },
    /// Forward ports of a sandbox.
    PortForward {
        /// Sandbox id.
        sandbox_id: String,
        /// Ports to forward.
        ports: Vec<i32>,
    },
}

/// Resource usage of one container, as the runtime measures it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// Container id.
    pub id: String,
    /// Name and attempt.
    pub metadata: ContainerMetadata,
    /// Labels of the container.
    pub labels: StringMap,
    /// When the sample was taken, nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_core_nano_seconds: Option<u64>,
    /// Current CPU usage in nanocores.
    pub cpu_usage_nano_cores: Option<u64>,
    /// Memory working set in bytes.
    pub memory_working_set_bytes: Option<u64>,
    /// Memory usage in bytes.
    pub memory_usage_bytes: Option<u64>,
    /// Resident set size in bytes.
    pub memory_rss_bytes: Option<u64>,
    /// Bytes used by the writable layer.
    pub writable_layer_used_bytes: Option<u64>,
    /// Inodes used by the writable layer.
    pub writable_layer_inodes_used: Option<u64>,
}

/// Space used on one of the runtime's filesystems.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesystemUsage {
    /// When the sample was taken, nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// Mount point of the filesystem.
    pub mountpoint: String,
    /// Bytes used.
    pub used_bytes: Option<u64>,
    /// Inodes used.
    pub inodes_used: Option<u64>,
}

/// Credentials for a registry (from an imagePullSecret or the node's config).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Base64 `user:password`, as in a docker config.
    pub auth: String,
    /// Registry host the credentials are for.
    pub server_address: String,
    /// Identity token for the registry.
    pub identity_token: String,
    /// Bearer token for the registry.
    pub registry_token: String,
}

impl std::fmt::Debug for RegistryAuth {
    // Credentials must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

/// An image stored by the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    /// Image id (config digest).
    pub id: String,
    /// Tags naming it.
    pub repo_tags: Vec<String>,
    /// Digests naming it.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// UID the image runs as, when numeric.
    pub uid: Option<i64>,
    /// User name the image runs as, when not numeric.
    pub username: String,
    /// Never garbage-collected.
    pub pinned: bool,
}

/// What happened to a container, as the runtime's event stream reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerEventKind {
    /// Created.
    Created,
    /// Started.
    Started,
    /// Stopped (exited or killed).
    Stopped,
    /// Removed.
    Deleted,
}

/// One container event: which container, of which pod, what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// Container id.
    pub container_id: String,
    /// What happened.
    pub kind: ContainerEventKind,
    /// When, nanoseconds since the Unix epoch.
    pub created_at: i64,
    /// Labels of the container's sandbox (they name the pod).
    pub sandbox_labels: StringMap,
}

/// A stream of container events; ends or yields an error when the connection breaks.
pub type ContainerEvents =
    std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<ContainerEvent>> + Send>>;

/// Running a command in a container: all that exec probes and exec hooks need of a
/// runtime, so that their users (and test fakes) implement one method, not [`Runtime`].
/// An `Arc<dyn Runtime>` converts to an `Arc<dyn ContainerExec>`.
#[async_trait]
pub trait ContainerExec: Send + Sync {
    /// Runs a command in a container to completion, killing it after `timeout`.
    async fn exec_sync(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult>;
}

/// What a runtime runs and what it uses: all that the stats (the summary API, resource
/// metrics) read of a runtime, so that their users (and test fakes) implement four
/// methods, not [`Runtime`]. An `Arc<dyn Runtime>` converts to an
/// `Arc<dyn RuntimeInventory>`.
#[async_trait]
pub trait RuntimeInventory: Send + Sync {
    /// Sandboxes matching the filter.
    async fn list_sandboxes(&self, filter: &SandboxFilter) -> Result<Vec<Sandbox>>;
    /// Containers matching the filter.
    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<Container>>;
    /// Current usage of one container.
    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats>;
    /// Current usage of the containers matching the filter.
    async fn list_container_stats(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStats>>;
}

/// Which runtime answers and whether it is ready: all that the node's status (its
/// `Ready` condition and `nodeInfo`) reads of a runtime, so that the node agent (and its
/// test fakes) need two methods, not [`Runtime`]. An `Arc<dyn Runtime>` converts to an
/// `Arc<dyn RuntimeHealth>`.
#[async_trait]
pub trait RuntimeHealth: Send + Sync {
    /// Name and version of the runtime.
    async fn version(&self) -> Result<RuntimeVersion>;
    /// Runtime and network readiness.
    async fn status(&self) -> Result<RuntimeStatus>;
}

/// Sandboxes, containers, exec and stats: what the pod manager asks of a container runtime.
///
/// Held as `Arc<dyn Runtime>`; every method names its object in the error it returns.
#[async_trait]
pub trait Runtime: ContainerExec + RuntimeInventory + RuntimeHealth + Send + Sync {
    /// Creates and starts a sandbox; returns its id.
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<String>;
    /// Stops every container of a sandbox and the sandbox itself; tolerant of repeats.
    async fn stop_sandbox(&self, sandbox_id: &str) -> Result<()>;
    /// Removes a stopped sandbox and its containers.
    async fn remove_sandbox(&self, sandbox_id: &str) -> Result<()>;
    /// Status of one sandbox.
    async fn sandbox_status(&self, sandbox_id: &str) -> Result<SandboxStatus>;

    /// Creates a container in a sandbox; returns its id.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &SandboxConfig,
    ) -> Result<String>;
    /// Starts a created container.
    async fn start_container(&self, container_id: &str) -> Result<()>;
    /// Stops a container, killing it after `grace` if it has not exited.
    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<()>;
    /// Removes a container.
    async fn remove_container(&self, container_id: &str) -> Result<()>;
    /// Status of one container.
    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus>;
    /// Asks the runtime to reopen a container's log file (after rotation).
    async fn reopen_container_log(&self, container_id: &str) -> Result<()>;
    /// Changes the cgroup resources of a running container (CRI
    /// `UpdateContainerResources`, for in-place resize); the default says the runtime
    /// cannot, so a resize fails with that error instead of being skipped.
    async fn update_container_resources(
        &self,
        container_id: &str,
        resources: &LinuxResources,
    ) -> Result<()> {
        let _ = resources;
        Err(crate::RuntimeError {
            operation: "UpdateContainerResources",
            object: container_id.to_owned(),
            kind: crate::RuntimeErrorKind::Unimplemented,
            message: "this runtime cannot change a container's resources".to_owned(),
            timeout: None,
        }
        .into())
    }

    /// The cgroup driver the runtime uses (CRI `RuntimeConfig`), so that the kubelet makes
    /// pod cgroups the way the runtime expects them; `None` when the runtime cannot say
    /// (the default, and containerd before 2.0): the configured `cgroupDriver` holds then.
    async fn cgroup_driver(&self) -> Result<Option<CgroupDriver>> {
        Ok(None)
    }

    /// Prepares a streaming exec, attach or port-forward; returns the URL to proxy.
    async fn stream_url(&self, request: &StreamRequest) -> Result<String>;

    /// Container events as they happen, where the runtime offers them (CRI
    /// `GetContainerEvents`); the default says the runtime does not.
    async fn container_events(&self) -> Result<ContainerEvents> {
        Err(crate::RuntimeError {
            operation: "GetContainerEvents",
            object: "-".to_owned(),
            kind: crate::RuntimeErrorKind::Unimplemented,
            message: "this runtime has no event stream".to_owned(),
            timeout: None,
        }
        .into())
    }
}

/// Image pulls and the image store: the other half of a container runtime.
#[async_trait]
pub trait ImageService: Send + Sync {
    /// Pulls an image, with credentials if given; returns the image reference (id) pulled.
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        sandbox_config: Option<&SandboxConfig>,
    ) -> Result<String>;
    /// The stored image with that name or id, `None` when absent.
    async fn image_status(&self, image: &str) -> Result<Option<Image>>;
    /// All stored images.
    async fn list_images(&self) -> Result<Vec<Image>>;
    /// Removes an image; removing an absent image succeeds.
    async fn remove_image(&self, image: &str) -> Result<()>;
    /// Usage of the filesystems holding images.
    async fn image_fs_info(&self) -> Result<Vec<FilesystemUsage>>;
}

// These traits are extension points held as `Arc<dyn _>`: this fails to compile if one
// stops being object safe.
const _: Option<(&dyn Runtime, &dyn ImageService, &dyn RuntimeInventory)> = None;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_status_reads_conditions() {
        let status = RuntimeStatus {
            conditions: vec![
                RuntimeCondition {
                    condition_type: RuntimeStatus::RUNTIME_READY.into(),
                    status: true,
                    ..Default::default()
                },
                RuntimeCondition {
                    condition_type: RuntimeStatus::NETWORK_READY.into(),
                    status: false,
                    reason: "NetworkPluginNotReady".into(),
                    message: "cni config uninitialized".into(),
                },
            ],
            ..Default::default()
        };
        assert!(status.runtime_ready());
        assert!(!status.network_ready());
        assert_eq!(
            status
                .condition(RuntimeStatus::NETWORK_READY)
                .map(|c| c.reason.as_str()),
            Some("NetworkPluginNotReady")
        );
        assert!(!RuntimeStatus::default().runtime_ready());
    }

    #[test]
    fn registry_auth_debug_hides_secrets() {
        let auth = RegistryAuth {
            username: "u".into(),
            password: "hunter2".into(),
            registry_token: "tok".into(),
            ..Default::default()
        };
        let text = format!("{auth:?}");
        assert!(text.contains("\"u\""));
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("tok"));
    }
}
