//! Domain types, errors and extension traits of a Rust kubelet.
//!
//! `kubelet-core` is the crate every other part of the kubelet builds on. It does no I/O:
//! no sockets, no files, no tokio runtime. It defines
//!
//! - the extension traits, held as `Arc<dyn Trait>`: [`Runtime`] and [`ImageService`]
//!   (a container runtime, implemented over CRI by `kubelet-cri-client`), [`VolumePlugin`],
//!   [`Prober`], [`StatusReporter`] and [`EventRecorder`];
//! - the domain types they exchange ([`SandboxConfig`], [`ContainerConfig`], ...). Pods and
//!   nodes are the `k8s-openapi` types, never a copy;
//! - pure decisions that must match upstream exactly: the [`labels`] and container hash
//!   upstream puts on sandboxes and containers, the [`Backoff`] of CrashLoopBackOff
//!   and ImagePullBackOff, resource [`Quantity`] parsing and rounding, and a pod's
//!   [`QosClass`] ([`pod_qos`]), the [`downward`] API's field and resource values,
//!   the `$(VAR)` [`expand`]sion of command, args, env and `subPathExpr`, and
//!   client-go's [`TokenBucket`] rate limit;
//! - one [`Error`] enum whose runtime variant callers can match on
//!   ([`RuntimeErrorKind::NotFound`], [`RuntimeErrorKind::Unavailable`], ...).
//!
//! # Example
//!
//! Code that needs a runtime takes the trait object, so tests can hand it a fake:
//!
//! ```no_run
//! use std::sync::Arc;
//! use kubelet_core::{Runtime, RuntimeErrorKind, SandboxFilter};
//!
//! async fn count_pods(runtime: Arc<dyn Runtime>) -> kubelet_core::Result<usize> {
//!     match runtime.list_sandboxes(&SandboxFilter::default()).await {
//!         Ok(sandboxes) => Ok(sandboxes.len()),
//!         Err(e) if e.runtime_kind() == Some(RuntimeErrorKind::Unavailable) => Ok(0),
//!         Err(e) => Err(e),
//!     }
//! }
//! ```

mod backoff;
mod clock;
pub mod config;
mod credentials;
mod devices;
pub mod downward;
mod error;
mod event;
mod expansion;
mod format;
pub mod labels;
pub mod metrics;
mod node;
mod pod;
mod probe;
mod qos;
mod quantity;
mod rate;
mod runtime;
mod status;
pub mod validation;
mod volume;

pub use backoff::{BACKOFF_RESET_AFTER, Backoff, INITIAL_BACKOFF, MAX_BACKOFF};
pub use clock::{Clock, SystemClock};
pub use credentials::{ImageCredentials, NoImageCredentials};
pub use devices::{ContainerDevices, DeviceAllocator, ExtendedResource, ExtendedResources};
pub use error::{Error, Result, RuntimeError, RuntimeErrorKind};
pub use event::{EventRecorder, EventType, NoEvents, NodeEvent, PodEvent};
pub use expansion::expand;
pub use format::go_duration;
pub use node::NodeResources;
pub use pod::PodRef;
pub use probe::{ProbeKind, ProbeOutcome, ProbeTarget, Prober};
pub use qos::{QosClass, compute_pod_qos, pod_qos};
pub use quantity::{Quantity, QuantityError, QuantityErrorKind};
pub use rate::TokenBucket;
pub use runtime::{
    Capabilities, CgroupDriver, Container, ContainerConfig, ContainerEvent, ContainerEventKind,
    ContainerEvents, ContainerExec, ContainerFilter, ContainerMetadata, ContainerNamespaces,
    ContainerSecurity, ContainerState, ContainerStats, ContainerStatus, Device, DnsConfig,
    ExecResult, FilesystemUsage, IdMapping, Image, ImageService, LinuxResources,
    LinuxSandboxConfig, Mount, MountPropagation, NamespaceOptions, PortMapping, Protocol,
    RegistryAuth, Runtime, RuntimeCondition, RuntimeHandler, RuntimeHealth, RuntimeInventory,
    RuntimeStatus, RuntimeVersion, Sandbox, SandboxConfig, SandboxFilter, SandboxMetadata,
    SandboxState, SandboxStatus, SeLinuxOptions, SecurityProfile, StreamRequest, StringMap,
    UserNamespace,
};
pub use status::StatusReporter;
pub use volume::{
    ClaimRef, MeasuredVolumes, MountedVolume, NoVolumeSources, ObjectSource, ServiceAccountToken,
    VolumePlugin, VolumeSources, VolumeUsage, VolumesInUse,
};

/// The k8s-openapi crate this crate's API is expressed in.
pub use k8s_openapi;
