//! `/v1/status/*`: raft leader and peers of the one-node cluster. Uses the HTTP layer.
//!
//! Consul's handlers run the query through `parse()` (consistency, `wait`, `index`, all
//! validated) and forward to `?dc=`, so they take a [`Read`] though they never block.

use axum::Router;
use axum::response::Response;

use crate::error::Result;
use crate::web::{AppState, Read, get, json};

/// The address this single server claims as raft leader.
pub(crate) const LEADER: &str = "127.0.0.1:8300";

/// The status endpoints.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
}

async fn leader(read: Read) -> Result<Response> {
    read.forward()?;
    Ok(json(&read.ctx.query, &LEADER))
}

async fn peers(read: Read) -> Result<Response> {
    read.forward()?;
    Ok(json(&read.ctx.query, &[LEADER]))
}
