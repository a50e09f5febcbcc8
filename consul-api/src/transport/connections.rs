//! A transport's requests, routed onto the budget: the protocol learned first (an HTTPS
//! agent is asked once, on a connection of its own), then each request on a blocking slot,
//! a short slot or a poll's turn, one at a time per HTTP/1.1 connection. Uses the split,
//! the leases, the pacer, the wire, the counters and the crate's metrics.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

use super::exchange::{ConnectionId, Exchange};
use super::lease::{Lease, Leases};
use super::pacer::Pacer;
use super::split::{Protocol, Split};
use super::stats::{ClientStats, Counters};
use super::wire::{Answer, Wire};
use crate::config::Config;
use crate::error::Error;
use crate::metrics::TransportMetrics;

/// How long an HTTP/1.1 connection rests between two requests. A connection goes back to
/// its pool a moment after its answer is read; a request sent before that would open a
/// second connection beside it.
const REUSE_GAP: Duration = Duration::from_millis(1);

/// How long a blocking slot stays with its holder after the holder's last change (see
/// `lease`).
const MIN_HOT: Duration = Duration::from_secs(30);

/// Which part of the budget a request uses.
#[derive(Debug, Clone, Default)]
pub(crate) enum Route {
    /// A blocking query takes a blocking slot for its time; anything else a short one.
    #[default]
    Auto,
    /// A poll: a short slot, within the polls' share, after its turn.
    Poll,
    /// A held blocking slot.
    Lease(Arc<Lease>),
}

/// The connections to one agent.
pub(crate) struct Transport {
    config: Config,
    /// Where requests go: the address, or the TLS server name standing for it.
    base: Url,
    wire: Wire,
    /// Builds requests (its own pool is never used).
    builder: reqwest::Client,
    lanes: OnceLock<Lanes>,
    probing: tokio::sync::Mutex<()>,
    counters: Arc<Counters>,
    metrics: TransportMetrics,
}

/// The budget, spent, once the protocol is known.
#[derive(Debug)]
struct Lanes {
    split: Split,
    leases: Arc<Leases>,
    short: Semaphore,
    polls: Semaphore,
    free_short: Mutex<Vec<usize>>,
    /// Over HTTP/1.1, when each connection may next be used.
    gates: Vec<Mutex<Instant>>,
    pacer: Pacer,
    /// Requests on each connection now, for the connections-in-use metric.
    busy: Vec<AtomicUsize>,
}

// === impl Transport ===

impl Transport {
    /// Connections over the network as `config` says.
    pub(crate) fn new(config: Config) -> Result<Self, Error> {
        let counters = Arc::new(Counters::default());
        let wire = Wire::http(&config, counters.clone())?;
        Self::with_wire(config, wire, counters)
    }

    /// Connections to an in-process stand-in for the agent.
    pub(crate) fn with_exchange(
        config: Config,
        exchange: Arc<dyn Exchange>,
    ) -> Result<Self, Error> {
        Self::with_wire(config, Wire::Exchange(exchange), Arc::default())
    }

    fn with_wire(config: Config, wire: Wire, counters: Arc<Counters>) -> Result<Self, Error> {
        let base = config.base_url()?;
        let builder = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::config("http client", crate::error::causes(&e)))?;
        let agent = format!(
            "{}:{}",
            base.host_str().unwrap_or_default(),
            base.port_or_known_default().unwrap_or_default()
        );
        let transport = Transport {
            metrics: TransportMetrics::new(agent),
            config,
            base,
            wire,
            builder,
            lanes: OnceLock::new(),
            probing: tokio::sync::Mutex::new(()),
            counters,
        };
        if transport.base.scheme() != "https" {
            // Consul serves plain HTTP as HTTP/1.1 only (no h2c).
            transport.init(Protocol::Http1);
        }
        Ok(transport)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// A request builder for `url` (no I/O).
    pub(crate) fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.builder.request(method, url)
    }

    pub(crate) fn stats(&self) -> ClientStats {
        let mut stats = ClientStats::from_counters(&self.counters);
        if let Some(lanes) = self.lanes.get() {
            stats.protocol = lanes.split.protocol;
            stats.blocking_capacity = lanes.split.blocking;
            stats.blocking_held = lanes.leases.held();
        }
        stats
    }

    pub(crate) fn count_throttled(&self) {
        Counters::add(&self.counters.throttled);
    }

    /// The blocking slots (learning the protocol first if need be).
    pub(crate) async fn leases(&self) -> Result<Arc<Leases>, Error> {
        Ok(self.lanes().await?.leases.clone())
    }

    /// Waits for the next poll turn of this transport's watches.
    pub(crate) async fn poll_turn(&self) -> Result<(), Error> {
        self.lanes().await?.pacer.turn().await;
        Ok(())
    }

    /// Sends `request` along `route` and reads the answer within `deadline`. `blocks` says
    /// whether the agent may hold it (a blocking query).
    pub(crate) async fn call(
        &self,
        route: &Route,
        request: reqwest::Request,
        deadline: Duration,
        blocks: bool,
    ) -> Result<Answer, Error> {
        let lanes = self.lanes().await?;
        Counters::add(&self.counters.requests);
        match route {
            Route::Lease(lease) => {
                let connection = lanes.split.blocking_connection(lease.slot());
                self.send_on(lanes, connection, request, deadline).await
            }
            Route::Auto if blocks => {
                // A caller's own blocking query: urgent, and never taken back.
                let mut wish = lanes.leases.request(Some(Instant::now()), true, false);
                let lease = wish.granted().await;
                let connection = lanes.split.blocking_connection(lease.slot());
                self.send_on(lanes, connection, request, deadline).await
            }
            Route::Auto => self.send_short(lanes, request, deadline).await,
            Route::Poll => {
                Counters::add(&self.counters.polls);
                let _poll = lanes.polls.acquire().await.expect("never closed");
                self.send_short(lanes, request, deadline).await
            }
        }
    }

    async fn send_short(
        &self,
        lanes: &Lanes,
        request: reqwest::Request,
        deadline: Duration,
    ) -> Result<Answer, Error> {
        let _permit = lanes.short.acquire().await.expect("never closed");
        let slot = ShortSlot::take(&lanes.free_short);
        let connection = lanes.split.short_connection(slot.0);
        self.send_on(lanes, connection, request, deadline).await
    }

    async fn send_on(
        &self,
        lanes: &Lanes,
        connection: usize,
        request: reqwest::Request,
        deadline: Duration,
    ) -> Result<Answer, Error> {
        let gate = lanes.gates.get(connection);
        if let Some(gate) = gate {
            let at = *gate.lock().unwrap_or_else(|p| p.into_inner());
            tokio::time::sleep_until(at).await;
        }
        let _in_use = lanes.busy.get(connection).map(|n| self.metrics.using(n));
        let answer = self
            .wire
            .send(
                lanes.split.protocol,
                ConnectionId(connection),
                request,
                deadline,
            )
            .await;
        if let Some(gate) = gate {
            *gate.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now() + REUSE_GAP;
        }
        answer
    }

    async fn lanes(&self) -> Result<&Lanes, Error> {
        if let Some(lanes) = self.lanes.get() {
            return Ok(lanes);
        }
        let _probing = self.probing.lock().await;
        if let Some(lanes) = self.lanes.get() {
            return Ok(lanes);
        }
        let protocol = self.probe().await?;
        Ok(self.init(protocol))
    }

    /// Asks an HTTPS agent once, on a connection of its own that is closed afterwards, and
    /// reads the protocol from the answer's version.
    async fn probe(&self) -> Result<Protocol, Error> {
        let url = self
            .base
            .join("/v1/status/leader")
            .map_err(|e| Error::config("address", e.to_string()))?;
        let request = self
            .request(reqwest::Method::GET, url)
            .build()
            .map_err(|e| Error::config("request", crate::error::causes(&e)))?;
        Counters::add(&self.counters.requests);
        let answer = self
            .wire
            .send(
                Protocol::Unknown,
                ConnectionId::PROBE,
                request,
                self.config.request_timeout,
            )
            .await;
        self.wire.forget(Protocol::Unknown, ConnectionId::PROBE);
        Ok(if answer?.version == http::Version::HTTP_2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        })
    }

    fn init(&self, protocol: Protocol) -> &Lanes {
        self.lanes.get_or_init(|| {
            let split = Split::of(protocol, self.config.max_connections);
            self.metrics.budget(self.config.max_connections);
            let gates = match protocol {
                Protocol::Http2 => Vec::new(),
                _ => (0..split.connections())
                    .map(|_| Mutex::new(Instant::now()))
                    .collect(),
            };
            Lanes {
                split,
                leases: Leases::new(split.blocking, MIN_HOT, self.counters.clone()),
                short: Semaphore::new(split.short),
                polls: Semaphore::new(split.polls),
                free_short: Mutex::new((0..split.short).collect()),
                gates,
                pacer: Pacer::new(self.config.poll_spacing),
                busy: (0..split.connections())
                    .map(|_| AtomicUsize::new(0))
                    .collect(),
            }
        })
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .field("wire", &self.wire)
            .field("lanes", &self.lanes.get())
            .finish_non_exhaustive()
    }
}

/// A short slot taken from the free list, put back when dropped.
struct ShortSlot<'a>(usize, &'a Mutex<Vec<usize>>);

impl<'a> ShortSlot<'a> {
    /// Takes a free slot; the caller holds a permit of the short lane, so one is free.
    fn take(free: &'a Mutex<Vec<usize>>) -> Self {
        let slot = free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .expect("a permit means a free slot");
        ShortSlot(slot, free)
    }
}

impl Drop for ShortSlot<'_> {
    fn drop(&mut self) {
        // Back at the front: the next request takes the slot used least recently.
        self.1
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(0, self.0);
    }
}
