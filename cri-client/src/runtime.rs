//! `kubelet_core::Runtime`, `RuntimeHealth`, `RuntimeInventory` and `ImageService` over CRI.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_cri::v1 as cri;
use kubelet_core::{
    CgroupDriver, Container, ContainerConfig, ContainerEvents, ContainerExec, ContainerFilter,
    ContainerStats, ContainerStatus, ExecResult, FilesystemUsage, Image, ImageService,
    RegistryAuth, Result, Runtime, RuntimeHealth, RuntimeInventory, RuntimeStatus, RuntimeVersion,
    Sandbox, SandboxConfig, SandboxFilter, SandboxStatus, StreamRequest,
};

use crate::client::CriClient;
use crate::convert;
use crate::error::{Error, required};

#[async_trait]
impl ContainerExec for CriClient {
    async fn exec_sync(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult> {
        let r = CriClient::exec_sync(self, container_id, command.to_vec(), timeout).await?;
        Ok(ExecResult {
            stdout: r.stdout,
            stderr: r.stderr,
            exit_code: r.exit_code,
        })
    }
}

#[async_trait]
impl RuntimeInventory for CriClient {
    async fn list_sandboxes(&self, filter: &SandboxFilter) -> Result<Vec<Sandbox>> {
        let items = self
            .list_pod_sandbox(Some(convert::sandbox_filter(filter)))
            .await?;
        Ok(items.into_iter().map(convert::sandbox).collect())
    }

    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<Container>> {
        let items =
            CriClient::list_containers(self, Some(convert::container_filter(filter))).await?;
        Ok(items.into_iter().map(convert::container).collect())
    }

    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats> {
        Ok(convert::container_stats(
            CriClient::container_stats(self, container_id).await?,
        ))
    }

    async fn list_container_stats(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStats>> {
        let stats =
            CriClient::list_container_stats(self, Some(convert::container_stats_filter(filter)))
                .await?;
        Ok(stats.into_iter().map(convert::container_stats).collect())
    }
}

#[async_trait]
impl RuntimeHealth for CriClient {
    async fn version(&self) -> Result<RuntimeVersion> {
        let v = CriClient::version(self).await?;
        Ok(RuntimeVersion {
            version: v.version,
            runtime_name: v.runtime_name,
            runtime_version: v.runtime_version,
            runtime_api_version: v.runtime_api_version,
        })
    }

    async fn status(&self) -> Result<RuntimeStatus> {
        Ok(convert::runtime_status(
            CriClient::status(self, false).await?,
        ))
    }
}

#[async_trait]
impl Runtime for CriClient {
    async fn cgroup_driver(&self) -> Result<Option<CgroupDriver>> {
        let config = match self
            .runtime_config()
            .await
            .map_err(kubelet_core::Error::from)
        {
            Ok(config) => config,
            Err(e) if e.runtime_kind() == Some(kubelet_core::RuntimeErrorKind::Unimplemented) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // A runtime that answers without Linux settings says nothing about its driver
        // (the field's zero value would read as systemd).
        let Some(linux) = config.linux else {
            return Ok(None);
        };
        match cri::CgroupDriver::try_from(linux.cgroup_driver) {
            Ok(cri::CgroupDriver::Systemd) => Ok(Some(CgroupDriver::Systemd)),
            Ok(cri::CgroupDriver::Cgroupfs) => Ok(Some(CgroupDriver::Cgroupfs)),
            Err(_) => Err(kubelet_core::Error::Invalid {
                what: "RuntimeConfig".to_owned(),
                reason: format!(
                    "runtime returned an unknown cgroup driver {}",
                    linux.cgroup_driver
                ),
            }),
        }
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        Ok(self
            .run_pod_sandbox(convert::sandbox_config(config), &config.runtime_handler)
            .await?)
    }

    async fn stop_sandbox(&self, sandbox_id: &str) -> Result<()> {
        Ok(self.stop_pod_sandbox(sandbox_id).await?)
    }

    async fn remove_sandbox(&self, sandbox_id: &str) -> Result<()> {
        Ok(self.remove_pod_sandbox(sandbox_id).await?)
    }

    async fn sandbox_status(&self, sandbox_id: &str) -> Result<SandboxStatus> {
        let response = self.pod_sandbox_status(sandbox_id, false).await?;
        let status = required(response.status, "PodSandboxStatus", sandbox_id, "status")?;
        Ok(convert::sandbox_status(status))
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &SandboxConfig,
    ) -> Result<String> {
        Ok(CriClient::create_container(
            self,
            sandbox_id,
            convert::container_config(config),
            convert::sandbox_config(sandbox_config),
        )
        .await?)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        Ok(CriClient::start_container(self, container_id).await?)
    }

    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<()> {
        Ok(CriClient::stop_container(self, container_id, grace).await?)
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        Ok(CriClient::remove_container(self, container_id).await?)
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        let response = CriClient::container_status(self, container_id, false).await?;
        let status = required(response.status, "ContainerStatus", container_id, "status")?;
        Ok(convert::container_status(status))
    }

    async fn reopen_container_log(&self, container_id: &str) -> Result<()> {
        Ok(CriClient::reopen_container_log(self, container_id).await?)
    }

    async fn update_container_resources(
        &self,
        container_id: &str,
        resources: &kubelet_core::LinuxResources,
    ) -> Result<()> {
        let linux = Some(convert::resources(resources));
        Ok(CriClient::update_container_resources(self, container_id, linux).await?)
    }

    async fn stream_url(&self, request: &StreamRequest) -> Result<String> {
        let url = match request {
            StreamRequest::Exec {
                container_id,
                command,
                tty,
                stdin,
                stdout,
                stderr,
            } => {
                self.exec(cri::ExecRequest {
                    container_id: container_id.clone(),
                    cmd: command.clone(),
                    tty: *tty,
                    stdin: *stdin,
                    stdout: *stdout,
                    stderr: *stderr,
                })
                .await?
            }
            StreamRequest::Attach {
                container_id,
                tty,
                stdin,
                stdout,
                stderr,
            } => {
                self.attach(cri::AttachRequest {
                    container_id: container_id.clone(),
                    tty: *tty,
                    stdin: *stdin,
                    stdout: *stdout,
                    stderr: *stderr,
                })
                .await?
            }
            StreamRequest::PortForward { sandbox_id, ports } => {
                self.port_forward(sandbox_id, ports.clone()).await?
            }
        };
        Ok(url)
    }

    async fn container_events(&self) -> Result<ContainerEvents> {
        let stream = self.get_container_events().await?;
        Ok(Box::pin(stream.map(|item| match item {
            Ok(event) => Ok(convert::container_event(event)),
            Err(status) => {
                Err(Error::from_status("GetContainerEvents", "-", &status, Duration::ZERO).into())
            }
        })))
    }
}

#[async_trait]
impl ImageService for CriClient {
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        sandbox_config: Option<&SandboxConfig>,
    ) -> Result<String> {
        Ok(CriClient::pull_image(
            self,
            image,
            auth.map(convert::auth),
            sandbox_config.map(convert::sandbox_config),
        )
        .await?)
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let response = CriClient::image_status(self, image, false).await?;
        Ok(response.image.map(convert::image))
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let images = CriClient::list_images(self, None).await?;
        Ok(images.into_iter().map(convert::image).collect())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        match CriClient::remove_image(self, image).await {
            // Upstream treats removing an absent image as done.
            Err(e) if e.is_not_found() => Ok(()),
            other => Ok(other?),
        }
    }

    async fn image_fs_info(&self) -> Result<Vec<FilesystemUsage>> {
        let info = CriClient::image_fs_info(self).await?;
        Ok(info
            .image_filesystems
            .into_iter()
            .chain(info.container_filesystems)
            .map(convert::filesystem_usage)
            .collect())
    }
}
