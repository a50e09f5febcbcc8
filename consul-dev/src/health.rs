//! `/v1/health/*`: service entries with their checks, as the catalog sees them; and the
//! selections (`tag`, `node-meta`) the catalog's reads share. Uses the store, the blocking
//! engine, ACLs, filters, the wire shapes and the HTTP layer.

use axum::Router;
use axum::extract::Path;
use axum::response::Response;

use crate::acl::Authz;
use crate::blocking::WatchKey;
use crate::error::{HttpError, Result};
use crate::filter::{Filter, passes};
use crate::query::Query;
use crate::state::{Check, Service, Status, Store};
use crate::web::{self, AppState, Read, get};
use crate::wire::{CheckOut, NodeOut, NodeServiceOut, ServiceEntryOut, parse_go_bool};

/// The health endpoints.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/health/service/", get(missing_service))
        .route("/v1/health/checks/", get(missing_service))
        .route("/v1/health/node/", get(missing_node))
        .route("/v1/health/state/", get(missing_state))
        .route("/v1/health/connect/", get(missing_service))
        .route("/v1/health/ingress/", get(missing_service))
        .route("/v1/health/service/{*name}", get(service))
        .route("/v1/health/connect/{*name}", get(connect))
        .route("/v1/health/ingress/{*name}", get(connect))
        .route("/v1/health/checks/{*name}", get(checks_of_service))
        .route("/v1/health/state/{*state}", get(checks_in_state))
        .route("/v1/health/node/{*node}", get(checks_of_node))
}

/// `GET /v1/health/service/` and friends without a name.
pub(crate) async fn missing_service() -> HttpError {
    HttpError::bad_request("Missing service name")
}

/// `GET /v1/health/state/` without a state.
async fn missing_state() -> HttpError {
    HttpError::bad_request("Missing check state")
}

/// `GET /v1/health/node/` and friends without a name.
pub(crate) async fn missing_node() -> HttpError {
    HttpError::bad_request("Missing node name")
}

/// `node-meta=k:v` filters (all must match).
pub(crate) fn node_meta(q: &Query) -> Vec<(String, String)> {
    q.all("node-meta")
        .map(|kv| match kv.split_once(':') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

/// Whether the node of `s` carries all `meta` pairs.
pub(crate) fn node_matches(store: &Store, node: &str, meta: &[(String, String)]) -> bool {
    if meta.is_empty() {
        return true;
    }
    let Some(n) = store.nodes.get(node) else {
        return false;
    };
    meta.iter()
        .all(|(k, v)| n.meta.get(k).is_some_and(|have| have == v))
}

/// Whether `s` has every tag in `tags`, ignoring case.
pub(crate) fn has_tags(s: &Service, tags: &[String]) -> bool {
    tags.iter()
        .all(|t| s.tags.iter().any(|have| have.eq_ignore_ascii_case(t)))
}

/// The entry for one instance: node, service, node checks then service checks.
fn entry(store: &Store, s: &Service) -> Option<ServiceEntryOut> {
    let node = store.nodes.get(&s.node)?;
    let checks = store
        .node_checks(&s.node)
        .chain(store.service_checks(&s.node, &s.id))
        .map(CheckOut::from_check)
        .collect();
    Some(ServiceEntryOut {
        node: NodeOut::from_node(node),
        service: NodeServiceOut::from_service(s),
        checks,
    })
}

fn parse_passing(q: &Query) -> Result<bool> {
    match q.get("passing") {
        None => Ok(false),
        Some("") => Ok(true),
        Some(v) => {
            parse_go_bool(v).ok_or_else(|| HttpError::bad_request("Invalid value for ?passing"))
        }
    }
}

async fn service(Path(name): Path<String>, read: Read) -> Result<Response> {
    let query = &read.ctx.query;
    let passing = parse_passing(query)?;
    read.forward()?;
    let filter = read.ctx.filter()?;
    let authz = read.ctx.authz()?;
    let tags: Vec<String> = query.all("tag").map(str::to_owned).collect();
    let meta = node_meta(query);
    let signature = format!(
        "health/service\0{name}\0{tags:?}\0{passing}\0{meta:?}\0{:?}\0{}\0{}",
        query.get("filter"),
        query.has("pretty"),
        authz.can_read()
    );
    let cache = &read.ctx.state.cache;
    let (index, body) = web::block(&read, WatchKey::Service(name.clone()), |store| {
        let index = store.service_index(&name);
        let body = cache.get_or(&signature, index, || {
            let entries: Vec<ServiceEntryOut> = if authz.can_read() {
                store
                    .instances(&name)
                    .filter(|s| has_tags(s, &tags) && node_matches(store, &s.node, &meta))
                    .filter_map(|s| entry(store, s))
                    .filter(|e| {
                        !passing
                            || e.checks
                                .iter()
                                .all(|c| c.status == Status::Passing.as_str())
                    })
                    .filter(|e| passes(filter.as_ref(), e))
                    .collect()
            } else {
                Vec::new()
            };
            web::encode(query, &entries).map_err(|e| e.to_string())
        });
        (index, body)
    })
    .await;
    Ok(read.answer_encoded_streamable(index, body))
}

/// `GET /v1/health/connect/:name`, `/v1/health/ingress/:name` and
/// `/v1/catalog/connect/:name`: always an empty list, whose blocking and headers follow the
/// service's index like any other read.
pub(crate) async fn connect(Path(name): Path<String>, read: Read) -> Result<Response> {
    read.forward()?;
    read.ctx.authz()?;
    // The dev agent has no service mesh: there are never connect-capable instances, and an
    // empty list is `[]` whichever endpoint's element type it stands for.
    let (index, entries) = web::block(&read, WatchKey::Service(name.clone()), |store| {
        (store.service_index(&name), Vec::<ServiceEntryOut>::new())
    })
    .await;
    Ok(read.answer(index, &entries))
}

/// The checks `keep` selects that pass the filter; none without read permission.
fn checks_where(
    store: &Store,
    authz: Authz,
    filter: Option<&Filter>,
    keep: impl Fn(&Check) -> bool,
) -> Vec<CheckOut> {
    if !authz.can_read() {
        return Vec::new();
    }
    store
        .checks
        .values()
        .filter(|c| keep(c))
        .map(CheckOut::from_check)
        .filter(|c| passes(filter, c))
        .collect()
}

async fn checks_of_service(Path(name): Path<String>, read: Read) -> Result<Response> {
    read.forward()?;
    let filter = read.ctx.filter()?;
    let authz = read.ctx.authz()?;
    let meta = node_meta(&read.ctx.query);
    let (index, checks) = web::block(&read, WatchKey::Service(name.clone()), |store| {
        let checks = checks_where(store, authz, filter.as_ref(), |c| {
            c.service_name == name && node_matches(store, &c.node, &meta)
        });
        (store.service_index(&name), checks)
    })
    .await;
    Ok(read.answer(index, &checks))
}

/// `GET /v1/health/state/:state`. Consul does not validate the state: it looks it up in
/// the status index, where an unknown one matches nothing (200 `[]`).
async fn checks_in_state(Path(wanted): Path<String>, read: Read) -> Result<Response> {
    read.forward()?;
    let filter = read.ctx.filter()?;
    let authz = read.ctx.authz()?;
    let meta = node_meta(&read.ctx.query);
    let (index, checks) = web::block(&read, WatchKey::Global, |store| {
        let checks = checks_where(store, authz, filter.as_ref(), |c| {
            (wanted == "any" || c.status.as_str() == wanted) && node_matches(store, &c.node, &meta)
        });
        (store.index, checks)
    })
    .await;
    Ok(read.answer(index, &checks))
}

async fn checks_of_node(Path(node): Path<String>, read: Read) -> Result<Response> {
    read.forward()?;
    let filter = read.ctx.filter()?;
    let authz = read.ctx.authz()?;
    let (index, checks) = web::block(&read, WatchKey::Global, |store| {
        let checks = checks_where(store, authz, filter.as_ref(), |c| c.node == node);
        (store.index, checks)
    })
    .await;
    Ok(read.answer(index, &checks))
}
