//! Exec probes through a fake runtime's `ExecSync`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ExecAction, Probe};
use kubelet_core::{
    Error, ExecResult, ProbeKind, ProbeOutcome, ProbeTarget, Prober, RuntimeError, RuntimeErrorKind,
};
use kubelet_probes::KubeletProber;

mod common;
use common::FakeRuntime;

fn exec_probe(command: &[&str], timeout: Option<i32>) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
        }),
        timeout_seconds: timeout,
        ..Default::default()
    }
}

fn target() -> ProbeTarget {
    ProbeTarget {
        container_name: "app".into(),
        container_id: "c-123".into(),
        ..Default::default()
    }
}

fn runtime_error(kind: RuntimeErrorKind) -> Error {
    RuntimeError {
        operation: "ExecSync",
        object: "c-123".into(),
        kind,
        message: "boom".into(),
        timeout: None,
    }
    .into()
}

#[tokio::test]
async fn exit_zero_passes_and_sends_command_and_timeout() {
    let runtime = FakeRuntime::new();
    let prober = KubeletProber::new(runtime.clone());
    let outcome = prober
        .probe(
            ProbeKind::Liveness,
            &exec_probe(&["cat", "/tmp/healthy"], Some(5)),
            &target(),
        )
        .await
        .expect("ran");
    assert_eq!(outcome, ProbeOutcome::Success);
    let calls = runtime.calls.lock().expect("lock").clone();
    assert_eq!(
        calls,
        [(
            "c-123".to_owned(),
            vec!["cat".to_owned(), "/tmp/healthy".to_owned()],
            Duration::from_secs(5)
        )]
    );
}

#[tokio::test]
async fn default_timeout_is_one_second() {
    let runtime = FakeRuntime::new();
    let prober = KubeletProber::new(runtime.clone());
    prober
        .probe(ProbeKind::Liveness, &exec_probe(&["true"], None), &target())
        .await
        .expect("ran");
    assert_eq!(
        runtime.calls.lock().expect("lock")[0].2,
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn non_zero_exit_fails_with_combined_output() {
    let runtime = FakeRuntime::with_exec(|_, _, _| {
        Ok(ExecResult {
            stdout: b"partial\n".to_vec(),
            stderr: b"cat: /tmp/healthy: No such file or directory\n".to_vec(),
            exit_code: 1,
        })
    });
    let outcome = KubeletProber::new(runtime)
        .probe(
            ProbeKind::Liveness,
            &exec_probe(&["cat", "/tmp/healthy"], None),
            &target(),
        )
        .await
        .expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome::Failure("partial\ncat: /tmp/healthy: No such file or directory\n".into())
    );
}

#[tokio::test]
async fn runtime_deadline_is_a_timed_out_failure() {
    let runtime =
        FakeRuntime::with_exec(|_, _, _| Err(runtime_error(RuntimeErrorKind::DeadlineExceeded)));
    let outcome = KubeletProber::new(runtime.clone())
        .probe(
            ProbeKind::Readiness,
            &exec_probe(&["sleep", "10"], Some(2)),
            &target(),
        )
        .await
        .expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome::Failure("command timed out: \"sleep 10\" timed out after 2s".into())
    );
    assert_eq!(
        runtime.calls.lock().expect("lock").len(),
        1,
        "a failure is not retried"
    );
}

#[tokio::test]
async fn other_runtime_errors_are_returned_after_upstreams_three_tries() {
    let runtime = FakeRuntime::with_exec(|_, _, _| Err(runtime_error(RuntimeErrorKind::NotFound)));
    let err = KubeletProber::new(runtime.clone())
        .probe(
            ProbeKind::Readiness,
            &exec_probe(&["true"], None),
            &target(),
        )
        .await
        .expect_err("runtime error");
    assert!(err.is_not_found(), "{err}");
    assert_eq!(runtime.calls.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn probe_without_handler_is_an_error() {
    let err = KubeletProber::new(FakeRuntime::new())
        .probe(ProbeKind::Readiness, &Probe::default(), &target())
        .await
        .expect_err("no handler");
    assert!(err.to_string().contains("missing probe handler"), "{err}");
}
