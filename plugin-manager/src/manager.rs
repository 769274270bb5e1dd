//! The registration loop: upstream's plugin watcher, desired and actual state of the
//! world and reconciler in one task.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::proto::v1::registration_client::RegistrationClient;
use crate::proto::v1::{InfoRequest, PluginInfo, RegistrationStatus};
use crate::watch::DirWatch;

/// Why a handler refused a plugin, shown to the plugin in `NotifyRegistrationStatus`.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// What the kubelet does with one type of plugin (upstream's `cache.PluginHandler`):
/// CSI drivers (`CSIPlugin`), device plugins (`DevicePlugin`), ...
#[async_trait]
pub trait PluginHandler: Send + Sync {
    /// Whether the plugin `name` at `endpoint`, speaking `versions`, can be registered.
    async fn validate(
        &self,
        name: &str,
        endpoint: &str,
        versions: &[String],
    ) -> Result<(), HandlerError>;

    /// Registers the plugin (validated just before).
    async fn register(
        &self,
        name: &str,
        endpoint: &str,
        versions: &[String],
    ) -> Result<(), HandlerError>;

    /// Forgets the plugin: its registration socket is gone or was replaced.
    async fn deregister(&self, name: &str, endpoint: &str);
}

const _: Option<&dyn PluginHandler> = None;

/// How long dialing a plugin's registration socket may take (upstream
/// `dialTimeoutDuration`).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `GetInfo` and `NotifyRegistrationStatus` may take (upstream: one second).
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Retries of a failed registration back off from this (upstream's operation executor:
/// 500 ms doubling up to 2 min 2 s).
const INITIAL_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(122);

/// Finds plugins' registration sockets in a directory (`<root-dir>/plugins_registry`)
/// and registers each with the handler of its type, as upstream's plugin manager.
pub struct PluginManager {
    dir: PathBuf,
    handlers: Arc<BTreeMap<String, Arc<dyn PluginHandler>>>,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field("dir", &self.dir)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A socket file as found: a socket re-created at the same path is another plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SocketId {
    inode: u64,
    modified_ns: i128,
}

/// A plugin registered with its handler.
struct Registered {
    socket: SocketId,
    handler: Arc<dyn PluginHandler>,
    name: String,
    endpoint: String,
}

/// A socket whose registration failed: retried after `retry_at`, or (`retry_at` None)
/// only once the socket is re-created, as upstream when the handler refused it and the
/// plugin was told so.
struct Failed {
    socket: SocketId,
    attempts: u32,
    retry_at: Option<Instant>,
}

/// How one registration attempt ended, when it did not succeed.
enum Refused {
    /// Worth retrying (dial, `GetInfo` or validation failed).
    Retry(String),
    /// The plugin was told why; it is expected to re-create its socket.
    Told(String),
}

impl PluginManager {
    /// A plugin manager for the registration sockets in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            handlers: Arc::default(),
        }
    }

    /// Sends the plugins of `plugin_type` (their `PluginInfo.type`) to `handler`.
    #[must_use]
    pub fn with_handler(mut self, plugin_type: &str, handler: Arc<dyn PluginHandler>) -> Self {
        Arc::make_mut(&mut self.handlers).insert(plugin_type.to_owned(), handler);
        self
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Watches the directory (made 0750 if missing) and registers plugins as their
    /// sockets appear, deregisters them as they go; runs until dropped.
    ///
    /// # Errors
    ///
    /// The directory cannot be made or watched.
    pub async fn run(self) -> Result<()> {
        let mut state = State::default();
        let mut watch = self.watch().await?;
        info!(dir = %self.dir.display(), types = ?self.handlers.keys().collect::<Vec<_>>(), "plugin manager watching for registration sockets");
        loop {
            let sockets = scan(&self.dir).await;
            self.reconcile(&sockets, &mut state).await;
            let next_retry = state.failed.values().filter_map(|f| f.retry_at).min();
            tokio::select! {
                alive = watch.changed() => {
                    if !alive {
                        warn!(dir = %self.dir.display(), "plugin directory went away; watching it again");
                        watch = self.watch().await?;
                    }
                }
                () = async {
                    match next_retry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
                Some(done) = state.attempts.join_next_with_id(), if !state.attempts.is_empty() => {
                    state.finished(done);
                }
            }
        }
    }

    async fn watch(&self) -> Result<DirWatch> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))
        })
        .await
        .map_err(|e| Error::io("creating", &self.dir, std::io::Error::other(e)))??;
        DirWatch::new(&self.dir)
            .await
            .map_err(|e| Error::io("watching", &self.dir, e))
    }

    /// Brings the registrations in line with the sockets found: plugins whose socket
    /// went deregistered, new sockets' registrations started (each in a task of its own,
    /// so a plugin that hangs delays no other).
    async fn reconcile(&self, sockets: &HashMap<PathBuf, SocketId>, state: &mut State) {
        let gone: Vec<PathBuf> = state
            .registered
            .iter()
            .filter(|(path, r)| sockets.get(*path) != Some(&r.socket))
            .map(|(path, _)| path.clone())
            .collect();
        for path in gone {
            if let Some(r) = state.registered.remove(&path) {
                info!(socket = %path.display(), plugin = %r.name, "deregistering plugin");
                r.handler.deregister(&r.name, &r.endpoint).await;
            }
        }
        state
            .failed
            .retain(|path, f| sockets.get(path) == Some(&f.socket));
        let now = Instant::now();
        for (path, socket) in sockets {
            if state.registered.contains_key(path)
                || state.in_flight.values().any(|(p, _)| p == path)
            {
                continue;
            }
            match state.failed.get(path) {
                Some(Failed { retry_at: None, .. }) => continue,
                Some(Failed {
                    retry_at: Some(at), ..
                }) if *at > now => continue,
                _ => {}
            }
            let (handlers, socket_path) = (self.handlers.clone(), path.clone());
            let task = state
                .attempts
                .spawn(async move { register(&handlers, &socket_path).await });
            state.in_flight.insert(task.id(), (path.clone(), *socket));
        }
    }
}

/// How one registration ended: the plugin's handler and info, or why not.
type Attempt = Result<(Arc<dyn PluginHandler>, PluginInfo), Refused>;

/// What the registration loop knows.
#[derive(Default)]
struct State {
    registered: HashMap<PathBuf, Registered>,
    failed: HashMap<PathBuf, Failed>,
    /// Registrations under way, one per socket at most.
    attempts: JoinSet<Attempt>,
    in_flight: HashMap<tokio::task::Id, (PathBuf, SocketId)>,
}

impl State {
    /// Records how a registration ended. A plugin whose socket went meanwhile is
    /// deregistered by the next reconciliation.
    fn finished(&mut self, done: Result<(tokio::task::Id, Attempt), tokio::task::JoinError>) {
        let (id, outcome) = match done {
            Ok((id, outcome)) => (id, outcome),
            Err(e) => (
                e.id(),
                Err(Refused::Retry(format!("the registration task failed: {e}"))),
            ),
        };
        let Some((path, socket)) = self.in_flight.remove(&id) else {
            return;
        };
        let attempts = self.failed.get(&path).map_or(0, |f| f.attempts);
        match outcome {
            Ok((handler, info)) => {
                info!(socket = %path.display(), plugin = %info.name, r#type = %info.r#type, "plugin registered");
                self.failed.remove(&path);
                self.registered.insert(
                    path,
                    Registered {
                        socket,
                        handler,
                        name: info.name,
                        endpoint: info.endpoint,
                    },
                );
            }
            Err(Refused::Told(reason)) => {
                warn!(socket = %path.display(), %reason, "plugin registration refused");
                self.failed.insert(
                    path,
                    Failed {
                        socket,
                        attempts: attempts + 1,
                        retry_at: None,
                    },
                );
            }
            Err(Refused::Retry(reason)) => {
                let delay = retry_delay(attempts);
                warn!(socket = %path.display(), %reason, retry_in = ?delay, "plugin registration failed");
                self.failed.insert(
                    path,
                    Failed {
                        socket,
                        attempts: attempts + 1,
                        retry_at: Some(Instant::now() + delay),
                    },
                );
            }
        }
    }
}

/// One registration, as upstream's `GenerateRegisterPluginFunc`.
async fn register(handlers: &BTreeMap<String, Arc<dyn PluginHandler>>, socket: &Path) -> Attempt {
    let shown = socket.display();
    let mut client = RegistrationClient::new(kubelet_grpc_uds::connect(socket, DIAL_TIMEOUT));
    let mut info = match tokio::time::timeout(
        DIAL_TIMEOUT + CALL_TIMEOUT,
        client.get_info(InfoRequest {}),
    )
    .await
    {
        Ok(Ok(info)) => info.into_inner(),
        Ok(Err(status)) => {
            return Err(Refused::Retry(format!(
                "RegisterPlugin error -- failed to get plugin info using RPC GetInfo at socket {shown}, err: {}",
                status.message()
            )));
        }
        Err(_) => {
            return Err(Refused::Retry(format!(
                "RegisterPlugin error -- failed to get plugin info using RPC GetInfo at socket {shown}, err: context deadline exceeded"
            )));
        }
    };
    debug!(socket = %shown, ?info, "plugin info");
    let Some(handler) = handlers.get(&info.r#type).cloned() else {
        let reason = format!(
            "RegisterPlugin error -- no handler registered for plugin type: {} at socket {shown}",
            info.r#type
        );
        notify(&mut client, false, &reason)
            .await
            .map_err(Refused::Retry)?;
        return Err(Refused::Retry(reason));
    };
    if info.endpoint.is_empty() {
        info.endpoint = socket.to_string_lossy().into_owned();
    }
    if let Err(e) = handler
        .validate(&info.name, &info.endpoint, &info.supported_versions)
        .await
    {
        let reason = format!("RegisterPlugin error -- plugin validation failed with err: {e}");
        notify(&mut client, false, &reason)
            .await
            .map_err(Refused::Retry)?;
        return Err(Refused::Retry(reason));
    }
    if let Err(e) = handler
        .register(&info.name, &info.endpoint, &info.supported_versions)
        .await
    {
        let reason = format!("RegisterPlugin error -- plugin registration failed with err: {e}");
        notify(&mut client, false, &reason)
            .await
            .map_err(Refused::Retry)?;
        return Err(Refused::Told(reason));
    }
    if let Err(e) = notify(&mut client, true, "").await {
        handler.deregister(&info.name, &info.endpoint).await;
        return Err(Refused::Retry(e));
    }
    Ok((handler, info))
}

/// Tells the plugin how its registration went.
async fn notify(
    client: &mut RegistrationClient<tonic::transport::Channel>,
    registered: bool,
    error: &str,
) -> Result<(), String> {
    let status = RegistrationStatus {
        plugin_registered: registered,
        error: error.to_owned(),
    };
    match tokio::time::timeout(CALL_TIMEOUT, client.notify_registration_status(status)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(format!(
            "RegisterPlugin error -- failed to send registration status, err: {}",
            status.message()
        )),
        Err(_) => Err(
            "RegisterPlugin error -- failed to send registration status, err: context deadline exceeded"
                .to_owned(),
        ),
    }
}

/// The wait before retry number `attempts + 1`.
fn retry_delay(attempts: u32) -> Duration {
    INITIAL_RETRY
        .saturating_mul(2u32.saturating_pow(attempts.min(16)))
        .min(MAX_RETRY)
}

/// The registration sockets in `dir` (hidden files skipped, as upstream).
async fn scan(dir: &Path) -> HashMap<PathBuf, SocketId> {
    let dir = dir.to_owned();
    let found = tokio::task::spawn_blocking(move || {
        let mut found = HashMap::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot read the plugin directory");
                return found;
            }
        };
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.file_type().is_socket() {
                found.insert(
                    entry.path(),
                    SocketId {
                        inode: meta.ino(),
                        modified_ns: i128::from(meta.mtime()) * 1_000_000_000
                            + i128::from(meta.mtime_nsec()),
                    },
                );
            }
        }
        found
    })
    .await;
    found.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_upstreams_maximum() {
        assert_eq!(retry_delay(0), Duration::from_millis(500));
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(20), MAX_RETRY);
    }
}
