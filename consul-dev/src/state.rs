//! The agent's in-memory state: one [`Store`] behind one lock, with a raft-like global
//! index and per-service indexes that wake blocking queries.
//!
//! Every write takes the next global index (as one raft apply would). Each service name
//! also remembers the index of the last write that touched its instances or their checks
//! (node checks included), and owns a `watch` channel carrying that index, so a blocking
//! query on `web` sleeps on `web`'s channel only and a change to `db` never wakes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::Config;
use crate::wire::{CheckDef, TaggedAddr, Weights};

/// `(node, id)`: services and checks are keyed by node first, so iteration order matches
/// Consul's (node name, then ID).
pub(crate) type Key = (String, String);

/// A check status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Status {
    Passing,
    Warning,
    Critical,
}

impl Status {
    /// Parses Consul's status words.
    pub(crate) fn parse(s: &str) -> Option<Status> {
        match s {
            "passing" => Some(Status::Passing),
            "warning" => Some(Status::Warning),
            "critical" => Some(Status::Critical),
            _ => None,
        }
    }

    /// The status word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

/// A catalog node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) datacenter: String,
    pub(crate) tagged_addresses: BTreeMap<String, String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// A service instance on a node.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) node: String,
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) address: String,
    pub(crate) tagged_addresses: BTreeMap<String, TaggedAddr>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) port: i64,
    pub(crate) socket_path: String,
    pub(crate) weights: Weights,
    pub(crate) enable_tag_override: bool,
    pub(crate) locality: Option<Value>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// What the agent runs for a check.
#[derive(Debug, Clone)]
pub(crate) enum Runner {
    /// Nothing runs: catalog checks, maintenance checks, unsupported types.
    None,
    Ttl(Duration),
    Http,
    Tcp,
    Grpc,
}

/// A health check.
#[derive(Debug)]
pub(crate) struct Check {
    pub(crate) node: String,
    pub(crate) check_id: String,
    pub(crate) name: String,
    pub(crate) status: Status,
    pub(crate) notes: String,
    pub(crate) output: String,
    pub(crate) service_id: String,
    pub(crate) service_name: String,
    pub(crate) service_tags: Vec<String>,
    pub(crate) kind: String,
    pub(crate) interval: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) def: Option<CheckDef>,
    pub(crate) runner: Runner,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
    /// Bumped whenever a runner is (re)started, so a stale runner's result is ignored.
    pub(crate) generation: u64,
    pub(crate) successes: i64,
    pub(crate) failures: i64,
    pub(crate) success_before_passing: i64,
    pub(crate) failures_before_warning: i64,
    pub(crate) failures_before_critical: i64,
    pub(crate) output_max_size: usize,
    pub(crate) deregister_after: Option<Duration>,
    pub(crate) critical_since: Option<Instant>,
    pub(crate) ttl_reset: Option<Arc<Notify>>,
}

impl Check {
    /// A check with neutral defaults.
    pub(crate) fn new(node: &str, check_id: &str, name: &str, status: Status) -> Check {
        Check {
            node: node.to_owned(),
            check_id: check_id.to_owned(),
            name: name.to_owned(),
            status,
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            service_name: String::new(),
            service_tags: Vec::new(),
            kind: String::new(),
            interval: None,
            timeout: None,
            def: None,
            runner: Runner::None,
            create_index: 0,
            modify_index: 0,
            generation: 0,
            successes: 0,
            failures: 0,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            output_max_size: crate::checks::DEFAULT_OUTPUT_MAX_SIZE,
            deregister_after: None,
            critical_since: None,
            ttl_reset: None,
        }
    }
}

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
        if check.status == status && check.output == output {
            return false;
        }
        if status == Status::Critical && check.status != Status::Critical {
            check.critical_since = Some(Instant::now());
        } else if status != Status::Critical {
            check.critical_since = None;
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

/// State shared by all handlers and runners.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    pub(crate) config: Config,
    /// Flips to true on shutdown; blocking queries return early when it does.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// One HTTP client per redirect policy, shared by all HTTP checks.
    pub(crate) http_follow: reqwest::Client,
    pub(crate) http_no_redirect: reqwest::Client,
    /// Shared answers for identical blocking reads.
    pub(crate) cache: crate::web::ResponseCache,
    /// How many blocking queries are waiting for a change (see `DevAgent::blocked_queries`).
    pub(crate) blocked: crate::web::BlockedCount,
}

impl Shared {
    /// Builds the initial state: the local node, its `serfHealth` check, the `consul` service.
    pub(crate) fn new(
        config: Config,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Shared, crate::Error> {
        let (global, _) = watch::channel(0);
        let mut store = Store {
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
        };
        let node_name = config.node_name.clone();
        let idx = store.bump();
        let mut tagged = BTreeMap::new();
        for k in ["lan", "lan_ipv4", "wan", "wan_ipv4"] {
            tagged.insert(k.to_owned(), "127.0.0.1".to_owned());
        }
        let mut meta = BTreeMap::new();
        meta.insert("consul-network-segment".to_owned(), String::new());
        meta.insert(
            "consul-version".to_owned(),
            crate::CONSUL_VERSION.to_owned(),
        );
        store.nodes.insert(
            node_name.clone(),
            Node {
                id: config.node_id.clone(),
                name: node_name.clone(),
                address: "127.0.0.1".to_owned(),
                datacenter: config.datacenter.clone(),
                tagged_addresses: tagged,
                meta,
                create_index: idx,
                modify_index: idx,
            },
        );
        let idx = store.bump();
        let mut serf = Check::new(
            &node_name,
            "serfHealth",
            "Serf Health Status",
            Status::Passing,
        );
        serf.output = "Agent alive and reachable".to_owned();
        serf.create_index = idx;
        serf.modify_index = idx;
        store.insert_check(serf);
        let idx = store.bump();
        store.insert_service(Service {
            node: node_name,
            kind: String::new(),
            id: "consul".to_owned(),
            name: "consul".to_owned(),
            tags: Vec::new(),
            address: String::new(),
            tagged_addresses: BTreeMap::new(),
            meta: BTreeMap::new(),
            port: 8300,
            socket_path: String::new(),
            weights: Weights::default(),
            enable_tag_override: false,
            locality: None,
            create_index: idx,
            modify_index: idx,
        });
        store.touch_service("consul", idx);
        let http_follow = reqwest::Client::builder()
            .user_agent("Consul Health Check")
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| crate::Error::Client(Box::new(e)))?;
        let http_no_redirect = reqwest::Client::builder()
            .user_agent("Consul Health Check")
            .no_proxy()
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::Error::Client(Box::new(e)))?;
        Ok(Shared {
            store: Mutex::new(store),
            config,
            shutdown,
            http_follow,
            http_no_redirect,
            cache: crate::web::ResponseCache::default(),
            blocked: crate::web::BlockedCount::default(),
        })
    }

    /// Locks the store. A poisoned lock is recovered: the store is only mutated in short
    /// sections that leave it consistent.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The local node's name.
    pub(crate) fn node(&self) -> &str {
        &self.config.node_name
    }

    /// Aborts every check runner (shutdown).
    pub(crate) fn stop_all_runners(&self) {
        let mut store = self.lock();
        for (_, h) in store.runners.drain() {
            h.abort();
        }
    }
}
