//! Node allocatable, as upstream's container manager computes it
//! (`node_container_manager_linux.go`): capacity less `kubeReserved`, `systemReserved`
//! and, for what the Node reports and admission uses, the hard eviction thresholds; the
//! `/kubepods` cgroup is sized to capacity less the two reservations when
//! `enforceNodeAllocatable` has `pods`.

use std::collections::BTreeMap;

use kubelet_core::{NodeResources, Quantity};

/// Parses `kubeReserved` or `systemReserved` as upstream's `parseResourceList`: only
/// `cpu`, `memory`, `ephemeral-storage` and `pid`, never negative.
pub fn parse_reserved(values: &BTreeMap<String, String>) -> Result<NodeResources, String> {
    let mut reserved = NodeResources::default();
    for (name, text) in values {
        let quantity = |name: &str| -> Result<Quantity, String> {
            let q = Quantity::parse(text).map_err(|e| {
                format!("failed to parse quantity {text:?} for {name:?} resource: {e}")
            })?;
            if q.nano_value() < 0 {
                return Err(format!(
                    "resource quantity for {name:?} cannot be negative: {text}"
                ));
            }
            Ok(q)
        };
        let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
        match name.as_str() {
            "cpu" => reserved.milli_cpu = unsigned(quantity(name)?.milli_value()),
            "memory" => reserved.memory = unsigned(quantity(name)?.value()),
            "ephemeral-storage" => {
                reserved.ephemeral_storage = unsigned(quantity(name)?.value());
            }
            "pid" => reserved.pids = unsigned(quantity(name)?.value()),
            other => return Err(format!("cannot reserve {other:?} resource")),
        }
    }
    Ok(reserved)
}

/// Upstream's `validateNodeAllocatable`: every reservation within `capacity` (pids
/// unchecked: their capacity is not known here). One line per resource over.
pub fn reservation_over_capacity(
    reserved: &NodeResources,
    capacity: &NodeResources,
) -> Vec<String> {
    let over = |name: &str, reserved: u64, capacity: u64| {
        (reserved > capacity).then(|| {
            format!(
                "Resource {name:?} has a reservation of {reserved} but capacity of \
                 {capacity}. Expected capacity >= reservation."
            )
        })
    };
    [
        over("cpu", reserved.milli_cpu, capacity.milli_cpu),
        over("memory", reserved.memory, capacity.memory),
        over(
            "ephemeral-storage",
            reserved.ephemeral_storage,
            capacity.ephemeral_storage,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reservations_parse_as_upstream() {
        let r = parse_reserved(&map(&[
            ("cpu", "250m"),
            ("memory", "1Gi"),
            ("ephemeral-storage", "2Gi"),
            ("pid", "1000"),
        ]))
        .expect("parses");
        assert_eq!(
            r,
            NodeResources {
                milli_cpu: 250,
                memory: 1 << 30,
                ephemeral_storage: 2 << 30,
                pids: 1000
            }
        );
        assert_eq!(
            parse_reserved(&map(&[("nvidia.com/gpu", "1")])),
            Err("cannot reserve \"nvidia.com/gpu\" resource".to_owned())
        );
        assert_eq!(
            parse_reserved(&map(&[("memory", "-1Gi")])),
            Err("resource quantity for \"memory\" cannot be negative: -1Gi".to_owned())
        );
        assert!(
            parse_reserved(&map(&[("cpu", "two")]))
                .is_err_and(|e| e.starts_with("failed to parse quantity \"two\" for \"cpu\""))
        );
    }

    #[test]
    fn allocatable_is_capacity_less_reservations_and_over_reserving_is_named() {
        let capacity = NodeResources {
            milli_cpu: 2000,
            memory: 4 << 30,
            ephemeral_storage: 10 << 30,
            pids: 0,
        };
        let reserved = NodeResources {
            milli_cpu: 100,
            memory: 1 << 30,
            ..NodeResources::default()
        }
        .plus(NodeResources {
            memory: 1 << 30,
            ephemeral_storage: 1 << 30,
            ..NodeResources::default()
        });
        let allocatable = capacity.less(reserved);
        assert_eq!(allocatable.milli_cpu, 1900);
        assert_eq!(allocatable.memory, 2 << 30);
        assert_eq!(allocatable.ephemeral_storage, 9 << 30);
        assert!(reservation_over_capacity(&reserved, &capacity).is_empty());
        let too_much = NodeResources {
            milli_cpu: 3000,
            ..NodeResources::default()
        };
        assert_eq!(
            reservation_over_capacity(&too_much, &capacity),
            vec![
                "Resource \"cpu\" has a reservation of 3000 but capacity of 2000. Expected capacity >= reservation."
                    .to_owned()
            ]
        );
    }
}
