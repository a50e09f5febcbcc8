//! `/v1/agent/*`: the local agent's services (`service`), checks (`check`), maintenance
//! mode (`maintenance`), local health (`health`), and what it says about itself
//! (`member`). This file only routes; each job is in its own file.

mod check;
mod health;
mod maintenance;
mod member;
mod service;

use axum::Router;

use self::check::{
    check_fail, check_pass, check_update, check_warn, checks_list, deregister_check, register_check,
};
use self::health::{health_by_id, health_by_name};
use self::maintenance::{node_maintenance, service_maintenance};
use self::member::{agent_self, members};
use self::service::{deregister_service, register_service, service_by_id, services};
use crate::web::{AppState, get, put};

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
