//! [`StatsProvider`]: the summary and resource metrics from the runtime, cgroups, /proc
//! and the filesystems.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use kubelet_core::labels::{POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL};
use kubelet_core::{
    Container, ContainerFilter, ContainerState, FilesystemUsage, ImageService, RuntimeInventory,
    Sandbox, SandboxFilter, SandboxState,
};

use crate::cgroup::{CgroupSample, Cgroups};
use crate::cpu::CpuUsageCache;
use crate::error::{Error, Result};
use crate::fs::{self, DiskUsage, FsInfo};
use crate::metrics::render_resource_metrics;
use crate::procfs;
use crate::summary::{
    self, ContainerStats, CpuStats, FsStats, MemoryStats, NodeStats, PodReference, PodStats,
    ProcessStats, PvcReference, RuntimeStats, SYSTEM_CONTAINER_KUBELET, SYSTEM_CONTAINER_MISC,
    SYSTEM_CONTAINER_PODS, SYSTEM_CONTAINER_RUNTIME, Summary, SwapStats, VolumeStats,
};
use crate::time::Time;
use crate::volumes::{VolumeCache, list_pod_volumes};

/// Where the provider finds what it measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsPaths {
    /// The kubelet's root directory (`--root-dir`): its filesystem is the node's `fs`,
    /// pod volumes are under `pods/<uid>/volumes`.
    pub root_dir: PathBuf,
    /// Where container logs live: `<pods_log_dir>/<namespace>_<name>_<uid>/<container>/`.
    pub pods_log_dir: PathBuf,
    /// The cgroup mount (v1: the directory holding one mount per controller).
    pub cgroup_root: PathBuf,
    /// The proc filesystem.
    pub proc_root: PathBuf,
}

impl Default for StatsPaths {
    /// Upstream's defaults: `/var/lib/kubelet`, `/var/log/pods`, `/sys/fs/cgroup`, `/proc`.
    fn default() -> Self {
        Self {
            root_dir: PathBuf::from("/var/lib/kubelet"),
            pods_log_dir: PathBuf::from("/var/log/pods"),
            cgroup_root: PathBuf::from(kubelet_cgroups::CGROUP_ROOT),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// The cgroups reported as the node's system containers besides `pods`, by absolute
/// cgroup name (`/kubelet`, `/system.slice/containerd.service`); `None` leaves one out,
/// as upstream leaves out a system container whose cgroup name is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemCgroups {
    /// `kubelet`: `kubeletCgroups`, or the cgroup the kubelet runs in.
    pub kubelet: Option<String>,
    /// `runtime`: `--runtime-cgroups`.
    pub runtime: Option<String>,
    /// `misc`: `systemCgroups`.
    pub misc: Option<String>,
}

/// Node, pod and container stats of one node: `/stats/summary` and `/metrics/resource`.
///
/// Each call makes one `ListPodSandbox`, one `ListContainers` and one
/// `ListContainerStats` call (plus `ImageFsInfo` for a full summary), whatever the number
/// of pods, and does its cgroup, /proc and filesystem reads on a blocking thread. Pod
/// volumes are walked at most once per [`VOLUME_STATS_PERIOD`](crate::VOLUME_STATS_PERIOD)
/// each, in the background once measured. `usageNanoCores` comes from the runtime when
/// it reports it, otherwise from the previous sample of the same container, pod or node.
pub struct StatsProvider {
    runtime: Arc<dyn RuntimeInventory>,
    images: Arc<dyn ImageService>,
    paths: Arc<StatsPaths>,
    node_name: String,
    cpu: Arc<CpuUsageCache>,
    /// `None`: volumes are not measured (`volumeStatsAggPeriod: 0`).
    volumes: Option<VolumeCache>,
    system: RwLock<SystemCgroups>,
    kubelet_start: Time,
    cgroups: Cgroups,
    /// Volumes their plugins measure (CSI drivers' `NodeGetVolumeStats`).
    measured: Option<Arc<dyn kubelet_core::MeasuredVolumes>>,
}

impl std::fmt::Debug for StatsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsProvider")
            .field("paths", &self.paths)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// A pod as the runtime lists it: its newest ready sandbox and its running containers.
#[derive(Debug, Clone)]
pub(crate) struct PodEntry {
    pub(crate) sandbox: Sandbox,
    pub(crate) pod_ref: PodReference,
    pub(crate) containers: Vec<(Container, Option<kubelet_core::ContainerStats>)>,
}

fn pod_ref(sandbox: &Sandbox) -> PodReference {
    let label = |key: &str, fallback: &str| {
        sandbox
            .labels
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| fallback.to_owned())
    };
    PodReference {
        name: label(POD_NAME_LABEL, &sandbox.metadata.name),
        namespace: label(POD_NAMESPACE_LABEL, &sandbox.metadata.namespace),
        uid: label(POD_UID_LABEL, &sandbox.metadata.uid),
    }
}

/// The pods to report: per pod UID the newest ready sandbox; per sandbox and container
/// name the newest running container, with its runtime stats.
pub(crate) fn select_pods(
    sandboxes: Vec<Sandbox>,
    containers: Vec<Container>,
    stats: Vec<kubelet_core::ContainerStats>,
) -> Vec<PodEntry> {
    let mut newest: HashMap<String, (Sandbox, PodReference)> = HashMap::new();
    for sandbox in sandboxes {
        if sandbox.state != SandboxState::Ready {
            continue;
        }
        let pod = pod_ref(&sandbox);
        match newest.get(&pod.uid) {
            Some((s, _)) if s.created_at >= sandbox.created_at => {}
            _ => {
                newest.insert(pod.uid.clone(), (sandbox, pod));
            }
        }
    }
    let by_sandbox: HashMap<String, String> = newest
        .values()
        .map(|(s, p)| (s.id.clone(), p.uid.clone()))
        .collect();
    let mut running: HashMap<(String, String), Container> = HashMap::new();
    for container in containers {
        if container.state != ContainerState::Running
            || !by_sandbox.contains_key(&container.sandbox_id)
        {
            continue;
        }
        let key = (
            container.sandbox_id.clone(),
            container.metadata.name.clone(),
        );
        match running.get(&key) {
            Some(c) if c.created_at >= container.created_at => {}
            _ => {
                running.insert(key, container);
            }
        }
    }
    let mut stats: HashMap<String, kubelet_core::ContainerStats> =
        stats.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut pods: HashMap<String, PodEntry> = newest
        .into_values()
        .map(|(sandbox, pod_ref)| {
            (
                sandbox.id.clone(),
                PodEntry {
                    sandbox,
                    pod_ref,
                    containers: Vec::new(),
                },
            )
        })
        .collect();
    for ((sandbox_id, _), container) in running {
        if let Some(pod) = pods.get_mut(&sandbox_id) {
            let s = stats.remove(&container.id);
            pod.containers.push((container, s));
        }
    }
    let mut pods: Vec<PodEntry> = pods.into_values().collect();
    for pod in &mut pods {
        pod.containers
            .sort_by(|a, b| a.0.metadata.name.cmp(&b.0.metadata.name));
    }
    pods.sort_by(|a, b| {
        (&a.pod_ref.namespace, &a.pod_ref.name, &a.pod_ref.uid).cmp(&(
            &b.pod_ref.namespace,
            &b.pod_ref.name,
            &b.pod_ref.uid,
        ))
    });
    pods
}

type RefreshJob = Box<dyn FnOnce() + Send>;

impl StatsProvider {
    /// A provider over a runtime and its image service.
    pub fn new(
        runtime: Arc<dyn RuntimeInventory>,
        images: Arc<dyn ImageService>,
        paths: StatsPaths,
        node_name: String,
    ) -> Self {
        Self {
            runtime,
            images,
            cgroups: Cgroups::new(&paths.cgroup_root),
            paths: Arc::new(paths),
            node_name,
            cpu: Arc::new(CpuUsageCache::new()),
            volumes: Some(VolumeCache::default()),
            system: RwLock::default(),
            kubelet_start: Time::now(),
            measured: None,
        }
    }

    /// Measures volume usage at most once per `period` (`volumeStatsAggPeriod`), or,
    /// with `None` (a period of 0), not at all: the summary then has no volume stats,
    /// as upstream's.
    pub fn with_volume_stats_period(mut self, period: Option<std::time::Duration>) -> Self {
        self.volumes = period.map(VolumeCache::new);
        self
    }

    /// Reports the volumes `measured` measures (CSI volumes) with their pods.
    pub fn with_measured_volumes(
        mut self,
        measured: Arc<dyn kubelet_core::MeasuredVolumes>,
    ) -> Self {
        self.measured = Some(measured);
        self
    }

    /// Reads cgroups where `cgroups` keeps them, in its hierarchy version, instead of
    /// detecting them under [`StatsPaths::cgroup_root`].
    pub fn with_cgroups(mut self, cgroups: &dyn kubelet_cgroups::CgroupManager) -> Self {
        self.cgroups = Cgroups::with_version(cgroups.root(), cgroups.version());
        self
    }

    /// Reports these cgroups as the `kubelet`, `runtime` and `misc` system containers
    /// from now on (the kubelet's own cgroup may change while it runs, as upstream
    /// re-reads it every five minutes).
    pub fn set_system_cgroups(&self, system: SystemCgroups) {
        *self.system.write().unwrap_or_else(|p| p.into_inner()) = system;
    }

    /// The summary of the node and its pods (`/stats/summary`). With
    /// `only_cpu_and_memory` (`/stats/summary?only_cpu_and_memory=true`, and what the
    /// resource metrics use) the network, filesystem, volume and process stats are left
    /// out and the image filesystem is not asked for.
    ///
    /// # Errors
    ///
    /// When the runtime fails a list call or the root cgroup cannot be read. A pod or
    /// container whose cgroup, logs or volumes cannot be read is reported without them.
    pub async fn summary(&self, only_cpu_and_memory: bool) -> Result<Summary> {
        let sandbox_filter = SandboxFilter {
            state: Some(SandboxState::Ready),
            ..Default::default()
        };
        let container_filter = ContainerFilter {
            state: Some(ContainerState::Running),
            ..Default::default()
        };
        let all = ContainerFilter::default();
        let (sandboxes, containers, stats, image_fs) = tokio::join!(
            self.runtime.list_sandboxes(&sandbox_filter),
            self.runtime.list_containers(&container_filter),
            self.runtime.list_container_stats(&all),
            async {
                if only_cpu_and_memory {
                    Ok(Vec::new())
                } else {
                    self.images.image_fs_info().await
                }
            },
        );
        let runtime_err = |operation| move |source| Error::Runtime { operation, source };
        let sandboxes = sandboxes.map_err(runtime_err("ListPodSandbox"))?;
        let containers = containers.map_err(runtime_err("ListContainers"))?;
        let stats = stats.map_err(runtime_err("ListContainerStats"))?;
        let image_fs = image_fs.map_err(runtime_err("ImageFsInfo"))?;
        if !only_cpu_and_memory && image_fs.is_empty() {
            tracing::warn!("the runtime reported no image filesystem; leaving out runtime stats");
        }
        let pods = select_pods(sandboxes, containers, stats);

        let builder = Builder {
            paths: Arc::clone(&self.paths),
            cgroups: self.cgroups.clone(),
            node_name: self.node_name.clone(),
            cpu: Arc::clone(&self.cpu),
            volumes: self.volumes.clone(),
            full: !only_cpu_and_memory,
            system: self
                .system
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            kubelet_start: self.kubelet_start,
            measured: match &self.measured {
                Some(m) if !only_cpu_and_memory && self.volumes.is_some() => m.measured_volumes(),
                _ => Vec::new(),
            },
        };
        let image_fs = image_fs.into_iter().next();
        let (summary, jobs) = tokio::task::spawn_blocking(move || builder.build(pods, image_fs))
            .await
            .map_err(|source| Error::Task {
                what: "gathering stats",
                source,
            })??;
        if !jobs.is_empty() {
            // One background task walks all stale volumes, one after the other.
            drop(tokio::task::spawn_blocking(move || {
                for job in jobs {
                    job();
                }
            }));
        }
        Ok(summary)
    }

    #[cfg(test)]
    pub(crate) fn cpu_cache_len(&self) -> usize {
        self.cpu.len()
    }

    /// `/metrics/resource` in the Prometheus text format 0.0.4 (content type
    /// [`CONTENT_TYPE`](crate::metrics::CONTENT_TYPE)), as upstream's resource metrics
    /// collector writes it from a CPU-and-memory summary. A failure to gather the stats
    /// is reported as `resource_scrape_error 1`, as upstream, not as an error.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for failures of the exposition itself.
    pub async fn resource_metrics(&self) -> Result<String> {
        match self.summary(true).await {
            Ok(summary) => Ok(render_resource_metrics(Some(&summary))),
            Err(e) => {
                tracing::warn!(error = %e, "gathering resource metrics");
                Ok(render_resource_metrics(None))
            }
        }
    }
}

/// What a blocking thread needs to read the host and assemble the summary.
struct Builder {
    paths: Arc<StatsPaths>,
    cgroups: Cgroups,
    node_name: String,
    cpu: Arc<CpuUsageCache>,
    volumes: Option<VolumeCache>,
    full: bool,
    system: SystemCgroups,
    kubelet_start: Time,
    measured: Vec<kubelet_core::VolumeUsage>,
}

/// A volume its plugin measured, as the summary reports it.
fn measured_volume_stats(u: &kubelet_core::VolumeUsage) -> VolumeStats {
    VolumeStats {
        fs: FsStats {
            time: Time::from_system_time(u.measured),
            available_bytes: u.available_bytes,
            capacity_bytes: u.capacity_bytes,
            used_bytes: u.used_bytes,
            inodes_free: u.inodes_free,
            inodes: u.inodes,
            inodes_used: u.inodes_used,
        },
        name: u.volume.clone(),
        pvc_ref: u.claim.as_ref().map(|c| PvcReference {
            name: c.name.clone(),
            namespace: c.namespace.clone(),
        }),
    }
}

fn or_now(nanos: i64) -> Time {
    if nanos > 0 {
        Time::from_unix_nanos(nanos)
    } else {
        Time::now()
    }
}

fn log_debug<T>(what: &str, result: Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(error = %e, "{what}");
            None
        }
    }
}

impl Builder {
    fn cpu_stats(&self, sample: &CgroupSample, key: &str) -> Option<CpuStats> {
        let usage = sample.cpu_usage_ns?;
        Some(CpuStats {
            time: sample.time,
            usage_nano_cores: self.cpu.update(key, sample.time, usage),
            usage_core_nano_seconds: Some(usage),
        })
    }

    fn build(
        self,
        pods: Vec<PodEntry>,
        image_fs: Option<FilesystemUsage>,
    ) -> Result<(Summary, Vec<RefreshJob>)> {
        let paths = Arc::clone(&self.paths);
        let proc_root = paths.proc_root.as_path();
        let cgroups = &self.cgroups;
        let mut keep_cpu: HashSet<String> = HashSet::new();

        // The node: the root cgroup.
        let root = cgroups.sample("", proc_root)?;
        keep_cpu.insert("node".into());
        let meminfo = log_debug("reading meminfo", procfs::read_meminfo(proc_root));
        let mut node = NodeStats {
            node_name: self.node_name.clone(),
            start_time: log_debug("reading boot time", procfs::read_boot_time(proc_root))
                .unwrap_or_default(),
            cpu: self.cpu_stats(&root, "node"),
            memory: memory_stats(&root, meminfo.map(|m| m.mem_total)),
            swap: root.memory.map(|m| SwapStats {
                time: root.time,
                swap_usage_bytes: Some(m.swap_usage.unwrap_or_default()),
                swap_available_bytes: meminfo.map(|i| {
                    i.swap_total
                        .saturating_sub(m.swap_usage.unwrap_or_default())
                }),
            }),
            ..Default::default()
        };
        // The system containers, as upstream's GetSystemContainersStats.
        let system = [
            (SYSTEM_CONTAINER_KUBELET, self.system.kubelet.as_deref()),
            (SYSTEM_CONTAINER_RUNTIME, self.system.runtime.as_deref()),
            (SYSTEM_CONTAINER_MISC, self.system.misc.as_deref()),
            (SYSTEM_CONTAINER_PODS, cgroups.pods_cgroup()),
        ];
        for (name, cgroup) in system {
            let Some(cgroup) = cgroup else { continue };
            let cgroup = cgroup.trim_matches('/');
            let Some(sample) = log_debug(
                &format!("reading the {name} system container's cgroup"),
                cgroups.sample(cgroup, proc_root),
            ) else {
                continue;
            };
            let key = format!("system/{name}");
            keep_cpu.insert(key.clone());
            let start_time = if name == SYSTEM_CONTAINER_KUBELET {
                self.kubelet_start
            } else {
                std::fs::metadata(cgroups.dir("memory", cgroup))
                    .and_then(|m| m.modified())
                    .map(Time::from_system_time)
                    .unwrap_or_default()
            };
            node.system_containers.push(ContainerStats {
                name: name.into(),
                start_time,
                cpu: self.cpu_stats(&sample, &key),
                memory: memory_stats(&sample, None),
                swap: swap_stats(&sample),
                ..Default::default()
            });
        }

        let root_fs = if self.full {
            node.network = log_debug(
                "reading host network",
                procfs::read_net_dev(&proc_root.join("net/dev"), Time::now()),
            );
            node.rlimit = log_debug(
                "reading rlimit",
                procfs::read_rlimit(proc_root, Time::now()),
            );
            let root_fs = log_debug("statfs of the root dir", fs::fs_info(&paths.root_dir));
            node.fs = root_fs.map(|info| info.full_stats());
            root_fs
        } else {
            None
        };
        let image_fs_info = image_fs.as_ref().and_then(|f| {
            log_debug(
                "statfs of the image filesystem",
                fs::fs_info(Path::new(&f.mountpoint)),
            )
        });
        if let Some(f) = &image_fs {
            let mut stats = FsStats {
                time: or_now(f.timestamp),
                used_bytes: f.used_bytes,
                inodes_used: f.inodes_used,
                ..Default::default()
            };
            if let Some(info) = &image_fs_info {
                stats.available_bytes = Some(info.available);
                stats.capacity_bytes = Some(info.capacity);
                stats.inodes_free = Some(info.inodes_free);
                stats.inodes = Some(info.inodes);
            }
            node.runtime = Some(RuntimeStats {
                image_fs: Some(stats.clone()),
                container_fs: Some(stats),
            });
        }

        // The pods.
        let pod_cgroups = if pods.is_empty() {
            HashMap::new()
        } else {
            cgroups.pod_cgroups()
        };
        let mut jobs: Vec<RefreshJob> = Vec::new();
        let mut keep_volumes: HashSet<PathBuf> = HashSet::new();
        let mut result = Vec::with_capacity(pods.len());
        for pod in pods {
            let uid = pod.pod_ref.uid.clone();
            let pod_cgroup = pod_cgroups.get(&uid).map(String::as_str);
            let sample = pod_cgroup
                .and_then(|cg| log_debug("reading a pod cgroup", cgroups.sample(cg, proc_root)));
            let mut stats = PodStats {
                pod_ref: pod.pod_ref.clone(),
                start_time: Time::from_unix_nanos(pod.sandbox.created_at),
                ..Default::default()
            };
            let mut processes: Option<u64> = None;
            for (container, cri) in &pod.containers {
                keep_cpu.insert(container.id.clone());
                let cgroup = pod_cgroup.and_then(|p| cgroups.container_cgroup(p, &container.id));
                let cg_memory = cgroup
                    .as_deref()
                    .and_then(|cg| cgroups.memory(cg, proc_root).ok());
                if self.full
                    && let Some(count) = cgroup
                        .as_deref()
                        .and_then(|cg| cgroups.process_count(cg).ok())
                {
                    processes = Some(processes.unwrap_or_default() + count);
                }
                let mut cs = self.container_stats(container, cri.as_ref(), cg_memory);
                if self.full {
                    cs.rootfs = Some(rootfs_stats(cri.as_ref(), image_fs_info.as_ref()));
                    let dir = paths
                        .pods_log_dir
                        .join(format!(
                            "{}_{}_{}",
                            pod.pod_ref.namespace, pod.pod_ref.name, pod.pod_ref.uid
                        ))
                        .join(&container.metadata.name);
                    cs.logs = log_debug("container log usage", fs::files_usage(&dir))
                        .map(|usage| usage_stats(root_fs.as_ref(), usage));
                }
                stats.containers.push(cs);
            }
            match &sample {
                Some(sample) => {
                    let key = format!("pod/{uid}");
                    stats.cpu = self.cpu_stats(sample, &key);
                    keep_cpu.insert(key);
                    stats.memory = memory_stats(sample, None);
                    stats.swap = swap_stats(sample);
                }
                None => sum_container_cpu_memory(&mut stats),
            }
            if self.full {
                stats.process_stats = processes.map(|n| ProcessStats {
                    process_count: Some(n),
                });
                if let Some(cg) = pod_cgroup {
                    let pid = cgroups
                        .container_cgroup(cg, &pod.sandbox.id)
                        .and_then(|sandbox_cg| cgroups.any_pid(&sandbox_cg))
                        .or_else(|| cgroups.any_pid(cg));
                    stats.network = pid.and_then(|pid| {
                        log_debug(
                            "reading pod network",
                            procfs::read_net_dev(
                                &proc_root.join(pid.to_string()).join("net/dev"),
                                Time::now(),
                            ),
                        )
                    });
                }
                let mut ephemeral_volumes = Vec::new();
                let walked = match &self.volumes {
                    Some(_) => list_pod_volumes(&paths.root_dir, &uid),
                    None => Vec::new(),
                };
                for volume in walked {
                    keep_volumes.insert(volume.path.clone());
                    let Some(vs) = self
                        .volumes
                        .as_ref()
                        .and_then(|cache| cache.volume_stats(&volume, &mut |job| jobs.push(job)))
                    else {
                        continue;
                    };
                    if volume.local_ephemeral {
                        ephemeral_volumes.push(vs.fs.clone());
                    }
                    stats.volume_stats.push(vs);
                }
                stats.volume_stats.extend(
                    self.measured
                        .iter()
                        .filter(|u| u.pod_uid == uid)
                        .map(measured_volume_stats),
                );
                if let Some(root_fs) = &root_fs {
                    let pod_logs = paths.pods_log_dir.join(format!(
                        "{}_{}_{}",
                        pod.pod_ref.namespace, pod.pod_ref.name, pod.pod_ref.uid
                    ));
                    let pod_log_stats = fs::files_usage(&pod_logs)
                        .ok()
                        .map(|u| usage_stats(Some(root_fs), u));
                    let etc_hosts = paths.root_dir.join("pods").join(&uid).join("etc-hosts");
                    let etc_hosts_stats = fs::disk_usage(&etc_hosts)
                        .ok()
                        .map(|u| usage_stats(Some(root_fs), u));
                    stats.ephemeral_storage = Some(ephemeral_storage(
                        root_fs,
                        &stats.containers,
                        &ephemeral_volumes,
                        [pod_log_stats, etc_hosts_stats],
                    ));
                }
            }
            result.push(stats);
        }
        self.cpu.retain(&keep_cpu);
        if self.full
            && let Some(cache) = &self.volumes
        {
            cache.retain(&keep_volumes);
        }
        Ok((Summary { node, pods: result }, jobs))
    }

    fn container_stats(
        &self,
        container: &Container,
        cri: Option<&kubelet_core::ContainerStats>,
        cg_memory: Option<crate::cgroup::MemorySample>,
    ) -> ContainerStats {
        let now = Time::now();
        let cpu = match cri.and_then(|s| s.cpu_usage_core_nano_seconds.map(|u| (s, u))) {
            Some((s, usage)) => {
                let time = or_now(s.timestamp);
                CpuStats {
                    time,
                    usage_nano_cores: s
                        .cpu_usage_nano_cores
                        .or_else(|| self.cpu.update(&container.id, time, usage)),
                    usage_core_nano_seconds: Some(usage),
                }
            }
            // As upstream: zeros when the runtime has no CPU stats.
            None => CpuStats {
                time: now,
                usage_nano_cores: Some(0),
                usage_core_nano_seconds: Some(0),
            },
        };
        let memory = match cri.filter(|s| s.memory_working_set_bytes.is_some()) {
            Some(s) => MemoryStats {
                time: or_now(s.timestamp),
                available_bytes: cg_memory.and_then(|m| m.available()),
                usage_bytes: s.memory_usage_bytes,
                working_set_bytes: s.memory_working_set_bytes,
                rss_bytes: s.memory_rss_bytes,
                page_faults: cg_memory.map(|m| m.page_faults),
                major_page_faults: cg_memory.map(|m| m.major_page_faults),
            },
            None => MemoryStats {
                time: now,
                usage_bytes: Some(0),
                working_set_bytes: Some(0),
                rss_bytes: Some(0),
                ..Default::default()
            },
        };
        let swap = match cg_memory {
            Some(m) => SwapStats {
                time: memory.time,
                swap_usage_bytes: Some(m.swap_usage.unwrap_or_default()),
                swap_available_bytes: m.swap_available(),
            },
            None => SwapStats {
                time: now,
                swap_usage_bytes: Some(0),
                swap_available_bytes: Some(0),
            },
        };
        ContainerStats {
            name: container.metadata.name.clone(),
            start_time: Time::from_unix_nanos(container.created_at),
            cpu: Some(cpu),
            memory: Some(memory),
            swap: Some(swap),
            ..Default::default()
        }
    }
}

fn memory_stats(sample: &CgroupSample, capacity: Option<u64>) -> Option<MemoryStats> {
    let m = sample.memory?;
    let available = match capacity {
        Some(total) => Some(total.saturating_sub(m.working_set)),
        None => m.available(),
    };
    Some(MemoryStats {
        time: sample.time,
        available_bytes: available,
        usage_bytes: Some(m.usage),
        working_set_bytes: Some(m.working_set),
        rss_bytes: Some(m.rss),
        page_faults: Some(m.page_faults),
        major_page_faults: Some(m.major_page_faults),
    })
}

fn swap_stats(sample: &CgroupSample) -> Option<SwapStats> {
    let m = sample.memory?;
    Some(SwapStats {
        time: sample.time,
        swap_usage_bytes: Some(m.swap_usage.unwrap_or_default()),
        swap_available_bytes: m.swap_available(),
    })
}

/// A pod without a readable cgroup: CPU and memory summed over its containers
/// (upstream's fallback in `addPodCPUMemoryStats`).
fn sum_container_cpu_memory(pod: &mut PodStats) {
    for c in &pod.containers {
        if let Some(cpu) = &c.cpu {
            let p = pod.cpu.get_or_insert_with(CpuStats::default);
            p.time = cpu.time;
            p.usage_core_nano_seconds = Some(
                p.usage_core_nano_seconds.unwrap_or_default()
                    + cpu.usage_core_nano_seconds.unwrap_or_default(),
            );
            p.usage_nano_cores = Some(
                p.usage_nano_cores.unwrap_or_default() + cpu.usage_nano_cores.unwrap_or_default(),
            );
        }
        if let Some(mem) = &c.memory {
            let p = pod.memory.get_or_insert_with(MemoryStats::default);
            p.time = mem.time;
            let add = |a: Option<u64>, b: Option<u64>| {
                Some(a.unwrap_or_default() + b.unwrap_or_default())
            };
            p.available_bytes = add(p.available_bytes, mem.available_bytes);
            p.usage_bytes = add(p.usage_bytes, mem.usage_bytes);
            p.working_set_bytes = add(p.working_set_bytes, mem.working_set_bytes);
            p.rss_bytes = add(p.rss_bytes, mem.rss_bytes);
            p.page_faults = add(p.page_faults, mem.page_faults);
            p.major_page_faults = add(p.major_page_faults, mem.major_page_faults);
        }
    }
}

/// The writable layer: usage from the runtime, capacity from the image filesystem.
fn rootfs_stats(cri: Option<&kubelet_core::ContainerStats>, image_fs: Option<&FsInfo>) -> FsStats {
    let mut stats = FsStats {
        time: cri.map_or_else(Time::now, |s| or_now(s.timestamp)),
        used_bytes: cri.and_then(|s| s.writable_layer_used_bytes),
        inodes_used: cri.and_then(|s| s.writable_layer_inodes_used),
        ..Default::default()
    };
    if let Some(info) = image_fs {
        stats.available_bytes = Some(info.available);
        stats.capacity_bytes = Some(info.capacity);
        stats.inodes_free = Some(info.inodes_free);
        stats.inodes = Some(info.inodes);
    }
    stats
}

fn usage_stats(root_fs: Option<&FsInfo>, usage: DiskUsage) -> FsStats {
    match root_fs {
        Some(info) => fs::usage_stats(info, usage, Time::now()),
        None => FsStats {
            time: Time::now(),
            used_bytes: Some(usage.bytes),
            inodes_used: Some(usage.inodes),
            ..Default::default()
        },
    }
}

/// Upstream's `calcEphemeralStorage`: the root filesystem's capacity, with the usage of
/// the containers' writable layers and logs, the local ephemeral volumes, the pod's own
/// log files and its etc-hosts file.
pub(crate) fn ephemeral_storage(
    root_fs: &FsInfo,
    containers: &[ContainerStats],
    volumes: &[FsStats],
    extra: [Option<FsStats>; 2],
) -> FsStats {
    let mut result = root_fs.capacity_stats();
    let add = |result: &mut FsStats, s: &FsStats| {
        result.used_bytes = summary::add_usage(result.used_bytes, s.used_bytes);
        result.inodes_used = summary::add_usage(result.inodes_used, s.inodes_used);
        result.time = result.time.max(s.time);
    };
    for c in containers {
        if let Some(rootfs) = &c.rootfs {
            add(&mut result, rootfs);
            if let Some(logs) = &c.logs {
                add(&mut result, logs);
            }
        }
    }
    for v in volumes.iter().chain(extra.iter().flatten()) {
        add(&mut result, v);
    }
    result
}
