//! A fake container runtime whose only working call is `ExecSync`, scripted per test.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kubelet_core::{
    Container, ContainerConfig, ContainerFilter, ContainerStats, ContainerStatus, ExecResult,
    Result, Runtime, RuntimeStatus, RuntimeVersion, Sandbox, SandboxConfig, SandboxFilter,
    SandboxStatus, StreamRequest,
};

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
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        unimplemented!("not used by probes")
    }
    async fn status(&self) -> Result<RuntimeStatus> {
        unimplemented!("not used by probes")
    }
    async fn run_sandbox(&self, _: &SandboxConfig) -> Result<String> {
        unimplemented!("not used by probes")
    }
    async fn stop_sandbox(&self, _: &str) -> Result<()> {
        unimplemented!("not used by probes")
    }
    async fn remove_sandbox(&self, _: &str) -> Result<()> {
        unimplemented!("not used by probes")
    }
    async fn sandbox_status(&self, _: &str) -> Result<SandboxStatus> {
        unimplemented!("not used by probes")
    }
    async fn list_sandboxes(&self, _: &SandboxFilter) -> Result<Vec<Sandbox>> {
        unimplemented!("not used by probes")
    }
    async fn create_container(
        &self,
        _: &str,
        _: &ContainerConfig,
        _: &SandboxConfig,
    ) -> Result<String> {
        unimplemented!("not used by probes")
    }
    async fn start_container(&self, _: &str) -> Result<()> {
        unimplemented!("not used by probes")
    }
    async fn stop_container(&self, _: &str, _: Duration) -> Result<()> {
        unimplemented!("not used by probes")
    }
    async fn remove_container(&self, _: &str) -> Result<()> {
        unimplemented!("not used by probes")
    }
    async fn list_containers(&self, _: &ContainerFilter) -> Result<Vec<Container>> {
        unimplemented!("not used by probes")
    }
    async fn container_status(&self, _: &str) -> Result<ContainerStatus> {
        unimplemented!("not used by probes")
    }
    async fn reopen_container_log(&self, _: &str) -> Result<()> {
        unimplemented!("not used by probes")
    }
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
    async fn stream_url(&self, _: &StreamRequest) -> Result<String> {
        unimplemented!("not used by probes")
    }
    async fn container_stats(&self, _: &str) -> Result<ContainerStats> {
        unimplemented!("not used by probes")
    }
    async fn list_container_stats(&self, _: &ContainerFilter) -> Result<Vec<ContainerStats>> {
        unimplemented!("not used by probes")
    }
}
