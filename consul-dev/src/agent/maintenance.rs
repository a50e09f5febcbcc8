//! `/v1/agent/service/maintenance/*` and `/v1/agent/maintenance`: maintenance mode, a
//! critical check of its own on a service or on the node. Uses the store, the wire's Go
//! bool and the HTTP layer.

use axum::extract::Path;
use axum::response::Response;

use crate::error::{HttpError, Result};
use crate::state::{Check, Key, Status};
use crate::web::{Ctx, ok_empty};
use crate::wire::parse_go_bool;

/// The ID prefix of a service's maintenance check (the service ID follows).
pub(super) const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";
/// The ID of the node's maintenance check.
pub(super) const NODE_MAINT: &str = "_node_maintenance";

fn parse_enable(ctx: &Ctx) -> Result<bool> {
    let Some(raw) = ctx.query.get("enable") else {
        return Err(HttpError::bad_request("Missing value for enable"));
    };
    parse_go_bool(raw)
        .ok_or_else(|| HttpError::bad_request(format!("Invalid value for enable: \"{raw}\"")))
}

pub(super) async fn service_maintenance(Path(id): Path<String>, ctx: Ctx) -> Result<Response> {
    let state = &ctx.state;
    let enable = parse_enable(&ctx)?;
    let authz = ctx.authz()?;
    let reason = ctx.query.get("reason").unwrap_or("").to_owned();
    let node = state.node().to_owned();
    let mut store = state.lock();
    let Some(svc) = store
        .services
        .get(&(node.clone(), id.clone()))
        .filter(|s| s.id != "consul")
        .cloned()
    else {
        return Err(HttpError::not_found(format!(
            "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service \
             name."
        )));
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

pub(super) async fn node_maintenance(ctx: Ctx) -> Result<Response> {
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
