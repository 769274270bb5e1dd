//! What the eviction signals read now, from the stats summary, as upstream's
//! `makeSignalObservations`.

use std::collections::BTreeMap;

use kubelet_stats::Summary;
use kubelet_stats::Time;
use kubelet_stats::summary::FsStats;

use crate::threshold::{Resource, Signal};

/// One signal's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// How much is available (bytes, inodes, processes).
    pub available: i64,
    /// Of how much.
    pub capacity: i64,
    /// When it was measured.
    pub time: Time,
}

/// Every signal's reading that the summary had.
pub type Observations = BTreeMap<Signal, Observation>;

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The signals' readings in `summary`: `memory.available` (the node's memory available:
/// capacity less the root cgroup's working set), `allocatableMemory.available` (the
/// `pods` system container), `nodefs.*` (the root directory's filesystem),
/// `imagefs.*` and `containerfs.*` (the runtime's filesystems), `pid.available`.
pub fn observe(summary: &Summary) -> Observations {
    let mut out = Observations::new();
    let node = &summary.node;
    if let Some(memory) = &node.memory
        && let (Some(available), Some(working_set)) =
            (memory.available_bytes, memory.working_set_bytes)
    {
        out.insert(
            Signal::MemoryAvailable,
            Observation {
                available: signed(available),
                capacity: signed(available.saturating_add(working_set)),
                time: memory.time,
            },
        );
    }
    if let Some(pods) = node.system_containers.iter().find(|c| c.name == "pods")
        && let Some(memory) = &pods.memory
        && let (Some(available), Some(working_set)) =
            (memory.available_bytes, memory.working_set_bytes)
    {
        out.insert(
            Signal::AllocatableMemoryAvailable,
            Observation {
                available: signed(available),
                capacity: signed(available.saturating_add(working_set)),
                time: memory.time,
            },
        );
    }
    let mut fs = |fs: Option<&FsStats>, bytes: Signal, inodes: Signal| {
        let Some(fs) = fs else { return };
        if let (Some(available), Some(capacity)) = (fs.available_bytes, fs.capacity_bytes) {
            out.insert(
                bytes,
                Observation {
                    available: signed(available),
                    capacity: signed(capacity),
                    time: fs.time,
                },
            );
        }
        if let (Some(free), Some(total)) = (fs.inodes_free, fs.inodes) {
            out.insert(
                inodes,
                Observation {
                    available: signed(free),
                    capacity: signed(total),
                    time: fs.time,
                },
            );
        }
    };
    fs(
        node.fs.as_ref(),
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
    );
    if let Some(runtime) = &node.runtime {
        fs(
            runtime.image_fs.as_ref(),
            Signal::ImageFsAvailable,
            Signal::ImageFsInodesFree,
        );
        // One filesystem for writable layers and the node: containerfs reads as nodefs
        // when the runtime does not report its own.
        fs(
            runtime.container_fs.as_ref().or(node.fs.as_ref()),
            Signal::ContainerFsAvailable,
            Signal::ContainerFsInodesFree,
        );
    }
    if let Some(rlimit) = &node.rlimit
        && let (Some(max), Some(running)) = (rlimit.max_pid, rlimit.num_of_running_processes)
    {
        out.insert(
            Signal::PidAvailable,
            Observation {
                available: max - running,
                capacity: max,
                time: rlimit.time,
            },
        );
    }
    out
}

/// A quantity as upstream's `resource.Quantity.String()` prints it in the resource's
/// format: bytes with the largest binary suffix that divides them (`100Mi`, `1536`),
/// counts with the largest decimal one (`5k`, `1500`).
pub fn format_quantity(value: i64, resource: Resource) -> String {
    let (base, suffixes): (i64, &[&str]) = if resource.is_bytes() {
        (1024, &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
    } else {
        (1000, &["", "k", "M", "G", "T", "P", "E"])
    };
    // Upstream prints binary amounts between -1024 and 1024 in decimal form.
    if value == 0 || (resource.is_bytes() && value.abs() < 1024) {
        return value.to_string();
    }
    let mut number = value;
    let mut index = 0;
    while index + 1 < suffixes.len() && number % base == 0 {
        number /= base;
        index += 1;
    }
    format!("{number}{}", suffixes[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_as_upstream() {
        assert_eq!(format_quantity(104_857_600, Resource::Memory), "100Mi");
        assert_eq!(format_quantity(1536, Resource::Memory), "1536");
        assert_eq!(format_quantity(512, Resource::Memory), "512");
        assert_eq!(
            format_quantity(3 * 1024 * 1024 * 1024, Resource::EphemeralStorage),
            "3Gi"
        );
        assert_eq!(format_quantity(5000, Resource::Inodes), "5k");
        assert_eq!(format_quantity(1500, Resource::Pids), "1500");
        assert_eq!(format_quantity(0, Resource::Memory), "0");
        assert_eq!(format_quantity(-2048, Resource::Memory), "-2Ki");
    }
}
