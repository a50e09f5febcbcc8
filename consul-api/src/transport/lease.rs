//! The blocking part of the budget: a fixed number of slots, each lent to one blocking
//! query loop at a time, and the rule that decides who holds them when more loops want one
//! than there are. Uses the counters of `stats`; knows nothing of watches or queries.
//!
//! A slot is lent as a [`Lease`]. Whoever wants one and finds none free waits as a
//! [`LeaseRequest`] (watches meanwhile poll). The rule, [`victim`], keeps the most active
//! holders: each holder and each request carries the time it last saw a change; when a
//! request sees one, the holder that has been quiet longest (and at least `min_hot`) is
//! asked to yield, and a freed slot goes to the waiting request that changed most recently.
//! `min_hot` keeps a slot with its holder for a while after a change, and after the holder
//! got it, so two busy loops cannot take a slot from each other on every change, and a loop
//! always gets to use the slot it was lent.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::stats::Counters;

/// The slots and who holds or wants them.
#[derive(Debug)]
pub(crate) struct Leases {
    table: Mutex<Table>,
    min_hot: Duration,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Table {
    /// Free slots, lowest first (over HTTP/2, low slots share the first connection).
    free: BTreeSet<usize>,
    holders: HashMap<u64, Holder>,
    waiters: HashMap<u64, Waiter>,
    next_id: u64,
}

#[derive(Debug)]
struct Holder {
    slot: usize,
    activity: Instant,
    preemptible: bool,
    yield_tx: watch::Sender<bool>,
}

#[derive(Debug)]
struct Waiter {
    /// When it last saw a change; `None` if never.
    activity: Option<Instant>,
    /// Whether it wants the next free slot before anyone else (a caller's own blocking
    /// query, which cannot poll instead).
    urgent: bool,
    preemptible: bool,
    tx: oneshot::Sender<Lease>,
}

/// A held slot. Dropping it frees the slot for the next waiter.
#[derive(Debug)]
pub(crate) struct Lease {
    leases: Arc<Leases>,
    id: u64,
    slot: usize,
    yield_rx: watch::Receiver<bool>,
}

/// A wish for a slot, granted through [`LeaseRequest::granted`]. Dropping it withdraws it.
#[derive(Debug)]
pub(crate) struct LeaseRequest {
    leases: Arc<Leases>,
    id: u64,
    rx: oneshot::Receiver<Lease>,
}

// === impl Leases ===

impl Leases {
    /// `slots` slots; a holder keeps its slot at least `min_hot` after its last change.
    pub(crate) fn new(slots: usize, min_hot: Duration, counters: Arc<Counters>) -> Arc<Self> {
        let table = Table {
            free: (0..slots).collect(),
            ..Table::default()
        };
        Arc::new(Leases {
            table: Mutex::new(table),
            min_hot,
            counters,
        })
    }

    /// Asks for a slot on behalf of a loop that last saw a change at `activity`. A free slot
    /// is granted at once; an urgent request also asks a quiet holder to yield.
    pub(crate) fn request(
        self: &Arc<Self>,
        activity: Option<Instant>,
        urgent: bool,
        preemptible: bool,
    ) -> LeaseRequest {
        let (tx, rx) = oneshot::channel();
        let (id, grants) = {
            let mut table = self.lock();
            let id = table.take_id();
            table.waiters.insert(
                id,
                Waiter {
                    activity,
                    urgent,
                    preemptible,
                    tx,
                },
            );
            (id, self.grant(&mut table))
        };
        send(grants);
        let request = LeaseRequest {
            leases: self.clone(),
            id,
            rx,
        };
        if urgent {
            request.changed(Instant::now());
        }
        request
    }

    /// How many slots are held now.
    pub(crate) fn held(&self) -> usize {
        self.lock().holders.len()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every mutation leaves the table consistent before it can panic.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lends free slots to waiters, best first; the leases to hand over once unlocked.
    fn grant(self: &Arc<Self>, table: &mut Table) -> Vec<(oneshot::Sender<Lease>, Lease)> {
        let mut grants = Vec::new();
        while !table.free.is_empty() {
            let Some(id) = best_waiter(&table.waiters) else {
                break;
            };
            let waiter = table
                .waiters
                .remove(&id)
                .expect("the best waiter is waiting");
            let slot = table.free.pop_first().expect("a free slot");
            let (yield_tx, yield_rx) = watch::channel(false);
            // A new holder counts as active from now, whatever its wish said: else a loop
            // lent a slot back after it changed long ago would be the first asked to yield
            // again, possibly before it sent anything on it (and, losing its poll turn each
            // time, might never send anything at all).
            table.holders.insert(
                id,
                Holder {
                    slot,
                    activity: Instant::now(),
                    preemptible: waiter.preemptible,
                    yield_tx,
                },
            );
            let lease = Lease {
                leases: self.clone(),
                id,
                slot,
                yield_rx,
            };
            grants.push((waiter.tx, lease));
        }
        grants
    }

    fn release(self: &Arc<Self>, id: u64) {
        let grants = {
            let mut table = self.lock();
            if let Some(holder) = table.holders.remove(&id) {
                table.free.insert(holder.slot);
            }
            self.grant(&mut table)
        };
        send(grants);
    }

    fn withdraw(&self, id: u64) {
        self.lock().waiters.remove(&id);
    }

    /// Waiter `id` saw a change at `now`: its priority rises, and the quietest holder is
    /// asked to yield if the rule allows.
    fn changed(&self, id: u64, now: Instant) {
        let mut table = self.lock();
        let Some(waiter) = table.waiters.get_mut(&id) else {
            return;
        };
        waiter.activity = Some(now);
        let candidates = table
            .holders
            .iter()
            .filter(|(_, h)| h.preemptible && !*h.yield_tx.borrow())
            .map(|(id, h)| (*id, h.activity));
        if let Some(victim) = victim(candidates, now, self.min_hot) {
            let holder = &table.holders[&victim];
            holder.yield_tx.send_replace(true);
            Counters::add(&self.counters.preemptions);
        }
    }

    fn touch(&self, id: u64, now: Instant) {
        if let Some(holder) = self.lock().holders.get_mut(&id) {
            holder.activity = now;
        }
    }
}

impl Table {
    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

fn send(grants: Vec<(oneshot::Sender<Lease>, Lease)>) {
    for (tx, lease) in grants {
        // A request dropped meanwhile hands the lease back: dropping it frees the slot.
        let _ = tx.send(lease);
    }
}

/// The waiter to lend a free slot to: urgent ones first, then the one that changed most
/// recently, then the oldest request.
fn best_waiter(waiters: &HashMap<u64, Waiter>) -> Option<u64> {
    waiters
        .iter()
        .max_by_key(|(id, w)| (w.urgent, w.activity, std::cmp::Reverse(**id)))
        .map(|(id, _)| *id)
}

/// Which holder yields to a request that saw a change at `now`: of `holders` (id and time
/// of last change), the one quiet longest, if it has been quiet at least `min_hot`.
pub(crate) fn victim(
    holders: impl IntoIterator<Item = (u64, Instant)>,
    now: Instant,
    min_hot: Duration,
) -> Option<u64> {
    holders
        .into_iter()
        .filter(|(_, last)| now.saturating_duration_since(*last) >= min_hot)
        .min_by_key(|(id, last)| (*last, *id))
        .map(|(id, _)| id)
}

// === impl Lease ===

impl Lease {
    /// The slot held.
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// The holder saw a change at `now`: it keeps its slot at least `min_hot` longer.
    pub(crate) fn touch(&self, now: Instant) {
        self.leases.touch(self.id, now);
    }

    /// Whether the holder has been asked to give the slot up.
    pub(crate) fn yield_requested(&self) -> bool {
        *self.yield_rx.borrow()
    }

    /// Resolves once the holder is asked to give the slot up.
    pub(crate) async fn yielded(&self) {
        let mut rx = self.yield_rx.clone();
        // The sender lives in the table as long as this lease is held.
        let _ = rx.wait_for(|asked| *asked).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.leases.release(self.id);
    }
}

// === impl LeaseRequest ===

impl LeaseRequest {
    /// Resolves with the slot once one is lent.
    pub(crate) async fn granted(&mut self) -> Lease {
        match (&mut self.rx).await {
            Ok(lease) => lease,
            // The waiter is only removed with its sender when the slot is lent.
            Err(_) => std::future::pending().await,
        }
    }

    /// The slot, if one has been lent already.
    pub(crate) fn try_granted(&mut self) -> Option<Lease> {
        self.rx.try_recv().ok()
    }

    /// The requester saw a change at `now` (see [`victim`]).
    pub(crate) fn changed(&self, now: Instant) {
        self.leases.changed(self.id, now);
    }
}

impl Drop for LeaseRequest {
    fn drop(&mut self) {
        self.leases.withdraw(self.id);
        // A lease lent just before: dropping it frees the slot again.
        drop(self.rx.try_recv());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(slots: usize) -> Arc<Leases> {
        Leases::new(slots, Duration::from_secs(30), Arc::default())
    }

    #[tokio::test(start_paused = true)]
    async fn free_slots_are_lent_at_once_and_the_rest_wait() {
        let leases = leases(2);
        let mut a = leases.request(None, false, true);
        let mut b = leases.request(None, false, true);
        let mut c = leases.request(None, false, true);
        let (la, lb) = (a.granted().await, b.granted().await);
        assert_ne!(la.slot(), lb.slot());
        let waiting = tokio::time::timeout(Duration::from_secs(1), c.granted()).await;
        assert!(waiting.is_err(), "no third slot");
        drop(la);
        let lc = tokio::time::timeout(Duration::from_secs(1), c.granted())
            .await
            .expect("a freed slot goes to the waiter");
        assert_eq!(leases.held(), 2);
        drop((lb, lc));
        assert_eq!(leases.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_takes_the_slot_of_the_holder_quiet_longest() {
        let leases = leases(2);
        let mut a = leases.request(None, false, true);
        let la = a.granted().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        let mut b = leases.request(None, false, true);
        let lb = b.granted().await;
        let mut c = leases.request(None, false, true);

        tokio::time::advance(Duration::from_secs(25)).await;
        c.changed(Instant::now());
        assert!(
            la.yield_requested() && !lb.yield_requested(),
            "a has been quiet 35 s, b only 25 s (under min_hot): a yields"
        );
        drop(la);
        let lc = c.granted().await;
        assert_eq!(leases.held(), 2);

        let mut d = leases.request(None, false, true);
        lc.touch(Instant::now());
        d.changed(Instant::now());
        assert!(
            !lb.yield_requested() && !lc.yield_requested(),
            "nobody has been quiet min_hot: d keeps polling"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        d.changed(Instant::now());
        assert!(lb.yield_requested(), "b has now been quiet 35 s");
        drop(lb);
        let _ld = d.granted().await;
        assert_eq!(
            leases
                .counters
                .preemptions
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_the_waiter_that_changed_last_and_urgent_ones_first() {
        let leases = leases(1);
        let mut holder = leases.request(None, false, true);
        let lease = holder.granted().await;
        let mut old = leases.request(None, false, true);
        let mut recent = leases.request(None, false, true);
        recent.changed(Instant::now());
        drop(lease);
        let got = recent.granted().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(1), old.granted())
                .await
                .is_err(),
            "the one that changed goes first"
        );
        let mut urgent = leases.request(None, true, false);
        drop(got);
        let _u = urgent.granted().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(1), old.granted())
                .await
                .is_err(),
            "an urgent request goes before any watch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_withdrawn_request_leaves_nothing_behind() {
        let leases = leases(1);
        let request = leases.request(None, false, true);
        drop(request);
        assert_eq!(
            leases.held(),
            0,
            "a lease lent to a dropped request is freed"
        );
        let mut again = leases.request(None, false, true);
        let _l = tokio::time::timeout(Duration::from_secs(1), again.granted())
            .await
            .expect("the slot is free again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_is_safe_for_min_hot_after_it_got_the_slot_whatever_its_last_change() {
        let leases = leases(1);
        let mut first = leases.request(None, false, true);
        let held = first.granted().await;
        // A loop that last changed long ago waits for the slot and gets it.
        let long_ago = Instant::now();
        tokio::time::advance(Duration::from_secs(600)).await;
        let mut returning = leases.request(Some(long_ago), false, true);
        drop(held);
        let lent = returning.granted().await;
        let rival = leases.request(None, false, true);
        rival.changed(Instant::now());
        assert!(
            !lent.yield_requested(),
            "lent just now: not asked to yield on the next change elsewhere"
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        rival.changed(Instant::now());
        assert!(
            lent.yield_requested(),
            "quiet min_hot since it got the slot: yields"
        );
    }

    #[test]
    fn the_victim_is_the_holder_quiet_longest_past_min_hot() {
        let t0 = Instant::now();
        let min = Duration::from_secs(30);
        let now = t0 + Duration::from_secs(100);
        let holders = [
            (1, t0 + Duration::from_secs(90)),
            (2, t0 + Duration::from_secs(10)),
            (3, t0 + Duration::from_secs(40)),
        ];
        assert_eq!(victim(holders, now, min), Some(2));
        assert_eq!(
            victim([(1, t0 + Duration::from_secs(80))], now, min),
            None,
            "quiet 20 s only"
        );
        assert_eq!(victim([], now, min), None);
    }
}
