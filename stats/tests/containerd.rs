//! The stats provider against the real containerd of `cargo xtask env up`: a pod in the
//! kubelet's besteffort cgroup with a container burning CPU and holding memory. Without
//! that environment the test reports itself skipped, unless `KUBELET_TEST_REQUIRE_ENV=1`
//! (set by `cargo xtask test`) makes a missing environment a failure.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kubelet_core::labels::{
    CONTAINER_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL,
};
use kubelet_core::{
    ContainerConfig, ContainerMetadata, ImageService, LinuxSandboxConfig, Runtime, SandboxConfig,
    SandboxMetadata,
};
use kubelet_cri_client::{CriClient, TestEnv, Timeouts};
use kubelet_stats::{StatsPaths, StatsProvider};

const NAMESPACE: &str = "stats-test";

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// Removes the pod cgroup runc created under every v1 controller (the kubelet's job for
/// real pods); the QoS parents stay, other pods use them.
fn remove_pod_cgroup(cgroup_parent: &str) {
    use kubelet_cgroups::CgroupManager;
    if let Err(e) = kubelet_cgroups::Cgroupfs::host().remove(cgroup_parent) {
        eprintln!("cleanup: {e}");
    }
}

fn pod_labels(name: &str, uid: &str) -> kubelet_core::StringMap {
    [
        (POD_NAME_LABEL.to_owned(), name.to_owned()),
        (POD_NAMESPACE_LABEL.to_owned(), NAMESPACE.to_owned()),
        (POD_UID_LABEL.to_owned(), uid.to_owned()),
    ]
    .into()
}

async fn wait_for_log(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(path).map(|m| m.len()).unwrap_or_default() == 0 {
        assert!(Instant::now() < deadline, "{} stays empty", path.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn summary_and_resource_metrics_of_a_real_pod() {
    let Some(env) = TestEnv::from_env("summary_and_resource_metrics_of_a_real_pod") else {
        return;
    };
    let client = Arc::new(
        CriClient::new(
            &env.endpoint,
            Timeouts {
                request: Duration::from_secs(60),
                pull: Duration::from_secs(120),
                ..Timeouts::default()
            },
        )
        .expect("valid endpoint"),
    );
    ImageService::pull_image(client.as_ref(), &env.busybox, None, None)
        .await
        .expect("pull busybox");

    let tmp = tempfile::tempdir().expect("tempdir");
    let logs_root = tmp.path().join("pods-logs");
    let root_dir = tmp.path().join("kubelet");
    let name = unique("burner");
    let uid = unique("uid");
    let log_directory = logs_root.join(format!("{NAMESPACE}_{name}_{uid}"));
    std::fs::create_dir_all(&log_directory).expect("log directory");
    std::fs::create_dir_all(root_dir.join("pods").join(&uid)).expect("pod dir");
    let cgroup_parent = format!("/kubepods/besteffort/pod{uid}");
    let sandbox = SandboxConfig {
        metadata: SandboxMetadata {
            name: name.clone(),
            namespace: NAMESPACE.into(),
            uid: uid.clone(),
            attempt: 0,
        },
        hostname: name.clone(),
        log_directory: log_directory.display().to_string(),
        labels: pod_labels(&name, &uid),
        linux: LinuxSandboxConfig {
            cgroup_parent: cgroup_parent.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    let sandbox_id = Runtime::run_sandbox(client.as_ref(), &sandbox)
        .await
        .expect("run sandbox");

    // The body runs as a task so that a failed assertion still removes the sandbox.
    let body = {
        let (client, sandbox, sandbox_id) = (client.clone(), sandbox.clone(), sandbox_id.clone());
        let (name, uid, busybox) = (name.clone(), uid.clone(), env.busybox.clone());
        async move {
            let mut labels = pod_labels(&name, &uid);
            labels.insert(CONTAINER_NAME_LABEL.to_owned(), "burner".to_owned());
            let config = ContainerConfig {
                metadata: ContainerMetadata {
                    name: "burner".into(),
                    attempt: 0,
                },
                image: busybox,
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo started; dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 2>/dev/null; \
                 while :; do :; done"
                        .into(),
                ],
                log_path: "burner/0.log".into(),
                labels,
                ..Default::default()
            };
            let id = Runtime::create_container(client.as_ref(), &sandbox_id, &config, &sandbox)
                .await
                .expect("create");
            Runtime::start_container(client.as_ref(), &id)
                .await
                .expect("start");
            wait_for_log(&log_directory.join("burner/0.log")).await;
            tokio::time::sleep(Duration::from_secs(2)).await;

            let provider = StatsProvider::new(
                client.clone(),
                client.clone(),
                StatsPaths {
                    root_dir: root_dir.clone(),
                    pods_log_dir: logs_root.clone(),
                    ..StatsPaths::default()
                },
                "stats-test-node".into(),
            );
            let first = provider.summary(false).await.expect("summary");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let summary = provider.summary(false).await.expect("summary");
            let json = serde_json::to_string_pretty(&summary).expect("json");

            let node = &summary.node;
            assert_eq!(node.node_name, "stats-test-node");
            assert!(
                node.cpu
                    .as_ref()
                    .and_then(|c| c.usage_core_nano_seconds)
                    .unwrap_or_default()
                    > 0,
                "{json}"
            );
            assert!(
                node.cpu
                    .as_ref()
                    .and_then(|c| c.usage_nano_cores)
                    .unwrap_or_default()
                    > 0,
                "node nano cores from two samples: {json}"
            );
            let node_mem = node.memory.as_ref().expect("node memory");
            assert!(node_mem.working_set_bytes.unwrap_or_default() > 0, "{json}");
            assert!(node_mem.available_bytes.unwrap_or_default() > 0, "{json}");
            let fs = node.fs.as_ref().expect("node fs");
            assert!(fs.capacity_bytes.unwrap_or_default() > 0, "{json}");
            assert!(fs.used_bytes.unwrap_or_default() > 0, "{json}");
            let image_fs = node
                .runtime
                .as_ref()
                .and_then(|r| r.image_fs.as_ref())
                .expect("image fs");
            assert!(image_fs.capacity_bytes.unwrap_or_default() > 0, "{json}");
            assert!(node.rlimit.as_ref().and_then(|r| r.max_pid).is_some());

            let pod = summary
                .pods
                .iter()
                .find(|p| p.pod_ref.uid == uid)
                .unwrap_or_else(|| panic!("pod {uid} not in {json}"));
            assert_eq!(pod.pod_ref.name, name);
            assert_eq!(pod.pod_ref.namespace, NAMESPACE);
            let pod_cpu = pod.cpu.as_ref().expect("pod cpu");
            assert!(
                pod_cpu.usage_core_nano_seconds.unwrap_or_default() > 0,
                "{json}"
            );
            assert!(
                pod_cpu.usage_nano_cores.unwrap_or_default() > 100_000_000,
                "a busy loop uses a good part of a core: {json}"
            );
            let pod_mem = pod.memory.as_ref().expect("pod memory");
            assert!(
                pod_mem.working_set_bytes.unwrap_or_default() > 8 << 20,
                "16 MiB in /dev/shm: {json}"
            );
            assert!(pod.network.is_some(), "{json}");
            assert!(pod.ephemeral_storage.is_some(), "{json}");
            assert!(
                pod.process_stats
                    .as_ref()
                    .and_then(|p| p.process_count)
                    .unwrap_or_default()
                    >= 1,
                "{json}"
            );

            assert_eq!(pod.containers.len(), 1, "{json}");
            let c = &pod.containers[0];
            assert_eq!(c.name, "burner");
            assert!(
                c.cpu
                    .as_ref()
                    .and_then(|c| c.usage_core_nano_seconds)
                    .unwrap_or_default()
                    > 0,
                "{json}"
            );
            assert!(
                c.cpu
                    .as_ref()
                    .and_then(|c| c.usage_nano_cores)
                    .unwrap_or_default()
                    > 0,
                "{json}"
            );
            assert!(
                c.memory
                    .as_ref()
                    .and_then(|m| m.working_set_bytes)
                    .unwrap_or_default()
                    > 0,
                "{json}"
            );
            let rootfs = c.rootfs.as_ref().expect("rootfs");
            assert!(rootfs.capacity_bytes.unwrap_or_default() > 0, "{json}");
            assert!(rootfs.used_bytes.is_some(), "{json}");
            let logs = c.logs.as_ref().expect("logs");
            assert!(logs.used_bytes.unwrap_or_default() > 0, "{json}");
            assert!(logs.capacity_bytes.unwrap_or_default() > 0, "{json}");
            assert!(
                first.pods.iter().any(|p| p.pod_ref.uid == uid),
                "first summary"
            );

            let metrics = provider.resource_metrics().await.expect("metrics");
            for prefix in [
                format!(
                    "container_cpu_usage_seconds_total{{container=\"burner\",namespace=\"{NAMESPACE}\",pod=\"{name}\"}} "
                ),
                format!(
                    "container_memory_working_set_bytes{{container=\"burner\",namespace=\"{NAMESPACE}\",pod=\"{name}\"}} "
                ),
                format!(
                    "container_start_time_seconds{{container=\"burner\",namespace=\"{NAMESPACE}\",pod=\"{name}\"}} "
                ),
                format!("pod_cpu_usage_seconds_total{{namespace=\"{NAMESPACE}\",pod=\"{name}\"}} "),
                "node_cpu_usage_seconds_total ".to_owned(),
                "resource_scrape_error 0".to_owned(),
            ] {
                assert!(
                    metrics.lines().any(|l| l.starts_with(&prefix)),
                    "{prefix:?} not in\n{metrics}"
                );
            }
        }
    };
    let outcome = tokio::spawn(body).await;

    if let Err(e) = Runtime::stop_sandbox(client.as_ref(), &sandbox_id).await {
        eprintln!("cleanup: {e}");
    }
    if let Err(e) = Runtime::remove_sandbox(client.as_ref(), &sandbox_id).await {
        eprintln!("cleanup: {e}");
    }
    remove_pod_cgroup(&cgroup_parent);
    drop(tmp);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
