//! `/v1/agent/service/*` and `/v1/agent/services`: registering and deregistering local
//! services (their checks through `check`), the list, and one service with its content
//! hash (hash blocking). Uses `check` and `maintenance` beside it, the store, the blocking
//! engine, the wire shapes and the HTTP layer.

use std::collections::HashSet;
use std::net::IpAddr;

use axum::extract::Path;
use axum::response::Response;
use http::HeaderValue;
use sha2::{Digest, Sha256};

use super::check::{build_check, scripts_disabled, validate_checks};
use crate::blocking::{self, WatchKey};
use crate::error::{HttpError, Result};
use crate::state::{Key, Service, Store, TaggedAddr};
use crate::web::{AppState, Ctx, Write, json as json_resp, json_by_id, ok_empty};
use crate::wire::{AgentServiceOut, ServiceDef, validate_meta};

// === Registration ===

pub(super) async fn register_service(Write { ctx, body: value }: Write) -> Result<Response> {
    let state = &ctx.state;
    let def = ServiceDef::decode(&value).map_err(HttpError::decode)?;
    if def.name.is_empty() {
        return Err(HttpError::bad_request("Missing service name"));
    }
    if matches!(def.address.as_str(), "0.0.0.0" | "::" | "[::]") {
        return Err(HttpError::bad_request("Invalid service address"));
    }
    let authz = ctx.authz()?;
    if let Some(w) = def.weights {
        if w.passing < 1 {
            return Err(HttpError::bad_request(
                "Invalid Weights: Passing must be greater than 0",
            ));
        }
        if w.warning < 0 {
            return Err(HttpError::bad_request(
                "Invalid Weights: Warning must be greater or equal than 0",
            ));
        }
        if w.passing > 65535 || w.warning > 65535 {
            return Err(HttpError::bad_request(
                "Invalid Weights: DNS Weight must be between 0 and 65535",
            ));
        }
    }
    validate_meta(&def.meta)
        .map_err(|r| HttpError::bad_request(format!("Invalid Service Meta: {r}")))?;
    validate_checks(&def.checks)?;
    authz.require("service:write", &def.name)?;
    validate_tagged_addresses(&def)?;
    scripts_disabled(&def.checks)?;
    if !def.kind.is_empty() || def.sidecar {
        // Deliberately unsupported: say so instead of registering something half-working.
        return Err(HttpError::bad_request(format!(
            "consul-dev does not support service mesh registrations (Kind {:?}, \
             Connect.SidecarService {})",
            def.kind, def.sidecar
        )));
    }
    let replace = ctx
        .query
        .get("replace-existing-checks")
        .is_some_and(|v| v.is_empty() || v == "true");
    let mut store = state.lock();
    add_service(state, &mut store, def, replace);
    Ok(ok_empty())
}

/// Consul's `validateService` (in `AddService`, so a 500): the IPv4 tagged addresses must
/// be IPv4 and `lan_ipv6` IPv6. Consul checks `lan_ipv6` twice and `wan_ipv6` never, so
/// neither does this.
fn validate_tagged_addresses(def: &ServiceDef) -> Result<()> {
    for (key, v4) in [("lan_ipv4", true), ("wan_ipv4", true), ("lan_ipv6", false)] {
        let Some(tagged) = def.tagged_addresses.get(key) else {
            continue;
        };
        let ok = match tagged.address.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => v4,
            // Go's `To4` also takes an IPv4-mapped IPv6 address as IPv4.
            Ok(IpAddr::V6(a)) => !v4 || a.to_ipv4_mapped().is_some(),
            Err(_) => false,
        };
        if !ok {
            let family = if v4 { "ipv4" } else { "ipv6" };
            return Err(HttpError::internal(format!(
                "Service tagged address {key:?} must be a valid {family} address"
            )));
        }
    }
    Ok(())
}

/// Adds or replaces a local service and its checks, all at one index.
fn add_service(state: &AppState, store: &mut Store, def: ServiceDef, replace: bool) {
    let node = state.node().to_owned();
    let id = if def.id.is_empty() {
        def.name.clone()
    } else {
        def.id.clone()
    };
    let key: Key = (node.clone(), id.clone());
    let idx = store.bump();
    let mut tagged = def.tagged_addresses.clone();
    match def.address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => {
            for k in ["lan_ipv4", "wan_ipv4"] {
                tagged.entry(k.to_owned()).or_insert_with(|| TaggedAddr {
                    address: def.address.clone(),
                    port: def.port,
                });
            }
        }
        Ok(IpAddr::V6(_)) => {
            for k in ["lan_ipv6", "wan_ipv6"] {
                tagged.entry(k.to_owned()).or_insert_with(|| TaggedAddr {
                    address: def.address.clone(),
                    port: def.port,
                });
            }
        }
        Err(_) => {}
    }
    let previous = store.services.get(&key).cloned();
    let svc = Service {
        node: node.clone(),
        kind: def.kind.clone(),
        id: id.clone(),
        name: def.name.clone(),
        tags: def.tags.clone(),
        address: def.address.clone(),
        tagged_addresses: tagged,
        meta: def.meta.clone(),
        port: def.port,
        socket_path: def.socket_path.clone(),
        weights: def.weights.unwrap_or_default(),
        enable_tag_override: def.enable_tag_override,
        locality: def.locality.clone(),
        create_index: previous.as_ref().map_or(idx, |p| p.create_index),
        modify_index: idx,
    };
    store.insert_service(svc.clone());

    let many = def.checks.len() > 1;
    let mut new_ids = HashSet::new();
    let mut started = Vec::new();
    for (i, cdef) in def.checks.iter().enumerate() {
        let cid = if !cdef.check_id.is_empty() {
            cdef.check_id.clone()
        } else if many {
            format!("service:{id}:{}", i + 1)
        } else {
            format!("service:{id}")
        };
        let ckey: Key = (node.clone(), cid.clone());
        let existing = store.checks.get(&ckey);
        let check = build_check(state, &node, Some(&svc), &cid, cdef, existing, idx);
        store.stop_runner(&ckey);
        store.insert_check(check);
        new_ids.insert(cid);
        started.push(ckey);
    }
    // Checks not in the new definition: refresh their service tags, or drop them on request.
    let others: Vec<Key> = store
        .service_checks(&node, &id)
        .filter(|c| !new_ids.contains(&c.check_id))
        .map(|c| (c.node.clone(), c.check_id.clone()))
        .collect();
    for k in others {
        // Consul's `ChecksForService` includes the maintenance check, so replacing removes
        // it too.
        if replace {
            store.remove_check(&k);
        } else if let Some(c) = store.checks.get_mut(&k) {
            c.service_tags = svc.tags.clone();
            c.service_name = svc.name.clone();
        }
    }
    for ckey in &started {
        state.checks.start(store, ckey);
    }
    if let Some(p) = previous
        && p.name != svc.name
    {
        store.touch_service(&p.name, idx);
    }
    store.touch_service(&svc.name, idx);
    tracing::info!(service = %id, "registered service");
}

pub(super) async fn deregister_service(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let authz = ctx.authz()?;
    let mut store = state.lock();
    let key: Key = (state.node().to_owned(), id.clone());
    // `consul` is the servers' service, not in the agent's local state: unknown here.
    let Some(name) = store
        .services
        .get(&key)
        .filter(|s| s.id != "consul")
        .map(|s| s.name.clone())
    else {
        return Err(unknown_service(&id));
    };
    authz.require("service:write", &name)?;
    store.remove_service(&key.0, &key.1);
    tracing::info!(service = %id, "deregistered service");
    Ok(ok_empty())
}

fn unknown_service(id: &str) -> HttpError {
    HttpError::not_found(format!(
        "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."
    ))
}

// === Reads ===

pub(super) async fn services(ctx: Ctx) -> Result<Response> {
    let node = ctx.state.node();
    let dc = &ctx.state.config().datacenter;
    json_by_id(&ctx, |store| {
        store
            .services
            .values()
            .filter(|s| s.node == node && s.id != "consul")
            .map(|s| (s.id.clone(), AgentServiceOut::from_service(s, dc)))
            .collect()
    })
}

/// The content hash of a rendered service, stable over identical content.
fn content_hash(out: &AgentServiceOut) -> String {
    let bytes = serde_json::to_vec(out).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    hex::encode(&digest[..8])
}

pub(super) async fn service_by_id(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let b = blocking::params(&ctx.query)?;
    let authz = ctx.authz()?;
    let key: Key = (state.node().to_owned(), id.clone());
    let name = {
        let store = state.lock();
        match store.services.get(&key) {
            Some(s) if s.id != "consul" => s.name.clone(),
            _ => return Err(HttpError::not_found(format!("unknown service ID: {id}"))),
        }
    };
    authz.require("service:read", &name)?;
    let hash = ctx.query.get("hash").map(str::to_owned);
    let dc = state.config().datacenter.clone();
    let result = blocking::block_hash(
        &state.shared,
        &state.blocked,
        hash.as_deref(),
        b.wait,
        WatchKey::Service(name),
        |store| {
            let s = store.services.get(&key)?;
            let out = AgentServiceOut::from_service(s, &dc);
            Some((content_hash(&out), out))
        },
    )
    .await;
    let Some((hash, mut out)) = result else {
        return Err(HttpError::not_found(format!("unknown service ID: {id}")));
    };
    out.content_hash = Some(hash.clone());
    let mut resp = json_resp(&ctx.query, &out);
    if let Ok(v) = HeaderValue::from_str(&hash) {
        resp.headers_mut().insert("x-consul-contenthash", v);
    }
    Ok(resp)
}
