//! The API server connection going bad under a running node, on the real control plane:
//! a proxy between the kubelet and the API server stops passing anything on the
//! connections it has (a half-open connection: no reset, no answer, as after a NAT or
//! load balancer forgot it), while new connections work. The kubelet must give up the
//! stuck requests and keep renewing its Lease on new connections, instead of waiting the
//! ~15 minutes TCP takes while the node goes NotReady, and a renewal that got no answer
//! closes every other connection too, so its watches and status writes move on at once.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::lock;

/// A TCP proxy whose connections can be frozen: each connection has a generation, and
/// every connection of a generation before `frozen_before` passes nothing any more (its
/// sockets stay open). It counts the connections it was asked for.
struct FreezingProxy {
    port: u16,
    generation: Arc<AtomicU64>,
    frozen_before: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

impl FreezingProxy {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let generation = Arc::new(AtomicU64::new(1));
        let frozen_before = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (g, f, count) = (
            generation.clone(),
            frozen_before.clone(),
            connections.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mine = g.load(Ordering::SeqCst);
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    let frozen_before = f.clone();
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        loop {
                            let Ok(n) = from.read(&mut buffer) else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            if mine < frozen_before.load(Ordering::SeqCst) {
                                // Half-open: swallow everything, answer nothing, close
                                // nothing.
                                continue;
                            }
                            if to.write_all(&buffer[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self {
            port,
            generation,
            frozen_before,
            connections,
        }
    }

    /// How many connections the kubelet has opened through the proxy so far.
    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Freezes every connection made so far; later ones work.
    fn freeze_existing(&self) {
        let next = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.frozen_before.store(next, Ordering::SeqCst);
    }
}

fn lease_renewed(c: &common::Cluster) -> String {
    c.json(&["get", "lease", &c.node, "-n", "kube-node-lease"])["spec"]["renewTime"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits at most `within` for `count` renewals of the node's Lease after the one at
/// `from` (a renewTime); returns the last renewTime seen.
fn await_renewals(
    c: &common::Cluster,
    kubelet: &common::Kubelet,
    from: String,
    count: usize,
    within: Duration,
) -> String {
    let deadline = Instant::now() + within;
    let (mut renewals, mut last) = (0, from.clone());
    while renewals < count {
        assert!(
            Instant::now() < deadline,
            "the Lease was renewed {renewals} times in {within:?} since {from} (last {last})\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_millis(500));
        let now = lease_renewed(c);
        if now != last {
            renewals += 1;
            last = now;
        }
    }
    last
}

#[test]
fn the_lease_is_renewed_when_the_api_server_connections_go_half_open() {
    let Some((_env, c)) = common::Cluster::from_env(
        "the_lease_is_renewed_when_the_api_server_connections_go_half_open",
    ) else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let upstream = c
        .apiserver
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = FreezingProxy::start(upstream.clone());
    // The node's kubeconfig, through the proxy (the API server's certificate names
    // 127.0.0.1).
    let kubeconfig = std::fs::read_to_string(&c.node_kubeconfig)
        .expect("node kubeconfig")
        .replace(&upstream, &format!("127.0.0.1:{}", proxy.port));
    let kubeconfig_path = dir.path().join("node-through-proxy.kubeconfig");
    std::fs::write(&kubeconfig_path, kubeconfig).expect("write kubeconfig");
    let kubelet = c.start_kubelet_on(dir.path(), &kubeconfig_path.to_string_lossy(), "", &[]);
    c.wait_node_ready(&kubelet);
    // Let a renewal go through the proxy, so there are connections to freeze.
    let first = await_renewals(&c, &kubelet, lease_renewed(&c), 1, Duration::from_secs(30));

    // Renewals on healthy connections reuse them: the heartbeat client bounds each
    // request, not the connection's idle time, so its connection stays in the pool
    // from one renewal to the next (a read timeout as long as the renewal period closed
    // it, and every renewal paid a new connection and TLS handshake).
    let opened = proxy.connections();
    await_renewals(&c, &kubelet, first, 3, Duration::from_secs(45));
    let new = proxy.connections() - opened;
    assert!(
        new <= 1,
        "{new} connections opened through the proxy over three Lease renewals\n{}",
        kubelet.log()
    );

    proxy.freeze_existing();
    // Renewals come every 10 s; one stuck on the frozen connection must be given up
    // after its 10 s deadline and redone on a new connection, well before the 40 s Lease
    // runs out: each of the next two renewals within 25 s of the one before.
    let mut last = lease_renewed(&c);
    for _ in 0..2 {
        last = await_renewals(&c, &kubelet, last, 1, Duration::from_secs(25));
    }
    let node = c.json(&["get", "node", &c.node]);
    assert_eq!(common::condition(&node, "Ready"), Some("True"), "{node:#}");

    // The renewal that got no answer closed every connection of the kubelet, as
    // upstream's closeAllConns: the pod watch and the pooled connections of the status
    // writer were frozen too, and a pod bound now runs and shows its status at once
    // rather than after the watch's own timeout (a minute) and a status patch's (60 s).
    let namespace = common::Namespace::create(&c, "half-open");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: after-freeze, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#,
        node = c.node,
        image = c.busybox
    ));
    c.wait_json(
        "a pod bound after the freeze Ready",
        &["get", "pod", "-n", ns, "after-freeze"],
        20,
        &kubelet,
        |p| common::condition(p, "Ready") == Some("True"),
    );
    assert!(
        kubelet
            .log()
            .contains("closing every connection to the API server"),
        "{}",
        kubelet.log()
    );
}
