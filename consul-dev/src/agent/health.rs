//! `/v1/agent/health/service/*`: the local health of a service's instances, by name or ID,
//! as a status code (200, 429, 503) and reason, in JSON or text. Uses the store, the wire
//! shapes, `maintenance` beside it and the HTTP layer.

use axum::extract::Path;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::maintenance::{NODE_MAINT, SERVICE_MAINT_PREFIX};
use crate::error::{Result, text};
use crate::state::{Check, Service, Status, Store};
use crate::web::{AppState, Ctx, json as json_resp};
use crate::wire::{AgentHealthOut, AgentServiceOut, CheckOut};

/// The agent's checks of one local instance, as Consul's `ChecksForService(id, true)`
/// gives them: the node's checks (not `serfHealth`, which lives on the servers, not in the
/// agent's local state), then the service's.
fn local_checks<'a>(store: &'a Store, node: &str, s: &Service) -> Vec<&'a Check> {
    store
        .node_checks(node)
        .filter(|c| c.check_id != "serfHealth")
        .chain(store.service_checks(node, &s.id))
        .collect()
}

/// Consul's `HealthChecks.AggregatedStatus`: a maintenance check anywhere wins, then the
/// worst status.
fn aggregate(checks: &[&Check]) -> &'static str {
    let maintenance = checks
        .iter()
        .any(|c| c.check_id == NODE_MAINT || c.check_id.starts_with(SERVICE_MAINT_PREFIX));
    if maintenance {
        return "maintenance";
    }
    checks
        .iter()
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
    let checks = local_checks(store, state.node(), s);
    AgentHealthOut {
        aggregated_status: aggregate(&checks),
        service: AgentServiceOut::from_service(s, &state.config().datacenter),
        checks: checks.into_iter().map(CheckOut::from_check).collect(),
    }
}

/// `summary` as text when Consul's `returnTextPlain` would (a non-empty `format` decides,
/// `text`; without one, an `Accept` starting `text/plain`), else `body` as JSON; either
/// with `code`.
fn text_or_json(
    ctx: &Ctx,
    code: StatusCode,
    summary: impl Into<String>,
    body: &impl Serialize,
) -> Response {
    let as_text = match ctx.query.get("format").filter(|f| !f.is_empty()) {
        Some(format) => format == "text",
        None => ctx.accepts_text_plain,
    };
    if as_text {
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

/// A 404 with `reason` as the text answer and in `X-Consul-Reason`, as Consul's
/// `CodeWithPayloadError` carries it.
fn not_found(ctx: &Ctx, reason: String, body: &impl Serialize) -> Response {
    let header = HeaderValue::from_str(&reason).ok();
    let mut resp = text_or_json(ctx, StatusCode::NOT_FOUND, reason, body);
    if let Some(header) = header {
        resp.headers_mut().insert("x-consul-reason", header);
    }
    resp
}

pub(super) async fn health_by_name(Path(name): Path<String>, ctx: Ctx) -> Result<Response> {
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
        return Ok(not_found(
            &ctx,
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

pub(super) async fn health_by_id(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
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
        // Consul answers its zero `AgentServiceChecksInfo`, critical.
        let body = serde_json::json!({"AggregatedStatus": "critical", "Service": null,
            "Checks": null});
        return Ok(not_found(&ctx, format!("ServiceId {id} not found"), &body));
    };
    authz.require("service:read", &entry.service.service)?;
    // By ID the body is one object, not an array.
    Ok(health_answer(&ctx, entry.aggregated_status, &entry))
}
