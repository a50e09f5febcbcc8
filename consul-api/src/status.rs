//! `/v1/status/...`: the cluster's raft status, reached with [`Client::status`].
//! Uses the client only.

use crate::client::{Client, QueryOptions};
use crate::error::Error;

/// The status endpoints, from [`Client::status`].
#[derive(Debug, Clone, Copy)]
pub struct Status<'a> {
    client: &'a Client,
}

// === impl Client ===

impl Client {
    /// The status endpoints (`/v1/status/...`).
    pub fn status(&self) -> Status<'_> {
        Status { client: self }
    }
}

// === impl Status ===

impl Status<'_> {
    /// `GET /v1/status/leader`: the leader's raft address, `""` when there is none.
    pub async fn leader(&self) -> Result<String, Error> {
        let (leader, _) = self
            .client
            .get("/v1/status/leader", &QueryOptions::default())
            .await?;
        Ok(leader)
    }

    /// `GET /v1/status/peers`: the raft peers' addresses.
    pub async fn peers(&self) -> Result<Vec<String>, Error> {
        let (peers, _): (Option<Vec<String>>, _) = self
            .client
            .get("/v1/status/peers", &QueryOptions::default())
            .await?;
        Ok(peers.unwrap_or_default())
    }
}
