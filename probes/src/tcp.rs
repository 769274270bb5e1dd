//! tcpSocket probes: a connection that opens within the timeout passes.

use std::time::Duration;

use kubelet_core::ProbeOutcome;
use tokio::net::TcpStream;

/// Connects to `host:port` and closes the connection. Failures carry Go's dialer text:
/// `dial tcp 127.0.0.1:1: connect: connection refused`, `dial tcp 10.0.0.1:80: i/o timeout`.
pub(crate) async fn probe(host: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => {
            drop(stream);
            ProbeOutcome::Success
        }
        Ok(Err(e)) => ProbeOutcome::Failure(dial_error(&addr, &e)),
        Err(_) => ProbeOutcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Go's `net.JoinHostPort`: IPv6 literals in brackets.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's `*net.OpError` text for a failed dial.
pub(crate) fn dial_error(addr: &str, e: &std::io::Error) -> String {
    if e.raw_os_error().is_some() {
        format!("dial tcp {addr}: connect: {}", os_error_text(e))
    } else {
        // Name resolution and other non-syscall failures.
        format!("dial tcp {addr}: {}", os_error_text(e))
    }
}

/// The OS error text as Go prints it: `connection refused`, not
/// `Connection refused (os error 111)`.
fn os_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_port_passes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        let outcome = probe("127.0.0.1", port, Duration::from_secs(1)).await;
        assert_eq!(outcome, ProbeOutcome::Success);
        assert!(
            accept.await.expect("join").is_ok(),
            "listener saw the connection"
        );
    }

    #[tokio::test]
    async fn closed_port_fails_with_go_dial_text() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let outcome = probe("127.0.0.1", port, Duration::from_secs(1)).await;
        assert_eq!(
            outcome,
            ProbeOutcome::Failure(format!(
                "dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
    }
}
