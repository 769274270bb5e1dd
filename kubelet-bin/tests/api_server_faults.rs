//! The API server connection going bad under a running node, on the real control plane:
//! a proxy between the kubelet and the API server stops passing anything on the
//! connections it has (a half-open connection: no reset, no answer, as after a NAT or
//! load balancer forgot it), while new connections work. The kubelet must give up the
//! stuck requests and keep renewing its Lease on new connections, instead of waiting the
//! ~15 minutes TCP takes while the node goes NotReady.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::lock;

/// A TCP proxy whose connections can be frozen: each connection has a generation, and
/// every connection of a generation before `frozen_before` passes nothing any more (its
/// sockets stay open).
struct FreezingProxy {
    port: u16,
    generation: Arc<AtomicU64>,
    frozen_before: Arc<AtomicU64>,
}

impl FreezingProxy {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let generation = Arc::new(AtomicU64::new(1));
        let frozen_before = Arc::new(AtomicU64::new(0));
        let (g, f) = (generation.clone(), frozen_before.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
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
        }
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
    let before = lease_renewed(&c);
    // Let a renewal or two go through the proxy, so there are connections to freeze.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lease_renewed(&c) == before {
        assert!(
            Instant::now() < deadline,
            "the Lease is not renewed at all\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    proxy.freeze_existing();
    let frozen_at = lease_renewed(&c);
    // Renewals come every 10 s; a stuck one must be given up and redone on a new
    // connection well before the 40 s Lease runs out.
    let deadline = Instant::now() + Duration::from_secs(35);
    let mut renewals = 0;
    let mut last = frozen_at.clone();
    while renewals < 2 {
        assert!(
            Instant::now() < deadline,
            "the Lease was renewed {renewals} times since the connections froze (last {last})\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_millis(500));
        let now = lease_renewed(&c);
        if now != last {
            renewals += 1;
            last = now;
        }
    }
    let node = c.json(&["get", "node", &c.node]);
    assert_eq!(common::condition(&node, "Ready"), Some("True"), "{node:#}");
}
