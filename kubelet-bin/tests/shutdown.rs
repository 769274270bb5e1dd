//! Graceful node shutdown against the real control plane and containerd, with logind
//! played by a fake on a private D-Bus daemon (this VM runs no systemd; on a machine
//! with systemd the kubelet talks to the real logind the same way, through
//! `DBUS_SYSTEM_BUS_ADDRESS` or the standard system bus socket).
//!
//! The kubelet takes a `shutdown` delay lock; on `PrepareForShutdown(true)` the node
//! turns NotReady ("node is shutting down"), regular pods are killed before the ones of
//! the higher priority class, every pod ends Failed/Terminated with a DisruptionTarget
//! condition, new pods are refused with reason NodeShutdown, and the lock is released;
//! on `PrepareForShutdown(false)` the node is Ready again and the lock is taken anew.

// zbus's interface macro generates undocumented methods of its own.
#![allow(missing_docs)]

mod common;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, Namespace, condition, lock, wait_until};
use serde_json::Value;
use zbus::object_server::SignalEmitter;

/// What the fake logind saw.
#[derive(Default)]
struct Seen {
    /// `Inhibit` calls: what, who, why, mode.
    inhibits: Vec<[String; 4]>,
    /// The read ends of the lock pipes: EOF once the kubelet closed its descriptor.
    locks: Vec<std::io::PipeReader>,
}

struct FakeLogind {
    seen: Arc<Mutex<Seen>>,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl FakeLogind {
    /// Takes a lock: the caller holds the write end of a pipe.
    fn inhibit(
        &self,
        what: &str,
        who: &str,
        why: &str,
        mode: &str,
    ) -> zbus::fdo::Result<zbus::zvariant::OwnedFd> {
        let (reader, writer) =
            std::io::pipe().map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.inhibits
            .push([what.into(), who.into(), why.into(), mode.into()]);
        seen.locks.push(reader);
        Ok(std::os::fd::OwnedFd::from(writer).into())
    }

    /// 60 s: more than the kubelet asks, so it writes no logind drop-in.
    #[zbus(property, name = "InhibitDelayMaxUSec")]
    fn inhibit_delay_max_usec(&self) -> u64 {
        60_000_000
    }

    /// Announces a shutdown (`true`) or its cancellation (`false`).
    #[zbus(signal)]
    async fn prepare_for_shutdown(emitter: &SignalEmitter<'_>, start: bool) -> zbus::Result<()>;
}

fn terminated_at(pod: &Value) -> String {
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn disruption(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
}

#[test]
fn node_shutdown_kills_pods_by_priority_and_releases_the_lock() {
    let Some((_env, c)) =
        Cluster::from_env("node_shutdown_kills_pods_by_priority_and_releases_the_lock")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let bus = kubelet_test_support::PrivateBus::start(dir.path()).expect("dbus-daemon");
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let logind = runtime
        .block_on(
            zbus::connection::Builder::address(bus.address())
                .expect("bus address")
                .name("org.freedesktop.login1")
                .expect("name")
                .serve_at("/org/freedesktop/login1", FakeLogind { seen: seen.clone() })
                .expect("serve")
                .build(),
        )
        .expect("the fake logind on the private bus");
    let emit = |start: bool| {
        runtime
            .block_on(async {
                let iface = logind
                    .object_server()
                    .interface::<_, FakeLogind>("/org/freedesktop/login1")
                    .await?;
                FakeLogind::prepare_for_shutdown(iface.signal_emitter(), start).await
            })
            .expect("PrepareForShutdown");
    };

    c.apply(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: shutdown-test-important}\nvalue: 100000\n",
    );
    let kubelet = c.start_kubelet_with(
        dir.path(),
        "shutdownGracePeriodByPodPriority:\n- {priority: 0, shutdownGracePeriodSeconds: 8}\n- {priority: 100000, shutdownGracePeriodSeconds: 8}\n",
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus.address())],
    );
    let seen_inhibits = || {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .inhibits
            .clone()
    };
    c.wait_node_ready(&kubelet);
    wait_until(
        "an inhibitor lock",
        30,
        || kubelet.log(),
        || !seen_inhibits().is_empty(),
    );
    assert_eq!(
        seen_inhibits()[0],
        [
            "shutdown",
            "kubelet",
            "Kubelet needs time for a graceful shutdown.",
            "delay"
        ]
        .map(String::from)
    );

    let namespace = Namespace::create(&c, "shutdown-test");
    let ns = namespace.name;
    let (node, image) = (&c.node, &c.busybox);
    // Both pods take 2 s to stop after SIGTERM, so the classes' order shows.
    let pod = |name: &str, class: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 30
  {class}
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'sleep 2; exit 0' TERM; while true; do sleep 1; done"]
"#
        )
    };
    c.apply(&pod("regular", ""));
    c.apply(&pod(
        "important",
        "priorityClassName: shutdown-test-important",
    ));
    for name in ["regular", "important"] {
        c.wait_json(
            &format!("{name} Running"),
            &["get", "pod", "-n", ns, name],
            90,
            &kubelet,
            |p| p["status"]["phase"] == "Running",
        );
    }

    // NodeShutdown events, counted (earlier runs may have left some on this node).
    let node_events = |message: &str| -> i64 {
        let list = c.json(&[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            &format!(
                "involvedObject.kind=Node,involvedObject.name={},reason=NodeShutdown",
                c.node
            ),
        ]);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["message"] == message)
            .map(|e| e["count"].as_i64().unwrap_or(1))
            .sum()
    };
    const DETECTED: &str = "Shutdown manager detected shutdown event";
    const CANCELLED: &str = "Shutdown manager detected shutdown cancellation";
    let (detected_before, cancelled_before) = (node_events(DETECTED), node_events(CANCELLED));

    emit(true);
    let node_state = c.wait_json(
        "node NotReady",
        &["get", "node", &c.node],
        30,
        &kubelet,
        |n| condition(n, "Ready") == Some("False"),
    );
    let ready = node_state["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(ready["reason"], "KubeletNotReady", "{ready:#}");
    assert_eq!(ready["message"], "node is shutting down", "{ready:#}");
    wait_until(
        "a NodeShutdown event",
        30,
        || kubelet.log(),
        || node_events(DETECTED) > detected_before,
    );
    let mut finished = Vec::new();
    for name in ["regular", "important"] {
        let p = c.wait_json(
            &format!("{name} Failed"),
            &["get", "pod", "-n", ns, name],
            60,
            &kubelet,
            |p| p["status"]["phase"] == "Failed" && !terminated_at(p).is_empty(),
        );
        assert_eq!(p["status"]["reason"], "Terminated", "{p:#}");
        assert_eq!(
            p["status"]["message"], "Pod was terminated in response to imminent node shutdown.",
            "{p:#}"
        );
        let target = disruption(&p).cloned().unwrap_or(Value::Null);
        assert_eq!(
            (&target["status"], &target["reason"]),
            (&Value::from("True"), &Value::from("TerminationByKubelet")),
            "{p:#}"
        );
        finished.push(terminated_at(&p));
    }
    assert!(
        finished[0] <= finished[1],
        "the regular class stops before the important one: {finished:?}"
    );
    // The lock is released once the pods are down: the pipe's last writer is closed.
    let reader = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .locks
        .pop()
        .expect("a lock");
    let (released, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut buf = [0u8; 1];
        let _ = released.send(reader.read(&mut buf).ok());
    });
    assert_eq!(
        got.recv_timeout(Duration::from_secs(30)).ok(),
        Some(Some(0)),
        "the inhibitor lock is released\n{}",
        kubelet.log()
    );

    // No new pod while the node goes down.
    c.apply(&pod("late", ""));
    let late = c.wait_json(
        "late refused",
        &["get", "pod", "-n", ns, "late"],
        30,
        &kubelet,
        |p| p["status"]["phase"] == "Failed",
    );
    assert_eq!(late["status"]["reason"], "NodeShutdown", "{late:#}");
    assert_eq!(
        late["status"]["message"], "Pod was rejected as the node is shutting down.",
        "{late:#}"
    );

    // A cancelled shutdown: Ready again, and the lock taken anew.
    emit(false);
    c.wait_json(
        "node Ready again",
        &["get", "node", &c.node],
        30,
        &kubelet,
        |n| condition(n, "Ready") == Some("True"),
    );
    wait_until(
        "a second inhibitor lock",
        30,
        || kubelet.log(),
        || seen_inhibits().len() >= 2,
    );
    wait_until(
        "a NodeShutdown cancellation event",
        30,
        || kubelet.log(),
        || node_events(CANCELLED) > cancelled_before,
    );

    drop(namespace);
    drop(kubelet);
    let _ = c.try_kubectl(
        &["delete", "priorityclass", "shutdown-test-important"],
        None,
    );
}
