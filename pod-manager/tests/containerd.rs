//! The pod manager on real containerd, runc and CNI with the local registry from
//! `cargo xtask env up`. Tests take a shared lock: a pod manager kills the pods it does
//! not know, as the upstream kubelet does, so two managers must not share the runtime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ExecAction, Lifecycle, LifecycleHandler, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::labels::{
    CONTAINER_HASH_ANNOTATION, CONTAINER_NAME_LABEL, POD_NAME_LABEL, POD_UID_LABEL,
};
use kubelet_core::{
    Backoff, ContainerFilter, Runtime, RuntimeInventory, SandboxFilter, StatusReporter,
};
use kubelet_cri_client::{CriClient, TestEnv, Timeouts};
use kubelet_pod_manager::admission::SysctlAllowlist;
use kubelet_pod_manager::spec::{EnvObjects, NoEnvObjects, NodeContext, NodeSecurity};
use kubelet_pod_manager::{
    LocalPods, LogRotation, ManagerConfig, PodManager, PodSource, RuntimeClasses, SourceUpdate,
    SyncContext, UpdateKind,
};
use kubelet_probes::KubeletProber;
use tokio::sync::mpsc;

static RUNTIME_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Keeps every status the manager reports, so short-lived states (ErrImagePull before
/// ImagePullBackOff) can be checked after the fact.
#[derive(Default)]
struct Recorder {
    pods: LocalPods,
    history: Mutex<Vec<(String, k8s_openapi::api::core::v1::PodStatus)>>,
}

#[async_trait::async_trait]
impl StatusReporter for Recorder {
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
                status.clone(),
            ));
        self.pods.report(pod, status).await
    }

    async fn forget(&self, pod: &kubelet_core::PodRef) -> kubelet_core::Result<()> {
        self.pods.forget(pod).await
    }
}

impl Recorder {
    /// Waiting reasons reported for a container of a pod, in order, without repeats.
    fn reasons(&self, pod: &str, container: &str) -> Vec<String> {
        let mut reasons: Vec<String> = Vec::new();
        for (name, status) in self
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let reason = status
                .container_statuses
                .iter()
                .flatten()
                .find(|c| c.name == container)
                .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
            if name == pod
                && let Some(reason) = reason
                && reasons.last() != Some(&reason)
            {
                reasons.push(reason);
            }
        }
        reasons
    }
}

/// Keeps every pod event.
#[derive(Default)]
struct Events(Mutex<Vec<kubelet_core::PodEvent>>);

impl kubelet_core::EventRecorder for Events {
    fn record(&self, event: kubelet_core::PodEvent) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }
    fn record_node(&self, _: kubelet_core::NodeEvent) {}
}

impl Events {
    /// `reason: message` of each event about the pod named `pod`.
    fn of(&self, pod: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|e| e.pod.name == pod)
            .map(|e| format!("{}: {}", e.reason, e.message))
            .collect()
    }
}

/// What a test kubelet is started with besides the runtime.
struct Setup {
    config: ManagerConfig,
    env_objects: Arc<dyn EnvObjects>,
    security: NodeSecurity,
    runtime_classes: Arc<dyn RuntimeClasses>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            config: ManagerConfig {
                relist_period: Duration::from_millis(500),
                ..ManagerConfig::default()
            },
            env_objects: Arc::new(NoEnvObjects),
            security: NodeSecurity::default(),
            runtime_classes: Arc::new(kubelet_pod_manager::NoRuntimeClasses),
        }
    }
}

struct Kubelet {
    client: CriClient,
    recorder: Arc<Recorder>,
    events: Arc<Events>,
    updates: mpsc::Sender<SourceUpdate>,
    manager: tokio::task::JoinHandle<kubelet_pod_manager::Result<()>>,
    dirs: Arc<tempfile::TempDir>,
}

fn start(env: &TestEnv, dirs: Arc<tempfile::TempDir>) -> Kubelet {
    start_with(env, dirs, Setup::default())
}

fn start_with(env: &TestEnv, dirs: Arc<tempfile::TempDir>, setup: Setup) -> Kubelet {
    let Setup {
        config,
        env_objects,
        security,
        runtime_classes,
    } = setup;
    let events = Arc::new(Events::default());
    let client = CriClient::new(&env.endpoint, Timeouts::default()).expect("client");
    let ctx = SyncContext {
        runtime: Arc::new(client.clone()),
        images: Arc::new(client.clone()),
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
            security,
            ..NodeContext::default()
        },
        env_objects,
        runtime_name: "containerd".into(),
        crash_backoff: Mutex::new(Backoff::crash_loop()),
        image_backoff: Mutex::new(Backoff::image_pull()),
        prober: Some(Arc::new(KubeletProber::new(Arc::new(client.clone())))),
        events: events.clone(),
        volumes: Arc::new(kubelet_volumes::VolumeManager::new(
            dirs.path().join("pods"),
            Arc::new(kubelet_core::NoVolumeSources),
        )),
        clock: Arc::new(kubelet_core::SystemClock),
        // Pods' cgroups are runc's on the real host; the kubelet removes them.
        cgroups: Some(Arc::new(kubelet_cgroups::Cgroupfs::host())),
        runtime_classes,
        image_credentials: Arc::new(kubelet_core::NoImageCredentials),
        pull_records: None,
        devices: None,
        metrics: Default::default(),
        started: std::time::SystemTime::now(),
    };
    let recorder = Arc::new(Recorder::default());
    let manager = PodManager::new(Arc::new(ctx), recorder.clone(), config);
    let (updates, rx) = mpsc::channel(4);
    Kubelet {
        client,
        recorder,
        events,
        updates,
        manager: tokio::spawn(manager.run(rx)),
        dirs,
    }
}

impl Kubelet {
    async fn set_pods(&self, pods: Vec<Pod>) {
        self.updates
            .send(SourceUpdate {
                source: PodSource::File,
                pods,
                rejected: Vec::new(),
                kind: UpdateKind::Snapshot,
            })
            .await
            .expect("manager running");
    }

    async fn eventually(&self, what: &str, timeout: Duration, check: impl Fn(&[Pod]) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check(&self.recorder.pods.pods()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let statuses: Vec<_> = self
            .recorder
            .pods
            .pods()
            .into_iter()
            .map(|p| (p.metadata.name, p.status))
            .collect();
        panic!("{what}: not reached within {timeout:?}; pods: {statuses:#?}");
    }

    /// Removes every pod and waits until the runtime has none of them.
    async fn finish(self, uids: &[&str]) {
        self.set_pods(Vec::new()).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let sandboxes = self.client_sandboxes(uids).await;
            if sandboxes == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "pods not removed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.manager.abort();
    }

    async fn client_sandboxes(&self, uids: &[&str]) -> usize {
        let mut n = 0;
        for uid in uids {
            let filter = SandboxFilter {
                labels: [(POD_UID_LABEL.to_owned(), (*uid).to_owned())].into(),
                ..Default::default()
            };
            n += RuntimeInventory::list_sandboxes(&self.client, &filter)
                .await
                .expect("list")
                .len();
        }
        n
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}", nanos % 1_000_000_000_000)
}

fn container(env: &TestEnv, name: &str, script: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(env.busybox.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    }
}

fn pod(name: &str, uid: &str, policy: &str, init: Vec<Container>, app: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("pod-manager-test".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            termination_grace_period_seconds: Some(5),
            init_containers: Some(init),
            containers: app,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn find<'a>(pods: &'a [Pod], name: &str) -> Option<&'a Pod> {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
}

fn phase(pods: &[Pod], name: &str) -> String {
    find(pods, name)
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn app_status(
    pods: &[Pod],
    name: &str,
    container: &str,
) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    find(pods, name)?
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
        .cloned()
}

fn waiting(pods: &[Pod], name: &str, container: &str) -> Option<(String, String)> {
    let w = app_status(pods, name, container)?.state?.waiting?;
    Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
}

#[tokio::test]
async fn runs_a_pod_with_init_container_and_upstream_labels() {
    let Some(env) = TestEnv::from_env("runs_a_pod_with_init_container_and_upstream_labels") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let uid = unique("uid-web");
    let app = container(&env, "app", "echo hello from app; exec sleep 3600");
    let web = pod(
        "web",
        &uid,
        "Always",
        vec![container(&env, "init", "echo init done")],
        vec![app.clone()],
    );
    kubelet.set_pods(vec![web]).await;
    kubelet
        .eventually("Running and Ready", Duration::from_secs(60), |pods| {
            phase(pods, "web") == "Running"
                && app_status(pods, "web", "app").is_some_and(|s| s.ready)
        })
        .await;

    let pods = kubelet.recorder.pods.pods();
    let status = find(&pods, "web")
        .and_then(|p| p.status.clone())
        .expect("status");
    let ip: std::net::Ipv4Addr = status
        .pod_ip
        .as_deref()
        .unwrap_or_default()
        .parse()
        .expect("pod IP");
    assert_eq!(ip.octets()[..2], [10, 88]);
    let conditions: Vec<_> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    for kind in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        assert!(
            conditions.contains(&(kind, "True")),
            "{kind}: {conditions:?}"
        );
    }
    let init = &status
        .init_container_statuses
        .as_ref()
        .expect("init statuses")[0];
    let terminated = init
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("init terminated");
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );
    let app_status = app_status(&pods, "web", "app").expect("app status");
    assert!(
        app_status
            .container_id
            .as_deref()
            .unwrap_or_default()
            .starts_with("containerd://")
    );
    assert!(
        app_status.image_id.contains("sha256:"),
        "{}",
        app_status.image_id
    );

    // The containers carry upstream's labels and hash, so crictl and the upstream kubelet
    // recognise them.
    let containers = RuntimeInventory::list_containers(
        &kubelet.client,
        &ContainerFilter {
            labels: [(POD_UID_LABEL.to_owned(), uid.clone())].into(),
            ..Default::default()
        },
    )
    .await
    .expect("list");
    let running = containers
        .iter()
        .find(|c| c.labels.get(CONTAINER_NAME_LABEL).map(String::as_str) == Some("app"))
        .expect("app container");
    assert_eq!(
        running.labels.get(POD_NAME_LABEL).map(String::as_str),
        Some("web")
    );
    assert_eq!(
        running.annotations.get(CONTAINER_HASH_ANNOTATION),
        Some(&format!("{:x}", kubelet_core::labels::container_hash(&app)))
    );
    // Created from the image's id, as upstream: a tag moved later cannot change what
    // this container runs.
    let verbose = kubelet
        .client
        .container_status(&running.id, true)
        .await
        .expect("verbose status");
    let info: serde_json::Value =
        serde_json::from_str(verbose.info.get("info").map_or("{}", String::as_str))
            .expect("info JSON");
    let created_from = info["config"]["image"]["image"]
        .as_str()
        .unwrap_or_default();
    // (containerd 1.6 predates CRI's user_specified_image and does not keep it.)
    assert!(created_from.starts_with("sha256:"), "{info:#}");

    // Logs land where upstream puts them: <root>/<ns>_<name>_<uid>/<container>/<n>.log.
    let log = kubelet
        .dirs
        .path()
        .join("logs")
        .join(format!("pod-manager-test_web_{uid}"))
        .join("app/0.log");
    let text = std::fs::read_to_string(&log).expect("app log");
    assert!(text.contains(" stdout F hello from app"), "{text}");
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn crash_loop_back_off_grows_and_a_bad_image_backs_off_beside_a_good_pod() {
    let Some(env) =
        TestEnv::from_env("crash_loop_back_off_grows_and_a_bad_image_backs_off_beside_a_good_pod")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let crash_uid = unique("uid-crash");
    let bad_uid = unique("uid-bad");
    let good_uid = unique("uid-good");
    let mut bad_app = container(&env, "app", "true");
    bad_app.image = Some(format!("{}/kubelet-rs/does-not-exist:1", env.registry));
    kubelet
        .set_pods(vec![
            pod(
                "crash",
                &crash_uid,
                "Always",
                vec![],
                vec![container(&env, "app", "exit 1")],
            ),
            pod("bad", &bad_uid, "Always", vec![], vec![bad_app]),
            pod(
                "good",
                &good_uid,
                "Always",
                vec![],
                vec![container(&env, "app", "exec sleep 3600")],
            ),
        ])
        .await;

    kubelet
        .eventually("good runs", Duration::from_secs(60), |pods| {
            phase(pods, "good") == "Running"
        })
        .await;
    kubelet
        .eventually("ImagePullBackOff", Duration::from_secs(60), |pods| {
            waiting(pods, "bad", "app").is_some_and(|(reason, message)| {
                reason == "ImagePullBackOff" && message.contains("Back-off pulling image")
            })
        })
        .await;
    let reasons = kubelet.recorder.reasons("bad", "app");
    let pull = reasons
        .iter()
        .position(|r| r == "ErrImagePull")
        .expect("ErrImagePull reported");
    let back_off = reasons
        .iter()
        .position(|r| r == "ImagePullBackOff")
        .expect("ImagePullBackOff reported");
    assert!(pull < back_off, "{reasons:?}");

    // The crashing container waits 10 s, then 20 s, as upstream.
    kubelet
        .eventually("first back-off", Duration::from_secs(60), |pods| {
            waiting(pods, "crash", "app").is_some_and(|(reason, message)| {
                reason == "CrashLoopBackOff"
                    && message.starts_with(
                        "back-off 10s restarting failed container=app pod=crash_pod-manager-test(",
                    )
            })
        })
        .await;
    kubelet
        .eventually("growing back-off", Duration::from_secs(60), |pods| {
            waiting(pods, "crash", "app")
                .is_some_and(|(_, message)| message.starts_with("back-off 20s"))
        })
        .await;
    let status = app_status(&kubelet.recorder.pods.pods(), "crash", "app").expect("status");
    assert!(status.restart_count >= 2, "{}", status.restart_count);
    let last = status
        .last_state
        .and_then(|s| s.terminated)
        .expect("last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(phase(&kubelet.recorder.pods.pods(), "good"), "Running");
    kubelet.finish(&[&crash_uid, &bad_uid, &good_uid]).await;
}

#[tokio::test]
async fn failing_init_container_blocks_the_app() {
    let Some(env) = TestEnv::from_env("failing_init_container_blocks_the_app") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let uid = unique("uid-init");
    kubelet
        .set_pods(vec![pod(
            "blocked",
            &uid,
            "OnFailure",
            vec![container(&env, "init", "exit 2")],
            vec![container(&env, "app", "exec sleep 3600")],
        )])
        .await;
    kubelet
        .eventually("init crash-looping", Duration::from_secs(60), |pods| {
            find(pods, "blocked")
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.init_container_statuses.as_ref())
                .and_then(|s| s[0].last_state.as_ref())
                .and_then(|l| l.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 2)
        })
        .await;
    let pods = kubelet.recorder.pods.pods();
    assert_eq!(phase(&pods, "blocked"), "Pending");
    assert_eq!(
        waiting(&pods, "blocked", "app").map(|w| w.0).as_deref(),
        Some("PodInitializing")
    );
    let apps = RuntimeInventory::list_containers(
        &kubelet.client,
        &ContainerFilter {
            labels: [
                (POD_UID_LABEL.to_owned(), uid.clone()),
                (CONTAINER_NAME_LABEL.to_owned(), "app".to_owned()),
            ]
            .into(),
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert!(apps.is_empty(), "the app container was never created");
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn pre_stop_runs_before_sigterm_and_termination_messages_are_read() {
    let Some(env) =
        TestEnv::from_env("pre_stop_runs_before_sigterm_and_termination_messages_are_read")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let uid = unique("uid-hooks");
    let job_uid = unique("uid-job");
    let mut app = container(
        &env,
        "app",
        "trap 'echo got-sigterm; exit 0' TERM; echo ready; while true; do sleep 0.2; done",
    );
    // preStop writes into the container's own stdout, so the log shows the order.
    app.lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "echo pre-stop > /proc/1/fd/1".into(),
                ]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let job = pod(
        "job",
        &job_uid,
        "Never",
        vec![],
        vec![container(
            &env,
            "app",
            "echo -n 'custom message' > /dev/termination-log; exit 3",
        )],
    );
    kubelet
        .set_pods(vec![
            pod("hooks", &uid, "Always", vec![], vec![app]),
            job.clone(),
        ])
        .await;
    kubelet
        .eventually("running", Duration::from_secs(60), |pods| {
            phase(pods, "hooks") == "Running"
        })
        .await;
    kubelet
        .eventually(
            "job failed with its message",
            Duration::from_secs(60),
            |pods| {
                phase(pods, "job") == "Failed"
                    && app_status(pods, "job", "app")
                        .and_then(|s| s.state?.terminated)
                        .is_some_and(|t| {
                            t.exit_code == 3 && t.message.as_deref() == Some("custom message")
                        })
            },
        )
        .await;

    // Removing the pod runs preStop, then the runtime sends SIGTERM.
    kubelet.set_pods(vec![job]).await;
    let log = kubelet
        .dirs
        .path()
        .join("logs")
        .join(format!("pod-manager-test_hooks_{uid}"))
        .join("app/0.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        // The pod's log directory goes with the pod; read it while the container stops.
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("got-sigterm") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pre_stop = text.find("pre-stop").expect("preStop output in the log");
    let sigterm = text.find("got-sigterm").expect("SIGTERM handled");
    assert!(pre_stop < sigterm, "{text}");
    kubelet.finish(&[&uid, &job_uid]).await;
}

#[tokio::test]
async fn a_restarted_kubelet_adopts_its_pods_and_active_deadline_fails_a_pod() {
    let Some(env) =
        TestEnv::from_env("a_restarted_kubelet_adopts_its_pods_and_active_deadline_fails_a_pod")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let dirs = Arc::new(tempfile::tempdir().expect("dir"));
    let kubelet = start(&env, dirs.clone());
    let uid = unique("uid-adopt");
    let deadline_uid = unique("uid-deadline");
    let steady = pod(
        "steady",
        &uid,
        "Always",
        vec![],
        vec![container(&env, "app", "exec sleep 3600")],
    );
    let mut short = pod(
        "short",
        &deadline_uid,
        "Always",
        vec![],
        vec![container(&env, "app", "exec sleep 3600")],
    );
    if let Some(spec) = short.spec.as_mut() {
        spec.active_deadline_seconds = Some(3);
    }
    kubelet.set_pods(vec![steady.clone(), short.clone()]).await;
    kubelet
        .eventually("running", Duration::from_secs(60), |pods| {
            phase(pods, "steady") == "Running"
        })
        .await;
    let before = RuntimeInventory::list_containers(&kubelet.client, &ContainerFilter::default())
        .await
        .expect("list");
    let ours = |list: &[kubelet_core::Container]| {
        let mut ids: Vec<String> = list
            .iter()
            .filter(|c| c.labels.get(POD_UID_LABEL) == Some(&uid))
            .map(|c| c.id.clone())
            .collect();
        ids.sort();
        ids
    };

    // The kubelet dies; a new one with the same pods starts nothing new.
    kubelet.manager.abort();
    let kubelet = start(&env, dirs);
    kubelet.set_pods(vec![steady, short]).await;
    kubelet
        .eventually("adopted", Duration::from_secs(30), |pods| {
            phase(pods, "steady") == "Running"
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = RuntimeInventory::list_containers(&kubelet.client, &ContainerFilter::default())
        .await
        .expect("list");
    assert_eq!(
        ours(&before),
        ours(&after),
        "no duplicate or restarted container"
    );

    kubelet
        .eventually("deadline exceeded", Duration::from_secs(30), |pods| {
            find(pods, "short")
                .and_then(|p| p.status.as_ref())
                .is_some_and(|s| {
                    s.phase.as_deref() == Some("Failed")
                        && s.reason.as_deref() == Some("DeadlineExceeded")
                })
        })
        .await;
    kubelet.finish(&[&uid, &deadline_uid]).await;
}

fn read_log(kubelet: &Kubelet, pod: &str, uid: &str, container: &str) -> String {
    let path = kubelet
        .recorder
        .pods
        .pods()
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(pod))
        .map(|p| p.metadata.namespace.clone().unwrap_or_default())
        .map(|ns| {
            kubelet
                .dirs
                .path()
                .join("logs")
                .join(format!("{ns}_{pod}_{uid}"))
                .join(container)
                .join("0.log")
        });
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
        .lines()
        .map(|line| line.splitn(4, ' ').nth(3).unwrap_or_default().to_owned() + "\n")
        .collect()
}

#[tokio::test]
async fn spec_features_reach_the_container() {
    let Some(env) = TestEnv::from_env("spec_features_reach_the_container") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let uid = unique("uid-spec");
    let host_uid = unique("uid-host");
    let nonroot_uid = unique("uid-nonroot");
    let fallback_uid = unique("uid-fallback");

    // A sidecar (restartable init container) that must be running before the app starts.
    let mut sidecar = container(&env, "sidecar", "echo sidecar up; exec sleep 3600");
    sidecar.restart_policy = Some("Always".into());
    let mut app = container(
        &env,
        "app",
        "echo \"greeting=$GREETING\"; echo \"pod=$POD_NAME ns=$POD_NS ip=$POD_IP\"; \
         echo \"user=$(id -u)\"; cat /etc/hosts; cat /etc/resolv.conf; exec sleep 3600",
    );
    app.env = Some(vec![
        env_var("WHO", "world"),
        env_var("GREETING", "hello $(WHO) $$(WHO)"),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NS", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
    ]);
    app.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
        run_as_user: Some(1000),
        ..Default::default()
    });
    app.lifecycle = Some(Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "echo post-start > /proc/1/fd/1".into(),
                ]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut spec_pod = pod("features", &uid, "Always", vec![sidecar], vec![app]);
    if let Some(spec) = spec_pod.spec.as_mut() {
        spec.hostname = Some("custom-host".into());
        spec.dns_policy = Some("None".into());
        spec.dns_config = Some(k8s_openapi::api::core::v1::PodDNSConfig {
            nameservers: Some(vec!["10.96.0.10".into()]),
            searches: Some(vec!["example.test".into()]),
            options: None,
        });
    }

    let mut host_pod = pod(
        "host",
        &host_uid,
        "Always",
        vec![],
        vec![container(&env, "app", "exec sleep 3600")],
    );
    if let Some(spec) = host_pod.spec.as_mut() {
        spec.host_network = Some(true);
    }

    // The busybox image runs as root, so runAsNonRoot refuses it with upstream's message.
    let mut nonroot_app = container(&env, "app", "true");
    nonroot_app.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
        run_as_non_root: Some(true),
        ..Default::default()
    });
    let nonroot = pod("nonroot", &nonroot_uid, "Always", vec![], vec![nonroot_app]);

    let mut failing = container(&env, "app", "echo last words; exit 4");
    failing.termination_message_policy = Some("FallbackToLogsOnError".into());
    let fallback = pod("fallback", &fallback_uid, "Never", vec![], vec![failing]);

    kubelet
        .set_pods(vec![spec_pod, host_pod, nonroot, fallback])
        .await;
    kubelet
        .eventually("features running", Duration::from_secs(60), |pods| {
            phase(pods, "features") == "Running"
                && app_status(pods, "features", "app").is_some_and(|s| s.ready)
        })
        .await;
    let pods = kubelet.recorder.pods.pods();
    let sidecar_status = find(&pods, "features")
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.init_container_statuses.as_ref())
        .map(|s| s[0].clone())
        .expect("sidecar status");
    assert!(
        sidecar_status.state.and_then(|s| s.running).is_some(),
        "the sidecar keeps running"
    );
    let pod_ip = find(&pods, "features")
        .and_then(|p| p.status.as_ref()?.pod_ip.clone())
        .expect("pod IP");

    let log = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = read_log(&kubelet, "features", &uid, "app");
            if log.contains("search example.test") && log.contains("post-start")
                || Instant::now() > deadline
            {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(log.contains("greeting=hello world $(WHO)\n"), "{log}");
    assert!(
        log.contains(&format!("pod=features ns=pod-manager-test ip={pod_ip}\n")),
        "{log}"
    );
    assert!(log.contains("user=1000\n"), "{log}");
    assert!(
        log.contains(&format!("{pod_ip}\tcustom-host")),
        "managed /etc/hosts: {log}"
    );
    assert!(
        log.contains("nameserver 10.96.0.10\n") && log.contains("search example.test\n"),
        "{log}"
    );
    assert!(log.contains("post-start\n"), "{log}");

    // Host network: the pod reports the node's address.
    kubelet
        .eventually("host pod running", Duration::from_secs(60), |pods| {
            phase(pods, "host") == "Running"
        })
        .await;
    let pods = kubelet.recorder.pods.pods();
    assert_eq!(
        find(&pods, "host")
            .and_then(|p| p.status.as_ref()?.pod_ip.clone())
            .as_deref(),
        Some("10.88.0.1")
    );

    kubelet
        .eventually("runAsNonRoot refused", Duration::from_secs(60), |pods| {
            waiting(pods, "nonroot", "app").is_some_and(|(reason, message)| {
                reason == "CreateContainerConfigError"
                    && message.contains("runAsNonRoot")
                    && message.contains("root")
            })
        })
        .await;
    kubelet
        .eventually(
            "fallback message from logs",
            Duration::from_secs(60),
            |pods| {
                app_status(pods, "fallback", "app")
                    .and_then(|s| s.state?.terminated)
                    .is_some_and(|t| {
                        t.exit_code == 4 && t.message.as_deref() == Some("last words\n")
                    })
            },
        )
        .await;
    kubelet
        .finish(&[&uid, &host_uid, &nonroot_uid, &fallback_uid])
        .await;
}

fn env_var(name: &str, value: &str) -> k8s_openapi::api::core::v1::EnvVar {
    k8s_openapi::api::core::v1::EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> k8s_openapi::api::core::v1::EnvVar {
    k8s_openapi::api::core::v1::EnvVar {
        name: name.into(),
        value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
            field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn container_logs_rotate_by_size_and_keep_max_files() {
    let Some(env) = TestEnv::from_env("container_logs_rotate_by_size_and_keep_max_files") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let dirs = Arc::new(tempfile::tempdir().expect("dir"));
    let kubelet = start_with(
        &env,
        dirs.clone(),
        Setup {
            config: ManagerConfig {
                relist_period: Duration::from_millis(500),
                log_rotation: Some(LogRotation {
                    max_size: 4096,
                    max_files: 3,
                    interval: Duration::from_millis(300),
                }),
                ..ManagerConfig::default()
            },
            ..Setup::default()
        },
    );
    let uid = unique("uid-logs");
    let chatty = container(
        &env,
        "app",
        "i=0; while true; do i=$((i+1)); echo \"line $i: 0123456789012345678901234567890123456789012345678901234567890123456789\"; sleep 0.01; done",
    );
    kubelet
        .set_pods(vec![pod("chatty", &uid, "Always", vec![], vec![chatty])])
        .await;
    kubelet
        .eventually("running", Duration::from_secs(60), |pods| {
            phase(pods, "chatty") == "Running"
        })
        .await;
    let dir = dirs
        .path()
        .join("logs")
        .join(format!("pod-manager-test_chatty_{uid}"))
        .join("app");
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    // Several rotations happen; never more than max_files files exist (a file being
    // compressed, `.tmp`, is the same log in transit); the older rotated files are gzipped.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut most = 0;
    let mut rotations_seen = std::collections::BTreeSet::new();
    let compressed_seen = |seen: &std::collections::BTreeSet<String>| {
        seen.iter().filter(|n| n.ends_with(".gz")).count()
    };
    while Instant::now() < deadline
        && (rotations_seen.len() < 4 || compressed_seen(&rotations_seen) < 2)
    {
        let names: Vec<String> = files()
            .into_iter()
            .filter(|n| !n.ends_with(".tmp"))
            .collect();
        most = most.max(names.len());
        rotations_seen.extend(names.into_iter().filter(|n| n != "0.log"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rotations_seen.len() >= 4 && compressed_seen(&rotations_seen) >= 2,
        "rotated files seen: {rotations_seen:?}"
    );
    assert!(most <= 3, "at most max_files files at once, saw {most}");
    let gzipped = files()
        .into_iter()
        .find(|n| n.ends_with(".gz"))
        .expect("a gzipped rotated log stays");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(dir.join(&gzipped)).expect("open")),
        &mut text,
    )
    .expect("the rotated log is gzip");
    assert!(text.contains(" stdout F line "), "{gzipped}: {text}");
    // After reopening, containerd writes to a fresh 0.log.
    let current = std::fs::read_to_string(dir.join("0.log")).expect("current log");
    assert!(current.contains(" stdout F line "), "{current}");
    kubelet.finish(&[&uid]).await;
}

/// The pull secret a control plane would hand out, for the credentials test.
struct PullSecret(k8s_openapi::api::core::v1::Secret);

#[async_trait::async_trait]
impl kubelet_core::ObjectSource for PullSecret {
    async fn config_map(
        &self,
        _: &str,
        _: &str,
    ) -> kubelet_core::Result<Option<k8s_openapi::api::core::v1::ConfigMap>> {
        Ok(None)
    }
    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<Option<k8s_openapi::api::core::v1::Secret>> {
        Ok((self.0.metadata.namespace.as_deref() == Some(namespace)
            && self.0.metadata.name.as_deref() == Some(name))
        .then(|| self.0.clone()))
    }
}

impl EnvObjects for PullSecret {}

#[tokio::test]
async fn image_pull_secrets_authenticate_pulls() {
    let Some(env) = TestEnv::from_env("image_pull_secrets_authenticate_pulls") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let config = format!(
        r#"{{"auths":{{"{}":{{"username":"{}","password":"{}"}}}}}}"#,
        env.auth_registry, env.auth_user, env.auth_password
    );
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some("regcred".into()),
            namespace: Some("pod-manager-test".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_owned(),
                k8s_openapi::ByteString(config.into_bytes()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let kubelet = start_with(
        &env,
        Arc::new(tempfile::tempdir().expect("dir")),
        Setup {
            env_objects: Arc::new(PullSecret(secret)),
            ..Setup::default()
        },
    );
    let image = format!("{}/busybox:latest", env.auth_registry);
    let mut private = container(&env, "app", "exec sleep 3600");
    private.image = Some(image.clone());
    private.image_pull_policy = Some("Always".into());
    let with_uid = unique("uid-with");
    let without_uid = unique("uid-without");
    let mut with_secret = pod(
        "with-secret",
        &with_uid,
        "Always",
        vec![],
        vec![private.clone()],
    );
    if let Some(spec) = with_secret.spec.as_mut() {
        spec.image_pull_secrets = Some(vec![k8s_openapi::api::core::v1::LocalObjectReference {
            name: "regcred".into(),
        }]);
    }
    let without = pod(
        "without-secret",
        &without_uid,
        "Always",
        vec![],
        vec![private],
    );
    kubelet.set_pods(vec![with_secret, without]).await;
    kubelet
        .eventually("pulled with the secret", Duration::from_secs(60), |pods| {
            phase(pods, "with-secret") == "Running"
        })
        .await;
    kubelet
        .eventually("refused without it", Duration::from_secs(60), |pods| {
            waiting(pods, "without-secret", "app").is_some_and(|(reason, message)| {
                matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff")
                    && (reason == "ImagePullBackOff"
                        || message.contains("401")
                        || message.to_lowercase().contains("unauthorized"))
            })
        })
        .await;
    kubelet.finish(&[&with_uid, &without_uid]).await;
}

#[tokio::test]
async fn security_context_is_enforced_by_the_runtime() {
    let Some(env) = TestEnv::from_env("security_context_is_enforced_by_the_runtime") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let uid = unique("uid-sec");
    let mut locked = container(
        &env,
        "app",
        "touch /probe 2>&1 || echo rootfs-read-only; id -g; grep CapEff /proc/self/status; \
         grep NoNewPrivs /proc/self/status; exec sleep 3600",
    );
    locked.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
        read_only_root_filesystem: Some(true),
        run_as_user: Some(1000),
        run_as_group: Some(3000),
        allow_privilege_escalation: Some(false),
        capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    });
    kubelet
        .set_pods(vec![pod("secure", &uid, "Always", vec![], vec![locked])])
        .await;
    kubelet
        .eventually("running", Duration::from_secs(60), |pods| {
            phase(pods, "secure") == "Running"
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = read_log(&kubelet, "secure", &uid, "app");
        if log.contains("NoNewPrivs") || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(log.contains("rootfs-read-only"), "{log}");
    assert!(log.contains("3000\n"), "runAsGroup: {log}");
    assert!(
        log.contains("CapEff:\t0000000000000000"),
        "all capabilities dropped: {log}"
    );
    assert!(
        log.contains("NoNewPrivs:\t1"),
        "allowPrivilegeEscalation false: {log}"
    );
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn http_get_and_sleep_hooks_run() {
    let Some(env) = TestEnv::from_env("http_get_and_sleep_hooks_run") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let uid = unique("uid-http-hook");
    // busybox httpd logs each answer it sends to stderr, hence to the container log; the
    // hook is the only client, so a 200 for the page proves it ran.
    let mut web = container(
        &env,
        "web",
        "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -v -p 8080 -h /www",
    );
    web.ports = Some(vec![k8s_openapi::api::core::v1::ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        ..Default::default()
    }]);
    web.lifecycle = Some(Lifecycle {
        post_start: Some(LifecycleHandler {
            sleep: Some(k8s_openapi::api::core::v1::SleepAction { seconds: 1 }),
            ..Default::default()
        }),
        pre_stop: Some(LifecycleHandler {
            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                path: Some("/index.html".into()),
                port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                    "http".into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let web_pod = pod("hooked-web", &uid, "Always", vec![], vec![web]);
    kubelet.set_pods(vec![web_pod]).await;
    kubelet
        .eventually(
            "running after the sleep postStart hook",
            Duration::from_secs(60),
            |pods| phase(pods, "hooked-web") == "Running",
        )
        .await;

    kubelet.set_pods(vec![]).await;
    let log_path = kubelet
        .dirs
        .path()
        .join("logs")
        .join(format!("pod-manager-test_hooked-web_{uid}"))
        .join("web/0.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    while Instant::now() < deadline && !seen.contains("response:200") {
        seen = std::fs::read_to_string(&log_path).unwrap_or(seen);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.contains("response:200"),
        "the httpGet preStop reached the container: {seen}"
    );
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn probes_gate_readiness_and_restart_unhealthy_containers() {
    let Some(env) = TestEnv::from_env("probes_gate_readiness_and_restart_unhealthy_containers")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let uid = unique("uid-probed");
    let sick_uid = unique("uid-sick");
    let probe = |action: k8s_openapi::api::core::v1::Probe| k8s_openapi::api::core::v1::Probe {
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..action
    };
    let mut web = container(
        &env,
        "web",
        "mkdir -p /www; echo ok > /www/index.html; (sleep 2; touch /tmp/ready) & exec httpd -f -p 8080 -h /www",
    );
    web.readiness_probe = Some(probe(k8s_openapi::api::core::v1::Probe {
        exec: Some(ExecAction {
            command: Some(vec!["test".into(), "-f".into(), "/tmp/ready".into()]),
        }),
        ..Default::default()
    }));
    web.liveness_probe = Some(k8s_openapi::api::core::v1::Probe {
        // A loaded machine may take a moment to start httpd: the first probe may come
        // before it listens, and a healthy container must not be restarted for that.
        failure_threshold: Some(3),
        ..probe(k8s_openapi::api::core::v1::Probe {
            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                path: Some("/index.html".into()),
                port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080),
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    let mut sick = container(&env, "app", "exec sleep 3600");
    sick.liveness_probe = Some(probe(k8s_openapi::api::core::v1::Probe {
        tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction {
            port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9999),
            ..Default::default()
        }),
        ..Default::default()
    }));
    kubelet
        .set_pods(vec![
            pod("probed", &uid, "Always", vec![], vec![web]),
            pod("sick", &sick_uid, "Always", vec![], vec![sick]),
        ])
        .await;
    kubelet
        .eventually(
            "running but not ready yet",
            Duration::from_secs(60),
            |pods| {
                phase(pods, "probed") == "Running"
                    && app_status(pods, "probed", "web").is_some_and(|s| !s.ready)
            },
        )
        .await;
    kubelet
        .eventually(
            "ready after the readiness probe passes",
            Duration::from_secs(30),
            |pods| app_status(pods, "probed", "web").is_some_and(|s| s.ready),
        )
        .await;
    kubelet
        .eventually(
            "the sick container is restarted",
            Duration::from_secs(60),
            |pods| app_status(pods, "sick", "app").is_some_and(|s| s.restart_count >= 1),
        )
        .await;
    let web = app_status(&kubelet.recorder.pods.pods(), "probed", "web").expect("status");
    assert_eq!(
        web.restart_count, 0,
        "a healthy liveness probe restarts nothing"
    );
    kubelet.finish(&[&uid, &sick_uid]).await;
}

/// Reads a container's log until it holds `marker` (or 20 s pass).
async fn log_with(
    kubelet: &Kubelet,
    pod: &str,
    uid: &str,
    container: &str,
    marker: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = read_log(kubelet, pod, uid, container);
        if log.contains(marker) || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A seccomp profile in the OCI format that lets everything through but mkdir.
const DENY_MKDIR_PROFILE: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
}"#;

#[tokio::test]
async fn seccomp_profiles_reach_runc() {
    let Some(env) = TestEnv::from_env("seccomp_profiles_reach_runc") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let dirs = Arc::new(tempfile::tempdir().expect("dir"));
    let profiles = dirs.path().join("seccomp");
    std::fs::create_dir_all(profiles.join("test")).expect("profile dir");
    std::fs::write(profiles.join("test/deny-mkdir.json"), DENY_MKDIR_PROFILE).expect("profile");
    let kubelet = start_with(
        &env,
        dirs.clone(),
        Setup {
            security: NodeSecurity {
                seccomp_profile_root: profiles,
                ..NodeSecurity::default()
            },
            ..Setup::default()
        },
    );
    let report = "grep Seccomp: /proc/self/status; mkdir /tmp/made && echo mkdir-ok || \
                  echo mkdir-denied; echo done; exec sleep 3600";
    let with_profile = |name: &str, profile: Option<serde_json::Value>| {
        let mut c = container(&env, name, report);
        c.security_context = profile.map(|p| k8s_openapi::api::core::v1::SecurityContext {
            seccomp_profile: Some(serde_json::from_value(p).expect("profile")),
            ..Default::default()
        });
        c
    };
    let uid = unique("uid-seccomp");
    kubelet
        .set_pods(vec![pod(
            "seccomp",
            &uid,
            "Always",
            vec![],
            vec![
                with_profile("unset", None),
                with_profile(
                    "default",
                    Some(serde_json::json!({"type": "RuntimeDefault"})),
                ),
                with_profile(
                    "local",
                    Some(serde_json::json!({
                        "type": "Localhost", "localhostProfile": "test/deny-mkdir.json",
                    })),
                ),
            ],
        )])
        .await;
    kubelet
        .eventually("running", Duration::from_secs(60), |pods| {
            phase(pods, "seccomp") == "Running"
        })
        .await;
    let unset = log_with(&kubelet, "seccomp", &uid, "unset", "done").await;
    assert!(
        unset.contains("Seccomp:\t0"),
        "no profile without seccompDefault: {unset}"
    );
    let default = log_with(&kubelet, "seccomp", &uid, "default", "done").await;
    assert!(
        default.contains("Seccomp:\t2"),
        "RuntimeDefault filters: {default}"
    );
    assert!(default.contains("mkdir-ok"), "{default}");
    let local = log_with(&kubelet, "seccomp", &uid, "local", "done").await;
    assert!(
        local.contains("Seccomp:\t2"),
        "the Localhost profile filters: {local}"
    );
    assert!(
        local.contains("mkdir-denied"),
        "the Localhost profile denies mkdir: {local}"
    );
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn seccomp_default_confines_containers_without_a_profile() {
    let Some(env) = TestEnv::from_env("seccomp_default_confines_containers_without_a_profile")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start_with(
        &env,
        Arc::new(tempfile::tempdir().expect("dir")),
        Setup {
            security: NodeSecurity {
                seccomp_default: true,
                ..NodeSecurity::default()
            },
            ..Setup::default()
        },
    );
    let uid = unique("uid-seccomp-default");
    let app = container(
        &env,
        "app",
        "grep Seccomp: /proc/self/status; exec sleep 3600",
    );
    kubelet
        .set_pods(vec![pod("confined", &uid, "Always", vec![], vec![app])])
        .await;
    kubelet
        .eventually("running", Duration::from_secs(60), |pods| {
            phase(pods, "confined") == "Running"
        })
        .await;
    let log = log_with(&kubelet, "confined", &uid, "app", "Seccomp:").await;
    assert!(log.contains("Seccomp:\t2"), "seccompDefault: {log}");
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn sysctls_and_apparmor_are_admitted_as_upstream() {
    let Some(env) = TestEnv::from_env("sysctls_and_apparmor_are_admitted_as_upstream") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let sysctls = SysctlAllowlist::new(
        kubelet_pod_manager::admission::kernel_version(),
        &["kernel.msgmax".to_owned()],
    )
    .expect("allowlist");
    let apparmor_enabled = kubelet_pod_manager::spec::host_apparmor_enabled();
    let kubelet = start_with(
        &env,
        Arc::new(tempfile::tempdir().expect("dir")),
        Setup {
            security: NodeSecurity {
                sysctls,
                apparmor_enabled,
                ..NodeSecurity::default()
            },
            ..Setup::default()
        },
    );
    let with_sysctls = |name: &str, uid: &str, sysctls: &[(&str, &str)]| {
        let app = container(
            &env,
            "app",
            "cat /proc/sys/kernel/msgmax /proc/sys/net/ipv4/ip_unprivileged_port_start; \
             echo done; exec sleep 3600",
        );
        let mut pod = pod(name, uid, "Always", vec![], vec![app]);
        pod.spec.as_mut().expect("spec").security_context =
            Some(k8s_openapi::api::core::v1::PodSecurityContext {
                sysctls: Some(
                    sysctls
                        .iter()
                        .map(|(name, value)| k8s_openapi::api::core::v1::Sysctl {
                            name: (*name).into(),
                            value: (*value).into(),
                        })
                        .collect(),
                ),
                ..Default::default()
            });
        pod
    };
    let allowed_uid = unique("uid-sysctl-ok");
    let forbidden_uid = unique("uid-sysctl-no");
    let apparmor_uid = unique("uid-apparmor");
    let mut apparmor = pod(
        "apparmor",
        &apparmor_uid,
        "Always",
        vec![],
        vec![container(&env, "app", "exec sleep 3600")],
    );
    apparmor.spec.as_mut().expect("spec").security_context =
        Some(k8s_openapi::api::core::v1::PodSecurityContext {
            app_armor_profile: Some(k8s_openapi::api::core::v1::AppArmorProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        });
    kubelet
        .set_pods(vec![
            with_sysctls(
                "sysctl-ok",
                &allowed_uid,
                &[
                    ("kernel.msgmax", "12345"),
                    ("net.ipv4.ip_unprivileged_port_start", "80"),
                ],
            ),
            with_sysctls("sysctl-no", &forbidden_uid, &[("kernel.sem", "1 2 3 4")]),
            apparmor,
        ])
        .await;
    kubelet
        .eventually("sysctl pods decided", Duration::from_secs(60), |pods| {
            phase(pods, "sysctl-ok") == "Running" && phase(pods, "sysctl-no") == "Failed"
        })
        .await;
    let log = log_with(&kubelet, "sysctl-ok", &allowed_uid, "app", "done").await;
    assert!(
        log.contains("12345\n80\n"),
        "allowed sysctls applied: {log}"
    );
    let pods = kubelet.recorder.pods.pods();
    let status = find(&pods, "sysctl-no")
        .and_then(|p| p.status.clone())
        .expect("status");
    assert_eq!(status.reason.as_deref(), Some("SysctlForbidden"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was rejected: forbidden sysctl: \"kernel.sem\" not allowlisted")
    );
    assert_eq!(
        kubelet.events.of("sysctl-no"),
        vec!["SysctlForbidden: forbidden sysctl: \"kernel.sem\" not allowlisted"]
    );
    assert_eq!(
        kubelet.client_sandboxes(&[&forbidden_uid]).await,
        0,
        "never run"
    );
    if apparmor_enabled {
        kubelet_test_support::skip(
            "sysctls_and_apparmor_are_admitted_as_upstream (AppArmor refusal)",
            "this host enforces AppArmor, so the refusal on hosts without it is not exercised",
        );
    } else {
        kubelet
            .eventually("apparmor pod refused", Duration::from_secs(30), |pods| {
                phase(pods, "apparmor") == "Failed"
            })
            .await;
        let pods = kubelet.recorder.pods.pods();
        let status = find(&pods, "apparmor")
            .and_then(|p| p.status.clone())
            .expect("status");
        assert_eq!(status.reason.as_deref(), Some("AppArmor"));
        assert_eq!(
            status.message.as_deref(),
            Some("Pod was rejected: Cannot enforce AppArmor: AppArmor is not enabled on the host")
        );
        assert_eq!(
            kubelet.client_sandboxes(&[&apparmor_uid]).await,
            0,
            "never run"
        );
    }
    kubelet
        .finish(&[&allowed_uid, &forbidden_uid, &apparmor_uid])
        .await;
}

/// RuntimeClasses as a map; the API server's are exercised by the cluster tests.
struct Classes(std::collections::BTreeMap<String, String>);

#[async_trait::async_trait]
impl RuntimeClasses for Classes {
    async fn handler(&self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("runtimeclass.node.k8s.io {name:?} not found"))
    }
}

#[tokio::test]
async fn runtime_classes_select_the_handler_and_user_namespaces_are_refused() {
    let Some(env) =
        TestEnv::from_env("runtime_classes_select_the_handler_and_user_namespaces_are_refused")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let classes = Classes(
        [
            ("test".to_owned(), env.runtime_handler.clone()),
            ("unknown-handler".to_owned(), "no-such-handler".to_owned()),
        ]
        .into(),
    );
    let kubelet = start_with(
        &env,
        Arc::new(tempfile::tempdir().expect("dir")),
        Setup {
            runtime_classes: Arc::new(classes),
            ..Setup::default()
        },
    );
    let with_class = |name: &str, uid: &str, class: Option<&str>| {
        let mut pod = pod(
            name,
            uid,
            "Always",
            vec![],
            vec![container(&env, "app", "exec sleep 3600")],
        );
        pod.spec.as_mut().expect("spec").runtime_class_name = class.map(str::to_owned);
        pod
    };
    let classed = unique("uid-class");
    let missing = unique("uid-class-missing");
    let unknown = unique("uid-class-unknown");
    let userns = unique("uid-userns");
    let mut own_users = with_class("userns", &userns, None);
    own_users.spec.as_mut().expect("spec").host_users = Some(false);
    kubelet
        .set_pods(vec![
            with_class("classed", &classed, Some("test")),
            with_class("missing", &missing, Some("gone")),
            with_class("unknown", &unknown, Some("unknown-handler")),
            own_users,
        ])
        .await;
    kubelet
        .eventually("classed pod running", Duration::from_secs(60), |pods| {
            phase(pods, "classed") == "Running"
        })
        .await;
    let filter = kubelet_cri_client::proto::PodSandboxFilter {
        label_selector: [(POD_UID_LABEL.to_owned(), classed.clone())].into(),
        ..Default::default()
    };
    let sandboxes = kubelet
        .client
        .list_pod_sandbox(Some(filter))
        .await
        .expect("list");
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(sandboxes[0].runtime_handler, env.runtime_handler);

    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = |pod: &str| {
        kubelet
            .events
            .of(pod)
            .into_iter()
            .find(|e| e.starts_with("FailedCreatePodSandBox"))
    };
    while ["missing", "unknown", "userns"]
        .iter()
        .any(|p| failed(p).is_none())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        failed("missing").as_deref(),
        Some(
            "FailedCreatePodSandBox: Failed to create pod sandbox: runtimeclass.node.k8s.io \
             \"gone\" not found"
        )
    );
    let unknown_event = failed("unknown").expect("unknown handler event");
    assert!(
        unknown_event.contains("no-such-handler"),
        "containerd names the handler it lacks: {unknown_event}"
    );
    assert_eq!(
        failed("userns").as_deref(),
        Some(
            "FailedCreatePodSandBox: Failed to create pod sandbox: can't set \
             `spec.hostUsers: false`, runtime does not support user namespaces"
        )
    );
    assert_eq!(
        kubelet
            .client_sandboxes(&[&missing, &unknown, &userns])
            .await,
        0,
        "none of them runs"
    );
    kubelet
        .finish(&[&classed, &missing, &unknown, &userns])
        .await;
}

/// A server on 127.0.0.1 answering 200 to every GET and keeping each request head;
/// over TLS with a fresh self-signed certificate when `tls`. Its port and the heads.
async fn node_server(tls: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, seen: Arc<Mutex<Vec<String>>>) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            // A TLS ClientHello: answer as Go's server does to what is not HTTP.
            if head.first() == Some(&0x16) {
                let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
                return;
            }
        }
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(String::from_utf8_lossy(&head).into_owned());
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await;
        let _ = s.shutdown().await;
    }
    let acceptor = tls.then(|| {
        let certified =
            rcgen::generate_simple_self_signed(vec!["pod.example".to_owned()]).expect("cert");
        let cert = rustls::pki_types::CertificateDer::from(certified.cert.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream, log).await;
                        }
                    }
                    None => answer(stream, log).await,
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn https_probes_and_hooks_reach_tls_servers() {
    let Some(env) = TestEnv::from_env("https_probes_and_hooks_reach_tls_servers") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    // The servers run on the node, where the kubelet probes from: busybox has no TLS
    // server to run in the pod.
    let (tls_port, tls_seen) = node_server(true).await;
    let (plain_port, plain_seen) = node_server(false).await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let https = |port: u16, path: &str| k8s_openapi::api::core::v1::HTTPGetAction {
        host: Some("127.0.0.1".into()),
        scheme: Some("HTTPS".into()),
        port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i32::from(port)),
        path: Some(path.into()),
        ..Default::default()
    };
    let mut app = container(&env, "app", "exec sleep 3600");
    app.readiness_probe = Some(k8s_openapi::api::core::v1::Probe {
        http_get: Some(https(tls_port, "/ready")),
        period_seconds: Some(1),
        ..Default::default()
    });
    app.lifecycle = Some(Lifecycle {
        post_start: Some(LifecycleHandler {
            http_get: Some(https(plain_port, "/started")),
            ..Default::default()
        }),
        ..Default::default()
    });
    let uid = unique("uid-https");
    kubelet
        .set_pods(vec![pod("https", &uid, "Always", vec![], vec![app])])
        .await;
    kubelet
        .eventually(
            "ready through an HTTPS probe",
            Duration::from_secs(60),
            |pods| app_status(pods, "https", "app").is_some_and(|s| s.ready),
        )
        .await;
    let probes = tls_seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        probes
            .iter()
            .any(|head| head.starts_with("GET /ready ") && head.contains("kube-probe/1.37")),
        "{probes:?}"
    );
    let hooks = plain_seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        hooks
            .iter()
            .any(|head| head.starts_with("GET /started ") && head.contains("kube-lifecycle/1.37")),
        "the HTTPS hook was retried over HTTP: {hooks:?}"
    );
    assert!(
        kubelet.events.of("https").contains(&format!(
            "LifecycleHTTPFallback: request to HTTPS lifecycle hook 127.0.0.1:{plain_port} got \
             HTTP response, retry with HTTP succeeded"
        )),
        "{:?}",
        kubelet.events.of("https")
    );
    let status = app_status(&kubelet.recorder.pods.pods(), "https", "app").expect("status");
    assert_eq!(status.restart_count, 0, "the postStart hook succeeded");
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn a_host_network_pod_has_the_nodes_ip() {
    let Some(env) = TestEnv::from_env("a_host_network_pod_has_the_nodes_ip") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let port = {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut app = container(
        &env,
        "app",
        &format!(
            "echo pod-ip=$POD_IP; mkdir -p /www; echo ok > /www/index.html; \
             exec httpd -f -p {port} -h /www"
        ),
    );
    app.env = Some(vec![field_env("POD_IP", "status.podIP")]);
    app.readiness_probe = Some(k8s_openapi::api::core::v1::Probe {
        http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
            path: Some("/index.html".into()),
            port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i32::from(port)),
            ..Default::default()
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    let uid = unique("uid-hostnet");
    let mut host = pod("hostnet", &uid, "Always", vec![], vec![app]);
    host.spec.as_mut().expect("spec").host_network = Some(true);
    kubelet.set_pods(vec![host]).await;
    kubelet
        .eventually(
            "ready through a probe of the node's IP",
            Duration::from_secs(60),
            |pods| app_status(pods, "hostnet", "app").is_some_and(|s| s.ready),
        )
        .await;
    let pods = kubelet.recorder.pods.pods();
    let status = find(&pods, "hostnet")
        .and_then(|p| p.status.clone())
        .expect("status");
    assert_eq!(status.pod_ip.as_deref(), Some("10.88.0.1"));
    let log = log_with(&kubelet, "hostnet", &uid, "app", "pod-ip=").await;
    assert!(
        log.contains("pod-ip=10.88.0.1\n"),
        "status.podIP in env: {log}"
    );
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn a_non_root_container_writes_its_termination_message() {
    let Some(env) = TestEnv::from_env("a_non_root_container_writes_its_termination_message") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let mut app = container(&env, "app", "echo goodbye > /dev/termination-log; exit 3");
    app.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
        run_as_user: Some(1000),
        run_as_group: Some(1000),
        ..Default::default()
    });
    let uid = unique("uid-message");
    kubelet
        .set_pods(vec![pod("message", &uid, "Never", vec![], vec![app])])
        .await;
    kubelet
        .eventually("failed", Duration::from_secs(60), |pods| {
            phase(pods, "message") == "Failed"
        })
        .await;
    let terminated = app_status(&kubelet.recorder.pods.pods(), "message", "app")
        .and_then(|s| s.state?.terminated)
        .expect("terminated");
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.message.as_deref(), Some("goodbye\n"));
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn a_liveness_kill_uses_the_probes_grace_period() {
    let Some(env) = TestEnv::from_env("a_liveness_kill_uses_the_probes_grace_period") else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    // Ignores SIGTERM: only the grace period ends it.
    let mut stubborn = container(&env, "app", "trap '' TERM; while true; do sleep 1; done");
    stubborn.liveness_probe = Some(k8s_openapi::api::core::v1::Probe {
        exec: Some(ExecAction {
            command: Some(vec!["false".into()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        termination_grace_period_seconds: Some(1),
        ..Default::default()
    });
    let uid = unique("uid-probe-grace");
    let mut slow = pod("probe-grace", &uid, "Always", vec![], vec![stubborn]);
    // The pod's own grace period would hold the kill for two minutes.
    slow.spec
        .as_mut()
        .expect("spec")
        .termination_grace_period_seconds = Some(120);
    let slow_copy = slow.clone();
    kubelet.set_pods(vec![slow]).await;
    kubelet
        .eventually(
            "restarted after the probe's 1 s grace, not the pod's 120 s",
            Duration::from_secs(45),
            |pods| app_status(pods, "probe-grace", "app").is_some_and(|s| s.restart_count >= 1),
        )
        .await;
    let terminated = app_status(&kubelet.recorder.pods.pods(), "probe-grace", "app")
        .and_then(|s| s.last_state?.terminated)
        .expect("last state");
    assert_eq!(
        terminated.exit_code, 137,
        "killed when the grace period ended"
    );
    // Removing it would wait out the pod's long grace period: shorten it first.
    let mut quick = slow_copy;
    quick
        .spec
        .as_mut()
        .expect("spec")
        .termination_grace_period_seconds = Some(1);
    kubelet.set_pods(vec![quick]).await;
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn grpc_probes_gate_readiness_and_restart_unhealthy_containers() {
    let Some(env) =
        TestEnv::from_env("grpc_probes_gate_readiness_and_restart_unhealthy_containers")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    // A health server on the node: a host-network pod's IP is the node's, where gRPC
    // probes (which have no host field) go. busybox has no gRPC server to run instead.
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("ok.svc", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("sick.svc", tonic_health::ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let grpc = |service: &str| k8s_openapi::api::core::v1::Probe {
        grpc: Some(k8s_openapi::api::core::v1::GRPCAction {
            port: i32::from(port),
            service: Some(service.into()),
            ..Default::default()
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    };
    let mut healthy = container(&env, "healthy", "exec sleep 3600");
    healthy.readiness_probe = Some(grpc("ok.svc"));
    let mut sick = container(&env, "sick", "exec sleep 3600");
    sick.liveness_probe = Some(grpc("sick.svc"));
    let uid = unique("uid-grpc");
    let mut host = pod("grpc", &uid, "Always", vec![], vec![healthy, sick]);
    host.spec.as_mut().expect("spec").host_network = Some(true);
    host.spec
        .as_mut()
        .expect("spec")
        .termination_grace_period_seconds = Some(1);
    kubelet.set_pods(vec![host]).await;
    kubelet
        .eventually(
            "ready through a gRPC probe, and the not-serving one restarted",
            Duration::from_secs(60),
            |pods| {
                app_status(pods, "grpc", "healthy").is_some_and(|s| s.ready)
                    && app_status(pods, "grpc", "sick").is_some_and(|s| s.restart_count >= 1)
            },
        )
        .await;
    let events = kubelet.events.of("grpc");
    assert!(
        events.contains(
            &"Unhealthy: Liveness probe failed: service unhealthy (responded with \"NOT_SERVING\")"
                .to_owned()
        ),
        "{events:?}"
    );
    kubelet.finish(&[&uid]).await;
    server.abort();
}

#[tokio::test]
async fn restart_rules_restart_a_container_on_listed_exit_codes() {
    let Some(env) = TestEnv::from_env("restart_rules_restart_a_container_on_listed_exit_codes")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    // Exits 42 the first time (a "retriable" failure), 0 the second.
    let mut app = container(
        &env,
        "app",
        "if [ -f /data/ran ]; then exit 0; fi; touch /data/ran; exit 42",
    );
    app.restart_policy = Some("Never".into());
    app.restart_policy_rules = Some(vec![k8s_openapi::api::core::v1::ContainerRestartRule {
        action: "Restart".into(),
        exit_codes: Some(
            k8s_openapi::api::core::v1::ContainerRestartRuleOnExitCodes {
                operator: "In".into(),
                values: Some(vec![42]),
            },
        ),
    }]);
    app.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
        name: "data".into(),
        mount_path: "/data".into(),
        ..Default::default()
    }]);
    let uid = unique("uid-rules");
    let mut retried = pod("rules", &uid, "Never", vec![], vec![app]);
    retried.spec.as_mut().expect("spec").volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
        name: "data".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }]);
    kubelet.set_pods(vec![retried]).await;
    kubelet
        .eventually(
            "succeeded after one rule-driven restart",
            Duration::from_secs(60),
            |pods| phase(pods, "rules") == "Succeeded",
        )
        .await;
    let status = app_status(&kubelet.recorder.pods.pods(), "rules", "app").expect("status");
    assert_eq!(status.restart_count, 1, "restarted once, for exit code 42");
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn sidecars_gate_on_their_startup_probe_and_stop_when_the_job_is_done() {
    let Some(env) =
        TestEnv::from_env("sidecars_gate_on_their_startup_probe_and_stop_when_the_job_is_done")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let data = || {
        Some(vec![k8s_openapi::api::core::v1::VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }])
    };
    // Becomes "started" only after 2 s, and leaves on SIGTERM.
    let mut proxy = container(
        &env,
        "proxy",
        "trap 'exit 0' TERM; sleep 2; touch /data/up; while true; do sleep 1; done",
    );
    proxy.restart_policy = Some("Always".into());
    proxy.volume_mounts = data();
    proxy.startup_probe = Some(k8s_openapi::api::core::v1::Probe {
        exec: Some(ExecAction {
            command: Some(vec!["test".into(), "-f".into(), "/data/up".into()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(30),
        ..Default::default()
    });
    let mut after = container(
        &env,
        "after",
        "test -f /data/up && echo saw-started-sidecar || echo started-too-early",
    );
    after.volume_mounts = data();
    let job = container(&env, "job", "echo job-done");
    let uid = unique("uid-sidecar");
    let mut pod = pod("sidecar-job", &uid, "Never", vec![proxy, after], vec![job]);
    pod.spec.as_mut().expect("spec").volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
        name: "data".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }]);
    kubelet.set_pods(vec![pod]).await;
    kubelet
        .eventually(
            "the job completes once its sidecar is stopped",
            Duration::from_secs(90),
            |pods| phase(pods, "sidecar-job") == "Succeeded",
        )
        .await;
    let log = read_log(&kubelet, "sidecar-job", &uid, "after");
    assert!(log.contains("saw-started-sidecar"), "{log}");
    let pods = kubelet.recorder.pods.pods();
    let sidecar = find(&pods, "sidecar-job")
        .and_then(|p| p.status.as_ref()?.init_container_statuses.clone())
        .and_then(|s| s.into_iter().find(|c| c.name == "proxy"))
        .expect("sidecar status");
    assert!(
        sidecar
            .state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some()),
        "the sidecar was stopped: {sidecar:?}"
    );
    assert_eq!(sidecar.restart_count, 0, "and not restarted");
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn a_shortened_grace_period_cuts_a_sleeping_pre_stop_hook() {
    let Some(env) = TestEnv::from_env("a_shortened_grace_period_cuts_a_sleeping_pre_stop_hook")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let mut app = container(&env, "app", "exec sleep 3600");
    app.lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(k8s_openapi::api::core::v1::SleepAction { seconds: 120 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let uid = unique("uid-sleep-hook");
    let mut sleepy = pod("sleepy", &uid, "Always", vec![], vec![app]);
    sleepy
        .spec
        .as_mut()
        .expect("spec")
        .termination_grace_period_seconds = Some(300);
    kubelet.set_pods(vec![sleepy.clone()]).await;
    kubelet
        .eventually("running", Duration::from_secs(60), |pods| {
            phase(pods, "sleepy") == "Running"
        })
        .await;
    // Deleted with the pod's long grace period: the preStop hook sleeps...
    let deleted = |grace: i64| {
        let mut pod = sleepy.clone();
        pod.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        pod.metadata.deletion_grace_period_seconds = Some(grace);
        pod
    };
    kubelet.set_pods(vec![deleted(300)]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(kubelet.client_sandboxes(&[&uid]).await, 1, "still stopping");
    // ...until a second delete shortens the grace period to 1 s.
    kubelet.set_pods(vec![deleted(1)]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while kubelet.client_sandboxes(&[&uid]).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the pod still waits out its first grace period"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kubelet.finish(&[&uid]).await;
}

#[tokio::test]
async fn ephemeral_containers_start_once_in_their_targets_pid_namespace() {
    let Some(env) =
        TestEnv::from_env("ephemeral_containers_start_once_in_their_targets_pid_namespace")
    else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let uid = unique("uid-debug");
    let mut debugged = pod(
        "debugged",
        &uid,
        "Always",
        vec![],
        vec![container(&env, "app", "exec sleep 3601")],
    );
    kubelet.set_pods(vec![debugged.clone()]).await;
    kubelet
        .eventually("running", Duration::from_secs(60), |pods| {
            phase(pods, "debugged") == "Running"
        })
        .await;
    // What `kubectl debug --target=app` adds through the ephemeralcontainers subresource.
    debugged.spec.as_mut().expect("spec").ephemeral_containers =
        Some(vec![k8s_openapi::api::core::v1::EphemeralContainer {
            name: "debugger".into(),
            image: Some(env.busybox.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["sh".into(), "-c".into(), "ps; echo listed".into()]),
            target_container_name: Some("app".into()),
            ..Default::default()
        }]);
    kubelet.set_pods(vec![debugged]).await;
    kubelet
        .eventually("the debugger ran", Duration::from_secs(60), |pods| {
            find(pods, "debugged")
                .and_then(|p| p.status.as_ref()?.ephemeral_container_statuses.clone())
                .is_some_and(|s| {
                    s.iter().any(|c| {
                        c.name == "debugger"
                            && c.state.as_ref().is_some_and(|st| st.terminated.is_some())
                    })
                })
        })
        .await;
    let log = log_with(&kubelet, "debugged", &uid, "debugger", "listed").await;
    assert!(
        log.contains("sleep 3601"),
        "the target's processes are visible: {log}"
    );
    // Never restarted, and the app is untouched.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods = kubelet.recorder.pods.pods();
    let status = find(&pods, "debugged")
        .and_then(|p| p.status.clone())
        .expect("status");
    let debugger = status
        .ephemeral_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "debugger")
        .expect("debugger status");
    assert_eq!(debugger.restart_count, 0);
    assert!(
        debugger
            .state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some())
    );
    assert_eq!(
        app_status(&pods, "debugged", "app").map(|s| s.restart_count),
        Some(0)
    );
    kubelet.finish(&[&uid]).await;
}

/// `(link name, target)` of each symlink in the test kubelet's container log directory.
fn log_links(kubelet: &Kubelet) -> Vec<(String, std::path::PathBuf)> {
    let mut links: Vec<_> = std::fs::read_dir(kubelet.dirs.path().join("containers"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let target = std::fs::read_link(e.path()).ok()?;
                    Some((e.file_name().to_string_lossy().into_owned(), target))
                })
                .collect()
        })
        .unwrap_or_default();
    links.sort();
    links
}

#[tokio::test]
async fn log_symlinks_dead_sandboxes_and_orphaned_log_dirs_are_collected() {
    const TEST: &str = "log_symlinks_dead_sandboxes_and_orphaned_log_dirs_are_collected";
    let Some(env) = TestEnv::from_env(TEST) else {
        return;
    };
    let _lock = RUNTIME_LOCK.lock().await;
    let kubelet = start(&env, Arc::new(tempfile::tempdir().expect("dir")));
    let uid = unique("uid-gc");
    let web = pod(
        "web",
        &uid,
        "Always",
        vec![],
        vec![container(
            &env,
            "app",
            "echo hello from app; exec sleep 3600",
        )],
    );
    // What a kubelet that stopped early left behind: the log directory of a pod that is
    // gone (old), a dangling symlink, and a regular file that is not the kubelet's.
    let orphan = kubelet
        .dirs
        .path()
        .join("logs/pod-manager-test_gone_uid-gone-for-good");
    std::fs::create_dir_all(orphan.join("app")).expect("mkdir");
    std::fs::write(orphan.join("app/0.log"), "old\n").expect("log");
    std::fs::File::open(&orphan)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)))
        .expect("age");
    let links = kubelet.dirs.path().join("containers");
    std::fs::create_dir_all(&links).expect("mkdir");
    let dangling = links.join("gone_pod-manager-test_app-0123456789abcdef.log");
    std::os::unix::fs::symlink(orphan.join("app/0.log"), &dangling).expect("symlink");
    let file = links.join("not-a-link_x_y-0123456789abcdef.log");
    std::fs::write(&file, "mine").expect("file");

    kubelet.set_pods(vec![web]).await;
    kubelet
        .eventually("running", Duration::from_secs(60), |pods| {
            app_status(pods, "web", "app").is_some_and(|s| s.ready)
        })
        .await;
    let id_of = |status: k8s_openapi::api::core::v1::ContainerStatus| {
        status
            .container_id
            .unwrap_or_default()
            .trim_start_matches("containerd://")
            .to_owned()
    };
    let first = id_of(app_status(&kubelet.recorder.pods.pods(), "web", "app").expect("app"));
    let log = kubelet
        .dirs
        .path()
        .join("logs")
        .join(format!("pod-manager-test_web_{uid}"))
        .join("app/0.log");
    let link = links.join(format!("web_pod-manager-test_app-{first}.log"));
    assert_eq!(std::fs::read_link(&link).expect("symlink"), log);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&link)
        .unwrap_or_default()
        .contains("hello from app")
    {
        assert!(
            Instant::now() < deadline,
            "log not readable through the link"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The sandbox dies (its pause process is killed, as the OOM killer would): the pod gets
    // a new one, the old one keeps the exited app. Not `StopPodSandbox`: containerd stops
    // the app before the sandbox is marked not ready, so a kubelet that reacts to the app's
    // exit may restart it once more in the dying sandbox (upstream can too), and the
    // restart count would depend on that race.
    let sandboxes = |client: CriClient, uid: String| async move {
        let filter = SandboxFilter {
            labels: [(POD_UID_LABEL.to_owned(), uid)].into(),
            ..Default::default()
        };
        let mut ids: Vec<String> = RuntimeInventory::list_sandboxes(&client, &filter)
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.id)
            .collect();
        ids.sort();
        ids
    };
    let old = sandboxes(kubelet.client.clone(), uid.clone()).await;
    assert_eq!(old.len(), 1);
    let verbose = kubelet
        .client
        .pod_sandbox_status(&old[0], true)
        .await
        .expect("sandbox status");
    let info: serde_json::Value =
        serde_json::from_str(verbose.info.get("info").map_or("{}", String::as_str))
            .expect("verbose info");
    let pause = info["pid"].as_u64().expect("the pause process' pid");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pause.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -KILL {pause}");
    kubelet
        .eventually("new sandbox", Duration::from_secs(60), |pods| {
            app_status(pods, "web", "app").is_some_and(|s| s.ready && s.restart_count == 1)
        })
        .await;
    assert_eq!(
        sandboxes(kubelet.client.clone(), uid.clone()).await.len(),
        2
    );
    let second = id_of(app_status(&kubelet.recorder.pods.pods(), "web", "app").expect("app"));

    // The new instance exits: the old instance goes with its link, then the old sandbox.
    Runtime::stop_container(&kubelet.client, &second, Duration::from_secs(1))
        .await
        .expect("stop app");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = sandboxes(kubelet.client.clone(), uid.clone()).await;
        if left.len() == 1 && !left.contains(&old[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old sandbox not removed: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "old instance's link removed"
    );
    let second_link = links.join(format!("web_pod-manager-test_app-{second}.log"));
    assert!(
        std::fs::symlink_metadata(&second_link).is_ok(),
        "{:?}",
        log_links(&kubelet)
    );

    // The periodic clean-up (every 30 s once the sources are seen) removes the orphaned
    // log directory and the dangling link, and leaves the file and live links.
    let deadline = Instant::now() + Duration::from_secs(60);
    while orphan.exists() || std::fs::symlink_metadata(&dangling).is_ok() {
        assert!(
            Instant::now() < deadline,
            "orphans not collected: {:?}",
            log_links(&kubelet)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "mine");
    assert!(std::fs::symlink_metadata(&second_link).is_ok());
    assert!(
        kubelet
            .dirs
            .path()
            .join(format!("logs/pod-manager-test_web_{uid}"))
            .exists(),
        "the live pod's logs are kept"
    );

    // The pod goes: so does its link.
    kubelet.set_pods(Vec::new()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::symlink_metadata(&second_link).is_ok() {
        assert!(
            Instant::now() < deadline,
            "link not removed: {:?}",
            log_links(&kubelet)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kubelet.finish(&[&uid]).await;
}
