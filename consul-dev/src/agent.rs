//! `/v1/agent/*`: the local agent's services and checks.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::checks;
use crate::filter::passes;
use crate::state::{Check, Key, Runner, Service, Status, Store};
use crate::web::{
    self, AppState, Ctx, HttpError, Result, WatchKey, get, json as json_resp, ok_empty, put, text,
};
use crate::wire::{
    AgentServiceOut, CheckDef, CheckOut, CheckUpdate, ServiceDef, TaggedAddr, nanos_to_duration,
    parse_body, validate_meta,
};

/// The agent endpoints.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/agent/service/register", put(register_service))
        .route(
            "/v1/agent/service/deregister/{*id}",
            put(deregister_service),
        )
        .route(
            "/v1/agent/service/maintenance/{*id}",
            put(service_maintenance),
        )
        .route("/v1/agent/service/{*id}", get(service_by_id))
        .route("/v1/agent/services", get(services))
        .route("/v1/agent/checks", get(checks_list))
        .route("/v1/agent/check/register", put(register_check))
        .route("/v1/agent/check/deregister/{*id}", put(deregister_check))
        .route("/v1/agent/check/pass/{*id}", put(check_pass))
        .route("/v1/agent/check/warn/{*id}", put(check_warn))
        .route("/v1/agent/check/fail/{*id}", put(check_fail))
        .route("/v1/agent/check/update/{*id}", put(check_update))
        .route("/v1/agent/maintenance", put(node_maintenance))
        .route("/v1/agent/health/service/name/{*name}", get(health_by_name))
        .route("/v1/agent/health/service/id/{*id}", get(health_by_id))
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/members", get(members))
}

const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";
const NODE_MAINT: &str = "_node_maintenance";

// === Registration ===

/// Builds the stored check for a definition. `existing` keeps status and output across
/// re-registration, as Consul's agent does.
fn build_check(
    state: &AppState,
    node: &str,
    svc: Option<&Service>,
    check_id: &str,
    def: &CheckDef,
    existing: Option<&Check>,
    idx: u64,
) -> Check {
    let name = if !def.name.is_empty() {
        def.name.clone()
    } else if let Some(s) = svc {
        format!("Service '{}' check", s.name)
    } else {
        check_id.to_owned()
    };
    let status = Status::parse(&def.status).unwrap_or(Status::Critical);
    let mut c = Check::new(node, check_id, &name, status);
    c.notes = def.notes.clone();
    if let Some(s) = svc {
        c.service_id = s.id.clone();
        c.service_name = s.name.clone();
        c.service_tags = s.tags.clone();
    }
    let kind = def.type_name();
    c.kind = kind.to_owned();
    c.runner = match kind {
        "ttl" => Runner::Ttl(nanos_to_duration(def.ttl)),
        "http" => Runner::Http,
        "tcp" => Runner::Tcp,
        "grpc" => Runner::Grpc,
        // UDP, H2PING, alias, docker and OS-service checks are accepted but not run.
        _ => Runner::None,
    };
    if matches!(c.runner, Runner::Http | Runner::Tcp | Runner::Grpc) {
        c.interval = Some(checks::effective_interval(def));
        let t = nanos_to_duration(def.timeout);
        c.timeout = (!t.is_zero()).then_some(t);
    }
    c.success_before_passing = def.success_before_passing;
    c.failures_before_critical = def.failures_before_critical;
    // An unset warning threshold follows the critical one, so failures go straight to critical.
    c.failures_before_warning = if def.failures_before_warning == 0 {
        def.failures_before_critical
    } else {
        def.failures_before_warning
    };
    c.output_max_size = usize::try_from(def.output_max_size)
        .ok()
        .filter(|m| *m > 0)
        .unwrap_or(checks::DEFAULT_OUTPUT_MAX_SIZE);
    c.deregister_after = checks::deregister_after(
        nanos_to_duration(def.deregister_critical_service_after),
        &state.config,
    );
    c.def = Some(def.clone());
    c.create_index = idx;
    c.modify_index = idx;
    if let Some(old) = existing {
        c.status = old.status;
        c.output = old.output.clone();
        c.create_index = old.create_index;
        c.modify_index = old.modify_index;
        c.critical_since = old.critical_since;
    }
    c
}

fn validate_checks(defs: &[CheckDef]) -> Result<()> {
    for def in defs {
        def.validate()
            .map_err(|r| HttpError::bad_request(format!("Invalid check: {r}")))?;
    }
    for def in defs {
        if !def.status.is_empty() && Status::parse(&def.status).is_none() {
            return Err(HttpError::bad_request(
                "Status for checks must 'passing', 'warning', 'critical'",
            ));
        }
    }
    Ok(())
}

fn scripts_disabled(defs: &[CheckDef]) -> Result<()> {
    if defs.iter().any(|d| !d.script_args.is_empty()) {
        return Err(HttpError::internal(
            "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or \
             'enable_local_script_checks' to true",
        ));
    }
    Ok(())
}

async fn register_service(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let ctx = Ctx::new(&state, raw.as_deref(), &headers)?;
    let value = parse_body(&body).map_err(HttpError::decode)?;
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
                "Invalid Weights: cannot be greater than 65535",
            ));
        }
    }
    validate_meta(&def.meta)
        .map_err(|r| HttpError::bad_request(format!("Invalid Service Meta: {r}")))?;
    validate_checks(&def.checks)?;
    authz.require("service:write", &def.name)?;
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
    add_service(&state, &mut store, def, replace);
    Ok(ok_empty())
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
        if replace && !k.1.starts_with(SERVICE_MAINT_PREFIX) {
            store.remove_check(&k);
        } else if let Some(c) = store.checks.get_mut(&k) {
            c.service_tags = svc.tags.clone();
            c.service_name = svc.name.clone();
        }
    }
    for ckey in &started {
        checks::start(state, store, ckey);
    }
    if let Some(p) = previous
        && p.name != svc.name
    {
        store.touch_service(&p.name, idx);
    }
    store.touch_service(&svc.name, idx);
    tracing::info!(service = %id, "registered service");
}

async fn deregister_service(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let authz = ctx.authz()?;
    let mut store = state.lock();
    let key: Key = (state.node().to_owned(), id.clone());
    let Some(name) = store.services.get(&key).map(|s| s.name.clone()) else {
        return Err(unknown_service(&id));
    };
    if id == "consul" {
        return Err(HttpError::internal(
            "Deregistering the consul service is not allowed",
        ));
    }
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

fn unknown_check(id: &str) -> HttpError {
    HttpError::not_found(format!(
        "Unknown check ID \"{id}\". Ensure that the check ID is passed, not the check name."
    ))
}

// === Check updates ===

async fn check_pass(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    ttl_note(&ctx, &id, Status::Passing)
}

async fn check_warn(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    ttl_note(&ctx, &id, Status::Warning)
}

async fn check_fail(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    ttl_note(&ctx, &id, Status::Critical)
}

fn ttl_note(ctx: &Ctx, id: &str, status: Status) -> Result<Response> {
    let note = ctx.query.get("note").unwrap_or("").to_owned();
    update_ttl(ctx, id, status, note)?;
    Ok(ok_empty())
}

async fn check_update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let ctx = Ctx::new(&state, raw.as_deref(), &headers)?;
    let value = parse_body(&body).map_err(HttpError::decode)?;
    let upd = CheckUpdate::decode(&value).map_err(HttpError::decode)?;
    let Some(status) = Status::parse(&upd.status) else {
        return Err(HttpError::bad_request(format!(
            "Invalid check status: '{}'",
            upd.status
        )));
    };
    update_ttl(&ctx, &id, status, upd.output)?;
    Ok(ok_empty())
}

fn update_ttl(ctx: &Ctx, id: &str, status: Status, output: String) -> Result<()> {
    let authz = ctx.authz()?;
    let state = &ctx.state;
    let mut store = state.lock();
    let key: Key = (state.node().to_owned(), id.to_owned());
    let Some(check) = store.checks.get(&key) else {
        return Err(unknown_check(id));
    };
    let resource = if check.service_name.is_empty() {
        state.node().to_owned()
    } else {
        check.service_name.clone()
    };
    let perm = if check.service_name.is_empty() {
        "node:write"
    } else {
        "service:write"
    };
    authz.require(perm, &resource)?;
    let Runner::Ttl(_) = check.runner else {
        return Err(HttpError::internal(format!(
            "CheckID \"{id}\" does not have associated TTL"
        )));
    };
    let reset = check.ttl_reset.clone();
    checks::apply_result(&mut store, &key, None, status, output);
    if let Some(r) = reset {
        r.notify_one();
    }
    Ok(())
}

// === Reads ===

async fn services(ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let filter = ctx.filter()?;
    let authz = ctx.authz()?;
    let store = state.lock();
    let mut out = BTreeMap::new();
    if authz.can_read() {
        for s in store.services.values() {
            if s.node != state.node() || s.id == "consul" {
                continue;
            }
            let rendered = AgentServiceOut::from_service(s, &state.config.datacenter);
            if !passes(filter.as_ref(), &rendered) {
                continue;
            }
            out.insert(s.id.clone(), rendered);
        }
    }
    Ok(json_resp(&ctx.query, &out))
}

async fn checks_list(ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let filter = ctx.filter()?;
    let authz = ctx.authz()?;
    let store = state.lock();
    let mut out = BTreeMap::new();
    if authz.can_read() {
        for c in store.checks.values() {
            if c.node != state.node() || c.check_id == "serfHealth" {
                continue;
            }
            let rendered = CheckOut::from_check(c);
            if !passes(filter.as_ref(), &rendered) {
                continue;
            }
            out.insert(c.check_id.clone(), rendered);
        }
    }
    Ok(json_resp(&ctx.query, &out))
}

/// The content hash of a rendered service, stable over identical content.
fn content_hash(out: &AgentServiceOut) -> String {
    let bytes = serde_json::to_vec(out).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    hex::encode(&digest[..8])
}

async fn service_by_id(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let b = web::blocking(&ctx.query)?;
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
    let dc = state.config.datacenter.clone();
    let result = web::block_hash(
        state,
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

// === Local health ===

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentHealthOut {
    aggregated_status: &'static str,
    service: AgentServiceOut,
    checks: Vec<CheckOut>,
}

/// The aggregate status of one local instance.
fn aggregate(store: &Store, node: &str, s: &Service) -> &'static str {
    let maint = store
        .checks
        .contains_key(&(node.to_owned(), NODE_MAINT.to_owned()))
        || store
            .checks
            .contains_key(&(node.to_owned(), format!("{SERVICE_MAINT_PREFIX}{}", s.id)));
    if maint {
        return "maintenance";
    }
    store
        .service_checks(node, &s.id)
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Passing)
        .as_str()
}

fn status_rank(s: &str) -> u8 {
    match s {
        "passing" => 0,
        "warning" => 1,
        "critical" => 2,
        _ => 3,
    }
}

/// The health of one local instance.
fn health_of(state: &AppState, store: &Store, s: &Service) -> AgentHealthOut {
    let node = state.node();
    AgentHealthOut {
        aggregated_status: aggregate(store, node, s),
        service: AgentServiceOut::from_service(s, &state.config.datacenter),
        checks: store
            .service_checks(node, &s.id)
            .map(CheckOut::from_check)
            .collect(),
    }
}

/// `summary` as text with `?format=text`, else `body` as JSON; either with `code`.
fn text_or_json(
    ctx: &Ctx,
    code: StatusCode,
    summary: impl Into<String>,
    body: &impl Serialize,
) -> Response {
    if ctx.query.get("format") == Some("text") {
        text(code, summary)
    } else {
        let mut r = json_resp(&ctx.query, body);
        *r.status_mut() = code;
        r
    }
}

/// A local health answer: `status` chooses the code (200, 429 or 503) and is the reason.
fn health_answer(ctx: &Ctx, status: &'static str, body: &impl Serialize) -> Response {
    let code = match status {
        "passing" => StatusCode::OK,
        "warning" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut resp = text_or_json(ctx, code, status, body);
    resp.headers_mut()
        .insert("x-consul-reason", HeaderValue::from_static(status));
    resp
}

async fn health_by_name(Path(name): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let authz = ctx.authz()?;
    authz.require("service:read", &name)?;
    let entries: Vec<AgentHealthOut> = {
        let store = state.lock();
        store
            .instances(&name)
            .filter(|s| s.node == state.node() && s.id != "consul")
            .map(|s| health_of(state, &store, s))
            .collect()
    };
    if entries.is_empty() {
        return Ok(text_or_json(
            &ctx,
            StatusCode::NOT_FOUND,
            format!("ServiceName {name} Not Found"),
            &Vec::<Value>::new(),
        ));
    }
    let worst = entries
        .iter()
        .map(|e| e.aggregated_status)
        .max_by_key(|s| status_rank(s))
        .unwrap_or("passing");
    Ok(health_answer(&ctx, worst, &entries))
}

async fn health_by_id(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let authz = ctx.authz()?;
    let entry = {
        let store = state.lock();
        store
            .services
            .get(&(state.node().to_owned(), id.clone()))
            .filter(|s| s.id != "consul")
            .map(|s| health_of(state, &store, s))
    };
    let Some(entry) = entry else {
        return Ok(text_or_json(
            &ctx,
            StatusCode::NOT_FOUND,
            format!("ServiceId {id} not found"),
            &Value::Null,
        ));
    };
    authz.require("service:read", &entry.service.service)?;
    // By ID the body is one object, not an array.
    Ok(health_answer(&ctx, entry.aggregated_status, &entry))
}

// === Maintenance ===

fn parse_enable(ctx: &Ctx) -> Result<bool> {
    let Some(raw) = ctx.query.get("enable") else {
        return Err(HttpError::bad_request("Missing value for enable"));
    };
    web::parse_go_bool(raw)
        .ok_or_else(|| HttpError::bad_request(format!("Invalid value for enable: \"{raw}\"")))
}

async fn service_maintenance(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let enable = parse_enable(&ctx)?;
    let authz = ctx.authz()?;
    let reason = ctx.query.get("reason").unwrap_or("").to_owned();
    let node = state.node().to_owned();
    let mut store = state.lock();
    let Some(svc) = store.services.get(&(node.clone(), id.clone())).cloned() else {
        return Err(HttpError::not_found(format!("Unknown service ID \"{id}\"")));
    };
    authz.require("service:write", &svc.name)?;
    let ckey: Key = (node.clone(), format!("{SERVICE_MAINT_PREFIX}{id}"));
    if enable {
        if !store.checks.contains_key(&ckey) {
            let idx = store.bump();
            let mut c = Check::new(&node, &ckey.1, "Service Maintenance Mode", Status::Critical);
            c.notes = if reason.is_empty() {
                "Maintenance mode is enabled for this service, but no reason was provided. This \
                 is a default message."
                    .to_owned()
            } else {
                reason
            };
            c.service_id = svc.id.clone();
            c.service_name = svc.name.clone();
            c.service_tags = svc.tags.clone();
            c.kind = "maintenance".to_owned();
            c.create_index = idx;
            c.modify_index = idx;
            store.insert_check(c);
            store.touch_service(&svc.name, idx);
        }
    } else if store.remove_check(&ckey).is_some() {
        let idx = store.bump();
        store.touch_service(&svc.name, idx);
    }
    Ok(ok_empty())
}

async fn node_maintenance(ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let enable = parse_enable(&ctx)?;
    let authz = ctx.authz()?;
    let node = state.node().to_owned();
    authz.require("node:write", &node)?;
    let reason = ctx.query.get("reason").unwrap_or("").to_owned();
    let mut store = state.lock();
    let ckey: Key = (node.clone(), NODE_MAINT.to_owned());
    if enable {
        if !store.checks.contains_key(&ckey) {
            let idx = store.bump();
            let mut c = Check::new(&node, NODE_MAINT, "Node Maintenance Mode", Status::Critical);
            c.notes = if reason.is_empty() {
                "Maintenance mode is enabled for this node, but no reason was provided. This is \
                 a default message."
                    .to_owned()
            } else {
                reason
            };
            c.kind = "maintenance".to_owned();
            c.create_index = idx;
            c.modify_index = idx;
            store.insert_check(c);
            store.touch_node(&node, idx);
        }
    } else if store.remove_check(&ckey).is_some() {
        let idx = store.bump();
        store.touch_node(&node, idx);
    }
    Ok(ok_empty())
}

// === Check registration ===

async fn register_check(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let ctx = Ctx::new(&state, raw.as_deref(), &headers)?;
    let value = parse_body(&body).map_err(HttpError::decode)?;
    let def = CheckDef::decode(&value, "CheckDefinition")
        .map_err(HttpError::decode)?
        .unwrap_or_default();
    if def.name.is_empty() {
        return Err(HttpError::bad_request("Missing check name"));
    }
    let authz = ctx.authz()?;
    validate_checks(std::slice::from_ref(&def))?;
    scripts_disabled(std::slice::from_ref(&def))?;
    let node = state.node().to_owned();
    let mut store = state.lock();
    let svc = if def.service_id.is_empty() {
        authz.require("node:write", &node)?;
        None
    } else {
        let Some(s) = store
            .services
            .get(&(node.clone(), def.service_id.clone()))
            .cloned()
        else {
            return Err(HttpError::bad_request(format!(
                "ServiceID \"{}\" does not exist",
                def.service_id
            )));
        };
        authz.require("service:write", &s.name)?;
        Some(s)
    };
    let cid = if def.check_id.is_empty() {
        def.name.clone()
    } else {
        def.check_id.clone()
    };
    let ckey: Key = (node.clone(), cid.clone());
    let idx = store.bump();
    let existing = store.checks.get(&ckey);
    let check = build_check(&state, &node, svc.as_ref(), &cid, &def, existing, idx);
    store.stop_runner(&ckey);
    store.insert_check(check);
    checks::start(&state, &mut store, &ckey);
    match svc {
        Some(s) => store.touch_service(&s.name, idx),
        None => store.touch_node(&node, idx),
    }
    Ok(ok_empty())
}

async fn deregister_check(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let authz = ctx.authz()?;
    let node = state.node().to_owned();
    let mut store = state.lock();
    let ckey: Key = (node.clone(), id.clone());
    let Some(check) = store.checks.get(&ckey) else {
        return Err(unknown_check(&id));
    };
    if id == "serfHealth" {
        return Err(HttpError::internal(
            "Deregistering the serfHealth check is not allowed",
        ));
    }
    let service_name = check.service_name.clone();
    if service_name.is_empty() {
        authz.require("node:write", &node)?;
    } else {
        authz.require("service:write", &service_name)?;
    }
    store.remove_check(&ckey);
    let idx = store.bump();
    if service_name.is_empty() {
        store.touch_node(&node, idx);
    } else {
        store.touch_service(&service_name, idx);
    }
    Ok(ok_empty())
}

// === Self and members ===

fn member(state: &AppState) -> Value {
    json!({
        "Name": state.config.node_name,
        "Addr": "127.0.0.1",
        "Port": 8301,
        "Tags": {
            "dc": state.config.datacenter,
            "role": "consul",
            "build": crate::CONSUL_VERSION,
            "port": "8300",
            "vsn": "2",
            "id": state.config.node_id,
            "bootstrap": "1",
            "segment": "",
        },
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

async fn agent_self(ctx: Ctx) -> Result<Response> {
    ctx.authz()?.require_plain("agent:read")?;
    let c = &ctx.state.config;
    let body = json!({
        "Config": {
            "Datacenter": c.datacenter,
            "PrimaryDatacenter": c.datacenter,
            "NodeName": c.node_name,
            "NodeID": c.node_id,
            "Revision": "consul-dev",
            "Server": true,
            "Version": crate::CONSUL_VERSION,
            "BuildDate": "2026-01-01T00:00:00Z",
        },
        "DebugConfig": {
            "ACLsEnabled": c.acl_token.is_some(),
            "ACLDefaultPolicy": crate::acl::default_policy(c),
            "DevMode": true,
        },
        "Coord": {"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5},
        "Member": member(&ctx.state),
        "Stats": {
            "agent": {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "0"},
            "consul": {"server": "true", "leader": "true", "bootstrap": "true", "known_datacenters": "1"},
        },
        "Meta": {"consul-network-segment": "", "consul-version": crate::CONSUL_VERSION},
        "xDS": null,
    });
    Ok(json_resp(&ctx.query, &body))
}

async fn members(ctx: Ctx) -> Result<Response> {
    let authz = ctx.authz()?;
    let list = if authz.can_read() {
        vec![member(&ctx.state)]
    } else {
        Vec::new()
    };
    Ok(json_resp(&ctx.query, &list))
}
