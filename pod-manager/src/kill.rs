//! Pods the kubelet kills on its own, for a node shutdown or an eviction: each ends
//! `Failed` (unless it had already succeeded) with the reason and message the killer
//! gives and a `DisruptionTarget` condition, as upstream's `killPodFunc` callers set
//! them; its containers are never restarted afterwards.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, oneshot};

/// Why a pod is killed: the `reason` and `message` of its final status (and the
/// message of its `DisruptionTarget` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillReason {
    /// E.g. `Evicted`, `Terminated`.
    pub reason: String,
    /// E.g. `The node was low on resource: memory. `.
    pub message: String,
}

/// A request to the pod manager: kill these pods (by uid), each within `grace_seconds`
/// (or its own shorter grace period), and say on `done` as each finishes.
#[derive(Debug)]
pub(crate) struct KillPods {
    pub uids: Vec<String>,
    pub grace_seconds: i64,
    pub why: KillReason,
    pub done: mpsc::Sender<String>,
}

/// What the pod manager is asked from outside its sources.
#[derive(Debug)]
pub(crate) enum ManagerCommand {
    /// The pods the manager runs now (not being removed, not finished).
    ActivePods(oneshot::Sender<Vec<Pod>>),
    /// Every pod the manager has a worker for: wanted (finished ones too) and being
    /// removed.
    WantedPods(oneshot::Sender<Vec<Pod>>),
    /// Kill pods.
    Kill(KillPods),
    /// The uids of the wanted pods that will not run again (finished, evicted, shut
    /// down), with no container running.
    FinishedPods(oneshot::Sender<Vec<String>>),
}

/// Kills pods through the pod manager, for whoever decides the node must shed them (the
/// node shutdown manager, the eviction manager). Cheap to clone.
#[derive(Clone, Debug)]
pub struct PodKiller {
    commands: mpsc::Sender<ManagerCommand>,
}

impl PodKiller {
    pub(crate) fn new(commands: mpsc::Sender<ManagerCommand>) -> Self {
        Self { commands }
    }

    /// A killer whose manager is gone: no pods, nothing killed.
    pub fn detached() -> Self {
        Self::new(mpsc::channel(1).0)
    }

    /// The pods the manager runs now (admitted, not being removed, not finished);
    /// empty when the manager is gone.
    pub async fn active_pods(&self) -> Vec<Pod> {
        let (reply, pods) = oneshot::channel();
        if self
            .commands
            .send(ManagerCommand::ActivePods(reply))
            .await
            .is_err()
        {
            return Vec::new();
        }
        pods.await.unwrap_or_default()
    }

    /// Every pod the manager has a worker for: the wanted ones, finished ones too
    /// (upstream's pod manager's pods), and those being removed, whose containers may
    /// still run; empty when the manager is gone.
    pub async fn wanted_pods(&self) -> Vec<Pod> {
        let (reply, pods) = oneshot::channel();
        if self
            .commands
            .send(ManagerCommand::WantedPods(reply))
            .await
            .is_err()
        {
            return Vec::new();
        }
        pods.await.unwrap_or_default()
    }

    /// Kills the pods with these uids, each within `grace_seconds` (or its own shorter
    /// terminationGracePeriodSeconds), ending with `why`; waits for them at most `wait`
    /// and returns how many finished in that time. A uid the manager does not run counts
    /// as finished.
    pub async fn kill(
        &self,
        uids: Vec<String>,
        grace_seconds: i64,
        why: KillReason,
        wait: Duration,
    ) -> usize {
        let count = uids.len();
        let (done, mut finished) = mpsc::channel(count.max(1));
        let request = KillPods {
            uids,
            grace_seconds,
            why,
            done,
        };
        if self
            .commands
            .send(ManagerCommand::Kill(request))
            .await
            .is_err()
        {
            return 0;
        }
        let mut finished_count = 0;
        let all = async {
            while finished_count < count {
                if finished.recv().await.is_none() {
                    break;
                }
                finished_count += 1;
            }
        };
        let _ = tokio::time::timeout(wait, all).await;
        finished_count
    }
}
