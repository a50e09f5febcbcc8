//! The [`Store`]: everything the agent knows, its indexes (by service name, by owner of a
//! check) and its wake-ups (a `watch` channel per service name and one for every write).
//! Uses only the model.
//!
//! Every write takes the next global index (as one raft apply would). Each service name
//! also remembers the index of the last write that touched its instances or their checks
//! (node checks included), and owns a `watch` channel carrying that index, so a blocking
//! query on `web` sleeps on `web`'s channel only and a change to `db` never wakes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::model::{Check, Key, Node, Service, Status};

/// Everything the agent knows.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) index: u64,
    pub(crate) nodes: BTreeMap<String, Node>,
    pub(crate) services: BTreeMap<Key, Service>,
    pub(crate) checks: BTreeMap<Key, Check>,
    service_index: HashMap<String, u64>,
    /// Service name → instance keys, so a query on one service never scans all services.
    by_name: HashMap<String, BTreeSet<Key>>,
    /// (node, service ID or "") → check IDs, so an instance's checks are found directly.
    checks_by_owner: HashMap<Key, BTreeSet<String>>,
    watchers: HashMap<String, watch::Sender<u64>>,
    global: watch::Sender<u64>,
    pub(crate) runners: HashMap<Key, AbortHandle>,
    next_generation: u64,
}

impl Store {
    /// An empty store at index 0.
    pub(crate) fn new() -> Store {
        let (global, _) = watch::channel(0);
        Store {
            index: 0,
            nodes: BTreeMap::new(),
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            service_index: HashMap::new(),
            by_name: HashMap::new(),
            checks_by_owner: HashMap::new(),
            watchers: HashMap::new(),
            global,
            runners: HashMap::new(),
            next_generation: 0,
        }
    }

    /// The next global index, announced to catalog-wide watchers.
    pub(crate) fn bump(&mut self) -> u64 {
        self.index += 1;
        self.global.send_replace(self.index);
        self.index
    }

    /// Records that service `name` changed at `idx` and wakes its watchers.
    pub(crate) fn touch_service(&mut self, name: &str, idx: u64) {
        self.service_index.insert(name.to_owned(), idx);
        if let Some(tx) = self.watchers.get(name) {
            if tx.receiver_count() == 0 {
                self.watchers.remove(name);
            } else {
                tx.send_replace(idx);
            }
        }
    }

    /// Records that a node-level fact changed: every service on the node moves.
    pub(crate) fn touch_node(&mut self, node: &str, idx: u64) {
        let names: Vec<String> = self
            .services
            .values()
            .filter(|s| s.node == node)
            .map(|s| s.name.clone())
            .collect();
        for name in names {
            self.touch_service(&name, idx);
        }
    }

    /// The index a query on service `name` reports. A name never seen reports the global
    /// index, as Consul falls back to the services table index.
    pub(crate) fn service_index(&self, name: &str) -> u64 {
        self.service_index
            .get(name)
            .copied()
            .unwrap_or(self.index)
            .max(1)
    }

    /// A receiver woken when service `name` changes.
    pub(crate) fn subscribe_service(&mut self, name: &str) -> watch::Receiver<u64> {
        self.prune_watchers();
        let idx = self.service_index(name);
        self.watchers
            .entry(name.to_owned())
            .or_insert_with(|| watch::channel(idx).0)
            .subscribe()
    }

    /// A receiver woken on every write.
    pub(crate) fn subscribe_global(&self) -> watch::Receiver<u64> {
        self.global.subscribe()
    }

    /// A fresh runner generation.
    pub(crate) fn next_generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Stops the runner of check `key`, if any.
    pub(crate) fn stop_runner(&mut self, key: &Key) {
        if let Some(h) = self.runners.remove(key) {
            h.abort();
        }
    }

    /// Inserts or replaces a service, keeping the name index.
    pub(crate) fn insert_service(&mut self, svc: Service) {
        let key: Key = (svc.node.clone(), svc.id.clone());
        if let Some(old) = self.services.get(&key)
            && old.name != svc.name
        {
            let old_name = old.name.clone();
            self.unindex_service(&old_name, &key);
        }
        self.by_name
            .entry(svc.name.clone())
            .or_default()
            .insert(key.clone());
        self.services.insert(key, svc);
    }

    fn unindex_service(&mut self, name: &str, key: &Key) {
        if let Some(set) = self.by_name.get_mut(name) {
            set.remove(key);
            if set.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    /// Inserts or replaces a check, keeping the owner index.
    pub(crate) fn insert_check(&mut self, check: Check) {
        let key: Key = (check.node.clone(), check.check_id.clone());
        if let Some(old) = self.checks.get(&key) {
            let owner: Key = (old.node.clone(), old.service_id.clone());
            self.unindex_check(&owner, &key.1);
        }
        self.checks_by_owner
            .entry((check.node.clone(), check.service_id.clone()))
            .or_default()
            .insert(check.check_id.clone());
        self.checks.insert(key, check);
    }

    fn unindex_check(&mut self, owner: &Key, id: &str) {
        if let Some(set) = self.checks_by_owner.get_mut(owner) {
            set.remove(id);
            if set.is_empty() {
                self.checks_by_owner.remove(owner);
            }
        }
    }

    /// Removes a check (stopping its runner).
    pub(crate) fn remove_check(&mut self, key: &Key) -> Option<Check> {
        self.stop_runner(key);
        let check = self.checks.remove(key)?;
        self.unindex_check(&(check.node.clone(), check.service_id.clone()), &key.1);
        Some(check)
    }

    /// Removes a service and all its checks; wakes watchers. Returns false if unknown.
    pub(crate) fn remove_service(&mut self, node: &str, id: &str) -> bool {
        let key = (node.to_owned(), id.to_owned());
        let Some(svc) = self.services.remove(&key) else {
            return false;
        };
        self.unindex_service(&svc.name, &key);
        let check_keys: Vec<Key> = self
            .checks_by_owner
            .get(&key)
            .map(|ids| ids.iter().map(|c| (node.to_owned(), c.clone())).collect())
            .unwrap_or_default();
        for k in &check_keys {
            self.remove_check(k);
        }
        let idx = self.bump();
        self.touch_service(&svc.name, idx);
        true
    }

    /// Sets a check's status and output. Only a real change takes an index, as Consul's
    /// agent only syncs changed checks; returns whether anything changed.
    pub(crate) fn set_check_status(&mut self, key: &Key, status: Status, output: String) -> bool {
        let Some(check) = self.checks.get_mut(key) else {
            return false;
        };
        // Consul's `UpdateCheck`: the critical clock starts at the first critical result while
        // it is stopped — whatever the status was, so a check registered critical is on it
        // from its first failing run — and stops at any other result. It runs before the
        // unchanged-result shortcut, so a repeated identical failure still starts it.
        if status == Status::Critical {
            check.critical_since.get_or_insert_with(Instant::now);
        } else {
            check.critical_since = None;
        }
        if check.status == status && check.output == output {
            return false;
        }
        check.status = status;
        check.output = output;
        let service_name = check.service_name.clone();
        let node = check.node.clone();
        let idx = self.bump();
        if let Some(check) = self.checks.get_mut(key) {
            check.modify_index = idx;
        }
        if service_name.is_empty() {
            self.touch_node(&node, idx);
        } else {
            self.touch_service(&service_name, idx);
        }
        true
    }

    /// All instances of service `name`, in (node, ID) order.
    pub(crate) fn instances<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Service> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|k| self.services.get(k))
    }

    /// The checks of a node that belong to no service, by check ID.
    pub(crate) fn node_checks<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Check> + 'a {
        self.service_checks(node, "")
    }

    /// The checks of one service instance, by check ID.
    pub(crate) fn service_checks<'a>(
        &'a self,
        node: &str,
        id: &str,
    ) -> impl Iterator<Item = &'a Check> + 'a {
        let node_owned = node.to_owned();
        self.checks_by_owner
            .get(&(node.to_owned(), id.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(move |c| self.checks.get(&(node_owned.clone(), c.clone())))
    }

    /// Forgets watch channels nobody listens to (names queried once and never again).
    fn prune_watchers(&mut self) {
        if self.watchers.len() > 1024 {
            self.watchers.retain(|_, tx| tx.receiver_count() > 0);
        }
    }
}
