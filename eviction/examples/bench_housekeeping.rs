//! Cost of the eviction manager's rounds at 110 pods (upstream's default maxPods) with
//! two containers each, on upstream's default thresholds (`evictionHard` of a
//! configuration file, `allocatableMemory.available` with `enforceNodeAllocatable:
//! [pods]`, localStorageCapacityIsolation on): the round with no threshold met that
//! runs every 10 s, and one where `memory.available` is under its hard threshold, so
//! that every pod is ranked and the first evicted. The summary and the pods come from
//! in-memory fakes that copy them out each round (as the pod manager copies its pods);
//! building the summary is `bench_summary`'s to measure. Run by `cargo xtask bench`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, Pod, PodSpec, ProjectedVolumeSource, ResourceRequirements,
    Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::config::KubeletConfiguration;
use kubelet_core::{EventRecorder, NodeEvent, PodEvent};
use kubelet_eviction::{
    EvictionConfig, EvictionManager, MONITORING_PERIOD, PodEvictor, Round, SummarySource,
};
use kubelet_pod_manager::kill::KillReason;
use kubelet_pod_manager::pressure::{NodePressure, PressureCondition};
use kubelet_stats::summary::{
    ContainerStats, CpuStats, FsStats, InterfaceStats, MemoryStats, NetworkStats, NodeStats,
    PodReference, PodStats, ProcessStats, RlimitStats, RuntimeStats, SYSTEM_CONTAINER_PODS,
    VolumeStats,
};
use kubelet_stats::{Summary, Time};

const PODS: usize = 110;
const CONTAINERS_PER_POD: usize = 2;
/// The first pods are system-node-critical DaemonSet pods (never evicted).
const CRITICAL_PODS: usize = 3;
const WARMUP: u32 = 20;
const ROUNDS: u32 = 500;

const KI: u64 = 1024;
const MI: u64 = 1024 * KI;
const GI: u64 = 1024 * MI;
const MEMORY_CAPACITY: u64 = 32 * GI;
const NODEFS_CAPACITY: u64 = 100 * GI;
const NODEFS_INODES: u64 = 6_553_600;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn quantities(entries: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// Pod `i`'s containers' resources, by QoS class: a quarter BestEffort, half Burstable,
/// a quarter Guaranteed.
fn resources(i: usize) -> Option<ResourceRequirements> {
    match i % 4 {
        0 => None,
        1 | 2 => Some(ResourceRequirements {
            requests: Some(quantities(&[
                ("cpu", "100m"),
                ("memory", "64Mi"),
                ("ephemeral-storage", "256Mi"),
            ])),
            limits: Some(quantities(&[
                ("memory", "256Mi"),
                ("ephemeral-storage", "1Gi"),
            ])),
            ..Default::default()
        }),
        _ => {
            let both = quantities(&[
                ("cpu", "250m"),
                ("memory", "128Mi"),
                ("ephemeral-storage", "1Gi"),
            ]);
            Some(ResourceRequirements {
                requests: Some(both.clone()),
                limits: Some(both),
                ..Default::default()
            })
        }
    }
}

/// Whether pod `i` has an emptyDir `scratch` (half of them), and its `sizeLimit` (half
/// of those).
fn scratch(i: usize) -> Option<Option<&'static str>> {
    i.is_multiple_of(2)
        .then(|| i.is_multiple_of(4).then_some("512Mi"))
}

fn pod(i: usize) -> Pod {
    let mut volumes = vec![Volume {
        name: "kube-api-access".into(),
        projected: Some(ProjectedVolumeSource::default()),
        ..Default::default()
    }];
    if let Some(size_limit) = scratch(i) {
        volumes.push(Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: size_limit.map(|s| Quantity(s.into())),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let priority = if i < CRITICAL_PODS {
        2_000_001_000
    } else if i.is_multiple_of(10) {
        1000
    } else {
        0
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{i}")),
            namespace: Some("bench".into()),
            uid: Some(format!("0000-{i:04}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: (0..CONTAINERS_PER_POD)
                .map(|c| Container {
                    name: format!("c{c}"),
                    image: Some("bench:1".into()),
                    resources: resources(i),
                    ..Default::default()
                })
                .collect(),
            volumes: Some(volumes),
            priority: Some(priority),
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A filesystem of the node's: the nodefs, which holds the pods' volumes, logs and
/// writable layers.
fn nodefs(used_bytes: Option<u64>, inodes_used: Option<u64>) -> FsStats {
    FsStats {
        time: Time::now(),
        available_bytes: Some(NODEFS_CAPACITY * 6 / 10),
        capacity_bytes: Some(NODEFS_CAPACITY),
        used_bytes,
        inodes_free: Some(NODEFS_INODES * 8 / 10),
        inodes: Some(NODEFS_INODES),
        inodes_used,
    }
}

fn memory(time: Time, working_set: u64) -> MemoryStats {
    MemoryStats {
        time,
        available_bytes: None,
        usage_bytes: Some(working_set + 12 * MI),
        working_set_bytes: Some(working_set),
        rss_bytes: Some(working_set * 3 / 4),
        page_faults: Some(120_000),
        major_page_faults: Some(12),
    }
}

/// Pod `i`'s stats as the stats provider reports them: working sets spread from 8 to
/// 107 MiB a container (some above their requests), emptyDirs well within their limits.
fn pod_stats(i: usize) -> PodStats {
    let now = Time::now();
    let started = Time::from_unix_nanos(now.unix_nanos() - 3_600_000_000_000);
    let working_set = (8 + (i as u64 * 37) % 100) * MI;
    let containers: Vec<ContainerStats> = (0..CONTAINERS_PER_POD)
        .map(|c| ContainerStats {
            name: format!("c{c}"),
            start_time: started,
            cpu: Some(CpuStats {
                time: now,
                usage_nano_cores: Some(15_000_000),
                usage_core_nano_seconds: Some(54_000_000_000),
            }),
            memory: Some(memory(now, working_set)),
            rootfs: Some(nodefs(Some(48 * KI + i as u64 * KI), Some(14))),
            logs: Some(nodefs(Some(200 * KI), Some(2))),
            swap: None,
        })
        .collect();
    let mut volume_stats = vec![VolumeStats {
        fs: nodefs(Some(12 * KI), Some(5)),
        name: "kube-api-access".into(),
        pvc_ref: None,
    }];
    if scratch(i).is_some() {
        volume_stats.push(VolumeStats {
            fs: nodefs(Some(16 * MI + i as u64 * 64 * KI), Some(40)),
            name: "scratch".into(),
            pvc_ref: None,
        });
    }
    let used = |f: &FsStats| f.used_bytes.unwrap_or_default();
    let inodes = |f: &FsStats| f.inodes_used.unwrap_or_default();
    let storage = containers
        .iter()
        .flat_map(|c| [c.rootfs.as_ref(), c.logs.as_ref()])
        .flatten()
        .chain(volume_stats.iter().map(|v| &v.fs));
    let (bytes, inodes_used) = storage.fold((0, 0), |(b, n), f| (b + used(f), n + inodes(f)));
    let interface = InterfaceStats {
        name: "eth0".into(),
        rx_bytes: Some(1_200_000_000),
        rx_errors: Some(0),
        tx_bytes: Some(800_000_000),
        tx_errors: Some(0),
    };
    PodStats {
        pod_ref: PodReference {
            name: format!("pod-{i}"),
            namespace: "bench".into(),
            uid: format!("0000-{i:04}"),
        },
        start_time: started,
        containers,
        cpu: Some(CpuStats {
            time: now,
            usage_nano_cores: Some(30_000_000),
            usage_core_nano_seconds: Some(108_000_000_000),
        }),
        memory: Some(memory(now, CONTAINERS_PER_POD as u64 * working_set + MI)),
        network: Some(NetworkStats {
            time: now,
            default_interface: interface.clone(),
            interfaces: vec![interface],
        }),
        volume_stats,
        ephemeral_storage: Some(nodefs(Some(bytes), Some(inodes_used))),
        process_stats: Some(ProcessStats {
            process_count: Some(2 + (i as u64 % 7)),
        }),
        swap: None,
    }
}

/// The summary of a node with `PODS` pods and `memory_available` bytes of memory left.
fn summary(memory_available: u64) -> Summary {
    let pods: Vec<PodStats> = (0..PODS).map(pod_stats).collect();
    let pods_working_set: u64 = pods
        .iter()
        .filter_map(|p| p.memory.as_ref()?.working_set_bytes)
        .sum();
    let now = Time::now();
    let allocatable = MEMORY_CAPACITY - 2 * GI;
    let node_memory = MemoryStats {
        available_bytes: Some(memory_available),
        ..memory(now, MEMORY_CAPACITY - memory_available)
    };
    let pods_memory = MemoryStats {
        available_bytes: Some(allocatable.saturating_sub(pods_working_set)),
        ..memory(now, pods_working_set)
    };
    Summary {
        node: NodeStats {
            node_name: "bench-node".into(),
            system_containers: vec![ContainerStats {
                name: SYSTEM_CONTAINER_PODS.into(),
                memory: Some(pods_memory),
                ..Default::default()
            }],
            start_time: Time::from_unix_nanos(now.unix_nanos() - 86_400_000_000_000),
            cpu: Some(CpuStats {
                time: now,
                usage_nano_cores: Some(3_500_000_000),
                usage_core_nano_seconds: Some(9_000_000_000_000),
            }),
            memory: Some(node_memory),
            network: None,
            fs: Some(nodefs(Some(NODEFS_CAPACITY * 4 / 10), None)),
            runtime: Some(RuntimeStats {
                image_fs: Some(nodefs(Some(NODEFS_CAPACITY * 4 / 10), None)),
                container_fs: None,
            }),
            rlimit: Some(RlimitStats {
                time: now,
                max_pid: Some(4_194_304),
                num_of_running_processes: Some(1200),
            }),
            swap: None,
        },
        pods,
    }
}

/// The node as the eviction manager sees it: its summary, its pods, what it evicted.
struct Node {
    summary: Summary,
    pods: Vec<Pod>,
    /// The last stats time handed out: each summary's is later (a round acts only on
    /// signals observed since the last).
    clock: AtomicI64,
    evictions: AtomicUsize,
    events: AtomicUsize,
}

impl Node {
    fn new(memory_available: u64) -> Self {
        Self {
            summary: summary(memory_available),
            pods: (0..PODS).map(pod).collect(),
            clock: AtomicI64::new(0),
            evictions: AtomicUsize::new(0),
            events: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl SummarySource for Node {
    async fn summary(&self) -> Result<Summary, String> {
        let nanos = Time::now()
            .unix_nanos()
            .max(self.clock.load(Ordering::Relaxed) + 1);
        self.clock.store(nanos, Ordering::Relaxed);
        let time = Time::from_unix_nanos(nanos);
        let mut summary = self.summary.clone();
        let node = &mut summary.node;
        for memory in node.memory.iter_mut().chain(
            node.system_containers
                .iter_mut()
                .filter_map(|c| c.memory.as_mut()),
        ) {
            memory.time = time;
        }
        let runtime = node.runtime.as_mut().and_then(|r| r.image_fs.as_mut());
        for fs in node.fs.iter_mut().chain(runtime) {
            fs.time = time;
        }
        if let Some(rlimit) = node.rlimit.as_mut() {
            rlimit.time = time;
        }
        Ok(summary)
    }
}

#[async_trait]
impl PodEvictor for Node {
    async fn active_pods(&self) -> Vec<Pod> {
        self.pods.clone()
    }

    /// Counts the eviction and keeps the pod, so that every round ranks all of them.
    async fn evict(&self, _pod: &Pod, _grace_seconds: i64, _why: KillReason) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }
}

impl EventRecorder for Node {
    fn record(&self, _event: PodEvent) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    fn record_node(&self, _event: NodeEvent) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// Upstream's defaults for a configuration file.
fn config() -> BenchResult<EvictionConfig> {
    let mut config = KubeletConfiguration::defaulted();
    config.set_eviction_defaults();
    Ok(EvictionConfig::from_kubelet_config(&config)?)
}

fn manager(node: &Arc<Node>, pressure: &NodePressure) -> BenchResult<EvictionManager> {
    Ok(EvictionManager::new(
        config()?,
        pressure.clone(),
        node.clone(),
        node.clone(),
        node.clone(),
    ))
}

/// The median and 90th percentile of `times`.
fn percentiles(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort_unstable();
    (times[times.len() / 2], times[times.len() * 9 / 10])
}

/// Prints the rounds' median and 90th percentile, with the share of one core the median
/// takes at one round per [`MONITORING_PERIOD`] when `periodic` (a round that evicts is
/// followed at once by the next one, after its pod is gone).
fn report(what: &str, times: &mut [Duration], periodic: bool) {
    let (median, p90) = percentiles(times);
    let mut line = format!(
        "{what}: {median:?} median, {p90:?} p90 per round ({} rounds)",
        times.len()
    );
    if periodic {
        let share = median.as_secs_f64() / MONITORING_PERIOD.as_secs_f64() * 100.0;
        line += &format!(
            ", {share:.3}% of one core at one round per {}s",
            MONITORING_PERIOD.as_secs()
        );
    }
    println!("{line}");
}

/// Times `WARMUP` then `ROUNDS` rounds of `m`, checking each with `check`.
async fn time_rounds(m: &mut EvictionManager, check: impl Fn(&Round)) -> Vec<Duration> {
    let mut times = Vec::with_capacity(ROUNDS as usize);
    for n in 0..WARMUP + ROUNDS {
        let started = Instant::now();
        let round = m.synchronize(started).await;
        let took = started.elapsed();
        check(&round);
        if n >= WARMUP {
            times.push(took);
        }
    }
    times
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> BenchResult<()> {
    // Steady state: 18 GiB of 32 GiB available, disks 60% free.
    let steady = Arc::new(Node::new(18 * GI));
    let pressure = NodePressure::default();
    let mut m = manager(&steady, &pressure)?;
    let mut times = time_rounds(&mut m, |round| {
        assert!(round.conditions.is_empty(), "no pressure: {round:?}");
        assert_eq!(round.evicted, None, "nothing evicted");
    })
    .await;
    report(
        &format!("round of {PODS} pods, no threshold met"),
        &mut times,
        true,
    );
    assert_eq!(steady.evictions.load(Ordering::Relaxed), 0);

    // Memory pressure: 80 MiB available, under the 100Mi hard threshold.
    let starved = Arc::new(Node::new(80 * MI));
    let pressure = NodePressure::default();
    let mut m = manager(&starved, &pressure)?;
    let evicted = Mutex::new(None::<String>);
    let mut times = time_rounds(&mut m, |round| {
        assert_eq!(round.conditions, vec![PressureCondition::Memory]);
        let name = round.evicted.clone().expect("a pod evicted every round");
        let mut first = evicted.lock().expect("lock");
        assert_eq!(
            first.get_or_insert_with(|| name.clone()),
            &name,
            "the same pod ranks first every round"
        );
    })
    .await;
    report(
        &format!("round of {PODS} pods, memory.available hard threshold met (rank all, evict one)"),
        &mut times,
        false,
    );
    let rounds = (WARMUP + ROUNDS) as usize;
    assert_eq!(starved.evictions.load(Ordering::Relaxed), rounds);
    // EvictionThresholdMet for the node and Evicted for the pod.
    assert_eq!(starved.events.load(Ordering::Relaxed), 2 * rounds);
    println!(
        "  (evicts {} each round)",
        evicted.lock().expect("lock").as_deref().unwrap_or_default()
    );

    // What the fakes' copies of the summary and the pods cost, included above.
    let mut times = Vec::with_capacity(ROUNDS as usize);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let summary = steady.summary().await?;
        let pods = steady.active_pods().await;
        times.push(started.elapsed());
        assert_eq!((summary.pods.len(), pods.len()), (PODS, PODS));
    }
    let (median, p90) = percentiles(&mut times);
    println!(
        "  of which copying the summary and the pods out of the fakes: {median:?} median, {p90:?} p90"
    );
    Ok(())
}
