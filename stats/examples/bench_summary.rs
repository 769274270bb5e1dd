//! Cost of one `/stats/summary` and one `/metrics/resource` scrape at 110 pods
//! (upstream's default maxPods) with two containers each: the CRI calls go over gRPC to
//! the in-process fake runtime, the cgroup reads hit a fake cgroup v2 tree laid out as
//! the systemd driver makes it, and /proc, statvfs, volume and log directories are real.
//! metrics-server scrapes every 10 s, so the share of one core printed at that rate is
//! what stats costs a node. Run by `cargo xtask bench`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::{ImageService, Runtime};
use kubelet_cri_client::{FakeCriServer, Timeouts};
use kubelet_stats::{StatsPaths, StatsProvider};

const PODS: usize = 110;
const CONTAINERS_PER_POD: usize = 2;
const ROUNDS: u32 = 50;
const SCRAPE_PERIOD: Duration = Duration::from_secs(10);

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn pod(i: usize) -> Pod {
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
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, content)
}

/// The files the readers look at in one cgroup v2 directory.
fn write_cgroup(dir: &Path, usage_usec: u64, memory: u64, procs: &str) -> std::io::Result<()> {
    write(
        &dir.join("cpu.stat"),
        &format!("usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 1\n"),
    )?;
    write(&dir.join("memory.current"), &format!("{memory}\n"))?;
    write(&dir.join("memory.max"), "max\n")?;
    write(&dir.join("memory.swap.current"), "0\n")?;
    write(&dir.join("memory.swap.max"), "max\n")?;
    write(
        &dir.join("memory.stat"),
        &format!(
            "anon {}\nfile 4096\ninactive_file 4096\npgfault 10\npgmajfault 0\n",
            memory / 2
        ),
    )?;
    write(&dir.join("cgroup.procs"), procs)?;
    write(&dir.join("pids.current"), "1\n")
}

/// A pod's cgroup, its containers' scopes, an emptyDir, a projected token volume and
/// a log file per container, as a node running it would have them.
fn lay_out_pod(
    paths: &StatsPaths,
    pod: &Pod,
    container_ids: &[(String, String)],
) -> std::io::Result<()> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let slice = format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
        uid.replace('-', "_")
    );
    let pod_dir = paths.cgroup_root.join(&slice);
    write_cgroup(&pod_dir, 3_000_000, 64 << 20, "")?;
    // Our own pid, so each pod's network figures are a real /proc/<pid>/net/dev read.
    let pid = format!("{}\n", std::process::id());
    for (container, id) in container_ids {
        let scope = pod_dir.join(format!("cri-containerd-{id}.scope"));
        write_cgroup(&scope, 1_000_000, 32 << 20, &pid)?;
        write(
            &paths
                .pods_log_dir
                .join(format!("bench_{name}_{uid}/{container}/0.log")),
            &"2026-01-01T00:00:00.000000000Z stdout F a line of log\n".repeat(200),
        )?;
    }
    let volumes = paths.root_dir.join(format!("pods/{uid}/volumes"));
    write(
        &volumes.join("kubernetes.io~empty-dir/scratch/data"),
        &"x".repeat(64 << 10),
    )?;
    for file in ["token", "ca.crt", "namespace"] {
        write(
            &volumes.join(format!("kubernetes.io~projected/kube-api-access/{file}")),
            "bench",
        )?;
    }
    write(
        &paths.root_dir.join(format!("pods/{uid}/etc-hosts")),
        "127.0.0.1 localhost\n",
    )
}

fn report(what: &str, total: Duration, rounds: u32) {
    let each = total / rounds;
    let share = each.as_secs_f64() / SCRAPE_PERIOD.as_secs_f64() * 100.0;
    println!(
        "{what}: {each:?} per scrape ({rounds} scrapes), {share:.3}% of one core at one scrape per {}s",
        SCRAPE_PERIOD.as_secs()
    );
}

/// The process's peak resident memory (`VmHWM`), in kB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    let paths = StatsPaths {
        root_dir: dir.path().join("root"),
        pods_log_dir: dir.path().join("logs"),
        cgroup_root: dir.path().join("cgroup"),
        proc_root: "/proc".into(),
    };
    write(
        &paths.cgroup_root.join("cgroup.controllers"),
        "cpu memory pids\n",
    )?;
    write_cgroup(&paths.cgroup_root, 90_000_000, 0, "")?;
    write_cgroup(
        &paths.cgroup_root.join("kubepods.slice"),
        40_000_000,
        4 << 30,
        "",
    )?;

    let fake = FakeCriServer::start();
    fake.add_local_image("bench:1");
    let client = Arc::new(fake.client(Timeouts::default()));
    for pod in (0..PODS).map(pod) {
        let (_, ids) = FakeCriServer::run_pod(&client, &pod, "bench:1").await?;
        lay_out_pod(&paths, &pod, &ids)?;
    }

    let runtime: Arc<dyn Runtime> = client.clone();
    let images: Arc<dyn ImageService> = client;
    let stats = StatsProvider::new(runtime, images, paths, "bench-node".into());

    // The first scrape measures every volume; later ones read the usage cache.
    let started = Instant::now();
    let first = stats.summary(false).await?;
    println!(
        "first /stats/summary of {PODS} pods (measures every volume): {:?}",
        started.elapsed()
    );
    assert_eq!(first.pods.len(), PODS, "every pod in the summary");
    assert!(
        first
            .pods
            .iter()
            .all(|p| p.containers.len() == CONTAINERS_PER_POD),
        "every container in the summary"
    );

    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        let summary = stats.summary(false).await?;
        bytes = serde_json::to_vec(&summary)?.len();
    }
    report(
        &format!("/stats/summary of {PODS} pods, JSON included ({bytes} bytes)"),
        started.elapsed(),
        ROUNDS,
    );

    let started = Instant::now();
    let mut lines = 0;
    for _ in 0..ROUNDS {
        lines = stats.resource_metrics().await?.lines().count();
    }
    report(
        &format!("/metrics/resource of {PODS} pods ({lines} lines)"),
        started.elapsed(),
        ROUNDS,
    );
    if let Some(kb) = peak_rss_kb() {
        println!("peak resident memory of the benchmark process: {kb} kB");
    }
    Ok(())
}
