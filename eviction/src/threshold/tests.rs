use std::collections::BTreeMap;
use std::time::Duration;

use kubelet_core::config::KubeletConfiguration;

use super::*;

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn config(hard: &[(&str, &str)]) -> KubeletConfiguration {
    KubeletConfiguration {
        eviction_hard: Some(map(hard)),
        ..KubeletConfiguration::default()
    }
}

fn error(config: &KubeletConfiguration) -> String {
    EvictionConfig::from_kubelet_config(config)
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn upstream_defaults_parse_with_container_fs_following_node_fs() {
    let c = config(&[
        ("memory.available", "100Mi"),
        ("nodefs.available", "10%"),
        ("nodefs.inodesFree", "5%"),
        ("imagefs.available", "15%"),
    ]);
    let parsed = EvictionConfig::from_kubelet_config(&c).expect("parses");
    let find = |s: Signal| {
        parsed
            .thresholds
            .iter()
            .find(|t| t.signal == s)
            .copied()
            .unwrap_or_else(|| panic!("{s} missing"))
    };
    assert_eq!(
        find(Signal::MemoryAvailable).value,
        ThresholdValue::Quantity(100 * 1024 * 1024)
    );
    assert_eq!(
        find(Signal::NodeFsAvailable).value,
        ThresholdValue::Percentage(0.1)
    );
    assert_eq!(
        find(Signal::ContainerFsAvailable).value,
        ThresholdValue::Percentage(0.1)
    );
    assert_eq!(
        find(Signal::ContainerFsInodesFree).value,
        ThresholdValue::Percentage(0.05)
    );
    assert!(parsed.thresholds.iter().all(Threshold::is_hard));
    // Without `pods` in enforceNodeAllocatable there is no allocatable threshold.
    assert!(
        parsed
            .thresholds
            .iter()
            .all(|t| t.signal != Signal::AllocatableMemoryAvailable)
    );
    assert_eq!(parsed.pressure_transition_period, Duration::ZERO);
}

#[test]
fn enforcing_pods_adds_the_allocatable_memory_threshold() {
    let mut c = config(&[("memory.available", "200Mi")]);
    c.enforce_node_allocatable = Some(vec!["pods".to_owned()]);
    let parsed = EvictionConfig::from_kubelet_config(&c).expect("parses");
    let allocatable: Vec<_> = parsed
        .thresholds
        .iter()
        .filter(|t| t.signal == Signal::AllocatableMemoryAvailable)
        .collect();
    assert_eq!(allocatable.len(), 1);
    assert_eq!(
        allocatable[0].value,
        ThresholdValue::Quantity(200 * 1024 * 1024)
    );
}

#[test]
fn bad_thresholds_name_the_field_and_why() {
    assert_eq!(
        error(&config(&[("memory.free", "1Gi")])),
        "evictionHard: unsupported eviction signal memory.free"
    );
    assert_eq!(
        error(&config(&[("nodefs.available", "101%")])),
        "evictionHard: eviction percentage threshold nodefs.available must be <= 100%: 101%"
    );
    assert_eq!(
        error(&config(&[("nodefs.available", "-1%")])),
        "evictionHard: eviction percentage threshold nodefs.available must be >= 0%: -1%"
    );
    assert_eq!(
        error(&config(&[("memory.available", "-100Mi")])),
        "evictionHard: eviction threshold memory.available must be positive: -100Mi"
    );
    assert!(error(&config(&[("memory.available", "lots")])).starts_with("evictionHard: \"lots\""));
    let soft = KubeletConfiguration {
        eviction_soft: map(&[("memory.available", "1Gi")]),
        ..KubeletConfiguration::default()
    };
    assert_eq!(
        error(&soft),
        "evictionSoftGracePeriod: grace period must be specified for the soft eviction threshold memory.available"
    );
    let reclaim = KubeletConfiguration {
        eviction_minimum_reclaim: map(&[("pid.available", "0%")]),
        ..KubeletConfiguration::default()
    };
    assert_eq!(
        error(&reclaim),
        "evictionMinimumReclaim: eviction percentage minimum reclaim pid.available must be positive: 0%"
    );
}

#[test]
fn soft_thresholds_take_their_grace_period_and_min_reclaim() {
    let c = KubeletConfiguration {
        eviction_soft: map(&[("memory.available", "1Gi"), ("nodefs.available", "0%")]),
        eviction_soft_grace_period: map(&[("memory.available", "1m30s")]),
        eviction_minimum_reclaim: map(&[("memory.available", "500Mi")]),
        ..KubeletConfiguration::default()
    };
    let parsed = EvictionConfig::from_kubelet_config(&c).expect("parses");
    // 0% is ignored, as upstream.
    let memory: Vec<_> = parsed
        .thresholds
        .iter()
        .filter(|t| t.signal == Signal::MemoryAvailable)
        .collect();
    assert_eq!(memory.len(), 1);
    assert_eq!(memory[0].grace_period, Duration::from_secs(90));
    assert_eq!(
        memory[0].min_reclaim,
        Some(ThresholdValue::Quantity(500 * 1024 * 1024))
    );
    assert!(!memory[0].is_hard());
    assert!(
        parsed
            .thresholds
            .iter()
            .all(|t| t.signal != Signal::NodeFsAvailable)
    );
}

#[test]
fn thresholds_are_met_below_their_value_and_resolved_past_min_reclaim() {
    let t = Threshold {
        signal: Signal::NodeFsAvailable,
        value: ThresholdValue::Percentage(0.1),
        grace_period: Duration::ZERO,
        min_reclaim: Some(ThresholdValue::Quantity(50)),
    };
    assert!(t.is_met(99, 1000, false));
    assert!(!t.is_met(100, 1000, false));
    assert!(t.is_met(120, 1000, true));
    assert!(!t.is_met(150, 1000, true));
}

#[test]
fn the_hard_thresholds_reserve_memory_and_node_storage() {
    let c = config(&[
        ("memory.available", "5%"),
        ("nodefs.available", "10%"),
        ("pid.available", "100"),
    ]);
    let parsed = EvictionConfig::from_kubelet_config(&c).expect("parses");
    assert_eq!(parsed.hard_reservation(2000, 10_000), (100, 1000));
    assert_eq!(
        EvictionConfig::default().hard_reservation(2000, 10_000),
        (0, 0)
    );
}

#[test]
fn container_fs_thresholds_are_noted() {
    let c = config(&[("containerfs.available", "20%")]);
    assert_eq!(
        EvictionConfig::notes(&c),
        vec![
            "evictionHard containerfs.available is ignored: the container filesystem is the node filesystem here, so the nodefs threshold applies"
                .to_owned()
        ]
    );
}

#[test]
fn memcg_notifications_are_noted() {
    let mut c = config(&[]);
    assert!(EvictionConfig::notes(&c).is_empty());
    c.kernel_memcg_notification = true;
    assert_eq!(
        EvictionConfig::notes(&c),
        vec![
            "kernelMemcgNotification is not supported yet: memory thresholds are checked every 10s"
                .to_owned()
        ]
    );
}
