//! The device manager against an in-memory device plugin served on a unix socket:
//! registration checks with upstream's messages, devices as extended resources,
//! allocation (exhaustion, reuse, release), the checkpoint across a restart, and a
//! plugin that goes away.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::{DeviceAllocator, ExtendedResource, ExtendedResources};
use kubelet_device_manager::proto::v1beta1::device_plugin_server::{
    DevicePlugin, DevicePluginServer,
};
use kubelet_device_manager::proto::v1beta1::registration_client::RegistrationClient;
use kubelet_device_manager::proto::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse,
    ContainerPreferredAllocationResponse, Device, DevicePluginOptions, DeviceSpec, Empty,
    ListAndWatchResponse, Mount, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse, RegisterRequest,
};
use kubelet_device_manager::{DeviceManager, KUBELET_SOCKET};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

const RESOURCE: &str = "example.com/gpu";

/// A plugin with `gpu-0` and `gpu-1`; its device list follows `devices`.
#[derive(Clone)]
struct FakePlugin {
    devices: watch::Sender<Vec<Device>>,
    allocations: Arc<AtomicUsize>,
    pre_starts: Arc<Mutex<Vec<Vec<String>>>>,
    /// Set when the plugin dies: its device list ends.
    dead: watch::Sender<bool>,
    /// What `GetPreferredAllocation` answers (unimplemented when `None`), and what it
    /// was asked.
    preferred: Option<Vec<String>>,
    preference_requests: Arc<Mutex<Vec<PreferredAllocationRequest>>>,
}

impl FakePlugin {
    fn new() -> Self {
        let healthy = |id: &str| Device {
            id: id.into(),
            health: "Healthy".into(),
            topology: None,
        };
        Self {
            devices: watch::channel(vec![healthy("gpu-0"), healthy("gpu-1")]).0,
            allocations: Arc::new(AtomicUsize::new(0)),
            pre_starts: Arc::new(Mutex::new(Vec::new())),
            dead: watch::channel(false).0,
            preferred: None,
            preference_requests: Arc::default(),
        }
    }
}

#[tonic::async_trait]
impl DevicePlugin for FakePlugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions::default()))
    }

    type ListAndWatchStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<ListAndWatchResponse, Status>> + Send>,
    >;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut rx = self.devices.subscribe();
        let mut dead = self.dead.subscribe();
        let stream = async_stream(move |tx| async move {
            loop {
                let devices = rx.borrow_and_update().clone();
                if tx.send(Ok(ListAndWatchResponse { devices })).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = dead.wait_for(|d| *d) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        self.preference_requests
            .lock()
            .expect("lock")
            .push(request.into_inner());
        let Some(ids) = &self.preferred else {
            return Err(Status::unimplemented("no preference"));
        };
        Ok(Response::new(PreferredAllocationResponse {
            container_responses: vec![ContainerPreferredAllocationResponse {
                device_i_ds: ids.clone(),
            }],
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        self.allocations.fetch_add(1, Ordering::SeqCst);
        let responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|r| ContainerAllocateResponse {
                envs: [("GPUS".to_owned(), r.devices_ids.join(","))].into(),
                mounts: vec![Mount {
                    container_path: "/usr/lib/gpu".into(),
                    host_path: "/opt/gpu/lib".into(),
                    read_only: true,
                }],
                devices: r
                    .devices_ids
                    .iter()
                    .map(|id| DeviceSpec {
                        container_path: format!("/dev/{id}"),
                        host_path: format!("/dev/{id}"),
                        permissions: "rw".into(),
                    })
                    .collect(),
                annotations: [("gpu.example.com/ids".to_owned(), r.devices_ids.join(","))].into(),
                cdi_devices: Vec::new(),
            })
            .collect();
        Ok(Response::new(AllocateResponse {
            container_responses: responses,
        }))
    }

    async fn pre_start_container(
        &self,
        request: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        self.pre_starts
            .lock()
            .expect("lock")
            .push(request.into_inner().devices_ids);
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

/// A stream fed by a task.
fn async_stream<F, Fut>(
    body: F,
) -> std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<ListAndWatchResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Serves `plugin` on `<dir>/<name>`; the task ends the plugin when aborted.
async fn serve_plugin(dir: &Path, name: &str, plugin: FakePlugin) -> tokio::task::JoinHandle<()> {
    let listener = kubelet_grpc_uds::listen(&dir.join(name))
        .await
        .expect("plugin socket");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(DevicePluginServer::new(plugin))
            .serve_with_incoming(kubelet_grpc_uds::incoming(listener))
            .await;
    })
}

async fn register(dir: &Path, request: RegisterRequest) -> Result<(), Status> {
    let channel = kubelet_grpc_uds::connect(&dir.join(KUBELET_SOCKET), Duration::from_secs(5));
    let mut client = RegistrationClient::new(channel);
    for _ in 0..100 {
        match client.register(request.clone()).await {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other.map(|_| ()),
        }
    }
    panic!("the registration socket never answered");
}

fn request(resource: &str, version: &str, pre_start: bool) -> RegisterRequest {
    RegisterRequest {
        version: version.into(),
        endpoint: "fake.sock".into(),
        resource_name: resource.into(),
        options: Some(DevicePluginOptions {
            pre_start_required: pre_start,
            get_preferred_allocation_available: false,
        }),
    }
}

fn pod(uid: &str, gpus: &str) -> (Pod, Container) {
    let container = Container {
        name: "app".into(),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                RESOURCE.to_owned(),
                Quantity(gpus.into()),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{uid}")),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    (pod, container)
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not reached");
}

#[tokio::test]
async fn registration_is_checked_as_upstream_checks_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = DeviceManager::open(dir.path(), Default::default())
        .await
        .expect("open");
    let server = tokio::spawn(manager.clone().serve());
    let refused = register(dir.path(), request(RESOURCE, "v1alpha", false))
        .await
        .expect_err("old version");
    assert_eq!(
        refused.message(),
        "requested API version \"v1alpha\" is not supported by kubelet. Supported version is [\"v1beta1\"]"
    );
    for name in ["gpu", "kubernetes.io/gpu", "requests.example.com/gpu"] {
        let refused = register(dir.path(), request(name, "v1beta1", false))
            .await
            .expect_err(name);
        assert_eq!(
            refused.message(),
            format!("the ResourceName {name:?} is invalid")
        );
    }
    assert!(manager.extended_resources().is_empty());
    server.abort();
}

#[tokio::test]
async fn devices_are_advertised_allocated_kept_across_a_restart_and_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = DeviceManager::open(dir.path(), Default::default())
        .await
        .expect("open");
    let server = tokio::spawn(manager.clone().serve());
    let plugin = FakePlugin::new();
    let plugin_task = serve_plugin(dir.path(), "fake.sock", plugin.clone()).await;
    register(dir.path(), request(RESOURCE, "v1beta1", true))
        .await
        .expect("registered");
    let advertised = |capacity, allocatable| {
        manager.extended_resources().get(RESOURCE).copied()
            == Some(ExtendedResource {
                capacity,
                allocatable,
            })
    };
    wait_for("2 devices", || advertised(2, 2)).await;

    // One unhealthy device leaves allocatable, not capacity.
    plugin
        .devices
        .send_modify(|d| d[1].health = "Unhealthy".into());
    wait_for("1 healthy", || advertised(2, 1)).await;
    plugin
        .devices
        .send_modify(|d| d[1].health = "Healthy".into());
    wait_for("2 healthy", || advertised(2, 2)).await;

    let (first, app) = pod("uid-1", "1");
    let given = manager.allocate(&first, &app).await.expect("allocate");
    assert_eq!(given.envs, [("GPUS".to_owned(), "gpu-0".to_owned())]);
    assert_eq!(given.devices[0].container_path, "/dev/gpu-0");
    assert!(given.mounts[0].readonly);
    assert_eq!(given.annotations["gpu.example.com/ids"], "gpu-0");
    assert_eq!(
        manager.assigned("uid-1", "app"),
        [(RESOURCE.to_owned(), vec!["gpu-0".to_owned()])]
    );
    // Asked again (a restart of the container): the same device, no new Allocate, but
    // PreStartContainer each time as the plugin asked.
    assert_eq!(manager.allocate(&first, &app).await.expect("again"), given);
    assert_eq!(plugin.allocations.load(Ordering::SeqCst), 1);
    assert_eq!(plugin.pre_starts.lock().expect("lock").len(), 2);

    let (second, app2) = pod("uid-2", "2");
    let refused = manager
        .allocate(&second, &app2)
        .await
        .expect_err("one left");
    assert!(
        refused.to_string().contains(
            "Allocate failed due to requested number of devices unavailable for example.com/gpu. Requested: 2, Available: 1, which is unexpected"
        ),
        "{refused}"
    );

    // A restarted kubelet keeps the assignment from the checkpoint, and gives the
    // container its devices again before the plugin has registered with it.
    let restarted = DeviceManager::open(dir.path(), Default::default())
        .await
        .expect("reopen");
    assert_eq!(
        restarted.assigned("uid-1", "app"),
        manager.assigned("uid-1", "app")
    );
    assert!(
        restarted.extended_resources().is_empty(),
        "no plugin registered yet"
    );
    assert_eq!(
        restarted
            .allocate(&first, &app)
            .await
            .expect("from the checkpoint"),
        given
    );

    manager.release("uid-1").await;
    let (third, app3) = pod("uid-3", "2");
    let both = manager
        .allocate(&third, &app3)
        .await
        .expect("both free again");
    assert_eq!(both.envs, [("GPUS".to_owned(), "gpu-0,gpu-1".to_owned())]);

    // The plugin goes: its devices stay in capacity, none allocatable.
    plugin.dead.send_replace(true);
    plugin_task.abort();
    wait_for("unhealthy after the plugin went", || advertised(2, 0)).await;
    server.abort();
}

/// A manager serving a fake plugin (registered with `options`), its devices advertised.
async fn manager_with(
    dir: &Path,
    plugin: FakePlugin,
    options: DevicePluginOptions,
) -> (Arc<DeviceManager>, Vec<tokio::task::JoinHandle<()>>) {
    let manager = DeviceManager::open(dir, Default::default())
        .await
        .expect("open");
    let server = tokio::spawn({
        let manager = manager.clone();
        async move {
            let _ = manager.serve().await;
        }
    });
    let plugin_task = serve_plugin(dir, "fake.sock", plugin).await;
    let mut registration = request(RESOURCE, "v1beta1", false);
    registration.options = Some(options);
    register(dir, registration).await.expect("registered");
    wait_for("2 devices", || {
        manager
            .extended_resources()
            .get(RESOURCE)
            .is_some_and(|r| r.allocatable == 2)
    })
    .await;
    (manager, vec![server, plugin_task])
}

/// A pod whose init container `init` (a sidecar when `sidecar`) asks for `init_gpus`
/// and app container `app` for `app_gpus`.
fn pod_with_init(
    uid: &str,
    init_gpus: &str,
    app_gpus: &str,
    sidecar: bool,
) -> (Pod, Container, Container) {
    let (mut p, app) = pod(uid, app_gpus);
    let (_, mut init) = pod(uid, init_gpus);
    init.name = "init".into();
    if sidecar {
        init.restart_policy = Some("Always".into());
    }
    p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
        init_containers: Some(vec![init.clone()]),
        containers: vec![app.clone()],
        ..Default::default()
    });
    (p, init, app)
}

#[tokio::test]
async fn app_containers_reuse_their_init_containers_devices_but_not_a_sidecars() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manager, tasks) = manager_with(
        dir.path(),
        FakePlugin::new(),
        DevicePluginOptions::default(),
    )
    .await;

    // Both devices to the init container, then the same two to the app container.
    let (p, init, app) = pod_with_init("uid-init", "2", "2", false);
    manager.allocate(&p, &init).await.expect("init's devices");
    let given = manager
        .allocate(&p, &app)
        .await
        .expect("app reuses init's devices");
    assert_eq!(given.envs, [("GPUS".to_owned(), "gpu-0,gpu-1".to_owned())]);
    // No other pod gets them meanwhile.
    let (other, other_app) = pod("uid-other", "1");
    let e = manager
        .allocate(&other, &other_app)
        .await
        .expect_err("all held");
    assert!(e.to_string().contains("Requested: 1, Available: 0"), "{e}");
    manager.release("uid-init").await;

    // A sidecar keeps running beside the app: its device is not the app's.
    let (p, sidecar, app) = pod_with_init("uid-sidecar", "1", "2", true);
    manager
        .allocate(&p, &sidecar)
        .await
        .expect("sidecar's device");
    let e = manager.allocate(&p, &app).await.expect_err("only one left");
    assert!(e.to_string().contains("Requested: 2, Available: 1"), "{e}");
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn the_plugins_preferred_allocation_is_used_when_it_offers_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plugin = FakePlugin::new();
    plugin.preferred = Some(vec!["gpu-1".to_owned()]);
    let asked = plugin.preference_requests.clone();
    let options = DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    };
    let (manager, tasks) = manager_with(dir.path(), plugin, options).await;
    let (p, app) = pod("uid-preferred", "1");
    let given = manager.allocate(&p, &app).await.expect("allocate");
    assert_eq!(given.envs, [("GPUS".to_owned(), "gpu-1".to_owned())]);
    let asked = asked.lock().expect("lock").clone();
    let request = &asked[0].container_requests[0];
    assert_eq!(request.available_device_i_ds, ["gpu-0", "gpu-1"]);
    assert!(request.must_include_device_i_ds.is_empty());
    assert_eq!(request.allocation_size, 1);

    // An answer that is no valid choice (a device not offered) is not followed.
    let (q, app) = pod("uid-second", "1");
    let given = manager.allocate(&q, &app).await.expect("allocate");
    assert_eq!(given.envs, [("GPUS".to_owned(), "gpu-0".to_owned())]);
    for task in tasks {
        task.abort();
    }
}
