//! Supervision of the kubelet's background tasks: each runs in one `JoinSet` under a
//! name. A task the kubelet cannot run without that ends or panics ends the kubelet
//! with an error naming it, so that systemd restarts the kubelet instead of letting it
//! run on without, say, its Lease; dropping the supervisor aborts every task.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::task::JoinSet;

use crate::Error;

/// How a task ended.
enum Outcome {
    /// It returned: fine for a task that may end, an error for one that must not.
    Returned,
    /// It returned an error.
    Failed(Error),
    /// It panicked.
    Panicked(String),
}

/// What a task is to the kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Runs as long as the kubelet; its end is a failure.
    Essential,
    /// May return (e.g. graceful shutdown without logind); only a panic is a failure.
    MayEnd,
    /// Its end is the kubelet's orderly end (the pod manager once every source closed).
    Main,
}

/// The kubelet's background tasks.
#[derive(Default)]
pub(crate) struct Supervisor {
    tasks: JoinSet<(&'static str, Role, Outcome)>,
}

impl Supervisor {
    /// Runs `task` under `name`.
    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        role: Role,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        self.spawn_fallible(name, role, async move {
            task.await;
            Ok(())
        });
    }

    /// Runs `task`, which may fail with an error, under `name`.
    pub(crate) fn spawn_fallible(
        &mut self,
        name: &'static str,
        role: Role,
        task: impl Future<Output = Result<(), Error>> + Send + 'static,
    ) {
        self.tasks.spawn(async move {
            let outcome = match AssertUnwindSafe(task).catch_unwind().await {
                Ok(Ok(())) => Outcome::Returned,
                Ok(Err(e)) => Outcome::Failed(e),
                Err(panic) => Outcome::Panicked(panic_message(panic.as_ref())),
            };
            (name, role, outcome)
        });
    }

    /// Waits until the kubelet must stop: `Ok` when the main task returned, an error
    /// when an essential task ended or any task failed or panicked. Tasks that may end
    /// and did are logged and forgotten. Pending forever when there is no task.
    pub(crate) async fn wait(&mut self) -> Result<(), Error> {
        loop {
            let Some(joined) = self.tasks.join_next().await else {
                return std::future::pending().await;
            };
            let (name, role, outcome) = match joined {
                Ok(ended) => ended,
                // Only `abort` cancels a task, and the supervisor never aborts one it
                // still waits for.
                Err(e) => {
                    return Err(Error::TaskEnded {
                        task: "unknown",
                        how: e.to_string(),
                    });
                }
            };
            match (role, outcome) {
                (Role::Main, Outcome::Returned) => return Ok(()),
                (Role::MayEnd, Outcome::Returned) => {
                    tracing::debug!(task = name, "background task finished");
                }
                (Role::Essential, Outcome::Returned) => {
                    return Err(Error::TaskEnded {
                        task: name,
                        how: "ended unexpectedly".to_owned(),
                    });
                }
                (_, Outcome::Failed(e)) => return Err(e),
                (_, Outcome::Panicked(message)) => {
                    return Err(Error::TaskEnded {
                        task: name,
                        how: format!("panicked: {message}"),
                    });
                }
            }
        }
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn an_essential_task_that_ends_stops_the_kubelet_naming_it() {
        let mut tasks = Supervisor::default();
        tasks.spawn("forever", Role::Essential, std::future::pending());
        tasks.spawn("node lease", Role::Essential, async {});
        let err = tasks.wait().await.expect_err("the lease task ended");
        assert_eq!(
            err.to_string(),
            "the kubelet's node lease task ended unexpectedly"
        );
    }

    #[tokio::test]
    async fn a_panic_is_reported_with_its_message() {
        let mut tasks = Supervisor::default();
        tasks.spawn("node shutdown", Role::MayEnd, async {
            panic!("boom");
        });
        let err = tasks.wait().await.expect_err("panicked");
        assert_eq!(
            err.to_string(),
            "the kubelet's node shutdown task panicked: boom"
        );
    }

    #[tokio::test]
    async fn tasks_that_may_end_are_forgotten_and_the_main_task_ends_the_kubelet() {
        let mut tasks = Supervisor::default();
        tasks.spawn("node shutdown", Role::MayEnd, async {});
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("pod manager", Role::Main, async move {
            let _ = rx.await;
        });
        tokio::task::yield_now().await;
        drop(tx);
        tasks.wait().await.expect("an orderly end");
    }

    #[tokio::test]
    async fn a_failure_is_returned_as_it_is() {
        let mut tasks = Supervisor::default();
        tasks.spawn_fallible("kubelet API", Role::Essential, async {
            Err(Error::Config {
                field: "port",
                reason: "in use".into(),
            })
        });
        let err = tasks.wait().await.expect_err("failed");
        assert_eq!(err.to_string(), "port: in use");
    }

    #[tokio::test]
    async fn dropping_the_supervisor_stops_its_tasks() {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let mut tasks = Supervisor::default();
        let guard = SetOnDrop(dropped.clone());
        tasks.spawn("relist", Role::Essential, async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        tokio::task::yield_now().await;
        drop(tasks);
        tokio::task::yield_now().await;
        assert!(dropped.load(Ordering::SeqCst), "the task was aborted");
    }
}
