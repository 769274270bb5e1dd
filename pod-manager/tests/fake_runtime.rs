//! The pod manager against the in-process fake CRI runtime: ordering, restarts,
//! adoption and cleanup without containerd.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::Backoff;
use kubelet_cri_client::{CriClient, FakeCriServer, FakeImage, Timeouts};
use kubelet_pod_manager::spec::{NoEnvObjects, NodeContext};
use kubelet_pod_manager::{
    LocalPods, ManagerConfig, PodManager, PodSource, SourceUpdate, SyncContext, TokioClock,
    UpdateKind,
};
use kubelet_probes::KubeletProber;
use tokio::sync::mpsc;

const IMAGE: &str = "localhost:5000/busybox:latest";

/// Forwards to `LocalPods` and keeps every report, and when each pod was forgotten.
#[derive(Default)]
struct Recorder {
    pods: Arc<LocalPods>,
    /// `(pod name, status)` of each report, and `(pod name, None)` where it was forgotten.
    history: Mutex<Vec<(String, Option<k8s_openapi::api::core::v1::PodStatus>)>>,
}

#[async_trait::async_trait]
impl kubelet_core::StatusReporter for Recorder {
    async fn report(
        &self,
        pod: &Pod,
        status: &k8s_openapi::api::core::v1::PodStatus,
    ) -> kubelet_core::Result<()> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((
                pod.metadata.name.clone().unwrap_or_default(),
                Some(status.clone()),
            ));
        self.pods.report(pod, status).await
    }

    async fn forget(&self, pod: &kubelet_core::PodRef) -> kubelet_core::Result<()> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((pod.name.clone(), None));
        self.pods.forget(pod).await
    }
}

struct Harness {
    fake: FakeCriServer,
    pods: Arc<LocalPods>,
    recorder: Arc<Recorder>,
    updates: mpsc::Sender<SourceUpdate>,
    manager: tokio::task::JoinHandle<kubelet_pod_manager::Result<()>>,
    killer: kubelet_pod_manager::kill::PodKiller,
    container_gc: kubelet_pod_manager::ContainerGc,
    ctx: Arc<SyncContext>,
    dirs: tempfile::TempDir,
}

fn start(fake: FakeCriServer) -> Harness {
    start_with_relist(fake, Duration::from_millis(50))
}

fn start_with_relist(fake: FakeCriServer, relist_period: Duration) -> Harness {
    // Back-off cut down so that wall-clock tests stay short; the paused-time test uses
    // upstream's.
    let quick = Backoff::new(
        Duration::from_millis(200),
        Duration::from_millis(800),
        Duration::from_secs(600),
    );
    start_with(fake, relist_period, quick)
}

/// A pod manager on `fake` whose clock, and the fake runtime's, follow tokio's time (real
/// time, or virtual time under `start_paused`).
fn start_with(fake: FakeCriServer, relist_period: Duration, crash_backoff: Backoff) -> Harness {
    start_with_gc(
        fake,
        relist_period,
        crash_backoff,
        kubelet_pod_manager::ContainerGcPolicy::default(),
    )
}

/// [`start_with`] keeping dead containers by `container_gc`.
fn start_with_gc(
    fake: FakeCriServer,
    relist_period: Duration,
    crash_backoff: Backoff,
    container_gc: kubelet_pod_manager::ContainerGcPolicy,
) -> Harness {
    start_with_parts(
        fake,
        relist_period,
        crash_backoff,
        container_gc,
        Arc::new(kubelet_core::NoImageCredentials),
    )
}

/// [`start_with_gc`] with the node's registry credentials from `image_credentials`.
fn start_with_parts(
    fake: FakeCriServer,
    relist_period: Duration,
    crash_backoff: Backoff,
    container_gc: kubelet_pod_manager::ContainerGcPolicy,
    image_credentials: Arc<dyn kubelet_core::ImageCredentials>,
) -> Harness {
    let clock: Arc<dyn kubelet_core::Clock> = Arc::new(TokioClock::new());
    let fake = fake.with_clock(clock.clone());
    let started = clock.now();
    let client: CriClient = fake.client(Timeouts::default());
    let client_for_probes = client.clone();
    let dirs = tempfile::tempdir().expect("temp dir");
    let ctx = SyncContext {
        runtime: Arc::new(client.clone()),
        images: Arc::new(client),
        node: NodeContext {
            node_name: "node1".into(),
            host_ips: vec!["10.88.0.1".parse().expect("ip")],
            pod_logs_root: dirs.path().join("logs"),
            container_logs_dir: dirs.path().join("containers"),
            pods_dir: dirs.path().join("pods"),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "nameserver 127.0.0.53\n".into(),
            allocatable: kubelet_core::NodeResources {
                milli_cpu: 2000,
                memory: 1 << 30,
                ..Default::default()
            },
            container_gc,
            ..NodeContext::default()
        },
        env_objects: Arc::new(NoEnvObjects),
        runtime_name: "fake".into(),
        crash_backoff: Mutex::new(crash_backoff),
        image_backoff: Mutex::new(Backoff::new(
            Duration::from_millis(200),
            Duration::from_millis(800),
            Duration::from_secs(600),
        )),
        prober: Some(Arc::new(KubeletProber::new(Arc::new(client_for_probes)))),
        events: Arc::new(kubelet_core::NoEvents),
        volumes: Arc::new(kubelet_volumes::VolumeManager::new(
            dirs.path().join("pods"),
            Arc::new(kubelet_core::NoVolumeSources),
        )),
        clock,
        // A fake runtime makes no cgroups: leave the host's alone.
        cgroups: None,
        runtime_classes: Arc::new(kubelet_pod_manager::NoRuntimeClasses),
        image_credentials,
        pull_records: None,
        devices: None,
        metrics: Default::default(),
        started,
    };
    let pods = Arc::new(LocalPods::new());
    let recorder = Arc::new(Recorder {
        pods: pods.clone(),
        history: Mutex::default(),
    });
    let ctx = Arc::new(ctx);
    let manager = PodManager::new(
        ctx.clone(),
        recorder.clone(),
        ManagerConfig {
            relist_period,
            resync_period: Duration::from_secs(60),
            sources: vec![PodSource::File],
            log_rotation: None,
        },
    );
    let (updates, rx) = mpsc::channel(4);
    let (killer, container_gc) = (manager.pod_killer(), manager.container_gc());
    let manager = tokio::spawn(manager.run(rx));
    Harness {
        fake,
        pods,
        recorder,
        updates,
        manager,
        killer,
        container_gc,
        ctx,
        dirs,
    }
}

fn pod(name: &str, uid: &str, init: &[(&str, &str)], app: &[(&str, &str)], policy: &str) -> Pod {
    let container = |(name, script): &(&str, &str)| Container {
        name: (*name).into(),
        image: Some(IMAGE.into()),
        command: Some(vec!["sh".into(), "-c".into(), (*script).into()]),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: Some(init.iter().map(container).collect()),
            containers: app.iter().map(container).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn send(h: &Harness, pods: Vec<Pod>) {
    h.updates
        .send(SourceUpdate {
            source: PodSource::File,
            pods,
            rejected: Vec::new(),
            kind: UpdateKind::Snapshot,
        })
        .await
        .expect("manager running");
}

/// Waits until `check` passes on the published pods (the manager works asynchronously).
async fn eventually(h: &Harness, what: &str, check: impl Fn(&[Pod]) -> bool) {
    eventually_within(h, what, Duration::from_secs(5), check).await;
}

/// [`eventually`] for at most `limit` (of virtual time under `start_paused`).
async fn eventually_within(
    h: &Harness,
    what: &str,
    limit: Duration,
    check: impl Fn(&[Pod]) -> bool,
) {
    for _ in 0..limit.as_millis() / 25 {
        if check(&h.pods.pods()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{what}: not reached; pods: {:#?}",
        h.pods.pods().iter().map(|p| &p.status).collect::<Vec<_>>()
    );
}

fn phase(pods: &[Pod], name: &str) -> String {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn waiting_reason(pods: &[Pod], name: &str, container: &str) -> Option<String> {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))?
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

fn container_calls(fake: &FakeCriServer, rpc: &str) -> usize {
    fake.calls().iter().filter(|c| c.starts_with(rpc)).count()
}

#[tokio::test]
async fn runs_init_containers_in_order_then_the_app() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake);
    send(
        &h,
        vec![pod(
            "web",
            "u-web",
            &[("init-a", "true"), ("init-b", "true")],
            &[("app", "sleep 1000")],
            "Always",
        )],
    )
    .await;

    // The first init container runs alone; the app waits in PodInitializing. (The pod is
    // Pending from its first status on, before anything started: wait for the start.)
    eventually(&h, "init-a running", |pods| {
        container_calls(&h.fake, "StartContainer") == 1
            && phase(pods, "web") == "Pending"
            && waiting_reason(pods, "web", "app").as_deref() == Some("PodInitializing")
    })
    .await;
    assert_eq!(container_calls(&h.fake, "StartContainer"), 1);

    // Each init container that succeeds lets the next one start.
    for expected_starts in [2, 3] {
        let running: Vec<_> = h.fake.container_ids();
        let last = running.last().expect("a container").clone();
        assert!(h.fake.exit_container(&last, 0));
        for _ in 0..200 {
            if container_calls(&h.fake, "StartContainer") == expected_starts {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(container_calls(&h.fake, "StartContainer"), expected_starts);
    }
    eventually(&h, "pod running", |pods| phase(pods, "web") == "Running").await;
    let created: Vec<String> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("CreateContainer"))
        .collect();
    assert_eq!(created.len(), 3);
    assert!(
        created[0].ends_with("/init-a")
            && created[1].ends_with("/init-b")
            && created[2].ends_with("/app"),
        "{created:?}"
    );
    h.manager.abort();
}

#[tokio::test]
async fn a_failing_init_container_blocks_the_app_and_fails_a_never_pod() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake);
    send(
        &h,
        vec![pod(
            "job",
            "u-job",
            &[("setup", "exit 1")],
            &[("app", "true")],
            "Never",
        )],
    )
    .await;
    eventually(&h, "init started", |_| {
        container_calls(&h.fake, "StartContainer") == 1
    })
    .await;
    let setup = h.fake.container_ids()[0].clone();
    assert!(h.fake.exit_container(&setup, 1));
    eventually(&h, "pod failed", |pods| phase(pods, "job") == "Failed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        container_calls(&h.fake, "StartContainer"),
        1,
        "the app never starts"
    );
    h.manager.abort();
}

/// The app container's status in the published pods.
fn app_status(pods: &[Pod]) -> Option<ContainerStatus> {
    pods.first()?
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

/// Seconds between the last exit of the app container and its current start, as the
/// published status says them (the API's one-second precision).
fn restart_delay_seconds(status: &ContainerStatus) -> Option<i64> {
    let started = status
        .state
        .as_ref()?
        .running
        .as_ref()?
        .started_at
        .as_ref()?;
    let finished = status
        .last_state
        .as_ref()?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()?;
    Some(started.0.as_second() - finished.0.as_second())
}

#[tokio::test(start_paused = true)]
async fn crash_loop_back_off_waits_upstreams_delays_in_virtual_time() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start_with(fake, Duration::from_millis(50), Backoff::crash_loop());
    send(
        &h,
        vec![pod("crash", "u-crash", &[], &[("app", "exit 1")], "Always")],
    )
    .await;
    eventually(&h, "running", |pods| phase(pods, "crash") == "Running").await;
    // Upstream: the first exit restarts at once, then 10 s, 20 s, 40 s between restarts.
    for (restarts, delay) in [(1, 0), (2, 10), (3, 20), (4, 40)] {
        let running = h.fake.container_ids().last().expect("running").clone();
        assert!(h.fake.exit_container(&running, 1));
        if delay > 0 {
            eventually(&h, "back-off", |pods| {
                waiting_reason(pods, "crash", "app").as_deref() == Some("CrashLoopBackOff")
            })
            .await;
        }
        eventually_within(&h, "restarted", Duration::from_secs(60), |pods| {
            app_status(pods).is_some_and(|s| {
                s.restart_count == restarts
                    && s.state.as_ref().is_some_and(|st| st.running.is_some())
            })
        })
        .await;
        let status = app_status(&h.pods.pods()).expect("status");
        let seconds = restart_delay_seconds(&status).expect("started after an exit");
        assert!(
            (delay..=delay + 1).contains(&seconds),
            "restart {restarts}: {seconds} s after the exit, upstream waits {delay} s"
        );
    }
    // Only the newest exited instance is kept besides the running one.
    eventually(&h, "old instances removed", |_| {
        h.fake.container_ids().len() == 2
    })
    .await;
    h.manager.abort();
}

#[tokio::test(start_paused = true)]
async fn back_offs_of_gone_containers_are_forgotten() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start_with(fake, Duration::from_secs(1), Backoff::crash_loop());
    send(
        &h,
        vec![pod("crash", "u-crash", &[], &[("app", "exit 1")], "Always")],
    )
    .await;
    eventually(&h, "running", |pods| phase(pods, "crash") == "Running").await;
    let running = h.fake.container_ids().last().expect("running").clone();
    assert!(h.fake.exit_container(&running, 1));
    eventually_within(&h, "restarted", Duration::from_secs(60), |pods| {
        app_status(pods).is_some_and(|s| s.restart_count == 1)
    })
    .await;
    let backoffs = || h.ctx.crash_backoff.lock().expect("back-off").len();
    assert_eq!(backoffs(), 1);
    // Gone, and not failing for longer than the reset period: housekeeping forgets its
    // back-off, so the map stays bounded by what failed recently.
    send(&h, Vec::new()).await;
    tokio::time::sleep(Duration::from_secs(11 * 60)).await;
    assert_eq!(backoffs(), 0, "the removed pod's back-off was collected");
    h.manager.abort();
}

#[tokio::test(start_paused = true)]
async fn dropping_the_manager_stops_its_relist() {
    let fake = FakeCriServer::start();
    let h = start(fake);
    let relists = |fake: &FakeCriServer| container_calls(fake, "ListPodSandbox");
    while relists(&h.fake) < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Aborting the task drops the `run` future, which owns the relist.
    h.manager.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = relists(&h.fake);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        relists(&h.fake),
        after_drop,
        "no relist (every 50 ms) after the manager was dropped"
    );
}

/// What a kubelet stopped before it finished its pods left is cleaned up at the first
/// housekeeping after every source was seen (upstream's housekeeping, every 2 s), not
/// only at the periodic clean-up 30 s later.
#[tokio::test(start_paused = true)]
async fn an_orphaned_pod_directory_goes_soon_after_the_sources_are_seen() {
    let fake = FakeCriServer::start();
    let h = start(fake);
    let orphan = h
        .dirs
        .path()
        .join("pods/00000000-0000-0000-0000-00000000dead");
    std::fs::create_dir_all(orphan.join("volumes/kubernetes.io~empty-dir/old")).expect("dir");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(orphan.exists(), "kept while the file source was not seen");
    send(&h, Vec::new()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while orphan.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the orphaned pod directory is still there 5 s after the sources were seen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.manager.abort();
}

#[tokio::test]
async fn a_missing_image_shows_err_image_pull_then_back_off_while_others_run() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake);
    let mut bad = pod("bad", "u-bad", &[], &[("app", "true")], "Always");
    if let Some(spec) = bad.spec.as_mut() {
        spec.containers[0].image = Some("localhost:5000/nope:1".into());
    }
    send(
        &h,
        vec![
            bad,
            pod("good", "u-good", &[], &[("app", "sleep 1000")], "Always"),
        ],
    )
    .await;
    eventually(&h, "good runs", |pods| phase(pods, "good") == "Running").await;
    eventually(&h, "ErrImagePull", |pods| {
        matches!(
            waiting_reason(pods, "bad", "app").as_deref(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    })
    .await;
    eventually(&h, "ImagePullBackOff", |pods| {
        waiting_reason(pods, "bad", "app").as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(phase(&h.pods.pods(), "bad"), "Pending");
    h.manager.abort();
}

#[tokio::test]
async fn removed_pods_are_stopped_and_removed_and_a_restarted_manager_adopts() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake.clone());
    let keep = pod("keep", "u-keep", &[], &[("app", "sleep 1000")], "Always");
    let drop_me = pod("drop", "u-drop", &[], &[("app", "sleep 1000")], "Always");
    send(&h, vec![keep.clone(), drop_me]).await;
    eventually(&h, "both running", |pods| {
        phase(pods, "keep") == "Running" && phase(pods, "drop") == "Running"
    })
    .await;
    assert_eq!(fake.sandbox_ids().len(), 2);

    // A restarted manager (kubelet) adopts the running pod: no new sandbox or container.
    h.manager.abort();
    let starts_before = container_calls(&fake, "StartContainer");
    let sandboxes_before = container_calls(&fake, "RunPodSandbox");
    let h2 = start(fake.clone());
    send(&h2, vec![keep]).await;
    eventually(&h2, "adopted", |pods| phase(pods, "keep") == "Running").await;
    // The pod the new manager's sources no longer want is stopped and removed.
    eventually(&h2, "orphan removed", |_| fake.sandbox_ids().len() == 1).await;
    assert_eq!(container_calls(&fake, "StartContainer"), starts_before);
    assert_eq!(container_calls(&fake, "RunPodSandbox"), sandboxes_before);

    send(&h2, vec![]).await;
    eventually(&h2, "all removed", |pods| {
        pods.is_empty() && fake.sandbox_ids().is_empty() && fake.container_ids().is_empty()
    })
    .await;
    h2.manager.abort();
}

#[tokio::test]
async fn one_hung_runtime_call_does_not_stall_other_pods() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    // Pulls of one image hang; the other image is already present.
    fake.add_registry_image(FakeImage::public("localhost:5000/slow:1"));
    fake.add_local_image("localhost:5000/fast:1");
    fake.delay("PullImage", Duration::from_secs(3600));
    let h = start(fake);
    let mut slow = pod("slow", "u-slow", &[], &[("app", "true")], "Always");
    let mut fast = pod("fast", "u-fast", &[], &[("app", "sleep 1000")], "Always");
    if let (Some(s), Some(f)) = (slow.spec.as_mut(), fast.spec.as_mut()) {
        s.containers[0].image = Some("localhost:5000/slow:1".into());
        f.containers[0].image = Some("localhost:5000/fast:1".into());
    }
    send(&h, vec![slow, fast]).await;
    eventually(&h, "fast runs", |pods| phase(pods, "fast") == "Running").await;
    // Still in its first sync, the slow pod is shown Pending and waiting.
    assert_eq!(phase(&h.pods.pods(), "slow"), "Pending");
    assert_eq!(
        waiting_reason(&h.pods.pods(), "slow", "app").as_deref(),
        Some("ContainerCreating")
    );
    h.manager.abort();
}

#[tokio::test]
async fn container_events_wake_workers_without_a_relist() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    // A relist this rare never runs during the test: only events can reveal the exit.
    let h = start_with_relist(fake, Duration::from_secs(3600));
    send(
        &h,
        vec![pod("evented", "u-ev", &[], &[("app", "exit 1")], "Always")],
    )
    .await;
    eventually(&h, "running", |pods| phase(pods, "evented") == "Running").await;
    let first = h.fake.container_ids()[0].clone();
    assert!(h.fake.exit_container(&first, 1));
    eventually(&h, "restarted on the event", |_| {
        container_calls(&h.fake, "StartContainer") == 2
    })
    .await;
    h.manager.abort();
}

#[tokio::test]
async fn without_container_events_the_relist_notices() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    fake.set_events_supported(false);
    let h = start(fake);
    send(
        &h,
        vec![pod("relisted", "u-rl", &[], &[("app", "exit 1")], "Always")],
    )
    .await;
    eventually(&h, "running", |pods| phase(pods, "relisted") == "Running").await;
    let first = h.fake.container_ids()[0].clone();
    assert!(h.fake.exit_container(&first, 1));
    eventually(&h, "restarted after a relist", |_| {
        container_calls(&h.fake, "StartContainer") == 2
    })
    .await;
    assert!(
        h.fake
            .calls()
            .iter()
            .any(|c| c.starts_with("GetContainerEvents"))
    );
    h.manager.abort();
}

#[tokio::test]
async fn sidecars_start_before_the_app_and_stop_after_it() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake);
    let mut with_sidecar = pod(
        "side",
        "u-side",
        &[("proxy", "sleep 1000")],
        &[("app", "sleep 1000")],
        "Always",
    );
    if let Some(spec) = with_sidecar.spec.as_mut() {
        spec.init_containers.as_mut().expect("init")[0].restart_policy = Some("Always".into());
    }
    send(&h, vec![with_sidecar]).await;
    eventually(&h, "running", |pods| phase(pods, "side") == "Running").await;
    let created: Vec<String> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("CreateContainer"))
        .collect();
    assert!(
        created[0].ends_with("/proxy") && created[1].ends_with("/app"),
        "{created:?}"
    );
    let ids = h.fake.container_ids();
    let (proxy_id, app_id) = (ids[0].clone(), ids[1].clone());
    // The sidecar keeps running while the app runs.
    assert!(
        h.pods.pods()[0]
            .status
            .as_ref()
            .and_then(|s| s.init_container_statuses.as_ref())
            .is_some_and(|s| s[0].state.as_ref().is_some_and(|st| st.running.is_some()))
    );

    send(&h, vec![]).await;
    eventually(&h, "removed", |pods| pods.is_empty()).await;
    let stops: Vec<String> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("StopContainer"))
        .collect();
    assert_eq!(
        stops,
        [
            format!("StopContainer {app_id}"),
            format!("StopContainer {proxy_id}")
        ]
    );
    h.manager.abort();
}

fn exec_probe(command: &str) -> k8s_openapi::api::core::v1::Probe {
    k8s_openapi::api::core::v1::Probe {
        exec: Some(k8s_openapi::api::core::v1::ExecAction {
            command: Some(vec![command.into()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    }
}

fn container_ready(pods: &[Pod], name: &str) -> Option<bool> {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))?
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .map(|c| c.ready)
}

#[tokio::test]
async fn readiness_and_liveness_probes_drive_ready_and_restarts() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    fake.on_exec({
        let (ready, alive) = (ready.clone(), alive.clone());
        move |_, command| {
            let ok = match command.first().map(String::as_str) {
                Some("ready?") => ready.load(std::sync::atomic::Ordering::SeqCst),
                Some("alive?") => alive.load(std::sync::atomic::Ordering::SeqCst),
                _ => true,
            };
            kubelet_cri_client::proto::ExecSyncResponse {
                stdout: Vec::new(),
                stderr: if ok { Vec::new() } else { b"not yet".to_vec() },
                exit_code: i32::from(!ok),
            }
        }
    });
    let h = start(fake);
    let mut probed = pod(
        "probed",
        "u-probed",
        &[],
        &[("app", "sleep 1000")],
        "Always",
    );
    if let Some(spec) = probed.spec.as_mut() {
        spec.containers[0].readiness_probe = Some(exec_probe("ready?"));
        spec.containers[0].liveness_probe = Some(exec_probe("alive?"));
    }
    send(&h, vec![probed]).await;
    eventually(&h, "running, not ready", |pods| {
        phase(pods, "probed") == "Running" && container_ready(pods, "probed") == Some(false)
    })
    .await;
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually(&h, "ready once the probe passes", |pods| {
        container_ready(pods, "probed") == Some(true)
    })
    .await;
    let conditions = |pods: &[Pod]| {
        pods[0]
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status)
    };
    assert_eq!(conditions(&h.pods.pods()).as_deref(), Some("True"));

    // A failing liveness probe gets the container killed and restarted.
    alive.store(false, std::sync::atomic::Ordering::SeqCst);
    eventually(&h, "restarted after liveness failure", |_| {
        container_calls(&h.fake, "StartContainer") >= 2
    })
    .await;
    assert!(container_calls(&h.fake, "StopContainer") >= 1);
    h.manager.abort();
}

#[tokio::test]
async fn a_pod_wanted_again_while_being_removed_runs_again() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    // Slow stops keep the removal in progress when the pod comes back.
    fake.delay("StopContainer", Duration::from_millis(300));
    let h = start(fake);
    let back = pod("back", "u-back", &[], &[("app", "sleep 1000")], "Always");
    send(&h, vec![back.clone()]).await;
    eventually(&h, "running", |pods| phase(pods, "back") == "Running").await;
    send(&h, vec![]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&h, vec![back]).await;
    eventually(&h, "running again", |pods| {
        phase(pods, "back") == "Running"
            && h.fake.sandbox_ids().len() == 1
            && h.fake.container_ids().iter().len() >= 1
    })
    .await;
    // Stable: one sandbox with one running container, not two workers fighting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.fake.sandbox_ids().len(), 1);
    assert_eq!(phase(&h.pods.pods(), "back"), "Running");
    h.manager.abort();
}

#[tokio::test]
async fn a_deleted_pod_reports_its_terminal_status_before_it_is_forgotten() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake.clone());
    let mut web = pod("web", "u-web", &[], &[("app", "sleep 1000")], "Always");
    web.spec
        .as_mut()
        .expect("spec")
        .termination_grace_period_seconds = Some(1);
    send(&h, vec![web.clone()]).await;
    eventually(&h, "running", |pods| phase(pods, "web") == "Running").await;
    // Deleted through the API: the deletion timestamp arrives as an update.
    web.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    web.metadata.deletion_grace_period_seconds = Some(1);
    send(&h, vec![web]).await;
    let forgot = |h: &Harness| {
        h.recorder
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(name, status)| name == "web" && status.is_none())
    };
    eventually(&h, "removed and forgotten", |_| {
        fake.sandbox_ids().is_empty() && forgot(&h)
    })
    .await;
    let history = h
        .recorder
        .history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let forgotten = history
        .iter()
        .position(|(name, status)| name == "web" && status.is_none())
        .expect("forgotten");
    let (_, last) = &history[forgotten - 1];
    let last = last.clone().expect("a status right before");
    assert!(
        matches!(last.phase.as_deref(), Some("Failed" | "Succeeded")),
        "terminal phase: {last:?}"
    );
    let app = &last.container_statuses.as_ref().expect("statuses")[0];
    assert!(
        app.state.as_ref().is_some_and(|s| s.terminated.is_some()),
        "terminated state, not waiting to restart: {app:?}"
    );
    h.manager.abort();
}

/// The log files the symlinks in the harness's container log directory point at, by
/// `<container>/<n>.log`, sorted.
fn linked_logs(h: &Harness) -> Vec<String> {
    let mut targets: Vec<String> = std::fs::read_dir(h.dirs.path().join("containers"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| {
                    let n = t.components().count();
                    t.components()
                        .skip(n - 2)
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    targets
}

#[tokio::test]
async fn log_symlinks_and_dead_sandboxes_go_with_their_containers() {
    use kubelet_core::Runtime;
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake.clone());
    // The fake runtime writes no logs: put the files where it would.
    let logs = h.dirs.path().join("logs/default_web_u-gc/app");
    std::fs::create_dir_all(&logs).expect("mkdir");
    for n in 0..3 {
        std::fs::write(logs.join(format!("{n}.log")), "").expect("log");
    }
    send(
        &h,
        vec![pod("web", "u-gc", &[], &[("app", "sleep 1000")], "Always")],
    )
    .await;
    eventually(&h, "running", |pods| phase(pods, "web") == "Running").await;
    assert_eq!(linked_logs(&h), ["app/0.log"]);
    let link = std::fs::read_dir(h.dirs.path().join("containers"))
        .expect("links")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("link");
    assert!(
        link.starts_with("web_default_app-") && link.ends_with(".log"),
        "{link}"
    );

    // The sandbox dies: a new one replaces it; the old one keeps the exited app.
    let first = fake.sandbox_ids();
    let client = fake.client(Timeouts::default());
    client.stop_sandbox(&first[0]).await.expect("stop sandbox");
    eventually(&h, "new sandbox", |pods| {
        fake.sandbox_ids().len() == 2
            && app_status(pods).is_some_and(|s| s.restart_count == 1 && s.ready)
    })
    .await;
    assert_eq!(linked_logs(&h), ["app/0.log", "app/1.log"]);

    // The app exits again: the old instance goes with its link, then its sandbox.
    let running = fake
        .container_ids()
        .into_iter()
        .find(|id| !link.contains(id.as_str()))
        .expect("new instance");
    assert!(fake.exit_container(&running, 1));
    eventually(&h, "old sandbox removed", |pods| {
        fake.sandbox_ids().len() == 1 && app_status(pods).is_some_and(|s| s.restart_count == 2)
    })
    .await;
    assert!(!fake.sandbox_ids().contains(&first[0]));
    assert!(
        fake.calls()
            .iter()
            .any(|c| c == &format!("RemovePodSandbox {}", first[0]))
    );
    eventually(&h, "old link removed", |_| {
        linked_logs(&h) == ["app/1.log", "app/2.log"]
    })
    .await;

    // The pod goes: so do all its links.
    send(&h, vec![]).await;
    eventually(&h, "removed", |pods| {
        pods.is_empty() && fake.sandbox_ids().is_empty()
    })
    .await;
    eventually(&h, "links removed", |_| linked_logs(&h).is_empty()).await;
    h.manager.abort();
}

#[tokio::test]
async fn under_disk_pressure_a_finished_pods_containers_and_sandboxes_go() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake.clone());
    send(
        &h,
        vec![
            pod("web", "u-web", &[], &[("app", "sleep 1000")], "Always"),
            pod("hog", "u-hog", &[], &[("app", "sleep 1000")], "Always"),
        ],
    )
    .await;
    eventually(&h, "running", |pods| {
        phase(pods, "web") == "Running" && phase(pods, "hog") == "Running"
    })
    .await;
    assert_eq!(
        h.container_gc.delete_all_unused_containers().await,
        0,
        "nothing of a running pod goes"
    );
    let why = kubelet_pod_manager::kill::KillReason {
        reason: "Evicted".into(),
        message: "The node was low on resource: ephemeral-storage. ".into(),
    };
    assert_eq!(
        h.killer
            .kill(vec!["u-hog".into()], 0, why, Duration::from_secs(5))
            .await,
        1
    );
    eventually(&h, "evicted", |pods| phase(pods, "hog") == "Failed").await;
    // The evicted pod keeps its exited container and dead sandbox for its status until
    // the node needs the disk.
    assert_eq!(fake.sandbox_ids().len(), 2);
    assert_eq!(fake.container_ids().len(), 2);
    let mut removed = 0;
    for _ in 0..40 {
        removed += h.container_gc.delete_all_unused_containers().await;
        if removed > 0 {
            break;
        }
        // The worker marks the pod finished once its volumes are released.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(removed, 2, "the evicted pod's container and sandbox");
    assert_eq!(fake.sandbox_ids().len(), 1);
    assert_eq!(fake.container_ids().len(), 1);
    assert_eq!(phase(&h.pods.pods(), "web"), "Running");
    assert_eq!(phase(&h.pods.pods(), "hog"), "Failed");
    h.manager.abort();
}

#[tokio::test]
async fn maximum_dead_containers_per_container_keeps_that_many_exited_instances() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let quick = Backoff::new(
        Duration::from_millis(50),
        Duration::from_millis(100),
        Duration::from_secs(600),
    );
    let policy = kubelet_pod_manager::ContainerGcPolicy {
        max_per_pod_container: 2,
        ..Default::default()
    };
    let h = start_with_gc(fake.clone(), Duration::from_millis(50), quick, policy);
    send(
        &h,
        vec![pod(
            "web",
            "u-keep",
            &[],
            &[("app", "sleep 1000")],
            "Always",
        )],
    )
    .await;
    for restarts in 1..=4 {
        eventually(&h, "running", |pods| {
            app_status(pods).is_some_and(|s| s.ready && s.restart_count == restarts - 1)
        })
        .await;
        let running = app_status(&h.pods.pods())
            .and_then(|s| s.container_id)
            .and_then(|id| id.split_once("://").map(|(_, id)| id.to_owned()))
            .expect("the running instance");
        assert!(fake.exit_container(&running, 1));
        eventually(&h, "restarted", |pods| {
            app_status(pods).is_some_and(|s| s.restart_count == restarts)
        })
        .await;
    }
    // Four exited instances and the running one: the two newest exited stay.
    eventually(&h, "old instances removed", |_| {
        fake.container_ids().len() == 3
    })
    .await;
    h.manager.abort();
}

#[tokio::test]
async fn a_second_ready_sandbox_is_reconciled() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake);
    let web = pod("web", "u-two", &[], &[("app", "sleep 1000")], "Always");
    send(&h, vec![web.clone()]).await;
    eventually(&h, "running", |pods| phase(pods, "web") == "Running").await;
    let first = h.fake.sandbox_ids();
    assert_eq!(first.len(), 1);

    // A second ready sandbox of the same pod, as a crash after RunPodSandbox leaves.
    let client = h.fake.client(Timeouts::default());
    let config = kubelet_pod_manager::spec::sandbox_config(&web, 1, "", &h.ctx.node)
        .expect("sandbox config");
    kubelet_core::Runtime::run_sandbox(&client, &config)
        .await
        .expect("second sandbox");
    let ready = || async {
        let sandboxes =
            kubelet_core::RuntimeInventory::list_sandboxes(&client, &Default::default())
                .await
                .expect("list");
        sandboxes
            .iter()
            .filter(|s| s.state == kubelet_core::SandboxState::Ready)
            .map(|s| s.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ready().await.len(), 2);
    // Both are stopped and one made anew; the pod runs again in it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now_ready = ready().await;
        let running = app_status(&h.pods.pods())
            .is_some_and(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()));
        if now_ready.len() == 1 && !first.contains(&now_ready[0]) && running {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reconciled: ready {now_ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.manager.abort();
}

#[tokio::test]
async fn a_pod_without_host_users_gets_its_own_id_range_where_the_runtime_can() {
    use kubelet_cri_client::proto as cri;
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    let h = start(fake.clone());
    let own = |name: &str, uid: &str| {
        let mut pod = pod(name, uid, &[], &[("app", "sleep 1000")], "Always");
        if let Some(spec) = pod.spec.as_mut() {
            spec.host_users = Some(false);
        }
        pod
    };

    // The runtime says nothing about user namespaces (containerd 1.6): no sandbox at all,
    // rather than one in the host's user namespace.
    send(&h, vec![own("refused", "u-refused")]).await;
    eventually(&h, "refused pod reported", |pods| {
        phase(pods, "refused") == "Pending"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(container_calls(&fake, "RunPodSandbox"), 0);
    assert_eq!(h.ctx.node.user_namespaces.mapping("u-refused"), None);

    // A handler that supports them: the sandbox and its containers get the pod's range.
    fake.set_runtime_handlers(vec![cri::RuntimeHandler {
        name: String::new(),
        features: Some(cri::RuntimeHandlerFeatures {
            recursive_read_only_mounts: false,
            user_namespaces: true,
        }),
    }]);
    send(&h, vec![own("userns", "u-userns")]).await;
    eventually(&h, "running in its user namespace", |pods| {
        phase(pods, "userns") == "Running"
    })
    .await;
    let mapping = h
        .ctx
        .node
        .user_namespaces
        .mapping("u-userns")
        .expect("a range");
    let range = mapping.uids[0];
    assert_eq!((range.container_id, range.length), (0, 65536));
    assert!(range.host_id >= 65536, "never the host's first IDs");
    let client = fake.client(Timeouts::default());
    // (The refused pod may be retried meanwhile, now with a range of its own.)
    let sandbox = client
        .list_pod_sandbox(None)
        .await
        .expect("sandboxes")
        .into_iter()
        .find(|s| s.metadata.as_ref().is_some_and(|m| m.uid == "u-userns"))
        .expect("the pod's sandbox")
        .id;
    let status = client
        .pod_sandbox_status(&sandbox, false)
        .await
        .expect("sandbox status")
        .status
        .expect("status");
    let userns = status
        .linux
        .and_then(|l| l.namespaces)
        .and_then(|n| n.options)
        .and_then(|o| o.userns_options)
        .expect("user namespace options");
    assert_eq!(userns.mode, cri::NamespaceMode::Pod as i32);
    let expected = vec![cri::IdMapping {
        host_id: range.host_id,
        container_id: 0,
        length: 65536,
    }];
    assert_eq!((&userns.uids, &userns.gids), (&expected, &expected));
    let config = fake
        .container_ids()
        .iter()
        .filter_map(|id| fake.container_config(id))
        .find(|c| c.labels.get("io.kubernetes.pod.uid").map(String::as_str) == Some("u-userns"))
        .expect("the pod's container config");
    let container_userns = config
        .linux
        .and_then(|l| l.security_context)
        .and_then(|s| s.namespace_options)
        .and_then(|o| o.userns_options)
        .expect("container user namespace");
    assert_eq!(
        container_userns, userns,
        "the container shares the sandbox's"
    );

    // The range goes with the pod.
    send(&h, vec![]).await;
    eventually(&h, "removed", |_| fake.sandbox_ids().is_empty()).await;
    eventually(&h, "range released", |_| {
        h.ctx.node.user_namespaces.mapping("u-userns").is_none()
    })
    .await;
    h.manager.abort();
}

/// Node credentials from a credential provider, counted per image.
struct NodeCredentials {
    auth: kubelet_core::RegistryAuth,
    asked: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl kubelet_core::ImageCredentials for NodeCredentials {
    async fn credentials(&self, image: &str, _pod: &Pod) -> Vec<kubelet_core::RegistryAuth> {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(image.to_owned());
        vec![self.auth.clone()]
    }
}

/// The node's credentials (credential provider plugins) pull an image no pull secret
/// covers; a wrong one leaves the pod in ErrImagePull.
#[tokio::test]
async fn node_credentials_pull_private_images() {
    const PRIVATE: &str = "localhost:5001/private:1";
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    fake.add_registry_image(FakeImage {
        credentials: Some(("alice".into(), "secret".into())),
        ..FakeImage::public(PRIVATE)
    });
    let credentials = Arc::new(NodeCredentials {
        auth: kubelet_core::RegistryAuth {
            username: "alice".into(),
            password: "secret".into(),
            ..Default::default()
        },
        asked: Mutex::default(),
    });
    let h = start_with_parts(
        fake,
        Duration::from_millis(50),
        Backoff::crash_loop(),
        kubelet_pod_manager::ContainerGcPolicy::default(),
        credentials.clone(),
    );
    let mut private = pod(
        "private",
        "u-private",
        &[],
        &[("app", "sleep 1000")],
        "Always",
    );
    if let Some(spec) = private.spec.as_mut() {
        spec.containers[0].image = Some(PRIVATE.into());
    }
    send(&h, vec![private]).await;
    eventually(&h, "private runs", |pods| {
        phase(pods, "private") == "Running"
    })
    .await;
    assert!(
        credentials
            .asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&PRIVATE.to_owned())
    );
    h.manager.abort();

    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(IMAGE));
    fake.add_registry_image(FakeImage {
        credentials: Some(("alice".into(), "secret".into())),
        ..FakeImage::public(PRIVATE)
    });
    let wrong = Arc::new(NodeCredentials {
        auth: kubelet_core::RegistryAuth {
            username: "alice".into(),
            password: "wrong".into(),
            ..Default::default()
        },
        asked: Mutex::default(),
    });
    let h = start_with_parts(
        fake,
        Duration::from_millis(50),
        Backoff::crash_loop(),
        kubelet_pod_manager::ContainerGcPolicy::default(),
        wrong,
    );
    let mut private = pod(
        "private",
        "u-private",
        &[],
        &[("app", "sleep 1000")],
        "Always",
    );
    if let Some(spec) = private.spec.as_mut() {
        spec.containers[0].image = Some(PRIVATE.into());
    }
    send(&h, vec![private]).await;
    eventually(&h, "ErrImagePull", |pods| {
        matches!(
            waiting_reason(pods, "private", "app").as_deref(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    })
    .await;
}
