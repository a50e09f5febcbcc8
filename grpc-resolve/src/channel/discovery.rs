//! The channel's discovery task: follows the resolver's watch, diffs each snapshot against
//! the set it has, and applies the changes to the pool as they arrive, whether or not
//! calls are flowing (tonic's `balance_channel` only looks at discovery inside
//! `poll_ready`, so an idle channel keeps dead endpoints).
//!
//! Errors from the resolver change nothing: the last good set stays (a registry hiccup must
//! not empty a healthy channel), and the stream recovers by itself. A service that does not
//! exist empties the set: that is the registry's answer, not a failure.
//!
//! Tracing: the task runs in a `discovery` span naming the service, so whatever the
//! resolver logs while producing an update (consul-api logs the answer's index) sits in it;
//! each update is numbered (`generation`) and applied inside an `apply` span carrying that
//! number, where the pool logs the endpoints it adds and removes. A trace thus reads: this
//! answer, then this update, then these endpoint changes.
//!
//! May use: the pool (where changes go), `discover` (the diff), `error`.

use std::collections::HashMap;
use std::sync::Arc;

use discovery_core::{Query, Resolver, ServiceInstance, Update};
use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::discover::diff;
use crate::error::DisplayChain;
use crate::pool::Pool;

/// Follows `resolver.watch(query)` and applies every change to `pool`, until aborted or the
/// stream ends (the resolver is gone; the last set stays).
pub(super) async fn run(resolver: Arc<dyn Resolver>, query: Query, pool: Arc<Pool>) {
    let span = tracing::info_span!("discovery", service = %query.service);
    follow(resolver, query, pool).instrument(span).await;
}

async fn follow(resolver: Arc<dyn Resolver>, query: Query, pool: Arc<Pool>) {
    let mut updates = resolver.watch(&query);
    let mut current: HashMap<String, ServiceInstance> = HashMap::new();
    // Updates received so far: numbers each one in the traces.
    let mut generation: u64 = 0;
    while let Some(update) = updates.next().await {
        let received = Instant::now();
        generation += 1;
        let snapshot: &[ServiceInstance] = match &update {
            Update::Snapshot(instances) => {
                pool.set_resolver_state(
                    instances
                        .is_empty()
                        .then(|| "the service has no matching instances".to_owned()),
                );
                instances
            }
            Update::DoesNotExist => {
                pool.set_resolver_state(Some("the service does not exist".to_owned()));
                &[]
            }
            Update::Error(error) => {
                pool.counters().resolver_failed();
                tracing::warn!(service = %query.service, error = %DisplayChain(error), "resolver failed; keeping the last known endpoints");
                if current.is_empty() {
                    pool.set_resolver_state(Some(format!("the resolver failed: {error}")));
                }
                // Nothing to pick changed, but watchers of the channel learn of the error.
                pool.changed();
                continue;
            }
            other => {
                tracing::debug!(service = %query.service, update = ?other, "ignoring an unknown kind of update");
                continue;
            }
        };
        let _apply = tracing::info_span!("apply", generation).entered();
        pool.counters().update_applied();
        let changes = diff(&current, snapshot);
        if changes.is_empty() {
            tracing::debug!(
                instances = snapshot.len(),
                "discovery update changes nothing"
            );
            // Nothing to pick changed, but watchers of the channel learn of the update.
            pool.changed();
            pool.counters().update_done(received);
            continue;
        }
        tracing::debug!(
            insert = changes.insert.len(),
            update = changes.update.len(),
            remove = changes.remove.len(),
            "applying discovery changes"
        );
        pool.apply(&changes);
        changes.apply_to(&mut current);
        pool.counters().update_done(received);
    }
    tracing::debug!(service = %query.service, "resolver watch ended; keeping the last known endpoints");
}
