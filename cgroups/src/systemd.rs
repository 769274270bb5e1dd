//! The systemd cgroup driver: the kubelet's cgroups are systemd slices, made, limited and
//! removed through systemd's D-Bus API as upstream's cgroup manager does it (through
//! libcontainer's systemd manager), with the cgroup files then written the cgroupfs way
//! as libcontainer writes them, since systemd knows only part of the settings.
//!
//! Names: the kubelet names its cgroups as cgroupfs paths (`/kubepods/burstable/pod<uid>`);
//! systemd's form joins the parts with `-`, after turning each part's `-` into `_`, into a
//! slice whose path spells out its parents ([`systemd_path`]):
//! `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use kubelet_core::CgroupDriver;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};

use crate::tree::{self, ResourceConfig};
use crate::{CgroupManager, CgroupVersion, Cgroupfs, QUOTA_PERIOD_US};

/// How long systemd may take to carry out one job, and to answer one call (libcontainer's
/// 30 s).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// The first systemd version with `CPUQuotaPeriodUSec`.
const CPU_QUOTA_PERIOD_VERSION: i64 = 242;

/// systemd's "no limit" for `CPUQuotaPerSecUSec`, `MemoryLimit` and `TasksMax`.
const INFINITY: u64 = u64::MAX;

/// The systemd path of cgroup `name`, as upstream's `CgroupName.ToSystemd`: a name given
/// in the cgroupfs form (`/kubepods/burstable/pod1-2`) becomes
/// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice`; a name
/// that is already a slice (`/system.slice`, as the reserved cgroups are configured) keeps
/// its slice, and the root stays `/`.
pub fn systemd_path(name: &str) -> String {
    let trimmed = name.trim_matches('/');
    if trimmed.is_empty() {
        return "/".to_owned();
    }
    let slice = match trimmed.rsplit('/').next() {
        // Upstream's ParseSystemdToCgroupName reads only the last part of such a name.
        Some(last) if last.ends_with(".slice") => last.to_owned(),
        _ => {
            let parts: Vec<String> = trimmed.split('/').map(|p| p.replace('-', "_")).collect();
            format!("{}.slice", parts.join("-"))
        }
    };
    expand_slice(&slice).unwrap_or_else(|| format!("/{slice}"))
}

/// The path of a slice in the hierarchy (libcontainer's `ExpandSlice`):
/// `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`, `-.slice` the root. `None` for a
/// name that is no slice (no `.slice` suffix, a `/`, an empty part).
pub fn expand_slice(slice: &str) -> Option<String> {
    let name = slice.strip_suffix(".slice")?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    if name == "-" {
        return Some("/".to_owned());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return None;
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(part);
        path.push_str(".slice");
        prefix.push_str(part);
        prefix.push('-');
    }
    Some(path)
}

/// The unit of a systemd cgroup path and the slice it belongs to (libcontainer's `Name`
/// and `Parent`): `/a.slice/a-b.slice` is unit `a-b.slice` in `a.slice`; a slice directly
/// under the root belongs to `-.slice`.
fn unit_and_parent(path: &str) -> (String, String) {
    let path = path.trim_end_matches('/');
    let (dir, unit) = path.rsplit_once('/').unwrap_or(("", path));
    let parent = match dir.rsplit('/').next() {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ => "-.slice".to_owned(),
    };
    (unit.to_owned(), parent)
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    /// Creates and starts a unit that lives until stopped; returns its job.
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;

    /// Stops a unit; returns its job.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Changes a unit's properties (`runtime`: until the next boot only).
    fn set_unit_properties(
        &self,
        name: &str,
        runtime: bool,
        properties: &[(&str, Value<'_>)],
    ) -> zbus::Result<()>;

    /// Forgets a failed unit.
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    /// A job finished: `result` is `done` when it succeeded.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;

    /// systemd's version, e.g. `252.22-1~deb12u1`.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
}

fn dbus_error(what: String) -> impl FnOnce(zbus::Error) -> io::Error {
    move |e| io::Error::other(format!("{what}: {e}"))
}

/// Whether systemd answered with the D-Bus error `name` (e.g. `UnitExists`).
fn is_systemd_error(e: &zbus::Error, name: &str) -> bool {
    matches!(e, zbus::Error::MethodError(error, _, _)
        if error.as_str() == format!("org.freedesktop.systemd1.{name}"))
}

/// systemd's major version from its `Version` (`"v245.4-1.fc32"`, `252.22-1~deb12u1`),
/// as libcontainer's `systemdVersionAtoi`.
fn major_version(version: &str) -> Option<i64> {
    let digits: String = version
        .trim_start_matches(['"', 'v'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The systemd cgroup driver: slices made and limited through systemd, their cgroup files
/// written as with [`Cgroupfs`] at the slices' paths. Like every [`CgroupManager`], its
/// methods block (each waits for systemd): call them from a blocking thread of the tokio
/// runtime it was connected in.
pub struct Systemd {
    fs: Cgroupfs,
    manager: ManagerProxy<'static>,
    runtime: tokio::runtime::Handle,
    version: OnceLock<Option<i64>>,
}

impl std::fmt::Debug for Systemd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Systemd")
            .field("fs", &self.fs)
            .field("version", &self.version.get())
            .finish_non_exhaustive()
    }
}

impl Systemd {
    /// Connects to systemd on the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the standard
    /// socket), for the cgroups mounted as `fs` describes.
    ///
    /// # Errors
    ///
    /// The bus cannot be reached.
    pub async fn connect(fs: Cgroupfs) -> io::Result<Self> {
        let connection = zbus::Connection::system().await.map_err(dbus_error(
            "connecting to the D-Bus system bus for systemd".into(),
        ))?;
        Self::with_connection(fs, connection).await
    }

    /// Talks to systemd over an open D-Bus connection (a private bus in tests).
    ///
    /// # Errors
    ///
    /// The connection cannot make a proxy (it was closed).
    pub async fn with_connection(fs: Cgroupfs, connection: zbus::Connection) -> io::Result<Self> {
        let manager = ManagerProxy::builder(&connection)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(dbus_error("reaching systemd".into()))?;
        Ok(Self {
            fs,
            manager,
            runtime: tokio::runtime::Handle::current(),
            version: OnceLock::new(),
        })
    }

    /// Runs one exchange with systemd to completion from a blocking thread.
    fn block<T>(&self, exchange: impl Future<Output = io::Result<T>>) -> io::Result<T> {
        let _runtime = self.runtime.enter();
        futures::executor::block_on(async {
            tokio::time::timeout(JOB_TIMEOUT * 2, exchange)
                .await
                .map_err(|_| io::Error::other("systemd did not answer within 60s"))?
        })
    }

    async fn version(&self) -> Option<i64> {
        if let Some(v) = self.version.get() {
            return *v;
        }
        let version = match self.manager.version().await {
            Ok(v) => major_version(&v),
            Err(e) => {
                tracing::warn!(error = %e, "unable to get systemd version");
                None
            }
        };
        *self.version.get_or_init(|| version)
    }

    /// Waits for the job systemd returned to finish; returns its result.
    async fn job_result(
        removed: &mut JobRemovedStream,
        job: &OwnedObjectPath,
        unit: &str,
    ) -> io::Result<String> {
        let wait = async {
            while let Some(signal) = removed.next().await {
                if let Ok(args) = signal.args()
                    && args.job.as_str() == job.as_str()
                {
                    return Ok(args.result.to_owned());
                }
            }
            Err(io::Error::other(format!(
                "the D-Bus connection closed while systemd worked on {unit}"
            )))
        };
        tokio::time::timeout(JOB_TIMEOUT, wait).await.map_err(|_| {
            io::Error::other(format!("Timeout waiting for systemd to create {unit}"))
        })?
    }

    /// Makes the slice `unit` under `parent` as libcontainer does for the kubelet (an
    /// existing unit is fine): accounting on, no default dependencies.
    async fn start_slice(&self, unit: &str, parent: &str) -> io::Result<()> {
        let io_accounting = match self.fs.version() {
            CgroupVersion::V1 => "BlockIOAccounting",
            CgroupVersion::V2 => "IOAccounting",
        };
        let description = format!("libcontainer container {unit}");
        let properties = [
            ("Description", Value::from(description.as_str())),
            ("Wants", Value::from(vec![parent])),
            ("MemoryAccounting", Value::from(true)),
            ("CPUAccounting", Value::from(true)),
            (io_accounting, Value::from(true)),
            ("TasksAccounting", Value::from(true)),
            ("DefaultDependencies", Value::from(false)),
        ];
        let aux: &[(&str, &[(&str, Value<'_>)])] = &[];
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(dbus_error(format!("watching systemd jobs for {unit}")))?;
        let job = match self
            .manager
            .start_transient_unit(unit, "replace", &properties, aux)
            .await
        {
            Ok(job) => job,
            // The kubelet only makes sure its slices exist.
            Err(e) if is_systemd_error(&e, "UnitExists") => return Ok(()),
            Err(e) => return Err(dbus_error(format!("creating systemd unit {unit}"))(e)),
        };
        let result = Self::job_result(&mut removed, &job, unit).await?;
        if result != "done" {
            let _ = self.manager.reset_failed_unit(unit).await;
            return Err(io::Error::other(format!(
                "error creating systemd unit `{unit}`: got `{result}`"
            )));
        }
        Ok(())
    }

    /// The unit properties for `config` (libcontainer's `genV1ResourcesProperties` and
    /// `genV2ResourcesProperties` for what the kubelet sets), and the config to write to
    /// the files: its CFS quota rounded up as systemd rounds it, so both agree.
    async fn unit_properties(
        &self,
        config: &ResourceConfig,
    ) -> (Vec<(&'static str, Value<'static>)>, ResourceConfig) {
        let v2 = self.fs.version() == CgroupVersion::V2;
        let mut files = config.clone();
        let mut properties: Vec<(&'static str, Value<'static>)> = Vec::new();
        if let Some(memory) = config.memory {
            let limit = u64::try_from(memory)
                .ok()
                .filter(|m| *m > 0)
                .unwrap_or(INFINITY);
            properties.push((if v2 { "MemoryMax" } else { "MemoryLimit" }, limit.into()));
        }
        if let Some(shares) = config.cpu_shares {
            if v2 {
                properties.push(("CPUWeight", crate::shares_to_weight(shares).into()));
            } else {
                properties.push(("CPUShares", shares.into()));
            }
        }
        if config.cpu_quota.is_some() || config.cpu_period.is_some() {
            let period = config.cpu_period.unwrap_or(0);
            if period != 0 && self.version().await >= Some(CPU_QUOTA_PERIOD_VERSION) {
                properties.push(("CPUQuotaPeriodUSec", period.into()));
            }
            let mut per_sec = INFINITY;
            if let Some(quota) = config.cpu_quota.and_then(|q| u64::try_from(q).ok())
                && quota > 0
            {
                let period = if period == 0 { QUOTA_PERIOD_US } else { period };
                per_sec = quota.saturating_mul(1_000_000) / period;
                // systemd keeps whole percents of a CPU: round up to 10 ms per second and
                // write the same quota to the files.
                if !per_sec.is_multiple_of(10_000) {
                    per_sec = (per_sec / 10_000 + 1) * 10_000;
                    files.cpu_quota =
                        i64::try_from(per_sec.saturating_mul(period) / 1_000_000).ok();
                }
            }
            properties.push(("CPUQuotaPerSecUSec", per_sec.into()));
        }
        if let Some(pids) = config.pids_limit {
            let tasks = match pids {
                p if p < 0 => INFINITY,
                // systemd refuses 0.
                0 => 1,
                p => p.unsigned_abs(),
            };
            properties.push(("TasksMax", tasks.into()));
        }
        (properties, files)
    }

    async fn stop(&self, unit: &str) -> io::Result<()> {
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(dbus_error(format!("watching systemd jobs for {unit}")))?;
        // As libcontainer: a unit systemd does not know (already stopped) is fine.
        if let Ok(job) = self.manager.stop_unit(unit, "replace").await {
            let result = Self::job_result(&mut removed, &job, unit).await?;
            if result != "done" {
                tracing::warn!(%unit, %result, "error removing unit; continuing");
            }
        }
        let _ = self.manager.reset_failed_unit(unit).await;
        Ok(())
    }
}

impl CgroupManager for Systemd {
    fn root(&self) -> &Path {
        self.fs.root()
    }

    fn version(&self) -> CgroupVersion {
        self.fs.version()
    }

    fn driver(&self) -> CgroupDriver {
        CgroupDriver::Systemd
    }

    fn apply(&self, name: &str, config: &ResourceConfig) -> io::Result<()> {
        let path = systemd_path(name);
        let (unit, parent) = unit_and_parent(&path);
        let files = self.block(async {
            self.start_slice(&unit, &parent).await?;
            let (properties, files) = self.unit_properties(config).await;
            if !properties.is_empty() {
                self.manager
                    .set_unit_properties(&unit, true, &properties)
                    .await
                    .map_err(dbus_error(format!("setting properties of {unit}")))?;
            }
            Ok(files)
        })?;
        // systemd applies only what it knows of; libcontainer writes every setting to the
        // files as well (and makes the directories of controllers systemd leaves alone).
        tree::apply(&self.fs, &path, &files)
    }

    fn exists(&self, name: &str) -> bool {
        self.fs.exists(&systemd_path(name))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let path = systemd_path(name);
        // A cgroup in no hierarchy has no unit either (systemd makes the directories of
        // the units it starts): nothing to ask systemd, as upstream only destroys the pod
        // cgroups it finds.
        if path == "/" || !self.fs.cgroup_dirs(&path)?.iter().any(|d| d.exists()) {
            return Ok(());
        }
        let (unit, _) = unit_and_parent(&path);
        let stopped = self.block(self.stop(&unit));
        // Both when stopped and when not, as libcontainer: the directories go too, some
        // of them were made by the kubelet, not by systemd.
        self.fs.remove(&path)?;
        stopped
    }

    fn ensure_qos_tree(&self, allocatable: &ResourceConfig) -> io::Result<()> {
        tree::ensure_qos_tree(self, allocatable)
    }

    fn update_burstable_shares(&self, total_request_milli: u64) -> io::Result<()> {
        tree::update_burstable_shares(self, total_request_milli)
    }

    // The system cgroups are named literally in the configuration and kept with the
    // cgroupfs manager whatever the driver, as upstream keeps them.
    fn move_process(&self, name: &str, pid: u32) -> io::Result<()> {
        self.fs.move_process(name, pid)
    }

    fn move_root_processes(&self, proc_root: &Path, name: &str) -> io::Result<usize> {
        self.fs.move_root_processes(proc_root, name)
    }

    fn process_cgroup(&self, proc_root: &Path, pid: &str) -> io::Result<String> {
        self.fs.process_cgroup(proc_root, pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstreams_to_systemd() {
        assert_eq!(systemd_path("/kubepods"), "/kubepods.slice");
        assert_eq!(
            systemd_path("/kubepods/burstable"),
            "/kubepods.slice/kubepods-burstable.slice"
        );
        assert_eq!(
            systemd_path("/kubepods/burstable/pod1234-abcd-5678-efgh"),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_abcd_5678_efgh.slice"
        );
        assert_eq!(
            systemd_path("/kubepods/podu-1"),
            "/kubepods.slice/kubepods-podu_1.slice"
        );
        assert_eq!(systemd_path("/"), "/");
        assert_eq!(systemd_path(""), "/");
        // Configured in systemd's form already.
        assert_eq!(systemd_path("/system.slice"), "/system.slice");
        assert_eq!(
            systemd_path("/kube.slice/kube-reserved.slice"),
            "/kube.slice/kube-reserved.slice"
        );
    }

    #[test]
    fn slices_expand_as_libcontainer() {
        assert_eq!(
            expand_slice("test-a-b.slice").as_deref(),
            Some("/test.slice/test-a.slice/test-a-b.slice")
        );
        assert_eq!(expand_slice("-.slice").as_deref(), Some("/"));
        assert_eq!(expand_slice("test--a.slice"), None);
        assert_eq!(expand_slice("-test.slice"), None);
        assert_eq!(expand_slice("a/b.slice"), None);
        assert_eq!(expand_slice("test.scope"), None);
        assert_eq!(expand_slice(".slice"), None);
    }

    #[test]
    fn units_belong_to_their_parent_slice() {
        assert_eq!(
            unit_and_parent("/kubepods.slice"),
            ("kubepods.slice".into(), "-.slice".into())
        );
        assert_eq!(
            unit_and_parent("/kubepods.slice/kubepods-besteffort.slice"),
            ("kubepods-besteffort.slice".into(), "kubepods.slice".into())
        );
    }

    #[test]
    fn versions_parse_as_libcontainer() {
        assert_eq!(major_version("\"v245.4-1.fc32\""), Some(245));
        assert_eq!(major_version("252.22-1~deb12u1"), Some(252));
        assert_eq!(major_version("245"), Some(245));
        assert_eq!(major_version("unknown"), None);
    }
}
