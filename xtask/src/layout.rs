//! Where the test environment keeps its state, and its fixed names and addresses.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// containerd's gRPC socket (the kubelet's default CRI endpoint).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// The CRI endpoint URL for [`CONTAINERD_SOCKET`].
pub const CRI_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
/// The plain registry, as image references name it.
pub const REGISTRY: &str = "localhost:5000";
/// Where the plain registry listens.
pub const REGISTRY_ADDR: &str = "127.0.0.1:5000";
/// The second runtime handler containerd is configured with, for RuntimeClass tests.
pub const TEST_RUNTIME_HANDLER: &str = "kubelet-test-runc";
/// The registry that requires basic auth, as image references name it.
pub const AUTH_REGISTRY: &str = "localhost:5001";
/// Where the auth registry listens.
pub const AUTH_REGISTRY_ADDR: &str = "127.0.0.1:5001";
/// The auth registry's user.
pub const AUTH_USER: &str = "kubelet-test";
/// The pod network.
pub const POD_CIDR: &str = "10.88.0.0/16";
/// The CNI bridge.
pub const BRIDGE: &str = "cni0";
/// The CNI network name.
pub const CNI_NETWORK: &str = "kubelet-rs-test";
/// The repository and tag of the pause image in the plain registry.
pub const PAUSE_REPO: &str = "pause";
/// The pause image tag.
pub const PAUSE_TAG: &str = "3.10";
/// The busybox repository name.
pub const BUSYBOX_REPO: &str = "busybox";
/// Busybox images only the image garbage collection tests pull (tags `a` and `b`, each a
/// distinct image sharing busybox's layer), so removing them harms no other test.
pub const BUSYBOX_GC_REPO: &str = "busybox-gc";
/// The tags of [`BUSYBOX_GC_REPO`].
pub const BUSYBOX_GC_TAGS: [&str; 2] = ["a", "b"];
/// The directory where CRI's network namespaces are mounted.
pub const NETNS_DIR: &str = "/run/netns";
/// The bridge's own address, the pod network's gateway: the apiserver listens here so that
/// pods reach it as well as the host.
pub const BRIDGE_ADDR: &str = "10.88.0.1";
/// The bridge's address with the pod network's prefix length, as CNI's bridge plugin sets it.
pub const BRIDGE_ADDR_CIDR: &str = "10.88.0.1/16";
/// The Kubernetes version of the control plane.
pub const K8S_VERSION: &str = "v1.37.2";
/// The etcd version of the control plane.
pub const ETCD_VERSION: &str = "v3.7.3";
/// The apiserver's secure port.
pub const APISERVER_PORT: u16 = 6443;
/// The cluster name in the kubeconfigs.
pub const CLUSTER_NAME: &str = "kubelet-test";

/// The full pause image reference (containerd's `sandbox_image`).
pub fn pause_image() -> String {
    format!("{REGISTRY}/{PAUSE_REPO}:{PAUSE_TAG}")
}

/// The busybox image the tests use.
pub fn busybox_image() -> String {
    format!("{REGISTRY}/{BUSYBOX_REPO}:latest")
}

/// Paths of the workspace and of the environment's state directory.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The workspace root.
    pub workspace: PathBuf,
    /// The single directory that holds all state of the environment.
    pub state: PathBuf,
}

impl Layout {
    /// The layout for `$KUBELET_ENV_DIR`, by default `<workspace>/target/env`.
    pub fn from_env() -> Result<Self> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent directory")?
            .to_path_buf();
        let state = match std::env::var_os("KUBELET_ENV_DIR") {
            Some(dir) if !dir.is_empty() => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() {
                    dir
                } else {
                    std::env::current_dir()?.join(dir)
                }
            }
            _ => workspace.join("target").join("env"),
        };
        Ok(Layout { workspace, state })
    }

    /// containerd's own directory.
    pub fn containerd_dir(&self) -> PathBuf {
        self.state.join("containerd")
    }
    /// containerd's config file.
    pub fn containerd_config(&self) -> PathBuf {
        self.containerd_dir().join("config.toml")
    }
    /// containerd's `root` (content, snapshots, metadata: the image cache).
    pub fn containerd_root(&self) -> PathBuf {
        self.containerd_dir().join("root")
    }
    /// containerd's `state` (task bundles, rootfs and shm mounts).
    pub fn containerd_state(&self) -> PathBuf {
        self.containerd_dir().join("state")
    }
    /// The runc root given to the runc v2 shim; the shim appends the namespace.
    pub fn runc_root_base(&self) -> PathBuf {
        self.containerd_dir().join("runc")
    }
    /// The runc root of CRI's containers (namespace k8s.io).
    pub fn runc_roots(&self) -> Vec<PathBuf> {
        vec![
            self.runc_root_base().join("k8s.io"),
            self.runc_root_base().join("default"),
            // containerd's built-in default, should a config without Root have been used.
            PathBuf::from("/run/containerd/runc/k8s.io"),
            PathBuf::from("/run/containerd/runc/default"),
        ]
    }
    /// containerd's `opt` plugin directory.
    pub fn containerd_opt(&self) -> PathBuf {
        self.containerd_dir().join("opt")
    }
    /// The CNI config directory.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.state.join("cni").join("net.d")
    }
    /// The CNI conflist.
    pub fn cni_conflist(&self) -> PathBuf {
        self.cni_conf_dir().join("10-kubelet-rs-test.conflist")
    }
    /// host-local IPAM's data directory.
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.state.join("cni").join("ipam")
    }
    /// Log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.state.join("logs")
    }
    /// Pid files.
    pub fn run_dir(&self) -> PathBuf {
        self.state.join("run")
    }
    /// The plain registry's directory.
    pub fn registry_dir(&self) -> PathBuf {
        self.state.join("registry")
    }
    /// The auth registry's directory.
    pub fn auth_registry_dir(&self) -> PathBuf {
        self.state.join("auth-registry")
    }
    /// Where the OCI layouts of the test images are built.
    pub fn images_dir(&self) -> PathBuf {
        self.state.join("images")
    }
    /// The control plane's directory: PKI, kubeconfigs, pid files, start scripts, etcd.
    pub fn control_plane_dir(&self) -> PathBuf {
        self.state.join("control-plane")
    }
    /// The control plane's certificates and keys.
    pub fn pki_dir(&self) -> PathBuf {
        self.control_plane_dir().join("pki")
    }
    /// etcd's data directory.
    pub fn etcd_data_dir(&self) -> PathBuf {
        self.control_plane_dir().join("etcd")
    }
    /// The scratch Go modules that build the control plane's programs. Under `target/`,
    /// not the state dir, so that `env down` and a new `KUBELET_ENV_DIR` keep it.
    pub fn k8s_build_dir(&self) -> PathBuf {
        self.workspace.join("target").join("k8s-build")
    }
    /// The cache of the built control plane programs, per Kubernetes version.
    pub fn k8s_bin_dir(&self) -> PathBuf {
        self.workspace
            .join("target")
            .join("k8s-bin")
            .join(K8S_VERSION)
    }
    /// The separate target dir for the static pause binary.
    pub fn pause_target_dir(&self) -> PathBuf {
        self.workspace.join("target").join("pause-build")
    }
}
