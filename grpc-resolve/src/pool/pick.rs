//! A call's pick from the endpoint set: power of two choices over the ready endpoints with
//! room, keeping to the preferred locality while it has one, and avoiding the endpoints a
//! retry or a hedge already tried. This is the only pool code on every call's path: it takes
//! the set's read lock for one scan and keeps its working lists on the stack.
//!
//! Its tests sit with the set's ([`set`](super::set)), which builds the endpoints they pick
//! from.
//!
//! May use: [`set`](super::set) (the `Pool`), [`endpoint`](super::endpoint), `balance`.

use std::sync::Arc;

use smallvec::SmallVec;

use super::endpoint::{Endpoint, LazyNow};
use super::http2::Connection;
use super::set::Pool;
use crate::balance::{self, Candidate};

/// An endpoint picked for one call, counted in flight until dropped.
pub(crate) struct Picked {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) connection: Connection,
    /// Which of the endpoint's connections `connection` is.
    pub(crate) generation: u64,
}

// === impl Pool: picks ===

impl Pool {
    /// Picks a ready endpoint by power of two choices, avoiding those in `avoid` when
    /// another is ready and keeping to the preferred locality when an endpoint there is
    /// ready, and counts the call in flight on it.
    pub(crate) fn pick(&self, avoid: &[&str], rng: &mut fastrand::Rng) -> Option<Picked> {
        self.pick_avoiding(avoid, false, rng)
    }

    /// Like [`Pool::pick`], but never one of `avoid`: `None` when no other is ready.
    pub(crate) fn pick_other(&self, avoid: &[&str], rng: &mut fastrand::Rng) -> Option<Picked> {
        self.pick_avoiding(avoid, true, rng)
    }

    fn pick_avoiding(
        &self,
        avoid: &[&str],
        strict: bool,
        rng: &mut fastrand::Rng,
    ) -> Option<Picked> {
        let mut now = LazyNow::default();
        let endpoints = self.read();
        // Indexes into `endpoints` and the balancer's view of each, on the stack for any
        // usual number of endpoints: this runs for every call.
        let mut usable: SmallVec<[usize; 16]> = endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_usable(&mut now) && e.has_room(self.config.concurrency_limit))
            .map(|(i, _)| i)
            .collect();
        let avoided = |i: &usize| avoid.contains(&endpoints[*i].id.as_str());
        if !avoid.is_empty() && (strict || usable.iter().any(|i| !avoided(i))) {
            usable.retain(|i| !avoided(i));
        }
        if self.config.locality.is_some() && usable.iter().any(|i| endpoints[*i].is_local()) {
            usable.retain(|i| endpoints[*i].is_local());
        }
        let loads: SmallVec<[Candidate; 16]> = usable
            .iter()
            .map(|i| {
                let endpoint = &endpoints[*i];
                endpoint.candidate().at_percent(endpoint.ramp().percent())
            })
            .collect();
        let chosen = balance::pick(&loads, rng)?;
        let endpoint = endpoints[usable[chosen]].clone();
        drop(endpoints);
        // The connection may have gone since the scan; the caller simply picks again.
        let (connection, generation) = endpoint.connection()?;
        endpoint.picked();
        Some(Picked {
            endpoint,
            connection,
            generation,
        })
    }
}
