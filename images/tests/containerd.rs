//! Image garbage collection against a real containerd and the local registry of `cargo
//! xtask env up`: unused images go, an image a container uses and the pinned sandbox image
//! stay. Without that environment the test reports itself skipped, unless
//! `KUBELET_TEST_REQUIRE_ENV=1` makes a missing environment a failure.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kubelet_core::{
    ContainerConfig, ContainerMetadata, ImageService, NoEvents, Runtime, SandboxConfig,
    SandboxMetadata,
};
use kubelet_cri_client::{CriClient, TestEnv, Timeouts};
use kubelet_images::{ImageGc, ImageGcPolicy, RuntimeContainers, RuntimeImageFs};

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

async fn image_id(images: &dyn ImageService, name: &str) -> Option<String> {
    images
        .image_status(name)
        .await
        .expect("image status")
        .map(|i| i.id)
}

#[tokio::test]
async fn unused_images_are_removed_and_used_and_pinned_ones_kept() {
    let test = "unused_images_are_removed_and_used_and_pinned_ones_kept";
    let Some(env) = TestEnv::from_env(test) else {
        return;
    };
    let timeouts = Timeouts {
        request: Duration::from_secs(60),
        pull: Duration::from_secs(120),
        ..Timeouts::default()
    };
    let client = Arc::new(CriClient::new(&env.endpoint, timeouts).expect("client"));
    let runtime: &dyn Runtime = client.as_ref();
    let images: &dyn ImageService = client.as_ref();
    let victims = [
        format!("{}/busybox-gc:a", env.registry),
        format!("{}/busybox-gc:b", env.registry),
    ];
    for image in victims.iter().chain([&env.busybox]) {
        images.pull_image(image, None, None).await.expect("pull");
    }
    let pause = format!("{}/pause:3.10", env.registry);
    images
        .pull_image(&pause, None, None)
        .await
        .expect("pull pause");

    // containerd pins the sandbox image from 1.7 on; older ones pin nothing.
    let pinned: Vec<String> = images
        .list_images()
        .await
        .expect("list images")
        .into_iter()
        .filter(|i| i.pinned)
        .map(|i| i.id)
        .collect();

    // A container keeps busybox in use while GC runs.
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique("image-gc");
    let sandbox = SandboxConfig {
        metadata: SandboxMetadata {
            name: name.clone(),
            namespace: "image-gc-test".into(),
            uid: unique("uid"),
            attempt: 0,
        },
        hostname: "image-gc".into(),
        log_directory: dir.path().display().to_string(),
        ..SandboxConfig::default()
    };
    let sandbox_id = runtime.run_sandbox(&sandbox).await.expect("sandbox");
    let container = ContainerConfig {
        metadata: ContainerMetadata {
            name: "user".into(),
            attempt: 0,
        },
        image: env.busybox.clone(),
        command: vec!["sleep".into(), "600".into()],
        log_path: "user.log".into(),
        ..ContainerConfig::default()
    };
    let created = runtime
        .create_container(&sandbox_id, &container, &sandbox)
        .await;

    // Everything unused goes: usage above 1% must come down to 0%.
    let metrics = Arc::new(kubelet_core::metrics::kubelet::KubeletMetrics::new());
    let gc = ImageGc::new(
        client.clone(),
        Arc::new(RuntimeContainers(client.clone())),
        Arc::new(RuntimeImageFs::new(client.clone())),
        Arc::new(NoEvents),
        ImageGcPolicy {
            high_threshold_percent: 1,
            low_threshold_percent: 0,
            min_age: Duration::ZERO,
            max_age: Duration::ZERO,
        },
    )
    .with_metrics(metrics.clone());
    let outcome = gc.garbage_collect(Instant::now()).await;

    let busybox_left = image_id(images, &env.busybox).await;
    let left: Vec<String> = images
        .list_images()
        .await
        .expect("list images")
        .into_iter()
        .map(|i| i.id)
        .collect();
    // Later tests expect the sandbox image present, as the environment left it.
    if image_id(images, &pause).await.is_none() {
        images
            .pull_image(&pause, None, None)
            .await
            .expect("pull pause");
    }
    let victims_left = [
        image_id(images, &victims[0]).await,
        image_id(images, &victims[1]).await,
    ];
    if let Err(e) = runtime.stop_sandbox(&sandbox_id).await {
        eprintln!("cleanup: {e}");
    }
    if let Err(e) = runtime.remove_sandbox(&sandbox_id).await {
        eprintln!("cleanup: {e}");
    }
    created.expect("create the container using busybox");
    // Usage stays far above 0% (the disk holds more than images): GC reports that.
    assert!(
        matches!(outcome, Err(kubelet_images::Error::FreeDiskSpaceFailed(_))),
        "{outcome:?}"
    );
    assert_eq!(victims_left, [None, None], "the unused images were removed");
    assert!(busybox_left.is_some(), "busybox was in use");
    for id in &pinned {
        assert!(left.contains(id), "pinned image {id} was kept");
    }
    if pinned.is_empty() {
        eprintln!(
            "{test}: the runtime pins no image (containerd before 1.7): pinned images untested here"
        );
    }
    assert!(
        metrics
            .image_garbage_collected_total
            .value(&["space"])
            .unwrap_or(0.0)
            >= 2.0
    );
}
