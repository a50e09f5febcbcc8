//! What a loop publishes and how each subscriber reads it: the last known state (a set of
//! instances, or "no such service") and the last failure since, each emitted once per
//! subscriber. Uses only the core model.

use std::collections::VecDeque;
use std::sync::Arc;

use discovery_core::{ServiceInstance, Update};
use tokio::sync::watch;

/// What Consul last said about a service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Known {
    /// The matching instances (possibly none: the service exists, nothing matches now).
    Instances(Vec<ServiceInstance>),
    /// The catalog has no instance of the service at all.
    Missing,
}

impl Known {
    fn update(&self) -> Update {
        match self {
            Known::Instances(instances) => Update::Snapshot(instances.clone()),
            Known::Missing => Update::DoesNotExist,
        }
    }
}

/// What a loop publishes: the last good state and the last failure since then.
#[derive(Debug, Clone, Default)]
pub(crate) struct Published {
    /// The last state; `None` until the first answer.
    pub(crate) known: Option<Arc<Known>>,
    /// The Consul index of the answer that said it, for the traces.
    pub(crate) index: u64,
    /// The latest failure since that state, numbered so each subscriber emits it once.
    pub(crate) error: Option<(u64, discovery_core::Error)>,
}

/// One subscriber's view of a loop: emits each new state and each new error once.
///
/// It runs in the consumer's task (a channel's discovery task, say), so the event it logs
/// for each state it emits, with the Consul index of the answer behind it, sits in the
/// consumer's span, just before whatever the consumer does with the update.
pub(crate) struct Subscriber {
    service: String,
    rx: watch::Receiver<Published>,
    seen_known: Option<Arc<Known>>,
    seen_error: u64,
    pending: VecDeque<Update>,
}

impl Subscriber {
    pub(crate) fn new(service: &str, mut rx: watch::Receiver<Published>) -> Self {
        // Joining a running loop yields its current state at once.
        rx.mark_changed();
        Subscriber {
            service: service.to_owned(),
            rx,
            seen_known: None,
            seen_error: 0,
            pending: VecDeque::new(),
        }
    }

    pub(crate) async fn next(&mut self) -> Option<Update> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Some(update);
            }
            // The loop holds the sender as long as any receiver lives (it stops only when
            // none is left), so this ends only with the runtime.
            self.rx.changed().await.ok()?;
            let published = self.rx.borrow_and_update().clone();
            if let Some(known) = published.known {
                let new = self
                    .seen_known
                    .as_ref()
                    .is_none_or(|seen| !Arc::ptr_eq(seen, &known));
                if new {
                    tracing::debug!(service = %self.service, index = published.index, "consul answer");
                    self.pending.push_back(known.update());
                    self.seen_known = Some(known);
                }
            }
            if let Some((n, err)) = published.error
                && n > self.seen_error
            {
                self.seen_error = n;
                self.pending.push_back(Update::Error(err));
            }
        }
    }
}
