//! Eviction signals and thresholds, parsed from the `KubeletConfiguration` as upstream's
//! `ParseThresholdConfig` does (`evictionHard`, `evictionSoft`,
//! `evictionSoftGracePeriod`, `evictionMinimumReclaim`), and the reservation the hard
//! thresholds take out of the node's allocatable.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use kubelet_core::Quantity;
use kubelet_core::config::{GoDuration, KubeletConfiguration};
use kubelet_pod_manager::pressure::PressureCondition;

use crate::{Error, Result};

/// An eviction signal, with upstream's name (`memory.available`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// `memory.available`: the node's memory capacity less the root cgroup's working set.
    MemoryAvailable,
    /// `allocatableMemory.available`: the pods' allocatable memory less their working set.
    AllocatableMemoryAvailable,
    /// `nodefs.available`: free bytes of the filesystem of the kubelet's root directory.
    NodeFsAvailable,
    /// `nodefs.inodesFree`.
    NodeFsInodesFree,
    /// `imagefs.available`: free bytes of the runtime's image filesystem.
    ImageFsAvailable,
    /// `imagefs.inodesFree`.
    ImageFsInodesFree,
    /// `containerfs.available`: the writable layers' filesystem (the nodefs here).
    ContainerFsAvailable,
    /// `containerfs.inodesFree`.
    ContainerFsInodesFree,
    /// `pid.available`: the node's process limit less the processes running.
    PidAvailable,
}

/// What a signal measures, as upstream's `signalToResource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `memory`
    Memory,
    /// `ephemeral-storage`
    EphemeralStorage,
    /// `inodes`
    Inodes,
    /// `pids`
    Pids,
}

impl Resource {
    /// Upstream's resource name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::EphemeralStorage => "ephemeral-storage",
            Self::Inodes => "inodes",
            Self::Pids => "pids",
        }
    }

    /// Whether quantities of it are bytes (printed with binary suffixes).
    pub fn is_bytes(self) -> bool {
        matches!(self, Self::Memory | Self::EphemeralStorage)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Signal {
    /// Every signal.
    pub const ALL: [Self; 9] = [
        Self::MemoryAvailable,
        Self::AllocatableMemoryAvailable,
        Self::NodeFsAvailable,
        Self::NodeFsInodesFree,
        Self::ImageFsAvailable,
        Self::ImageFsInodesFree,
        Self::ContainerFsAvailable,
        Self::ContainerFsInodesFree,
        Self::PidAvailable,
    ];

    /// Upstream's name, e.g. `memory.available`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemoryAvailable => "memory.available",
            Self::AllocatableMemoryAvailable => "allocatableMemory.available",
            Self::NodeFsAvailable => "nodefs.available",
            Self::NodeFsInodesFree => "nodefs.inodesFree",
            Self::ImageFsAvailable => "imagefs.available",
            Self::ImageFsInodesFree => "imagefs.inodesFree",
            Self::ContainerFsAvailable => "containerfs.available",
            Self::ContainerFsInodesFree => "containerfs.inodesFree",
            Self::PidAvailable => "pid.available",
        }
    }

    /// The signal named `name`, if upstream knows it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The resource it measures.
    pub fn resource(self) -> Resource {
        match self {
            Self::MemoryAvailable | Self::AllocatableMemoryAvailable => Resource::Memory,
            Self::NodeFsAvailable | Self::ImageFsAvailable | Self::ContainerFsAvailable => {
                Resource::EphemeralStorage
            }
            Self::NodeFsInodesFree | Self::ImageFsInodesFree | Self::ContainerFsInodesFree => {
                Resource::Inodes
            }
            Self::PidAvailable => Resource::Pids,
        }
    }

    /// The node condition a met threshold of this signal sets.
    pub fn condition(self) -> PressureCondition {
        match self.resource() {
            Resource::Memory => PressureCondition::Memory,
            Resource::EphemeralStorage | Resource::Inodes => PressureCondition::Disk,
            Resource::Pids => PressureCondition::Pid,
        }
    }

    fn is_memory(self) -> bool {
        self.resource() == Resource::Memory
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A threshold's value: an absolute quantity or a fraction of the signal's capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    /// An absolute amount (bytes, inodes, processes).
    Quantity(i64),
    /// A fraction of capacity (`10%` is 0.1), kept as upstream's float32.
    Percentage(f32),
}

impl ThresholdValue {
    /// The amount against `capacity`, as upstream's `GetThresholdQuantity`.
    pub fn amount(self, capacity: i64) -> i64 {
        match self {
            Self::Quantity(q) => q,
            // Upstream: int64(float64(capacity.Value()) * float64(percentage)).
            #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            Self::Percentage(p) => (capacity as f64 * f64::from(p)) as i64,
        }
    }
}

/// One eviction threshold: the signal is "less than" the value (the only operator
/// upstream has).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub signal: Signal,
    /// Below what.
    pub value: ThresholdValue,
    /// How long it must hold before pods are evicted; zero for a hard threshold.
    pub grace_period: Duration,
    /// How much beyond the threshold must be reclaimed before it counts as resolved.
    pub min_reclaim: Option<ThresholdValue>,
}

impl Threshold {
    /// Whether it evicts at once (`evictionHard`).
    pub fn is_hard(&self) -> bool {
        self.grace_period.is_zero()
    }

    /// Whether `available` of `capacity` meets the threshold; with `with_min_reclaim`,
    /// against the threshold plus its minimum reclaim (is it still not resolved?).
    pub fn is_met(&self, available: i64, capacity: i64, with_min_reclaim: bool) -> bool {
        let mut quantity = self.value.amount(capacity);
        if with_min_reclaim && let Some(min) = self.min_reclaim {
            quantity = quantity.saturating_add(min.amount(capacity));
        }
        quantity > available
    }
}

/// The eviction manager's configuration, from a `KubeletConfiguration`.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionConfig {
    /// The thresholds, hard ones first.
    pub thresholds: Vec<Threshold>,
    /// `evictionPressureTransitionPeriod` (default 5m): how long a pressure condition
    /// stays after its threshold was last met.
    pub pressure_transition_period: Duration,
    /// `evictionMaxPodGracePeriod`: the most a soft eviction gives a pod (seconds).
    pub max_pod_grace_period_seconds: i64,
    /// `localStorageCapacityIsolation` (default true): ephemeral-storage limits and
    /// emptyDir `sizeLimit` evict.
    pub local_storage_capacity_isolation: bool,
}

impl Default for EvictionConfig {
    fn default() -> Self {
        Self {
            thresholds: Vec::new(),
            pressure_transition_period: Duration::from_secs(300),
            max_pod_grace_period_seconds: 0,
            local_storage_capacity_isolation: true,
        }
    }
}

impl EvictionConfig {
    /// Parses the eviction fields of `config`, as upstream's `ParseThresholdConfig`:
    /// unknown signals, values that do not parse, percentages outside 0-100%,
    /// non-positive quantities and soft thresholds without a grace period are errors
    /// naming the field. `0%` and `100%` thresholds are ignored, as upstream ignores
    /// them. With `pods` in `enforceNodeAllocatable`, a hard `memory.available` threshold
    /// also applies to `allocatableMemory.available`. `containerfs.*` thresholds take
    /// the `nodefs.*` values (there is no separate container filesystem here), as
    /// upstream's `UpdateContainerFsThresholds`.
    ///
    /// # Errors
    ///
    /// [`Error::Threshold`] naming the field.
    pub fn from_kubelet_config(config: &KubeletConfiguration) -> Result<Self> {
        let empty = BTreeMap::new();
        let hard = parse_statements(
            "evictionHard",
            config.eviction_hard.as_ref().unwrap_or(&empty),
        )?;
        let mut soft = parse_statements("evictionSoft", &config.eviction_soft)?;
        let grace_periods = parse_grace_periods(&config.eviction_soft_grace_period)?;
        let min_reclaims = parse_min_reclaims(&config.eviction_minimum_reclaim)?;
        for threshold in &mut soft {
            let Some(period) = grace_periods.get(&threshold.signal) else {
                return Err(Error::Threshold {
                    field: "evictionSoftGracePeriod",
                    reason: format!(
                        "grace period must be specified for the soft eviction threshold {}",
                        threshold.signal
                    ),
                });
            };
            threshold.grace_period = *period;
        }
        let mut thresholds: Vec<Threshold> = hard.into_iter().chain(soft).collect();
        for threshold in &mut thresholds {
            threshold.min_reclaim = min_reclaims.get(&threshold.signal).copied();
        }
        let enforce_pods = config
            .enforce_node_allocatable
            .as_ref()
            .is_some_and(|keys| keys.iter().any(|k| k == "pods"));
        if enforce_pods {
            let allocatable: Vec<Threshold> = thresholds
                .iter()
                .filter(|t| t.signal == Signal::MemoryAvailable && t.is_hard())
                .map(|t| Threshold {
                    signal: Signal::AllocatableMemoryAvailable,
                    ..*t
                })
                .collect();
            thresholds.extend(allocatable);
        }
        Ok(Self {
            thresholds: container_fs_follows_node_fs(thresholds),
            pressure_transition_period: config
                .eviction_pressure_transition_period
                .to_std()
                .unwrap_or(Duration::from_secs(300)),
            max_pod_grace_period_seconds: i64::from(config.eviction_max_pod_grace_period),
            local_storage_capacity_isolation: config
                .local_storage_capacity_isolation
                .unwrap_or(true),
        })
    }

    /// What the configuration asks that is not done as written, one line each for the
    /// start-up log: `containerfs.*` thresholds, which follow `nodefs.*`.
    pub fn notes(config: &KubeletConfiguration) -> Vec<String> {
        let empty = BTreeMap::new();
        let mut notes = Vec::new();
        for (field, map) in [
            (
                "evictionHard",
                config.eviction_hard.as_ref().unwrap_or(&empty),
            ),
            ("evictionSoft", &config.eviction_soft),
        ] {
            for key in map.keys().filter(|k| k.starts_with("containerfs.")) {
                notes.push(format!(
                    "{field} {key} is ignored: the container filesystem is the node filesystem here, so the nodefs threshold applies"
                ));
            }
        }
        if config.kernel_memcg_notification {
            notes.push(format!(
                "kernelMemcgNotification is not supported yet: memory thresholds are checked every {}s",
                crate::MONITORING_PERIOD.as_secs()
            ));
        }
        notes
    }

    /// The hard thresholds' reservation out of allocatable, as upstream's
    /// `hardEvictionReservation`: `memory.available` of the memory capacity and
    /// `nodefs.available` of the ephemeral-storage capacity; `(memory, storage)` bytes.
    pub fn hard_reservation(&self, memory_capacity: i64, storage_capacity: i64) -> (i64, i64) {
        let mut memory = 0;
        let mut storage = 0;
        for t in self.thresholds.iter().filter(|t| t.is_hard()) {
            match t.signal {
                Signal::MemoryAvailable => memory = t.value.amount(memory_capacity),
                Signal::NodeFsAvailable => storage = t.value.amount(storage_capacity),
                _ => {}
            }
        }
        (memory, storage)
    }
}

/// Upstream's `UpdateContainerFsThresholds` for one filesystem: the `containerfs.*`
/// thresholds are those of `nodefs.*`, whatever was configured for them.
fn container_fs_follows_node_fs(thresholds: Vec<Threshold>) -> Vec<Threshold> {
    let mut out: Vec<Threshold> = thresholds
        .into_iter()
        .filter(|t| {
            !matches!(
                t.signal,
                Signal::ContainerFsAvailable | Signal::ContainerFsInodesFree
            )
        })
        .collect();
    let derived: Vec<Threshold> = out
        .iter()
        .filter_map(|t| {
            let signal = match t.signal {
                Signal::NodeFsAvailable => Signal::ContainerFsAvailable,
                Signal::NodeFsInodesFree => Signal::ContainerFsInodesFree,
                _ => return None,
            };
            Some(Threshold { signal, ..*t })
        })
        .collect();
    out.extend(derived);
    out
}

fn signal(field: &'static str, name: &str) -> Result<Signal> {
    Signal::from_name(name).ok_or_else(|| Error::Threshold {
        field,
        reason: format!("unsupported eviction signal {name}"),
    })
}

fn parse_percentage(field: &'static str, text: &str) -> Result<f32> {
    let number = text.trim_end_matches('%');
    number
        .parse::<f64>()
        .map(|v| (v as f32) / 100.0)
        .map_err(|_| Error::Threshold {
            field,
            reason: format!("strconv.ParseFloat: parsing {number:?}: invalid syntax"),
        })
}

fn parse_quantity(field: &'static str, text: &str) -> Result<Quantity> {
    Quantity::parse(text).map_err(|e| Error::Threshold {
        field,
        reason: format!("{text:?}: {e}"),
    })
}

/// Upstream's `parseThresholdStatements`.
fn parse_statements(
    field: &'static str,
    statements: &BTreeMap<String, String>,
) -> Result<Vec<Threshold>> {
    let mut out = Vec::new();
    for (name, text) in statements {
        let signal = signal(field, name)?;
        let value = if text.ends_with('%') {
            if text == "0%" || text == "100%" {
                continue;
            }
            let p = parse_percentage(field, text)?;
            if p < 0.0 {
                return Err(Error::Threshold {
                    field,
                    reason: format!("eviction percentage threshold {signal} must be >= 0%: {text}"),
                });
            }
            if p > 1.0 {
                return Err(Error::Threshold {
                    field,
                    reason: format!(
                        "eviction percentage threshold {signal} must be <= 100%: {text}"
                    ),
                });
            }
            ThresholdValue::Percentage(p)
        } else {
            let q = parse_quantity(field, text)?;
            if q.nano_value() <= 0 {
                return Err(Error::Threshold {
                    field,
                    reason: format!("eviction threshold {signal} must be positive: {text}"),
                });
            }
            ThresholdValue::Quantity(q.value())
        };
        out.push(Threshold {
            signal,
            value,
            grace_period: Duration::ZERO,
            min_reclaim: None,
        });
    }
    Ok(out)
}

/// Upstream's `parseGracePeriods`.
fn parse_grace_periods(
    statements: &BTreeMap<String, String>,
) -> Result<BTreeMap<Signal, Duration>> {
    const FIELD: &str = "evictionSoftGracePeriod";
    let mut out = BTreeMap::new();
    for (name, text) in statements {
        let signal = signal(FIELD, name)?;
        let period: GoDuration = text.parse().map_err(|e| Error::Threshold {
            field: FIELD,
            reason: format!("{signal}: {e}"),
        })?;
        let Some(period) = period.to_std() else {
            return Err(Error::Threshold {
                field: FIELD,
                reason: format!(
                    "invalid eviction grace period specified: {text}, must be a positive value"
                ),
            });
        };
        out.insert(signal, period);
    }
    Ok(out)
}

/// Upstream's `parseMinimumReclaims`.
fn parse_min_reclaims(
    statements: &BTreeMap<String, String>,
) -> Result<BTreeMap<Signal, ThresholdValue>> {
    const FIELD: &str = "evictionMinimumReclaim";
    let mut out = BTreeMap::new();
    for (name, text) in statements {
        let signal = signal(FIELD, name)?;
        let value = if text.ends_with('%') {
            let p = parse_percentage(FIELD, text)?;
            if p <= 0.0 {
                return Err(Error::Threshold {
                    field: FIELD,
                    reason: format!(
                        "eviction percentage minimum reclaim {signal} must be positive: {text}"
                    ),
                });
            }
            ThresholdValue::Percentage(p)
        } else {
            let q = parse_quantity(FIELD, text)?;
            if q.nano_value() < 0 {
                return Err(Error::Threshold {
                    field: FIELD,
                    reason: format!("negative eviction minimum reclaim specified for {signal}"),
                });
            }
            ThresholdValue::Quantity(q.value())
        };
        out.insert(signal, value);
    }
    Ok(out)
}

/// Upstream's `byEvictionPriority`: memory signals before all others, the rest in their
/// order.
pub(crate) fn sort_by_eviction_priority(thresholds: &mut [Threshold]) {
    thresholds.sort_by_key(|t| !t.signal.is_memory());
}

#[cfg(test)]
mod tests;
