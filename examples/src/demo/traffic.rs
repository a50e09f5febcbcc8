//! The demo's callers: tasks calling `Add` through the channel without pause, each call with
//! a deadline, tallied per step. They can be paused, so every call of a step ends inside it
//! and the step's tally can be compared with what the servers counted. Uses nothing else of
//! the demo.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use grpc_resolve::DiscoveredChannel;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Request;

use crate::pb::AddRequest;
use crate::pb::adder_client::AdderClient;

/// Distinct error texts kept per step; the rest are counted under one line.
const MAX_ERROR_KINDS: usize = 8;
/// Past the call's own deadline, how long the caller waits before giving up on the channel
/// itself (a deadline the channel did not enforce is a failure too, never a hang).
const DEADLINE_SLACK: Duration = Duration::from_millis(500);

/// The calls of one step.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    /// Successful calls by the instance that answered.
    pub(crate) ok: BTreeMap<String, u64>,
    /// Failed calls.
    pub(crate) failed: u64,
    /// Failed calls by their error text (`Code: message`).
    pub(crate) errors: BTreeMap<String, u64>,
    /// The longest time without a successful call.
    pub(crate) max_gap: Duration,
    last_ok: Instant,
}

impl Tally {
    pub(crate) fn new(now: Instant) -> Self {
        Tally {
            ok: BTreeMap::new(),
            failed: 0,
            errors: BTreeMap::new(),
            max_gap: Duration::ZERO,
            last_ok: now,
        }
    }

    /// All successful calls.
    pub(crate) fn ok_total(&self) -> u64 {
        self.ok.values().sum()
    }

    fn succeeded(&mut self, instance: String, now: Instant) {
        *self.ok.entry(instance).or_default() += 1;
        self.gap_until(now);
        self.last_ok = now;
    }

    fn failed(&mut self, error: String) {
        self.failed += 1;
        let kinds = self.errors.len();
        let key = if kinds < MAX_ERROR_KINDS || self.errors.contains_key(&error) {
            error
        } else {
            "(other errors)".to_owned()
        };
        *self.errors.entry(key).or_default() += 1;
    }

    fn gap_until(&mut self, now: Instant) {
        self.max_gap = self
            .max_gap
            .max(now.saturating_duration_since(self.last_ok));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Paused,
    Stopped,
}

/// Whether calls may start, and how many are in flight: one value, changed atomically, so
/// a pause sees every call that got past the gate.
#[derive(Debug, Clone, Copy)]
struct Gate {
    phase: Phase,
    in_flight: usize,
}

#[derive(Debug)]
struct Shared {
    gate: watch::Sender<Gate>,
    tally: Mutex<Tally>,
    /// Successful calls by instance since the start (for rates).
    totals: Mutex<BTreeMap<String, u64>>,
    /// When the current pause was asked for.
    paused_at: Mutex<Option<Instant>>,
}

/// The running callers.
#[derive(Debug)]
pub(crate) struct Traffic {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Traffic ===

impl Traffic {
    /// Starts `concurrency` callers on `channel`, paused; [`Traffic::resume`] lets them go.
    pub(crate) fn start(
        channel: DiscoveredChannel,
        concurrency: usize,
        deadline: Duration,
    ) -> Self {
        let (gate, _) = watch::channel(Gate {
            phase: Phase::Paused,
            in_flight: 0,
        });
        let shared = Arc::new(Shared {
            gate,
            tally: Mutex::new(Tally::new(Instant::now())),
            totals: Mutex::new(BTreeMap::new()),
            paused_at: Mutex::new(Some(Instant::now())),
        });
        let tasks = (0..concurrency.max(1))
            .map(|worker| {
                let client = AdderClient::new(channel.clone());
                tokio::spawn(caller(client, shared.clone(), worker as i64, deadline))
            })
            .collect();
        Traffic {
            shared,
            tasks: Mutex::new(tasks),
        }
    }

    /// Lets the callers call again, with a fresh gap clock.
    pub(crate) fn resume(&self) {
        let now = Instant::now();
        lock(&self.shared.tally).last_ok = now;
        *lock(&self.shared.paused_at) = None;
        self.shared.gate.send_modify(|g| g.phase = Phase::Running);
    }

    /// Stops new calls and waits until the calls in flight have ended (each within its
    /// deadline).
    pub(crate) async fn pause(&self) {
        *lock(&self.shared.paused_at) = Some(Instant::now());
        self.shared.gate.send_modify(|g| g.phase = Phase::Paused);
        let mut gate = self.shared.gate.subscribe();
        let _ = gate.wait_for(|g| g.in_flight == 0).await;
    }

    /// The tally since the last take (call while paused), and a fresh one.
    pub(crate) fn take(&self) -> Tally {
        let now = Instant::now();
        let until = lock(&self.shared.paused_at).unwrap_or(now);
        let mut tally = std::mem::replace(&mut *lock(&self.shared.tally), Tally::new(now));
        tally.gap_until(until);
        tally
    }

    /// The current step's tally so far.
    pub(crate) fn peek(&self) -> Tally {
        lock(&self.shared.tally).clone()
    }

    /// Successful calls by instance since the start.
    pub(crate) fn totals(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.totals).clone()
    }

    /// Calls in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.gate.borrow().in_flight
    }

    /// Stops the callers (after their calls in flight) and waits for them.
    pub(crate) async fn stop(&self) {
        self.shared.gate.send_modify(|g| g.phase = Phase::Stopped);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// One caller: waits at the gate, calls, records, again.
async fn caller(
    mut client: AdderClient<DiscoveredChannel>,
    shared: Arc<Shared>,
    mut a: i64,
    deadline: Duration,
) {
    let mut gate = shared.gate.subscribe();
    loop {
        let mut entered = false;
        let mut stopped = false;
        shared.gate.send_if_modified(|g| match g.phase {
            Phase::Running => {
                g.in_flight += 1;
                entered = true;
                true
            }
            Phase::Paused => false,
            Phase::Stopped => {
                stopped = true;
                false
            }
        });
        if stopped {
            return;
        }
        if !entered {
            if gate.wait_for(|g| g.phase != Phase::Paused).await.is_err() {
                return;
            }
            continue;
        }
        let mut request = Request::new(AddRequest { a, b: 1 });
        request.set_timeout(deadline);
        let outcome = tokio::time::timeout(deadline + DEADLINE_SLACK, client.add(request)).await;
        let now = Instant::now();
        {
            let mut tally = lock(&shared.tally);
            match outcome {
                Ok(Ok(reply)) if reply.get_ref().sum == a + 1 => {
                    let instance = reply.into_inner().instance_id;
                    *lock(&shared.totals).entry(instance.clone()).or_default() += 1;
                    tally.succeeded(instance, now);
                }
                Ok(Ok(reply)) => tally.failed(format!(
                    "wrong sum: {a} + 1 answered as {}",
                    reply.get_ref().sum
                )),
                Ok(Err(status)) => {
                    tally.failed(format!("{:?}: {}", status.code(), status.message()))
                }
                Err(_) => tally.failed(format!(
                    "no answer within the deadline ({deadline:?}) plus {DEADLINE_SLACK:?}"
                )),
            }
        }
        shared.gate.send_modify(|g| g.in_flight -= 1);
        a = a.wrapping_add(1) % 1_000_000_000;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_is_the_longest_stretch_without_a_success_including_the_end() {
        let t0 = Instant::now();
        let mut tally = Tally::new(t0);
        tally.succeeded("a".into(), t0 + Duration::from_millis(10));
        tally.failed("Unavailable: x".into());
        tally.succeeded("b".into(), t0 + Duration::from_millis(510));
        tally.gap_until(t0 + Duration::from_millis(600));
        assert_eq!(
            tally.max_gap,
            Duration::from_millis(500),
            "expected 10→510 ms"
        );
        tally.gap_until(t0 + Duration::from_millis(1110));
        assert_eq!(
            tally.max_gap,
            Duration::from_millis(600),
            "expected 510→1110 ms"
        );
        assert_eq!(tally.ok_total(), 2, "expected 2 successes");
        assert_eq!(tally.failed, 1, "expected 1 failure");
    }

    #[test]
    fn error_kinds_are_bounded_but_every_failure_counts() {
        let mut tally = Tally::new(Instant::now());
        for i in 0..20 {
            tally.failed(format!("Unavailable: endpoint {i}"));
        }
        assert_eq!(tally.failed, 20, "expected every failure counted");
        assert_eq!(
            tally.errors.len(),
            MAX_ERROR_KINDS + 1,
            "expected {MAX_ERROR_KINDS} kinds and one line for the rest"
        );
        assert_eq!(
            tally.errors.values().sum::<u64>(),
            20,
            "expected no failure lost"
        );
    }
}
