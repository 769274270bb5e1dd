//! The node's Lease in `kube-node-lease`, the heartbeat the node lifecycle controller
//! reads (upstream's lease controller, `k8s.io/component-helpers/apimachinery/lease`).
//!
//! Every renew interval (a quarter of `nodeLeaseDurationSeconds`, up to 4% later so that
//! nodes do not renew in step) the controller writes the Lease it last wrote back with a
//! new `renewTime`: one PUT and no GET while nothing else touches the Lease. When that
//! fails it reads (or creates) the Lease again, retrying every 200 ms, doubling up to 7 s,
//! until the API server answers, and updates it up to 5 times; a conflict reads it again
//! first. The Lease always carries the Node as its owner: it is not created until the
//! Node can be read, and an update adds the owner when it is missing. A request that
//! gets no answer closes every connection of the kubelet's clients
//! ([`crate::Connections`]), as upstream's `onRepeatedHeartbeatFailure`.
//!
//! `renewTime` comes from the [`Clock`] seam, so tests run the controller under tokio's
//! paused time with exact assertions.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::PostParams;
use kubelet_core::Clock;
use tracing::{debug, warn};

use super::connections::heartbeat_failed;
use super::{Connections, is_conflict};

/// The namespace of node Leases.
pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Upstream `maxUpdateRetries`.
const MAX_UPDATE_RETRIES: usize = 5;
/// Upstream `maxBackoff` of `backoffEnsureLease`.
const MAX_BACKOFF: Duration = Duration::from_secs(7);
/// Doubled before the first wait, as upstream's 100 ms start.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Upstream's `JitterUntil` factor for the renew interval.
const JITTER: f64 = 0.04;

/// Keeps one node's Lease renewed.
pub(crate) struct LeaseController {
    leases: Api<Lease>,
    nodes: Api<Node>,
    node: String,
    duration_seconds: i32,
    renew_interval: Duration,
    clock: Arc<dyn Clock>,
    /// The Lease as last written, updated without reading it first.
    latest: Option<Lease>,
    /// Closed when a renewal gets no answer.
    connections: Option<Connections>,
}

impl LeaseController {
    /// A controller for `node`'s Lease of `duration_seconds` (renewed every quarter),
    /// closing `connections` when a request gets no answer ([`heartbeat_failed`]).
    pub(crate) fn new(
        client: kube::Client,
        node: &str,
        duration_seconds: i32,
        clock: Arc<dyn Clock>,
        connections: Option<Connections>,
    ) -> Self {
        let seconds = u64::try_from(duration_seconds.max(4)).unwrap_or(40);
        Self {
            leases: Api::namespaced(client.clone(), LEASE_NAMESPACE),
            nodes: Api::all(client),
            node: node.to_owned(),
            duration_seconds,
            renew_interval: Duration::from_millis(seconds * 1000 / 4),
            clock,
            latest: None,
            connections,
        }
    }

    /// Renews until dropped: at once, then a jittered renew interval after each renewal.
    pub(crate) async fn run(mut self) {
        loop {
            self.sync().await;
            tokio::time::sleep(jittered(self.renew_interval)).await;
        }
    }

    /// One renewal (upstream `sync`).
    async fn sync(&mut self) {
        if let Some(latest) = self.latest.take() {
            match self.retry_update(latest).await {
                Ok(()) => return,
                Err(e) => debug!(node = %self.node, error = %e,
                    "updating the lease as last written failed; reading it again"),
            }
        }
        let (lease, created) = self.backoff_ensure().await;
        self.latest = Some(lease.clone());
        if !created && let Err(e) = self.retry_update(lease).await {
            warn!(node = %self.node, error = %e, interval = ?self.renew_interval,
                "renewing the node lease failed; retrying on the next interval");
        }
    }

    /// Reads the Lease, creating it when missing, until the API server answers
    /// (upstream `backoffEnsureLease`). Whether it was created is the second value.
    async fn backoff_ensure(&mut self) -> (Lease, bool) {
        let mut wait = FIRST_BACKOFF;
        loop {
            match self.ensure().await {
                Ok(found) => return found,
                Err(e) => {
                    wait = (wait * 2).min(MAX_BACKOFF);
                    warn!(node = %self.node, error = %e, retry_in = ?wait,
                        "the node lease cannot be read or created");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn ensure(&self) -> Result<(Lease, bool), String> {
        if let Some(lease) = self
            .leases
            .get_opt(&self.node)
            .await
            .map_err(|e| format!("reading it: {}", self.failed(&e)))?
        {
            return Ok((lease, false));
        }
        let owner = node_owner(&self.nodes, &self.node)
            .await
            .ok_or("the Node to own it cannot be read yet")?;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.node.clone()),
                namespace: Some(LEASE_NAMESPACE.to_owned()),
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec(LeaseSpec::default())),
        };
        let created = self
            .leases
            .create(&PostParams::default(), &lease)
            .await
            .map_err(|e| format!("creating it: {}", self.failed(&e)))?;
        Ok((created, true))
    }

    /// Writes `base` back renewed, up to [`MAX_UPDATE_RETRIES`] times; a conflict reads
    /// the Lease again first (upstream `retryUpdateLease`).
    async fn retry_update(&mut self, mut base: Lease) -> Result<(), String> {
        let mut last_error = String::new();
        for _ in 0..MAX_UPDATE_RETRIES {
            if base
                .metadata
                .owner_references
                .as_ref()
                .is_none_or(Vec::is_empty)
            {
                base.metadata.owner_references =
                    node_owner(&self.nodes, &self.node).await.map(|o| vec![o]);
            }
            let spec = base.spec.take().unwrap_or_default();
            base.spec = Some(self.spec(spec));
            match self
                .leases
                .replace(&self.node, &PostParams::default(), &base)
                .await
            {
                Ok(written) => {
                    self.latest = Some(written);
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => {
                    last_error = e.to_string();
                    base = self.backoff_ensure().await.0;
                }
                Err(e) => last_error = self.failed(&e),
            }
        }
        Err(format!(
            "{MAX_UPDATE_RETRIES} attempts to update it failed, the last: {last_error}"
        ))
    }

    /// `error` as said, after closing the connections when the request got no answer.
    fn failed(&self, error: &kube::Error) -> String {
        heartbeat_failed(self.connections.as_ref(), error);
        error.to_string()
    }

    /// `spec` held by this node for the configured duration, renewed now.
    fn spec(&self, spec: LeaseSpec) -> LeaseSpec {
        let now = k8s_openapi::jiff::Timestamp::try_from(self.clock.now())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        LeaseSpec {
            holder_identity: Some(self.node.clone()),
            lease_duration_seconds: Some(self.duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..spec
        }
    }
}

/// The Node as the owner of its Lease, so the Lease goes when the Node goes; `None` while
/// the Node cannot be read (upstream's `SetNodeOwnerFunc`).
async fn node_owner(nodes: &Api<Node>, name: &str) -> Option<OwnerReference> {
    match nodes.get(name).await {
        Ok(node) => node.metadata.uid.map(|uid| OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Node".to_owned(),
            name: name.to_owned(),
            uid,
            ..OwnerReference::default()
        }),
        Err(e) => {
            debug!(node = %name, error = %e, "reading the node to own its lease");
            None
        }
    }
}

/// `period` plus up to [`JITTER`] of it (apimachinery's `wait.Jitter`).
fn jittered(period: Duration) -> Duration {
    period + period.mul_f64(JITTER * crate::random_unit())
}

#[cfg(test)]
mod tests;
