//! `/v1/status/...`: the cluster's raft status.

use crate::Error;
use crate::client::{Client, QueryOptions};

/// The status endpoints, from [`Client::status`].
#[derive(Debug, Clone, Copy)]
pub struct Status<'a> {
    client: &'a Client,
}

impl<'a> Status<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Status { client }
    }

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
