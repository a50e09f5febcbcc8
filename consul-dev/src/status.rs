//! `/v1/status/*`: raft leader and peers of the one-node cluster. Uses the HTTP layer.

use axum::Router;
use axum::response::Response;

use crate::web::{AppState, Ctx, get, json};

/// The address this single server claims as raft leader.
pub(crate) const LEADER: &str = "127.0.0.1:8300";

/// The status endpoints.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
}

async fn leader(ctx: Ctx) -> Response {
    json(&ctx.query, &LEADER)
}

async fn peers(ctx: Ctx) -> Response {
    json(&ctx.query, &[LEADER])
}
