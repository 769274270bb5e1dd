use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn pod(name: &str, priority: Option<i32>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            priority,
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn names(group: &[Pod]) -> Vec<&str> {
    group
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect()
}

#[test]
fn the_two_grace_periods_become_two_classes_as_upstream_migrates_them() {
    let periods = shutdown_periods(Duration::from_secs(30), Duration::from_secs(10), &[]);
    assert_eq!(
        periods,
        [
            ShutdownPeriod {
                priority: 0,
                grace_seconds: 20
            },
            ShutdownPeriod {
                priority: 2_000_000_000,
                grace_seconds: 10
            },
        ]
    );
    assert_eq!(period_requested(&periods), Duration::from_secs(30));
    assert!(shutdown_periods(Duration::ZERO, Duration::ZERO, &[]).is_empty());
    assert!(
        shutdown_periods(Duration::from_secs(5), Duration::from_secs(10), &[]).is_empty(),
        "critical longer than the whole: no graceful shutdown, as upstream"
    );
    let custom = [
        ShutdownPeriod {
            priority: 100_000,
            grace_seconds: 5,
        },
        ShutdownPeriod {
            priority: 0,
            grace_seconds: 60,
        },
    ];
    let sorted = shutdown_periods(Duration::from_secs(30), Duration::ZERO, &custom);
    assert_eq!(sorted[0].priority, 0, "by priority, ascending");
    assert_eq!(period_requested(&sorted), Duration::from_secs(65));
}

#[test]
fn pods_go_to_the_highest_class_not_above_their_priority() {
    let periods = [
        ShutdownPeriod {
            priority: 0,
            grace_seconds: 20,
        },
        ShutdownPeriod {
            priority: 1000,
            grace_seconds: 10,
        },
        ShutdownPeriod {
            priority: 2_000_000_000,
            grace_seconds: 5,
        },
    ];
    let groups = group_by_priority(
        &periods,
        vec![
            pod("none", None),
            pod("negative", Some(-5)),
            pod("mid", Some(1000)),
            pod("between", Some(5000)),
            pod("critical", Some(2_000_001_000)),
        ],
    );
    assert_eq!(names(&groups[0].1), ["none", "negative"]);
    assert_eq!(names(&groups[1].1), ["mid", "between"]);
    assert_eq!(names(&groups[2].1), ["critical"]);
    assert!(group_by_priority(&[], vec![pod("a", None)]).is_empty());
}
