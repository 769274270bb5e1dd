//! Soak runs on the real control plane and containerd, too long for every test run:
//! `cargo xtask soak` runs them (`cargo test -p kubelet-bin --test soak`; the target is
//! `test = false`, so `cargo test --workspace` leaves it out) and each prints its figures.
//!
//! - The kubelet is SIGKILLed 20 times at random moments while 30 pods start, stop and
//!   probe: no container restarts that should not, no pod is lost, no pod ends up with
//!   two sandboxes, and deleted pods leave nothing behind.
//! - containerd is restarted 5 times under 100 pods: the node is NotReady while it is
//!   gone, Ready after, and every pod keeps its container (0 lost, 0 restarts).
//! - The API server is stopped for 10 minutes: the pods keep running and the status of
//!   one that finished meanwhile catches up after.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Cluster, Kubelet, Namespace, lock};
use serde_json::Value;

/// A small deterministic generator (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from))
    }
}

fn pod_yaml(ns: &str, node: &str, image: &str, name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    readinessProbe: {{exec: {{command: ["true"]}}, periodSeconds: 2}}
    livenessProbe: {{exec: {{command: ["true"]}}, periodSeconds: 2}}
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  volumes: [{{name: scratch, emptyDir: {{}}}}]
"#
    )
}

/// The pods of `ns` by name: (uid, ready, the container's id and restart count).
fn pods(c: &Cluster, ns: &str) -> BTreeMap<String, (String, bool, String, i64)> {
    let list: Value = c.json(&["get", "pods", "-n", ns]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let status = &p["status"]["containerStatuses"][0];
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                (
                    p["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
                    p["status"]["phase"] == "Running" && status["ready"] == true,
                    status["containerID"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    status["restartCount"].as_i64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

/// Ready sandboxes of pods in `namespace`, by pod UID.
fn ready_sandboxes(endpoint: &str, namespace: &str) -> BTreeMap<String, usize> {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        use kubelet_core::RuntimeInventory;
        let client =
            kubelet_cri_client::CriClient::new(endpoint, Default::default()).expect("CRI client");
        let sandboxes = RuntimeInventory::list_sandboxes(&client, &Default::default())
            .await
            .expect("list sandboxes");
        let mut by_uid = BTreeMap::new();
        for s in sandboxes.iter().filter(|s| {
            s.state == kubelet_core::SandboxState::Ready && s.metadata.namespace == namespace
        }) {
            *by_uid.entry(s.metadata.uid.clone()).or_default() += 1;
        }
        by_uid
    })
}

/// SIGKILL, as a crash or the OOM killer would.
fn kill(mut kubelet: Kubelet) {
    let _ = kubelet.child.kill();
    let _ = kubelet.child.wait();
}

#[test]
fn sigkill_the_kubelet_twenty_times_while_pods_start_stop_and_probe() {
    let test = "sigkill_the_kubelet_twenty_times_while_pods_start_stop_and_probe";
    let Some((env, c)) = Cluster::from_env(test) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let seed = 0x5eed_u64;
    let mut rng = Rng(seed);
    let (node, image) = (&c.node, &c.busybox);

    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "soak-sigkill");
    let ns = namespace.name;
    let stable: Vec<String> = (0..10).map(|i| format!("stable-{i}")).collect();
    for name in &stable {
        c.apply(&pod_yaml(ns, node, image, name));
    }
    let mut kubelet = Some(kubelet);
    // A stable pod's container and restart count once it ran and was ready: they must
    // never change. (A container created but not yet started when the kubelet died is
    // replaced by the next kubelet, with a higher restart count, as upstream's does;
    // that happens before it is first seen running.)
    let mut first_seen: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    let mut kill_after = Vec::new();
    let started = Instant::now();
    for cycle in 0..20usize {
        if kubelet.is_none() {
            kubelet = Some(c.start_kubelet(dir.path()));
        }
        c.apply(&pod_yaml(ns, node, image, &format!("churn-{cycle}")));
        if cycle >= 2 {
            let old = format!("churn-{}", cycle - 2);
            let _ = c.try_kubectl(&["delete", "pod", "-n", ns, &old, "--wait=false"], None);
            deleted.insert(old);
        }
        let wait = rng.millis(500, 6000);
        kill_after.push(wait.as_millis());
        std::thread::sleep(wait);
        for (name, (_, ready, id, restarts)) in pods(&c, ns) {
            if ready && stable.contains(&name) && !id.is_empty() {
                first_seen.entry(name).or_insert((id, restarts));
            }
        }
        if let Some(k) = kubelet.take() {
            kill(k);
        }
    }
    let kills = kill_after.len();

    // One more start, and the node settles.
    let kubelet = c.start_kubelet(dir.path());
    let wanted: BTreeSet<String> = stable
        .iter()
        .cloned()
        .chain(["churn-18".to_owned(), "churn-19".to_owned()])
        .collect();
    let settle = Instant::now();
    c.wait_node_ready(&kubelet);
    common::wait_until(
        "every wanted pod Running and Ready, every deleted pod gone",
        240,
        || format!("{:#?}\n{}", pods(&c, ns), kubelet.log()),
        || {
            let now = pods(&c, ns);
            let names: BTreeSet<String> = now.keys().cloned().collect();
            names == wanted && now.values().all(|(_, ready, ..)| *ready)
        },
    );
    let settled_in = settle.elapsed();
    // Long enough for the last kubelet to sync every pod and probe it a few times: a
    // container it wrongly restarts would show below.
    std::thread::sleep(Duration::from_secs(15));
    let now = pods(&c, ns);
    for (name, (id, first_restarts)) in &first_seen {
        let (_, _, current, restarts) = &now[name];
        assert_eq!(
            (current, restarts),
            (id, first_restarts),
            "{name}: its container changed or restarted across the kills\n{}",
            kubelet.log()
        );
    }
    assert_eq!(
        first_seen.len(),
        stable.len(),
        "every stable pod ran: {first_seen:?}"
    );
    let sandboxes = ready_sandboxes(&env.endpoint, ns);
    let uids: BTreeSet<&String> = now.values().map(|(uid, ..)| uid).collect();
    assert!(
        sandboxes.keys().all(|uid| uids.contains(uid)),
        "ready sandboxes of deleted pods remain: {sandboxes:?} (pods {uids:?})"
    );
    for (name, (uid, ..)) in &now {
        assert_eq!(
            sandboxes.get(uid),
            Some(&1),
            "{name} has {:?} ready sandboxes",
            sandboxes.get(uid)
        );
    }
    let replaced_before_running = first_seen.values().filter(|(_, r)| *r > 0).count();
    eprintln!(
        "sigkill soak (seed {seed:#x}): {kills} SIGKILLs after {kill_after:?} ms, 30 pods \
         ({} deleted meanwhile), {:.0} s in all; Ready and settled {:.1} s after the last start; \
         0 running containers restarted ({replaced_before_running} stable pods had a created, \
         never started container replaced), 0 pods lost, 1 sandbox per pod",
        deleted.len(),
        started.elapsed().as_secs_f64(),
        settled_in.as_secs_f64()
    );
    drop(namespace);
    drop(kubelet);
}

#[test]
fn api_server_away_for_ten_minutes_loses_no_pod() {
    let Some((_env, c)) = Cluster::from_env("api_server_away_for_ten_minutes_loses_no_pod") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let started = Instant::now();
    c.api_server_outage_loses_no_pod(dir.path(), "soak-outage", Duration::from_secs(600));
    eprintln!(
        "api server outage soak: 600 s without the API server, {:.0} s in all; the steady \
         pod kept its container, the finisher's Succeeded reported after",
        started.elapsed().as_secs_f64()
    );
}

/// Whether the node's Ready condition is `status`.
fn node_ready_is(c: &Cluster, status: &str) -> bool {
    let node = c.json(&["get", "node", &c.node]);
    common::condition(&node, "Ready") == Some(status)
}

#[test]
fn restart_containerd_five_times_under_a_hundred_pods() {
    let Some((env, c)) = Cluster::from_env("restart_containerd_five_times_under_a_hundred_pods")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned();
    let env_dir = std::env::var("KUBELET_ENV_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target/env"));
    let pidfile = env_dir.join("run/containerd.pid");
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "soak-containerd");
    let ns = namespace.name;
    let all: String = (0..100)
        .map(|i| pod_yaml(ns, &c.node, &c.busybox, &format!("p{i}")) + "---\n")
        .collect();
    c.apply(&all);
    let everyone_ready = || {
        let now = pods(&c, ns);
        now.len() == 100 && now.values().all(|(_, ready, ..)| *ready)
    };
    common::wait_until(
        "100 pods Running and Ready",
        600,
        || kubelet.log(),
        everyone_ready,
    );
    let before: BTreeMap<String, (String, i64)> = pods(&c, ns)
        .into_iter()
        .map(|(name, (_, _, id, restarts))| (name, (id, restarts)))
        .collect();
    let mut rounds = Vec::new();
    for round in 0..5 {
        let pid = std::fs::read_to_string(&pidfile).expect("containerd's pid file");
        let stopped = Instant::now();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", pid.trim()])
            .status()
            .expect("kill");
        assert!(killed.success(), "round {round}: stopping containerd");
        common::wait_until(
            "the node NotReady without its runtime",
            120,
            || kubelet.log(),
            || node_ready_is(&c, "False"),
        );
        let not_ready_after = stopped.elapsed();
        let up = std::process::Command::new(env!("CARGO"))
            .args(["xtask", "env", "up"])
            .current_dir(&workspace)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("cargo xtask env up");
        assert!(up.success(), "round {round}: restarting containerd");
        common::wait_until(
            "the node Ready again",
            120,
            || kubelet.log(),
            || node_ready_is(&c, "True"),
        );
        common::wait_until(
            "100 pods Ready again",
            300,
            || kubelet.log(),
            everyone_ready,
        );
        rounds.push((
            not_ready_after.as_secs_f64(),
            stopped.elapsed().as_secs_f64(),
        ));
    }
    let after: BTreeMap<String, (String, i64)> = pods(&c, ns)
        .into_iter()
        .map(|(name, (_, _, id, restarts))| (name, (id, restarts)))
        .collect();
    assert_eq!(
        after, before,
        "containers changed or restarted across the restarts"
    );
    let sandboxes = ready_sandboxes(&env.endpoint, ns);
    assert_eq!(sandboxes.len(), 100, "{sandboxes:?}");
    assert!(sandboxes.values().all(|n| *n == 1), "{sandboxes:?}");
    eprintln!(
        "containerd restart soak: 5 restarts under 100 pods; (NotReady after, all Ready again \
         after) in seconds per round: {rounds:.1?}; 0 containers lost, 0 restarts"
    );
    drop(namespace);
    drop(kubelet);
}
