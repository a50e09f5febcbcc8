//! `/v1/catalog/*`: nodes and services of the cluster, including external nodes
//! registered through the catalog (their checks are stored, never run).
//!
//! Reads and writes the store; the request and response shapes are `wire`'s. Uses the
//! blocking engine, filters, `health`'s selections and the HTTP layer besides.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::extract::Path;
use axum::response::Response;

use crate::blocking::WatchKey;
use crate::error::{HttpError, Result};
use crate::filter::passes;
use crate::health::{has_tags, node_matches, node_meta};
use crate::state::{Check, Key, Node, Status, Store};
use crate::web::{self, AppState, Ctx, Read, Write, get, json, put};
use crate::wire::{
    CatalogCheck, CatalogDeregistration, CatalogRegistration, NodeOut, NodeServiceOut,
    NodeServicesOut, ServiceNodeOut,
};

/// The catalog endpoints.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/catalog/register", put(register))
        .route("/v1/catalog/deregister", put(deregister))
        .route("/v1/catalog/datacenters", get(datacenters))
        .route("/v1/catalog/nodes", get(nodes))
        .route("/v1/catalog/node/", get(crate::health::missing_node))
        .route("/v1/catalog/service/", get(crate::health::missing_service))
        .route("/v1/catalog/connect/", get(crate::health::missing_service))
        .route("/v1/catalog/node/{*node}", get(node))
        .route("/v1/catalog/services", get(services))
        .route("/v1/catalog/service/{*name}", get(service))
        .route("/v1/catalog/connect/{*name}", get(crate::health::connect))
}

async fn datacenters(ctx: Ctx) -> Response {
    json(&ctx.query, &[ctx.state.config().datacenter.as_str()])
}

async fn nodes(read: Read) -> Result<Response> {
    read.forward()?;
    let filter = read.ctx.filter()?;
    let authz = read.ctx.authz()?;
    let meta = node_meta(&read.ctx.query);
    let (index, out) = web::block(&read, WatchKey::Global, |store| {
        let list: Vec<NodeOut> = if authz.can_read() {
            store
                .nodes
                .values()
                .filter(|n| node_matches(store, &n.name, &meta))
                .map(NodeOut::from_node)
                .filter(|n| passes(filter.as_ref(), n))
                .collect()
        } else {
            Vec::new()
        };
        (store.index, list)
    })
    .await;
    Ok(read.answer(index, &out))
}

async fn node(Path(name): Path<String>, read: Read) -> Result<Response> {
    read.forward()?;
    let authz = read.ctx.authz()?;
    let (index, out) = web::block(&read, WatchKey::Global, |store| {
        let out = store
            .nodes
            .get(&name)
            .filter(|_| authz.can_read())
            .map(|n| NodeServicesOut {
                node: NodeOut::from_node(n),
                services: store
                    .services
                    .values()
                    .filter(|s| s.node == n.name)
                    .map(|s| (s.id.clone(), NodeServiceOut::from_service(s)))
                    .collect(),
            });
        (store.index, out)
    })
    .await;
    Ok(read.answer(index, &out))
}

async fn services(read: Read) -> Result<Response> {
    read.forward()?;
    let filter = read.ctx.filter()?;
    let authz = read.ctx.authz()?;
    let meta = node_meta(&read.ctx.query);
    let (index, out) = web::block(&read, WatchKey::Global, |store| {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if authz.can_read() {
            for s in store.services.values() {
                if !node_matches(store, &s.node, &meta) {
                    continue;
                }
                if filter.is_some() {
                    let Some(n) = store.nodes.get(&s.node) else {
                        continue;
                    };
                    if !passes(filter.as_ref(), &ServiceNodeOut::from_service(n, s)) {
                        continue;
                    }
                }
                out.entry(s.name.clone())
                    .or_default()
                    .extend(s.tags.iter().cloned());
            }
        }
        (store.index, out)
    })
    .await;
    Ok(read.answer(index, &out))
}

async fn service(Path(name): Path<String>, read: Read) -> Result<Response> {
    read.forward()?;
    let filter = read.ctx.filter()?;
    let authz = read.ctx.authz()?;
    let tags: Vec<String> = read.ctx.query.all("tag").map(str::to_owned).collect();
    let meta = node_meta(&read.ctx.query);
    let (index, out) = web::block(&read, WatchKey::Service(name.clone()), |store| {
        let list: Vec<ServiceNodeOut> = if authz.can_read() {
            store
                .instances(&name)
                .filter(|s| has_tags(s, &tags) && node_matches(store, &s.node, &meta))
                .filter_map(|s| {
                    store
                        .nodes
                        .get(&s.node)
                        .map(|n| ServiceNodeOut::from_service(n, s))
                })
                .filter(|e| passes(filter.as_ref(), e))
                .collect()
        } else {
            Vec::new()
        };
        (store.service_index(&name), list)
    })
    .await;
    Ok(read.answer(index, &out))
}

// === Writes ===

/// `PUT /v1/catalog/register`, in the order of Consul's handler and `Catalog.Register`
/// RPC: decode (400), then everything the RPC refuses (500): a peer name, a datacenter that
/// is not this one (the request would be forwarded there), the token (403), the node, its
/// ID and address, the service; then the ACL decision (403) and the store.
async fn register(Write { ctx, body: value }: Write) -> Result<Response> {
    let state = &ctx.state;
    let mut reg = CatalogRegistration::decode(&value).map_err(HttpError::decode)?;
    if reg.names_a_peer {
        return Err(HttpError::internal(
            "cannot register requests with PeerName in them",
        ));
    }
    require_local_dc(state, &reg.datacenter)?;
    let authz = ctx.authz()?;
    if reg.node.is_empty() {
        return Err(HttpError::internal("Must provide node"));
    }
    if !reg.id.is_empty()
        && let Err(e) = parse_uuid(&reg.id)
    {
        return Err(HttpError::internal(format!("Bad node ID: {e}")));
    }
    if reg.address.is_empty() && !reg.skip_node_update {
        return Err(HttpError::internal(
            "Must provide address if SkipNodeUpdate is not set",
        ));
    }
    if let Some(s) = &mut reg.service {
        if s.id.is_empty() {
            s.id = s.name.clone();
        }
        if !s.id.is_empty() && s.name.is_empty() {
            return Err(HttpError::internal(
                "Must provide service name (Service.Service) when service ID is provided",
            ));
        }
        if is_any_address(&s.address) {
            return Err(HttpError::internal("Invalid service address"));
        }
    }
    for c in &reg.checks {
        if !c.def.status.is_empty() && Status::parse(&c.def.status).is_none() {
            return Err(HttpError::bad_request(
                "Status for checks must 'passing', 'warning', 'critical'",
            ));
        }
    }
    authz.require("node:write", &reg.node)?;
    if let Some(s) = &reg.service {
        authz.require("service:write", &s.name)?;
    }
    let mut store = state.lock();
    apply_registration(state, &mut store, reg)?;
    Ok(json(&ctx.query, &true))
}

/// A request for another datacenter would be forwarded there, and this agent knows no
/// other: Consul's RPC forwarding answers 500 `No path to datacenter`, and nothing changes
/// here. Empty means the agent's own. Compared verbatim, as Consul compares.
fn require_local_dc(state: &AppState, dc: &str) -> Result<()> {
    if dc.is_empty() || dc == state.config().datacenter {
        Ok(())
    } else {
        Err(HttpError::internal("No path to datacenter"))
    }
}

/// Consul's `ipaddr.IsAny`: an unspecified address, which no client can reach.
fn is_any_address(address: &str) -> bool {
    matches!(address, "0.0.0.0" | "::" | "[::]")
}

/// go-uuid's `ParseUUID`, for its error texts (Consul's `Bad node ID: …`).
fn parse_uuid(id: &str) -> std::result::Result<(), String> {
    const DASHES: [usize; 4] = [8, 13, 18, 23];
    let b = id.as_bytes();
    if b.len() != 36 {
        return Err("uuid string is wrong length".to_owned());
    }
    if DASHES.iter().any(|&i| b[i] != b'-') {
        return Err("uuid is improperly formatted".to_owned());
    }
    let hex = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !DASHES.contains(i))
        .map(|(_, byte)| *byte);
    match hex.into_iter().find(|byte| !byte.is_ascii_hexdigit()) {
        Some(bad) => Err(format!("encoding/hex: invalid byte: {}", go_sharp_u(bad))),
        None => Ok(()),
    }
}

/// Go's `%#U` of a byte taken as a rune: `U+0067 'g'`, without the quoted character when
/// Go does not consider it printable.
fn go_sharp_u(byte: u8) -> String {
    let printable = matches!(byte, 0x20..=0x7e | 0xa1..=0xff) && byte != 0xad;
    if printable {
        format!("U+{:04X} '{}'", byte, char::from(byte))
    } else {
        format!("U+{byte:04X}")
    }
}

/// Applies a validated registration, as Consul's state store does: a new node is created
/// from the request; an existing one is replaced by the request's fields (omitted tagged
/// addresses or meta are cleared, not kept), unless `SkipNodeUpdate` is set, which leaves
/// it exactly as it is.
fn apply_registration(state: &AppState, store: &mut Store, reg: CatalogRegistration) -> Result<()> {
    let node_name = reg.node.clone();
    for c in &reg.checks {
        if !c.node.is_empty() && c.node != node_name {
            let id = if c.def.check_id.is_empty() {
                &c.def.name
            } else {
                &c.def.check_id
            };
            return Err(HttpError::internal(format!(
                "Node '{}' for check '{id}' doesn't match register request node '{node_name}'",
                c.node
            )));
        }
    }
    let idx = store.bump();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let existing = store.nodes.get(&node_name);
    let node_changes = match existing {
        None => true,
        Some(_) if reg.skip_node_update => false,
        Some(n) => {
            n.address != reg.address
                || (!reg.id.is_empty() && n.id != reg.id)
                || n.tagged_addresses != reg.tagged_addresses
                || n.meta != reg.node_meta
        }
    };
    if node_changes {
        let create_index = existing.map_or(idx, |n| n.create_index);
        let id = match existing {
            Some(n) if reg.id.is_empty() => n.id.clone(),
            _ => reg.id.clone(),
        };
        store.nodes.insert(
            node_name.clone(),
            Node {
                id,
                name: node_name.clone(),
                address: reg.address.clone(),
                datacenter: state.config().datacenter.clone(),
                tagged_addresses: reg.tagged_addresses.clone(),
                meta: reg.node_meta.clone(),
                create_index,
                modify_index: idx,
            },
        );
    }
    if let Some(mut s) = reg.service {
        let key: Key = (node_name.clone(), s.id.clone());
        s.create_index = store.services.get(&key).map_or(idx, |p| p.create_index);
        s.modify_index = idx;
        if let Some(p) = store.services.get(&key) {
            touched.insert(p.name.clone());
        }
        touched.insert(s.name.clone());
        store.insert_service(s);
    }
    for CatalogCheck {
        def, output, kind, ..
    } in reg.checks
    {
        let service = if def.service_id.is_empty() {
            None
        } else {
            match store
                .services
                .get(&(node_name.clone(), def.service_id.clone()))
            {
                Some(s) => Some(s.clone()),
                None => {
                    return Err(HttpError::internal(format!(
                        "Unknown service ID '{}' for check ID '{}'",
                        def.service_id, def.check_id
                    )));
                }
            }
        };
        let cid = if def.check_id.is_empty() {
            def.name.clone()
        } else {
            def.check_id.clone()
        };
        let key: Key = (node_name.clone(), cid.clone());
        let status = Status::parse(&def.status).unwrap_or(Status::Critical);
        let mut c = Check::new(&node_name, &cid, &def.name, status);
        c.notes = def.notes.clone();
        c.output = output;
        c.kind = kind;
        c.create_index = store.checks.get(&key).map_or(idx, |p| p.create_index);
        c.modify_index = idx;
        if let Some(s) = &service {
            c.service_id = s.id.clone();
            c.service_name = s.name.clone();
            c.service_tags = s.tags.clone();
            touched.insert(s.name.clone());
        }
        store.stop_runner(&key);
        store.insert_check(c);
    }
    // Node fields (address, meta, tagged addresses) are part of every entry on the node.
    if node_changes {
        store.touch_node(&node_name, idx);
    }
    for name in touched {
        store.touch_service(&name, idx);
    }
    Ok(())
}

async fn deregister(Write { ctx, body: value }: Write) -> Result<Response> {
    let state = &ctx.state;
    let CatalogDeregistration {
        datacenter,
        node,
        service_id,
        check_id,
    } = CatalogDeregistration::decode(&value).map_err(HttpError::decode)?;
    require_local_dc(state, &datacenter)?;
    let authz = ctx.authz()?;
    if node.is_empty() {
        return Err(HttpError::internal("Must provide node"));
    }
    authz.require("node:write", &node)?;
    let mut store = state.lock();
    if !service_id.is_empty() {
        store.remove_service(&node, &service_id);
    } else if !check_id.is_empty() {
        let key: Key = (node.clone(), check_id);
        if let Some(c) = store.remove_check(&key) {
            let idx = store.bump();
            if c.service_name.is_empty() {
                store.touch_node(&node, idx);
            } else {
                store.touch_service(&c.service_name, idx);
            }
        }
    } else if store.nodes.contains_key(&node) {
        let ids: Vec<String> = store
            .services
            .values()
            .filter(|s| s.node == node)
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            store.remove_service(&node, &id);
        }
        let keys: Vec<Key> = store
            .checks
            .keys()
            .filter(|k| k.0 == node)
            .cloned()
            .collect();
        for k in keys {
            store.remove_check(&k);
        }
        store.nodes.remove(&node);
        store.bump();
    }
    Ok(json(&ctx.query, &true))
}
