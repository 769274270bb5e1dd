//! What the CSI plugin needs from the API server, behind a seam (the node agent
//! implements it with its client; standalone kubelets have [`NoCsiObjects`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kubelet_core::Result;

/// A driver as installed on the node: what its `NodeGetInfo` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDriver {
    /// The driver's name.
    pub name: String,
    /// The driver's ID of this node (`CSINode.spec.drivers[].nodeID` and the Node's
    /// `csi.volume.kubernetes.io/nodeid` annotation).
    pub node_id: String,
    /// How many of its volumes the node takes, if the driver says
    /// (`allocatable.count`).
    pub max_volumes: Option<i64>,
    /// The node's topology segments for this driver (labels of the Node, their keys the
    /// driver's `topologyKeys`).
    pub topology: BTreeMap<String, String>,
}

/// The API objects of CSI on this node.
#[async_trait]
pub trait CsiObjects: Send + Sync {
    /// The CSIDriver object `name`, `None` when there is none (upstream's defaults
    /// apply: attach required, persistent volumes only, no pod info). Asked on every
    /// set-up of a CSI volume, so implementations serve it from a watch (upstream's
    /// informer).
    async fn csi_driver(&self, name: &str) -> Result<Option<CSIDriver>>;

    /// The VolumeAttachment `name` (`csi-<sha256(handle, driver, node)>`).
    async fn volume_attachment(&self, name: &str) -> Result<Option<VolumeAttachment>>;

    /// Records a registered driver as upstream's `InstallCSIDriver`: the Node's
    /// `csi.volume.kubernetes.io/nodeid` annotation and topology labels, and the
    /// driver in the node's CSINode object (made if missing, owned by the Node).
    async fn install_driver(&self, driver: &NodeDriver) -> Result<()>;

    /// Removes a driver that went away from the CSINode object and the annotation.
    async fn uninstall_driver(&self, name: &str) -> Result<()>;
}

const _: Option<&dyn CsiObjects> = None;

/// No API server (standalone mode): no CSIDriver objects (upstream's defaults apply),
/// nothing to record drivers in, and no VolumeAttachments, so volumes that need one
/// cannot be set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCsiObjects;

#[async_trait]
impl CsiObjects for NoCsiObjects {
    async fn csi_driver(&self, _name: &str) -> Result<Option<CSIDriver>> {
        Ok(None)
    }

    async fn volume_attachment(&self, name: &str) -> Result<Option<VolumeAttachment>> {
        Err(kubelet_core::Error::Invalid {
            what: format!("volumeattachment {name}"),
            reason: "no API server to read it from (standalone mode)".to_owned(),
        })
    }

    async fn install_driver(&self, _driver: &NodeDriver) -> Result<()> {
        Ok(())
    }

    async fn uninstall_driver(&self, _name: &str) -> Result<()> {
        Ok(())
    }
}
