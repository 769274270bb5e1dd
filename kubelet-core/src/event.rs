//! Events about pods and about the node: the extension point between the pod manager and
//! the API server's event sink (upstream's `record.EventRecorder`).

use std::borrow::Cow;

use crate::PodRef;

/// The type of an event, as the `type` field of a Kubernetes Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened (`Normal`).
    Normal,
    /// Something went wrong (`Warning`).
    Warning,
}

impl EventType {
    /// The API spelling: `Normal` or `Warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// One event about a pod, or about one of its containers when `field_path` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    /// The pod.
    pub pod: PodRef,
    /// The container the event is about, as upstream's field path
    /// (`spec.containers{name}`, `spec.initContainers{name}`), or `None` for the pod.
    pub field_path: Option<String>,
    /// Normal or Warning.
    pub event_type: EventType,
    /// The upstream reason, e.g. `Pulling`, `Started`, `BackOff`, `Unhealthy`.
    pub reason: Cow<'static, str>,
    /// The human-readable message, as upstream words it.
    pub message: String,
}

/// One event about the node this kubelet runs (upstream records them against its
/// `nodeRef`: `Starting`, `NodeReady`, `NodeHasSufficientMemory`, `NodeShutdown`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// The Node object's UID once known; upstream leaves it empty until its node
    /// informer has the object, and `kubectl describe node` finds events by it.
    pub node_uid: Option<String>,
    /// Normal or Warning.
    pub event_type: EventType,
    /// The upstream reason, e.g. `Starting`, `NodeReady`, `Rebooted`.
    pub reason: Cow<'static, str>,
    /// The human-readable message, as upstream words it.
    pub message: String,
}

/// Receives events; implementations queue them and must never block the caller (a pod
/// worker), dropping events rather than waiting when their queue is full, as upstream's
/// broadcaster does.
pub trait EventRecorder: Send + Sync {
    /// Records one event about a pod.
    fn record(&self, event: PodEvent);

    /// Records one event about the node.
    fn record_node(&self, event: NodeEvent);
}

/// Discards every event (standalone mode without an API server, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventRecorder for NoEvents {
    fn record(&self, _event: PodEvent) {}

    fn record_node(&self, _event: NodeEvent) {}
}

const _: Option<&dyn EventRecorder> = None;
