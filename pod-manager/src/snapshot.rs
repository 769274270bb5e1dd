//! Reading what the runtime has for one pod.

use std::path::Path;

use kubelet_core::labels::{
    CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION, CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION,
    POD_UID_LABEL,
};
use kubelet_core::{ContainerFilter, ContainerState, Runtime, SandboxFilter};

use crate::Result;
use crate::status::RuntimeSnapshot;

/// Most bytes of a termination message kept, as upstream.
const MAX_TERMINATION_MESSAGE: u64 = 4096;
/// Lines of log taken for `FallbackToLogsOnError`, as upstream.
const FALLBACK_LOG_LINES: usize = 80;

/// Everything the runtime has for the pod `uid`: its sandboxes and container instances,
/// newest first, with termination messages filled in for exited containers.
pub async fn pod_snapshot(runtime: &dyn Runtime, uid: &str) -> Result<RuntimeSnapshot> {
    let selector: std::collections::BTreeMap<_, _> =
        [(POD_UID_LABEL.to_owned(), uid.to_owned())].into();
    // The calls that do not depend on each other go at once: a pod start waits for two
    // round trips to the runtime here, not one per object.
    let sandbox_filter = SandboxFilter {
        labels: selector.clone(),
        ..Default::default()
    };
    let container_filter = ContainerFilter {
        labels: selector,
        ..Default::default()
    };
    let (sandboxes, containers) = tokio::join!(
        runtime.list_sandboxes(&sandbox_filter),
        runtime.list_containers(&container_filter),
    );
    let (sandboxes, containers) = (sandboxes?, containers?);
    let sandboxes: Vec<String> = sandboxes.into_iter().map(|s| s.id).collect();
    let containers: Vec<Instance> = containers
        .into_iter()
        .map(|c| Instance {
            id: c.id,
            sandbox_id: c.sandbox_id,
        })
        .collect();
    statuses_of(runtime, &sandboxes, &containers).await
}

/// A container instance known by id, with the sandbox it was created in (the runtime's
/// container status does not name it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    /// The runtime's container id.
    pub id: String,
    /// The id of the sandbox it was created in.
    pub sandbox_id: String,
}

/// The pod's state after a sync, read in one round trip: the sandboxes and containers
/// `before` had, and those the sync created, by id (the pod's worker is the only one
/// that creates them, so no list is needed; the ones removed since are left out).
pub(crate) async fn refreshed_snapshot(
    runtime: &dyn Runtime,
    before: &RuntimeSnapshot,
    created_sandboxes: &[String],
    created_containers: &[Instance],
) -> Result<RuntimeSnapshot> {
    let sandboxes: Vec<String> = before
        .sandboxes
        .iter()
        .map(|s| s.sandbox.id.clone())
        .chain(created_sandboxes.iter().cloned())
        .collect();
    let containers: Vec<Instance> = before
        .containers
        .iter()
        .map(|c| Instance {
            id: c.container.id.clone(),
            sandbox_id: c.container.sandbox_id.clone(),
        })
        .chain(created_containers.iter().cloned())
        .collect();
    statuses_of(runtime, &sandboxes, &containers).await
}

/// The statuses of `sandboxes` and `containers`, all asked at once; those removed
/// meanwhile are left out.
async fn statuses_of(
    runtime: &dyn Runtime,
    sandboxes: &[String],
    containers: &[Instance],
) -> Result<RuntimeSnapshot> {
    use futures::future::join_all;
    let (sandbox_statuses, container_statuses) = tokio::join!(
        join_all(sandboxes.iter().map(|id| runtime.sandbox_status(id))),
        join_all(containers.iter().map(|c| runtime.container_status(&c.id))),
    );
    let mut sandbox_statuses = sandbox_statuses
        .into_iter()
        .filter_map(|status| match status {
            Ok(status) => Some(Ok(status)),
            // Removed between the list and the status call.
            Err(e) if e.is_not_found() => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    sandbox_statuses
        .sort_by_key(|s| std::cmp::Reverse((s.sandbox.metadata.attempt, s.sandbox.created_at)));

    let mut statuses = Vec::with_capacity(containers.len());
    for (container, status) in containers.iter().zip(container_statuses) {
        let mut status = match status {
            Ok(status) => status,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        status
            .container
            .sandbox_id
            .clone_from(&container.sandbox_id);
        if status.container.state == ContainerState::Exited {
            status.message = termination_message(&status).await;
        }
        statuses.push(status);
    }
    statuses
        .sort_by_key(|c| std::cmp::Reverse((c.container.metadata.attempt, c.container.created_at)));
    Ok(RuntimeSnapshot {
        sandboxes: sandbox_statuses,
        containers: statuses,
    })
}

/// The termination message of an exited container: the file it wrote at its
/// terminationMessagePath, or with `FallbackToLogsOnError` and a failure, the end of its
/// log.
async fn termination_message(status: &kubelet_core::ContainerStatus) -> String {
    let annotations = &status.container.annotations;
    // The API defaults the path; pods that skipped defaulting get the same default.
    let path = annotations
        .get(CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION)
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .unwrap_or(crate::sync::DEFAULT_TERMINATION_MESSAGE_PATH);
    let mut message = String::new();
    if !path.is_empty()
        && let Some(mount) = status.mounts.iter().find(|m| m.container_path == path)
    {
        message = read_limited(Path::new(&mount.host_path)).await;
    }
    let fallback = annotations
        .get(CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION)
        .is_some_and(|p| p == "FallbackToLogsOnError");
    if message.is_empty() && fallback && status.exit_code != 0 && !status.log_path.is_empty() {
        message = log_tail(Path::new(&status.log_path)).await;
    }
    message
}

async fn read_limited(path: &Path) -> String {
    use tokio::io::AsyncReadExt;
    let Ok(file) = tokio::fs::File::open(path).await else {
        return String::new();
    };
    let mut bytes = Vec::new();
    if file
        .take(MAX_TERMINATION_MESSAGE)
        .read_to_end(&mut bytes)
        .await
        .is_err()
    {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last lines of a CRI-format log, content only, bounded like a termination message.
async fn log_tail(path: &Path) -> String {
    let Ok(text) = tokio::fs::read_to_string(path).await else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(FALLBACK_LOG_LINES);
    let mut out = String::new();
    for line in &lines[start..] {
        // <time> <stream> <tag> <content>; partial lines (tag P) continue the next.
        let mut parts = line.splitn(4, ' ');
        let (_, _, tag, content) = (parts.next(), parts.next(), parts.next(), parts.next());
        out.push_str(content.unwrap_or_default());
        if tag != Some("P") {
            out.push('\n');
        }
    }
    let limit = usize::try_from(MAX_TERMINATION_MESSAGE).unwrap_or(usize::MAX);
    if out.len() > limit {
        let mut cut = out.len() - limit;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::tests::{fake, run_sandbox};

    fn ids(snapshot: &RuntimeSnapshot) -> (Vec<String>, Vec<(String, String)>) {
        (
            snapshot
                .sandboxes
                .iter()
                .map(|s| s.sandbox.id.clone())
                .collect(),
            snapshot
                .containers
                .iter()
                .map(|c| (c.container.id.clone(), c.container.sandbox_id.clone()))
                .collect(),
        )
    }

    #[tokio::test]
    async fn a_refresh_reads_known_and_created_objects_by_id_without_listing() {
        let (fake, client) = fake();
        let (first, old) = run_sandbox(&client, "uid-1", 0, true).await;
        let before = pod_snapshot(&client, "uid-1").await.expect("snapshot");

        // What a sync does: the old instance goes, a new sandbox and container come.
        let old = old.expect("container");
        Runtime::stop_container(&client, &old, std::time::Duration::from_secs(1))
            .await
            .expect("stop");
        Runtime::remove_container(&client, &old)
            .await
            .expect("remove");
        let (second, new) = run_sandbox(&client, "uid-1", 1, true).await;
        let new = new.expect("container");

        let calls = fake.calls().len();
        let created = [Instance {
            id: new.clone(),
            sandbox_id: second.clone(),
        }];
        let refreshed =
            refreshed_snapshot(&client, &before, std::slice::from_ref(&second), &created)
                .await
                .expect("refresh");
        let listed = fake.calls()[calls..]
            .iter()
            .filter(|c| c.starts_with("List"))
            .cloned()
            .collect::<Vec<_>>();
        assert!(listed.is_empty(), "{listed:?}");

        assert_eq!(
            ids(&refreshed),
            (vec![second.clone(), first], vec![(new, second)])
        );
        assert_eq!(
            refreshed.containers[0].container.state,
            ContainerState::Running
        );
        // The same as listing finds.
        let listed = pod_snapshot(&client, "uid-1").await.expect("snapshot");
        assert_eq!(ids(&refreshed), ids(&listed));
    }
}
