//! Graceful node shutdown through systemd-logind, as upstream's node shutdown manager:
//! while `shutdownGracePeriod` is set, the kubelet holds a logind *delay* inhibitor lock
//! on shutdown; when logind announces `PrepareForShutdown(true)`, the pods are killed
//! class by class through the pod manager's [`NodeShutdown`], then the lock is released.
//! `PrepareForShutdown(false)` (a cancelled shutdown) takes the lock again. [`logind`]
//! is the D-Bus side.

use std::time::Duration;

use kubelet_pod_manager::shutdown::{NodeShutdown, ShutdownPeriod, period_requested};
use tracing::{info, warn};

use crate::{Error, Result, logind};

/// Watches logind for the node's shutdown and runs it; see the module documentation.
#[derive(Debug)]
pub struct ShutdownManager {
    periods: Vec<ShutdownPeriod>,
    node: NodeShutdown,
    logind_conf_dir: std::path::PathBuf,
}

impl ShutdownManager {
    /// A manager killing pods through `node` with `periods` (from [`shutdown_periods`](kubelet_pod_manager::shutdown::shutdown_periods));
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
            .map_err(|e| Error::Shutdown {
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
                return Err(Error::Shutdown {
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
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_logind_drop_in_is_upstreams() -> Result<()> {
        assert_eq!(
            logind::inhibit_delay_override(Duration::from_secs(30)),
            "# Kubelet logind override\n[Login]\nInhibitDelayMaxSec=30\n"
        );
        let dir = tempfile::tempdir().map_err(|e| Error::Shutdown {
            reason: e.to_string(),
        })?;
        logind::write_inhibit_delay_override(
            &dir.path().join("logind.conf.d"),
            Duration::from_secs(45),
        )?;
        let written = std::fs::read_to_string(dir.path().join("logind.conf.d/99-kubelet.conf"))
            .unwrap_or_default();
        assert!(written.ends_with("InhibitDelayMaxSec=45\n"), "{written}");
        Ok(())
    }
}
