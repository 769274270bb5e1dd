//! End-to-end tests of the volume manager on temporary directories, with an in-memory
//! `VolumeSources`. Tests that mount (tmpfs, bind mounts) need root and say SKIPPED
//! otherwise; every mount is undone by the test or, if it fails, by the test directory
//! (`kubelet_test_support::TestDir`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, Container, DownwardAPIProjection,
    DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
    KeyToPath, ObjectFieldSelector, Pod, PodSecurityContext, ProjectedVolumeSource,
    SecretVolumeSource, SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use kubelet_core::{Mount, MountPropagation};

use crate::testing::{FakeClock, FakeSources, can_mount, mounted_under, pod as bare_pod};
use crate::{Error, VolumeManager};

const START: Duration = Duration::from_secs(1_000_000);

struct Env {
    _root: kubelet_test_support::TestDir,
    root: PathBuf,
    pods_dir: PathBuf,
    sources: Arc<FakeSources>,
    clock: Arc<FakeClock>,
    manager: VolumeManager,
}

impl Env {
    fn new() -> Self {
        let root_dir = kubelet_test_support::TestDir::new();
        let root = fs::canonicalize(root_dir.path()).expect("canonical tempdir");
        let pods_dir = root.join("pods");
        let sources = Arc::new(FakeSources::default());
        let clock = Arc::new(FakeClock::new(SystemTime::UNIX_EPOCH + START));
        sources.set_now(SystemTime::UNIX_EPOCH + START);
        let manager = VolumeManager::with_clock(pods_dir.clone(), sources.clone(), clock.clone());
        Self {
            _root: root_dir,
            root,
            pods_dir,
            sources,
            clock,
            manager,
        }
    }

    /// Moves the time of the token manager and of the fake token issuer.
    fn set_time(&self, since_start: Duration) {
        let now = SystemTime::UNIX_EPOCH + START + since_start;
        self.clock.set(now);
        self.sources.set_now(now);
    }

    /// A second manager on the same directory, as after a kubelet restart.
    fn restarted(&self) -> VolumeManager {
        VolumeManager::with_clock(
            self.pods_dir.clone(),
            self.sources.clone(),
            self.clock.clone(),
        )
    }

    fn volume_dir(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pods_dir
            .join(uid)
            .join("volumes")
            .join(plugin)
            .join(name)
    }
}

fn pod_with(uid: &str, volumes: Vec<Volume>, containers: Vec<Container>) -> Pod {
    let mut pod = bare_pod("web", uid);
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = Some(volumes);
        spec.containers = containers;
    }
    pod
}

fn container(name: &str, mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: name.into(),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn sub_mount(name: &str, path: &str, sub_path: &str) -> VolumeMount {
    VolumeMount {
        sub_path: Some(sub_path.into()),
        ..mount(name, path)
    }
}

fn empty_dir(name: &str, medium: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_owned),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn config_map_volume(name: &str, config_map: &str, optional: Option<bool>) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            optional,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: &str, optional: Option<bool>) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            optional,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn host_path_volume(name: &str, path: &Path, type_: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.display().to_string(),
            type_: Some(type_.into()),
        }),
        ..Default::default()
    }
}

/// The volume every pod gets from the ServiceAccount admission plugin.
fn kube_api_access() -> Volume {
    Volume {
        name: "kube-api-access-x7z2q".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        expiration_seconds: Some(3607),
                        path: "token".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".into()),
                                field_path: "metadata.namespace".into(),
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn data_target(dir: &Path) -> PathBuf {
    fs::read_link(dir.join("..data")).expect("..data symlink")
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[tokio::test]
async fn config_map_volume_follows_its_source() {
    let env = Env::new();
    env.sources
        .put_config_map("default", "cfg", &[("a", "1"), ("b", "2")]);
    let pod = pod_with("u1", vec![config_map_volume("config", "cfg", None)], vec![]);

    let volumes = env.manager.set_up_pod(&pod).await.expect("set up");
    let dir = env.volume_dir("u1", "kubernetes.io~configmap", "config");
    let mounted = volumes.get("config").expect("volume");
    assert_eq!(mounted.host_path, dir);
    assert!(mounted.read_only);
    assert_eq!(
        names(&dir),
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(
        fs::read_link(dir.join("a")).expect("link"),
        Path::new("..data/a")
    );
    assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "1");
    assert_eq!(mode(&dir.join("a")), 0o644);
    let first = data_target(&dir);

    // Unchanged: nothing rewritten.
    env.manager.set_up_pod(&pod).await.expect("again");
    assert_eq!(data_target(&dir), first);

    // Changed: a new payload directory swapped in, removed keys gone, old data gone.
    env.sources
        .put_config_map("default", "cfg", &[("a", "changed"), ("c", "3")]);
    env.manager.set_up_pod(&pod).await.expect("update");
    let second = data_target(&dir);
    assert_ne!(second, first);
    assert!(!dir.join(&first).exists());
    assert_eq!(
        names(&dir),
        BTreeSet::from(["a".to_owned(), "c".to_owned()])
    );
    assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "changed");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_contents_in_use() {
    let env = Env::new();
    env.sources.put_config_map("default", "cfg", &[("a", "1")]);
    let pod = pod_with("u1", vec![config_map_volume("config", "cfg", None)], vec![]);
    let first = env.manager.set_up_pod(&pod).await.expect("set up");
    assert!(first.refresh_failures().is_empty());
    let dir = env.volume_dir("u1", "kubernetes.io~configmap", "config");

    // The API server goes away: the running pod keeps its volume (and so can restart
    // its containers), the failure is reported for the FailedMount event.
    env.sources.set_unavailable(true);
    let volumes = env.manager.set_up_pod(&pod).await.expect("still usable");
    assert_eq!(volumes.get("config"), first.get("config"));
    assert_eq!(
        volumes.refresh_failures(),
        ["MountVolume.SetUp failed for volume \"config\" : invalid source: API server unavailable"]
    );
    assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "1");
    // A volume never set up still fails the pod.
    let other = pod_with("u2", vec![config_map_volume("config", "cfg", None)], vec![]);
    env.manager
        .set_up_pod(&other)
        .await
        .expect_err("never set up");
    env.sources.set_unavailable(false);
    // The failed plugin is not asked again before its backoff (500 ms) is over: the
    // failure is reported again without a new attempt.
    let volumes = env.manager.set_up_pod(&pod).await.expect("still usable");
    assert_eq!(
        volumes.refresh_failures().len(),
        1,
        "backing off: {volumes:?}"
    );
    env.set_time(Duration::from_secs(1));

    // A write that fails (here a path leaving the volume) leaves the live volume as it
    // was instead of tearing it down under the containers.
    let mut escaping = pod.clone();
    if let Some(cm) = escaping
        .spec
        .as_mut()
        .and_then(|s| s.volumes.as_mut())
        .and_then(|v| v[0].config_map.as_mut())
    {
        cm.items = Some(vec![KeyToPath {
            key: "a".into(),
            path: "../escape".into(),
            ..Default::default()
        }]);
    }
    let volumes = env
        .manager
        .set_up_pod(&escaping)
        .await
        .expect("still usable");
    assert_eq!(volumes.refresh_failures().len(), 1, "{volumes:?}");
    assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "1");
    assert!(!env.pods_dir.join("u1/volumes/escape").exists());

    // Back to normal (once the doubled backoff is over): no failure, contents follow
    // the source again.
    env.sources.put_config_map("default", "cfg", &[("a", "2")]);
    env.set_time(Duration::from_secs(3));
    let volumes = env.manager.set_up_pod(&pod).await.expect("refreshed");
    assert!(volumes.refresh_failures().is_empty());
    assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "2");
}

#[tokio::test]
async fn missing_objects_fail_unless_optional_and_other_volumes_still_set_up() {
    let env = Env::new();
    let pod = pod_with(
        "u1",
        vec![
            config_map_volume("cfg", "foo", None),
            secret_volume("opt", "absent", Some(true)),
            secret_volume("sec", "s", None),
            empty_dir("scratch", None),
        ],
        vec![],
    );
    if !can_mount("missing_objects_fail_unless_optional") {
        return;
    }
    let err = env
        .manager
        .set_up_pod(&pod)
        .await
        .expect_err("missing configmap");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"foo\" not found"
    );
    assert!(matches!(&err, Error::SetUp { volume, .. } if volume == "cfg"));
    // The optional secret is an empty volume; the emptyDir was set up too.
    let optional = env.volume_dir("u1", "kubernetes.io~secret", "opt");
    assert!(optional.join("..data").exists());
    assert!(names(&optional).is_empty());
    assert!(
        env.volume_dir("u1", "kubernetes.io~empty-dir", "scratch")
            .is_dir()
    );
    // Nothing was created for the missing configMap.
    assert!(
        !env.volume_dir("u1", "kubernetes.io~configmap", "cfg")
            .exists()
    );

    env.sources.put_config_map("default", "foo", &[("k", "v")]);
    env.set_time(Duration::from_secs(1));
    let err = env
        .manager
        .set_up_pod(&pod)
        .await
        .expect_err("missing secret");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"sec\" : secret \"s\" not found"
    );
    env.sources
        .put_secret("default", "s", &[("password", "hunter2")]);
    env.set_time(Duration::from_secs(3));
    let volumes = env.manager.set_up_pod(&pod).await.expect("all there");
    assert_eq!(volumes.len(), 4);
    let secret_dir = env.volume_dir("u1", "kubernetes.io~secret", "sec");
    assert_eq!(
        fs::read_to_string(secret_dir.join("password")).expect("secret"),
        "hunter2"
    );
    env.manager.tear_down_pod("u1").await.expect("tear down");
    assert!(mounted_under(&env.root).is_empty());
}

#[tokio::test]
async fn unavailable_sources_fail_with_their_error_even_when_optional() {
    let env = Env::new();
    env.sources.set_unavailable(true);
    let pod = pod_with(
        "u1",
        vec![config_map_volume("cfg", "foo", Some(true))],
        vec![],
    );
    let err = env.manager.set_up_pod(&pod).await.expect_err("unavailable");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : invalid source: API server unavailable"
    );
}

#[tokio::test]
async fn missing_config_map_key_is_reported() {
    let env = Env::new();
    env.sources.put_config_map("default", "cfg", &[("a", "1")]);
    let mut volume = config_map_volume("cfg", "cfg", None);
    if let Some(source) = volume.config_map.as_mut() {
        source.items = Some(vec![KeyToPath {
            key: "x".into(),
            path: "x".into(),
            ..Default::default()
        }]);
    }
    let pod = pod_with("u1", vec![volume], vec![]);
    let err = env.manager.set_up_pod(&pod).await.expect_err("missing key");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: x"
    );
}

#[tokio::test]
async fn host_path_type_errors_are_upstreams() {
    let env = Env::new();
    let file = env.root.join("file");
    fs::write(&file, b"x").expect("write");
    let pod = pod_with(
        "u1",
        vec![host_path_volume("h", &file, "Directory")],
        vec![],
    );
    let err = env
        .manager
        .set_up_pod(&pod)
        .await
        .expect_err("not a directory");
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory, it's a File",
            file.display()
        )
    );
    let created = env.root.join("made/here");
    let pod = pod_with(
        "u2",
        vec![host_path_volume("h", &created, "DirectoryOrCreate")],
        vec![],
    );
    let volumes = env.manager.set_up_pod(&pod).await.expect("created");
    assert_eq!(volumes.get("h").expect("h").host_path, created);
    assert!(created.is_dir());
    // hostPath has no directory of its own.
    assert!(
        !env.pods_dir
            .join("u2/volumes/kubernetes.io~host-path")
            .exists()
    );
}

#[tokio::test]
async fn downward_api_volume_follows_label_changes() {
    let env = Env::new();
    let volume = Volume {
        name: "info".into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![
                DownwardAPIVolumeFile {
                    path: "labels".into(),
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: "metadata.labels".into(),
                    }),
                    ..Default::default()
                },
                DownwardAPIVolumeFile {
                    path: "uid".into(),
                    mode: Some(0o400),
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: "metadata.uid".into(),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    if !can_mount("downward_api_volume_follows_label_changes") {
        return;
    }
    let mut pod = pod_with("u1", vec![volume], vec![]);
    pod.metadata.labels = Some(BTreeMap::from([("app".into(), "web".into())]));
    env.manager.set_up_pod(&pod).await.expect("set up");
    let dir = env.volume_dir("u1", "kubernetes.io~downward-api", "info");
    assert_eq!(
        fs::read_to_string(dir.join("labels")).expect("labels"),
        "app=\"web\""
    );
    assert_eq!(fs::read_to_string(dir.join("uid")).expect("uid"), "u1");
    assert_eq!(mode(&dir.join("uid")), 0o400);
    pod.metadata.labels = Some(BTreeMap::from([
        ("app".into(), "web".into()),
        ("tier".into(), "front".into()),
    ]));
    env.manager.set_up_pod(&pod).await.expect("update");
    assert_eq!(
        fs::read_to_string(dir.join("labels")).expect("labels"),
        "app=\"web\"\ntier=\"front\""
    );
    env.manager.tear_down_pod("u1").await.expect("tear down");
}

#[tokio::test]
async fn kube_api_access_volume_has_token_ca_and_namespace_and_refreshes_the_token() {
    let env = Env::new();
    if !can_mount("kube_api_access_volume") {
        return;
    }
    env.sources
        .put_config_map("default", "kube-root-ca.crt", &[("ca.crt", "CA")]);
    let pod = pod_with("u1", vec![kube_api_access()], vec![]);
    env.manager.set_up_pod(&pod).await.expect("set up");
    let dir = env.volume_dir("u1", "kubernetes.io~projected", "kube-api-access-x7z2q");
    assert_eq!(
        names(&dir),
        BTreeSet::from([
            "ca.crt".to_owned(),
            "namespace".to_owned(),
            "token".to_owned()
        ])
    );
    assert_eq!(fs::read_to_string(dir.join("ca.crt")).expect("ca"), "CA");
    assert_eq!(
        fs::read_to_string(dir.join("namespace")).expect("ns"),
        "default"
    );
    let token = fs::read_to_string(dir.join("token")).expect("token");
    assert_eq!(token, "token-1-web-api");
    // Without fsGroup or a common runAsUser the token keeps the default mode.
    assert_eq!(mode(&dir.join("token")), 0o644);
    assert_eq!(
        sys_mount_type(&dir).as_deref(),
        Some("tmpfs"),
        "projected volumes are on tmpfs"
    );

    // 3607 s tokens are refreshed once less than 20% of their lifetime (721 s, in whole
    // seconds as upstream) is left: after 2886 s, not before.
    env.set_time(Duration::from_secs(2886));
    env.manager.set_up_pod(&pod).await.expect("not yet");
    assert_eq!(env.sources.token_requests(), 1);
    let first_payload = data_target(&dir);
    env.set_time(Duration::from_secs(2887));
    env.manager.set_up_pod(&pod).await.expect("refresh");
    assert_eq!(env.sources.token_requests(), 2);
    assert_ne!(data_target(&dir), first_payload, "new token, new payload");
    // The new token is good for another 2886 s.
    env.set_time(Duration::from_secs(2887 + 2886));
    env.manager.set_up_pod(&pod).await.expect("cached");
    assert_eq!(env.sources.token_requests(), 2);
    assert_eq!(
        fs::read_to_string(dir.join("token")).expect("token"),
        "token-2-web-api"
    );

    env.manager.tear_down_pod("u1").await.expect("tear down");
    assert_eq!(
        env.manager.tokens().cached(),
        0,
        "tokens forgotten with the pod"
    );
    assert!(mounted_under(&env.root).is_empty());
}

fn sys_mount_type(dir: &Path) -> Option<String> {
    crate::sys::mount_at(dir)
        .expect("mountinfo")
        .map(|m| m.fs_type)
}

#[tokio::test]
async fn token_of_a_pod_with_run_as_user_is_0600_and_owned_by_it() {
    let env = Env::new();
    if !can_mount("token_of_a_pod_with_run_as_user") {
        return;
    }
    env.sources
        .put_config_map("default", "kube-root-ca.crt", &[("ca.crt", "CA")]);
    let mut pod = pod_with(
        "u1",
        vec![kube_api_access()],
        vec![container("app", vec![])],
    );
    if let Some(spec) = pod.spec.as_mut() {
        spec.security_context = Some(PodSecurityContext {
            run_as_user: Some(1001),
            ..Default::default()
        });
    }
    env.manager.set_up_pod(&pod).await.expect("set up");
    let dir = env.volume_dir("u1", "kubernetes.io~projected", "kube-api-access-x7z2q");
    let token = fs::metadata(dir.join("token")).expect("token");
    assert_eq!(token.permissions().mode() & 0o777, 0o600);
    assert_eq!(token.uid(), 1001);
    assert_eq!(
        fs::symlink_metadata(dir.join("token")).expect("link").uid(),
        1001
    );
    assert_eq!(mode(&dir.join("ca.crt")), 0o644);
    env.manager.tear_down_pod("u1").await.expect("tear down");
}

#[tokio::test]
async fn fs_group_owns_configmap_files_and_opens_the_token_to_the_group() {
    let env = Env::new();
    if !can_mount("fs_group_owns_configmap_files") {
        return;
    }
    env.sources.put_config_map("default", "cfg", &[("a", "1")]);
    env.sources
        .put_config_map("default", "kube-root-ca.crt", &[("ca.crt", "CA")]);
    let mut pod = pod_with(
        "u1",
        vec![
            config_map_volume("cfg", "cfg", None),
            kube_api_access(),
            empty_dir("scratch", None),
        ],
        vec![],
    );
    if let Some(spec) = pod.spec.as_mut() {
        spec.security_context = Some(PodSecurityContext {
            fs_group: Some(2000),
            ..Default::default()
        });
    }
    env.manager.set_up_pod(&pod).await.expect("set up");
    let cfg = env.volume_dir("u1", "kubernetes.io~configmap", "cfg");
    let file = fs::metadata(cfg.join("a")).expect("a");
    assert_eq!(file.gid(), 2000);
    assert_eq!(file.permissions().mode() & 0o777, 0o644);
    let payload_dir = cfg.join(data_target(&cfg));
    assert_eq!(fs::metadata(&payload_dir).expect("dir").gid(), 2000);
    assert_eq!(mode(&payload_dir) & 0o2000, 0o2000, "setgid directories");
    let token = env
        .volume_dir("u1", "kubernetes.io~projected", "kube-api-access-x7z2q")
        .join("token");
    assert_eq!(mode(&token), 0o640, "0600 plus group read");
    assert_eq!(fs::metadata(&token).expect("token").gid(), 2000);
    let scratch = env.volume_dir("u1", "kubernetes.io~empty-dir", "scratch");
    assert_eq!(fs::metadata(&scratch).expect("scratch").gid(), 2000);
    assert_eq!(mode(&scratch), 0o2777);
    env.manager.tear_down_pod("u1").await.expect("tear down");
}

#[tokio::test]
async fn container_mounts_as_upstream_make_mounts() {
    let env = Env::new();
    let host = env.root.join("host");
    fs::create_dir(&host).expect("mkdir");
    env.sources.put_config_map("default", "cfg", &[("a", "1")]);
    let pod = pod_with(
        "u1",
        vec![
            empty_dir("data", None),
            host_path_volume("host", &host, "Directory"),
            config_map_volume("cfg", "cfg", None),
        ],
        vec![],
    );
    let volumes = env.manager.set_up_pod(&pod).await.expect("set up");
    let app = container(
        "app",
        vec![
            mount("data", "/data"),
            VolumeMount {
                read_only: Some(true),
                mount_propagation: Some("HostToContainer".into()),
                ..mount("host", "relative/../host")
            },
            mount("cfg", "/etc/cfg"),
        ],
    );
    let mounts = env
        .manager
        .container_mounts(&pod, &app, &volumes, &[])
        .await
        .expect("mounts");
    let data = env.volume_dir("u1", "kubernetes.io~empty-dir", "data");
    let cfg = env.volume_dir("u1", "kubernetes.io~configmap", "cfg");
    assert_eq!(
        mounts,
        vec![
            Mount {
                container_path: "/data".into(),
                host_path: data.display().to_string(),
                readonly: false,
                selinux_relabel: true,
                propagation: MountPropagation::Private,
            },
            Mount {
                container_path: "/host".into(),
                host_path: host.display().to_string(),
                readonly: true,
                selinux_relabel: false,
                propagation: MountPropagation::HostToContainer,
            },
            Mount {
                container_path: "/etc/cfg".into(),
                host_path: cfg.display().to_string(),
                readonly: true,
                selinux_relabel: true,
                propagation: MountPropagation::Private,
            },
        ]
    );

    let error = |c: Container| {
        let (manager, pod, volumes) = (&env.manager, &pod, &volumes);
        async move {
            manager
                .container_mounts(pod, &c, volumes, &[])
                .await
                .expect_err("refused")
                .to_string()
        }
    };
    assert_eq!(
        error(container("app", vec![mount("nope", "/x")])).await,
        "cannot find volume \"nope\" to mount into container \"app\""
    );
    let bidirectional = VolumeMount {
        mount_propagation: Some("Bidirectional".into()),
        ..mount("host", "/host")
    };
    assert_eq!(
        error(container("app", vec![bidirectional.clone()])).await,
        "Bidirectional mount propagation is available only to privileged containers"
    );
    let mut privileged = container("app", vec![bidirectional]);
    privileged.security_context = Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
    let mounts = env
        .manager
        .container_mounts(&pod, &privileged, &volumes, &[])
        .await
        .expect("privileged");
    assert_eq!(mounts[0].propagation, MountPropagation::Bidirectional);
    let bogus = VolumeMount {
        mount_propagation: Some("Sideways".into()),
        ..mount("host", "/host")
    };
    assert_eq!(
        error(container("app", vec![bogus])).await,
        "invalid MountPropagation mode: \"Sideways\""
    );
    let rro = VolumeMount {
        read_only: Some(true),
        recursive_read_only: Some("Enabled".into()),
        ..mount("host", "/host")
    };
    assert_eq!(
        error(container("app", vec![rro])).await,
        "failed to resolve recursive read-only mode: volume \"host\" requested recursive read-only mode, but it is not supported by the runtime"
    );
}

#[tokio::test]
async fn sub_path_errors_are_upstreams() {
    let env = Env::new();
    let pod = pod_with("u1", vec![empty_dir("data", None)], vec![]);
    let volumes = env.manager.set_up_pod(&pod).await.expect("set up");
    let refused = |m: VolumeMount, env_vars: Vec<(String, String)>| {
        let (manager, pod, volumes) = (&env.manager, &pod, &volumes);
        async move {
            manager
                .container_mounts(pod, &container("app", vec![m]), volumes, &env_vars)
                .await
                .expect_err("refused")
                .to_string()
        }
    };
    assert_eq!(
        refused(sub_mount("data", "/d", "../../etc"), vec![]).await,
        "unable to provision SubPath `../../etc`: must not contain '..'"
    );
    assert_eq!(
        refused(sub_mount("data", "/d", "a/../../b"), vec![]).await,
        "unable to provision SubPath `a/../../b`: must not contain '..'"
    );
    assert_eq!(
        refused(sub_mount("data", "/d", "/etc"), vec![]).await,
        "error SubPath `/etc` must not be an absolute path"
    );
    let expr = |e: &str| VolumeMount {
        sub_path_expr: Some(e.into()),
        ..mount("data", "/d")
    };
    assert_eq!(
        refused(expr("$(B)/$(A)"), vec![("A".into(), String::new())]).await,
        "missing value for A, B"
    );
    assert_eq!(
        refused(expr("$(P)"), vec![("P".into(), "/abs".into())]).await,
        "error SubPath `/abs` must not be an absolute path"
    );
    assert_eq!(
        refused(expr("x/$(P)"), vec![("P".into(), "..".into())]).await,
        "unable to provision SubPath `x/..`: must not contain '..'"
    );
    // Nothing was created for refused subPaths.
    assert!(!env.pods_dir.join("u1/volume-subpaths").exists());
}

#[tokio::test]
async fn sub_paths_are_bind_mounted_safely() {
    let env = Env::new();
    if !can_mount("sub_paths_are_bind_mounted_safely") {
        return;
    }
    env.sources
        .put_config_map("default", "cfg", &[("app.yaml", "x: 1")]);
    let pod = pod_with(
        "u1",
        vec![
            empty_dir("data", None),
            config_map_volume("cfg", "cfg", None),
        ],
        vec![],
    );
    let volumes = env.manager.set_up_pod(&pod).await.expect("set up");
    let data = env.volume_dir("u1", "kubernetes.io~empty-dir", "data");
    let outside = env.root.join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("secret"), b"host secret").expect("write");

    // A normal subPath: created with the volume's mode, bind-mounted, reused.
    let app = container(
        "app",
        vec![
            sub_mount("data", "/logs", "logs/app"),
            VolumeMount {
                sub_path_expr: Some("pods/$(POD_NAME)".into()),
                ..mount("data", "/mine")
            },
            sub_mount("cfg", "/etc/app.yaml", "app.yaml"),
        ],
    );
    let env_vars = [("POD_NAME".to_owned(), "web".to_owned())];
    let mounts = env
        .manager
        .container_mounts(&pod, &app, &volumes, &env_vars)
        .await
        .expect("mounts");
    let subpaths = env.pods_dir.join("u1/volume-subpaths");
    assert_eq!(
        mounts[0].host_path,
        subpaths.join("data/app/0").display().to_string()
    );
    assert_eq!(
        mounts[1].host_path,
        subpaths.join("data/app/1").display().to_string()
    );
    assert_eq!(
        mounts[2].host_path,
        subpaths.join("cfg/app/2").display().to_string()
    );
    assert!(mounts[2].readonly);
    assert_eq!(mode(&data.join("logs/app")), 0o777);
    assert!(data.join("pods/web").is_dir());
    fs::write(data.join("logs/app/out.log"), b"hello").expect("write");
    assert_eq!(
        fs::read_to_string(subpaths.join("data/app/0/out.log")).expect("through the bind mount"),
        "hello"
    );
    // A configMap key (a symlink inside the volume) is resolved and mounted as a file.
    assert_eq!(
        fs::read_to_string(subpaths.join("cfg/app/2")).expect("file bind mount"),
        "x: 1"
    );
    let before = mounted_under(&env.root).len();
    env.manager
        .container_mounts(&pod, &app, &volumes, &env_vars)
        .await
        .expect("again");
    assert_eq!(
        mounted_under(&env.root).len(),
        before,
        "existing bind mounts reused"
    );

    // A symlink to outside the volume is refused, whoever made it.
    std::os::unix::fs::symlink(&outside, data.join("escape")).expect("symlink");
    let err = env
        .manager
        .container_mounts(
            &pod,
            &container("evil", vec![sub_mount("data", "/x", "escape")]),
            &volumes,
            &[],
        )
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "failed to prepare subPath for volumeMount \"data\" of container \"evil\""
    );

    // A directory checked once and later swapped for a symlink to outside is refused
    // at the next mount, and the old bind mount still shows the original directory.
    fs::create_dir_all(data.join("work")).expect("mkdir");
    fs::write(data.join("work/mine"), b"pod data").expect("write");
    let worker = container("worker", vec![sub_mount("data", "/w", "work")]);
    let mounts = env
        .manager
        .container_mounts(&pod, &worker, &volumes, &[])
        .await
        .expect("first mount");
    let bound = PathBuf::from(&mounts[0].host_path);
    fs::rename(data.join("work"), data.join("work-old")).expect("rename");
    std::os::unix::fs::symlink(&outside, data.join("work")).expect("swap in a symlink");
    let err = env
        .manager
        .container_mounts(
            &pod,
            &container("worker2", vec![sub_mount("data", "/w", "work")]),
            &volumes,
            &[],
        )
        .await
        .expect_err("swapped symlink refused");
    assert_eq!(
        err.to_string(),
        "failed to prepare subPath for volumeMount \"data\" of container \"worker2\""
    );
    assert_eq!(
        fs::read_to_string(bound.join("mine")).expect("pinned"),
        "pod data"
    );
    assert!(!bound.join("secret").exists());
    // Remounting the first container is refused too; its stale mount is not reused.
    assert!(
        env.manager
            .container_mounts(&pod, &worker, &volumes, &[])
            .await
            .is_err()
    );
    assert!(!subpaths.join("evil/").exists());

    env.manager.tear_down_pod("u1").await.expect("tear down");
    assert!(mounted_under(&env.root).is_empty());
    assert!(!subpaths.exists());
    assert_eq!(
        fs::read_to_string(outside.join("secret")).expect("untouched"),
        "host secret"
    );
}

#[tokio::test]
async fn tear_down_leaves_nothing_and_forgets_the_pod() {
    let env = Env::new();
    if !can_mount("tear_down_leaves_nothing") {
        return;
    }
    env.sources.put_config_map("default", "cfg", &[("a", "1")]);
    env.sources
        .put_config_map("default", "kube-root-ca.crt", &[("ca.crt", "CA")]);
    env.sources.put_secret("default", "s", &[("k", "v")]);
    let host = env.root.join("host");
    fs::create_dir(&host).expect("mkdir");
    fs::write(host.join("keep"), b"x").expect("write");
    let pod = pod_with(
        "u1",
        vec![
            empty_dir("disk", None),
            empty_dir("mem", Some("Memory")),
            config_map_volume("cfg", "cfg", None),
            secret_volume("sec", "s", None),
            kube_api_access(),
            host_path_volume("host", &host, "Directory"),
        ],
        vec![],
    );
    let volumes = env.manager.set_up_pod(&pod).await.expect("set up");
    let app = container(
        "app",
        vec![
            sub_mount("disk", "/d", "sub"),
            sub_mount("host", "/h", "keep"),
        ],
    );
    env.manager
        .container_mounts(&pod, &app, &volumes, &[])
        .await
        .expect("mounts");
    // A file next to the volumes that is not ours (etc-hosts) stays.
    fs::write(env.pods_dir.join("u1/etc-hosts"), b"127.0.0.1 localhost").expect("write");
    assert!(!mounted_under(&env.root).is_empty());

    env.manager.tear_down_pod("u1").await.expect("tear down");
    assert!(mounted_under(&env.root).is_empty());
    assert_eq!(
        names(&env.pods_dir.join("u1")),
        BTreeSet::from(["etc-hosts".to_owned()])
    );
    assert!(host.join("keep").exists(), "hostPath contents untouched");
    env.manager.tear_down_pod("u1").await.expect("idempotent");
    env.manager
        .tear_down_pod("never-seen")
        .await
        .expect("unknown pod");
    assert!(matches!(
        env.manager.tear_down_pod("../etc").await,
        Err(Error::PodUid(_))
    ));
}

#[tokio::test]
async fn tear_down_never_removes_through_a_mount_it_cannot_unmount() {
    let env = Env::new();
    if !can_mount("tear_down_never_removes_through_a_mount") {
        return;
    }
    let pod = pod_with("u1", vec![empty_dir("disk", None)], vec![]);
    env.manager.set_up_pod(&pod).await.expect("set up");
    let disk = env.volume_dir("u1", "kubernetes.io~empty-dir", "disk");
    // Someone else's mount inside the volume (say, propagated from a container).
    let foreign = env.root.join("foreign");
    fs::create_dir(&foreign).expect("mkdir");
    fs::write(foreign.join("precious"), b"x").expect("write");
    fs::create_dir(disk.join("inner")).expect("mkdir");
    crate::sys::bind_mount(&foreign, &disk.join("inner")).expect("bind");

    let err = env.manager.tear_down_pod("u1").await.expect_err("refused");
    assert!(err.to_string().contains("it is a mount point"), "{err}");
    assert!(
        foreign.join("precious").exists(),
        "nothing removed through the mount"
    );
    crate::sys::unmount(&disk.join("inner")).expect("unmount");
    env.manager.tear_down_pod("u1").await.expect("now it can");
    assert!(!disk.exists());
    assert!(foreign.join("precious").exists());
}

#[tokio::test]
async fn a_restarted_manager_reuses_volumes_on_disk() {
    let env = Env::new();
    if !can_mount("a_restarted_manager_reuses_volumes_on_disk") {
        return;
    }
    env.sources.put_config_map("default", "cfg", &[("a", "1")]);
    env.sources.put_secret("default", "s", &[("k", "v")]);
    let pod = pod_with(
        "u1",
        vec![
            secret_volume("sec", "s", None),
            config_map_volume("cfg", "cfg", None),
            empty_dir("mem", Some("Memory")),
        ],
        vec![],
    );
    env.manager.set_up_pod(&pod).await.expect("set up");
    let secret_dir = env.volume_dir("u1", "kubernetes.io~secret", "sec");
    let cfg_dir = env.volume_dir("u1", "kubernetes.io~configmap", "cfg");
    let mem_dir = env.volume_dir("u1", "kubernetes.io~empty-dir", "mem");
    fs::write(mem_dir.join("state"), b"kept").expect("write");
    let secret_data = data_target(&secret_dir);
    let cfg_data = data_target(&cfg_dir);
    let mounts_before = mounted_under(&env.root);
    assert_eq!(
        mounts_before.len(),
        2,
        "secret and memory emptyDir on tmpfs"
    );

    let restarted = env.restarted();
    let volumes = restarted.set_up_pod(&pod).await.expect("after restart");
    assert_eq!(volumes.len(), 3);
    assert_eq!(
        mounted_under(&env.root),
        mounts_before,
        "no tmpfs mounted twice"
    );
    assert_eq!(data_target(&secret_dir), secret_data);
    assert_eq!(data_target(&cfg_dir), cfg_data);
    assert_eq!(
        fs::read_to_string(mem_dir.join("state")).expect("state"),
        "kept"
    );
    restarted.tear_down_pod("u1").await.expect("tear down");
    assert!(mounted_under(&env.root).is_empty());
}

#[tokio::test]
async fn orphaned_pod_directories_are_cleaned_up() {
    let env = Env::new();
    let mounting = can_mount("orphaned_pod_directories_are_cleaned_up (tmpfs part)");
    env.sources.put_secret("default", "s", &[("k", "v")]);
    let mut orphan_volumes = vec![empty_dir("disk", None)];
    if mounting {
        orphan_volumes.push(secret_volume("sec", "s", None));
    }
    let orphan = pod_with("orphan", orphan_volumes, vec![]);
    let active = pod_with("active", vec![empty_dir("disk", None)], vec![]);
    env.manager.set_up_pod(&orphan).await.expect("orphan");
    env.manager.set_up_pod(&active).await.expect("active");
    fs::create_dir_all(env.pods_dir.join("orphan/containers/app")).expect("mkdir");
    fs::write(env.pods_dir.join("orphan/etc-hosts"), b"x").expect("write");

    // A new run knows only the active pod.
    let restarted = env.restarted();
    restarted
        .clean_up_orphans(&HashSet::from(["active".to_owned()]))
        .await
        .expect("cleaned");
    assert!(!env.pods_dir.join("orphan").exists());
    assert!(
        env.volume_dir("active", "kubernetes.io~empty-dir", "disk")
            .is_dir()
    );
    assert!(mounted_under(&env.root).is_empty());
    // Nothing to do the second time.
    restarted
        .clean_up_orphans(&HashSet::from(["active".to_owned()]))
        .await
        .expect("idempotent");
}

#[tokio::test]
async fn the_orphan_cleanup_leaves_a_pod_that_came_after_its_list() {
    let env = Env::new();
    env.sources.put_config_map("default", "cfg", &[("a", "1")]);
    // The list of live pods was taken, then a new pod started: it is set up (here, its
    // set-up failing and retrying counts too) before the cleanup gets to it.
    let live: HashSet<String> = HashSet::from(["old".to_owned()]);
    let newcomer = pod_with(
        "newcomer",
        vec![
            config_map_volume("config", "cfg", None),
            empty_dir("scratch", None),
        ],
        vec![],
    );
    env.manager.set_up_pod(&newcomer).await.expect("set up");
    let failing = pod_with(
        "failing",
        vec![config_map_volume("c", "absent", None)],
        vec![],
    );
    env.manager.set_up_pod(&failing).await.expect_err("not yet");
    fs::write(env.pods_dir.join("newcomer/etc-hosts"), b"x").expect("write");
    env.manager.clean_up_orphans(&live).await.expect("cleaned");
    let config = env.volume_dir("newcomer", "kubernetes.io~configmap", "config");
    assert_eq!(
        fs::read_to_string(config.join("a")).expect("still there"),
        "1"
    );
    assert!(env.pods_dir.join("newcomer/etc-hosts").exists());
    assert!(env.pods_dir.join("failing").exists());
    // Once torn down (the pod went), a later cleanup may remove what is left.
    env.manager
        .tear_down_pod("newcomer")
        .await
        .expect("torn down");
    env.manager.clean_up_orphans(&live).await.expect("cleaned");
    assert!(!env.pods_dir.join("newcomer").exists());
}

#[tokio::test]
async fn added_plugins_take_over_and_unknown_volume_types_fail() {
    use async_trait::async_trait;
    use kubelet_core::{MountedVolume, VolumePlugin};

    struct Fake;
    #[async_trait]
    impl VolumePlugin for Fake {
        fn name(&self) -> &str {
            "example.com/fake"
        }
        fn supports(&self, volume: &Volume) -> bool {
            volume.nfs.is_some()
        }
        async fn set_up(
            &self,
            _pod: &Pod,
            volume: &Volume,
            pod_volume_dir: &Path,
        ) -> kubelet_core::Result<MountedVolume> {
            let dir = pod_volume_dir.join("example.com~fake").join(&volume.name);
            fs::create_dir_all(&dir).map_err(|e| kubelet_core::Error::Volume {
                volume: volume.name.clone(),
                reason: e.to_string(),
                source: None,
            })?;
            Ok(MountedVolume {
                name: volume.name.clone(),
                host_path: dir,
                read_only: false,
                block: false,
            })
        }
        async fn tear_down(&self, name: &str, pod_volume_dir: &Path) -> kubelet_core::Result<()> {
            let _ = fs::remove_dir(pod_volume_dir.join("example.com~fake").join(name));
            Ok(())
        }
    }

    let env = Env::new();
    let nfs = Volume {
        name: "share".into(),
        nfs: Some(Default::default()),
        ..Default::default()
    };
    let pod = pod_with("u1", vec![nfs], vec![]);
    let err = env.manager.set_up_pod(&pod).await.expect_err("no plugin");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"share\" : no volume plugin matched"
    );
    let manager = env.restarted().with_plugin(Arc::new(Fake));
    let volumes = manager.set_up_pod(&pod).await.expect("fake plugin");
    assert!(volumes.get("share").expect("share").host_path.is_dir());
    manager.tear_down_pod("u1").await.expect("tear down");
    assert!(!env.pods_dir.join("u1/volumes").exists());

    // A volume without any source is an emptyDir, as the API defaults it.
    let bare = Volume {
        name: "bare".into(),
        ..Default::default()
    };
    let volumes = env
        .manager
        .set_up_pod(&pod_with("u2", vec![bare], vec![]))
        .await
        .expect("defaulted");
    assert_eq!(
        volumes.get("bare").expect("bare").host_path,
        env.volume_dir("u2", "kubernetes.io~empty-dir", "bare")
    );
}

/// Everything below `dir` without following symlinks: relative path -> what it is
/// (`dir`, `file:<content>`, `link:<target>`).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.map_while(Result::ok) {
            let path = entry.path();
            let name = path
                .strip_prefix(base)
                .expect("below")
                .display()
                .to_string();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).expect("link");
                out.insert(name, format!("link:{}", target.display()));
            } else if meta.is_dir() {
                out.insert(name, "dir".into());
                walk(base, &path, out);
            } else {
                let content = fs::read_to_string(&path).unwrap_or_default();
                out.insert(name, format!("file:{content}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The (device, inode) of `dir` and of everything below it, symlinks not followed.
fn inodes(dir: &Path) -> HashSet<(u64, u64)> {
    let mut seen = HashSet::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(path) = todo.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        seen.insert((meta.dev(), meta.ino()));
        if meta.is_dir() {
            for entry in fs::read_dir(&path)
                .into_iter()
                .flatten()
                .map_while(Result::ok)
            {
                todo.push(entry.path());
            }
        }
    }
    seen
}

/// Generated subPath variants (`..`, `.`, leading and doubled slashes, symlinks leading
/// out absolutely and relatively, chains, loops, a link to the volume's parent, paths
/// not there yet) on an emptyDir and on a hostPath volume: each is refused or
/// bind-mounts a file or directory of the volume itself, and nothing outside the
/// volumes is created or changed.
#[tokio::test]
async fn no_generated_sub_path_variant_escapes_its_volume() {
    let env = Env::new();
    if !can_mount("no_generated_sub_path_variant_escapes_its_volume") {
        return;
    }
    let outside = env.root.join("outside");
    fs::create_dir_all(outside.join("dir")).expect("mkdir");
    fs::write(outside.join("secret"), "host secret").expect("write");
    let host = env.root.join("host-volume");
    fs::create_dir(&host).expect("mkdir");
    let pod = pod_with(
        "u1",
        vec![
            empty_dir("data", None),
            host_path_volume("host", &host, "Directory"),
        ],
        vec![],
    );
    let volumes = env.manager.set_up_pod(&pod).await.expect("set up");
    let data = env.volume_dir("u1", "kubernetes.io~empty-dir", "data");
    for volume in [&data, &host] {
        fs::create_dir_all(volume.join("inside/deeper")).expect("mkdir");
        fs::write(volume.join("inside/file"), "volume data").expect("write");
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, volume.join(name)).expect("symlink");
        };
        link(&outside, "abs_out");
        link(&outside.join("secret"), "abs_file");
        let climb = "../".repeat(volume.components().count());
        link(
            &Path::new(&climb).join(outside.strip_prefix("/").expect("absolute")),
            "rel_out",
        );
        link(Path::new("inside"), "link_in");
        link(Path::new("rel_out"), "chain");
        link(Path::new("loop"), "loop");
        link(Path::new(".."), "inside/up");
        link(Path::new("../.."), "inside/up2");
    }
    let outside_before = tree(&outside);
    let root_before: BTreeSet<String> = names(&env.root);

    let segments = [
        "..",
        ".",
        "inside",
        "inside/deeper",
        "inside/file",
        "abs_out",
        "abs_file",
        "rel_out",
        "link_in",
        "chain",
        "loop",
        "inside/up",
        "inside/up2",
        "secret",
        "outside",
        "new",
    ];
    let variants = kubelet_test_support::path_variants(&segments, 2);
    let (mut mounted, mut refused) = ([0usize; 2], [0usize; 2]);
    for (i, variant) in variants.iter().enumerate() {
        let (which, volume) = if i % 2 == 0 { (0, &data) } else { (1, &host) };
        let name = ["data", "host"][which];
        let app = container(&format!("c{i}"), vec![sub_mount(name, "/x", variant)]);
        match env
            .manager
            .container_mounts(&pod, &app, &volumes, &[])
            .await
        {
            Ok(mounts) => {
                let target = fs::metadata(&mounts[0].host_path).expect("bound");
                assert!(
                    inodes(volume).contains(&(target.dev(), target.ino())),
                    "subPath {variant:?} of {name} mounted something outside the volume"
                );
                mounted[which] += 1;
            }
            Err(_) => refused[which] += 1,
        }
        assert_eq!(
            tree(&outside),
            outside_before,
            "subPath {variant:?} of {name}"
        );
    }
    assert_eq!(names(&env.root), root_before);
    assert!(refused.iter().all(|r| *r > 0) && mounted.iter().all(|m| *m > 0));
    assert!(variants.len() >= 400, "{}", variants.len());
    eprintln!(
        "subPath traversal: {} variants; emptyDir {} mounted inside, {} refused; hostPath {} mounted inside, {} refused",
        variants.len(),
        mounted[0],
        refused[0],
        mounted[1],
        refused[1]
    );
    env.manager.tear_down_pod("u1").await.expect("tear down");
    assert!(mounted_under(&env.root).is_empty());
    assert_eq!(
        fs::read_to_string(host.join("inside/file")).expect("kept"),
        "volume data"
    );
}

mod claims {
    //! `persistentVolumeClaim` and generic `ephemeral` volumes: upstream's checks of the
    //! claim and its volume, hostPath and local PersistentVolumes.

    use super::*;
    use k8s_openapi::api::core::v1::{
        EphemeralVolumeSource, LocalVolumeSource, ObjectReference, PersistentVolume,
        PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, VolumeDevice,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
        Volume {
            name: name.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: Some(read_only),
            }),
            ..Default::default()
        }
    }

    /// A claim `default/<name>` with UID `claim-<name>`, bound to `pv` when given.
    fn claim(name: &str, pv: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("claim-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: pv.map(str::to_owned),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(if pv.is_some() { "Bound" } else { "Pending" }.into()),
                ..Default::default()
            }),
        }
    }

    fn pv(name: &str, claim_uid: Option<&str>, spec: PersistentVolumeSpec) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                claim_ref: claim_uid.map(|uid| ObjectReference {
                    uid: Some(uid.into()),
                    ..Default::default()
                }),
                ..spec
            }),
            status: None,
        }
    }

    fn host_path_spec(path: &Path) -> PersistentVolumeSpec {
        PersistentVolumeSpec {
            host_path: Some(HostPathVolumeSource {
                path: path.display().to_string(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        }
    }

    fn local_spec(path: &Path) -> PersistentVolumeSpec {
        PersistentVolumeSpec {
            local: Some(LocalVolumeSource {
                path: path.display().to_string(),
                fs_type: None,
            }),
            ..Default::default()
        }
    }

    async fn set_up_error(env: &Env, pod: &Pod) -> String {
        match env.manager.set_up_pod(pod).await {
            Ok(_) => panic!("set-up succeeded"),
            Err(e) => e.to_string(),
        }
    }

    const PREFIX: &str = "Unable to attach or mount volumes: unmounted volumes=[data], \
                          unattached volumes=[], failed to process volumes=[data]: ";

    #[tokio::test]
    async fn claims_are_checked_with_upstreams_messages() {
        let env = Env::new();
        let pod = pod_with(
            "u1",
            vec![claim_volume("data", "data", false)],
            vec![container("app", vec![mount("data", "/data")])],
        );
        assert_eq!(
            set_up_error(&env, &pod).await,
            format!(
                "{PREFIX}error processing PVC default/data: failed to fetch PVC from API \
                 server: persistentvolumeclaims \"data\" not found"
            )
        );

        env.sources.put_claim(claim("data", None));
        assert_eq!(
            set_up_error(&env, &pod).await,
            format!("{PREFIX}error processing PVC default/data: PVC is not bound")
        );

        let mut deleting = claim("data", Some("pv-1"));
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        env.sources.put_claim(deleting.clone());
        assert_eq!(
            set_up_error(&env, &pod).await,
            format!("{PREFIX}error processing PVC default/data: PVC is being deleted")
        );
        // Protected from deletion while in use: still usable (a restarted kubelet must
        // not fail the pods that hold it).
        deleting.metadata.finalizers = Some(vec!["kubernetes.io/pvc-protection".into()]);
        env.sources.put_claim(deleting);
        assert_eq!(
            set_up_error(&env, &pod).await,
            format!(
                "{PREFIX}error processing PVC default/data: failed to fetch PV pv-1 from API \
                 server: persistentvolumes \"pv-1\" not found"
            )
        );

        let dir = env.root.join("host");
        fs::create_dir(&dir).expect("mkdir");
        env.sources
            .put_persistent_volume(pv("pv-1", None, host_path_spec(&dir)));
        assert_eq!(
            set_up_error(&env, &pod).await,
            format!(
                "{PREFIX}error processing PVC default/data: found PV object pv-1 but it has a \
                 nil pv.Spec.ClaimRef indicating it is not yet bound to the claim"
            )
        );
        env.sources
            .put_persistent_volume(pv("pv-1", Some("other"), host_path_spec(&dir)));
        assert_eq!(
            set_up_error(&env, &pod).await,
            format!(
                "{PREFIX}error processing PVC default/data: found PV object pv-1 but its \
                 pv.Spec.ClaimRef.UID other does not point to claim.UID claim-data"
            )
        );

        let block = PersistentVolumeSpec {
            volume_mode: Some("Block".into()),
            ..host_path_spec(&dir)
        };
        env.sources
            .put_persistent_volume(pv("pv-1", Some("claim-data"), block));
        assert_eq!(
            set_up_error(&env, &pod).await,
            format!("{PREFIX}volume data has volumeMode Block, but is specified in volumeMounts")
        );
        // hostPath PVs cannot be raw block volumes: refused, not handed over as nothing.
        let mut device_pod = pod.clone();
        if let Some(spec) = device_pod.spec.as_mut() {
            spec.containers[0].volume_mounts = None;
            spec.containers[0].volume_devices = Some(vec![VolumeDevice {
                name: "data".into(),
                device_path: "/dev/xvda".into(),
            }]);
        }
        assert_eq!(
            set_up_error(&env, &device_pod).await,
            "MountVolume.SetUp failed for volume \"data\" : hostPath persistent volumes \
             cannot be raw block volumes (volumeMode Block)"
        );
    }

    #[tokio::test]
    async fn an_ephemeral_volume_needs_the_claim_its_pod_owns() {
        let env = Env::new();
        let dir = env.root.join("host");
        fs::create_dir(&dir).expect("mkdir");
        let volume = Volume {
            name: "scratch".into(),
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..Default::default()
        };
        let pod = pod_with(
            "u1",
            vec![volume],
            vec![container("app", vec![mount("scratch", "/scratch")])],
        );
        // Upstream names it `<pod>-<volume>`.
        let mut owned = claim("web-scratch", Some("pv-e"));
        env.sources.put_claim(owned.clone());
        env.sources.put_persistent_volume(pv(
            "pv-e",
            Some("claim-web-scratch"),
            host_path_spec(&dir),
        ));
        let e = set_up_error(&env, &pod).await;
        assert!(
            e.ends_with(
                "failed to process volumes=[scratch]: PVC default/web-scratch was not created \
                 for pod default/web (pod is not owner)"
            ),
            "{e}"
        );
        owned.metadata.owner_references = Some(vec![OwnerReference {
            controller: Some(true),
            uid: "u1".into(),
            ..Default::default()
        }]);
        env.sources.put_claim(owned);
        let volumes = env.manager.set_up_pod(&pod).await.expect("set up");
        assert_eq!(volumes.get("scratch").expect("scratch").host_path, dir);
    }

    #[tokio::test]
    async fn a_host_path_volume_is_mounted_read_only_when_the_claim_says_so() {
        let env = Env::new();
        let dir = env.root.join("host");
        fs::create_dir(&dir).expect("mkdir");
        env.sources.put_claim(claim("data", Some("pv-1")));
        let mut volume = pv("pv-1", Some("claim-data"), host_path_spec(&dir));
        volume.metadata.annotations = Some(BTreeMap::from([(
            "pv.beta.kubernetes.io/gid".to_owned(),
            "1234".to_owned(),
        )]));
        env.sources.put_persistent_volume(volume);
        let app = container("app", vec![mount("data", "/data")]);
        let pod = pod_with(
            "u1",
            vec![claim_volume("data", "data", true)],
            vec![app.clone()],
        );
        let volumes = env.manager.set_up_pod(&pod).await.expect("set up");
        let mounts = env
            .manager
            .container_mounts(&pod, &app, &volumes, &[])
            .await
            .expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].host_path, dir.display().to_string());
        assert!(mounts[0].readonly, "the claim reference is readOnly");
        assert_eq!(volumes.supplemental_groups(), [1234]);

        // Resolved once per pod, as upstream's populator: later syncs do not read the
        // claim again.
        let reads = env.sources.claim_reads();
        env.manager.set_up_pod(&pod).await.expect("set up again");
        assert_eq!(env.sources.claim_reads(), reads);

        // A group the pod lists already is not added twice.
        let mut own = pod.clone();
        own.metadata.uid = Some("u2".into());
        if let Some(spec) = own.spec.as_mut() {
            spec.security_context = Some(PodSecurityContext {
                supplemental_groups: Some(vec![1234]),
                ..Default::default()
            });
        }
        let volumes = env.manager.set_up_pod(&own).await.expect("set up");
        assert!(volumes.supplemental_groups().is_empty());
    }

    #[tokio::test]
    async fn a_local_volume_is_bind_mounted_and_its_data_outlives_the_pod() {
        let env = Env::new();
        if !can_mount("a_local_volume_is_bind_mounted_and_its_data_outlives_the_pod") {
            return;
        }
        let disk = env.root.join("disk");
        fs::create_dir(&disk).expect("mkdir");
        fs::write(disk.join("kept"), b"before").expect("write");
        env.sources.put_claim(claim("data", Some("local-pv")));
        env.sources
            .put_persistent_volume(pv("local-pv", Some("claim-data"), local_spec(&disk)));
        let mut pod = pod_with(
            "u1",
            vec![claim_volume("data", "data", false)],
            vec![container("app", vec![mount("data", "/data")])],
        );
        if let Some(spec) = pod.spec.as_mut() {
            spec.security_context = Some(PodSecurityContext {
                fs_group: Some(2000),
                ..Default::default()
            });
        }
        let volumes = env.manager.set_up_pod(&pod).await.expect("set up");
        // Kept under the PV's name, as upstream.
        let dir = env.volume_dir("u1", "kubernetes.io~local-volume", "local-pv");
        assert_eq!(volumes.get("data").expect("data").host_path, dir);
        assert_eq!(mounted_under(&env.pods_dir), std::slice::from_ref(&dir));
        assert_eq!(fs::read(dir.join("kept")).expect("read"), b"before");
        fs::write(dir.join("new"), b"from the pod").expect("write through the mount");
        assert_eq!(fs::read(disk.join("new")).expect("read"), b"from the pod");
        assert_eq!(fs::metadata(&disk).expect("stat").gid(), 2000, "fsGroup");
        // Set up again (every sync): the same single mount.
        env.manager.set_up_pod(&pod).await.expect("set up again");
        assert_eq!(mounted_under(&env.pods_dir), std::slice::from_ref(&dir));

        env.manager.tear_down_pod("u1").await.expect("tear down");
        assert!(mounted_under(&env.pods_dir).is_empty());
        assert!(!dir.exists());
        assert_eq!(
            fs::read(disk.join("new")).expect("data kept"),
            b"from the pod"
        );

        // Read-only through the claim reference: the mount refuses writes.
        let mut read_only = pod.clone();
        read_only.metadata.uid = Some("u2".into());
        if let Some(spec) = read_only.spec.as_mut() {
            spec.volumes = Some(vec![claim_volume("data", "data", true)]);
        }
        env.manager.set_up_pod(&read_only).await.expect("set up");
        let dir = env.volume_dir("u2", "kubernetes.io~local-volume", "local-pv");
        let refused = fs::write(dir.join("x"), b"x").expect_err("read-only");
        assert_eq!(refused.raw_os_error(), Some(nix::libc::EROFS));
        // Torn down by the orphan cleanup too, as a pod of a previous run.
        env.restarted()
            .clean_up_orphans(&HashSet::new())
            .await
            .expect("orphans");
        assert!(mounted_under(&env.pods_dir).is_empty());
        assert!(disk.join("kept").exists());
    }
}
