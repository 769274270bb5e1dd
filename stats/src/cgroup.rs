//! Readers of cgroup v1 and v2 files, as cAdvisor reads them for the kubelet.
//!
//! Every function takes the cgroup mount root (`/sys/fs/cgroup`) so tests can point it
//! at a fake tree. Cgroups are named by their path relative to the hierarchy root
//! (`""` for the root, `kubepods/burstable/pod<uid>` for a pod).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::procfs::{self, read_to_string};
use crate::time::Time;

/// Limits above this are "unlimited" (upstream's `isMemoryUnlimited`).
const MAX_MEMORY_SIZE: u64 = 1 << 62;

pub use kubelet_cgroups::CgroupVersion;

/// Memory of a cgroup, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemorySample {
    /// All memory in use, page cache included.
    pub usage: u64,
    /// Usage minus inactive file pages (0 when those exceed the usage).
    pub working_set: u64,
    /// v1 `total_rss`, v2 `anon`.
    pub rss: u64,
    /// `pgfault` of the cgroup itself (cAdvisor's container data).
    pub page_faults: u64,
    /// `pgmajfault` of the cgroup itself.
    pub major_page_faults: u64,
    /// The memory limit; `None` when unlimited.
    pub limit: Option<u64>,
    /// Swap in use, when the kernel accounts it.
    pub swap_usage: Option<u64>,
    /// The swap limit (v1: memory+swap); `None` when unlimited or not accounted.
    pub swap_limit: Option<u64>,
}

impl MemorySample {
    /// Memory left: the limit minus the working set, when limited.
    pub fn available(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.working_set))
    }

    /// Swap left: the swap limit minus swap usage, when limited (as cAdvisor).
    pub fn swap_available(&self) -> Option<u64> {
        match (self.swap_limit, self.swap_usage) {
            (Some(limit), Some(usage)) => Some(limit.saturating_sub(usage)),
            _ => None,
        }
    }
}

/// CPU and memory of one cgroup at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupSample {
    /// When read.
    pub time: Time,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Memory, when the memory controller could be read.
    pub memory: Option<MemorySample>,
}

/// Where cgroups of this machine live, and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    root: PathBuf,
    version: CgroupVersion,
}

impl Cgroups {
    /// The cgroups mounted at `root`, with the version detected from it.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let version = CgroupVersion::detect(&root);
        Self { root, version }
    }

    /// The cgroups mounted at `root` with a known version.
    pub fn with_version(root: impl Into<PathBuf>, version: CgroupVersion) -> Self {
        Self {
            root: root.into(),
            version,
        }
    }

    /// The hierarchy version.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Directory of a cgroup in a controller's hierarchy (the controller is ignored on v2).
    pub fn dir(&self, controller: &str, cgroup: &str) -> PathBuf {
        let base = match self.version {
            CgroupVersion::V1 => self.root.join(controller),
            CgroupVersion::V2 => self.root.clone(),
        };
        let cgroup = cgroup.trim_matches('/');
        if cgroup.is_empty() {
            base
        } else {
            base.join(cgroup)
        }
    }

    /// Reads CPU and memory of a cgroup. `proc_root` is used for the v2 root cgroup,
    /// whose memory usage comes from `/proc/meminfo` as libcontainer does.
    pub fn sample(&self, cgroup: &str, proc_root: &Path) -> Result<CgroupSample> {
        let time = Time::now();
        let cpu = match self.cpu_usage_ns(cgroup) {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let memory = match self.memory(cgroup, proc_root) {
            Ok(m) => Some(m),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        if cpu.is_none() && memory.is_none() {
            return Err(Error::io(
                self.dir("memory", cgroup),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such cgroup"),
            ));
        }
        Ok(CgroupSample {
            time,
            cpu_usage_ns: cpu,
            memory,
        })
    }

    /// Cumulative CPU time of a cgroup in nanoseconds: v1 `cpuacct.usage`, v2
    /// `usage_usec` of `cpu.stat`.
    pub fn cpu_usage_ns(&self, cgroup: &str) -> Result<u64> {
        match self.version {
            CgroupVersion::V1 => {
                let mut dir = self.dir("cpuacct", cgroup);
                if !dir.exists() {
                    let alt = self.dir("cpu,cpuacct", cgroup);
                    if alt.exists() {
                        dir = alt;
                    }
                }
                read_u64(&dir.join("cpuacct.usage"))
            }
            CgroupVersion::V2 => {
                let path = self.dir("", cgroup).join("cpu.stat");
                let stat = read_flat_keyed(&path)?;
                stat.get("usage_usec")
                    .map(|us| us.saturating_mul(1000))
                    .ok_or_else(|| Error::parse(path, "no usage_usec"))
            }
        }
    }

    /// Memory of a cgroup.
    pub fn memory(&self, cgroup: &str, proc_root: &Path) -> Result<MemorySample> {
        let dir = self.dir("memory", cgroup);
        let stat = read_flat_keyed(&dir.join("memory.stat"))?;
        let get = |k: &str| stat.get(k).copied().unwrap_or_default();
        match self.version {
            CgroupVersion::V1 => {
                let usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
                let limit = read_u64(&dir.join("memory.limit_in_bytes"))
                    .ok()
                    .filter(|l| *l <= MAX_MEMORY_SIZE);
                let swap_limit = read_u64(&dir.join("memory.memsw.limit_in_bytes"))
                    .ok()
                    .filter(|l| *l <= MAX_MEMORY_SIZE);
                Ok(MemorySample {
                    usage,
                    working_set: usage.saturating_sub(get("total_inactive_file")),
                    rss: get("total_rss"),
                    page_faults: get("pgfault"),
                    major_page_faults: get("pgmajfault"),
                    limit,
                    swap_usage: stat.get("total_swap").copied(),
                    swap_limit,
                })
            }
            CgroupVersion::V2 => {
                let is_root = cgroup.trim_matches('/').is_empty();
                let usage = if is_root {
                    let mem = procfs::read_meminfo(proc_root)?;
                    mem.mem_total.saturating_sub(mem.mem_free)
                } else {
                    read_u64(&dir.join("memory.current"))?
                };
                let limit = if is_root {
                    None
                } else {
                    read_limit(&dir.join("memory.max"))?
                };
                let (swap_usage, swap_limit) = if is_root {
                    let mem = procfs::read_meminfo(proc_root)?;
                    let used = mem.swap_total.saturating_sub(mem.swap_free);
                    (Some(used), Some(mem.swap_total))
                } else {
                    (
                        read_u64(&dir.join("memory.swap.current")).ok(),
                        read_limit(&dir.join("memory.swap.max")).ok().flatten(),
                    )
                };
                Ok(MemorySample {
                    usage,
                    working_set: usage.saturating_sub(get("inactive_file")),
                    rss: get("anon"),
                    page_faults: get("pgfault"),
                    major_page_faults: get("pgmajfault"),
                    limit,
                    swap_usage,
                    swap_limit,
                })
            }
        }
    }

    /// Number of processes in a cgroup (lines of `cgroup.procs`).
    pub fn process_count(&self, cgroup: &str) -> Result<u64> {
        let path = self.dir("pids", cgroup).join("cgroup.procs");
        let path = if self.version == CgroupVersion::V1 && !path.exists() {
            self.dir("memory", cgroup).join("cgroup.procs")
        } else {
            path
        };
        let text = read_to_string(&path)?;
        Ok(text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
    }

    /// A process of a cgroup or of one of its descendants, searched breadth first.
    pub fn any_pid(&self, cgroup: &str) -> Option<u32> {
        let mut queue = std::collections::VecDeque::from([self.dir("memory", cgroup)]);
        while let Some(dir) = queue.pop_front() {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs"))
                && let Some(pid) = text.lines().find_map(|l| l.trim().parse::<u32>().ok())
            {
                return Some(pid);
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        queue.push_back(entry.path());
                    }
                }
            }
        }
        None
    }

    /// The cgroup of a container below its pod's cgroup: `<pod>/<id>` with the cgroupfs
    /// driver, `<pod>/cri-containerd-<id>.scope` (or `crio-<id>.scope`) with systemd.
    pub fn container_cgroup(&self, pod_cgroup: &str, container_id: &str) -> Option<String> {
        let pod = pod_cgroup.trim_matches('/');
        [
            container_id.to_owned(),
            format!("cri-containerd-{container_id}.scope"),
            format!("crio-{container_id}.scope"),
        ]
        .into_iter()
        .map(|name| format!("{pod}/{name}"))
        .find(|cg| self.dir("memory", cg).is_dir())
    }

    /// The pod cgroups on the node, by pod UID, found by listing the QoS cgroups of both
    /// drivers: `kubepods[/burstable|/besteffort]/pod<uid>` (cgroupfs) and
    /// `kubepods.slice/[kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid_>.slice` (systemd).
    pub fn pod_cgroups(&self) -> HashMap<String, String> {
        let mut pods = HashMap::new();
        let scan = |parent: &str, pods: &mut HashMap<String, String>| {
            let Ok(entries) = std::fs::read_dir(self.dir("memory", parent)) else {
                return;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let uid = if let Some(uid) = name.strip_prefix("pod") {
                    Some(uid.to_owned())
                } else if let Some(slice) = name.strip_suffix(".slice") {
                    slice
                        .rsplit_once("-pod")
                        .filter(|(prefix, _)| prefix.starts_with("kubepods"))
                        .map(|(_, uid)| uid.replace('_', "-"))
                } else {
                    None
                };
                if let Some(uid) = uid.filter(|u| !u.is_empty()) {
                    pods.insert(uid, format!("{parent}/{name}"));
                }
            }
        };
        for parent in [
            "kubepods",
            "kubepods/burstable",
            "kubepods/besteffort",
            "kubepods.slice",
            "kubepods.slice/kubepods-burstable.slice",
            "kubepods.slice/kubepods-besteffort.slice",
        ] {
            scan(parent, &mut pods);
        }
        pods
    }

    /// The cgroup holding all pods (`kubepods` or `kubepods.slice`), if present.
    pub fn pods_cgroup(&self) -> Option<&'static str> {
        ["kubepods", "kubepods.slice"]
            .into_iter()
            .find(|cg| self.dir("memory", cg).is_dir())
    }
}

fn read_u64(path: &Path) -> Result<u64> {
    let text = read_to_string(path)?;
    text.trim()
        .parse()
        .map_err(|e| Error::parse(path, format!("{:?}: {e}", text.trim())))
}

/// A v2 limit file: a number, or `max` for unlimited.
fn read_limit(path: &Path) -> Result<Option<u64>> {
    let text = read_to_string(path)?;
    match text.trim() {
        "max" => Ok(None),
        v => v
            .parse::<u64>()
            .map(|l| Some(l).filter(|l| *l <= MAX_MEMORY_SIZE))
            .map_err(|e| Error::parse(path, format!("{v:?}: {e}"))),
    }
}

/// A `key value` per line file (`memory.stat`, `cpu.stat`).
fn read_flat_keyed(path: &Path) -> Result<HashMap<String, u64>> {
    let text = read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn write(path: &Path, content: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, content).expect("write");
    }

    /// A cgroup v1 tree: root, a burstable pod with one container.
    pub(crate) fn fake_v1(root: &Path, pod_uid: &str, container_id: &str) {
        let pod = format!("kubepods/burstable/pod{pod_uid}");
        for (cg, cpu, usage, inactive) in [
            ("", 9_000_000_000u64, 4_000_000_000u64, 1_000_000_000u64),
            ("kubepods", 4_000_000_000, 400_000_000, 100_000_000),
            (pod.as_str(), 3_000_000_000, 300_000_000, 100_000_000),
            (
                &format!("{pod}/{container_id}"),
                2_000_000_000,
                200_000_000,
                50_000_000,
            ),
        ] {
            let cg = if cg.is_empty() {
                String::new()
            } else {
                format!("/{cg}")
            };
            write(
                &root.join(format!("cpuacct{cg}/cpuacct.usage")),
                &format!("{cpu}\n"),
            );
            write(
                &root.join(format!("memory{cg}/memory.usage_in_bytes")),
                &format!("{usage}\n"),
            );
            write(
                &root.join(format!("memory{cg}/memory.stat")),
                &format!(
                    "cache 1\nrss 2\npgfault 70\npgmajfault 7\ntotal_rss {}\ntotal_swap 0\ntotal_inactive_file {inactive}\n",
                    usage / 2
                ),
            );
            write(
                &root.join(format!("memory{cg}/memory.limit_in_bytes")),
                "9223372036854771712\n",
            );
            write(&root.join(format!("pids{cg}/cgroup.procs")), "");
        }
        write(
            &root.join(format!("memory/{pod}/memory.limit_in_bytes")),
            "500000000\n",
        );
        write(
            &root.join(format!("pids/{pod}/{container_id}/cgroup.procs")),
            "42\n43\n",
        );
        write(
            &root.join(format!("memory/{pod}/{container_id}/cgroup.procs")),
            "42\n43\n",
        );
    }

    #[test]
    fn reads_cgroup_v1_cpu_memory_and_processes() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_v1(dir.path(), "u-1", "c1");
        let cgroups = Cgroups::new(dir.path());
        assert_eq!(cgroups.version(), CgroupVersion::V1);
        let root = cgroups.sample("", dir.path()).expect("root");
        assert_eq!(root.cpu_usage_ns, Some(9_000_000_000));
        let mem = root.memory.expect("memory");
        assert_eq!(mem.usage, 4_000_000_000);
        assert_eq!(mem.working_set, 3_000_000_000);
        assert_eq!(mem.rss, 2_000_000_000);
        assert_eq!((mem.page_faults, mem.major_page_faults), (70, 7));
        assert_eq!(mem.limit, None, "the v1 'unlimited' value is no limit");
        assert_eq!(mem.swap_usage, Some(0));

        let pods = cgroups.pod_cgroups();
        assert_eq!(
            pods.get("u-1").map(String::as_str),
            Some("kubepods/burstable/podu-1")
        );
        let pod = cgroups
            .sample("kubepods/burstable/podu-1", dir.path())
            .expect("pod");
        let mem = pod.memory.expect("memory");
        assert_eq!(mem.working_set, 200_000_000);
        assert_eq!(mem.available(), Some(300_000_000));
        let container = cgroups
            .container_cgroup("kubepods/burstable/podu-1", "c1")
            .expect("container cgroup");
        assert_eq!(cgroups.process_count(&container).expect("procs"), 2);
        assert_eq!(cgroups.any_pid("kubepods/burstable/podu-1"), Some(42));
        assert!(cgroups.sample("kubepods/nope", dir.path()).is_err());
    }

    #[test]
    fn reads_cgroup_v2_cpu_memory_and_systemd_pods() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(&root.join("cgroup.controllers"), "cpu memory pids\n");
        write(&root.join("cpu.stat"), "usage_usec 5000000\nuser_usec 1\n");
        write(
            &root.join("memory.stat"),
            "anon 100\nfile 200\ninactive_file 1024\npgfault 9\npgmajfault 1\n",
        );
        let proc_root = root.join("proc");
        write(
            &proc_root.join("meminfo"),
            "MemTotal: 8 kB\nMemFree: 2 kB\nSwapTotal: 4 kB\nSwapFree: 3 kB\n",
        );
        let pod = "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poda_b_c.slice";
        write(&root.join(pod).join("cpu.stat"), "usage_usec 1500\n");
        write(&root.join(pod).join("memory.current"), "4096\n");
        write(&root.join(pod).join("memory.max"), "max\n");
        write(&root.join(pod).join("memory.swap.current"), "0\n");
        write(&root.join(pod).join("memory.swap.max"), "max\n");
        write(
            &root.join(pod).join("memory.stat"),
            "anon 3000\ninactive_file 1000\npgfault 5\npgmajfault 0\n",
        );
        write(
            &root.join(pod).join("cri-containerd-abc.scope/cgroup.procs"),
            "7\n",
        );

        let cgroups = Cgroups::new(root);
        assert_eq!(cgroups.version(), CgroupVersion::V2);
        let node = cgroups.sample("", &proc_root).expect("root");
        assert_eq!(node.cpu_usage_ns, Some(5_000_000_000));
        let mem = node.memory.expect("memory");
        assert_eq!(mem.usage, 6 * 1024, "MemTotal - MemFree");
        assert_eq!(mem.working_set, 5 * 1024);
        assert_eq!(mem.rss, 100);
        assert_eq!(mem.swap_usage, Some(1024));

        let pods = cgroups.pod_cgroups();
        assert_eq!(pods.get("a-b-c").map(String::as_str), Some(pod));
        let sample = cgroups.sample(pod, &proc_root).expect("pod");
        assert_eq!(sample.cpu_usage_ns, Some(1_500_000));
        let mem = sample.memory.expect("memory");
        assert_eq!((mem.usage, mem.working_set, mem.rss), (4096, 3096, 3000));
        assert_eq!(mem.limit, None);
        assert_eq!(mem.available(), None);
        assert_eq!(mem.swap_usage, Some(0));
        let container = cgroups.container_cgroup(pod, "abc").expect("scope");
        assert_eq!(cgroups.process_count(&container).expect("procs"), 1);
    }
}
