//! The keep-alive task: while the server runs, it registers again what failed or what the
//! registry forgot, and reports TTL checks from the health state. Uses only the registry,
//! the health handle and the crate's metrics; the builder and the running server use it.
//!
//! Tracing: a first registration runs in a `register` span, the task in a `keepalive`
//! span, each naming the service and instance id, so every retry, re-registration and
//! report logged is tied to its registration.
//!
//! # Coming back as fast as the registry does
//!
//! While the registry cannot be reached, a round ends at its first failed call, so a down
//! agent sees one request per server per round, whatever the number of registrations, and
//! never more than one at a time (each waits for the last). Rounds follow
//! [`UNREACHABLE_BACKOFF`]: 100 ms doubling to a 1 s cap, each wait drawn from the upper
//! half, so about 1.3 requests a second per server once capped. For a registration the
//! registry had accepted that first call is a read (`is_registered`, Consul's
//! `GET /v1/agent/service/:id`, answered from the agent's memory); a down agent only refuses
//! the connection. N servers on one agent cost it about 1.3·N refused connections a second,
//! a few microseconds of kernel work each: 130/s for 100 servers, far below what an agent
//! serves when up. The cap bounds the time from the agent answering again to the servers'
//! next attempt to 1 s.
//!
//! When the registry answers again but has forgotten a registration, registering it again
//! with only the check would leave it critical until the registry's first run of the check,
//! which Consul schedules at a random point in the first interval. So a registration lost
//! in an outage is registered with the current health state as its check's initial status
//! ([`claims_health`]), and the registry's runs confirm or correct it from there.

use std::sync::Arc;
use std::time::Duration;

use discovery_core::{Backoff, Registration, Registry};
use health::Health;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::metrics;

/// One registration and the health service whose status it reports.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) registration: Registration,
    pub(crate) health_service: String,
}

/// Where a registration stands with the registry, as far as the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// The registry has not accepted it yet.
    New,
    /// The registry accepted it and knew it at the last look.
    Registered,
    /// The registry accepted it, then could not be asked about it: an outage, or a
    /// refusal of a later call.
    Lost,
}

/// Whether registering `standing` claims the health state as its check's initial status,
/// instead of leaving the check critical until the registry first runs it.
///
/// - A TTL check always does: the server is the check's only source, and it reports the
///   same state right after registering anyway.
/// - A check the registry runs (gRPC, HTTP, TCP) does for a registration lost in an outage:
///   the registry ran that check at that address for as long as it knew the instance, and
///   forgot it through no verdict of the check.
/// - It does not on a first registration: the registry's first run is the only proof that
///   the advertised address can be reached (a wrong interface, a firewall), and Consul's
///   critical-until-proven default keeps a server nobody can reach out of the listings.
/// - It does not for one the registry forgot while answering all along: that may be the
///   registry's verdict (Consul reaps an instance critical past its deregister-after), and
///   claiming it would flap an unreachable server back to passing after every reaping.
pub(crate) fn claims_health(ttl: bool, standing: Standing) -> bool {
    ttl || standing == Standing::Lost
}

/// The registry, shared by the server handle and its maintenance task.
#[derive(Clone)]
pub(crate) struct SharedRegistry(pub(crate) Arc<dyn Registry>);

impl std::fmt::Debug for SharedRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

/// The first registration of `entry`, at start; a failure is retried by the keep-alive
/// task.
#[tracing::instrument(name = "register", skip_all, fields(
    service = %entry.registration.instance.service,
    id = %entry.registration.instance.id,
))]
pub(crate) async fn register_first(
    registry: &dyn Registry,
    health: &Health,
    ttl: bool,
    entry: &Entry,
) -> Standing {
    let registration = claimed(entry, health, ttl, Standing::New);
    let id = &registration.instance.id;
    match register(registry, &registration).await {
        Ok(()) => {
            tracing::info!(%id, addr = %registration.instance.authority(), "registered");
            Standing::Registered
        }
        Err(err) => {
            tracing::warn!(%id, error = %err, "registration failed; serving anyway and retrying");
            Standing::New
        }
    }
}

/// Registers `registration`, counting the attempt.
async fn register(
    registry: &dyn Registry,
    registration: &Registration,
) -> Result<(), discovery_core::Error> {
    let result = registry.register(registration).await;
    metrics::attempted(&registration.instance.service, result.is_ok());
    result
}

/// `entry`'s registration, with the health state as initial status where
/// [`claims_health`] says so.
fn claimed(entry: &Entry, health: &Health, ttl: bool, standing: Standing) -> Registration {
    let registration = entry.registration.clone();
    if registration.check.is_some() && claims_health(ttl, standing) {
        let (status, _) = health.registry_status(&entry.health_service);
        registration.initial_status(status)
    } else {
        registration
    }
}

/// The running keep-alive task.
#[derive(Debug)]
pub(crate) struct KeepAlive {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

// === impl KeepAlive ===

impl KeepAlive {
    /// Starts tending `entries`, each with where its first registration left it.
    /// `ttl` is set in TTL mode; `interval` is the check interval otherwise.
    pub(crate) fn spawn(
        registry: SharedRegistry,
        entries: Vec<(Entry, Standing)>,
        health: Health,
        ttl: Option<Duration>,
        interval: Duration,
    ) -> Self {
        let (stop, stop_rx) = oneshot::channel();
        // A failed first registration is retried on the fast schedule: most likely the
        // registry is not up yet.
        let retry = entries
            .iter()
            .any(|(_, standing)| *standing != Standing::Registered)
            .then_some(Retry {
                rounds: 0,
                backoff: UNREACHABLE_BACKOFF,
            });
        for (entry, standing) in &entries {
            metrics::moved(service_of(entry), None, Some(standing.label()));
        }
        let span = match entries.first() {
            Some((entry, _)) => tracing::info_span!(
                "keepalive",
                service = %entry.registration.instance.service,
                id = %entry.registration.instance.id,
            ),
            None => tracing::info_span!("keepalive"),
        };
        let task = tokio::spawn(
            Maintenance {
                registry,
                entries,
                health,
                ttl,
                interval,
                retry,
            }
            .run(stop_rx)
            .instrument(span),
        );
        KeepAlive { stop, task }
    }

    /// Ends the task and waits until it has, so no renewal can follow.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The waits between rounds while the registry cannot be reached: short enough that a
/// server is back within a second of the registry answering again, capped and jittered so
/// a down registry is not hammered (see the module docs for the cost).
pub(crate) const UNREACHABLE_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(1));

/// The waits between rounds while the registry answers but refuses a call (a rejected
/// registration, a denied token): asking again within a second would not change its mind.
pub(crate) const REFUSED_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

/// Failed rounds in a row, and the schedule of the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Failed rounds so far (0 before the first retry).
    pub(crate) rounds: u32,
    /// [`UNREACHABLE_BACKOFF`] or [`REFUSED_BACKOFF`], from the last failure.
    pub(crate) backoff: Backoff,
}

/// The wait before the next round: `cadence` (the check interval, or a third of the TTL)
/// while every registration stands, a backoff after failed rounds, never longer than
/// `cadence`, so TTL reports stay on time while one registration is refused.
pub(crate) fn pause(retry: Option<Retry>, cadence: Duration) -> Duration {
    match retry {
        None => cadence,
        Some(retry) => retry.backoff.delay(retry.rounds).min(cadence),
    }
}

/// Keeps the registrations alive while the server runs.
///
/// Every check interval (a third of the TTL in TTL mode) it looks at each registration:
/// one that failed is registered again, one the registry forgot (an agent restarted with
/// empty state) is registered again at once, and TTL checks get the status the health
/// state derives. After a failed round it retries on a backoff. Registry errors are logged
/// and retried, never fatal.
struct Maintenance {
    registry: SharedRegistry,
    entries: Vec<(Entry, Standing)>,
    health: Health,
    ttl: Option<Duration>,
    interval: Duration,
    /// `Some` while some registration does not stand.
    retry: Option<Retry>,
}

// === impl Maintenance ===

impl Maintenance {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            let cadence = match self.ttl {
                // Three reports per TTL: one lost report does not let the check expire.
                Some(ttl) => jitter(ttl / 3),
                None => jitter(self.interval),
            };
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(pause(self.retry, cadence)) => {}
            }
            let before: Vec<Standing> = self.entries.iter().map(|(_, s)| *s).collect();
            self.retry = self.round().await;
            for ((entry, after), before) in self.entries.iter().zip(before) {
                metrics::moved(service_of(entry), Some(before.label()), Some(after.label()));
            }
        }
    }

    /// Tends every registration; returns the retry schedule if some call failed.
    async fn round(&mut self) -> Option<Retry> {
        let rounds = self.retry.map_or(0, |r| r.rounds.saturating_add(1));
        let mut backoff = None;
        for i in 0..self.entries.len() {
            let (entry, standing) = &self.entries[i];
            let id = &entry.registration.instance.id;
            let outcome = tend(
                &*self.registry.0,
                &self.health,
                self.ttl.is_some(),
                entry,
                *standing,
            )
            .await;
            let err = match outcome {
                Ok(()) => {
                    self.entries[i].1 = Standing::Registered;
                    continue;
                }
                Err(err) => err,
            };
            // Repeats of one outage go to debug: a warning per second helps nobody.
            if err.is_retryable() && self.retry.is_some() {
                tracing::debug!(%id, error = %err, rounds, "registry still unreachable; retrying");
            } else {
                tracing::warn!(%id, error = %err, "registry call failed; retrying");
            }
            if !err.is_retryable() {
                self.entries[i].1.lose();
                backoff.get_or_insert(REFUSED_BACKOFF);
                continue;
            }
            // Unreachable: every registration is in doubt, and the next calls would fail
            // the same way, so the round ends here.
            for (_, standing) in &mut self.entries {
                standing.lose();
            }
            return Some(Retry {
                rounds,
                backoff: UNREACHABLE_BACKOFF,
            });
        }
        if backoff.is_none() && self.retry.is_some() {
            tracing::info!(
                rounds,
                "registry answering again; every registration stands"
            );
        }
        backoff.map(|backoff| Retry { rounds, backoff })
    }
}

impl Drop for Maintenance {
    /// The server stops (or its handle was dropped): its registrations leave the counts.
    fn drop(&mut self) {
        for (entry, standing) in &self.entries {
            metrics::moved(service_of(entry), Some(standing.label()), None);
        }
    }
}

fn service_of(entry: &Entry) -> &str {
    &entry.registration.instance.service
}

// === impl Standing ===

impl Standing {
    /// The `state` label of the registrations gauge.
    fn label(self) -> &'static str {
        match self {
            Standing::New => "new",
            Standing::Registered => "registered",
            Standing::Lost => "lost",
        }
    }

    /// After a failed call: a registration accepted before is now in doubt.
    fn lose(&mut self) {
        if *self == Standing::Registered {
            *self = Standing::Lost;
        }
    }
}

/// One round of care for one registration.
async fn tend(
    registry: &dyn Registry,
    health: &Health,
    ttl: bool,
    entry: &Entry,
    standing: Standing,
) -> Result<(), discovery_core::Error> {
    let id = &entry.registration.instance.id;
    if standing == Standing::New {
        register(registry, &claimed(entry, health, ttl, standing)).await?;
        tracing::info!(%id, "registered");
        if !ttl {
            return Ok(());
        }
    }
    if ttl {
        let (status, output) = health.registry_status(&entry.health_service);
        metrics::reported(service_of(entry), status);
        return match registry.report(id, status, &output).await {
            Err(err) if err.is_not_found() => {
                tracing::warn!(%id, "registry forgot the instance; registering again");
                metrics::reregistered(service_of(entry));
                register(registry, &claimed(entry, health, ttl, standing)).await?;
                metrics::reported(service_of(entry), status);
                registry.report(id, status, &output).await
            }
            other => other,
        };
    }
    if !registry.is_registered(id).await? {
        let claimed = claimed(entry, health, ttl, standing);
        tracing::warn!(%id, initial_status = ?claimed.initial_status, "registry forgot the instance; registering again");
        metrics::reregistered(service_of(entry));
        register(registry, &claimed).await?;
    }
    Ok(())
}

/// `d` scaled by a random factor in [0.8, 1.0): spreads many servers' calls apart.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ttl_checks_and_registrations_lost_in_an_outage_claim_the_health_state() {
        assert!(
            claims_health(true, Standing::New),
            "TTL: the server is the check"
        );
        assert!(claims_health(true, Standing::Registered));
        assert!(
            claims_health(false, Standing::Lost),
            "lost in an outage: the registry's check had run at this address"
        );
        assert!(
            !claims_health(false, Standing::New),
            "a first registration waits for the registry's own first run"
        );
        assert!(
            !claims_health(false, Standing::Registered),
            "forgotten while the registry answered (maybe reaped): no claim"
        );
    }

    #[test]
    fn an_unreachable_registry_is_probed_at_least_every_second_but_no_faster_than_half() {
        let cadence = Duration::from_secs(10);
        for rounds in [0, 3, 4, 30, 300, u32::MAX] {
            let retry = Retry {
                rounds,
                backoff: UNREACHABLE_BACKOFF,
            };
            let wait = pause(Some(retry), cadence);
            assert!(
                wait <= Duration::from_secs(1),
                "after {rounds} failed rounds the next probe is within 1 s, got {wait:?}"
            );
            if rounds >= 4 {
                assert!(
                    wait >= Duration::from_millis(500),
                    "capped waits stay in the upper half: at most 2 probes/s, got {wait:?}"
                );
            }
        }
    }

    #[test]
    fn a_refusing_registry_is_asked_less_often_but_never_less_than_the_cadence() {
        let retry = Retry {
            rounds: 30,
            backoff: REFUSED_BACKOFF,
        };
        let wait = pause(Some(retry), Duration::from_secs(30));
        assert!(
            wait >= Duration::from_secs(5) && wait <= Duration::from_secs(10),
            "a refusal backs off to 5-10 s, got {wait:?}"
        );
        let wait = pause(Some(retry), Duration::from_secs(3));
        assert_eq!(
            wait,
            Duration::from_secs(3),
            "never past the cadence, so TTL reports stay on time"
        );
        assert_eq!(
            pause(None, Duration::from_secs(3)),
            Duration::from_secs(3),
            "the cadence while every registration stands"
        );
    }
}
