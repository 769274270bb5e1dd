//! The cgroup seam: [`CgroupManager`] is what the pod engine, the container manager and
//! stats ask of the node's cgroups, and [`Cgroupfs`] its backend for the cgroupfs driver
//! on cgroup v1 or v2, with the hierarchy detected once; [`Systemd`](crate::Systemd) is
//! the systemd driver's.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

use kubelet_core::CgroupDriver;

use crate::tree::ResourceConfig;
use crate::{system, tree};

/// Which cgroup hierarchy the machine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu`, ...).
    V1,
    /// The unified hierarchy.
    V2,
}

impl CgroupVersion {
    /// v2 when the cgroups mounted at `root` are the unified hierarchy (its root has
    /// `cgroup.controllers`), else v1.
    pub fn detect(root: &Path) -> Self {
        if root.join("cgroup.controllers").is_file() {
            Self::V2
        } else {
            Self::V1
        }
    }
}

/// The node's cgroups, as the kubelet uses them. Cgroups are named absolutely, e.g.
/// `/kubepods/burstable/pod<uid>`. All methods do blocking file I/O: call them from a
/// blocking thread.
pub trait CgroupManager: Send + Sync + Debug {
    /// Where the hierarchies are mounted (`/sys/fs/cgroup`).
    fn root(&self) -> &Path;

    /// The hierarchy version.
    fn version(&self) -> CgroupVersion;

    /// How cgroups are made: directories ([`Cgroupfs`]) or systemd slices
    /// ([`Systemd`](crate::Systemd)).
    fn driver(&self) -> CgroupDriver;

    /// Creates cgroup `name` in every hierarchy and writes `config` into it.
    fn apply(&self, name: &str, config: &ResourceConfig) -> io::Result<()>;

    /// Whether cgroup `name` exists (in the memory hierarchy on v1).
    fn exists(&self, name: &str) -> bool;

    /// Removes cgroup `name` from every hierarchy; absent directories are fine, one that
    /// still has processes is an error naming it.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Makes `/kubepods` with the node's allocatable resources and the QoS tiers below.
    fn ensure_qos_tree(&self, allocatable: &ResourceConfig) -> io::Result<()>;

    /// Sets the Burstable tier's CPU shares from its pods' CPU requests.
    fn update_burstable_shares(&self, total_request_milli: u64) -> io::Result<()>;

    /// Moves process `pid` into cgroup `name` (made when missing) in every hierarchy.
    fn move_process(&self, name: &str, pid: u32) -> io::Result<()>;

    /// Moves the root cgroup's processes (not kernel threads, not pid 1) into `name`;
    /// returns how many moved.
    fn move_root_processes(&self, proc_root: &Path, name: &str) -> io::Result<usize>;

    /// The cgroup process `pid` (or `self`) is accounted in, as upstream's
    /// `getContainer`: the same in the cpu and memory hierarchies on v1, else an error.
    fn process_cgroup(&self, proc_root: &Path, pid: &str) -> io::Result<String>;
}

/// The cgroupfs driver: cgroups are directories under the mount root, on cgroup v1 (one
/// hierarchy per controller) or v2 (the unified hierarchy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroupfs {
    root: PathBuf,
    version: CgroupVersion,
}

impl Cgroupfs {
    /// The cgroups mounted at `root`, of a known version.
    pub fn new(root: impl Into<PathBuf>, version: CgroupVersion) -> Self {
        Self {
            root: root.into(),
            version,
        }
    }

    /// The cgroups mounted at `root`, with the version read from it once.
    pub fn detect(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let version = CgroupVersion::detect(&root);
        Self { root, version }
    }

    /// The cgroups of this machine (`/sys/fs/cgroup`).
    pub fn host() -> Self {
        Self::detect(crate::CGROUP_ROOT)
    }

    pub(crate) fn is_v2(&self) -> bool {
        self.version == CgroupVersion::V2
    }

    /// The directories of cgroup `name` in every hierarchy: the unified tree on v2, each
    /// mounted controller on v1 (controllers mounted together appear once).
    pub fn cgroup_dirs(&self, name: &str) -> io::Result<Vec<PathBuf>> {
        system::cgroup_dirs(self, name)
    }
}

impl CgroupManager for Cgroupfs {
    fn root(&self) -> &Path {
        &self.root
    }

    fn version(&self) -> CgroupVersion {
        self.version
    }

    fn driver(&self) -> CgroupDriver {
        CgroupDriver::Cgroupfs
    }

    fn apply(&self, name: &str, config: &ResourceConfig) -> io::Result<()> {
        tree::apply(self, name, config)
    }

    fn exists(&self, name: &str) -> bool {
        tree::exists(self, name)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        if name.trim_matches('/').is_empty() {
            return Ok(());
        }
        for dir in self.cgroup_dirs(name)? {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("removing cgroup {}: {e}", dir.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn ensure_qos_tree(&self, allocatable: &ResourceConfig) -> io::Result<()> {
        tree::ensure_qos_tree(self, allocatable)
    }

    fn update_burstable_shares(&self, total_request_milli: u64) -> io::Result<()> {
        tree::update_burstable_shares(self, total_request_milli)
    }

    fn move_process(&self, name: &str, pid: u32) -> io::Result<()> {
        system::move_process(self, name, pid)
    }

    fn move_root_processes(&self, proc_root: &Path, name: &str) -> io::Result<usize> {
        system::move_root_processes(self, proc_root, name)
    }

    fn process_cgroup(&self, proc_root: &Path, pid: &str) -> io::Result<String> {
        system::process_cgroup(self, proc_root, pid)
    }
}
