//! ConfigMaps, Secrets and Services for the pods of this node, from watches (upstream's
//! watch-based configmap and secret managers and the service informer).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::node::v1::RuntimeClass;
use kubelet_core::{ObjectSource, ServiceAccountToken, VolumeSources};

use kubelet_pod_manager::spec::EnvObjects;

/// How long a sync waits for a newly referenced object's first list.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

/// What a watch of one object knows: `None` before its first list, then the object or
/// `Some(None)` when it does not exist.
type Known<K> = Option<Option<K>>;

/// A watched object; its watch stops when this goes (no pod references it any more).
struct Watched<K> {
    state: watch::Receiver<Known<K>>,
    _task: AbortOnDropHandle<()>,
}

/// One kind of namespaced object, each watched by name while a pod references it.
struct ByName<K> {
    objects: Mutex<HashMap<(String, String), Watched<K>>>,
}

impl<K> Default for ByName<K> {
    fn default() -> Self {
        Self {
            objects: Mutex::default(),
        }
    }
}

impl<K> ByName<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Watched<K>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching `namespace/name` unless already watched; the receiver of its state.
    /// `changed` is called on every change after the first list.
    fn watch(
        &self,
        client: &kube::Client,
        key: &(String, String),
        changed: impl Fn() + Send + 'static,
    ) -> watch::Receiver<Known<K>> {
        let mut objects = self.lock();
        if let Some(w) = objects.get(key) {
            return w.state.clone();
        }
        let (tx, rx) = watch::channel(None);
        let api: Api<K> = Api::namespaced(client.clone(), &key.0);
        // A single-name field selector is what the Node authorizer lets a node list and
        // watch, and only for objects its pods reference.
        let config = watcher::Config::default().fields(&format!("metadata.name={}", key.1));
        let what = format!("{}/{}", key.0, key.1);
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, config).default_backoff().boxed();
            let mut listed: Option<K> = None;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Init) => listed = None,
                    Ok(Event::InitApply(object)) => listed = Some(object),
                    Ok(Event::InitDone) => {
                        tx.send_replace(Some(listed.take()));
                    }
                    Ok(Event::Apply(object)) => {
                        tx.send_replace(Some(Some(object)));
                        changed();
                    }
                    Ok(Event::Delete(_)) => {
                        tx.send_replace(Some(None));
                        changed();
                    }
                    Err(e) => debug!(object = %what, error = %e, "watching an object"),
                }
            }
        });
        objects.insert(
            key.clone(),
            Watched {
                state: rx.clone(),
                _task: AbortOnDropHandle::new(task),
            },
        );
        rx
    }

    /// The object for a volume: watched (if no pod's `prepare` did it yet) and waited
    /// for until its first list; an error naming it while it cannot be known.
    async fn lookup(
        &self,
        client: &kube::Client,
        kind: &str,
        namespace: &str,
        name: &str,
        changed: impl Fn() + Send + 'static,
    ) -> kubelet_core::Result<Option<K>> {
        let key = (namespace.to_owned(), name.to_owned());
        let state = self.watch(client, &key, changed);
        let deadline = tokio::time::Instant::now() + FIRST_LIST_WAIT;
        first_list(state.clone(), deadline).await;
        let known = state.borrow().clone();
        known.ok_or_else(|| kubelet_core::Error::Invalid {
            what: format!("{kind} {namespace}/{name}"),
            reason: format!("failed to sync {kind} cache: timed out waiting for the condition"),
        })
    }

    fn retain(&self, wanted: &HashSet<(String, String)>) {
        self.lock().retain(|key, _| wanted.contains(key));
    }
}

/// The objects each pod references.
#[derive(Default)]
struct References {
    config_maps: HashSet<(String, String)>,
    secrets: HashSet<(String, String)>,
}

/// ConfigMaps and Secrets that this node's pods reference (env `valueFrom`, `envFrom`,
/// imagePullSecrets), each watched by name while some pod needs it, and all Services
/// for the service-link environment.
#[derive(Clone)]
pub struct ApiObjects {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiObjects").finish_non_exhaustive()
    }
}

struct Inner {
    client: kube::Client,
    config_maps: ByName<ConfigMap>,
    secrets: ByName<Secret>,
    by_pod: Mutex<HashMap<String, References>>,
    services: watch::Receiver<Option<BTreeMap<(String, String), Service>>>,
    _services_task: AbortOnDropHandle<()>,
    /// Wakes the pods that reference an object that changed, so their volumes follow.
    poker: std::sync::OnceLock<kubelet_pod_manager::PodPoker>,
}

/// Which kind of object changed.
#[derive(Clone, Copy)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Inner {
    /// A callback for the watch of `key`: pokes every pod that references it.
    fn on_change(
        self: &Arc<Self>,
        kind: Kind,
        key: &(String, String),
    ) -> impl Fn() + Send + 'static {
        let inner = Arc::downgrade(self);
        let key = key.clone();
        move || {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let Some(poker) = inner.poker.get() else {
                return;
            };
            let uids: Vec<String> = inner
                .by_pod
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(_, refs)| match kind {
                    Kind::ConfigMap => refs.config_maps.contains(&key),
                    Kind::Secret => refs.secrets.contains(&key),
                })
                .map(|(uid, _)| uid.clone())
                .collect();
            for uid in uids {
                poker.poke(&uid);
            }
        }
    }
}

impl ApiObjects {
    /// Starts the Service watch (needs a tokio runtime); ConfigMaps and Secrets are
    /// watched as pods reference them.
    pub fn start(client: kube::Client) -> Self {
        let (tx, services) = watch::channel(None);
        let api: Api<Service> = Api::all(client.clone());
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut current: BTreeMap<(String, String), Service> = BTreeMap::new();
            let mut listing: Option<BTreeMap<(String, String), Service>> = None;
            let mut synced = false;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Init) => listing = Some(BTreeMap::new()),
                    Ok(Event::InitApply(s)) => {
                        if let Some(l) = listing.as_mut() {
                            l.insert(key_of(&s), s);
                        }
                    }
                    Ok(Event::InitDone) => {
                        current = listing.take().unwrap_or_default();
                        synced = true;
                    }
                    Ok(Event::Apply(s)) => {
                        current.insert(key_of(&s), s);
                    }
                    Ok(Event::Delete(s)) => {
                        current.remove(&key_of(&s));
                    }
                    Err(e) => {
                        warn!(error = %e, "watching services");
                        continue;
                    }
                }
                if synced {
                    tx.send_replace(Some(current.clone()));
                }
            }
        });
        Self {
            inner: Arc::new(Inner {
                client,
                config_maps: ByName::default(),
                secrets: ByName::default(),
                by_pod: Mutex::default(),
                services,
                _services_task: AbortOnDropHandle::new(task),
                poker: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The ServiceAccount `namespace/name`, read once (a GET the Node authorizer allows
    /// for the service accounts of this node's pods; image credential providers in
    /// token mode need its UID and annotations).
    pub async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<ServiceAccount> {
        let api: Api<ServiceAccount> = Api::namespaced(self.inner.client.clone(), namespace);
        let fail = |reason: String| kubelet_core::Error::Invalid {
            what: format!("service account {namespace}/{name}"),
            reason,
        };
        tokio::time::timeout(crate::REQUEST_TIMEOUT, api.get(name))
            .await
            .map_err(|_| fail(format!("no answer within {:?}", crate::REQUEST_TIMEOUT)))?
            .map_err(|e| fail(e.to_string()))
    }

    /// Wakes, through `poker`, the pods that reference a ConfigMap or Secret when it
    /// changes, so their volumes are updated at once rather than on the next periodic
    /// sync. Set once; later calls are ignored.
    pub fn poke_pods_on_change(&self, poker: kubelet_pod_manager::PodPoker) {
        let _ = self.inner.poker.set(poker);
    }

    fn lock_pods(&self) -> MutexGuard<'_, HashMap<String, References>> {
        self.inner.by_pod.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the watches no pod needs any more.
    fn prune(&self) {
        let (config_maps, secrets) = {
            let pods = self.lock_pods();
            let mut config_maps = HashSet::new();
            let mut secrets = HashSet::new();
            for refs in pods.values() {
                config_maps.extend(refs.config_maps.iter().cloned());
                secrets.extend(refs.secrets.iter().cloned());
            }
            (config_maps, secrets)
        };
        self.inner.config_maps.retain(&config_maps);
        self.inner.secrets.retain(&secrets);
    }
}

fn key_of<K: kube::Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The ConfigMaps and Secrets a pod references by name, as upstream's
/// `podutil.VisitPodConfigmapNames` / `VisitPodSecretNames` (env and envFrom of every
/// container, ephemeral ones included, imagePullSecrets, and the configMap, secret and
/// projected volumes).
pub(crate) fn references(pod: &Pod) -> (HashSet<String>, HashSet<String>) {
    let (mut config_maps, mut secrets) = kubelet_pod_manager::spec::env_references(pod);
    let Some(spec) = &pod.spec else {
        return (config_maps, secrets);
    };
    for s in spec.image_pull_secrets.iter().flatten() {
        secrets.insert(s.name.clone());
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            config_maps.insert(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &source.config_map {
                config_maps.insert(c.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    config_maps.retain(|n| !n.is_empty());
    secrets.retain(|n| !n.is_empty());
    (config_maps, secrets)
}

/// Waits until `state` has had its first list, at most until `deadline`.
async fn first_list<K>(mut state: watch::Receiver<Known<K>>, deadline: tokio::time::Instant) {
    let _ = tokio::time::timeout_at(deadline, state.wait_for(Option::is_some)).await;
}

#[async_trait]
impl EnvObjects for ApiObjects {
    fn services(&self) -> Option<Vec<Service>> {
        // Before the first list there are none: upstream fails the container's start
        // rather than start it with missing variables.
        let services = self.inner.services.borrow();
        Some(services.as_ref()?.values().cloned().collect())
    }

    async fn prepare(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (config_maps, secrets) = references(pod);
        let refs = References {
            config_maps: config_maps
                .into_iter()
                .map(|n| (namespace.clone(), n))
                .collect(),
            secrets: secrets
                .into_iter()
                .map(|n| (namespace.clone(), n))
                .collect(),
        };
        let deadline = tokio::time::Instant::now() + FIRST_LIST_WAIT;
        let client = &self.inner.client;
        let config_map_states: Vec<_> = refs
            .config_maps
            .iter()
            .map(|key| {
                let changed = self.inner.on_change(Kind::ConfigMap, key);
                self.inner.config_maps.watch(client, key, changed)
            })
            .collect();
        let secret_states: Vec<_> = refs
            .secrets
            .iter()
            .map(|key| {
                let changed = self.inner.on_change(Kind::Secret, key);
                self.inner.secrets.watch(client, key, changed)
            })
            .collect();
        let replaced = self.lock_pods().insert(uid, refs);
        if replaced.is_some() {
            self.prune();
        }
        for state in config_map_states {
            first_list(state, deadline).await;
        }
        for state in secret_states {
            first_list(state, deadline).await;
        }
        let mut services = self.inner.services.clone();
        let _ = tokio::time::timeout_at(deadline, services.wait_for(Option::is_some)).await;
    }

    fn release(&self, pod_uid: &str) {
        if self.lock_pods().remove(pod_uid).is_some() {
            self.prune();
        }
    }
}

/// RuntimeClasses are read when a pod's sandbox is created, which is rare enough that a
/// GET serves where upstream keeps an informer of them all.
#[async_trait]
impl kubelet_pod_manager::RuntimeClasses for ApiObjects {
    async fn handler(&self, name: &str) -> Result<String, String> {
        let api: Api<RuntimeClass> = Api::all(self.inner.client.clone());
        // The client watches (no request deadline): bound this request itself.
        let got = tokio::time::timeout(crate::REQUEST_TIMEOUT, api.get(name))
            .await
            .map_err(|_| {
                format!(
                    "failed to lookup RuntimeClass {name}: no answer within {:?}",
                    crate::REQUEST_TIMEOUT
                )
            })?;
        match got {
            Ok(class) => Ok(class.handler),
            // Upstream's lister says it this way (singular resource).
            Err(kube::Error::Api(status)) if status.code == 404 => {
                Err(format!("runtimeclass.node.k8s.io {name:?} not found"))
            }
            Err(e) => Err(format!("failed to lookup RuntimeClass {name}: {e}")),
        }
    }
}

/// Each object is watched by name (if no pod's `prepare` did it yet) and waited for
/// until its first list.
#[async_trait]
impl ObjectSource for ApiObjects {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<Option<ConfigMap>> {
        let key = (namespace.to_owned(), name.to_owned());
        let changed = self.inner.on_change(Kind::ConfigMap, &key);
        self.inner
            .config_maps
            .lookup(&self.inner.client, "configmap", namespace, name, changed)
            .await
    }

    async fn secret(&self, namespace: &str, name: &str) -> kubelet_core::Result<Option<Secret>> {
        let key = (namespace.to_owned(), name.to_owned());
        let changed = self.inner.on_change(Kind::Secret, &key);
        self.inner
            .secrets
            .lookup(&self.inner.client, "secret", namespace, name, changed)
            .await
    }
}

#[async_trait]
impl VolumeSources for ApiObjects {
    async fn service_account_token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> kubelet_core::Result<ServiceAccountToken> {
        let r = kubelet_core::PodRef::of(pod);
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        // As upstream's projected volume: an empty audience means the API server's own.
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: audience
                    .filter(|a| !a.is_empty())
                    .map(|a| vec![a.to_owned()]),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    name: Some(r.name.clone()),
                    uid: Some(r.uid.clone()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.inner.client.clone(), &r.namespace);
        let fail = |reason: String| kubelet_core::Error::Invalid {
            what: format!("token for service account {}/{account}", r.namespace),
            reason,
        };
        let created = tokio::time::timeout(
            crate::REQUEST_TIMEOUT,
            api.create_token_request(&account, &Default::default(), &request),
        )
        .await
        .map_err(|_| fail(format!("no answer within {:?}", crate::REQUEST_TIMEOUT)))?
        .map_err(|e| fail(e.to_string()))?;
        let status = created.status.unwrap_or_default();
        let (Some(token), Some(expires)) = (status.token, status.expiration_timestamp) else {
            return Err(fail(
                "the API server returned no token or no expiration".to_owned(),
            ));
        };
        let expiration = std::time::SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(expires.0.as_second()).unwrap_or_default());
        Ok(ServiceAccountToken { token, expiration })
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<Option<PersistentVolumeClaim>> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.inner.client.clone(), namespace);
        read_once(
            api,
            name,
            &format!("persistentvolumeclaim {namespace}/{name}"),
        )
        .await
    }

    async fn persistent_volume(
        &self,
        name: &str,
    ) -> kubelet_core::Result<Option<PersistentVolume>> {
        let api: Api<PersistentVolume> = Api::all(self.inner.client.clone());
        read_once(api, name, &format!("persistentvolume {name}")).await
    }
}

/// One GET (the Node authorizer allows it for the claims of this node's pods and the
/// volumes they are bound to), bounded as every request; `None` when it does not exist.
pub(crate) async fn read_once<K>(
    api: Api<K>,
    name: &str,
    what: &str,
) -> kubelet_core::Result<Option<K>>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let fail = |reason: String| kubelet_core::Error::Invalid {
        what: what.to_owned(),
        reason,
    };
    tokio::time::timeout(crate::REQUEST_TIMEOUT, api.get_opt(name))
        .await
        .map_err(|_| fail(format!("no answer within {:?}", crate::REQUEST_TIMEOUT)))?
        .map_err(|e| fail(e.to_string()))
}
