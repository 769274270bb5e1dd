//! The node's resource pressure, as upstream's eviction manager reports it: which of the
//! `MemoryPressure`, `DiskPressure` and `PIDPressure` conditions hold now. The eviction
//! manager (`kubelet-eviction`) sets it; admission
//! ([`admit_under_pressure`](crate::admission::admit_under_pressure)) and the node status
//! (`kubelet-node-agent`) read it.

use std::fmt;
use std::sync::{Arc, RwLock};

/// A node condition the eviction manager drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PressureCondition {
    /// `MemoryPressure`: memory.available or allocatableMemory.available is low.
    Memory,
    /// `DiskPressure`: a filesystem's space or inodes are low.
    Disk,
    /// `PIDPressure`: pid.available is low.
    Pid,
}

impl PressureCondition {
    /// Every condition, in the order the Node lists them.
    pub const ALL: [Self; 3] = [Self::Memory, Self::Disk, Self::Pid];

    /// The Node condition's type, e.g. `MemoryPressure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "MemoryPressure",
            Self::Disk => "DiskPressure",
            Self::Pid => "PIDPressure",
        }
    }
}

impl fmt::Display for PressureCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pressure conditions that hold now, in the order they were first observed (the
/// order upstream's admission message lists them). Cheap to clone; every clone shares
/// the same state.
#[derive(Debug, Clone, Default)]
pub struct NodePressure {
    conditions: Arc<RwLock<Vec<PressureCondition>>>,
}

/// Two handles are equal when the same conditions hold on both now.
impl PartialEq for NodePressure {
    fn eq(&self, other: &Self) -> bool {
        self.conditions() == other.conditions()
    }
}

impl Eq for NodePressure {}

impl NodePressure {
    /// The conditions that hold now.
    pub fn conditions(&self) -> Vec<PressureCondition> {
        self.conditions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `condition` holds now.
    pub fn has(&self, condition: PressureCondition) -> bool {
        self.conditions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&condition)
    }

    /// Replaces the conditions (duplicates are dropped, the first kept).
    pub fn set(&self, conditions: &[PressureCondition]) {
        let mut unique: Vec<PressureCondition> = Vec::with_capacity(conditions.len());
        for c in conditions {
            if !unique.contains(c) {
                unique.push(*c);
            }
        }
        *self.conditions.write().unwrap_or_else(|p| p.into_inner()) = unique;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_conditions_and_duplicates_are_dropped() {
        let pressure = NodePressure::default();
        let reader = pressure.clone();
        assert!(reader.conditions().is_empty());
        pressure.set(&[
            PressureCondition::Disk,
            PressureCondition::Memory,
            PressureCondition::Disk,
        ]);
        assert_eq!(
            reader.conditions(),
            vec![PressureCondition::Disk, PressureCondition::Memory]
        );
        assert!(reader.has(PressureCondition::Memory));
        assert!(!reader.has(PressureCondition::Pid));
        assert_eq!(PressureCondition::Pid.to_string(), "PIDPressure");
    }
}
