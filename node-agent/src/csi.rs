//! The API side of CSI on this node (upstream's `nodeinfomanager`): registered drivers
//! recorded in the CSINode object and on the Node, CSIDriver and VolumeAttachment reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSINode, CSINodeDriver, CSINodeSpec, VolumeAttachment, VolumeNodeResources,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kubelet_csi::{CsiObjects, NodeDriver};
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::REQUEST_TIMEOUT;
use crate::objects::read_once;

/// The Node annotation mapping each CSI driver to its ID of this node.
pub const NODE_ID_ANNOTATION: &str = "csi.volume.kubernetes.io/nodeid";

/// How often an update that lost a race is tried again.
const CONFLICT_RETRIES: usize = 5;

/// How long a CSI volume's set-up waits for the first list of CSIDrivers before it
/// reads its driver's object directly.
const FIRST_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Every CSIDriver object, from a watch started when first needed.
struct DriverWatch {
    store: Store<CSIDriver>,
    _task: AbortOnDropHandle<()>,
}

/// [`CsiObjects`] through the API server, as the node's own identity (the Node
/// authorizer lets a node read CSIDrivers and its VolumeAttachments and write its own
/// CSINode).
#[derive(Clone)]
pub struct ApiCsiObjects {
    client: kube::Client,
    watch_client: kube::Client,
    node_name: String,
    drivers: Arc<tokio::sync::OnceCell<DriverWatch>>,
}

impl std::fmt::Debug for ApiCsiObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCsiObjects")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

fn failed(what: &str, reason: impl std::fmt::Display) -> kubelet_core::Error {
    kubelet_core::Error::Invalid {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

/// One request, bounded as every request.
async fn bounded<T>(
    what: &str,
    request: impl std::future::Future<Output = kube::Result<T>>,
) -> kubelet_core::Result<kube::Result<T>> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| failed(what, format!("no answer within {REQUEST_TIMEOUT:?}")))
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl ApiCsiObjects {
    /// CSI objects of node `node_name`: requests through `client`, the CSIDriver watch
    /// through `watch_client` (without a request deadline).
    pub fn new(client: kube::Client, watch_client: kube::Client, node_name: &str) -> Self {
        Self {
            client,
            watch_client,
            node_name: node_name.to_owned(),
            drivers: Arc::default(),
        }
    }

    /// The CSIDriver watch (upstream's informer), started on first use.
    async fn driver_watch(&self) -> &DriverWatch {
        self.drivers
            .get_or_init(|| async {
                let (store, writer) = reflector::store();
                let api: Api<CSIDriver> = Api::all(self.watch_client.clone());
                let task = tokio::spawn(async move {
                    let mut events = reflector::reflector(
                        writer,
                        watcher::watcher(api, watcher::Config::default()).default_backoff(),
                    )
                    .boxed();
                    while let Some(event) = events.next().await {
                        if let Err(e) = event {
                            warn!(error = %e, "watching CSIDrivers");
                        }
                    }
                });
                DriverWatch {
                    store,
                    _task: AbortOnDropHandle::new(task),
                }
            })
            .await
    }

    /// Sets (or with `None` removes) the driver's entry of the node ID annotation and
    /// adds its topology labels.
    async fn update_node(
        &self,
        driver: &str,
        node_id: Option<&str>,
        topology: &BTreeMap<String, String>,
    ) -> kubelet_core::Result<()> {
        let what = format!("node {}", self.node_name);
        let api: Api<Node> = Api::all(self.client.clone());
        let node = bounded(&what, api.get(&self.node_name))
            .await?
            .map_err(|e| failed(&what, e))?;
        let annotations = node.metadata.annotations.unwrap_or_default();
        let mut ids: BTreeMap<String, String> = annotations
            .get(NODE_ID_ANNOTATION)
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        let changed = match node_id {
            Some(id) => ids.insert(driver.to_owned(), id.to_owned()).as_deref() != Some(id),
            None => ids.remove(driver).is_some(),
        };
        let labels = node.metadata.labels.unwrap_or_default();
        let new_labels: BTreeMap<&String, &String> = topology
            .iter()
            .filter(|(k, v)| labels.get(*k) != Some(*v))
            .collect();
        if !changed && new_labels.is_empty() {
            return Ok(());
        }
        let annotation = if ids.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(serde_json::to_string(&ids).unwrap_or_default())
        };
        let patch = serde_json::json!({
            "metadata": {
                "annotations": { NODE_ID_ANNOTATION: annotation },
                "labels": new_labels,
            }
        });
        bounded(
            &what,
            api.patch(
                &self.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ),
        )
        .await?
        .map_err(|e| failed(&what, e))?;
        Ok(())
    }

    /// Applies `change` to the CSINode object's drivers (made, owned by the Node, when
    /// missing and `change` adds something), retrying lost races.
    async fn update_csi_node(
        &self,
        change: impl Fn(&mut Vec<CSINodeDriver>) -> bool,
    ) -> kubelet_core::Result<()> {
        let what = format!("csinode {}", self.node_name);
        let api: Api<CSINode> = Api::all(self.client.clone());
        for _ in 0..CONFLICT_RETRIES {
            let current = read_once(api.clone(), &self.node_name, &what).await?;
            let Some(mut csi_node) = current else {
                let mut drivers = Vec::new();
                if !change(&mut drivers) {
                    return Ok(());
                }
                let nodes: Api<Node> = Api::all(self.client.clone());
                let node = bounded(&what, nodes.get(&self.node_name))
                    .await?
                    .map_err(|e| failed(&what, e))?;
                let csi_node = CSINode {
                    metadata: ObjectMeta {
                        name: Some(self.node_name.clone()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".to_owned(),
                            kind: "Node".to_owned(),
                            name: self.node_name.clone(),
                            uid: node.metadata.uid.unwrap_or_default(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    spec: CSINodeSpec { drivers },
                    status: None,
                };
                match bounded(&what, api.create(&PostParams::default(), &csi_node)).await? {
                    Ok(_) => {
                        info!(node = %self.node_name, "CSINode object created");
                        return Ok(());
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(failed(&what, e)),
                }
            };
            if !change(&mut csi_node.spec.drivers) {
                return Ok(());
            }
            match bounded(
                &what,
                api.replace(&self.node_name, &PostParams::default(), &csi_node),
            )
            .await?
            {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) => {
                    debug!(node = %self.node_name, "CSINode changed meanwhile; again")
                }
                Err(e) => return Err(failed(&what, e)),
            }
        }
        Err(failed(&what, "it kept changing while being updated"))
    }
}

#[async_trait]
impl CsiObjects for ApiCsiObjects {
    async fn csi_driver(&self, name: &str) -> kubelet_core::Result<Option<CSIDriver>> {
        let watch = self.driver_watch().await;
        match tokio::time::timeout(FIRST_LIST_WAIT, watch.store.wait_until_ready()).await {
            Ok(Ok(())) => Ok(watch
                .store
                .get(&ObjectRef::new(name))
                .map(|driver| (*driver).clone())),
            _ => {
                read_once(
                    Api::all(self.client.clone()),
                    name,
                    &format!("csidriver {name}"),
                )
                .await
            }
        }
    }

    async fn volume_attachment(
        &self,
        name: &str,
    ) -> kubelet_core::Result<Option<VolumeAttachment>> {
        read_once(
            Api::all(self.client.clone()),
            name,
            &format!("volumeattachment {name}"),
        )
        .await
    }

    async fn install_driver(&self, driver: &NodeDriver) -> kubelet_core::Result<()> {
        self.update_node(&driver.name, Some(&driver.node_id), &driver.topology)
            .await?;
        let entry = CSINodeDriver {
            name: driver.name.clone(),
            node_id: driver.node_id.clone(),
            topology_keys: (!driver.topology.is_empty())
                .then(|| driver.topology.keys().cloned().collect()),
            allocatable: driver.max_volumes.map(|count| VolumeNodeResources {
                count: i32::try_from(count).ok(),
            }),
        };
        self.update_csi_node(|drivers| {
            if drivers.contains(&entry) {
                return false;
            }
            drivers.retain(|d| d.name != entry.name);
            drivers.push(entry.clone());
            true
        })
        .await
    }

    async fn uninstall_driver(&self, name: &str) -> kubelet_core::Result<()> {
        self.update_csi_node(|drivers| {
            let before = drivers.len();
            drivers.retain(|d| d.name != name);
            drivers.len() != before
        })
        .await?;
        self.update_node(name, None, &BTreeMap::new()).await
    }
}
