//! Node devices from device plugins: the extension points through which the pod
//! engine gets a container's devices and the node agent reports them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::{Device, Mount, Result};

/// What a container gets for the devices assigned to it (upstream's device plugin
/// `ContainerAllocateResponse`), added to its CRI config before it is created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerDevices {
    /// Environment variables, set before the container's own.
    pub envs: Vec<(String, String)>,
    /// Bind mounts, before the container's volume mounts.
    pub mounts: Vec<Mount>,
    /// Host devices.
    pub devices: Vec<Device>,
    /// Container annotations.
    pub annotations: BTreeMap<String, String>,
    /// Fully qualified CDI device names.
    pub cdi_devices: Vec<String>,
}

impl ContainerDevices {
    /// True when nothing is assigned.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
            && self.mounts.is_empty()
            && self.devices.is_empty()
            && self.annotations.is_empty()
            && self.cdi_devices.is_empty()
    }
}

/// Assigns device plugins' devices to containers (upstream's device manager).
#[async_trait]
pub trait DeviceAllocator: Send + Sync {
    /// The devices of `container` for the extended resources it asks for that device
    /// plugins serve: assigned on the first call (the plugins' `Allocate`), the same
    /// ones on later calls (restarts). An error names the resource that could not be
    /// given (none free, plugin gone or failing).
    async fn allocate(&self, pod: &Pod, container: &Container) -> Result<ContainerDevices>;

    /// Frees what the pod `pod_uid` holds; it will not run again.
    async fn release(&self, pod_uid: &str);
}

const _: Option<&dyn DeviceAllocator> = None;

/// One extended resource a device plugin serves, as the node reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtendedResource {
    /// Every device of the resource.
    pub capacity: i64,
    /// Its healthy devices.
    pub allocatable: i64,
}

/// The extended resources of the node's device plugins, for the node's capacity and
/// allocatable.
pub trait ExtendedResources: Send + Sync {
    /// By resource name; a resource whose plugin went away long ago is reported with
    /// zero, so the node's status drops it.
    fn extended_resources(&self) -> BTreeMap<String, ExtendedResource>;
}

const _: Option<&dyn ExtendedResources> = None;
