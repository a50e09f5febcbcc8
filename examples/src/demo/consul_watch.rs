//! Consul's view for the screen: every instance of the service with its worst check status,
//! asked a few times a second (not a blocking query: the screen wants "the agent is down"
//! as soon as it is). Uses the board.

use std::collections::BTreeMap;
use std::time::Duration;

use consul_api::{CheckStatus, Client, QueryOptions};
use tokio::task::JoinHandle;

use super::board::{Board, ConsulView};

/// How often the agent is asked.
const EVERY: Duration = Duration::from_millis(200);
/// An answer later than this counts as the agent being down.
const PATIENCE: Duration = Duration::from_secs(1);

/// Keeps the board's Consul view current until aborted.
pub(crate) fn spawn(client: Client, service: String, board: Board) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            board.set_consul(look(&client, &service).await);
            tokio::time::sleep(EVERY).await;
        }
    })
}

/// One look at the service's instances, whatever their status.
pub(crate) async fn look(client: &Client, service: &str) -> ConsulView {
    let opts = QueryOptions::default();
    let health = client.health();
    match tokio::time::timeout(PATIENCE, health.service(service, &opts)).await {
        Ok(Ok((entries, _))) => ConsulView::Up(
            entries
                .iter()
                .map(|e| (e.service.id.clone(), e.aggregated_status()))
                .collect::<BTreeMap<String, CheckStatus>>(),
        ),
        _ => ConsulView::Down,
    }
}
