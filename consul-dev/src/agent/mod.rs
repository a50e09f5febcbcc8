//! `/v1/agent/*`: the local agent's services (`service`), checks (`check`), maintenance
//! mode (`maintenance`), local health (`health`), and what it says about itself
//! (`member`). This file only routes; each job is in its own file.

mod check;
mod health;
mod maintenance;
mod member;
mod service;

use axum::Router;
use axum::extract::Path;

use crate::error::HttpError;
use crate::web::Ctx;

use self::check::{
    check_fail, check_pass, check_update, check_warn, checks_list, deregister_check, register_check,
};
use self::health::{health_by_id, health_by_name};
use self::maintenance::{node_maintenance, service_maintenance};
use self::member::{agent_self, members};
use self::service::{deregister_service, register_service, service_by_id, services};
use crate::web::{AppState, get, put};

/// The agent endpoints. A path whose last segment is empty reaches the handler, which
/// answers as Consul's does for an empty ID or name.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/agent/service/deregister/",
            put(|ctx: Ctx| deregister_service(Path(String::new()), ctx)),
        )
        .route(
            "/v1/agent/service/maintenance/",
            put(|| async { HttpError::bad_request("Missing service ID") }),
        )
        .route(
            "/v1/agent/service/",
            get(|ctx: Ctx| service_by_id(Path(String::new()), ctx)),
        )
        .route(
            "/v1/agent/check/deregister/",
            put(|ctx: Ctx| deregister_check(Path(String::new()), ctx)),
        )
        .route(
            "/v1/agent/check/pass/",
            put(|ctx: Ctx| check_pass(Path(String::new()), ctx)),
        )
        .route(
            "/v1/agent/check/warn/",
            put(|ctx: Ctx| check_warn(Path(String::new()), ctx)),
        )
        .route(
            "/v1/agent/check/fail/",
            put(|ctx: Ctx| check_fail(Path(String::new()), ctx)),
        )
        .route(
            "/v1/agent/check/update/",
            put(|write: crate::web::Write| check_update(Path(String::new()), write)),
        )
        .route(
            "/v1/agent/health/service/name/",
            get(|| async { HttpError::bad_request("Missing service Name") }),
        )
        .route(
            "/v1/agent/health/service/id/",
            get(|| async { HttpError::bad_request("Missing serviceID") }),
        )
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
