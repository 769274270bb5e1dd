//! The real client against the in-process fake runtime: request building, error mapping
//! and deadlines, without a socket.

use std::sync::Arc;
use std::time::Duration;

use kubelet_core::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ImageService,
    RegistryAuth, Runtime, RuntimeErrorKind, RuntimeHealth, SandboxConfig, SandboxFilter,
    SandboxMetadata, SandboxState,
};
use kubelet_cri_client::{Error, FakeCriServer, FakeImage, Timeouts};

const BUSYBOX: &str = "localhost:5000/busybox:latest";

fn sandbox_config(name: &str) -> SandboxConfig {
    SandboxConfig {
        metadata: SandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        },
        hostname: name.into(),
        log_directory: format!("/var/log/pods/default_{name}_uid-{name}"),
        labels: [("app".to_owned(), name.to_owned())].into(),
        ..Default::default()
    }
}

fn container_config(name: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: BUSYBOX.into(),
        command: vec!["sleep".into(), "3600".into()],
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

#[tokio::test]
async fn pod_lifecycle_through_the_runtime_trait() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage::public(BUSYBOX));
    let client = fake.client(Timeouts::default());
    let runtime: Arc<dyn Runtime> = Arc::new(client.clone());
    let images: Arc<dyn ImageService> = Arc::new(client);

    let version = runtime.version().await.expect("version");
    assert_eq!(version.runtime_api_version, "v1");
    assert!(runtime.status().await.expect("status").network_ready());
    // The fake answers RuntimeConfig as a cgroupfs runtime.
    assert_eq!(
        runtime.cgroup_driver().await.expect("runtime config"),
        Some(kubelet_core::CgroupDriver::Cgroupfs)
    );

    assert_eq!(images.image_status(BUSYBOX).await.expect("status"), None);
    let image_ref = images.pull_image(BUSYBOX, None, None).await.expect("pull");
    assert!(image_ref.starts_with("sha256:"));
    let image = images.image_status(BUSYBOX).await.expect("status");
    assert_eq!(image.map(|i| i.id), Some(image_ref));

    let sandbox = sandbox_config("web");
    let sandbox_id = runtime.run_sandbox(&sandbox).await.expect("run sandbox");
    let status = runtime.sandbox_status(&sandbox_id).await.expect("status");
    assert_eq!(status.sandbox.state, SandboxState::Ready);
    assert_eq!(status.sandbox.metadata, sandbox.metadata);
    assert!(status.ip.starts_with("10.88."), "{}", status.ip);

    let listed = runtime
        .list_sandboxes(&SandboxFilter {
            labels: [("app".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, sandbox_id);

    let container_id = runtime
        .create_container(&sandbox_id, &container_config("app"), &sandbox)
        .await
        .expect("create");
    runtime.start_container(&container_id).await.expect("start");
    let status = runtime
        .container_status(&container_id)
        .await
        .expect("status");
    assert_eq!(status.container.state, ContainerState::Running);
    assert_eq!(
        status.log_path,
        "/var/log/pods/default_web_uid-web/app/0.log"
    );

    let exec = runtime
        .exec_sync(
            &container_id,
            &["echo".into(), "hi".into()],
            Duration::from_secs(5),
        )
        .await
        .expect("exec");
    assert_eq!(exec.stdout, b"echo hi");
    assert_eq!(exec.exit_code, 0);

    let stats = runtime.container_stats(&container_id).await.expect("stats");
    assert_eq!(stats.id, container_id);
    assert!(stats.memory_working_set_bytes.unwrap_or_default() > 0);

    runtime
        .stop_container(&container_id, Duration::from_secs(1))
        .await
        .expect("stop");
    let status = runtime
        .container_status(&container_id)
        .await
        .expect("status");
    assert_eq!(status.container.state, ContainerState::Exited);
    let listed = runtime
        .list_containers(&ContainerFilter {
            sandbox_id: Some(sandbox_id.clone()),
            state: Some(ContainerState::Exited),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);

    runtime
        .remove_container(&container_id)
        .await
        .expect("remove");
    let err = runtime
        .container_status(&container_id)
        .await
        .expect_err("removed");
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains(&container_id), "{err}");

    runtime
        .stop_sandbox(&sandbox_id)
        .await
        .expect("stop sandbox");
    runtime
        .remove_sandbox(&sandbox_id)
        .await
        .expect("remove sandbox");
    assert!(fake.sandbox_ids().is_empty());
    images.remove_image(BUSYBOX).await.expect("remove image");
    // Removing an absent image is not an error, as upstream.
    images.remove_image(BUSYBOX).await.expect("remove again");
}

#[tokio::test]
async fn pull_errors_name_the_image_and_auth_is_sent() {
    let fake = FakeCriServer::start();
    fake.add_registry_image(FakeImage {
        credentials: Some(("alice".into(), "secret".into())),
        ..FakeImage::public("localhost:5001/private:1")
    });
    let client = fake.client(Timeouts::default());

    let err = client
        .pull_image("localhost:5000/nope:1", None, None)
        .await
        .expect_err("absent image");
    assert!(err.is_not_found());
    assert!(
        err.to_string()
            .starts_with("PullImage localhost:5000/nope:1: not found"),
        "{err}"
    );

    let err = ImageService::pull_image(&client, "localhost:5001/private:1", None, None)
        .await
        .expect_err("no credentials");
    assert!(err.to_string().contains("401 Unauthorized"), "{err}");

    let auth = RegistryAuth {
        username: "alice".into(),
        password: "secret".into(),
        server_address: "localhost:5001".into(),
        ..Default::default()
    };
    ImageService::pull_image(&client, "localhost:5001/private:1", Some(&auth), None)
        .await
        .expect("pull with credentials");
}

#[tokio::test]
async fn a_hung_call_fails_with_its_deadline_and_others_still_work() {
    let fake = FakeCriServer::start();
    fake.delay("ListContainers", Duration::from_secs(3600));
    let client = fake.client(Timeouts {
        request: Duration::from_millis(200),
        ..Timeouts::default()
    });
    let err = client.list_containers(None).await.expect_err("hung");
    match err {
        Error::DeadlineExceeded { call, timeout, .. } => {
            assert_eq!(call, "ListContainers");
            assert_eq!(timeout, Duration::from_millis(200));
        }
        other => panic!("expected DeadlineExceeded, got {other}"),
    }
    // The connection is still usable for other calls.
    client.version().await.expect("version after a timeout");
}

#[tokio::test]
async fn injected_failures_map_to_typed_errors() {
    let fake = FakeCriServer::start();
    fake.fail_next("Version", tonic::Status::unavailable("connection reset"));
    fake.fail_next("Status", tonic::Status::internal("boom"));
    let client = fake.client(Timeouts::default());

    let err = RuntimeHealth::version(&client).await.expect_err("injected");
    assert_eq!(err.runtime_kind(), Some(RuntimeErrorKind::Unavailable));
    assert_eq!(
        err.to_string(),
        "Version -: runtime unavailable: connection reset"
    );

    let err = RuntimeHealth::status(&client).await.expect_err("injected");
    assert_eq!(err.runtime_kind(), Some(RuntimeErrorKind::Other));
    assert_eq!(err.to_string(), "Status -: failed: Internal: boom");

    // Failures are consumed: the next calls succeed.
    RuntimeHealth::version(&client).await.expect("version");
    RuntimeHealth::status(&client).await.expect("status");
    assert_eq!(
        fake.calls(),
        ["Version -", "Status -", "Version -", "Status -"]
    );
}

#[tokio::test]
async fn container_needs_its_image_and_a_ready_sandbox() {
    let fake = FakeCriServer::start();
    let client = fake.client(Timeouts::default());
    let sandbox = sandbox_config("db");
    let sandbox_id = Runtime::run_sandbox(&client, &sandbox).await.expect("run");
    let err = Runtime::create_container(&client, &sandbox_id, &container_config("db"), &sandbox)
        .await
        .expect_err("image not pulled");
    assert!(err.is_not_found(), "{err}");

    fake.add_local_image(BUSYBOX);
    Runtime::stop_sandbox(&client, &sandbox_id)
        .await
        .expect("stop");
    let err = Runtime::create_container(&client, &sandbox_id, &container_config("db"), &sandbox)
        .await
        .expect_err("sandbox stopped");
    assert_eq!(err.runtime_kind(), Some(RuntimeErrorKind::Other), "{err}");
}

#[tokio::test]
async fn exited_containers_report_exit_code_and_reason() {
    let fake = FakeCriServer::start();
    fake.add_local_image(BUSYBOX);
    let client = fake.client(Timeouts::default());
    let sandbox = sandbox_config("job");
    let sandbox_id = Runtime::run_sandbox(&client, &sandbox).await.expect("run");
    let id = Runtime::create_container(&client, &sandbox_id, &container_config("job"), &sandbox)
        .await
        .expect("create");
    Runtime::start_container(&client, &id).await.expect("start");
    assert!(fake.exit_container(&id, 3));
    let status = Runtime::container_status(&client, &id)
        .await
        .expect("status");
    assert_eq!(status.container.state, ContainerState::Exited);
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    assert!(status.finished_at >= status.started_at);
}

#[tokio::test]
async fn container_events_stream_through_the_runtime_trait() {
    use futures::StreamExt;
    use kubelet_core::ContainerEventKind;

    let fake = FakeCriServer::start();
    fake.add_local_image(BUSYBOX);
    let client = fake.client(Timeouts::default());
    // Like containerd, the fake answers the subscription only with the first event, so
    // subscribe in the background and wait until the server has the subscriber.
    let subscription = tokio::spawn({
        let client = client.clone();
        async move { Runtime::container_events(&client).await }
    });
    while !fake
        .calls()
        .iter()
        .any(|c| c.starts_with("GetContainerEvents"))
    {
        tokio::task::yield_now().await;
    }
    let sandbox = sandbox_config("evt");
    let sandbox_id = Runtime::run_sandbox(&client, &sandbox).await.expect("run");
    let id = Runtime::create_container(&client, &sandbox_id, &container_config("evt"), &sandbox)
        .await
        .expect("create");
    Runtime::start_container(&client, &id).await.expect("start");
    assert!(fake.exit_container(&id, 0));
    let mut events = subscription
        .await
        .expect("subscription task")
        .expect("event stream");
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let event = events
            .next()
            .await
            .expect("an event")
            .expect("not an error");
        assert_eq!(event.container_id, id);
        assert_eq!(
            event.sandbox_labels.get("app").map(String::as_str),
            Some("evt")
        );
        kinds.push(event.kind);
    }
    assert_eq!(
        kinds,
        [
            ContainerEventKind::Created,
            ContainerEventKind::Started,
            ContainerEventKind::Stopped
        ]
    );

    fake.set_events_supported(false);
    let err = Runtime::container_events(&client)
        .await
        .err()
        .expect("unimplemented");
    assert_eq!(
        err.runtime_kind(),
        Some(RuntimeErrorKind::Unimplemented),
        "{err}"
    );
}
