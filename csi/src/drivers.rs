//! The registered CSI drivers (upstream's `csiDrivers` store and `RegistrationHandler`)
//! and the calls made to them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use kubelet_plugin_manager::{HandlerError, PluginHandler};
use tonic::transport::Channel;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::objects::{CsiObjects, NodeDriver};
use crate::proto::v1::NodeGetCapabilitiesRequest;
use crate::proto::v1::node_client::NodeClient;
use crate::proto::v1::node_service_capability::{self, rpc};

/// How long one call to a driver may take (upstream `csiTimeout`).
pub(crate) const CSI_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting to a driver's socket may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A registered driver.
#[derive(Debug)]
pub(crate) struct Driver {
    pub(crate) name: String,
    timeout: Duration,
    version: Version,
    channel: Channel,
}

impl Driver {
    pub(crate) fn client(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }

    /// One call to the driver, bounded by the call timeout ([`CSI_TIMEOUT`] unless
    /// [`Drivers::with_call_timeout`] said otherwise).
    pub(crate) async fn call<T>(
        &self,
        call: &'static str,
        request: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Error::Call {
                driver: self.name.clone(),
                call,
                reason: format!("code = {:?} desc = {}", status.code(), status.message()),
            }),
            Err(_) => Err(Error::Call {
                driver: self.name.clone(),
                call,
                reason: "context deadline exceeded".to_owned(),
            }),
        }
    }

    /// The node service's RPC capabilities.
    pub(crate) async fn capabilities(&self) -> Result<Vec<rpc::Type>> {
        let reply = self
            .call(
                "NodeGetCapabilities",
                self.client()
                    .node_get_capabilities(NodeGetCapabilitiesRequest {}),
            )
            .await?;
        Ok(reply
            .capabilities
            .iter()
            .filter_map(|c| match &c.r#type {
                Some(node_service_capability::Type::Rpc(r)) => rpc::Type::try_from(r.r#type).ok(),
                None => None,
            })
            .collect())
    }
}

/// A CSI version as drivers report it (`1.0.0`, `v1.2.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version(u64, u64, u64);

impl Version {
    fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut parts = text.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        let patch = parts
            .next()
            .map_or(Some(0), |p| p.split(['-', '+']).next()?.parse().ok())?;
        Some(Self(major, minor, patch))
    }
}

/// The drivers registered on this node; the [`PluginHandler`] of type `CSIPlugin`.
pub struct Drivers {
    drivers: RwLock<HashMap<String, Arc<Driver>>>,
    objects: Arc<dyn CsiObjects>,
    timeout: Duration,
}

impl std::fmt::Debug for Drivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drivers")
            .field("drivers", &self.names())
            .finish_non_exhaustive()
    }
}

impl Drivers {
    /// No drivers yet; registered ones are recorded in the API through `objects`.
    pub fn new(objects: Arc<dyn CsiObjects>) -> Self {
        Self {
            drivers: RwLock::default(),
            objects,
            timeout: CSI_TIMEOUT,
        }
    }

    /// Bounds every call to a driver by `timeout` instead of upstream's two minutes.
    #[must_use]
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The names of the registered drivers.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn objects(&self) -> &Arc<dyn CsiObjects> {
        &self.objects
    }

    pub(crate) fn get(&self, name: &str) -> Result<Arc<Driver>> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotRegistered {
                driver: name.to_owned(),
            })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Driver>>> {
        self.drivers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Driver>>> {
        self.drivers.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Upstream `validateVersions`: some version 1.x, and higher than a driver of the
    /// same name already has.
    fn validate_versions(&self, caller: &str, name: &str, versions: &[String]) -> Result<Version> {
        if versions.is_empty() {
            return Err(Error::Invalid(format!(
                "kubernetes.io/csi: {caller} for CSI driver {name:?} failed. Plugin returned an empty list for supported versions"
            )));
        }
        let Some(highest) = versions
            .iter()
            .filter_map(|v| Version::parse(v))
            .filter(|v| v.0 == 1)
            .max()
        else {
            return Err(Error::Invalid(format!(
                "kubernetes.io/csi: {caller} for CSI driver {name:?} failed. None of the versions specified {versions:?} are supported. err=none of the CSI versions reported by this driver are supported"
            )));
        };
        if let Some(existing) = self.read().get(name)
            && existing.version >= highest
        {
            return Err(Error::Invalid(format!(
                "kubernetes.io/csi: {caller} for CSI driver {name:?} failed. Another driver with the same name is already registered with a higher supported version: \"{}.{}.{}\"",
                existing.version.0, existing.version.1, existing.version.2
            )));
        }
        Ok(highest)
    }
}

#[async_trait]
impl PluginHandler for Drivers {
    async fn validate(
        &self,
        name: &str,
        endpoint: &str,
        versions: &[String],
    ) -> Result<(), HandlerError> {
        info!(driver = name, endpoint, ?versions, "validating CSI driver");
        self.validate_versions("ValidatePlugin", name, versions)
            .map(|_| ())
            .map_err(|e| {
                format!("validation failed for CSI Driver {name} at endpoint {endpoint}: {e}")
                    .into()
            })
    }

    async fn register(
        &self,
        name: &str,
        endpoint: &str,
        versions: &[String],
    ) -> Result<(), HandlerError> {
        let version = self.validate_versions("RegisterPlugin", name, versions)?;
        let driver = Arc::new(Driver {
            name: name.to_owned(),
            timeout: self.timeout,
            version,
            channel: kubelet_grpc_uds::connect(Path::new(endpoint), DIAL_TIMEOUT),
        });
        let previous = self.write().insert(name.to_owned(), driver.clone());
        let installed = async {
            let info = driver
                .call(
                    "NodeGetInfo",
                    driver
                        .client()
                        .node_get_info(crate::proto::v1::NodeGetInfoRequest {}),
                )
                .await?;
            let node = NodeDriver {
                name: name.to_owned(),
                node_id: info.node_id,
                max_volumes: (info.max_volumes_per_node > 0).then_some(info.max_volumes_per_node),
                topology: info
                    .accessible_topology
                    .map(|t| t.segments.into_iter().collect())
                    .unwrap_or_default(),
            };
            self.objects.install_driver(&node).await?;
            info!(driver = name, node_id = %node.node_id, topology = ?node.topology, "CSI driver registered");
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = installed {
            // As upstream: a driver whose NodeGetInfo or installation failed is not
            // registered, and the one it was to replace is kept.
            let mut drivers = self.write();
            match previous {
                Some(previous) => drivers.insert(name.to_owned(), previous),
                None => drivers.remove(name),
            };
            return Err(e.into());
        }
        Ok(())
    }

    async fn deregister(&self, name: &str, endpoint: &str) {
        info!(driver = name, endpoint, "CSI driver deregistered");
        self.write().remove(name);
        if let Err(e) = self.objects.uninstall_driver(name).await {
            warn!(driver = name, error = %e, "cannot remove the CSI driver from the CSINode object");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_upstreams() {
        assert_eq!(Version::parse("1.0.0"), Some(Version(1, 0, 0)));
        assert_eq!(Version::parse("v1.2"), Some(Version(1, 2, 0)));
        assert_eq!(Version::parse("1.5.0-rc1"), Some(Version(1, 5, 0)));
        assert_eq!(Version::parse("one"), None);
    }

    #[test]
    fn only_csi_1_is_supported() {
        let drivers = Drivers::new(Arc::new(crate::NoCsiObjects));
        let e = drivers
            .validate_versions("ValidatePlugin", "d", &["0.3.0".to_owned()])
            .expect_err("refused");
        assert!(
            e.to_string()
                .contains("None of the versions specified [\"0.3.0\"] are supported"),
            "{e}"
        );
        let e = drivers
            .validate_versions("ValidatePlugin", "d", &[])
            .expect_err("refused");
        assert!(
            e.to_string().contains("empty list for supported versions"),
            "{e}"
        );
        assert_eq!(
            drivers
                .validate_versions(
                    "ValidatePlugin",
                    "d",
                    &["0.3.0".to_owned(), "1.2.0".to_owned()]
                )
                .expect("valid"),
            Version(1, 2, 0)
        );
    }
}
