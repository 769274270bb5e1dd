//! The device manager: registration, each plugin's device list, assignments.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container, Pod};
use kubelet_core::metrics::kubelet::KubeletMetrics;
use kubelet_core::{
    ContainerDevices, Device, DeviceAllocator, ExtendedResource, ExtendedResources, Mount,
    MountPropagation, Quantity,
};
use kubelet_plugin_manager::{HandlerError, PluginHandler};
use prost::Message;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::checkpoint::{self, Entry};
use crate::proto::v1beta1::device_plugin_client::DevicePluginClient;
use crate::proto::v1beta1::registration_server::{Registration, RegistrationServer};
use crate::proto::v1beta1::{
    AllocateRequest, ContainerAllocateRequest, ContainerAllocateResponse,
    ContainerPreferredAllocationRequest, DevicePluginOptions, Empty, PreStartContainerRequest,
    PreferredAllocationRequest, RegisterRequest,
};
use crate::{Error, KUBELET_SOCKET, Result};

/// The only device plugin API version (upstream `pluginapi.SupportedVersions`).
const VERSION: &str = "v1beta1";
/// How long a plugin that went away keeps its resource on the node (upstream
/// `endpointStopGracePeriod`).
const STOP_GRACE: Duration = Duration::from_secs(5 * 60);
/// Every call to a plugin is bounded (upstream: 30 s for PreStartContainer, its gRPC
/// dial timeout for the others).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const HEALTHY: &str = "Healthy";

/// Which pods are still active, so that the devices of pods that went while nobody
/// looked (a previous run's) are freed before new devices are given, as upstream's
/// `UpdateAllocatedDevices`.
#[async_trait]
pub trait ActivePods: Send + Sync {
    /// The UIDs of the pods that run or may run again.
    async fn active_pod_uids(&self) -> HashSet<String>;
}

/// The device manager; see the crate documentation. Cheap to share as `Arc`.
pub struct DeviceManager {
    dir: PathBuf,
    active: std::sync::OnceLock<Arc<dyn ActivePods>>,
    state: Mutex<State>,
    /// Serializes checkpoint writes, so an older list never overwrites a newer one.
    checkpoint: tokio::sync::Mutex<()>,
    me: Weak<DeviceManager>,
    /// Where `kubelet_device_plugin_registration_total` is counted.
    metrics: Arc<KubeletMetrics>,
}

impl std::fmt::Debug for DeviceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceManager")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    resources: BTreeMap<String, Resource>,
    /// (pod uid, container name) → resource → its devices and the plugin's answer.
    assigned: BTreeMap<(String, String), BTreeMap<String, Entry>>,
    /// Counts registrations, so that an old plugin's ending leaves a new one alone.
    generation: u64,
}

struct Resource {
    /// The plugin while it is registered and its watch runs.
    plugin: Option<Plugin>,
    /// Device id → healthy.
    devices: BTreeMap<String, bool>,
    /// When the plugin went away.
    stopped: Option<Instant>,
}

/// A registered plugin's client and the calls it offers.
#[derive(Clone)]
struct PluginRef {
    client: DevicePluginClient<Channel>,
    /// It wants `PreStartContainer` before every start.
    pre_start: bool,
    /// It answers `GetPreferredAllocation`.
    preferred: bool,
}

/// What a container may be given of one resource.
struct Candidates {
    /// Held by the pod's finished init containers, taken first.
    reusable: Vec<String>,
    /// Healthy and held by no one.
    free: Vec<String>,
    plugin: Option<PluginRef>,
}

struct Plugin {
    client: DevicePluginClient<Channel>,
    options: DevicePluginOptions,
    generation: u64,
    /// Where it serves.
    socket: PathBuf,
    _watch: AbortOnDropHandle<()>,
}

impl DeviceManager {
    /// A manager of the plugins in `dir` (normally [`crate::DEVICE_PLUGIN_DIR`]), with
    /// the assignments its checkpoint there kept, counting registrations in `metrics`.
    ///
    /// # Errors
    ///
    /// When `dir` cannot be made.
    pub async fn open(dir: &Path, metrics: Arc<KubeletMetrics>) -> Result<Arc<Self>> {
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .await
            .map_err(|source| Error::Io {
                operation: "creating",
                path: dir.to_owned(),
                source,
            })?;
        let assigned = checkpoint::by_container(checkpoint::read(dir).await);
        Ok(Arc::new_cyclic(|me| Self {
            dir: dir.to_owned(),
            active: std::sync::OnceLock::new(),
            state: Mutex::new(State {
                assigned,
                ..State::default()
            }),
            checkpoint: tokio::sync::Mutex::new(()),
            me: me.clone(),
            metrics,
        }))
    }

    /// Where the active pods are learnt (set once; without it nothing is pruned).
    pub fn set_active_pods(&self, pods: Arc<dyn ActivePods>) {
        let _ = self.active.set(pods);
    }

    /// Frees the devices of pods no longer active, but never `keep`'s.
    async fn prune(&self, keep: &str) {
        let Some(active) = self.active.get() else {
            return;
        };
        let uids = active.active_pod_uids().await;
        self.lock()
            .assigned
            .retain(|(uid, _), _| uid == keep || uids.contains(uid));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves the `Registration` service on `<dir>/kubelet.sock` (replacing a stale
    /// socket: plugins watching it register again) until the future is dropped.
    ///
    /// # Errors
    ///
    /// When the socket cannot be made or the server fails.
    pub async fn serve(self: Arc<Self>) -> Result<()> {
        let path = self.dir.join(KUBELET_SOCKET);
        let listener = kubelet_grpc_uds::listen(&path)
            .await
            .map_err(|source| Error::Io {
                operation: "listening on",
                path: path.clone(),
                source,
            })?;
        info!(socket = %path.display(), "serving device plugin registration");
        tonic::transport::Server::builder()
            .add_service(RegistrationServer::new(Registrar(self)))
            .serve_with_incoming(kubelet_grpc_uds::incoming(listener))
            .await?;
        Ok(())
    }

    /// The devices of each resource: (resource, every device id), for the PodResources
    /// API's allocatable devices.
    pub fn devices(&self) -> Vec<(String, Vec<String>)> {
        self.lock()
            .resources
            .iter()
            .filter(|(_, r)| !r.devices.is_empty())
            .map(|(name, r)| (name.clone(), r.devices.keys().cloned().collect()))
            .collect()
    }

    /// The devices assigned to `container` of pod `pod_uid`: (resource, device ids).
    pub fn assigned(&self, pod_uid: &str, container: &str) -> Vec<(String, Vec<String>)> {
        self.lock()
            .assigned
            .get(&(pod_uid.to_owned(), container.to_owned()))
            .map(|by_resource| {
                by_resource
                    .iter()
                    .map(|(resource, e)| (resource.clone(), e.device_ids.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Registers a plugin serving on `socket` (after its request was checked): its
    /// devices are watched.
    fn add_plugin(&self, resource_name: &str, socket: &Path, options: DevicePluginOptions) {
        let client = DevicePluginClient::new(kubelet_grpc_uds::connect(socket, CALL_TIMEOUT));
        let mut state = self.lock();
        state.generation += 1;
        let generation = state.generation;
        let watch = tokio::spawn(watch(
            self.me.clone(),
            resource_name.to_owned(),
            generation,
            client.clone(),
        ));
        let resource = state
            .resources
            .entry(resource_name.to_owned())
            .or_insert_with(|| Resource {
                plugin: None,
                devices: BTreeMap::new(),
                stopped: None,
            });
        // A plugin registering again replaces the old one (whose watch stops).
        resource.plugin = Some(Plugin {
            client,
            options,
            generation,
            socket: socket.to_owned(),
            _watch: AbortOnDropHandle::new(watch),
        });
        resource.stopped = None;
    }

    /// A plugin's new device list.
    fn set_devices(&self, resource: &str, generation: u64, devices: BTreeMap<String, bool>) {
        let mut state = self.lock();
        if let Some(r) = state.resources.get_mut(resource)
            && r.plugin
                .as_ref()
                .is_some_and(|p| p.generation == generation)
        {
            r.devices = devices;
        }
    }

    /// A plugin's watch ended: its devices turn unhealthy until it registers again.
    fn plugin_gone(&self, resource: &str, generation: u64) {
        let mut state = self.lock();
        if let Some(r) = state.resources.get_mut(resource)
            && r.plugin
                .as_ref()
                .is_some_and(|p| p.generation == generation)
        {
            for healthy in r.devices.values_mut() {
                *healthy = false;
            }
            r.stopped = Some(Instant::now());
            // Dropping the plugin aborts this very watch task at its next await; the
            // caller returns right after.
            r.plugin = None;
        }
    }

    async fn write_checkpoint(&self) {
        let _writing = self.checkpoint.lock().await;
        let entries: Vec<Entry> = self
            .lock()
            .assigned
            .values()
            .flat_map(|by_resource| by_resource.values().cloned())
            .collect();
        if let Err(e) = checkpoint::write(&self.dir, &entries).await {
            warn!(error = %e, "writing the device checkpoint");
        }
    }

    /// The device plugin resources `container` asks for, with their counts: resources
    /// a plugin registered, and (as upstream's `isDevicePluginResource`) resources with
    /// assignments, so that a container restarted before its plugin registered again
    /// (a kubelet restart) still gets its devices from the checkpoint.
    fn requests(&self, container: &Container) -> std::result::Result<Vec<(String, usize)>, String> {
        let state = self.lock();
        let mut requests = Vec::new();
        let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
        for (name, quantity) in limits.into_iter().flatten() {
            let assigned = state
                .assigned
                .values()
                .any(|by_resource| by_resource.contains_key(name));
            if !state.resources.contains_key(name) && !assigned {
                continue;
            }
            let count = Quantity::parse(&quantity.0)
                .ok()
                .and_then(|q| usize::try_from(q.value()).ok())
                .ok_or_else(|| format!("invalid quantity {:?} of {name}", quantity.0))?;
            if count > 0 {
                requests.push((name.clone(), count));
            }
        }
        Ok(requests)
    }

    /// The healthy devices of `resource` that container `key` may be given, as
    /// upstream's `devicesToAllocate`: first those the pod's regular init containers
    /// (`reusable_from`) hold and none of its other containers does (an init container
    /// has finished before the next container starts), then the free ones.
    fn candidates(
        &self,
        key: &(String, String),
        resource: &str,
        reusable_from: &HashSet<String>,
    ) -> std::result::Result<Candidates, String> {
        let state = self.lock();
        let Some(r) = state.resources.get(resource) else {
            return Err(format!("unknown device plugin resource {resource}"));
        };
        let mut in_use = HashSet::new();
        let mut held_by_init = HashSet::new();
        for ((uid, container), by_resource) in &state.assigned {
            let Some(entry) = by_resource.get(resource) else {
                continue;
            };
            let reusable =
                uid == &key.0 && container != &key.1 && reusable_from.contains(container);
            let set = if reusable {
                &mut held_by_init
            } else {
                &mut in_use
            };
            set.extend(entry.device_ids.iter().cloned());
        }
        let healthy = |id: &String| r.devices.get(id).copied().unwrap_or(false);
        let mut reusable: Vec<String> = held_by_init
            .into_iter()
            .filter(|id| !in_use.contains(id) && healthy(id))
            .collect();
        reusable.sort();
        let free: Vec<String> = r
            .devices
            .iter()
            .filter(|(id, ok)| **ok && !in_use.contains(*id) && !reusable.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        Ok(Candidates {
            reusable,
            free,
            plugin: r.plugin.as_ref().map(|p| PluginRef {
                client: p.client.clone(),
                pre_start: p.options.pre_start_required,
                preferred: p.options.get_preferred_allocation_available,
            }),
        })
    }

    /// Picks `count` of the candidates (the plugin's `GetPreferredAllocation` when it
    /// offers one and the init containers' devices do not suffice) and reserves them for
    /// `key`.
    async fn choose_and_reserve(
        &self,
        key: &(String, String),
        resource: &str,
        count: usize,
        reusable_from: &HashSet<String>,
    ) -> std::result::Result<(Vec<String>, Option<PluginRef>), String> {
        let c = self.candidates(key, resource, reusable_from)?;
        let available = c.reusable.len() + c.free.len();
        if available < count {
            return Err(format!(
                "requested number of devices unavailable for {resource}. Requested: {count}, Available: {available}"
            ));
        }
        let mut chosen: Vec<String> = c.reusable.iter().take(count).cloned().collect();
        if chosen.len() < count {
            let need = count - chosen.len();
            let preferred = match &c.plugin {
                Some(plugin) if plugin.preferred => {
                    preferred_allocation(plugin.client.clone(), resource, &c, count).await
                }
                _ => None,
            };
            chosen = preferred.unwrap_or_else(|| {
                chosen
                    .into_iter()
                    .chain(c.free.iter().take(need).cloned())
                    .collect()
            });
        }
        let mut state = self.lock();
        let taken = state
            .assigned
            .iter()
            .filter(|((uid, container), _)| {
                !(uid == &key.0 && (container == &key.1 || reusable_from.contains(container)))
            })
            .filter_map(|(_, by_resource)| by_resource.get(resource))
            .any(|e| e.device_ids.iter().any(|id| chosen.contains(id)));
        if taken {
            return Err(format!(
                "devices of {resource} were given to another container meanwhile"
            ));
        }
        state.assigned.entry(key.clone()).or_default().insert(
            resource.to_owned(),
            Entry {
                pod_uid: key.0.clone(),
                container: key.1.clone(),
                resource: resource.to_owned(),
                device_ids: chosen.clone(),
                response: String::new(),
            },
        );
        Ok((chosen, c.plugin))
    }

    fn unreserve(&self, key: &(String, String), resource: &str) {
        let mut state = self.lock();
        if let Some(by_resource) = state.assigned.get_mut(key) {
            by_resource.remove(resource);
            if by_resource.is_empty() {
                state.assigned.remove(key);
            }
        }
    }

    fn plugin_of(&self, resource: &str) -> Option<PluginRef> {
        self.lock()
            .resources
            .get(resource)
            .and_then(|r| r.plugin.as_ref())
            .map(|p| PluginRef {
                client: p.client.clone(),
                pre_start: p.options.pre_start_required,
                preferred: p.options.get_preferred_allocation_available,
            })
    }
}

/// Follows one plugin's `ListAndWatch` until it ends.
async fn watch(
    manager: Weak<DeviceManager>,
    resource: String,
    generation: u64,
    mut client: DevicePluginClient<Channel>,
) {
    let stream = tokio::time::timeout(CALL_TIMEOUT, client.list_and_watch(Empty {})).await;
    match stream {
        Ok(Ok(stream)) => {
            let mut stream = stream.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(list)) => {
                        let Some(manager) = manager.upgrade() else {
                            return;
                        };
                        let devices: BTreeMap<String, bool> = list
                            .devices
                            .into_iter()
                            .map(|d| (d.id, d.health == HEALTHY))
                            .collect();
                        info!(resource = %resource, devices = devices.len(),
                            healthy = devices.values().filter(|h| **h).count(), "device plugin devices");
                        manager.set_devices(&resource, generation, devices);
                    }
                    Ok(None) => {
                        info!(resource = %resource, "device plugin ended its device list");
                        break;
                    }
                    Err(e) => {
                        warn!(resource = %resource, error = %e, "device plugin's device list failed");
                        break;
                    }
                }
            }
        }
        Ok(Err(e)) => {
            warn!(resource = %resource, error = %e, "ListAndWatch of a device plugin failed")
        }
        Err(_) => {
            warn!(resource = %resource, "ListAndWatch of a device plugin: no answer within {CALL_TIMEOUT:?}")
        }
    }
    if let Some(manager) = manager.upgrade() {
        manager.plugin_gone(&resource, generation);
    }
}

/// The registration service.
struct Registrar(Arc<DeviceManager>);

#[tonic::async_trait]
impl Registration for Registrar {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> std::result::Result<Response<Empty>, Status> {
        let request = request.into_inner();
        info!(resource = %request.resource_name, endpoint = %request.endpoint, "Got registration request from device plugin with resource");
        self.0
            .metrics
            .device_plugin_registration_total
            .inc(&[request.resource_name.as_str()]);
        if request.version != VERSION {
            // A plain error from upstream's handler: code Unknown.
            return Err(Status::unknown(format!(
                "requested API version {:?} is not supported by kubelet. Supported version is [\"{VERSION}\"]",
                request.version
            )));
        }
        if !is_extended_resource_name(&request.resource_name) {
            return Err(Status::unknown(format!(
                "the ResourceName {:?} is invalid",
                request.resource_name
            )));
        }
        if request.endpoint.is_empty() || request.endpoint.contains('/') {
            return Err(Status::unknown(format!(
                "invalid endpoint {:?}: a socket name in {}",
                request.endpoint,
                self.0.dir.display()
            )));
        }
        let socket = self.0.dir.join(&request.endpoint);
        self.0.add_plugin(
            &request.resource_name,
            &socket,
            request.options.unwrap_or_default(),
        );
        Ok(Response::new(Empty {}))
    }
}

/// Device plugins found by the plugin manager in `<root-dir>/plugins_registry`
/// (upstream's watcher mode, `GetWatcherHandler`): the plugin's name is its resource,
/// its endpoint the socket serving the device plugin API.
#[async_trait]
impl PluginHandler for DeviceManager {
    async fn validate(
        &self,
        name: &str,
        endpoint: &str,
        versions: &[String],
    ) -> std::result::Result<(), HandlerError> {
        info!(
            resource = name,
            endpoint,
            ?versions,
            "Got plugin at endpoint with versions"
        );
        if !versions.iter().any(|v| v == VERSION) {
            return Err(format!(
                "manager version, {VERSION}, is not among plugin supported versions {versions:?}"
            )
            .into());
        }
        if !is_extended_resource_name(name) {
            return Err(format!(
                "invalid name of device plugin socket: the ResourceName {name:?} is invalid"
            )
            .into());
        }
        Ok(())
    }

    async fn register(
        &self,
        name: &str,
        endpoint: &str,
        _versions: &[String],
    ) -> std::result::Result<(), HandlerError> {
        let socket = PathBuf::from(endpoint);
        let mut client = DevicePluginClient::new(kubelet_grpc_uds::connect(&socket, CALL_TIMEOUT));
        let options = match tokio::time::timeout(
            CALL_TIMEOUT,
            client.get_device_plugin_options(Empty {}),
        )
        .await
        {
            Ok(Ok(options)) => options.into_inner(),
            Ok(Err(status)) => {
                return Err(format!(
                    "GetDevicePluginOptions of device plugin {name} at {endpoint}: {}",
                    status.message()
                )
                .into());
            }
            Err(_) => {
                return Err(format!(
                    "GetDevicePluginOptions of device plugin {name} at {endpoint}: no answer within {CALL_TIMEOUT:?}"
                )
                .into());
            }
        };
        info!(
            resource = name,
            endpoint, "device plugin registered through the plugin manager"
        );
        self.add_plugin(name, &socket, options);
        Ok(())
    }

    async fn deregister(&self, name: &str, endpoint: &str) {
        let generation = self
            .lock()
            .resources
            .get(name)
            .and_then(|r| r.plugin.as_ref())
            .filter(|p| p.socket == Path::new(endpoint))
            .map(|p| p.generation);
        if let Some(generation) = generation {
            info!(resource = name, endpoint, "device plugin deregistered");
            self.plugin_gone(name, generation);
        }
    }
}

/// Upstream `IsExtendedResourceName`: qualified, not in the `kubernetes.io` domain, not
/// `requests.`-prefixed.
fn is_extended_resource_name(name: &str) -> bool {
    let Some((domain, _)) = name.split_once('/') else {
        return false;
    };
    let native = domain == "kubernetes.io" || domain.ends_with(".kubernetes.io");
    !native
        && !name.starts_with("requests.")
        && kubelet_core::validation::qualified_name_errors(name).is_empty()
        && kubelet_core::validation::qualified_name_errors(&format!("requests.{name}")).is_empty()
}

impl ExtendedResources for DeviceManager {
    fn extended_resources(&self) -> BTreeMap<String, ExtendedResource> {
        let state = self.lock();
        state
            .resources
            .iter()
            .map(|(name, r)| {
                let expired =
                    r.plugin.is_none() && r.stopped.is_none_or(|t| t.elapsed() > STOP_GRACE);
                let resource = if expired {
                    ExtendedResource::default()
                } else {
                    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                    ExtendedResource {
                        capacity: count(r.devices.len()),
                        allocatable: count(r.devices.values().filter(|h| **h).count()),
                    }
                };
                (name.clone(), resource)
            })
            .collect()
    }
}

#[async_trait]
impl DeviceAllocator for DeviceManager {
    async fn allocate(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> kubelet_core::Result<ContainerDevices> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = (uid, container.name.clone());
        let fail = |reason: String| kubelet_core::Error::Invalid {
            what: format!("devices of container {:?}", container.name),
            reason: format!("Allocate failed due to {reason}, which is unexpected"),
        };
        let requests = self.requests(container).map_err(fail)?;
        // Regular init containers run to completion one after the other, before the
        // app containers: their devices can be given again within the pod.
        let reusable_from: HashSet<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() != Some("Always"))
            .map(|c| c.name.clone())
            .collect();
        let mut result = ContainerDevices::default();
        let mut changed = false;
        for (resource, count) in requests {
            let existing = self
                .lock()
                .assigned
                .get(&key)
                .and_then(|by_resource| by_resource.get(&resource))
                .filter(|e| !e.response.is_empty())
                .cloned();
            let (entry, plugin) = match existing {
                Some(entry) => {
                    let plugin = self.plugin_of(&resource);
                    (entry, plugin)
                }
                None => {
                    // Freed devices reach the checkpoint with this allocation.
                    self.prune(&key.0).await;
                    let (ids, plugin) = self
                        .choose_and_reserve(&key, &resource, count, &reusable_from)
                        .await
                        .map_err(fail)?;
                    let Some(PluginRef {
                        mut client,
                        pre_start,
                        preferred,
                    }) = plugin
                    else {
                        self.unreserve(&key, &resource);
                        return Err(fail(format!(
                            "the device plugin of {resource} is not registered"
                        )));
                    };
                    let response = match call_allocate(&mut client, &resource, ids.clone()).await {
                        Ok(response) => response,
                        Err(reason) => {
                            self.unreserve(&key, &resource);
                            return Err(fail(reason));
                        }
                    };
                    let entry = Entry {
                        pod_uid: key.0.clone(),
                        container: key.1.clone(),
                        resource: resource.clone(),
                        device_ids: ids,
                        response: Entry::encode_response(&response.encode_to_vec()),
                    };
                    self.lock()
                        .assigned
                        .entry(key.clone())
                        .or_default()
                        .insert(resource.clone(), entry.clone());
                    changed = true;
                    (
                        entry,
                        Some(PluginRef {
                            client,
                            pre_start,
                            preferred,
                        }),
                    )
                }
            };
            if let Some(PluginRef {
                mut client,
                pre_start: true,
                ..
            }) = plugin
            {
                let request = PreStartContainerRequest {
                    devices_ids: entry.device_ids.clone(),
                };
                match tokio::time::timeout(CALL_TIMEOUT, client.pre_start_container(request)).await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(status)) => {
                        return Err(fail(format!(
                            "PreStartContainer of {resource}: {}",
                            status.message()
                        )));
                    }
                    Err(_) => {
                        return Err(fail(format!(
                            "PreStartContainer of {resource}: no answer within {CALL_TIMEOUT:?}"
                        )));
                    }
                }
            }
            let response = ContainerAllocateResponse::decode(entry.response_bytes().as_slice())
                .map_err(|e| fail(format!("the kept answer of {resource}'s plugin: {e}")))?;
            merge(&mut result, response);
        }
        if changed {
            self.write_checkpoint().await;
        }
        Ok(result)
    }

    async fn release(&self, pod_uid: &str) {
        let released = {
            let mut state = self.lock();
            let before = state.assigned.len();
            state.assigned.retain(|(uid, _), _| uid != pod_uid);
            state.assigned.len() != before
        };
        if released {
            self.write_checkpoint().await;
        }
    }
}

/// The plugin's choice of `count` among the candidates, the init containers' devices
/// included (upstream `callGetPreferredAllocationIfAvailable`); `None` (the kubelet
/// chooses) when the call fails or the answer is not a valid choice.
async fn preferred_allocation(
    mut client: DevicePluginClient<Channel>,
    resource: &str,
    c: &Candidates,
    count: usize,
) -> Option<Vec<String>> {
    let available: Vec<String> = c.reusable.iter().chain(&c.free).cloned().collect();
    let request = PreferredAllocationRequest {
        container_requests: vec![ContainerPreferredAllocationRequest {
            available_device_i_ds: available.clone(),
            must_include_device_i_ds: c.reusable.clone(),
            allocation_size: i32::try_from(count).ok()?,
        }],
    };
    let answer = match tokio::time::timeout(CALL_TIMEOUT, client.get_preferred_allocation(request))
        .await
    {
        Ok(Ok(answer)) => answer.into_inner(),
        Ok(Err(status)) => {
            warn!(resource, error = %status.message(), "GetPreferredAllocation failed; choosing devices without it");
            return None;
        }
        Err(_) => {
            warn!(
                resource,
                "GetPreferredAllocation: no answer within {CALL_TIMEOUT:?}; choosing devices without it"
            );
            return None;
        }
    };
    let ids = answer.container_responses.into_iter().next()?.device_i_ds;
    let distinct: HashSet<&String> = ids.iter().collect();
    let valid = ids.len() == count
        && distinct.len() == count
        && ids.iter().all(|id| available.contains(id))
        && c.reusable.iter().all(|id| ids.contains(id));
    if !valid {
        warn!(
            resource,
            ?ids,
            "GetPreferredAllocation answered no valid choice; choosing devices without it"
        );
        return None;
    }
    Some(ids)
}

/// One plugin `Allocate` of `ids` for one container, bounded; the error is the reason.
async fn call_allocate(
    client: &mut DevicePluginClient<Channel>,
    resource: &str,
    ids: Vec<String>,
) -> std::result::Result<ContainerAllocateResponse, String> {
    let request = AllocateRequest {
        container_requests: vec![ContainerAllocateRequest { devices_ids: ids }],
    };
    match tokio::time::timeout(CALL_TIMEOUT, client.allocate(request)).await {
        Ok(Ok(r)) => r
            .into_inner()
            .container_responses
            .into_iter()
            .next()
            .ok_or_else(|| format!("Allocate of {resource}: no container response")),
        Ok(Err(status)) => Err(format!("Allocate of {resource}: {}", status.message())),
        Err(_) => Err(format!(
            "Allocate of {resource}: no answer within {CALL_TIMEOUT:?}"
        )),
    }
}

/// Adds one plugin's answer to what the container gets.
fn merge(into: &mut ContainerDevices, response: ContainerAllocateResponse) {
    let envs: BTreeMap<String, String> = response.envs.into_iter().collect();
    into.envs.extend(envs);
    into.mounts
        .extend(response.mounts.into_iter().map(|m| Mount {
            container_path: m.container_path,
            host_path: m.host_path,
            readonly: m.read_only,
            selinux_relabel: false,
            propagation: MountPropagation::Private,
        }));
    into.devices
        .extend(response.devices.into_iter().map(|d| Device {
            container_path: d.container_path,
            host_path: d.host_path,
            permissions: d.permissions,
        }));
    into.annotations.extend(response.annotations);
    into.cdi_devices
        .extend(response.cdi_devices.into_iter().map(|d| d.name));
}
