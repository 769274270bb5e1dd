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
//! [`ShutdownManager`] talks to logind ([`logind`]); [`NodeShutdown`] is the pod
//! manager's side (kill the pods of a group and wait); [`shutdown_periods`] and
//! [`group_by_priority`] are upstream's arithmetic.

pub mod logind;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{info, warn};

use crate::Result;

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
/// Upstream's `scheduling.SystemCriticalPriority` (2 * 10^9).
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

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

/// A request to the pod manager: kill these pods (by uid) for a node shutdown, each
/// within `grace_seconds` (or its own shorter grace period), and say when all are done.
#[derive(Debug)]
pub(crate) struct KillForShutdown {
    pub uids: Vec<String>,
    pub grace_seconds: i64,
    pub done: mpsc::Sender<String>,
}

/// What the pod manager is asked from outside its sources.
#[derive(Debug)]
pub(crate) enum ManagerCommand {
    /// The pods the manager runs now (not being removed).
    ActivePods(oneshot::Sender<Vec<Pod>>),
    /// Kill pods for a node shutdown.
    Kill(KillForShutdown),
}

/// The pod manager's side of a node shutdown; cheap to clone. Also the flag the node
/// status and admission read.
#[derive(Clone, Debug)]
pub struct NodeShutdown {
    commands: mpsc::Sender<ManagerCommand>,
    shutting_down: Arc<AtomicBool>,
    changed: Arc<Notify>,
}

impl NodeShutdown {
    pub(crate) fn new(commands: mpsc::Sender<ManagerCommand>) -> Self {
        Self {
            commands,
            shutting_down: Arc::default(),
            changed: Arc::default(),
        }
    }

    /// Whether the node is shutting down now.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Wakes whoever waits in [`NodeShutdown::changed`] (the node status loop).
    fn set_shutting_down(&self, now: bool) {
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
        let (commands, _) = mpsc::channel(1);
        Self::new(commands)
    }

    /// Kills the running pods class by class, as upstream's `killPods`: the pods of a
    /// class together, each with the class's period (or its own shorter
    /// terminationGracePeriodSeconds), waiting for them at most the class's period
    /// before the next class.
    pub async fn kill_pods(&self, periods: &[ShutdownPeriod]) -> Result<()> {
        let (reply, pods) = oneshot::channel();
        if self
            .commands
            .send(ManagerCommand::ActivePods(reply))
            .await
            .is_err()
        {
            return Ok(());
        }
        let Ok(pods) = pods.await else {
            return Ok(());
        };
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
            let (done, mut finished) = mpsc::channel(uids.len().max(1));
            let count = uids.len();
            let request = KillForShutdown {
                uids,
                grace_seconds: period.grace_seconds,
                done,
            };
            if self
                .commands
                .send(ManagerCommand::Kill(request))
                .await
                .is_err()
            {
                return Ok(());
            }
            let wait = Duration::from_secs(u64::try_from(period.grace_seconds).unwrap_or(0));
            let all = async {
                for _ in 0..count {
                    if finished.recv().await.is_none() {
                        break;
                    }
                }
            };
            if tokio::time::timeout(wait, all).await.is_err() {
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

/// Watches logind for the node's shutdown and runs it; see the module documentation.
#[derive(Debug)]
pub struct ShutdownManager {
    periods: Vec<ShutdownPeriod>,
    node: NodeShutdown,
    logind_conf_dir: std::path::PathBuf,
}

impl ShutdownManager {
    /// A manager killing pods through `node` with `periods` (from [`shutdown_periods`]);
    /// the logind drop-in that raises `InhibitDelayMaxSec` goes to
    /// `/etc/systemd/logind.conf.d` as upstream's.
    pub fn new(periods: Vec<ShutdownPeriod>, node: NodeShutdown) -> Self {
        Self {
            periods,
            node,
            logind_conf_dir: logind::LOGIND_CONF_DIR.into(),
        }
    }

    /// Writes the logind drop-in somewhere else (tests).
    pub fn with_logind_conf_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.logind_conf_dir = dir.into();
        self
    }

    /// Runs until the task is dropped: connects to logind, takes the inhibitor lock, and
    /// handles shutdown events; when the connection is lost, starts again a second later.
    /// As upstream, a first start that fails (no logind, no D-Bus) is reported once and
    /// the kubelet runs on without graceful shutdown.
    pub async fn run(self) {
        if self.periods.is_empty() {
            return;
        }
        if let Err(e) = self.watch().await {
            warn!(error = %e, "failed to start the node shutdown manager: no graceful node shutdown");
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            info!("restarting the watch for node shutdown events");
            if let Err(e) = self.watch().await {
                warn!(error = %e, "unable to watch the node for shutdown events");
            }
        }
    }

    /// One connection's watch: `Ok` when logind's signal stream ended after a successful
    /// start, an error when it could not start.
    async fn watch(&self) -> Result<()> {
        use futures::StreamExt;
        let logind = logind::Logind::connect().await?;
        let requested = period_requested(&self.periods);
        let current = logind.inhibit_delay().await?;
        if requested > current {
            let dir = self.logind_conf_dir.clone();
            tokio::task::spawn_blocking(move || {
                logind::write_inhibit_delay_override(&dir, requested)
            })
            .await
            .map_err(|e| crate::Error::Shutdown {
                reason: format!("writing the logind drop-in: {e}"),
            })??;
            logind.reload_logind().await?;
            let mut delay = Duration::from_millis(100);
            let mut updated = current;
            for _ in 0..5 {
                tokio::time::sleep(delay).await;
                updated = logind.inhibit_delay().await?;
                if updated >= requested {
                    break;
                }
                delay *= 2;
            }
            if updated < requested {
                return Err(crate::Error::Shutdown {
                    reason: format!(
                        "logind's InhibitDelayMaxSec is {updated:?}, less than the requested \
                         shutdown grace period {requested:?}, after raising it"
                    ),
                });
            }
        }
        let mut events = logind.prepare_for_shutdown().await?;
        let mut lock = Some(logind.inhibit_shutdown().await?);
        info!(grace = ?requested, "holding a shutdown inhibitor lock for the graceful node shutdown");
        while let Some(shutting_down) = events.next().await {
            if shutting_down {
                info!("shutdown manager detected a shutdown event: killing pods");
                self.node.set_shutting_down(true);
                if let Err(e) = self.node.kill_pods(&self.periods).await {
                    warn!(error = %e, "killing pods for the node shutdown");
                }
                // Releasing the lock lets the shutdown proceed.
                drop(lock.take());
                info!(
                    "shutdown manager completed processing the shutdown event, node will shut down shortly"
                );
            } else {
                info!("shutdown manager detected a shutdown cancellation");
                self.node.set_shutting_down(false);
                lock = Some(logind.inhibit_shutdown().await?);
            }
        }
        warn!("the logind signal stream ended");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
