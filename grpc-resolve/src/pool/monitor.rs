//! Finding endpoints whose calls stopped completing (a hung process: its kernel still
//! accepts and acknowledges, nothing answers) and taking them out of rotation: one task per
//! pool, waking every [`TICK`], with the decision a pure function, [`suspects`].
//!
//! The rule: an endpoint is suspected when it has calls waiting for an answer, has
//! answered nothing for longer than the threshold (the floor, 300 ms by default, or four
//! times the pool's recent mean answer time if that is longer), and another endpoint
//! answered after its silence began (so the silence is the endpoint's, not the network's
//! or this process's). A suspect leaves rotation at once and is probed with a
//! `grpc.health.v1.Health/Check` on its connection, limited by the same threshold (and,
//! at the same time, a fresh connection is made to see whether the server speaks at
//! all): any
//! answer brings it back (its silence counted afresh, and allowed twice as long until one
//! of its calls is answered, so a long call is not probed over and over); no answer but a
//! fresh connection that the server opened with its SETTINGS retires the old connection
//! gently (its calls go on, new ones take a new connection: the old one may just be at
//! its stream limit); neither cuts the connection, failing
//! the calls stuck on it, and the endpoint comes back through its reconnect loop, which
//! counts a connection as up only once the server speaks (so a hung process stays out
//! until it resumes). The last usable endpoint is never suspected.
//!
//! Why these figures: a hung endpoint costs every caller that picks it; at 8 callers and
//! 2 of 3 endpoints hung, every caller is stuck within milliseconds, so the time to free
//! them is the detection plus the probe, 300–400 ms plus 300 ms, under the 1 s a caller
//! should ever wait for a healthy backend. A floor below 300 ms would suspect endpoints of
//! ordinary GC pauses and scheduling hiccups; four times the mean answer time keeps a
//! service of slow calls from being suspected for a normal slow call. A false suspicion
//! costs a probe and a moment out of rotation, not a call: only an unanswered probe cuts.
//! Probing only suspects, never idle connections, keeps clear of servers that punish
//! frequent pings (grpc-go answers pings on idle connections more often than every 5
//! minutes with GOAWAY `ENHANCE_YOUR_CALM`), and a `Check` is an ordinary call for them.
//!
//! May use: `endpoint`, `progress`, `grpc` (the probe), `http2` (the fresh connection),
//! `settings`, `stats`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use smallvec::SmallVec;
use tokio::time::{Instant, MissedTickBehavior};

use super::endpoint::{Endpoint, LazyNow};
use super::grpc;
use super::http2;
use super::progress::{Clock, Seen, TICK};
use super::settings::Settings;
use super::stats::Counters;

/// How many times the mean answer time an endpoint may stay silent before it is suspected.
pub(crate) const LATENCY_MULTIPLE: u64 = 4;

/// The ticks of silence that make an endpoint a suspect: more than `floor`, and more than
/// [`LATENCY_MULTIPLE`] times the mean answer time `latency` (in ticks).
pub(crate) fn threshold(floor: Duration, latency: u64) -> u64 {
    let floor = u64::try_from(floor.as_millis() / TICK.as_millis()).unwrap_or(u64::MAX);
    floor.max(LATENCY_MULTIPLE.saturating_mul(latency))
}

/// Which endpoints to suspect at tick `now`, given whether each is usable and what its
/// progress shows, and the `threshold` in ticks (doubled for each probe an endpoint
/// answered since its calls last did, up to 64 times). Never all the usable ones.
///
/// ```text
/// usable, waiting, silent since, last answer   -> suspect?
/// a: yes, 3 calls, tick 10,      tick 10       -> yes at tick 17+, if b answered after 10
/// b: yes, 2 calls, tick 16,      tick 16       -> no: it answers
/// ```
pub(crate) fn suspects(
    endpoints: &[(bool, Seen)],
    now: u64,
    threshold: u64,
) -> SmallVec<[usize; 4]> {
    let mut found: SmallVec<[usize; 4]> = endpoints
        .iter()
        .enumerate()
        .filter(|(i, (usable, seen))| {
            *usable
                && seen.waiting > 0
                && now.saturating_sub(seen.since) > threshold << seen.excused.min(6)
                && endpoints
                    .iter()
                    .enumerate()
                    // In the same tick counts: at 8 callers and 2 of 3 hung, every caller
                    // is stuck within milliseconds, and the healthy endpoint's last answer
                    // may share a tick with the hung ones' last.
                    .any(|(j, (_, other))| j != *i && other.answered >= seen.since)
        })
        .map(|(i, _)| i)
        .collect();
    let usable = endpoints.iter().filter(|(usable, _)| *usable).count();
    if !found.is_empty() && found.len() >= usable {
        // Keep the one that answered last.
        let keep = found
            .iter()
            .enumerate()
            .max_by_key(|(_, i)| endpoints[**i].1.answered)
            .map(|(at, _)| at);
        if let Some(keep) = keep {
            found.remove(keep);
        }
    }
    found
}

/// What the monitor needs from the pool it watches.
pub(crate) trait Watched: Send + Sync + 'static {
    fn clock(&self) -> &Clock;
    fn counters(&self) -> &Counters;
    /// Every endpoint now.
    fn endpoints(&self) -> Vec<Arc<Endpoint>>;
    /// The silence floor (`None`: detection is off).
    fn unresponsive_after(&self) -> Option<Duration>;
    /// The health service the probe asks about.
    fn probe_service(&self) -> &str;
    /// How connections are made, for the probe's fresh one.
    fn settings(&self) -> &Settings;
    /// Connection `generation` of `endpoint` takes no new calls; it reconnects.
    fn connection_stale(&self, endpoint: &Endpoint, generation: u64);
    fn endpoint_changed(&self);
}

/// The monitor of `pool`: advances its clock and suspects, probes and cuts, until the pool
/// is gone or the task is aborted.
pub(crate) async fn run<W: Watched>(pool: Weak<W>) {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let now =
            u64::try_from(started.elapsed().as_millis() / TICK.as_millis()).unwrap_or(u64::MAX);
        pool.clock().set(now);
        let Some(floor) = pool.unresponsive_after() else {
            continue;
        };
        let endpoints = pool.endpoints();
        let mut lazy = LazyNow::default();
        let seen: SmallVec<[(bool, Seen); 16]> = endpoints
            .iter()
            .map(|e| (e.is_usable(&mut lazy), e.progress().seen()))
            .collect();
        let threshold = threshold(floor, pool.clock().latency());
        for i in suspects(&seen, now, threshold) {
            let endpoint = endpoints[i].clone();
            let Some((connection, generation)) = endpoint.suspect() else {
                continue;
            };
            let silent = TICK * u32::try_from(now - seen[i].1.since).unwrap_or(u32::MAX);
            tracing::warn!(endpoint = %endpoint.id, authority = %endpoint.authority, waiting = seen[i].1.waiting, ?silent, "endpoint stopped answering while others answer; out of rotation, probing");
            pool.endpoint_changed();
            let limit = TICK * u32::try_from(threshold).unwrap_or(u32::MAX);
            let weak = Arc::downgrade(&pool);
            tokio::spawn(async move {
                let (service, settings) = match weak.upgrade() {
                    Some(pool) => (pool.probe_service().to_owned(), pool.settings().clone()),
                    None => return,
                };
                // At once, on a fresh connection: whether the server still speaks at all
                // (a hung process never sends its SETTINGS), in case the probe on the old
                // one waits behind its stream limit.
                let fresh = async {
                    let authority = endpoint.authority.parse().ok()?;
                    let connecting = http2::connect(&authority, &settings);
                    tokio::time::timeout(limit, connecting).await.ok()?.ok()
                };
                let (alive, fresh) =
                    tokio::join!(grpc::answers(&connection, &service, limit), fresh);
                // The fresh connection only proves a point; dropped unused, it closes. The
                // reconnect loop makes its own.
                let speaks = fresh.is_some();
                drop(fresh);
                let Some(pool) = weak.upgrade() else {
                    return;
                };
                if alive {
                    if endpoint.answered_probe(generation, pool.clock().now()) {
                        tracing::info!(endpoint = %endpoint.id, "endpoint answered the probe; back in rotation");
                        pool.endpoint_changed();
                    }
                } else if speaks {
                    // The server speaks, but not on this connection in time: the calls on
                    // it may go on, new ones take a new connection.
                    tracing::warn!(endpoint = %endpoint.id, authority = %endpoint.authority, ?limit, "endpoint did not answer the probe on its connection but speaks on a new one; reconnecting");
                    pool.connection_stale(&endpoint, generation);
                } else {
                    tracing::warn!(endpoint = %endpoint.id, authority = %endpoint.authority, ?limit, "endpoint did not answer the probe; cutting its connection");
                    pool.counters().endpoint_unresponsive();
                    connection.cut();
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(waiting: usize, since: u64, answered: u64) -> Seen {
        Seen {
            waiting,
            since,
            answered,
            excused: 0,
        }
    }

    #[test]
    fn each_answered_probe_doubles_the_silence_allowed() {
        let excused = Seen {
            excused: 2,
            ..seen(1, 10, 10)
        };
        let endpoints = [(true, excused), (true, seen(1, 40, 40))];
        assert!(
            suspects(&endpoints, 34, 6).is_empty(),
            "after two answered probes, 24 ticks of silence are allowed"
        );
        assert_eq!(
            suspects(&endpoints, 35, 6).as_slice(),
            &[0],
            "25 are too many"
        );
    }

    #[test]
    fn a_silent_endpoint_with_calls_waiting_is_suspected_while_another_answers() {
        let endpoints = [(true, seen(3, 10, 10)), (true, seen(2, 16, 16))];
        assert!(
            suspects(&endpoints, 16, 6).is_empty(),
            "six ticks of silence are not more than six"
        );
        assert_eq!(
            suspects(&endpoints, 17, 6).as_slice(),
            &[0],
            "seven are, and b answered since"
        );
        let idle = [(true, seen(0, 10, 10)), (true, seen(2, 16, 16))];
        assert!(
            suspects(&idle, 30, 6).is_empty(),
            "an endpoint with nothing waiting is never suspected"
        );
        let all_quiet = [(true, seen(3, 10, 5)), (true, seen(2, 10, 5))];
        assert!(
            suspects(&all_quiet, 30, 6).is_empty(),
            "nobody answered since: the silence is not the endpoint's"
        );
    }

    #[test]
    fn the_last_usable_endpoint_is_never_suspected() {
        // b answered after a went silent, and a after b did: each suspects the other.
        let endpoints = [
            (true, seen(1, 12, 12)),
            (true, seen(1, 11, 11)),
            (false, seen(0, 0, 20)),
        ];
        assert_eq!(
            suspects(&endpoints, 30, 6).as_slice(),
            &[1],
            "a, which answered last, stays"
        );
        let alone = [(true, seen(4, 10, 10)), (false, seen(0, 20, 20))];
        assert!(
            suspects(&alone, 30, 6).is_empty(),
            "the only usable endpoint stays, whoever else answers"
        );
    }

    #[test]
    fn the_threshold_is_the_floor_or_four_mean_answer_times() {
        assert_eq!(
            threshold(Duration::from_millis(300), 0),
            6,
            "300 ms is six ticks"
        );
        assert_eq!(threshold(Duration::from_millis(300), 2), 8, "4 x 2 ticks");
    }
}
