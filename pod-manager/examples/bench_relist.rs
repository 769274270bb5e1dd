//! Cost of the relist and of one pod's status at 110 pods (upstream's default maxPods),
//! against the in-process fake runtime: the kubelet's own work (CRI encoding, grouping,
//! status computation), without the runtime's. Run by `cargo xtask bench`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kubelet_core::{ContainerFilter, RuntimeInventory, SandboxFilter};
use kubelet_cri_client::{FakeCriServer, Timeouts};
use kubelet_pod_manager::pod_snapshot;
use kubelet_pod_manager::status::{StatusInputs, pod_status};

const PODS: usize = 110;
const CONTAINERS_PER_POD: usize = 2;
const ROUNDS: u32 = 200;

fn pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{i}")),
            namespace: Some("bench".into()),
            uid: Some(format!("uid-{i:04}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: (0..CONTAINERS_PER_POD)
                .map(|c| Container {
                    name: format!("c{c}"),
                    image: Some("bench:1".into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn report(what: &str, total: Duration, rounds: u32) {
    let each = total / rounds;
    println!("{what}: {each:?} per run ({rounds} runs)");
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeCriServer::start();
    fake.add_local_image("bench:1");
    let client = fake.client(Timeouts::default());
    let pods: Vec<Pod> = (0..PODS).map(pod).collect();
    for pod in &pods {
        FakeCriServer::run_pod(&client, pod, "bench:1").await?;
    }

    // The relist: every sandbox and container, two calls whatever the pod count.
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let sandboxes = client.list_sandboxes(&SandboxFilter::default()).await?;
        let containers =
            RuntimeInventory::list_containers(&client, &ContainerFilter::default()).await?;
        assert_eq!(sandboxes.len(), PODS);
        assert_eq!(containers.len(), PODS * CONTAINERS_PER_POD);
    }
    let relist = started.elapsed();
    report(&format!("relist of {PODS} pods"), relist, ROUNDS);
    println!(
        "relist share of one core at 1 relist/s: {:.3}%",
        relist.as_secs_f64() / f64::from(ROUNDS) * 100.0
    );

    // One pod's sync-time read and status computation, for every pod.
    let waiting = Default::default();
    let no_probes = Default::default();
    let started = Instant::now();
    let rounds = 10;
    for _ in 0..rounds {
        for pod in &pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let snapshot = pod_snapshot(&client, &uid).await?;
            let status = pod_status(&StatusInputs {
                pod,
                snapshot: &snapshot,
                waiting: &waiting,
                runtime_name: "fake",
                host_ips: &[],
                start_time: None,
                previous: None,
                now: Timestamp::UNIX_EPOCH,
                probes: &no_probes,
                allocations: None,
            });
            assert_eq!(status.phase.as_deref(), Some("Running"));
        }
    }
    report(
        &format!("snapshot + status of all {PODS} pods"),
        started.elapsed(),
        rounds,
    );
    Ok(())
}
