use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kubelet_core::{EventRecorder, NodeEvent, PodEvent};
use kubelet_pod_manager::kill::KillReason;
use kubelet_pod_manager::pressure::{NodePressure, PressureCondition};
use kubelet_stats::Summary;
use kubelet_stats::summary::{MemoryStats, NodeStats, PodStats};

use super::*;
use crate::rank::tests::{pod, stats};
use crate::threshold::{Signal, Threshold, ThresholdValue};

const MI: u64 = 1024 * 1024;

#[derive(Default)]
struct Node {
    available: Mutex<u64>,
    pods: Mutex<Vec<(Pod, PodStats)>>,
    evicted: Mutex<Vec<(String, i64, KillReason)>>,
    events: Mutex<Vec<String>>,
}

#[async_trait]
impl SummarySource for Node {
    async fn summary(&self) -> Result<Summary, String> {
        let available = *self.available.lock().expect("lock");
        Ok(Summary {
            node: NodeStats {
                memory: Some(MemoryStats {
                    time: Time::now(),
                    available_bytes: Some(available),
                    working_set_bytes: Some(1024 * MI - available),
                    ..MemoryStats::default()
                }),
                ..NodeStats::default()
            },
            pods: self
                .pods
                .lock()
                .expect("lock")
                .iter()
                .map(|(_, s)| s.clone())
                .collect(),
        })
    }
}

#[async_trait]
impl PodEvictor for Node {
    async fn active_pods(&self) -> Vec<Pod> {
        self.pods
            .lock()
            .expect("lock")
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    async fn evict(&self, pod: &Pod, grace_seconds: i64, why: KillReason) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.pods
            .lock()
            .expect("lock")
            .retain(|(p, _)| p.metadata.name.as_deref() != Some(name.as_str()));
        self.evicted
            .lock()
            .expect("lock")
            .push((name, grace_seconds, why));
    }
}

impl EventRecorder for Node {
    fn record(&self, event: PodEvent) {
        self.events.lock().expect("lock").push(format!(
            "{} {}: {}",
            event.pod.name, event.reason, event.message
        ));
    }

    fn record_node(&self, event: NodeEvent) {
        self.events
            .lock()
            .expect("lock")
            .push(format!("node {}: {}", event.reason, event.message));
    }
}

fn manager(
    node: &Arc<Node>,
    thresholds: Vec<Threshold>,
    pressure: &NodePressure,
) -> EvictionManager {
    EvictionManager::new(
        EvictionConfig {
            thresholds,
            pressure_transition_period: Duration::from_secs(60),
            max_pod_grace_period_seconds: 20,
            local_storage_capacity_isolation: true,
        },
        pressure.clone(),
        node.clone(),
        node.clone(),
        node.clone(),
    )
}

fn memory_threshold(mi: i64, grace: Duration) -> Threshold {
    Threshold {
        signal: Signal::MemoryAvailable,
        value: ThresholdValue::Quantity(mi * 1024 * 1024),
        grace_period: grace,
        min_reclaim: None,
    }
}

#[tokio::test]
async fn a_hard_threshold_evicts_the_top_ranked_pod_and_the_condition_outlives_it() {
    let node = Arc::new(Node::default());
    *node.available.lock().expect("lock") = 50 * MI;
    *node.pods.lock().expect("lock") = vec![
        (pod("small", 0, None), stats("small", 10 * MI)),
        (pod("hog", 0, None), stats("hog", 500 * MI)),
    ];
    let pressure = NodePressure::default();
    let mut m = manager(
        &node,
        vec![memory_threshold(100, Duration::ZERO)],
        &pressure,
    );
    let start = Instant::now();
    let round = m.synchronize(start).await;
    assert_eq!(round.evicted.as_deref(), Some("default/hog"));
    assert_eq!(pressure.conditions(), vec![PressureCondition::Memory]);
    let evicted = node.evicted.lock().expect("lock").clone();
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].1, 1, "a hard eviction gives 1 s");
    assert_eq!(evicted[0].2.reason, "Evicted");
    assert!(
        evicted[0].2.message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        ),
        "{}",
        evicted[0].2.message
    );
    let events = node.events.lock().expect("lock").clone();
    assert!(events.contains(&"node EvictionThresholdMet: Attempting to reclaim memory".to_owned()));
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("hog Evicted: The node was low on resource: memory."))
    );

    // Memory is back: no eviction, but MemoryPressure stays for the transition period.
    *node.available.lock().expect("lock") = 500 * MI;
    let round = m.synchronize(start + Duration::from_secs(10)).await;
    assert_eq!(round.evicted, None);
    assert_eq!(pressure.conditions(), vec![PressureCondition::Memory]);
    let round = m.synchronize(start + Duration::from_secs(61)).await;
    assert_eq!(round.conditions, Vec::new());
    assert!(pressure.conditions().is_empty());
}

#[tokio::test]
async fn a_soft_threshold_waits_for_its_grace_period_and_gives_the_max_pod_grace() {
    let node = Arc::new(Node::default());
    *node.available.lock().expect("lock") = 50 * MI;
    *node.pods.lock().expect("lock") = vec![(pod("hog", 0, None), stats("hog", 500 * MI))];
    let pressure = NodePressure::default();
    let mut m = manager(
        &node,
        vec![memory_threshold(100, Duration::from_secs(30))],
        &pressure,
    );
    let start = Instant::now();
    assert_eq!(m.synchronize(start).await.evicted, None);
    // The condition is reported at once, before the grace period.
    assert_eq!(pressure.conditions(), vec![PressureCondition::Memory]);
    assert_eq!(
        m.synchronize(start + Duration::from_secs(20)).await.evicted,
        None
    );
    let round = m.synchronize(start + Duration::from_secs(31)).await;
    assert_eq!(round.evicted.as_deref(), Some("default/hog"));
    assert_eq!(node.evicted.lock().expect("lock")[0].1, 20);
}

#[tokio::test]
async fn critical_pods_are_never_evicted() {
    let node = Arc::new(Node::default());
    *node.available.lock().expect("lock") = 50 * MI;
    let mut critical = pod("etcd", 0, None);
    critical.metadata.annotations =
        Some([("kubernetes.io/config.source".to_owned(), "file".to_owned())].into());
    *node.pods.lock().expect("lock") = vec![
        (critical, stats("etcd", 900 * MI)),
        (pod("app", 0, None), stats("app", 10 * MI)),
    ];
    let pressure = NodePressure::default();
    let mut m = manager(
        &node,
        vec![memory_threshold(100, Duration::ZERO)],
        &pressure,
    );
    let round = m.synchronize(Instant::now()).await;
    assert_eq!(round.evicted.as_deref(), Some("default/app"));
}

#[tokio::test]
async fn an_emptydir_over_its_size_limit_is_evicted_without_node_pressure() {
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Volume};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
    use kubelet_stats::summary::{FsStats, VolumeStats};
    let node = Arc::new(Node::default());
    *node.available.lock().expect("lock") = 900 * MI;
    let mut p = pod("scratch", 0, None);
    if let Some(spec) = p.spec.as_mut() {
        spec.volumes = Some(vec![Volume {
            name: "cache".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(ApiQuantity("1Mi".to_owned())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        }]);
    }
    let mut s = stats("scratch", MI);
    s.volume_stats = vec![VolumeStats {
        name: "cache".to_owned(),
        fs: FsStats {
            used_bytes: Some(2 * MI),
            ..FsStats::default()
        },
        ..VolumeStats::default()
    }];
    *node.pods.lock().expect("lock") = vec![(p, s)];
    let pressure = NodePressure::default();
    let mut m = manager(
        &node,
        vec![memory_threshold(100, Duration::ZERO)],
        &pressure,
    );
    let round = m.synchronize(Instant::now()).await;
    assert_eq!(round.evicted.as_deref(), Some("default/scratch"));
    assert!(pressure.conditions().is_empty());
    let evicted = node.evicted.lock().expect("lock").clone();
    assert_eq!(evicted[0].1, 0);
    assert_eq!(
        evicted[0].2.message,
        "Usage of EmptyDir volume \"cache\" exceeds the limit \"1Mi\". "
    );
}

#[tokio::test]
async fn disk_pressure_reclaims_images_first_and_evicts_nobody_when_that_suffices() {
    use kubelet_stats::summary::FsStats;

    /// A node whose disk is freed by the reclaimer.
    struct Disk {
        node: Arc<Node>,
        available: Mutex<u64>,
        reclaims: Mutex<u32>,
    }
    #[async_trait]
    impl SummarySource for Disk {
        async fn summary(&self) -> Result<Summary, String> {
            let mut summary = self.node.summary().await?;
            summary.node.fs = Some(FsStats {
                time: Time::now(),
                available_bytes: Some(*self.available.lock().expect("lock")),
                capacity_bytes: Some(1000 * MI),
                ..FsStats::default()
            });
            Ok(summary)
        }
    }
    #[async_trait]
    impl NodeReclaimer for Disk {
        async fn reclaim_disk(&self) {
            *self.reclaims.lock().expect("lock") += 1;
            *self.available.lock().expect("lock") = 500 * MI;
        }
    }

    let node = Arc::new(Node::default());
    *node.available.lock().expect("lock") = 900 * MI;
    *node.pods.lock().expect("lock") = vec![(pod("app", 0, None), stats("app", 10 * MI))];
    let disk = Arc::new(Disk {
        node: node.clone(),
        available: Mutex::new(50 * MI),
        reclaims: Mutex::new(0),
    });
    let pressure = NodePressure::default();
    let threshold = Threshold {
        signal: Signal::NodeFsAvailable,
        value: ThresholdValue::Percentage(0.1),
        grace_period: Duration::ZERO,
        min_reclaim: None,
    };
    let mut m = EvictionManager::new(
        EvictionConfig {
            thresholds: vec![threshold],
            ..EvictionConfig::default()
        },
        pressure.clone(),
        disk.clone(),
        node.clone(),
        node.clone(),
    )
    .with_reclaimer(disk.clone());
    let round = m.synchronize(Instant::now()).await;
    assert_eq!(round.evicted, None);
    assert_eq!(*disk.reclaims.lock().expect("lock"), 1);
    assert_eq!(pressure.conditions(), vec![PressureCondition::Disk]);
    assert!(node.evicted.lock().expect("lock").is_empty());
}
