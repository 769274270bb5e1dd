//! Amounts of the node's resources.

/// CPU, memory, ephemeral storage and process IDs of the node: its capacity, what
/// `kubeReserved`, `systemReserved` and the hard eviction thresholds set aside out of it,
/// or what is left for pods (allocatable). One type for all three, so that capacity less
/// reservation is allocatable wherever it is computed or read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeResources {
    /// CPU in millicores.
    pub milli_cpu: u64,
    /// Memory in bytes.
    pub memory: u64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: u64,
    /// Process IDs.
    pub pids: u64,
}

impl NodeResources {
    /// Both amounts together (saturating).
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory: self.memory.saturating_add(other.memory),
            ephemeral_storage: self
                .ephemeral_storage
                .saturating_add(other.ephemeral_storage),
            pids: self.pids.saturating_add(other.pids),
        }
    }

    /// What is left of `self` once `taken` is set aside, never below zero (allocatable
    /// is capacity less the reservation).
    #[must_use]
    pub fn less(self, taken: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.saturating_sub(taken.milli_cpu),
            memory: self.memory.saturating_sub(taken.memory),
            ephemeral_storage: self
                .ephemeral_storage
                .saturating_sub(taken.ephemeral_storage),
            pids: self.pids.saturating_sub(taken.pids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_is_capacity_less_the_reservation_never_negative() {
        let capacity = NodeResources {
            milli_cpu: 2000,
            memory: 8 << 30,
            ephemeral_storage: 100 << 30,
            pids: 4096,
        };
        let reserved = NodeResources {
            milli_cpu: 500,
            memory: 1 << 30,
            ..NodeResources::default()
        }
        .plus(NodeResources {
            memory: 100 << 20,
            ephemeral_storage: 200 << 30,
            ..NodeResources::default()
        });
        assert_eq!(
            capacity.less(reserved),
            NodeResources {
                milli_cpu: 1500,
                memory: (8 << 30) - (1 << 30) - (100 << 20),
                ephemeral_storage: 0,
                pids: 4096,
            }
        );
        let full = NodeResources {
            memory: u64::MAX,
            ..NodeResources::default()
        };
        assert_eq!(full.plus(full).memory, u64::MAX);
    }
}
