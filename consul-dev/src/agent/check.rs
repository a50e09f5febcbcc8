//! `/v1/agent/check/*` and `/v1/agent/checks`: registering the agent's checks, TTL updates,
//! deregistration, the list; and [`build_check`], which service registration uses too.
//! Uses the store, the check runner, the wire shapes and the HTTP layer.

use axum::extract::Path;
use axum::response::Response;

use crate::checks;
use crate::error::{HttpError, Result};
use crate::state::{Check, DEFAULT_OUTPUT_MAX_SIZE, Key, Runner, Service, Status, Store};
use crate::web::{AppState, Ctx, Write, json_by_id, ok_empty};
use crate::wire::{CheckDef, CheckOut, CheckUpdate, nanos_to_duration};

// === Registration ===

/// Builds the stored check for a definition. `existing` keeps status and output across
/// re-registration, as Consul's agent does; the critical clock always starts stopped, as
/// Consul's fresh `CheckState` has it (see [`register_check`] for the one restart).
pub(super) fn build_check(
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
        "ttl" => Runner::Ttl(nanos_to_duration(def.spec.ttl)),
        "http" => Runner::Http,
        "tcp" => Runner::Tcp,
        "grpc" => Runner::Grpc,
        // UDP, H2PING, alias, docker and OS-service checks are accepted but not run.
        _ => Runner::None,
    };
    if matches!(c.runner, Runner::Http | Runner::Tcp | Runner::Grpc) {
        c.interval = Some(checks::effective_interval(&def.spec));
        let t = nanos_to_duration(def.spec.timeout);
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
    c.output_max_size = usize::try_from(def.spec.output_max_size)
        .ok()
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_OUTPUT_MAX_SIZE);
    c.deregister_after = checks::deregister_after(
        nanos_to_duration(def.spec.deregister_critical_service_after),
        state.config(),
    );
    c.spec = Some(def.spec.clone());
    c.create_index = idx;
    c.modify_index = idx;
    if let Some(old) = existing {
        c.status = old.status;
        c.output = old.output.clone();
        c.create_index = old.create_index;
        c.modify_index = old.modify_index;
    }
    c
}

/// Service registration's check validation: every definition's type (`Invalid check: …`),
/// then every status.
pub(super) fn validate_checks(defs: &[CheckDef]) -> Result<()> {
    for def in defs {
        validate_type(def)?;
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

/// Consul's `CheckType.Validate`, as a 400 `Invalid check: …`.
fn validate_type(def: &CheckDef) -> Result<()> {
    def.validate()
        .map_err(|r| HttpError::bad_request(format!("Invalid check: {r}")))
}

pub(super) fn scripts_disabled(defs: &[CheckDef]) -> Result<()> {
    if defs.iter().any(|d| !d.script_args.is_empty()) {
        return Err(HttpError::internal(
            "Scripts are disabled on this agent from remote calls; to enable, configure \
             'enable_script_checks' to true",
        ));
    }
    Ok(())
}

// === Check registration ===

/// `PUT /v1/agent/check/register`, in the order of Consul's `AgentRegisterCheck`: decode,
/// name and status (400), the token (403), the check type (400), the service (404), the
/// ACL decision (403), then what adding the check refuses (scripts, 500).
pub(super) async fn register_check(Write { ctx, body: value }: Write) -> Result<Response> {
    let state = &ctx.state;
    let def = CheckDef::decode(&value, "CheckDefinition")
        .map_err(HttpError::decode)?
        .unwrap_or_default();
    if def.name.is_empty() {
        return Err(HttpError::bad_request("Missing check name"));
    }
    if !def.status.is_empty() && Status::parse(&def.status).is_none() {
        return Err(HttpError::bad_request("Bad check status"));
    }
    let authz = ctx.authz()?;
    validate_type(&def)?;
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
            return Err(HttpError::not_found(format!(
                "ServiceID {:?} does not exist",
                def.service_id
            )));
        };
        authz.require("service:write", &s.name)?;
        Some(s)
    };
    scripts_disabled(std::slice::from_ref(&def))?;
    let cid = if def.check_id.is_empty() {
        def.name.clone()
    } else {
        def.check_id.clone()
    };
    let ckey: Key = (node.clone(), cid.clone());
    let idx = store.bump();
    let existing = store.checks.get(&ckey);
    let mut check = build_check(state, &node, svc.as_ref(), &cid, &def, existing, idx);
    // Consul's `AddCheck` replays the old status through `UpdateCheck`, which restarts the
    // critical clock now for a check re-registered while critical.
    if existing.is_some() && check.status == Status::Critical {
        check.critical_since = Some(tokio::time::Instant::now());
    }
    store.stop_runner(&ckey);
    store.insert_check(check);
    state.checks.start(&mut store, &ckey);
    match svc {
        Some(s) => store.touch_service(&s.name, idx),
        None => store.touch_node(&node, idx),
    }
    Ok(ok_empty())
}

pub(super) async fn deregister_check(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let authz = ctx.authz()?;
    let node = state.node().to_owned();
    let mut store = state.lock();
    let ckey: Key = (node.clone(), id.clone());
    let Some(check) = local_check(&store, &ckey) else {
        return Err(unknown_check(&id));
    };
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

/// A check of the agent's local state: not `serfHealth`, which is the servers' (Consul's
/// agent answers it as unknown).
fn local_check<'a>(store: &'a Store, key: &Key) -> Option<&'a Check> {
    store.checks.get(key).filter(|c| c.check_id != "serfHealth")
}

fn unknown_check(id: &str) -> HttpError {
    HttpError::not_found(format!(
        "Unknown check ID \"{id}\". Ensure that the check ID is passed, not the check name."
    ))
}

// === Check updates ===

pub(super) async fn check_pass(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    ttl_note(&ctx, &id, Status::Passing)
}

pub(super) async fn check_warn(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    ttl_note(&ctx, &id, Status::Warning)
}

pub(super) async fn check_fail(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    ttl_note(&ctx, &id, Status::Critical)
}

fn ttl_note(ctx: &Ctx, id: &str, status: Status) -> Result<Response> {
    let note = ctx.query.get("note").unwrap_or("").to_owned();
    update_ttl(ctx, id, status, note)?;
    Ok(ok_empty())
}

pub(super) async fn check_update(
    Path(id): Path<String>,
    Write { ctx, body: value }: Write,
) -> Result<Response> {
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
    let Some(check) = local_check(&store, &key) else {
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

pub(super) async fn checks_list(ctx: Ctx) -> Result<Response> {
    let node = ctx.state.node();
    json_by_id(&ctx, |store| {
        store
            .checks
            .values()
            .filter(|c| c.node == node && c.check_id != "serfHealth")
            .map(|c| (c.check_id.clone(), CheckOut::from_check(c)))
            .collect()
    })
}
