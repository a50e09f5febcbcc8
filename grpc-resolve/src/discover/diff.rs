//! The pure part of discovery: what changed between the endpoints we have and a snapshot.
//!
//! May use: nothing else of the crate.

use std::collections::{HashMap, HashSet};

use discovery_core::ServiceInstance;

/// What to do to a set of endpoints to make it equal a snapshot.
///
/// Apply the removals first, then the inserts, then the updates: an instance whose address
/// changed appears in both `remove` and `insert` (a connection is bound to its address, so
/// it is a new endpoint that happens to reuse the id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Changes {
    /// New instances, or instances whose address changed.
    pub insert: Vec<ServiceInstance>,
    /// Known instances whose other fields changed (weights, status, tags, metadata): the
    /// connection stays, the balancer's view changes.
    pub update: Vec<ServiceInstance>,
    /// Ids of instances no longer in the snapshot, or whose address changed.
    pub remove: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.insert.is_empty() && self.update.is_empty() && self.remove.is_empty()
    }

    /// Applies the changes to a map keyed by instance id, as the balancer's pool does.
    pub fn apply_to(&self, current: &mut HashMap<String, ServiceInstance>) {
        for id in &self.remove {
            current.remove(id);
        }
        for instance in self.insert.iter().chain(&self.update) {
            current.insert(instance.id.clone(), instance.clone());
        }
    }
}

/// Computes the changes that turn `current` (keyed by instance id) into `snapshot`.
///
/// Instances are keyed by id. A snapshot that lists an id twice is malformed: the first
/// entry wins and the others are logged and skipped, so one bad entry cannot flap an
/// endpoint between two addresses. (Consul only keeps ids unique per node: two nodes that
/// register the same id for one service lose all but one of them here, so registrars
/// should make ids globally unique, as `grpc-register` does with host and port.)
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use discovery_core::ServiceInstance;
/// use grpc_resolve::discover::diff;
///
/// let a = ServiceInstance::new("a", "adder", "10.0.0.1", 80);
/// let b = ServiceInstance::new("b", "adder", "10.0.0.2", 80);
/// let current = HashMap::from([("a".to_owned(), a.clone())]);
/// let changes = diff(&current, &[b.clone()]);
/// assert_eq!(changes.insert, [b]);
/// assert_eq!(changes.remove, ["a"]);
/// ```
pub fn diff(current: &HashMap<String, ServiceInstance>, snapshot: &[ServiceInstance]) -> Changes {
    let mut changes = Changes::default();
    let mut seen = HashSet::with_capacity(snapshot.len());
    for instance in snapshot {
        if !seen.insert(instance.id.as_str()) {
            tracing::warn!(id = %instance.id, "snapshot lists an instance id twice; skipping the repeat");
            continue;
        }
        match current.get(&instance.id) {
            None => changes.insert.push(instance.clone()),
            Some(known) if known.host != instance.host || known.port != instance.port => {
                changes.remove.push(instance.id.clone());
                changes.insert.push(instance.clone());
            }
            Some(known) if known != instance => changes.update.push(instance.clone()),
            Some(_) => {}
        }
    }
    for id in current.keys() {
        if !seen.contains(id.as_str()) {
            changes.remove.push(id.clone());
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use discovery_core::{HealthStatus, Weights};
    use proptest::prelude::*;

    fn inst(id: &str, port: u16) -> ServiceInstance {
        ServiceInstance::new(id, "adder", "127.0.0.1", port)
    }

    fn map(instances: &[ServiceInstance]) -> HashMap<String, ServiceInstance> {
        instances
            .iter()
            .map(|i| (i.id.clone(), i.clone()))
            .collect()
    }

    #[test]
    fn unchanged_snapshot_is_empty() {
        let set = [inst("a", 1), inst("b", 2)];
        assert!(diff(&map(&set), &set).is_empty(), "same set, no changes");
    }

    #[test]
    fn address_change_is_remove_then_insert() {
        let changes = diff(&map(&[inst("a", 1)]), &[inst("a", 2)]);
        assert_eq!(changes.remove, ["a"], "the old endpoint goes");
        assert_eq!(changes.insert, [inst("a", 2)], "the new address comes");
        assert!(changes.update.is_empty(), "not an in-place update");
    }

    #[test]
    fn weight_or_status_change_is_update() {
        let heavier = inst("a", 1).weights(Weights {
            passing: 3,
            warning: 1,
        });
        let warning = inst("b", 2).status(HealthStatus::Warning);
        let changes = diff(
            &map(&[inst("a", 1), inst("b", 2)]),
            &[heavier.clone(), warning.clone()],
        );
        assert_eq!(changes.update.len(), 2, "both change in place: {changes:?}");
        assert!(changes.insert.is_empty() && changes.remove.is_empty());
    }

    #[test]
    fn duplicate_ids_keep_the_first() {
        let changes = diff(&HashMap::new(), &[inst("a", 1), inst("a", 2)]);
        assert_eq!(changes.insert, [inst("a", 1)], "first entry wins");
    }

    fn arb_instance() -> impl Strategy<Value = ServiceInstance> {
        (0u8..8, 1u16..4, 0u32..3, any::<bool>()).prop_map(|(id, port, weight, warn)| {
            let status = if warn {
                HealthStatus::Warning
            } else {
                HealthStatus::Passing
            };
            inst(&format!("i{id}"), port)
                .weights(Weights {
                    passing: weight,
                    warning: 1,
                })
                .status(status)
        })
    }

    fn dedup(snapshot: &[ServiceInstance]) -> HashMap<String, ServiceInstance> {
        let mut out = HashMap::new();
        for i in snapshot {
            out.entry(i.id.clone()).or_insert_with(|| i.clone());
        }
        out
    }

    proptest! {
        #[test]
        fn applying_the_diff_yields_the_snapshot(
            before in proptest::collection::vec(arb_instance(), 0..8),
            after in proptest::collection::vec(arb_instance(), 0..8),
        ) {
            let mut current = dedup(&before);
            let changes = diff(&current, &after);
            changes.apply_to(&mut current);
            prop_assert_eq!(&current, &dedup(&after));

            // Nothing is touched without reason.
            let again = diff(&current, &after);
            prop_assert!(again.is_empty(), "a second diff is empty: {:?}", again);
            for id in &changes.remove {
                let still = dedup(&after).get(id).cloned();
                let old = dedup(&before).get(id).cloned();
                prop_assert!(
                    still.is_none() || still.map(|s| (s.host, s.port)) != old.map(|o| (o.host, o.port)),
                    "removed {} only when it left or moved", id
                );
            }
        }
    }
}
