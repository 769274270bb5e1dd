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

/// The restart rule action that restarts the container.
pub const RESTART_ACTION: &str = "Restart";
/// The restart rule action that restarts every container of the pod in place, which
/// this kubelet does not do: admission refuses pods that use it.
pub const RESTART_ALL_CONTAINERS_ACTION: &str = "RestartAllContainers";

/// The first of the container's `restartPolicyRules` whose exit codes match (upstream
/// `FindMatchingContainerRestartRule`): its action.
fn matching_rule_action(container: &Container, exit_code: i32) -> Option<&str> {
    container
        .restart_policy_rules
        .iter()
        .flatten()
        .find(|rule| {
            rule.exit_codes.as_ref().is_some_and(|codes| {
                let listed = codes.values.iter().flatten().any(|c| *c == exit_code);
                match codes.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                }
            })
        })
        .map(|rule| rule.action.as_str())
}

/// Whether a container that exited with `exit_code` is restarted (upstream
/// `ContainerShouldRestart`, ContainerRestartRules on): a matching `restartPolicyRules`
/// entry with action Restart, else the container's own restartPolicy when set (sidecars,
/// and regular containers with ContainerRestartRules), else the pod's.
pub fn should_restart(container: &Container, spec: &PodSpec, exit_code: i32) -> bool {
    if container.restart_policy.is_some()
        && matching_rule_action(container, exit_code) == Some(RESTART_ACTION)
    {
        return true;
    }
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
/// again: only after a failure, and not under restartPolicy Never (the container's own
/// when it sets one, as upstream with ContainerRestartRules, else the pod's).
pub fn should_restart_init(container: &Container, spec: &PodSpec, exit_code: i32) -> bool {
    let policy = container
        .restart_policy
        .as_deref()
        .unwrap_or_else(|| pod_restart_policy(spec));
    exit_code != 0 && policy != NEVER
}

/// The first container whose `restartPolicyRules` ask for RestartAllContainers.
pub fn restarts_all_containers(spec: &PodSpec) -> Option<&str> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| {
            c.restart_policy_rules
                .iter()
                .flatten()
                .any(|rule| rule.action == RESTART_ALL_CONTAINERS_ACTION)
        })
        .map(|c| c.name.as_str())
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
            !should_restart_init(&app, &spec(ALWAYS), 0),
            "a finished init container stays done"
        );
        assert!(should_restart_init(&app, &spec(ALWAYS), 1));
        assert!(should_restart_init(&app, &spec(ON_FAILURE), 1));
        assert!(!should_restart_init(&app, &spec(NEVER), 1));
        let never = Container {
            restart_policy: Some(NEVER.into()),
            ..app.clone()
        };
        assert!(
            !should_restart_init(&never, &spec(ALWAYS), 1),
            "the container's own"
        );
    }

    #[test]
    fn restart_rules_come_before_the_container_policy() {
        let rule = |operator: &str, codes: Vec<i32>, action: &str| {
            k8s_openapi::api::core::v1::ContainerRestartRule {
                action: action.into(),
                exit_codes: Some(
                    k8s_openapi::api::core::v1::ContainerRestartRuleOnExitCodes {
                        operator: operator.into(),
                        values: Some(codes),
                    },
                ),
            }
        };
        let app = Container {
            name: "app".into(),
            restart_policy: Some(NEVER.into()),
            restart_policy_rules: Some(vec![rule("In", vec![42], RESTART_ACTION)]),
            ..Default::default()
        };
        let never = PodSpec {
            restart_policy: Some(NEVER.into()),
            containers: vec![app.clone()],
            ..Default::default()
        };
        assert!(should_restart(&app, &never, 42), "a matching rule restarts");
        assert!(
            !should_restart(&app, &never, 1),
            "else the container's Never"
        );
        let retry_unless = Container {
            restart_policy: Some(NEVER.into()),
            restart_policy_rules: Some(vec![rule("NotIn", vec![0, 3], RESTART_ACTION)]),
            ..app.clone()
        };
        assert!(should_restart(&retry_unless, &never, 1));
        assert!(!should_restart(&retry_unless, &never, 3));
        assert_eq!(restarts_all_containers(&never), None);
        let all = Container {
            restart_policy_rules: Some(vec![rule("In", vec![1], RESTART_ALL_CONTAINERS_ACTION)]),
            ..app
        };
        let spec_all = PodSpec {
            containers: vec![all],
            ..Default::default()
        };
        assert_eq!(restarts_all_containers(&spec_all), Some("app"));
    }
}
