//! The plugin manager of a Rust kubelet, as upstream's `pkg/kubelet/pluginmanager`:
//! node plugins (CSI drivers, device plugins, DRA drivers) announce themselves with a
//! unix socket in `<root-dir>/plugins_registry` serving the `pluginregistration` v1 API
//! (what `node-driver-registrar` does for CSI drivers); the kubelet asks each for its
//! `PluginInfo` and hands it to the handler of its type.
//!
//! - [`PluginManager::run`]: the directory (made if missing) is watched with inotify;
//!   each new socket is dialed (10 s), asked `GetInfo` (1 s), validated and registered
//!   by the [`PluginHandler`] of its type, and told the outcome with
//!   `NotifyRegistrationStatus`, with upstream's messages (`RegisterPlugin error -- no
//!   handler registered for plugin type: ...`, `... plugin validation failed with err:
//!   ...`). A socket that is removed, or re-created, deregisters its plugin.
//! - Failures back off as upstream's operation executor (500 ms doubling up to 2 min):
//!   a dial, `GetInfo` or validation failure is retried; a plugin the handler refused
//!   to register was told so and is tried again only when its socket is re-created.
//! - Hidden files are ignored. Unlike upstream, sockets in subdirectories are not looked
//!   for.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use kubelet_plugin_manager::{HandlerError, PluginHandler, PluginManager};
//!
//! struct Logger;
//!
//! #[async_trait]
//! impl PluginHandler for Logger {
//!     async fn validate(&self, _: &str, _: &str, versions: &[String]) -> Result<(), HandlerError> {
//!         if versions.iter().any(|v| v.starts_with("1.")) {
//!             Ok(())
//!         } else {
//!             Err(format!("none of the versions {versions:?} are supported").into())
//!         }
//!     }
//!     async fn register(&self, name: &str, endpoint: &str, _: &[String]) -> Result<(), HandlerError> {
//!         println!("{name} serves on {endpoint}");
//!         Ok(())
//!     }
//!     async fn deregister(&self, name: &str, _: &str) {
//!         println!("{name} is gone");
//!     }
//! }
//!
//! # async fn run() -> Result<(), kubelet_plugin_manager::Error> {
//! PluginManager::new("/var/lib/kubelet/plugins_registry")
//!     .with_handler(kubelet_plugin_manager::CSI_PLUGIN, Arc::new(Logger))
//!     .run()
//!     .await
//! # }
//! ```

mod error;
mod manager;
mod watch;

pub use error::{Error, Result};
pub use manager::{HandlerError, PluginHandler, PluginManager};

/// The plugin directory below the kubelet's root directory (upstream
/// `config.DefaultKubeletPluginsRegistrationDirName`).
pub const PLUGINS_REGISTRY_DIR: &str = "plugins_registry";

/// `PluginInfo.type` of a CSI driver.
pub const CSI_PLUGIN: &str = "CSIPlugin";
/// `PluginInfo.type` of a device plugin.
pub const DEVICE_PLUGIN: &str = "DevicePlugin";
/// `PluginInfo.type` of a dynamic resource allocation driver.
pub const DRA_PLUGIN: &str = "DRAPlugin";

/// The generated gRPC code of upstream's `pluginregistration/v1/api.proto`.
pub mod proto {
    /// Package `pluginregistration` (v1): messages, `registration_client` and
    /// `registration_server` (for plugins and tests).
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("pluginregistration");
    }
}
