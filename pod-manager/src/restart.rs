//! Restart decisions shared by the sync loop and the pod phase.

use k8s_openapi::api::core::v1::{Container, PodSpec};

/// Pod restart policy `Always`.
pub const ALWAYS: &str = "Always";
/// Pod restart policy `OnFailure`.
pub const ON_FAILURE: &str = "OnFailure";
/// Pod restart policy `Never`.
pub const NEVER: &str = "Never";

/// The pod's restart policy, `Always` when unset as the API defaults it.
pub fn pod_restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or(ALWAYS)
}

/// An init container with `restartPolicy: Always`: a sidecar, started before the app
/// containers and kept running.
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some(ALWAYS)
}

/// Whether a container that exited with `exit_code` is restarted: the container's own
/// restartPolicy when set (sidecars, and regular containers with ContainerRestartRules),
/// else the pod's.
pub fn should_restart(container: &Container, spec: &PodSpec, exit_code: i32) -> bool {
    let policy = container
        .restart_policy
        .as_deref()
        .unwrap_or_else(|| pod_restart_policy(spec));
    match policy {
        ALWAYS => true,
        ON_FAILURE => exit_code != 0,
        _ => false,
    }
}

/// Whether a regular (non-sidecar) init container that exited with `exit_code` runs
/// again: only after a failure, and not under restartPolicy Never.
pub fn should_restart_init(spec: &PodSpec, exit_code: i32) -> bool {
    exit_code != 0 && pod_restart_policy(spec) != NEVER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_follows_pod_then_container_policy() {
        let app = Container {
            name: "app".into(),
            ..Default::default()
        };
        let spec = |policy: &str| PodSpec {
            restart_policy: Some(policy.into()),
            ..Default::default()
        };
        assert!(should_restart(&app, &spec(ALWAYS), 0));
        assert!(should_restart(&app, &spec(ON_FAILURE), 1));
        assert!(!should_restart(&app, &spec(ON_FAILURE), 0));
        assert!(!should_restart(&app, &spec(NEVER), 1));
        assert!(
            should_restart(&app, &PodSpec::default(), 0),
            "defaults to Always"
        );

        let sidecar = Container {
            name: "proxy".into(),
            restart_policy: Some(ALWAYS.into()),
            ..Default::default()
        };
        assert!(is_sidecar(&sidecar));
        assert!(!is_sidecar(&app));
        assert!(should_restart(&sidecar, &spec(NEVER), 0));

        assert!(
            !should_restart_init(&spec(ALWAYS), 0),
            "a finished init container stays done"
        );
        assert!(should_restart_init(&spec(ALWAYS), 1));
        assert!(should_restart_init(&spec(ON_FAILURE), 1));
        assert!(!should_restart_init(&spec(NEVER), 1));
    }
}
