use super::*;

fn pod(uid: &str, generation: i64, cpu: &str, memory_limit: &str) -> Pod {
    serde_yaml::from_str(&format!(
        r#"
metadata: {{name: p-{uid}, namespace: ns, uid: {uid}, generation: {generation}}}
spec:
  nodeName: node
  containers:
  - name: main
    image: busybox
    resources: {{requests: {{cpu: "{cpu}"}}, limits: {{memory: {memory_limit}}}}}
"#
    ))
    .expect("pod")
}

fn node(cpu: &str) -> NodeFacts {
    let quantity = k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    NodeFacts {
        name: "node".into(),
        allocatable: [
            ("cpu".to_owned(), quantity(cpu.into())),
            ("memory".to_owned(), quantity("8Gi".into())),
            ("pods".to_owned(), quantity("110".into())),
        ]
        .into(),
        ..NodeFacts::default()
    }
}

fn cpu_of(pod: &Pod) -> String {
    pod.spec.as_ref().expect("spec").containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("cpu"))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}

#[test]
fn quantities_compare_by_value() {
    let a = PodResourceInfo::of(&pod("u", 1, "1", "64Mi"));
    let b = PodResourceInfo::of(&pod("u", 1, "1000m", "64Mi"));
    let c = PodResourceInfo::of(&pod("u", 1, "1001m", "64Mi"));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn the_pod_workers_see_the_allocation_until_a_resize_is_accepted() {
    let allocations = Allocations::in_memory();
    let admitted = pod("u1", 1, "500m", "64Mi");
    allocations.set_allocated(&admitted);
    let resized = pod("u1", 2, "700m", "128Mi");
    assert_eq!(cpu_of(&allocations.allocated_pod(&resized)), "500m");
    // A pod without an allocation is left as it is.
    assert_eq!(
        cpu_of(&allocations.allocated_pod(&pod("u2", 1, "3", "1Gi"))),
        "3"
    );

    let decision = allocations.handle_resize(&resized, Vec::new, &node("2"));
    let ResizeDecision::Accepted { message } = decision else {
        panic!("accepted: {decision:?}");
    };
    assert!(
        message.starts_with("Pod resize started: {\"containers\":[{\"name\":\"main\""),
        "{message}"
    );
    assert!(message.ends_with("\"generation\":2}"), "{message}");
    assert_eq!(cpu_of(&allocations.allocated_pod(&resized)), "700m");
    let conditions = allocations.conditions("u1");
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0].type_, POD_RESIZE_IN_PROGRESS);
    assert_eq!(conditions[0].observed_generation, Some(2));
    // A sync of the pod before the resize (generation 1) does not complete it; one
    // that applied it does, and the condition goes with the generation it had.
    assert_eq!(allocations.clear_in_progress("u1", 1), None);
    assert_eq!(allocations.conditions("u1").len(), 1);
    assert_eq!(allocations.clear_in_progress("u1", 2), Some(2));
    assert!(allocations.conditions("u1").is_empty());
    assert_eq!(
        allocations.handle_resize(&resized, Vec::new, &node("2")),
        ResizeDecision::None
    );
}

#[test]
fn a_resize_without_room_is_deferred_once_and_accepted_when_room_is_made() {
    let allocations = Allocations::in_memory();
    let other = pod("other", 1, "1500m", "64Mi");
    let mine = pod("mine", 1, "100m", "64Mi");
    allocations.set_allocated(&other);
    allocations.set_allocated(&mine);
    let bigger = pod("mine", 2, "1", "64Mi");
    let others = [allocations.allocated_pod(&other)];

    let first = allocations.handle_resize(&bigger, || others.to_vec(), &node("2"));
    let ResizeDecision::Pending {
        reason,
        event: Some(message),
    } = first
    else {
        panic!("deferred with an event: {first:?}");
    };
    assert_eq!(reason, REASON_DEFERRED);
    assert!(message.starts_with("Pod resize Deferred: "), "{message}");
    assert!(allocations.is_deferred("mine"));
    assert!(allocations.any_deferred());
    let pending = &allocations.conditions("mine")[0];
    assert_eq!(pending.type_, POD_RESIZE_PENDING);
    assert_eq!(pending.reason.as_deref(), Some(REASON_DEFERRED));
    assert_eq!(
        pending.message.as_deref(),
        Some("Node didn't have enough resource: cpu, requested: 1000, used: 1500, capacity: 2000")
    );
    // Tried again with nothing changed: no second event.
    let again = allocations.handle_resize(&bigger, || others.to_vec(), &node("2"));
    assert_eq!(
        again,
        ResizeDecision::Pending {
            reason: REASON_DEFERRED,
            event: None
        }
    );
    assert_eq!(cpu_of(&allocations.allocated_pod(&bigger)), "100m");

    // The other pod left: the resize goes through and the pending condition goes.
    let accepted = allocations.handle_resize(&bigger, Vec::new, &node("2"));
    assert!(
        matches!(accepted, ResizeDecision::Accepted { .. }),
        "{accepted:?}"
    );
    assert!(!allocations.is_deferred("mine"));
    assert!(!allocations.any_deferred());
    assert!(
        allocations
            .conditions("mine")
            .iter()
            .all(|c| c.type_ != POD_RESIZE_PENDING)
    );
}

#[test]
fn pod_level_and_memory_volume_resizes_are_infeasible() {
    let allocations = Allocations::in_memory();
    let mut p = pod("u", 1, "100m", "64Mi");
    allocations.set_allocated(&p);
    if let Some(spec) = p.spec.as_mut() {
        spec.resources = Some(ResourceRequirements {
            limits: Some(
                [(
                    "cpu".to_owned(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
                )]
                .into(),
            ),
            ..Default::default()
        });
    }
    let decision = allocations.handle_resize(&p, Vec::new, &node("2"));
    assert!(
        matches!(
            decision,
            ResizeDecision::Pending {
                reason: REASON_INFEASIBLE,
                event: Some(_)
            }
        ),
        "{decision:?}"
    );
    assert!(
        !allocations.is_deferred("u"),
        "infeasible resizes are not retried"
    );
}

#[test]
fn in_progress_keeps_its_generation_and_an_error_reason() {
    let allocations = Allocations::in_memory();
    assert_eq!(allocations.set_in_progress("u", "", "", 3), (3, true));
    assert_eq!(allocations.set_in_progress("u", "", "", 4), (3, false));
    let (generation, changed) = allocations.set_in_progress("u", REASON_ERROR, "boom", 5);
    assert_eq!((generation, changed), (3, true));
    let condition = &allocations.conditions("u")[0];
    assert_eq!(condition.reason.as_deref(), Some(REASON_ERROR));
    assert_eq!(condition.message.as_deref(), Some("boom"));
    // Without a new reason, the error stays.
    allocations.set_in_progress("u", "", "", 6);
    assert_eq!(
        allocations.conditions("u")[0].reason.as_deref(),
        Some(REASON_ERROR)
    );
}

#[tokio::test]
async fn allocations_and_actuated_resources_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allocations = Allocations::persisted(dir.path()).await;
    let p = pod("u", 1, "250m", "64Mi");
    allocations.set_allocated(&p);
    let given = p.spec.as_ref().expect("spec").containers[0]
        .resources
        .clone()
        .expect("resources");
    assert!(allocations.set_actuated("u", "main", given.clone()));
    assert!(
        !allocations.set_actuated("u", "main", given.clone()),
        "unchanged"
    );
    allocations.save().await;

    let restarted = Allocations::persisted(dir.path()).await;
    assert!(restarted.has_allocation("u"));
    let resized = pod("u", 2, "900m", "64Mi");
    assert_eq!(cpu_of(&restarted.allocated_pod(&resized)), "250m");
    let actuated = restarted.actuated("u", "main").expect("actuated");
    assert!(same_requirements(&actuated, &given));

    // A damaged file is reported and replaced, never fatal.
    std::fs::write(dir.path().join(STATE_FILE), b"{not json").expect("write");
    let fresh = Allocations::persisted(dir.path()).await;
    assert!(!fresh.has_allocation("u"));
}

/// Pod workers save at once: every save completes, and the file holds every pod after
/// the last one (no older snapshot renamed over a newer one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_neither_fail_nor_lose_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allocations = Allocations::persisted(dir.path()).await;
    let mut saves = tokio::task::JoinSet::new();
    for i in 0..64 {
        let allocations = allocations.clone();
        saves.spawn(async move {
            allocations.set_allocated(&pod(&format!("u{i}"), 1, "100m", "16Mi"));
            allocations.save().await;
        });
    }
    while let Some(done) = saves.join_next().await {
        done.expect("save task");
    }
    assert!(
        !dir.path()
            .join(STATE_FILE)
            .with_extension("json.tmp")
            .exists(),
        "a temporary file was left behind"
    );
    let restarted = Allocations::persisted(dir.path()).await;
    let missing: Vec<usize> = (0..64)
        .filter(|i| !restarted.has_allocation(&format!("u{i}")))
        .collect();
    assert!(missing.is_empty(), "lost after restart: {missing:?}");
}
