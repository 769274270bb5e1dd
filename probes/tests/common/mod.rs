//! A fake container runtime for probes: `ExecSync` (all an exec probe needs of a
//! runtime), scripted per test.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kubelet_core::{ContainerExec, ExecResult, Result};

type ExecHandler = Box<dyn Fn(&str, &[String], Duration) -> Result<ExecResult> + Send + Sync>;

/// Records every exec call and answers with the scripted handler.
pub struct FakeRuntime {
    handler: ExecHandler,
    /// `(container id, command, timeout)` of each `exec_sync`.
    pub calls: Mutex<Vec<(String, Vec<String>, Duration)>>,
}

impl FakeRuntime {
    /// A runtime whose exec always exits 0.
    pub fn new() -> Arc<Self> {
        Self::with_exec(|_, _, _| {
            Ok(ExecResult {
                stdout: Vec::new(),
                stderr: Vec::new(),
                exit_code: 0,
            })
        })
    }

    /// A runtime whose exec is answered by `handler`.
    pub fn with_exec(
        handler: impl Fn(&str, &[String], Duration) -> Result<ExecResult> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            handler: Box::new(handler),
            calls: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl ContainerExec for FakeRuntime {
    async fn exec_sync(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult> {
        self.calls
            .lock()
            .expect("lock")
            .push((container_id.to_owned(), command.to_vec(), timeout));
        (self.handler)(container_id, command, timeout)
    }
}

/// One liveness attempt of `probe` against a container whose pod IP is 127.0.0.1, where
/// the tests' servers listen.
pub async fn probe_local(
    probe: &k8s_openapi::api::core::v1::Probe,
) -> kubelet_core::Result<kubelet_core::ProbeOutcome> {
    use kubelet_core::Prober;
    let target = kubelet_core::ProbeTarget {
        pod_ip: "127.0.0.1".into(),
        container_name: "app".into(),
        ..Default::default()
    };
    kubelet_probes::KubeletProber::new(FakeRuntime::new())
        .probe(kubelet_core::ProbeKind::Liveness, probe, &target)
        .await
}
