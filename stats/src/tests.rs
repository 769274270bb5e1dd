//! The provider over an in-memory runtime and fake cgroup, /proc and kubelet trees.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kubelet_core::labels::{POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL};
use kubelet_core::{
    Container, ContainerFilter, ContainerMetadata, ContainerState, ContainerStats, FilesystemUsage,
    Image, ImageService, RegistryAuth, RuntimeError, RuntimeErrorKind, RuntimeInventory, Sandbox,
    SandboxConfig, SandboxFilter, SandboxMetadata, SandboxState,
};

use crate::cgroup::tests::{fake_v1, write};
use crate::provider::select_pods;
use crate::{StatsPaths, StatsProvider, Summary};

#[derive(Default)]
struct FakeRuntime {
    sandboxes: Vec<Sandbox>,
    containers: Vec<Container>,
    stats: Mutex<Vec<ContainerStats>>,
    image_fs: Vec<FilesystemUsage>,
    fail_lists: bool,
    calls: AtomicUsize,
}

fn unsupported<T>(op: &'static str) -> kubelet_core::Result<T> {
    Err(RuntimeError {
        operation: op,
        object: "-".into(),
        kind: RuntimeErrorKind::Unimplemented,
        message: "not in this fake".into(),
        timeout: None,
    }
    .into())
}

#[async_trait]
impl RuntimeInventory for FakeRuntime {
    async fn list_sandboxes(&self, filter: &SandboxFilter) -> kubelet_core::Result<Vec<Sandbox>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_lists {
            return Err(RuntimeError {
                operation: "ListPodSandbox",
                object: "-".into(),
                kind: RuntimeErrorKind::Unavailable,
                message: "connection refused".into(),
                timeout: None,
            }
            .into());
        }
        Ok(self
            .sandboxes
            .iter()
            .filter(|s| filter.state.is_none_or(|st| st == s.state))
            .cloned()
            .collect())
    }
    async fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> kubelet_core::Result<Vec<Container>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .containers
            .iter()
            .filter(|c| filter.state.is_none_or(|st| st == c.state))
            .cloned()
            .collect())
    }
    async fn container_stats(&self, _: &str) -> kubelet_core::Result<ContainerStats> {
        unsupported("ContainerStats")
    }
    async fn list_container_stats(
        &self,
        _: &ContainerFilter,
    ) -> kubelet_core::Result<Vec<ContainerStats>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.stats.lock().expect("lock").clone())
    }
}

#[async_trait]
impl ImageService for FakeRuntime {
    async fn pull_image(
        &self,
        _: &str,
        _: Option<&RegistryAuth>,
        _: Option<&SandboxConfig>,
    ) -> kubelet_core::Result<String> {
        unsupported("PullImage")
    }
    async fn image_status(&self, _: &str) -> kubelet_core::Result<Option<Image>> {
        unsupported("ImageStatus")
    }
    async fn list_images(&self) -> kubelet_core::Result<Vec<Image>> {
        unsupported("ListImages")
    }
    async fn remove_image(&self, _: &str) -> kubelet_core::Result<()> {
        unsupported("RemoveImage")
    }
    async fn image_fs_info(&self) -> kubelet_core::Result<Vec<FilesystemUsage>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.image_fs.clone())
    }
}

const SECOND: i64 = 1_000_000_000;

fn sandbox(id: &str, uid: &str, name: &str, created_at: i64, state: SandboxState) -> Sandbox {
    Sandbox {
        id: id.into(),
        metadata: SandboxMetadata {
            name: name.into(),
            namespace: "ns".into(),
            uid: uid.into(),
            attempt: 0,
        },
        state,
        created_at,
        labels: [
            (POD_NAME_LABEL.to_owned(), name.to_owned()),
            (POD_NAMESPACE_LABEL.to_owned(), "ns".to_owned()),
            (POD_UID_LABEL.to_owned(), uid.to_owned()),
        ]
        .into(),
        ..Default::default()
    }
}

fn container(
    id: &str,
    sandbox: &str,
    name: &str,
    created_at: i64,
    state: ContainerState,
) -> Container {
    Container {
        id: id.into(),
        sandbox_id: sandbox.into(),
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        state,
        created_at,
        ..Default::default()
    }
}

fn cri_stats(id: &str, name: &str, at: i64, cpu: u64) -> ContainerStats {
    ContainerStats {
        id: id.into(),
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        timestamp: at,
        cpu_usage_core_nano_seconds: Some(cpu),
        cpu_usage_nano_cores: None,
        memory_working_set_bytes: Some(150_000_000),
        memory_usage_bytes: Some(200_000_000),
        memory_rss_bytes: Some(100_000_000),
        writable_layer_used_bytes: Some(12_288),
        writable_layer_inodes_used: Some(3),
        ..Default::default()
    }
}

/// The fake host: cgroup v1 tree, /proc, kubelet root dir and pod logs under `base`.
fn fake_host(base: &Path) -> StatsPaths {
    let paths = StatsPaths {
        root_dir: base.join("root"),
        pods_log_dir: base.join("logs"),
        cgroup_root: base.join("cgroup"),
        proc_root: base.join("proc"),
    };
    fake_v1(&paths.cgroup_root, "u-1", "c1");
    let proc = &paths.proc_root;
    write(
        &proc.join("meminfo"),
        "MemTotal: 8000000 kB\nMemFree: 1000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    );
    write(&proc.join("loadavg"), "0.1 0.1 0.1 1/250 999\n");
    write(&proc.join("sys/kernel/pid_max"), "4194304\n");
    write(&proc.join("stat"), "btime 1700000000\n");
    let net = "Inter-| Receive | Transmit\n face |bytes packets ...\n";
    write(
        &proc.join("net/dev"),
        &format!(
            "{net}    lo: 1 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0\n  eth0: 500 1 0 0 0 0 0 0 600 1 0 0 0 0 0 0\n"
        ),
    );
    write(
        &proc.join("42/net/dev"),
        &format!("{net}  eth0: 700 1 1 0 0 0 0 0 800 1 2 0 0 0 0 0\n"),
    );
    let vols = paths.root_dir.join("pods/u-1/volumes");
    write(
        &vols.join("kubernetes.io~empty-dir/scratch/data"),
        &"x".repeat(20_000),
    );
    write(&vols.join("kubernetes.io~secret/token/token"), "secret");
    write(
        &paths.root_dir.join("pods/u-1/etc-hosts"),
        "127.0.0.1 localhost\n",
    );
    write(
        &paths.pods_log_dir.join("ns_web_u-1/app/0.log"),
        &"log line\n".repeat(1000),
    );
    paths
}

fn fake_runtime(base: &Path, now: i64) -> FakeRuntime {
    FakeRuntime {
        sandboxes: vec![
            sandbox(
                "s-old",
                "u-1",
                "web",
                now - 100 * SECOND,
                SandboxState::Ready,
            ),
            sandbox("s1", "u-1", "web", now - 50 * SECOND, SandboxState::Ready),
            sandbox(
                "s2",
                "u-2",
                "gone",
                now - 40 * SECOND,
                SandboxState::NotReady,
            ),
            sandbox("s3", "u-3", "empty", now - 30 * SECOND, SandboxState::Ready),
        ],
        containers: vec![
            container("c0", "s1", "app", now - 45 * SECOND, ContainerState::Exited),
            container(
                "c1",
                "s1",
                "app",
                now - 40 * SECOND,
                ContainerState::Running,
            ),
            container(
                "c-old",
                "s-old",
                "app",
                now - 90 * SECOND,
                ContainerState::Running,
            ),
            container(
                "c2",
                "s2",
                "app",
                now - 35 * SECOND,
                ContainerState::Running,
            ),
        ],
        stats: Mutex::new(vec![
            cri_stats("c1", "app", now, 1_000_000_000),
            cri_stats("c-old", "app", now, 5),
        ]),
        image_fs: vec![FilesystemUsage {
            timestamp: now,
            mountpoint: base.display().to_string(),
            used_bytes: Some(1_000_000),
            inodes_used: Some(100),
        }],
        ..Default::default()
    }
}

fn now_nanos() -> i64 {
    crate::Time::now().unix_nanos()
}

#[test]
fn selects_the_newest_ready_sandbox_and_running_containers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = fake_runtime(dir.path(), 1000 * SECOND);
    let stats = rt.stats.lock().expect("lock").clone();
    let pods = select_pods(rt.sandboxes.clone(), rt.containers.clone(), stats);
    let ids: Vec<_> = pods
        .iter()
        .map(|p| {
            (
                p.pod_ref.name.as_str(),
                p.sandbox.id.as_str(),
                p.containers
                    .iter()
                    .map(|c| c.0.id.as_str())
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(ids, [("empty", "s3", vec![]), ("web", "s1", vec!["c1"])]);
    assert!(pods[1].containers[0].1.is_some(), "stats joined by id");
}

#[tokio::test]
async fn summary_from_runtime_cgroups_proc_and_filesystems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fake_host(dir.path());
    let now = now_nanos();
    let rt = Arc::new(fake_runtime(dir.path(), now));
    let provider = StatsProvider::new(rt.clone(), rt.clone(), paths, "node-1".into());

    let summary = provider.summary(false).await.expect("summary");
    assert_eq!(
        rt.calls.load(Ordering::SeqCst),
        4,
        "one call per list and ImageFsInfo"
    );
    let node = &summary.node;
    assert_eq!(node.node_name, "node-1");
    assert_eq!(node.start_time.unix_seconds(), 1_700_000_000);
    assert_eq!(
        node.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds),
        Some(9_000_000_000)
    );
    let mem = node.memory.as_ref().expect("node memory");
    assert_eq!(mem.working_set_bytes, Some(3_000_000_000));
    assert_eq!(
        mem.available_bytes,
        Some(8_000_000 * 1024 - 3_000_000_000),
        "MemTotal - working set"
    );
    assert_eq!(
        node.network.as_ref().map(|n| n.default_interface.rx_bytes),
        Some(Some(500))
    );
    assert!(node.fs.as_ref().and_then(|f| f.capacity_bytes).is_some());
    let image_fs = node
        .runtime
        .as_ref()
        .and_then(|r| r.image_fs.as_ref())
        .expect("image fs");
    assert_eq!(image_fs.used_bytes, Some(1_000_000));
    assert_eq!(image_fs.inodes_used, Some(100));
    assert!(image_fs.capacity_bytes.is_some());
    assert_eq!(
        node.rlimit
            .as_ref()
            .map(|r| (r.max_pid, r.num_of_running_processes)),
        Some((Some(4_194_304), Some(250)))
    );
    assert_eq!(node.system_containers.len(), 1);
    assert_eq!(node.system_containers[0].name, "pods");

    assert_eq!(summary.pods.len(), 2);
    let empty = &summary.pods[0];
    assert_eq!(empty.pod_ref.name, "empty");
    assert!(empty.containers.is_empty());
    let web = &summary.pods[1];
    assert_eq!(web.pod_ref.uid, "u-1");
    assert_eq!(web.start_time.unix_nanos(), now - 50 * SECOND);
    assert_eq!(
        web.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds),
        Some(3_000_000_000)
    );
    let pod_mem = web.memory.as_ref().expect("pod memory");
    assert_eq!(pod_mem.working_set_bytes, Some(200_000_000));
    assert_eq!(pod_mem.available_bytes, Some(300_000_000));
    let net = web.network.as_ref().expect("pod network");
    assert_eq!(net.default_interface.name, "eth0");
    assert_eq!(net.default_interface.tx_errors, Some(2));
    assert_eq!(
        web.process_stats.as_ref().and_then(|p| p.process_count),
        Some(2)
    );

    assert_eq!(web.containers.len(), 1);
    let app = &web.containers[0];
    assert_eq!(app.name, "app");
    assert_eq!(app.start_time.unix_nanos(), now - 40 * SECOND);
    let cpu = app.cpu.as_ref().expect("cpu");
    assert_eq!(cpu.usage_core_nano_seconds, Some(1_000_000_000));
    assert_eq!(cpu.usage_nano_cores, None, "first sample");
    let cmem = app.memory.as_ref().expect("memory");
    assert_eq!(cmem.working_set_bytes, Some(150_000_000));
    assert_eq!(cmem.page_faults, Some(70), "from the container cgroup");
    let rootfs = app.rootfs.as_ref().expect("rootfs");
    assert_eq!(
        (rootfs.used_bytes, rootfs.inodes_used),
        (Some(12_288), Some(3))
    );
    assert!(rootfs.capacity_bytes.is_some());
    let logs = app.logs.as_ref().expect("logs");
    assert_eq!(logs.inodes_used, Some(1));
    let log_bytes = logs.used_bytes.expect("log bytes");
    assert!(log_bytes >= 9000, "{logs:?}");

    let names: Vec<_> = web.volume_stats.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["scratch", "token"]);
    let scratch = web.volume_stats[0].fs.used_bytes.expect("scratch");
    assert!(scratch >= 20_000);
    let ephemeral = web.ephemeral_storage.as_ref().expect("ephemeral storage");
    let etc_hosts = std::fs::metadata(dir.path().join("root/pods/u-1/etc-hosts"))
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .expect("stat");
    // Writable layer + logs + the emptyDir (not the secret) + etc-hosts.
    assert_eq!(
        ephemeral.used_bytes,
        Some(12_288 + log_bytes + scratch + etc_hosts)
    );
    assert_eq!(
        ephemeral.inodes_used,
        Some(3 + 1 + web.volume_stats[0].fs.inodes_used.expect("inodes") + 1)
    );

    // Two seconds of CPU over the next two seconds: one core.
    *rt.stats.lock().expect("lock") = vec![cri_stats("c1", "app", now + 2 * SECOND, 3_000_000_000)];
    let summary = provider.summary(false).await.expect("summary");
    let app = &summary.pods[1].containers[0];
    assert_eq!(
        app.cpu.as_ref().and_then(|c| c.usage_nano_cores),
        Some(1_000_000_000)
    );
    // The CPU cache holds only what is listed: the node, the pods cgroup, pod u-1 (u-3
    // has no cgroup) and c1; not c-old of the older sandbox.
    assert_eq!(provider.cpu_cache_len(), 4);
}

#[tokio::test]
async fn cpu_and_memory_summary_and_resource_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fake_host(dir.path());
    let now = now_nanos();
    let rt = Arc::new(fake_runtime(dir.path(), now));
    let provider = StatsProvider::new(rt.clone(), rt.clone(), paths, "node-1".into());

    let summary = provider.summary(true).await.expect("summary");
    assert_eq!(rt.calls.load(Ordering::SeqCst), 3, "no ImageFsInfo");
    assert!(summary.node.fs.is_none() && summary.node.network.is_none());
    let web = &summary.pods[1];
    assert!(web.ephemeral_storage.is_none() && web.volume_stats.is_empty());
    assert!(web.containers[0].rootfs.is_none());

    let text = provider.resource_metrics().await.expect("metrics");
    let ms = now / 1_000_000;
    for line in [
        format!(
            "container_cpu_usage_seconds_total{{container=\"app\",namespace=\"ns\",pod=\"web\"}} 1 {ms}"
        ),
        format!(
            "container_memory_working_set_bytes{{container=\"app\",namespace=\"ns\",pod=\"web\"}} 1.5e+08 {ms}"
        ),
        "pod_memory_working_set_bytes{namespace=\"ns\",pod=\"web\"} 2e+08 ".to_owned(),
        "node_cpu_usage_seconds_total 9 ".to_owned(),
        "resource_scrape_error 0\n".to_owned(),
    ] {
        assert!(text.contains(&line), "{line:?} not in\n{text}");
    }
    assert!(text.contains(
        "container_start_time_seconds{container=\"app\",namespace=\"ns\",pod=\"web\"} 1."
    ));
}

#[tokio::test]
async fn runtime_failures_are_errors_and_scrape_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fake_host(dir.path());
    let rt = Arc::new(FakeRuntime {
        fail_lists: true,
        ..Default::default()
    });
    let provider = StatsProvider::new(rt.clone(), rt, paths, "node-1".into());
    let err = provider.summary(false).await.expect_err("runtime down");
    assert!(err.to_string().contains("ListPodSandbox"), "{err}");
    let text = provider.resource_metrics().await.expect("metrics");
    assert!(text.ends_with("resource_scrape_error 1\n"), "{text}");
}

/// A summary as the upstream kubelet writes it: every field name and nesting.
const UPSTREAM_JSON: &str = r#"{
 "node": {
  "nodeName": "node-1",
  "systemContainers": [
   {"name": "pods", "startTime": "2024-05-01T10:00:00Z",
    "cpu": {"time": "2024-05-01T10:10:00Z", "usageNanoCores": 1000, "usageCoreNanoSeconds": 2000},
    "memory": {"time": "2024-05-01T10:10:00Z", "availableBytes": 1, "usageBytes": 2, "workingSetBytes": 3, "rssBytes": 4, "pageFaults": 5, "majorPageFaults": 6}}
  ],
  "startTime": "2024-05-01T09:00:00Z",
  "cpu": {"time": "2024-05-01T10:10:00Z", "usageNanoCores": 10, "usageCoreNanoSeconds": 20},
  "memory": {"time": "2024-05-01T10:10:00Z", "availableBytes": 1, "usageBytes": 2, "workingSetBytes": 3, "rssBytes": 4, "pageFaults": 5, "majorPageFaults": 6},
  "network": {"time": "2024-05-01T10:10:00Z", "name": "eth0", "rxBytes": 1, "rxErrors": 0, "txBytes": 2, "txErrors": 0,
   "interfaces": [{"name": "eth0", "rxBytes": 1, "rxErrors": 0, "txBytes": 2, "txErrors": 0}]},
  "fs": {"time": "2024-05-01T10:10:00Z", "availableBytes": 1, "capacityBytes": 2, "usedBytes": 3, "inodesFree": 4, "inodes": 5, "inodesUsed": 6},
  "runtime": {
   "imageFs": {"time": "2024-05-01T10:10:00Z", "availableBytes": 1, "capacityBytes": 2, "usedBytes": 3, "inodesFree": 4, "inodes": 5, "inodesUsed": 6},
   "containerFs": {"time": "2024-05-01T10:10:00Z", "availableBytes": 1, "capacityBytes": 2, "usedBytes": 3, "inodesFree": 4, "inodes": 5, "inodesUsed": 6}
  },
  "rlimit": {"time": "2024-05-01T10:10:00Z", "maxpid": 4194304, "curproc": 312},
  "swap": {"time": "2024-05-01T10:10:00Z", "swapAvailableBytes": 0, "swapUsageBytes": 0}
 },
 "pods": [
  {
   "podRef": {"name": "web", "namespace": "ns", "uid": "u-1"},
   "startTime": "2024-05-01T10:00:00Z",
   "containers": [
    {"name": "app", "startTime": "2024-05-01T10:00:01Z",
     "cpu": {"time": "2024-05-01T10:10:00Z", "usageNanoCores": 1, "usageCoreNanoSeconds": 2},
     "memory": {"time": "2024-05-01T10:10:00Z", "workingSetBytes": 3, "usageBytes": 4, "rssBytes": 5, "pageFaults": 6, "majorPageFaults": 7},
     "rootfs": {"time": "2024-05-01T10:10:00Z", "availableBytes": 1, "capacityBytes": 2, "usedBytes": 3, "inodesFree": 4, "inodes": 5, "inodesUsed": 6},
     "logs": {"time": "2024-05-01T10:10:00Z", "availableBytes": 1, "capacityBytes": 2, "usedBytes": 3, "inodesFree": 4, "inodes": 5, "inodesUsed": 6},
     "swap": {"time": "2024-05-01T10:10:00Z", "swapUsageBytes": 0}}
   ],
   "cpu": {"time": "2024-05-01T10:10:00Z", "usageNanoCores": 1, "usageCoreNanoSeconds": 2},
   "memory": {"time": "2024-05-01T10:10:00Z", "usageBytes": 4, "workingSetBytes": 3, "rssBytes": 5, "pageFaults": 6, "majorPageFaults": 7},
   "network": {"time": "2024-05-01T10:10:00Z", "name": "eth0", "rxBytes": 1, "rxErrors": 0, "txBytes": 2, "txErrors": 0,
    "interfaces": [{"name": "eth0", "rxBytes": 1, "rxErrors": 0, "txBytes": 2, "txErrors": 0}]},
   "volume": [
    {"time": "2024-05-01T10:10:00Z", "availableBytes": 1, "capacityBytes": 2, "usedBytes": 3, "inodesFree": 4, "inodes": 5, "inodesUsed": 6, "name": "scratch"},
    {"time": "2024-05-01T10:10:00Z", "usedBytes": 3, "name": "data", "pvcRef": {"name": "claim", "namespace": "ns"}}
   ],
   "ephemeral-storage": {"time": "2024-05-01T10:10:00Z", "availableBytes": 1, "capacityBytes": 2, "usedBytes": 3, "inodesFree": 4, "inodes": 5, "inodesUsed": 6},
   "process_stats": {"process_count": 3},
   "swap": {"time": "2024-05-01T10:10:00Z", "swapUsageBytes": 0}
  }
 ]
}"#;

#[test]
fn json_field_names_are_upstream_s() {
    let upstream: serde_json::Value = serde_json::from_str(UPSTREAM_JSON).expect("json");
    let ours: Summary = serde_json::from_str(UPSTREAM_JSON).expect("decodes as a Summary");
    let back = serde_json::to_value(&ours).expect("encode");
    assert_eq!(back, upstream, "a round trip keeps every field and name");
    // omitempty: absent options and empty lists are left out, the zero time is null.
    let minimal = serde_json::to_value(Summary::default()).expect("encode");
    assert_eq!(
        minimal,
        serde_json::json!({"node": {"nodeName": "", "startTime": null}, "pods": []})
    );
}

#[tokio::test]
async fn configured_system_cgroups_are_system_containers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fake_host(dir.path());
    let cgroup = paths.cgroup_root.clone();
    write(&cgroup.join("cpuacct/kubelet/cpuacct.usage"), "700000000\n");
    write(
        &cgroup.join("memory/kubelet/memory.usage_in_bytes"),
        "50000000\n",
    );
    write(
        &cgroup.join("memory/kubelet/memory.stat"),
        "total_rss 30000000\ntotal_inactive_file 10000000\npgfault 5000\npgmajfault 1\n",
    );
    write(
        &cgroup.join("memory/kubelet/memory.limit_in_bytes"),
        "9223372036854771712\n",
    );
    let rt = Arc::new(fake_runtime(dir.path(), now_nanos()));
    let provider = StatsProvider::new(rt.clone(), rt, paths, "node-1".into());
    let names = |summary: &Summary| -> Vec<String> {
        summary
            .node
            .system_containers
            .iter()
            .map(|c| c.name.clone())
            .collect()
    };
    let summary = provider.summary(true).await.expect("summary");
    assert_eq!(names(&summary), ["pods"], "none configured");

    provider.set_system_cgroups(crate::SystemCgroups {
        kubelet: Some("/kubelet".into()),
        runtime: Some("/".into()),
        misc: Some("/system".into()),
    });
    let summary = provider.summary(false).await.expect("summary");
    assert_eq!(
        names(&summary),
        ["kubelet", "runtime", "pods"],
        "a missing cgroup (/system) is left out"
    );
    let kubelet = &summary.node.system_containers[0];
    assert_eq!(
        kubelet.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds),
        Some(700_000_000)
    );
    let memory = kubelet.memory.as_ref().expect("memory");
    assert_eq!(memory.working_set_bytes, Some(40_000_000));
    assert_eq!(memory.rss_bytes, Some(30_000_000));
    assert_eq!(
        memory.available_bytes, None,
        "system containers are not limited"
    );
    assert!(kubelet.start_time.unix_seconds() > 1_700_000_000);
    assert!(kubelet.rootfs.is_none() && kubelet.logs.is_none());
    let runtime = &summary.node.system_containers[1];
    assert_eq!(
        runtime.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds),
        Some(9_000_000_000),
        "the root cgroup"
    );
}
