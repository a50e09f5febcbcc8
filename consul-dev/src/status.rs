//! `/v1/status/*`: raft leader and peers of the one-node cluster.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::HeaderMap;

use crate::web::{AppState, Ctx, Result, get, json};

/// The address this single server claims as raft leader.
pub(crate) const LEADER: &str = "127.0.0.1:8300";

/// The status endpoints.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
}

async fn leader(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let ctx = Ctx::new(&state, raw.as_deref(), &headers)?;
    Ok(json(&ctx.query, &LEADER))
}

async fn peers(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let ctx = Ctx::new(&state, raw.as_deref(), &headers)?;
    Ok(json(&ctx.query, &[LEADER]))
}
