//! Graceful node shutdown, as upstream's node shutdown manager: while
//! `shutdownGracePeriod` is set, the kubelet holds a systemd-logind *delay* inhibitor
//! lock on shutdown; when logind announces `PrepareForShutdown(true)`, the node turns
//! NotReady ("node is shutting down"), new pods are refused, and the running pods are
//! killed group by group in priority order (regular pods within
//! `shutdownGracePeriod - shutdownGracePeriodCriticalPods`, then critical pods, or the
//! classes of `shutdownGracePeriodByPodPriority`), each pod ending `Failed` with reason
//! `Terminated` and a `DisruptionTarget` condition; then the lock is released and the
//! machine goes down. `PrepareForShutdown(false)` (a cancelled shutdown) takes the lock
//! again.
//!
//! This module is the pod manager's side: [`NodeShutdown`] (kill the pods of a group
//! and wait; the shutting-down flag that admission and node status read),
//! [`shutdown_periods`] and [`group_by_priority`] (upstream's arithmetic). The logind
//! side, the inhibitor lock and the shutdown events, is `kubelet-node-agent`'s
//! `ShutdownManager`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::Result;
use crate::admission::SYSTEM_CRITICAL_PRIORITY;
use crate::kill::{KillReason, PodKiller};

/// Reason of a pod killed for a node shutdown.
pub const NODE_SHUTDOWN_REASON: &str = "Terminated";
/// Message of a pod killed for a node shutdown.
pub const NODE_SHUTDOWN_MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";
/// Reason of a pod refused while the node shuts down.
pub const NODE_SHUTDOWN_NOT_ADMITTED_REASON: &str = "NodeShutdown";
/// Message of a pod refused while the node shuts down.
pub const NODE_SHUTDOWN_NOT_ADMITTED_MESSAGE: &str =
    "Pod was rejected as the node is shutting down.";
/// The Ready condition's message while the node shuts down.
pub const NODE_SHUTTING_DOWN: &str = "node is shutting down";

/// Upstream's `scheduling.DefaultPriorityWhenNoDefaultClassExists`.
const DEFAULT_PRIORITY: i32 = 0;

/// One priority class of the shutdown: pods of at least `priority` (up to the next
/// class) get `grace_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownPeriod {
    /// Lowest priority of the class.
    pub priority: i32,
    /// How long the class's pods get, in seconds.
    pub grace_seconds: i64,
}

/// The classes of a shutdown, sorted by priority, as upstream's `newPodManager`:
/// `by_priority` when given, else two classes from `shutdownGracePeriod` and
/// `shutdownGracePeriodCriticalPods` (upstream's `migrateConfig`); empty (no graceful
/// shutdown) when the grace period is zero or shorter than the critical one.
pub fn shutdown_periods(
    grace: Duration,
    critical: Duration,
    by_priority: &[ShutdownPeriod],
) -> Vec<ShutdownPeriod> {
    let mut periods = if by_priority.is_empty() {
        if grace.is_zero() || critical > grace {
            return Vec::new();
        }
        let regular = grace - critical;
        let critical = grace - regular;
        vec![
            ShutdownPeriod {
                priority: DEFAULT_PRIORITY,
                grace_seconds: i64::try_from(regular.as_secs()).unwrap_or(i64::MAX),
            },
            ShutdownPeriod {
                priority: SYSTEM_CRITICAL_PRIORITY,
                grace_seconds: i64::try_from(critical.as_secs()).unwrap_or(i64::MAX),
            },
        ]
    } else {
        by_priority.to_vec()
    };
    periods.sort_by_key(|p| p.priority);
    periods
}

/// How long logind must wait for the kubelet: the sum of the classes' periods
/// (upstream's `periodRequested`).
pub fn period_requested(periods: &[ShutdownPeriod]) -> Duration {
    let seconds: i64 = periods.iter().map(|p| p.grace_seconds).sum();
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// The pods of each class, in priority order, as upstream's `groupByPriority`: a pod
/// goes to the class with the highest priority not above its own (the first class when
/// below all).
pub fn group_by_priority(
    periods: &[ShutdownPeriod],
    pods: Vec<Pod>,
) -> Vec<(ShutdownPeriod, Vec<Pod>)> {
    let mut groups: Vec<(ShutdownPeriod, Vec<Pod>)> =
        periods.iter().map(|p| (*p, Vec::new())).collect();
    if groups.is_empty() {
        return groups;
    }
    for pod in pods {
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let index = groups
            .iter()
            .rposition(|(p, _)| p.priority <= priority)
            .unwrap_or(0);
        groups[index].1.push(pod);
    }
    groups
}

/// The pod manager's side of a node shutdown; cheap to clone. Also the flag the node
/// status and admission read.
#[derive(Clone, Debug)]
pub struct NodeShutdown {
    killer: PodKiller,
    shutting_down: Arc<AtomicBool>,
    changed: Arc<Notify>,
}

impl NodeShutdown {
    pub(crate) fn new(killer: PodKiller) -> Self {
        Self {
            killer,
            shutting_down: Arc::default(),
            changed: Arc::default(),
        }
    }

    /// Whether the node is shutting down now.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Turns the flag on (the node is going down) or off (the shutdown was cancelled),
    /// and wakes whoever waits in [`NodeShutdown::changed`] (the node status loop).
    pub fn set_shutting_down(&self, now: bool) {
        self.shutting_down.store(now, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Resolves the next time the shutting-down flag changes.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// A handle whose flag never turns on (no graceful shutdown), for a node status
    /// loop that must have one.
    pub fn never() -> Self {
        Self::new(PodKiller::detached())
    }

    /// Kills the running pods class by class, as upstream's `killPods`: the pods of a
    /// class together, each with the class's period (or its own shorter
    /// terminationGracePeriodSeconds), waiting for them at most the class's period
    /// before the next class.
    pub async fn kill_pods(&self, periods: &[ShutdownPeriod]) -> Result<()> {
        let pods = self.killer.active_pods().await;
        for (period, pods) in group_by_priority(periods, pods) {
            if pods.is_empty() {
                continue;
            }
            let uids: Vec<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
            info!(
                priority = period.priority,
                grace_seconds = period.grace_seconds,
                pods = uids.len(),
                "killing pods for the node shutdown"
            );
            let count = uids.len();
            let why = KillReason {
                reason: NODE_SHUTDOWN_REASON.to_owned(),
                message: NODE_SHUTDOWN_MESSAGE.to_owned(),
            };
            let wait = Duration::from_secs(u64::try_from(period.grace_seconds).unwrap_or(0));
            if self
                .killer
                .kill(uids, period.grace_seconds, why, wait)
                .await
                < count
            {
                warn!(
                    priority = period.priority,
                    grace_seconds = period.grace_seconds,
                    "pods of the class did not finish within its shutdown grace period"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
