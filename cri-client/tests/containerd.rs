//! The client against a real containerd (with runc and CNI) and a real registry, as set
//! up by `cargo xtask env up`. Without that environment these tests report themselves
//! skipped, unless `KUBELET_TEST_REQUIRE_ENV=1` (set by `cargo xtask test`) makes a
//! missing environment a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kubelet_core::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ImageService,
    LinuxSandboxConfig, RegistryAuth, Runtime, RuntimeHealth, RuntimeInventory, SandboxConfig,
    SandboxFilter, SandboxMetadata, SandboxState,
};
use kubelet_cri_client::{CriClient, Error, TestEnv, Timeouts};

/// CRI RemoveImage removes every tag of an image, so the busybox pulled from
/// `localhost:5000` goes too when the credentials test removes its `localhost:5001` copy:
/// tests that pull busybox and the one that removes it take turns.
static BUSYBOX: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn test_env(test: &str) -> Option<TestEnv> {
    TestEnv::from_env(test)
}

fn client(env: &TestEnv) -> CriClient {
    let timeouts = Timeouts {
        request: Duration::from_secs(60),
        pull: Duration::from_secs(120),
        ..Timeouts::default()
    };
    CriClient::new(&env.endpoint, timeouts).expect("valid endpoint")
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// A pod sandbox as the kubelet would configure it, with its log directory created.
fn sandbox_config(name: &str, log_root: &Path) -> SandboxConfig {
    let uid = unique("uid");
    let log_directory = log_root.join(format!("default_{name}_{uid}"));
    std::fs::create_dir_all(&log_directory).expect("log directory");
    SandboxConfig {
        metadata: SandboxMetadata {
            name: name.into(),
            namespace: "cri-client-test".into(),
            uid: uid.clone(),
            attempt: 0,
        },
        hostname: name.into(),
        log_directory: log_directory.display().to_string(),
        labels: [("kubelet-rs.test".to_owned(), name.to_owned())].into(),
        linux: LinuxSandboxConfig {
            // As the kubelet does, give the pod a cgroup of its own; sandbox stats need it.
            cgroup_parent: format!("/{TEST_CGROUP}/pod{uid}"),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Parent cgroup of the test pods, under every cgroup v1 controller.
const TEST_CGROUP: &str = "kubelet-rs-cri-test";

/// Removes a pod cgroup that runc created as the parent of the pod's containers (the
/// kubelet's job for real pods).
fn remove_pod_cgroup(cgroup_parent: &str) {
    use kubelet_cgroups::CgroupManager;
    let cgroups = kubelet_cgroups::Cgroupfs::host();
    if let Err(e) = cgroups.remove(cgroup_parent) {
        eprintln!("cleanup: {e}");
    }
    // Other tests may still use the shared parent: failing here is expected.
    let _ = cgroups.remove(TEST_CGROUP);
}

fn busybox(image: &str, name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: image.to_owned(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}/0.log"),
        labels: [("kubelet-rs.test".to_owned(), name.to_owned())].into(),
        ..Default::default()
    }
}

async fn wait_for_state(
    runtime: &dyn Runtime,
    id: &str,
    state: ContainerState,
) -> kubelet_core::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = runtime
            .container_status(id)
            .await
            .expect("container status");
        if status.container.state == state {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} still {:?}, expected {state:?}",
            status.container.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops and removes a sandbox even when the test body failed.
async fn remove_sandbox(runtime: &dyn Runtime, id: &str) {
    if let Err(e) = runtime.stop_sandbox(id).await {
        eprintln!("cleanup: {e}");
    }
    if let Err(e) = runtime.remove_sandbox(id).await {
        eprintln!("cleanup: {e}");
    }
}

#[tokio::test]
async fn version_and_status_of_containerd() {
    let Some(env) = test_env("version_and_status_of_containerd") else {
        return;
    };
    let client = client(&env);
    let version = RuntimeHealth::version(&client).await.expect("version");
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_api_version, "v1");
    assert!(!version.runtime_version.is_empty());

    let status = RuntimeHealth::status(&client).await.expect("status");
    assert!(status.runtime_ready(), "{status:?}");
    // containerd 1.6 has no RuntimeConfig (Unimplemented): it cannot say its cgroup
    // driver, so the kubelet's configuration holds; containerd 2 says.
    let driver = Runtime::cgroup_driver(&client)
        .await
        .expect("cgroup driver");
    if version.runtime_version.starts_with("1.") {
        assert_eq!(driver, None);
    } else {
        assert!(driver.is_some());
    }
    // The pod CIDR the node gets from the control plane is handed to the runtime.
    client
        .update_runtime_config("10.88.0.0/16")
        .await
        .expect("update runtime config");
    assert!(status.network_ready(), "{status:?}");

    let fs = ImageService::image_fs_info(&client)
        .await
        .expect("image fs");
    // containerd measures usage in the background, so a fresh store may still read 0;
    // what is certain is that the image filesystem is reported, with its usage.
    assert!(
        fs.iter()
            .any(|f| f.mountpoint.contains("containerd") && f.used_bytes.is_some()),
        "{fs:?}"
    );
}

#[tokio::test]
async fn pulls_from_the_local_registry_and_names_a_missing_image() {
    let Some(env) = test_env("pulls_from_the_local_registry_and_names_a_missing_image") else {
        return;
    };
    let client = client(&env);
    let _busybox = BUSYBOX.lock().await;
    let image_ref = ImageService::pull_image(&client, &env.busybox, None, None)
        .await
        .expect("pull busybox");
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    let image = ImageService::image_status(&client, &env.busybox)
        .await
        .expect("image status")
        .expect("present after pull");
    assert_eq!(image.id, image_ref);
    assert!(image.size > 0);
    let all = ImageService::list_images(&client).await.expect("list");
    assert!(all.iter().any(|i| i.repo_tags.contains(&env.busybox)));

    let missing = format!("{}/kubelet-rs/does-not-exist:never", env.registry);
    let err = client
        .pull_image(&missing, None, None)
        .await
        .expect_err("no such image");
    assert!(err.is_not_found(), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("PullImage {missing}: not found")),
        "{text}"
    );
    assert_eq!(
        ImageService::image_status(&client, &missing)
            .await
            .expect("status"),
        None
    );
}

#[tokio::test]
async fn pulls_with_registry_credentials() {
    let Some(env) = test_env("pulls_with_registry_credentials") else {
        return;
    };
    let client = client(&env);
    let _busybox = BUSYBOX.lock().await;
    let image = format!("{}/busybox:latest", env.auth_registry);
    // Start from a clean store so the pull really reaches the registry.
    ImageService::remove_image(&client, &image)
        .await
        .expect("remove");

    let err = ImageService::pull_image(&client, &image, None, None)
        .await
        .expect_err("the registry requires credentials");
    let text = err.to_string();
    assert!(text.starts_with(&format!("PullImage {image}:")), "{text}");
    assert!(
        text.contains("401") || text.to_lowercase().contains("unauthorized"),
        "{text}"
    );

    let wrong = RegistryAuth {
        username: env.auth_user.clone(),
        password: "wrong-password".into(),
        // containerd 1.6 ignores credentials whose server address does not parse as a
        // URL with this host, so leave it empty as for a single-registry secret.
        ..Default::default()
    };
    ImageService::pull_image(&client, &image, Some(&wrong), None)
        .await
        .expect_err("wrong password");

    let auth = RegistryAuth {
        password: env.auth_password.clone(),
        ..wrong
    };
    let image_ref = ImageService::pull_image(&client, &image, Some(&auth), None)
        .await
        .expect("pull with credentials");
    assert!(image_ref.starts_with("sha256:"));
    ImageService::remove_image(&client, &image)
        .await
        .expect("remove");
    assert_eq!(
        ImageService::image_status(&client, &image)
            .await
            .expect("status"),
        None
    );
}

#[tokio::test]
async fn runs_a_pod_with_containers_exec_logs_and_stats() {
    let Some(env) = test_env("runs_a_pod_with_containers_exec_logs_and_stats") else {
        return;
    };
    let client = client(&env);
    let _busybox = BUSYBOX.lock().await;
    ImageService::pull_image(&client, &env.busybox, None, None)
        .await
        .expect("pull busybox");
    let logs = tempfile::tempdir().expect("log root");
    let sandbox = sandbox_config(&unique("pod"), logs.path());
    let sandbox_id = Runtime::run_sandbox(&client, &sandbox)
        .await
        .expect("run sandbox");
    let outcome = tokio::spawn({
        let client = client.clone();
        let env_busybox = env.busybox.clone();
        let sandbox = sandbox.clone();
        let sandbox_id = sandbox_id.clone();
        async move { pod_scenario(&client, &env_busybox, &sandbox, &sandbox_id).await }
    })
    .await;
    remove_sandbox(&client, &sandbox_id).await;
    remove_pod_cgroup(&sandbox.linux.cgroup_parent);
    let err = Runtime::sandbox_status(&client, &sandbox_id)
        .await
        .expect_err("removed sandbox");
    assert!(err.is_not_found(), "{err}");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

async fn pod_scenario(client: &CriClient, image: &str, sandbox: &SandboxConfig, sandbox_id: &str) {
    let runtime: &dyn Runtime = client;

    // The sandbox is ready and has an IP from the CNI bridge network.
    let status = runtime
        .sandbox_status(sandbox_id)
        .await
        .expect("sandbox status");
    assert_eq!(status.sandbox.state, SandboxState::Ready);
    assert_eq!(status.sandbox.metadata, sandbox.metadata);
    let ip: std::net::Ipv4Addr = status.ip.parse().expect("an IPv4 pod IP");
    assert_eq!(
        ip.octets()[..2],
        [10, 88],
        "pod IP {ip} outside 10.88.0.0/16"
    );
    let listed = runtime
        .list_sandboxes(&SandboxFilter {
            labels: sandbox.labels.clone(),
            ..Default::default()
        })
        .await
        .expect("list sandboxes");
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [sandbox_id]
    );

    // A long-running container: create, start, exec, stats, stop, remove.
    let config = busybox(image, "sleeper", "echo started; exec sleep 3600");
    let id = runtime
        .create_container(sandbox_id, &config, sandbox)
        .await
        .expect("create");
    assert_eq!(
        runtime
            .container_status(&id)
            .await
            .expect("status")
            .container
            .state,
        ContainerState::Created
    );
    runtime.start_container(&id).await.expect("start");
    let running = wait_for_state(runtime, &id, ContainerState::Running).await;
    assert!(running.started_at > 0);
    assert_eq!(
        running.log_path,
        format!("{}/sleeper/0.log", sandbox.log_directory)
    );

    let exec = runtime
        .exec_sync(
            &id,
            &[
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            Duration::from_secs(10),
        )
        .await
        .expect("exec");
    assert_eq!(exec.stdout, b"out\n");
    assert_eq!(exec.stderr, b"err\n");
    assert_eq!(exec.exit_code, 3);
    let hostname = runtime
        .exec_sync(&id, &["hostname".into()], Duration::from_secs(10))
        .await
        .expect("exec hostname");
    assert_eq!(
        String::from_utf8_lossy(&hostname.stdout).trim(),
        sandbox.hostname
    );

    let stats = runtime.container_stats(&id).await.expect("stats");
    assert_eq!(stats.id, id);
    assert_eq!(stats.metadata.name, "sleeper");
    assert!(
        stats.memory_working_set_bytes.unwrap_or_default() > 0,
        "{stats:?}"
    );
    assert!(
        stats.cpu_usage_core_nano_seconds.unwrap_or_default() > 0,
        "{stats:?}"
    );
    let listed = runtime
        .list_container_stats(&ContainerFilter {
            sandbox_id: Some(sandbox_id.to_owned()),
            ..Default::default()
        })
        .await
        .expect("list stats");
    assert!(listed.iter().any(|s| s.id == id));

    let url = client
        .exec(kubelet_cri_client::proto::ExecRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into()],
            stdin: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .expect("exec url");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let attach = client
        .attach(kubelet_cri_client::proto::AttachRequest {
            container_id: id.clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .expect("attach url");
    assert!(attach.starts_with("http://127.0.0.1:"), "{attach}");
    let forward = client
        .port_forward(sandbox_id, vec![80])
        .await
        .expect("port-forward url");
    assert!(forward.starts_with("http://127.0.0.1:"), "{forward}");

    let pod_stats = client
        .pod_sandbox_stats(sandbox_id)
        .await
        .expect("pod stats");
    assert_eq!(
        pod_stats.attributes.as_ref().map(|a| a.id.as_str()),
        Some(sandbox_id)
    );
    let all_pod_stats = client
        .list_pod_sandbox_stats(None)
        .await
        .expect("list pod stats");
    assert!(
        all_pod_stats
            .iter()
            .any(|s| s.attributes.as_ref().is_some_and(|a| a.id == sandbox_id))
    );

    // Resources can change while the container runs; the runtime reports the new limit.
    client
        .update_container_resources(
            &id,
            Some(kubelet_cri_client::proto::LinuxContainerResources {
                cpu_shares: 512,
                memory_limit_in_bytes: 128 << 20,
                ..Default::default()
            }),
        )
        .await
        .expect("update resources");
    let verbose = client.container_status(&id, false).await.expect("status");
    let limit = verbose
        .status
        .and_then(|s| s.resources)
        .and_then(|r| r.linux)
        .map(|l| l.memory_limit_in_bytes);
    assert_eq!(limit, Some(128 << 20));

    // After the kubelet rotates a log file it asks the runtime to reopen it.
    let log_path = PathBuf::from(&running.log_path);
    std::fs::rename(&log_path, log_path.with_extension("log.1")).expect("rotate log");
    runtime.reopen_container_log(&id).await.expect("reopen log");
    assert!(
        log_path.exists(),
        "the runtime reopened {}",
        log_path.display()
    );

    runtime
        .stop_container(&id, Duration::from_secs(2))
        .await
        .expect("stop");
    let exited = runtime.container_status(&id).await.expect("status");
    assert_eq!(exited.container.state, ContainerState::Exited);
    // sleep ignores nothing: SIGTERM ends it (143) or the runtime kills it (137).
    assert!(
        [137, 143].contains(&exited.exit_code),
        "{}",
        exited.exit_code
    );

    // A container that writes to both streams and exits on its own.
    let config = busybox(image, "job", "echo hello; echo oops >&2; exit 7");
    let job = runtime
        .create_container(sandbox_id, &config, sandbox)
        .await
        .expect("create job");
    runtime.start_container(&job).await.expect("start job");
    let done = wait_for_state(runtime, &job, ContainerState::Exited).await;
    assert_eq!(done.exit_code, 7);
    assert_eq!(done.reason, "Error");
    // A process this short may be reaped before containerd records its start, so
    // only the presence of both times is certain.
    assert!(done.started_at > 0 && done.finished_at > 0, "{done:?}");
    let lines = read_cri_log(Path::new(&done.log_path));
    let streams: Vec<_> = lines
        .iter()
        .map(|l| (l.stream.as_str(), l.tag.as_str(), l.content.as_str()))
        .collect();
    assert!(streams.contains(&("stdout", "F", "hello")), "{streams:?}");
    assert!(streams.contains(&("stderr", "F", "oops")), "{streams:?}");

    let exited = runtime
        .list_containers(&ContainerFilter {
            sandbox_id: Some(sandbox_id.to_owned()),
            state: Some(ContainerState::Exited),
            ..Default::default()
        })
        .await
        .expect("list containers");
    let mut ids: Vec<_> = exited.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    let mut expected = vec![id.clone(), job.clone()];
    expected.sort();
    assert_eq!(ids, expected);

    for container in [&id, &job] {
        runtime.remove_container(container).await.expect("remove");
        let err = runtime
            .container_status(container)
            .await
            .expect_err("removed container");
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().starts_with("ContainerStatus "), "{err}");
    }
}

struct LogLine {
    stream: String,
    tag: String,
    content: String,
}

/// Parses the CRI log format: `<RFC 3339 time> <stdout|stderr> <F|P> <content>`.
fn read_cri_log(path: &Path) -> Vec<LogLine> {
    let text = std::fs::read_to_string(path).expect("container log");
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let time = parts.next().unwrap_or_default();
            assert!(
                time.len() >= 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z')
                    || time.contains('+'),
                "not an RFC 3339 time: {line:?}"
            );
            LogLine {
                stream: parts.next().unwrap_or_default().to_owned(),
                tag: parts.next().unwrap_or_default().to_owned(),
                content: parts.next().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

/// A second, private containerd on a socket of its own, so stopping it does not disturb
/// the shared one the other tests use.
struct PrivateContainerd {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
}

impl PrivateContainerd {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 [grpc]\n  address = \"{socket}\"\n\
                 [ttrpc]\n  address = \"{socket}.ttrpc\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\"]\n  restrict_oom_score_adj = true\n\
                 \x20 stream_server_port = \"0\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  conf_dir = \"{cni}\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                socket = socket.display(),
                cni = dir.join("cni").display(),
            ),
        )
        .expect("write config");
        let mut me = Self {
            child: None,
            dir: dir.to_owned(),
            socket,
        };
        me.spawn();
        me
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("containerd.log")).expect("log file");
        let child = Command::new(
            std::env::var("KUBELET_TEST_CONTAINERD").unwrap_or_else(|_| "containerd".into()),
        )
        .arg("--config")
        .arg(self.dir.join("config.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start containerd");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_until_serving(client: &CriClient, containerd: &PrivateContainerd) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.version().await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline && e.is_unavailable() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!(
                "private containerd did not come up: {e}\n{}",
                containerd.log()
            ),
        }
    }
}

#[tokio::test]
async fn a_stopped_runtime_is_unavailable_and_the_client_reconnects() {
    let Some(_env) = test_env("a_stopped_runtime_is_unavailable_and_the_client_reconnects") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("crid")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let mut containerd = PrivateContainerd::start(dir.path());
    let timeouts = Timeouts {
        request: Duration::from_secs(20),
        ..Timeouts::default()
    };
    let client = CriClient::new(&containerd.endpoint(), timeouts).expect("client");
    wait_until_serving(&client, &containerd).await;
    client.status(false).await.expect("status while running");

    containerd.stop();
    // Unavailable at once, not DeadlineExceeded after 20 s: a down runtime never hangs a
    // caller.
    let err = client.version().await.expect_err("containerd is stopped");
    match &err {
        Error::Unavailable { call, .. } => assert_eq!(*call, "Version"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let err = RuntimeInventory::list_sandboxes(&client, &SandboxFilter::default())
        .await
        .expect_err("still stopped");
    assert!(err.is_unavailable(), "{err}");

    containerd.spawn();
    // The same client (no new connect call) works again once the runtime is back.
    wait_until_serving(&client, &containerd).await;
    let version = RuntimeHealth::version(&client)
        .await
        .expect("version after restart");
    assert_eq!(version.runtime_name, "containerd");
}
