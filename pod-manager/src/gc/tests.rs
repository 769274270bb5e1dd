use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container as PodContainer, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::{
    Container, ContainerConfig, ContainerMetadata, ContainerState, Runtime, SandboxConfig,
    SandboxMetadata,
};
use kubelet_cri_client::{CriClient, FakeCriServer, Timeouts};

use super::*;
use crate::snapshot::pod_snapshot;

const IMAGE: &str = "localhost:5000/busybox:latest";

pub(crate) fn fake() -> (FakeCriServer, CriClient) {
    let fake = FakeCriServer::start();
    fake.add_local_image(IMAGE);
    let client = fake.client(Timeouts::default());
    (fake, client)
}

fn pod(uid: &str, containers: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: containers
                .iter()
                .map(|name| PodContainer {
                    name: (*name).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Sets `path`'s modification time `ago` in the past.
fn age(path: &Path, ago: Duration) {
    std::fs::File::open(path)
        .expect("open")
        .set_modified(SystemTime::now() - ago)
        .expect("set mtime");
}

#[test]
fn symlink_names_are_upstreams_and_fit_ext4() {
    let dir = Path::new("/var/log/containers");
    assert_eq!(
        log_symlink_path(dir, "web", "default", "app", "0123456789abcdef"),
        dir.join("web_default_app-0123456789abcdef.log")
    );
    // A 253-character pod name: the name is cut to 251 bytes, then the suffix.
    let long = "p".repeat(253);
    let id = "a".repeat(64);
    let path = log_symlink_path(dir, &long, "default", "app", &id);
    let name = path.file_name().and_then(|n| n.to_str()).expect("name");
    assert_eq!(name.len(), 255);
    assert_eq!(name, format!("{}.log", &long[..251]));
    // Cut where only part of the id fits: the prefix is still read back.
    let pod = "p".repeat(190);
    let path = log_symlink_path(dir, &pod, "default", "app", &id);
    let name = path.file_name().and_then(|n| n.to_str()).expect("name");
    assert_eq!(name.len(), 255);
    let prefix = container_id_from_symlink(name).expect("id prefix");
    assert!(
        id.starts_with(prefix) && prefix.len() < id.len(),
        "{prefix}"
    );
}

#[test]
fn container_ids_and_pod_uids_are_read_back_from_names() {
    assert_eq!(
        container_id_from_symlink("web-1_default_app-0123456789.log"),
        Some("0123456789")
    );
    assert_eq!(container_id_from_symlink("web_default_app-abc.log"), None);
    assert_eq!(
        container_id_from_symlink("web_default_app-0123456789"),
        None
    );
    assert_eq!(
        pod_uid_from_log_dir("default_web_1234-5678"),
        Some("1234-5678")
    );
    assert_eq!(pod_uid_from_log_dir("default_web_"), None);
    assert_eq!(pod_uid_from_log_dir("lost+found"), None);
    assert_eq!(pod_uid_from_log_dir("a_b_c_d"), None);
}

fn sandbox_config(log_directory: &Path) -> SandboxConfig {
    SandboxConfig {
        metadata: SandboxMetadata {
            name: "web".into(),
            namespace: "default".into(),
            uid: "uid-1".into(),
            attempt: 0,
        },
        log_directory: log_directory.display().to_string(),
        ..Default::default()
    }
}

fn container_config(name: &str, log_path: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        log_path: log_path.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_started_containers_log_is_linked_when_the_runtime_wrote_it() {
    let tmp = tempfile::tempdir().expect("dir");
    let links = tmp.path().join("containers");
    let pod_logs = tmp.path().join("pods/default_web_uid-1");
    std::fs::create_dir_all(pod_logs.join("app")).expect("mkdir");
    std::fs::write(pod_logs.join("app/0.log"), "hello\n").expect("log");
    let sandbox = sandbox_config(&pod_logs);

    create_log_symlink(
        &links,
        &sandbox,
        &container_config("app", "app/0.log"),
        "c0ffee01",
    )
    .await;
    let link = links.join("web_default_app-c0ffee01.log");
    assert_eq!(
        std::fs::read_link(&link).expect("symlink"),
        pod_logs.join("app/0.log")
    );
    assert_eq!(std::fs::read_to_string(&link).expect("read"), "hello\n");

    // No log file (a runtime logging elsewhere): no dangling link.
    create_log_symlink(
        &links,
        &sandbox,
        &container_config("side", "side/0.log"),
        "c0ffee02",
    )
    .await;
    assert!(
        std::fs::symlink_metadata(links.join("web_default_side-c0ffee02.log")).is_err(),
        "no link to a missing log"
    );

    // An empty directory setting makes no links at all.
    let unset = tmp.path().join("unset");
    create_log_symlink(
        Path::new(""),
        &sandbox,
        &container_config("app", "app/0.log"),
        "c0ffee03",
    )
    .await;
    assert!(!unset.exists());
    assert_eq!(std::fs::read_dir(&links).expect("links").count(), 1);
}

fn runtime_container(name: &str, id: &str) -> Container {
    Container {
        id: id.into(),
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        labels: [
            (POD_NAME_LABEL.to_owned(), "web".to_owned()),
            (POD_NAMESPACE_LABEL.to_owned(), "default".to_owned()),
            (CONTAINER_NAME_LABEL.to_owned(), name.to_owned()),
        ]
        .into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_removed_containers_symlink_goes_but_a_file_of_that_name_stays() {
    let tmp = tempfile::tempdir().expect("dir");
    let links = tmp.path();
    let log = links.join("target.log.data");
    std::fs::write(&log, "x").expect("log");
    let link = links.join("web_default_app-c0ffee01.log");
    std::os::unix::fs::symlink(&log, &link).expect("symlink");
    let other = links.join("web_default_app-c0ffee02.log");
    std::os::unix::fs::symlink(&log, &other).expect("symlink");
    let file = links.join("web_default_side-c0ffee03.log");
    std::fs::write(&file, "not a link").expect("file");

    remove_log_symlink(links, &runtime_container("app", "c0ffee01")).await;
    remove_log_symlink(links, &runtime_container("side", "c0ffee03")).await;
    // Without the kubelet's labels the name is unknown: nothing is touched.
    remove_log_symlink(
        links,
        &Container {
            id: "c0ffee02".into(),
            ..Default::default()
        },
    )
    .await;

    assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");
    assert!(std::fs::symlink_metadata(&other).is_ok(), "other link kept");
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "not a link");
    assert_eq!(std::fs::read_to_string(&log).expect("target"), "x");
}

#[tokio::test]
async fn dangling_symlinks_of_gone_or_exited_containers_are_removed() {
    let (fake, client) = fake();
    let (_, containers) = FakeCriServer::run_pod(&client, &pod("uid-1", &["run", "done"]), IMAGE)
        .await
        .expect("run pod");
    let id = |name: &str| {
        containers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
            .expect("container")
    };
    assert!(fake.exit_container(&id("done"), 0));

    let tmp = tempfile::tempdir().expect("dir");
    let links = tmp.path().join("containers");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&links).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("kept.log"), "outside").expect("file");
    let gone = tmp.path().join("gone.log");
    let link = |name: &str, target: &Path| {
        let path = links.join(name);
        std::os::unix::fs::symlink(target, &path).expect("symlink");
        path
    };
    // A running container's log can be missing while it is rotated.
    let running = link(&format!("web_default_run-{}.log", id("run")), &gone);
    let exited = link(&format!("web_default_done-{}.log", id("done")), &gone);
    let unknown = link("web_default_old-0123456789abcdef.log", &gone);
    let unparsable = link("web_default_old.log", &gone);
    let alive = link(
        "web_default_live-0123456789abcdee.log",
        &outside.join("kept.log"),
    );
    let to_dir = link("web_default_dir-0123456789abcded.log", &outside);
    let not_log = link("web_default_old-0123456789abcdec.txt", &gone);
    let file = links.join("web_default_file-0123456789abcdeb.log");
    std::fs::write(&file, "regular").expect("file");

    remove_dangling_log_symlinks(&client, &links).await;

    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    assert!(exists(&running), "running container's link kept");
    assert!(!exists(&exited), "exited container's dangling link removed");
    assert!(
        !exists(&unknown),
        "unknown container's dangling link removed"
    );
    assert!(!exists(&unparsable), "link without an id removed");
    assert!(exists(&alive), "link to an existing log kept");
    assert!(exists(&to_dir), "link to a directory kept");
    assert!(exists(&not_log), "only *.log names are looked at");
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "regular");
    assert_eq!(
        std::fs::read_to_string(outside.join("kept.log")).expect("outside"),
        "outside"
    );
    // A missing or unset directory is nothing to do.
    remove_dangling_log_symlinks(&client, &tmp.path().join("missing")).await;
    remove_dangling_log_symlinks(&client, Path::new("")).await;
}

#[tokio::test]
async fn orphaned_pod_log_dirs_are_removed_without_following_symlinks() {
    let tmp = tempfile::tempdir().expect("dir");
    let root = tmp.path().join("pods");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("precious"), "keep").expect("file");
    let pod_dir = |name: &str| {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("app")).expect("mkdir");
        std::fs::write(dir.join("app/0.log"), "log").expect("log");
        dir
    };
    let orphan = pod_dir("default_gone_uid-gone");
    // A symlink inside is unlinked, never followed.
    std::os::unix::fs::symlink(&outside, orphan.join("app/escape")).expect("symlink");
    let known = pod_dir("default_web_uid-known");
    let fresh = pod_dir("default_new_uid-new");
    let other = pod_dir("not-a-pod-dir");
    let linked = root.join("default_link_uid-link");
    std::os::unix::fs::symlink(&outside, &linked).expect("symlink");
    let file = root.join("default_file_uid-file");
    std::fs::write(&file, "file").expect("file");
    for dir in [&orphan, &known, &other] {
        age(dir, Duration::from_secs(3600));
    }

    let known_uids: HashSet<String> = ["uid-known".to_owned()].into();
    remove_orphaned_pod_log_dirs(&root, &known_uids).await;

    assert!(!orphan.exists(), "orphan removed");
    assert!(known.join("app/0.log").exists(), "known pod kept");
    assert!(
        fresh.join("app/0.log").exists(),
        "a just-made directory is kept"
    );
    assert!(other.exists(), "a directory not named like a pod's is kept");
    assert!(std::fs::symlink_metadata(&linked).is_ok(), "symlink kept");
    assert!(file.exists(), "file kept");
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).expect("outside"),
        "keep"
    );

    // Once old enough, the fresh one goes too.
    age(&fresh, Duration::from_secs(3600));
    remove_orphaned_pod_log_dirs(&root, &known_uids).await;
    assert!(!fresh.exists());
    remove_orphaned_pod_log_dirs(&tmp.path().join("missing"), &known_uids).await;
}

#[tokio::test]
async fn a_pod_log_dir_with_a_mount_in_it_is_kept() {
    const TEST: &str = "a_pod_log_dir_with_a_mount_in_it_is_kept";
    if !nix::unistd::geteuid().is_root() {
        kubelet_test_support::skip(TEST, "mounting needs root");
        return;
    }
    let tmp = tempfile::tempdir().expect("dir");
    let root = tmp.path().join("pods");
    let orphan = root.join("default_gone_uid-gone");
    let mount = orphan.join("app");
    std::fs::create_dir_all(&mount).expect("mkdir");
    std::fs::write(orphan.join("other.log"), "log").expect("log");
    let mounted = mount.clone();
    tokio::task::spawn_blocking(move || {
        nix::mount::mount(
            Some("tmpfs"),
            &mounted,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
    })
    .await
    .expect("join")
    .expect("mount tmpfs");
    std::fs::write(mount.join("0.log"), "on tmpfs").expect("log");
    age(&orphan, Duration::from_secs(3600));

    remove_orphaned_pod_log_dirs(&root, &HashSet::new()).await;
    let kept = (
        orphan.join("other.log").exists(),
        mount.join("0.log").exists(),
    );
    let unmounting = mount.clone();
    tokio::task::spawn_blocking(move || {
        nix::mount::umount2(&unmounting, nix::mount::MntFlags::MNT_DETACH)
    })
    .await
    .expect("join")
    .expect("unmount");
    assert_eq!(kept, (true, true), "nothing removed through a mount point");

    // Unmounted, it goes.
    age(&orphan, Duration::from_secs(3600));
    remove_orphaned_pod_log_dirs(&root, &HashSet::new()).await;
    assert!(!orphan.exists());
}

/// Runs attempt `attempt` of the pod `uid`'s sandbox, with a running container `app`
/// when `with_container`, labelled as the kubelet labels them.
/// A sandbox of pod `uid` (its container `app` made and started when `with_container`):
/// their ids.
pub(crate) async fn run_sandbox(
    client: &CriClient,
    uid: &str,
    attempt: u32,
    with_container: bool,
) -> (String, Option<String>) {
    let pod = pod(uid, &["app"]);
    let sandbox = SandboxConfig {
        metadata: SandboxMetadata {
            name: "web".into(),
            namespace: "default".into(),
            uid: uid.into(),
            attempt,
        },
        labels: kubelet_core::labels::sandbox_labels(&pod),
        ..Default::default()
    };
    let id = Runtime::run_sandbox(client, &sandbox)
        .await
        .expect("sandbox");
    if !with_container {
        return (id, None);
    }
    let spec = &pod.spec.as_ref().expect("spec").containers[0];
    let config = ContainerConfig {
        metadata: ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        },
        image: IMAGE.into(),
        labels: kubelet_core::labels::container_labels(spec, &pod),
        ..Default::default()
    };
    let container = Runtime::create_container(client, &id, &config, &sandbox)
        .await
        .expect("container");
    Runtime::start_container(client, &container)
        .await
        .expect("start");
    (id, Some(container))
}

#[tokio::test]
async fn only_empty_dead_sandboxes_older_than_the_newest_are_removed() {
    let (fake, client) = fake();
    let uid = "uid-1";
    // Oldest first: A dead and empty, B dead with an exited container, C ready and
    // empty, D (newest) dead and empty.
    let a = run_sandbox(&client, uid, 0, false).await.0;
    let (b, b_app) = run_sandbox(&client, uid, 1, true).await;
    let c = run_sandbox(&client, uid, 2, false).await.0;
    let d = run_sandbox(&client, uid, 3, false).await.0;
    let b_app = b_app.expect("B's container");
    Runtime::stop_container(&client, &b_app, Duration::from_secs(1))
        .await
        .expect("stop");
    for id in [&a, &b, &d] {
        Runtime::stop_sandbox(&client, id).await.expect("stop");
    }
    let snapshot = pod_snapshot(&client, uid).await.expect("snapshot");
    assert_eq!(snapshot.latest_sandbox().map(|s| &s.sandbox.id), Some(&d));
    assert_eq!(
        snapshot.containers[0].container.state,
        ContainerState::Exited
    );

    // B's container is claimed removed, but the runtime still has it: B stays.
    let removed: HashSet<&str> = [b_app.as_str()].into();
    remove_dead_sandboxes(&client, &snapshot, &removed).await;

    let mut left = fake.sandbox_ids();
    left.sort();
    let mut want = vec![b.clone(), c.clone(), d.clone()];
    want.sort();
    assert_eq!(left, want);
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| c == &format!("RemovePodSandbox {b}")),
        "{:?}",
        fake.calls()
    );

    // Once its container is gone, B goes too.
    Runtime::remove_container(&client, &b_app)
        .await
        .expect("remove");
    let snapshot = pod_snapshot(&client, uid).await.expect("snapshot");
    remove_dead_sandboxes(&client, &snapshot, &HashSet::new()).await;
    let mut left = fake.sandbox_ids();
    left.sort();
    let mut want = vec![c, d];
    want.sort();
    assert_eq!(left, want);
}

/// An exited instance (`attempt`) of container `app` of `uid`'s pod in `sandbox`.
async fn exited_instance(client: &CriClient, uid: &str, sandbox: &str, attempt: u32) -> String {
    let pod = pod(uid, &["app"]);
    let spec = &pod.spec.as_ref().expect("spec").containers[0];
    let config = ContainerConfig {
        metadata: ContainerMetadata {
            name: "app".into(),
            attempt,
        },
        image: IMAGE.into(),
        labels: kubelet_core::labels::container_labels(spec, &pod),
        ..Default::default()
    };
    let sandbox_config = SandboxConfig::default();
    let id = Runtime::create_container(client, sandbox, &config, &sandbox_config)
        .await
        .expect("container");
    Runtime::start_container(client, &id).await.expect("start");
    Runtime::stop_container(client, &id, Duration::from_secs(1))
        .await
        .expect("stop");
    id
}

#[tokio::test]
async fn the_node_wide_dead_container_limit_keeps_a_share_per_container_then_the_newest() {
    let (fake, client) = fake();
    let links = tempfile::tempdir().expect("dir");
    let (a_sandbox, _) = run_sandbox(&client, "uid-a", 0, false).await;
    let (b_sandbox, _) = run_sandbox(&client, "uid-b", 0, false).await;
    let mut a = Vec::new();
    for attempt in 0..3 {
        a.push(exited_instance(&client, "uid-a", &a_sandbox, attempt).await);
    }
    let b = exited_instance(&client, "uid-b", &b_sandbox, 0).await;
    let policy = |min_age, max_containers| ContainerGcPolicy {
        min_age,
        max_containers,
        ..ContainerGcPolicy::default()
    };
    let now = SystemTime::now();

    // No limit, or under it: nothing goes.
    for max in [-1, 4] {
        assert_eq!(
            enforce_max_containers(&client, links.path(), policy(Duration::ZERO, max), now).await,
            0
        );
    }
    // Too young to be collected.
    let hour = Duration::from_secs(3600);
    assert_eq!(
        enforce_max_containers(&client, links.path(), policy(hour, 0), now).await,
        0
    );
    // Two for two containers: each keeps its newest.
    assert_eq!(
        enforce_max_containers(&client, links.path(), policy(Duration::ZERO, 2), now).await,
        2
    );
    let mut left = fake.container_ids();
    left.sort();
    let mut want = vec![a[2].clone(), b.clone()];
    want.sort();
    assert_eq!(left, want);
    // One for two: the oldest of the shares goes.
    assert_eq!(
        enforce_max_containers(&client, links.path(), policy(Duration::ZERO, 1), now).await,
        1
    );
    assert_eq!(fake.container_ids(), vec![b]);
}

#[test]
fn the_default_policy_is_upstreams() {
    let policy = ContainerGcPolicy::default();
    assert_eq!(policy.kept_per_container(), Some(1));
    assert_eq!(policy.max_containers, -1);
    let now = SystemTime::now();
    let nanos = |t: SystemTime| {
        i64::try_from(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .expect("after the epoch")
                .as_nanos(),
        )
        .expect("fits")
    };
    assert!(policy.old_enough(nanos(now), now));
    let ten_minutes = ContainerGcPolicy {
        min_age: Duration::from_secs(600),
        max_per_pod_container: -1,
        ..policy
    };
    assert_eq!(ten_minutes.kept_per_container(), None);
    assert!(!ten_minutes.old_enough(nanos(now - Duration::from_secs(60)), now));
    assert!(ten_minutes.old_enough(nanos(now - Duration::from_secs(601)), now));
}
