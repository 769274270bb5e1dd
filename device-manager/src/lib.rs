//! The device manager of a Rust kubelet, as upstream's `pkg/kubelet/cm/devicemanager`:
//! device plugins (API `v1beta1`) register on `/var/lib/kubelet/device-plugins/kubelet.sock`,
//! the kubelet lists and watches their devices, reports them as extended resources of
//! the node, and assigns them to the containers that ask for them.
//!
//! - [`DeviceManager::serve`]: the `Registration` service (upstream's messages for an
//!   unsupported version or an invalid resource name); each registered plugin is
//!   reached on `<dir>/<endpoint>` and its `ListAndWatch` stream followed. When it
//!   ends, the plugin's devices turn unhealthy; five minutes later the resource is
//!   reported with nothing (upstream's `endpointStopGracePeriod`), unless the plugin
//!   registered again;
//! - [`DeviceManager`] is a [`kubelet_core::ExtendedResources`] (capacity: all devices,
//!   allocatable: the healthy ones) and a [`kubelet_core::DeviceAllocator`]: a
//!   container's limits on a plugin's resource get that many healthy free devices (the
//!   plugin's `Allocate`, `PreStartContainer` when it asks for it), the same ones on
//!   every restart, freed when the pod goes; a pod's regular init containers' devices
//!   are taken first by its later containers (upstream's `devicesToReuse`), and a
//!   plugin offering `GetPreferredAllocation` picks among the candidates;
//! - assignments are kept in `<dir>/kubelet-rs-device-checkpoint.json`, so that a
//!   restarted kubelet gives running containers the same devices and never gives
//!   theirs to another pod;
//! - plugins found by the plugin manager in `<root-dir>/plugins_registry` (upstream's
//!   watcher mode) register through [`DeviceManager`]'s
//!   [`kubelet_plugin_manager::PluginHandler`] (type `DevicePlugin`): their options from
//!   `GetDevicePluginOptions`, deregistered when their socket goes;
//! - every call to a plugin has a deadline.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use kubelet_core::metrics::kubelet::KubeletMetrics;
//! use kubelet_device_manager::{DEVICE_PLUGIN_DIR, DeviceManager};
//!
//! # async fn run() -> Result<(), kubelet_device_manager::Error> {
//! let metrics = Arc::new(KubeletMetrics::new());
//! let devices: Arc<DeviceManager> = DeviceManager::open(DEVICE_PLUGIN_DIR.as_ref(), metrics).await?;
//! // Hand `devices` to the pod engine (`DeviceAllocator`) and the node agent
//! // (`ExtendedResources`); plugins register while this runs:
//! devices.serve().await?;
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod error;
mod manager;

pub use error::{Error, Result};
pub use manager::{ActivePods, DeviceManager};

/// Where device plugins and the kubelet meet (upstream `pluginapi.DevicePluginPath`;
/// the same whatever the kubelet's `--root-dir`).
pub const DEVICE_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";

/// The kubelet's registration socket in [`DEVICE_PLUGIN_DIR`].
pub const KUBELET_SOCKET: &str = "kubelet.sock";

/// The generated gRPC code of upstream's `deviceplugin/v1beta1/api.proto`.
pub mod proto {
    /// Package `v1beta1`: messages, `registration_server`, `device_plugin_client`
    /// and their counterparts (for plugins and tests).
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1beta1 {
        tonic::include_proto!("v1beta1");
    }
}
