//! The CSI node side of a Rust kubelet, as upstream's `pkg/volume/csi`: CSI drivers
//! register through the plugin manager (`node-driver-registrar`'s socket in
//! `<root-dir>/plugins_registry`), and their volumes are staged and published for the
//! pods that use them.
//!
//! - [`Drivers`] is the [`kubelet_plugin_manager::PluginHandler`] of `CSIPlugin`: CSI
//!   1.x only, with upstream's refusals; a registered driver's `NodeGetInfo` is
//!   recorded by [`CsiObjects::install_driver`] (the CSINode object, the Node's
//!   `csi.volume.kubernetes.io/nodeid` annotation and topology labels), removed again
//!   when it deregisters.
//! - [`CsiPlugin`] is the [`kubelet_core::VolumePlugin`] `kubernetes.io/csi`:
//!   - inline `csi` volumes (ephemeral: the CSIDriver must list `Ephemeral` in its
//!     `volumeLifecycleModes`; the handle is upstream's `csi-<sha256(pod uid, volume)>`);
//!   - PersistentVolumes with `spec.csi`: when the CSIDriver requires attachment (the
//!     default), the VolumeAttachment `csi-<sha256(handle, driver, node)>` the
//!     controller-manager made must say attached, and its `attachmentMetadata` is the
//!     publish context; then `NodeStageVolume` at
//!     `<root-dir>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount`
//!     when the driver stages;
//!   - `NodePublishVolume` at `<pod>/volumes/kubernetes.io~csi/<name>/mount`, beside
//!     upstream's `vol_data.json`; pod info (`podInfoOnMount`), service-account tokens
//!     (`tokenRequests`), node publish and stage secrets; the pod's fsGroup passed to a
//!     driver with `VOLUME_MOUNT_GROUP`, else applied by the kubelet per the
//!     CSIDriver's `fsGroupPolicy`; republished on every sync when it
//!     `requiresRepublish`;
//!   - as [`kubelet_core::VolumesInUse`], its PersistentVolumes from staging to
//!     unpublication, for the Node's `status.volumesInUse`;
//!   - as [`kubelet_core::MeasuredVolumes`], each published volume's
//!     `NodeGetVolumeStats` every `volumeStatsAggPeriod`
//!     ([`CsiPlugin::run_volume_stats`]) for the summary API, and a claim's in
//!     `kubelet_volume_stats_*`;
//!   - tear-down: `NodeUnpublishVolume`, then `NodeUnstageVolume` once no pod on the
//!     node publishes the volume any more. Everything is found from `vol_data.json`
//!     files, so it works across kubelet restarts.
//! - Every driver call has upstream's two-minute deadline; a driver that is not
//!   registered (yet) or fails costs its pods a `FailedMount` and a retry.
//!
//! Raw block PersistentVolumes (`volumeMode: Block`) are staged at
//! `plugins/kubernetes.io/csi/volumeDevices/staging/<pv>` and published to the file
//! `.../volumeDevices/publish/<pv>/<pod uid>`, which the container gets as its device.
//!
//! Not built: volume expansion, SELinux mount contexts, volume health
//! (`volume_condition`), upstream's block-volume symlinks under the pod's
//! `volumeDevices` directory and the loop device it holds on the publication.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use std::sync::Arc;
//!
//! use kubelet_core::NoVolumeSources;
//! use kubelet_csi::{CsiPlugin, Drivers, NoCsiObjects};
//! use kubelet_plugin_manager::{CSI_PLUGIN, PluginManager};
//!
//! # async fn run() -> Result<(), kubelet_plugin_manager::Error> {
//! let root = Path::new("/var/lib/kubelet");
//! let drivers = Arc::new(Drivers::new(Arc::new(NoCsiObjects)));
//! let plugin = Arc::new(CsiPlugin::new(drivers.clone(), Arc::new(NoVolumeSources), root, "node-1"));
//! // Hand `plugin` to the volume manager (`VolumeManager::with_plugin`), then:
//! PluginManager::new(root.join("plugins_registry"))
//!     .with_handler(CSI_PLUGIN, drivers)
//!     .run()
//!     .await
//! # }
//! ```

mod drivers;
mod error;
mod objects;
mod plugin;

pub use drivers::Drivers;
pub use error::{Error, Result};
pub use objects::{CsiObjects, NoCsiObjects, NodeDriver};
pub use plugin::{
    CsiPlugin, PLUGIN_NAME, attachment_name, ephemeral_volume_handle, unique_volume_name,
};

/// The generated gRPC code of the CSI specification's `csi.proto`.
pub mod proto {
    /// Package `csi.v1`: messages, `node_client`, `identity_client`, ... and their
    /// servers (for drivers and tests).
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("csi.v1");
    }
}
