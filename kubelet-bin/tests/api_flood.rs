//! A connection flood and slow clients against the kubelet API (:10250) on the real
//! control plane, while `kubectl logs` asks through the API server (which authenticates
//! with its client certificate): 600 idle TCP connections from 20 addresses, 100 clients
//! sending a TLS handshake one byte a second, and requests without credentials in a
//! loop. Every `kubectl logs` must be answered throughout; the run prints its figures.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, Namespace, lock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the abuse lasts.
const RUN: Duration = Duration::from_secs(40);

/// The kubelet API as the flood reaches it.
const TARGET: ([u8; 4], u16) = ([127, 0, 0, 1], 10250);

/// Counts of what the abusers saw.
#[derive(Default)]
struct Seen {
    idle_opened: AtomicUsize,
    idle_closed_by_server: AtomicUsize,
    slow_opened: AtomicUsize,
    slow_closed_by_server: AtomicUsize,
    unauthenticated_answered: AtomicUsize,
}

/// Connects from `source` (a loopback address) to the kubelet API.
async fn connect_from(source: [u8; 4]) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((source, 0))).ok()?;
    socket.connect(SocketAddr::from(TARGET)).await.ok()
}

/// Opens idle connections and notes which the server closes.
async fn idle_flood(seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let mut tasks = Vec::new();
    for i in 0..600u16 {
        let source = [127, 0, 0, 2 + u8::try_from(i % 20).unwrap_or(0)];
        let Some(mut stream) = connect_from(source).await else {
            continue;
        };
        seen.idle_opened.fetch_add(1, Ordering::Relaxed);
        let (seen, stop) = (seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut byte = [0u8; 1];
            while !stop.load(Ordering::Relaxed) {
                let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte));
                if let Ok(Ok(0) | Err(_)) = read.await {
                    seen.idle_closed_by_server.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Clients that send the start of a TLS ClientHello one byte a second.
async fn slow_clients(seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let mut tasks = Vec::new();
    for i in 0..100u8 {
        let (seen, stop) = (seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let Some(mut stream) = connect_from([127, 0, 1, 2 + i % 10]).await else {
                return;
            };
            seen.slow_opened.fetch_add(1, Ordering::Relaxed);
            for byte in hello.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if stream.write_all(&[*byte]).await.is_err() {
                    seen.slow_closed_by_server.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Requests without credentials, one after another on new connections.
fn unauthenticated_loop(seen: &Seen, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let (status, _) = common::curl("https://127.0.0.1:10250/pods", &[]);
        if status == 401 {
            seen.unauthenticated_answered
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn kubectl_logs_is_served_through_a_connection_flood_and_slow_clients() {
    let Some((_env, c)) =
        Cluster::from_env("kubectl_logs_is_served_through_a_connection_flood_and_slow_clients")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "flood-test");
    let ns = namespace.name;
    c.run_talker(ns, &kubelet);

    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let idle = runtime.spawn(idle_flood(seen.clone(), stop.clone()));
    let slow = runtime.spawn(slow_clients(seen.clone(), stop.clone()));
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || unauthenticated_loop(&seen, &stop))
        })
        .collect();

    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    while started.elapsed() < RUN {
        let asked = Instant::now();
        match c.try_kubectl(
            &[
                "logs",
                "-n",
                ns,
                "talker",
                "--tail=1",
                "--request-timeout=10s",
            ],
            None,
        ) {
            Ok(line) if line.starts_with("tick-") => latencies.push(asked.elapsed()),
            Ok(other) => failures.push(format!("unexpected answer {other:?}")),
            Err(e) => failures.push(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    for hammer in hammers {
        let _ = hammer.join();
    }
    let _ = runtime.block_on(idle);
    let _ = runtime.block_on(slow);

    latencies.sort();
    let ms = |d: Option<&Duration>| d.map_or(0, Duration::as_millis);
    eprintln!(
        "flood: {} idle connections ({} closed by the kubelet), {} slow clients ({} closed), \
         {} requests without credentials answered 401; kubectl logs: {} served, {} failed, \
         p50 {} ms, max {} ms",
        seen.idle_opened.load(Ordering::Relaxed),
        seen.idle_closed_by_server.load(Ordering::Relaxed),
        seen.slow_opened.load(Ordering::Relaxed),
        seen.slow_closed_by_server.load(Ordering::Relaxed),
        seen.unauthenticated_answered.load(Ordering::Relaxed),
        latencies.len(),
        failures.len(),
        ms(latencies.get(latencies.len() / 2)),
        ms(latencies.last()),
    );
    assert!(
        failures.is_empty(),
        "kubectl logs failed during the flood: {failures:?}\n{}",
        kubelet.log()
    );
    assert!(!latencies.is_empty());
    assert!(seen.idle_opened.load(Ordering::Relaxed) >= 500);
    assert!(seen.unauthenticated_answered.load(Ordering::Relaxed) > 0);
    drop(namespace);
    drop(kubelet);
}
