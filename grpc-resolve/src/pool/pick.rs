//! A call's pick from the endpoint set: power of two choices over the ready endpoints with
//! room, keeping to the preferred locality while it has one, and avoiding the endpoints a
//! retry or a hedge already tried. This is the only pool code on every call's path: it takes
//! the set's read lock for one scan and keeps its working lists on the stack.
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use discovery_core::ServiceInstance;

    use super::super::set::fixtures::{connected, connected_in, pool};
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pick_avoids_the_endpoint_that_just_failed_when_it_can() {
        let pool = pool(0);
        let _a = connected(&pool, "a").await;
        let _b = connected(&pool, "b").await;
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..50 {
            let picked = pool.pick(&["a"], &mut rng).expect("b is usable");
            assert_eq!(picked.endpoint.id, "b", "a is avoided");
            picked.endpoint.release();
        }
    }

    #[tokio::test]
    async fn pick_other_never_falls_back_to_an_avoided_endpoint() {
        let pool = pool(0);
        let _a = connected(&pool, "a").await;
        let _b = connected(&pool, "b").await;
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..50 {
            let picked = pool.pick_other(&["a"], &mut rng).expect("b is usable");
            assert_eq!(picked.endpoint.id, "b", "a is avoided");
            picked.endpoint.release();
        }
        assert!(
            pool.pick_other(&["a", "b"], &mut rng).is_none(),
            "no other endpoint: no pick"
        );
        let picked = pool.pick(&["a", "b"], &mut rng).expect("pick falls back");
        picked.endpoint.release();
    }

    /// Which endpoints 300 picks reach, by id, avoiding `avoid`.
    fn picked_ids(pool: &Pool, avoid: Option<&str>) -> std::collections::BTreeSet<String> {
        let mut rng = fastrand::Rng::with_seed(5);
        (0..300)
            .map(|_| {
                let picked = pool
                    .pick(avoid.as_slice(), &mut rng)
                    .expect("an endpoint is usable");
                picked.endpoint.release();
                picked.endpoint.id.clone()
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_preferred_locality_takes_every_pick_while_it_has_a_usable_endpoint() {
        let mut config = pool(0).config.clone();
        config.locality = Some("zone-b".to_owned());
        let pool = Arc::new(Pool::new("adder".to_owned(), config));
        let _a = connected_in(&pool, "a", Some("zone-a")).await;
        let b1 = connected_in(&pool, "b1", Some("zone-b")).await;
        let b2 = connected_in(&pool, "b2", Some("zone-b")).await;
        let _none = connected_in(&pool, "none", None).await;

        assert_eq!(
            picked_ids(&pool, None),
            ["b1", "b2"].map(str::to_owned).into(),
            "expected picks only in zone-b, over both of its endpoints"
        );
        assert_eq!(
            picked_ids(&pool, Some("b1")),
            ["b2"].map(str::to_owned).into(),
            "a retry avoiding b1 stays in zone-b while b2 is usable"
        );

        b1.set_connection(None);
        assert_eq!(
            picked_ids(&pool, Some("b2")),
            ["a", "none"].map(str::to_owned).into(),
            "a retry avoiding zone-b's last usable endpoint leaves the zone"
        );
        b2.set_connection(None);
        assert_eq!(
            picked_ids(&pool, None),
            ["a", "none"].map(str::to_owned).into(),
            "with nothing usable in zone-b, every endpoint is a candidate"
        );
        let infos = pool.infos();
        assert_eq!(
            infos[0].locality.as_deref(),
            Some("zone-a"),
            "endpoint info reports the locality: {infos:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_preference_locality_changes_nothing() {
        let pool = pool(0);
        let _a = connected_in(&pool, "a", Some("zone-a")).await;
        let _b = connected_in(&pool, "b", Some("zone-b")).await;
        assert_eq!(
            picked_ids(&pool, None),
            ["a", "b"].map(str::to_owned).into(),
            "expected picks over both zones"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_locality_change_in_discovery_moves_the_endpoint_in_or_out_of_preference() {
        let mut config = pool(0).config.clone();
        config.locality = Some("zone-b".to_owned());
        let pool = Arc::new(Pool::new("adder".to_owned(), config));
        let a = connected_in(&pool, "a", Some("zone-a")).await;
        let _b = connected_in(&pool, "b", Some("zone-b")).await;
        let mut moved = ServiceInstance::new("a", "adder", "127.0.0.1", 1);
        moved.locality = Some("zone-b".to_owned());
        a.update(moved, pool.config.locality.as_deref());
        assert_eq!(
            picked_ids(&pool, None),
            ["a", "b"].map(str::to_owned).into(),
            "a moved into zone-b and shares its picks"
        );
    }
}
