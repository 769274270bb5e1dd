//! The CSI volume plugin against an in-process CSI node service on a unix socket (the
//! calls it gets, in order) and in-memory API objects: staging shared between pods,
//! VolumeAttachment waits, lifecycle modes, pod info, fsGroup, and an unregistered driver.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, CSIVolumeSource, ConfigMap, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec, Pod, PodSecurityContext, PodSpec, Secret, Volume,
};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSIDriverSpec, VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec,
    VolumeAttachmentStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{
    MeasuredVolumes, ObjectSource, ServiceAccountToken, VolumePlugin, VolumeSources, VolumesInUse,
};
use kubelet_csi::proto::v1::node_server::{Node, NodeServer};
use kubelet_csi::proto::v1::node_service_capability::{self, Rpc, rpc};
use kubelet_csi::proto::v1::*;
use kubelet_csi::{CsiObjects, CsiPlugin, Drivers, NodeDriver};
use kubelet_plugin_manager::PluginHandler;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

const DRIVER: &str = "fake.csi.example.com";
const NODE: &str = "node-1";

/// The node service: records every call as (method, volume id, path).
struct FakeNode {
    calls: Arc<Mutex<Vec<(String, String, String)>>>,
    capabilities: Vec<rpc::Type>,
    /// The last publish and stage requests.
    published: Arc<Mutex<Vec<NodePublishVolumeRequest>>>,
    staged: Arc<Mutex<Vec<NodeStageVolumeRequest>>>,
}

impl FakeNode {
    fn record(&self, method: &str, volume: &str, path: &str) {
        self.calls.lock().expect("calls").push((
            method.to_owned(),
            volume.to_owned(),
            path.to_owned(),
        ));
    }
}

#[tonic::async_trait]
impl Node for FakeNode {
    async fn node_stage_volume(
        &self,
        r: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let r = r.into_inner();
        self.record("NodeStageVolume", &r.volume_id, &r.staging_target_path);
        self.staged.lock().expect("staged").push(r);
        Ok(Response::new(NodeStageVolumeResponse {}))
    }
    async fn node_unstage_volume(
        &self,
        r: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let r = r.into_inner();
        self.record("NodeUnstageVolume", &r.volume_id, &r.staging_target_path);
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }
    async fn node_publish_volume(
        &self,
        r: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let r = r.into_inner();
        self.record("NodePublishVolume", &r.volume_id, &r.target_path);
        if r.volume_id.starts_with("hang") {
            std::future::pending::<()>().await;
        }
        // A driver makes the target; this one leaves a file in it.
        std::fs::create_dir_all(&r.target_path).map_err(|e| Status::internal(e.to_string()))?;
        std::fs::write(Path::new(&r.target_path).join("data"), "x")
            .map_err(|e| Status::internal(e.to_string()))?;
        self.published.lock().expect("published").push(r);
        Ok(Response::new(NodePublishVolumeResponse {}))
    }
    async fn node_unpublish_volume(
        &self,
        r: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let r = r.into_inner();
        self.record("NodeUnpublishVolume", &r.volume_id, &r.target_path);
        let _ = std::fs::remove_dir_all(&r.target_path);
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }
    async fn node_get_volume_stats(
        &self,
        r: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let r = r.into_inner();
        self.record("NodeGetVolumeStats", &r.volume_id, &r.volume_path);
        Ok(Response::new(NodeGetVolumeStatsResponse {
            usage: vec![
                VolumeUsage {
                    available: 600,
                    total: 1000,
                    used: 400,
                    unit: volume_usage::Unit::Bytes.into(),
                },
                VolumeUsage {
                    available: 90,
                    total: 100,
                    used: 10,
                    unit: volume_usage::Unit::Inodes.into(),
                },
            ],
        }))
    }
    async fn node_get_volume_health(
        &self,
        _: Request<NodeGetVolumeHealthRequest>,
    ) -> Result<Response<NodeGetVolumeHealthResponse>, Status> {
        Err(Status::unimplemented("health"))
    }
    async fn node_get_storage_health(
        &self,
        _: Request<NodeGetStorageHealthRequest>,
    ) -> Result<Response<NodeGetStorageHealthResponse>, Status> {
        Err(Status::unimplemented("health"))
    }
    async fn node_expand_volume(
        &self,
        _: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Err(Status::unimplemented("expand"))
    }
    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: self
                .capabilities
                .iter()
                .map(|t| NodeServiceCapability {
                    r#type: Some(node_service_capability::Type::Rpc(Rpc {
                        r#type: (*t).into(),
                    })),
                })
                .collect(),
        }))
    }
    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: "fake-node-id".to_owned(),
            max_volumes_per_node: 7,
            accessible_topology: Some(Topology {
                segments: [("topology.example.com/zone".to_owned(), "a".to_owned())].into(),
            }),
        }))
    }
}

/// CSIDriver objects and VolumeAttachments in memory; installed drivers recorded.
#[derive(Default)]
struct FakeObjects {
    driver: Mutex<Option<CSIDriverSpec>>,
    attachments: Mutex<BTreeMap<String, VolumeAttachment>>,
    installed: Mutex<Vec<NodeDriver>>,
}

#[async_trait]
impl CsiObjects for FakeObjects {
    async fn csi_driver(&self, name: &str) -> kubelet_core::Result<Option<CSIDriver>> {
        Ok(self
            .driver
            .lock()
            .expect("driver")
            .clone()
            .map(|spec| CSIDriver {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
                spec,
            }))
    }
    async fn volume_attachment(
        &self,
        name: &str,
    ) -> kubelet_core::Result<Option<VolumeAttachment>> {
        Ok(self
            .attachments
            .lock()
            .expect("attachments")
            .get(name)
            .cloned())
    }
    async fn install_driver(&self, driver: &NodeDriver) -> kubelet_core::Result<()> {
        self.installed
            .lock()
            .expect("installed")
            .push(driver.clone());
        Ok(())
    }
    async fn uninstall_driver(&self, name: &str) -> kubelet_core::Result<()> {
        self.installed
            .lock()
            .expect("installed")
            .retain(|d| d.name != name);
        Ok(())
    }
}

/// No API objects for volume contents (the tests use no secrets or tokens).
struct NoSources;

#[async_trait]
impl ObjectSource for NoSources {
    async fn config_map(&self, _: &str, _: &str) -> kubelet_core::Result<Option<ConfigMap>> {
        Ok(None)
    }
    async fn secret(&self, _: &str, _: &str) -> kubelet_core::Result<Option<Secret>> {
        Ok(None)
    }
}

#[async_trait]
impl VolumeSources for NoSources {
    async fn service_account_token(
        &self,
        _: &Pod,
        _: Option<&str>,
        _: i64,
    ) -> kubelet_core::Result<ServiceAccountToken> {
        Err(kubelet_core::Error::Invalid {
            what: "token".into(),
            reason: "none here".into(),
        })
    }
    async fn persistent_volume_claim(
        &self,
        _: &str,
        _: &str,
    ) -> kubelet_core::Result<Option<PersistentVolumeClaim>> {
        Ok(None)
    }
    async fn persistent_volume(&self, _: &str) -> kubelet_core::Result<Option<PersistentVolume>> {
        Ok(None)
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    plugin: CsiPlugin,
    metrics: Arc<KubeletMetrics>,
    drivers: Arc<Drivers>,
    objects: Arc<FakeObjects>,
    calls: Arc<Mutex<Vec<(String, String, String)>>>,
    published: Arc<Mutex<Vec<NodePublishVolumeRequest>>>,
    staged: Arc<Mutex<Vec<NodeStageVolumeRequest>>>,
}

impl Setup {
    /// A driver with `capabilities` serving on a socket, registered.
    async fn new(capabilities: Vec<rpc::Type>) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let socket = tmp.path().join("csi.sock");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let published = Arc::new(Mutex::new(Vec::new()));
        let staged = Arc::new(Mutex::new(Vec::new()));
        let node = FakeNode {
            calls: calls.clone(),
            capabilities,
            published: published.clone(),
            staged: staged.clone(),
        };
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(NodeServer::new(node))
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await;
        });
        let objects = Arc::new(FakeObjects::default());
        let drivers = Arc::new(
            Drivers::new(objects.clone()).with_call_timeout(std::time::Duration::from_secs(1)),
        );
        let metrics = Arc::new(KubeletMetrics::new());
        let plugin = CsiPlugin::new(drivers.clone(), Arc::new(NoSources), &root, NODE)
            .with_metrics(metrics.clone());
        let endpoint = socket.to_string_lossy().into_owned();
        drivers
            .register(DRIVER, &endpoint, &["1.0.0".to_owned()])
            .await
            .expect("the driver registers");
        Self {
            _tmp: tmp,
            root,
            plugin,
            metrics,
            drivers,
            objects,
            calls,
            published,
            staged,
        }
    }

    fn calls(&self) -> Vec<(String, String, String)> {
        self.calls.lock().expect("calls").clone()
    }

    fn methods(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.0).collect()
    }

    fn volumes_dir(&self, pod: &Pod) -> PathBuf {
        self.root
            .join("pods")
            .join(pod.metadata.uid.as_deref().expect("uid"))
            .join("volumes")
    }

    fn attach(&self, handle: &str) {
        let name = kubelet_csi::attachment_name(handle, DRIVER, NODE);
        self.objects
            .attachments
            .lock()
            .expect("attachments")
            .insert(
                name.clone(),
                VolumeAttachment {
                    metadata: ObjectMeta {
                        name: Some(name),
                        ..Default::default()
                    },
                    spec: VolumeAttachmentSpec {
                        attacher: DRIVER.to_owned(),
                        node_name: NODE.to_owned(),
                        source: VolumeAttachmentSource::default(),
                    },
                    status: Some(VolumeAttachmentStatus {
                        attached: true,
                        attachment_metadata: Some(
                            [("device".to_owned(), "/dev/fake".to_owned())].into(),
                        ),
                        ..Default::default()
                    }),
                },
            );
    }
}

fn pod(name: &str, fs_group: Option<i64>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("ns".to_owned()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some("sa".to_owned()),
            security_context: fs_group.map(|g| PodSecurityContext {
                fs_group: Some(g),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn pv(name: &str, handle: &str, fs_type: Option<&str>) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            csi: Some(CSIPersistentVolumeSource {
                driver: DRIVER.to_owned(),
                volume_handle: handle.to_owned(),
                fs_type: fs_type.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[tokio::test]
async fn registration_installs_the_drivers_node_info() {
    let s = Setup::new(vec![]).await;
    let installed = s.objects.installed.lock().expect("installed").clone();
    assert_eq!(
        installed,
        vec![NodeDriver {
            name: DRIVER.to_owned(),
            node_id: "fake-node-id".to_owned(),
            max_volumes: Some(7),
            topology: [("topology.example.com/zone".to_owned(), "a".to_owned())].into(),
        }]
    );
    assert_eq!(s.drivers.names(), vec![DRIVER.to_owned()]);
    s.drivers.deregister(DRIVER, "").await;
    assert!(s.objects.installed.lock().expect("installed").is_empty());
    assert!(s.drivers.names().is_empty());
}

#[tokio::test]
async fn a_volume_shared_by_two_pods_is_staged_once_and_unstaged_after_the_last() {
    let s = Setup::new(vec![rpc::Type::StageUnstageVolume]).await;
    let volume = pv("pv-1", "vol-1", None);
    let (a, b) = (pod("a", None), pod("b", None));

    // Not attached yet: nothing is asked of the driver.
    let e = s
        .plugin
        .set_up_persistent(&a, "disk", &volume, false, &s.volumes_dir(&a))
        .await
        .expect_err("waits for the attachment");
    assert!(
        e.to_string().contains("is not attached to node node-1 yet"),
        "{e}"
    );
    assert!(
        !s.methods()
            .iter()
            .any(|m| m.starts_with("NodeStage") || m.starts_with("NodePublish"))
    );

    s.attach("vol-1");
    let mounted = s
        .plugin
        .set_up_persistent(&a, "disk", &volume, false, &s.volumes_dir(&a))
        .await
        .expect("a's volume");
    assert_eq!(mounted.name, "disk");
    assert_eq!(
        mounted.host_path,
        s.volumes_dir(&a).join("kubernetes.io~csi/pv-1/mount")
    );
    assert!(!mounted.read_only);
    s.plugin
        .set_up_persistent(&b, "disk", &volume, true, &s.volumes_dir(&b))
        .await
        .expect("b's volume");
    let staged = s.staged.lock().expect("staged").clone();
    let staging = staged[0].staging_target_path.clone();
    assert!(
        staging.starts_with(
            s.root
                .join("plugins/kubernetes.io/csi")
                .join(DRIVER)
                .to_str()
                .expect("utf-8")
        )
    );
    assert!(staging.ends_with("/globalmount") && Path::new(&staging).is_dir());
    assert_eq!(
        staged[0].publish_context.get("device").map(String::as_str),
        Some("/dev/fake")
    );
    let published = s.published.lock().expect("published").clone();
    assert_eq!(published.len(), 2);
    assert!(published.iter().all(|p| p.staging_target_path == staging));
    assert!(published[1].readonly, "b's claim is read-only");
    let data: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            s.volumes_dir(&a)
                .join("kubernetes.io~csi/pv-1/vol_data.json"),
        )
        .expect("vol_data.json"),
    )
    .expect("json");
    assert_eq!(data["volumeHandle"], "vol-1");
    assert_eq!(data["driverName"], DRIVER);
    assert_eq!(data["volumeLifecycleMode"], "Persistent");

    let in_use = kubelet_csi::unique_volume_name(DRIVER, "vol-1");
    assert_eq!(s.plugin.volumes_in_use().await, vec![in_use.clone()]);

    // a goes: unpublished only, b still uses the staging.
    s.plugin
        .tear_down("pv-1", &s.volumes_dir(&a))
        .await
        .expect("a torn down");
    assert!(!s.volumes_dir(&a).join("kubernetes.io~csi/pv-1").exists());
    assert!(!s.methods().contains(&"NodeUnstageVolume".to_owned()));
    // b goes: unpublished, then unstaged, the staging directory removed.
    s.plugin
        .tear_down("pv-1", &s.volumes_dir(&b))
        .await
        .expect("b torn down");
    let methods = s.methods();
    let last = &methods[methods.len() - 2..];
    assert_eq!(last, ["NodeUnpublishVolume", "NodeUnstageVolume"]);
    assert_eq!(s.calls().last().expect("unstage").2, staging);
    assert!(!Path::new(&staging).exists());
    assert!(s.plugin.volumes_in_use().await.is_empty());
    // Tearing down again finds nothing to do.
    s.plugin
        .tear_down("pv-1", &s.volumes_dir(&b))
        .await
        .expect("idempotent");
}

#[tokio::test]
async fn inline_volumes_need_the_ephemeral_mode_and_get_the_pods_information() {
    let s = Setup::new(vec![rpc::Type::StageUnstageVolume]).await;
    let p = pod("inline", None);
    let volume = Volume {
        name: "scratch".to_owned(),
        csi: Some(CSIVolumeSource {
            driver: DRIVER.to_owned(),
            volume_attributes: Some([("size".to_owned(), "1Gi".to_owned())].into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(s.plugin.supports(&volume));
    // No CSIDriver object: persistent volumes only, as upstream.
    let e = s
        .plugin
        .set_up(&p, &volume, &s.volumes_dir(&p))
        .await
        .expect_err("no Ephemeral mode");
    assert!(
        e.to_string().contains(r#"volume mode "Ephemeral" not supported by driver fake.csi.example.com (only supports ["Persistent"])"#),
        "{e}"
    );
    *s.objects.driver.lock().expect("driver") = Some(CSIDriverSpec {
        pod_info_on_mount: Some(true),
        volume_lifecycle_modes: Some(vec!["Ephemeral".to_owned()]),
        ..Default::default()
    });
    s.plugin
        .set_up(&p, &volume, &s.volumes_dir(&p))
        .await
        .expect("inline volume");
    let published = s.published.lock().expect("published").clone();
    let request = &published[0];
    assert_eq!(
        request.volume_id,
        kubelet_csi::ephemeral_volume_handle("uid-inline", "scratch")
    );
    assert_eq!(
        request.staging_target_path, "",
        "ephemeral volumes are not staged"
    );
    let context = &request.volume_context;
    assert_eq!(context["size"], "1Gi");
    assert_eq!(context["csi.storage.k8s.io/ephemeral"], "true");
    assert_eq!(context["csi.storage.k8s.io/pod.name"], "inline");
    assert_eq!(context["csi.storage.k8s.io/pod.namespace"], "ns");
    assert_eq!(context["csi.storage.k8s.io/pod.uid"], "uid-inline");
    assert_eq!(context["csi.storage.k8s.io/serviceAccount.name"], "sa");
    assert!(!s.methods().contains(&"NodeStageVolume".to_owned()));
    assert!(
        s.plugin.volumes_in_use().await.is_empty(),
        "inline volumes are not attachable"
    );
    s.plugin
        .tear_down("scratch", &s.volumes_dir(&p))
        .await
        .expect("torn down");
    assert_eq!(
        s.methods().last().map(String::as_str),
        Some("NodeUnpublishVolume")
    );
    assert!(!s.methods().contains(&"NodeUnstageVolume".to_owned()));
}

#[tokio::test]
async fn the_kubelet_applies_fs_group_per_the_drivers_policy() {
    let s = Setup::new(vec![]).await;
    *s.objects.driver.lock().expect("driver") = Some(CSIDriverSpec {
        attach_required: Some(false),
        fs_group_policy: Some("File".to_owned()),
        ..Default::default()
    });
    let p = pod("owned", Some(4321));
    let mounted = s
        .plugin
        .set_up_persistent(
            &p,
            "disk",
            &pv("pv-2", "vol-2", None),
            false,
            &s.volumes_dir(&p),
        )
        .await
        .expect("volume");
    let meta = std::fs::metadata(mounted.host_path.join("data")).expect("the driver's file");
    assert_eq!(meta.gid(), 4321);
    assert!(
        s.plugin.volumes_in_use().await.is_empty(),
        "attachRequired: false is not attachable, so not reported"
    );
    // attachRequired: false, and a driver that does not stage: neither is waited for.
    assert_eq!(s.methods(), ["NodePublishVolume"]);
}

#[tokio::test]
async fn a_driver_with_volume_mount_group_gets_the_fs_group_itself() {
    let s = Setup::new(vec![rpc::Type::VolumeMountGroup]).await;
    *s.objects.driver.lock().expect("driver") = Some(CSIDriverSpec {
        attach_required: Some(false),
        fs_group_policy: Some("File".to_owned()),
        ..Default::default()
    });
    let p = pod("delegated", Some(4321));
    let mounted = s
        .plugin
        .set_up_persistent(
            &p,
            "disk",
            &pv("pv-3", "vol-3", Some("ext4")),
            false,
            &s.volumes_dir(&p),
        )
        .await
        .expect("volume");
    let request = s.published.lock().expect("published")[0].clone();
    let Some(volume_capability::AccessType::Mount(mount)) =
        request.volume_capability.and_then(|c| c.access_type)
    else {
        panic!("a mount capability");
    };
    assert_eq!(mount.volume_mount_group, "4321");
    assert_eq!(mount.fs_type, "ext4");
    let meta = std::fs::metadata(mounted.host_path.join("data")).expect("the driver's file");
    assert_ne!(meta.gid(), 4321, "the kubelet left it to the driver");
}

#[tokio::test]
async fn an_unregistered_driver_is_a_clear_retryable_error() {
    let s = Setup::new(vec![]).await;
    let p = pod("waiting", None);
    let mut volume = pv("pv-4", "vol-4", None);
    if let Some(csi) = volume.spec.as_mut().and_then(|s| s.csi.as_mut()) {
        csi.driver = "other.example.com".to_owned();
    }
    let e = s
        .plugin
        .set_up_persistent(&p, "disk", &volume, false, &s.volumes_dir(&p))
        .await
        .expect_err("not registered");
    assert!(
        e.to_string().contains(
            "driver name other.example.com not found in the list of registered CSI drivers"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn volumes_are_measured_for_the_summary_and_their_claims_metrics() {
    let s = Setup::new(vec![rpc::Type::GetVolumeStats]).await;
    *s.objects.driver.lock().expect("driver") = Some(CSIDriverSpec {
        attach_required: Some(false),
        ..Default::default()
    });
    let p = pod("measured", None);
    let mut volume = pv("pv-5", "vol-5", None);
    if let Some(spec) = volume.spec.as_mut() {
        spec.claim_ref = Some(ObjectReference {
            namespace: Some("stats-ns".to_owned()),
            name: Some("data".to_owned()),
            ..Default::default()
        });
    }
    let mounted = s
        .plugin
        .set_up_persistent(&p, "disk", &volume, false, &s.volumes_dir(&p))
        .await
        .expect("volume");
    assert!(s.plugin.measured_volumes().is_empty(), "not measured yet");
    s.plugin.measure_volumes().await;
    let measured = s.plugin.measured_volumes();
    assert_eq!(measured.len(), 1, "{measured:?}");
    let m = &measured[0];
    assert_eq!(
        (m.pod_uid.as_str(), m.volume.as_str()),
        ("uid-measured", "disk")
    );
    assert_eq!(
        m.claim,
        Some(kubelet_core::ClaimRef {
            namespace: "stats-ns".to_owned(),
            name: "data".to_owned()
        })
    );
    assert_eq!(
        (m.capacity_bytes, m.available_bytes, m.used_bytes),
        (Some(1000), Some(600), Some(400))
    );
    assert_eq!(
        (m.inodes, m.inodes_free, m.inodes_used),
        (Some(100), Some(90), Some(10))
    );
    let call = s
        .calls()
        .into_iter()
        .find(|c| c.0 == "NodeGetVolumeStats")
        .expect("asked");
    assert_eq!(call.2, mounted.host_path.to_string_lossy());
    let labels = ["stats-ns", "data"];
    assert_eq!(
        s.metrics.volume_stats_capacity_bytes.value(&labels),
        Some(1000.0)
    );
    assert_eq!(
        s.metrics.volume_stats_inodes_used.value(&labels),
        Some(10.0)
    );

    s.plugin
        .tear_down("pv-5", &s.volumes_dir(&p))
        .await
        .expect("torn down");
    assert!(s.plugin.measured_volumes().is_empty());
    assert_eq!(s.metrics.volume_stats_capacity_bytes.value(&labels), None);
}

#[tokio::test]
async fn a_driver_that_hangs_fails_that_volume_only_at_the_deadline() {
    let s = Setup::new(vec![]).await;
    *s.objects.driver.lock().expect("driver") = Some(CSIDriverSpec {
        attach_required: Some(false),
        ..Default::default()
    });
    let (stuck, fine) = (pod("stuck", None), pod("fine", None));
    let (stuck_pv, stuck_dir) = (pv("pv-hang", "hang-1", None), s.volumes_dir(&stuck));
    let hanging = s
        .plugin
        .set_up_persistent(&stuck, "disk", &stuck_pv, false, &stuck_dir);
    let other = async {
        // Meanwhile another volume of the same driver is published.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        s.plugin
            .set_up_persistent(
                &fine,
                "disk",
                &pv("pv-ok", "ok-1", None),
                false,
                &s.volumes_dir(&fine),
            )
            .await
    };
    let (hung, other) = tokio::join!(hanging, other);
    other.expect("another volume is not held up");
    let e = hung.expect_err("the deadline");
    assert!(
        e.to_string().contains(
            "NodePublishVolume of CSI driver fake.csi.example.com: context deadline exceeded"
        ),
        "{e}"
    );
    // Nothing half-made is left for the failed one.
    assert!(
        !s.volumes_dir(&stuck)
            .join("kubernetes.io~csi/pv-hang")
            .exists()
    );
}
