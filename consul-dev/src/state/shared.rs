//! [`Shared`]: the store behind its one lock, with the configuration it was seeded from and
//! the shutdown signal that ends every wait on it. Uses the model, the store and `config`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use super::model::{Check, Node, Service, Status, Weights};
use super::store::Store;
use crate::config::{CONSUL_VERSION, Config};

/// State shared by all handlers and runners.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    pub(crate) config: Config,
    /// Flips to true on shutdown; blocking queries return early when it does.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Builds the initial state: the local node, its `serfHealth` check, the `consul` service.
    pub(crate) fn new(config: Config, shutdown: watch::Receiver<bool>) -> Shared {
        let mut store = Store::new();
        let node_name = config.node_name.clone();
        let idx = store.bump();
        let mut tagged = BTreeMap::new();
        for k in ["lan", "lan_ipv4", "wan", "wan_ipv4"] {
            tagged.insert(k.to_owned(), "127.0.0.1".to_owned());
        }
        let mut meta = BTreeMap::new();
        meta.insert("consul-network-segment".to_owned(), String::new());
        meta.insert("consul-version".to_owned(), CONSUL_VERSION.to_owned());
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
        Shared {
            store: Mutex::new(store),
            config,
            shutdown,
        }
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
