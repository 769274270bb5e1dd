//! systemd-logind over the D-Bus system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the
//! standard socket), as upstream's `nodeshutdown/systemd`: the inhibitor delay
//! (`InhibitDelayMaxUSec`), a `shutdown` delay lock (`Inhibit`, released by closing its
//! file descriptor), the `PrepareForShutdown` signal, and the drop-in plus logind reload
//! that raise the delay.

use std::path::Path;
use std::time::Duration;

use futures::{Stream, StreamExt};
use zbus::zvariant::OwnedFd;

use crate::{Error, Result};

/// Where upstream writes its logind drop-in.
pub const LOGIND_CONF_DIR: &str = "/etc/systemd/logind.conf.d";
/// The drop-in's name.
pub const KUBELET_LOGIND_CONF: &str = "99-kubelet.conf";

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
trait LoginManager {
    /// Takes an inhibitor lock; closing the returned descriptor releases it.
    fn inhibit(&self, what: &str, who: &str, why: &str, mode: &str) -> zbus::Result<OwnedFd>;

    /// Sent with `true` before a shutdown, `false` when it is cancelled.
    #[zbus(signal)]
    fn prepare_for_shutdown(&self, start: bool) -> zbus::Result<()>;

    /// How long a delay lock may hold a shutdown back, in microseconds.
    #[zbus(property(emits_changed_signal = "false"), name = "InhibitDelayMaxUSec")]
    fn inhibit_delay_max_usec(&self) -> zbus::Result<u64>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait SystemdManager {
    /// Sends a signal to a unit's processes.
    fn kill_unit(&self, name: &str, who: &str, signal: i32) -> zbus::Result<()>;
}

fn dbus(operation: &'static str) -> impl FnOnce(zbus::Error) -> Error {
    move |e| Error::Shutdown {
        reason: format!("{operation}: {e}"),
    }
}

/// A connection to logind.
#[derive(Debug)]
pub struct Logind {
    connection: zbus::Connection,
}

/// An inhibitor lock; dropping it releases the lock.
#[derive(Debug)]
pub struct InhibitLock {
    _fd: OwnedFd,
}

impl Logind {
    /// Connects to the system bus.
    pub async fn connect() -> Result<Self> {
        let connection = zbus::Connection::system()
            .await
            .map_err(dbus("connecting to the D-Bus system bus"))?;
        Ok(Self { connection })
    }

    async fn manager(&self) -> Result<LoginManagerProxy<'_>> {
        LoginManagerProxy::new(&self.connection)
            .await
            .map_err(dbus("reaching logind"))
    }

    /// `InhibitDelayMaxUSec`: how long a delay lock may hold a shutdown back.
    pub async fn inhibit_delay(&self) -> Result<Duration> {
        let usec = self
            .manager()
            .await?
            .inhibit_delay_max_usec()
            .await
            .map_err(dbus("reading logind's InhibitDelayMaxUSec"))?;
        Ok(Duration::from_micros(usec))
    }

    /// Takes a `shutdown` delay lock as upstream (who `kubelet`, why "Kubelet needs time
    /// for a graceful shutdown.").
    pub async fn inhibit_shutdown(&self) -> Result<InhibitLock> {
        let fd = self
            .manager()
            .await?
            .inhibit(
                "shutdown",
                "kubelet",
                "Kubelet needs time for a graceful shutdown.",
                "delay",
            )
            .await
            .map_err(dbus("taking a shutdown inhibitor lock"))?;
        Ok(InhibitLock { _fd: fd })
    }

    /// The `PrepareForShutdown` signals, as their `start` argument.
    pub async fn prepare_for_shutdown(&self) -> Result<impl Stream<Item = bool> + Unpin + use<>> {
        let manager = LoginManagerProxy::new(&self.connection)
            .await
            .map_err(dbus("reaching logind"))?;
        let signals = manager
            .receive_prepare_for_shutdown()
            .await
            .map_err(dbus("subscribing to PrepareForShutdown"))?;
        Ok(Box::pin(signals.filter_map(|signal| async move {
            signal.args().ok().map(|args| args.start)
        })))
    }

    /// Makes logind read its configuration again (SIGHUP through systemd, as upstream).
    pub async fn reload_logind(&self) -> Result<()> {
        SystemdManagerProxy::new(&self.connection)
            .await
            .map_err(dbus("reaching systemd"))?
            .kill_unit("systemd-logind.service", "all", 1)
            .await
            .map_err(dbus("reloading systemd-logind"))
    }
}

/// The drop-in raising logind's `InhibitDelayMaxSec` to `delay`, as upstream words it.
pub fn inhibit_delay_override(delay: Duration) -> String {
    format!(
        "# Kubelet logind override\n[Login]\nInhibitDelayMaxSec={}\n",
        delay.as_secs()
    )
}

/// Writes [`inhibit_delay_override`] to `<dir>/99-kubelet.conf`.
pub fn write_inhibit_delay_override(dir: &Path, delay: Duration) -> Result<()> {
    let io = |operation: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            operation,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating the logind drop-in directory", dir))?;
    let path = dir.join(KUBELET_LOGIND_CONF);
    std::fs::write(&path, inhibit_delay_override(delay))
        .map_err(io("writing the logind drop-in", &path))
}
