//! The fleet model: what watching costs Consul at internet scale, measured by running the
//! real watch engine for a sample of processes against simulated agents on paused tokio
//! time, and scaled up. Prints the table for BENCHMARKS.md; asserts nothing.
//!
//! The fleet: 10,000 client processes on 1,000 hosts (10 per host, each host with its own
//! agent), each process watching 50 of 500 services (chosen at random), every service with
//! 20 instances and deployed once an hour (at a random time) by a rolling restart: one
//! instance after another, each deregistered, re-registered 5 s later with its check
//! critical, passing 2 s after that, the next one 3 s later. That is 60 index moves per
//! deploy, 8.3 a second across the fleet.
//!
//! Simulated: `HOSTS` hosts (default 2) for `MINUTES` minutes (default 60) of virtual time.
//! Each agent answers health queries as Consul does (blocking until the service's index
//! passes the one asked, or the wait and its jitter end; the passing filter); without the
//! agent cache every request it serves is one RPC to the servers, a blocking one held there
//! until it answers (Consul without its streaming backend); with `?cached` the agent keeps
//! one entry per service, refreshed by one blocking RPC per change.
//!
//! Variants: (a) one blocking query per channel, each channel with its own connection, as
//! the peer libraries do; (b) this project's shared watches over HTTP/1.1 with the default
//! budget (16 connections: 12 blocking, the rest polled); (c) (b) through the agent cache;
//! (d) shared watches over HTTP/2 (an HTTPS agent): every watch blocks, on one connection.
//!
//! Run: `cargo bench -p consul-api --bench fleet` (or `cargo xtask bench`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use consul_api::{BoxError, Client, Config, ConnectionId, ConsulRegistry, Exchange, QueryDefaults};
use discovery_core::{Query, Resolver, Update};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

const HOSTS_IN_FLEET: u64 = 1_000;
const PROCESSES_PER_HOST: usize = 10;
const SERVICES: usize = 500;
const WATCHED: usize = 50;
const INSTANCES: usize = 20;

/// One service of the cluster.
#[derive(Debug)]
struct Service {
    state: Mutex<ServiceState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct ServiceState {
    index: u64,
    /// Instance number → passing?; absent: deregistered.
    instances: HashMap<usize, bool>,
    /// Deregistrations: (instance, when).
    removals: Vec<(usize, Instant)>,
}

/// The cluster the agents front: its services and the servers' load.
#[derive(Debug)]
struct Cluster {
    services: Vec<Service>,
    index: AtomicU64,
}

impl Cluster {
    fn new() -> Arc<Self> {
        let services = (0..SERVICES)
            .map(|_| Service {
                state: Mutex::new(ServiceState {
                    index: 1,
                    instances: (0..INSTANCES).map(|i| (i, true)).collect(),
                    removals: Vec::new(),
                }),
                changed: Notify::new(),
            })
            .collect();
        Arc::new(Cluster {
            services,
            index: AtomicU64::new(1),
        })
    }

    fn change(&self, s: usize, f: impl FnOnce(&mut ServiceState)) {
        let mut state = self.services[s].state.lock().unwrap();
        f(&mut state);
        state.index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
        drop(state);
        self.services[s].changed.notify_waiters();
    }

    /// A rolling restart of service `s`.
    async fn deploy(self: Arc<Self>, s: usize, hosts: Arc<Vec<Arc<Host>>>) {
        for i in 0..INSTANCES {
            self.change(s, |st| {
                st.instances.remove(&i);
                st.removals.push((i, Instant::now()));
            });
            hosts.iter().for_each(|h| h.cache_refresh(s));
            tokio::time::sleep(Duration::from_secs(5)).await;
            self.change(s, |st| {
                st.instances.insert(i, false);
            });
            hosts.iter().for_each(|h| h.cache_refresh(s));
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.change(s, |st| {
                st.instances.insert(i, true);
            });
            hosts.iter().for_each(|h| h.cache_refresh(s));
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
}

/// One host's agent: what reaches it and what it sends on to the servers.
#[derive(Debug)]
struct Host {
    cluster: Arc<Cluster>,
    requests: AtomicU64,
    rpcs: AtomicU64,
    /// Blocking RPCs held at the servers now.
    held: AtomicI64,
    /// (client, connection) pairs that have carried a request: HTTP/1.1 connections are
    /// kept alive, so each stays open.
    connections: Mutex<HashSet<(usize, ConnectionId)>>,
    /// Services in the agent cache (each holds one blocking RPC at the servers).
    cached: Mutex<HashSet<usize>>,
}

impl Host {
    fn new(cluster: Arc<Cluster>) -> Arc<Self> {
        Arc::new(Host {
            cluster,
            requests: AtomicU64::new(0),
            rpcs: AtomicU64::new(0),
            held: AtomicI64::new(0),
            connections: Mutex::new(HashSet::new()),
            cached: Mutex::new(HashSet::new()),
        })
    }

    /// A change to `s` wakes the agent cache's refresh of it: one RPC, answered, re-sent.
    fn cache_refresh(&self, s: usize) {
        if self.cached.lock().unwrap().contains(&s) {
            self.rpcs.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn serve(&self, req: http::Request<Bytes>, http2: bool) -> http::Response<Bytes> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let version = if http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        let answer = |index: u64, body: String| {
            http::Response::builder()
                .version(version)
                .header("X-Consul-Index", index.to_string())
                .body(Bytes::from(body))
                .unwrap()
        };
        let path = req.uri().path();
        let Some(s) = path
            .strip_prefix("/v1/health/service/svc-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            // The probe, and anything else: small and at once.
            return answer(1, "\"10.0.0.1:8300\"".into());
        };
        let cached = query.contains_key("cached");
        if cached {
            if self.cached.lock().unwrap().insert(s) {
                // A miss: one fetch, then the entry's refresh holds a blocking RPC for good.
                self.rpcs.fetch_add(1, Ordering::Relaxed);
                self.held.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.rpcs.fetch_add(1, Ordering::Relaxed);
        }
        let service = &self.cluster.services[s];
        if let Some(asked) = query.get("index").and_then(|i| i.parse::<u64>().ok()) {
            let wait = query
                .get("wait")
                .and_then(|w| w.strip_suffix("ms")?.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(300));
            let wait = wait + wait.mul_f64(fastrand::f64() / 16.0);
            let deadline = Instant::now() + wait;
            // Held until answered, or until the client gives up on it (a watch yielding
            // its slot drops its query).
            let _held = (!cached).then(|| Held::new(&self.held));
            loop {
                let changed = service.changed.notified();
                if service.state.lock().unwrap().index > asked {
                    break;
                }
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    break;
                }
            }
        }
        let state = service.state.lock().unwrap();
        let passing_only = query.contains_key("passing");
        let entries: Vec<String> = state
            .instances
            .iter()
            .filter(|(_, passing)| **passing || !passing_only)
            .map(|(i, _)| {
                format!(
                    r#"{{"Node":{{"Node":"n{i}","Address":"10.0.{s}.{i}"}},"Service":{{"ID":"svc-{s}-{i}","Service":"svc-{s}","Port":8080}},"Checks":[]}}"#
                )
            })
            .collect();
        answer(state.index, format!("[{}]", entries.join(",")))
    }
}

/// One blocking RPC held at the servers.
struct Held<'a>(&'a AtomicI64);

impl<'a> Held<'a> {
    fn new(held: &'a AtomicI64) -> Self {
        held.fetch_add(1, Ordering::Relaxed);
        Held(held)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client's link to its host's agent.
#[derive(Debug, Clone)]
struct Link {
    host: Arc<Host>,
    client: usize,
    http2: bool,
}

impl Exchange for Link {
    fn exchange(
        &self,
        connection: ConnectionId,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, BoxError>> {
        let link = self.clone();
        Box::pin(async move {
            if connection != ConnectionId::PROBE {
                link.host
                    .connections
                    .lock()
                    .unwrap()
                    .insert((link.client, connection));
            }
            Ok(link.host.serve(request, link.http2).await)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Variant {
    PerChannel,
    Shared,
    SharedCached,
    Http2,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::PerChannel => "(a) one blocking query per channel",
            Variant::Shared => "(b) shared watches, HTTP/1.1, budget 16",
            Variant::SharedCached => "(c) (b) + agent cache",
            Variant::Http2 => "(d) shared watches, HTTP/2 (HTTPS agent)",
        }
    }
}

/// How long a restarted instance is out of a passing watch's view: deregistered for 5 s,
/// then critical for 2 s.
const DOWN: Duration = Duration::from_secs(7);

/// What one subscriber saw of its service's deregistrations.
#[derive(Debug, Default)]
struct Watcher {
    progress: Mutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    /// The next deregistration of the service it has not accounted for.
    next: usize,
    latencies: Vec<Duration>,
    missed: usize,
}

impl Watcher {
    /// The subscriber got `ids` at `now`: each deregistration since the last one accounted
    /// for is seen (the instance is absent), missed (it is back already, and was never seen
    /// absent), or still to come.
    fn saw(&self, s: usize, ids: &HashSet<String>, removals: &[(usize, Instant)], now: Instant) {
        let mut p = self.progress.lock().unwrap();
        while let Some((i, at)) = removals.get(p.next).copied() {
            if !ids.contains(&format!("svc-{s}-{i}")) {
                p.latencies.push(now - at);
            } else if at + DOWN <= now {
                p.missed += 1;
            } else {
                break;
            }
            p.next += 1;
        }
    }
}

/// What one run measured, per host (averaged over the hosts simulated).
#[derive(Debug)]
struct Measured {
    requests_per_s: f64,
    connections: f64,
    rpcs_per_s: f64,
    held: f64,
    removals_seen: usize,
    removals_missed: usize,
    latencies: Vec<Duration>,
}

async fn run(variant: Variant, hosts: usize, minutes: u64) -> Measured {
    let cluster = Cluster::new();
    let hosts: Arc<Vec<Arc<Host>>> =
        Arc::new((0..hosts).map(|_| Host::new(cluster.clone())).collect());
    let mut watchers: Vec<(usize, Arc<Watcher>)> = Vec::new();
    let mut keep = Vec::new();
    let mut client_id = 0;
    for host in hosts.iter() {
        for _ in 0..PROCESSES_PER_HOST {
            let mut services: Vec<usize> = (0..SERVICES).collect();
            fastrand::shuffle(&mut services);
            services.truncate(WATCHED);
            let http2 = variant == Variant::Http2;
            let address = if http2 {
                "https://10.0.0.1:8501"
            } else {
                "10.0.0.1:8500"
            };
            let link = |id: &mut usize| {
                *id += 1;
                Link {
                    host: host.clone(),
                    client: *id,
                    http2,
                }
            };
            let mut shared = None;
            for s in services {
                let registry = match (&shared, variant) {
                    (_, Variant::PerChannel) | (None, _) => {
                        let config = Config::new(address).unwrap().max_connections(
                            if variant == Variant::PerChannel {
                                1_000
                            } else {
                                16
                            },
                        );
                        let client = Client::with_exchange(config, link(&mut client_id)).unwrap();
                        let mut registry = ConsulRegistry::new(client);
                        if variant == Variant::SharedCached {
                            registry =
                                registry.query_defaults(QueryDefaults::default().cached(true));
                        }
                        if variant != Variant::PerChannel {
                            shared = Some(registry.clone());
                        }
                        registry
                    }
                    (Some(registry), _) => registry.clone(),
                };
                let mut updates = registry.watch(&Query::new(format!("svc-{s}")));
                let watcher = Arc::new(Watcher::default());
                watchers.push((s, watcher.clone()));
                let cluster = cluster.clone();
                keep.push(registry);
                tokio::spawn(async move {
                    while let Some(update) = updates.next().await {
                        let Update::Snapshot(instances) = update else {
                            continue;
                        };
                        let ids: HashSet<String> = instances.into_iter().map(|i| i.id).collect();
                        let state = cluster.services[s].state.lock().unwrap();
                        watcher.saw(s, &ids, &state.removals, Instant::now());
                    }
                });
            }
        }
    }
    // Let every watch settle, then deploy each service once an hour at a random time.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let start = Instant::now();
    let reset = |h: &Host| {
        h.requests.store(0, Ordering::SeqCst);
        h.rpcs.store(0, Ordering::SeqCst);
    };
    hosts.iter().for_each(|h| reset(h));
    let span = Duration::from_secs(minutes * 60);
    for s in 0..SERVICES {
        let at = start + span.mul_f64(fastrand::f64());
        let (cluster, hosts) = (cluster.clone(), hosts.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            cluster.deploy(s, hosts).await;
        });
    }
    let mut held_samples = Vec::new();
    while start.elapsed() < span {
        tokio::time::sleep(Duration::from_secs(10)).await;
        held_samples.push(
            hosts
                .iter()
                .map(|h| h.held.load(Ordering::Relaxed) as f64)
                .sum::<f64>(),
        );
    }
    let secs = span.as_secs_f64();
    let n = hosts.len() as f64;
    let end = Instant::now();
    let (mut latencies, mut missed) = (Vec::new(), 0);
    for (s, watcher) in &watchers {
        let state = cluster.services[*s].state.lock().unwrap();
        let w = watcher.progress.lock().unwrap();
        latencies.extend(w.latencies.iter().copied());
        // Deregistrations over (the instance is back) that it never saw are missed.
        missed += w.missed
            + state.removals[w.next..]
                .iter()
                .filter(|(_, at)| *at + DOWN < end)
                .count();
    }
    let measured = Measured {
        requests_per_s: hosts
            .iter()
            .map(|h| h.requests.load(Ordering::Relaxed))
            .sum::<u64>() as f64
            / secs
            / n,
        connections: hosts
            .iter()
            .map(|h| h.connections.lock().unwrap().len())
            .sum::<usize>() as f64
            / n,
        rpcs_per_s: hosts
            .iter()
            .map(|h| h.rpcs.load(Ordering::Relaxed))
            .sum::<u64>() as f64
            / secs
            / n,
        held: held_samples.iter().sum::<f64>() / held_samples.len().max(1) as f64 / n,
        removals_seen: latencies.len(),
        removals_missed: missed,
        latencies,
    };
    drop(keep);
    measured
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let hosts: usize = std::env::var("HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let minutes: u64 = std::env::var("MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    println!(
        "fleet model: {hosts} simulated hosts x {PROCESSES_PER_HOST} processes x {WATCHED} watches, \
         {minutes} min of virtual time, scaled to {HOSTS_IN_FLEET} hosts\n"
    );
    println!(
        "| variant | requests/s per agent | connections per agent | RPCs/s at the servers | blocking queries held at the servers | deregistrations seen (p50 / p99) | missed |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- | ---: |");
    for variant in [
        Variant::PerChannel,
        Variant::Shared,
        Variant::SharedCached,
        Variant::Http2,
    ] {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let wall = std::time::Instant::now();
        let mut m = runtime.block_on(run(variant, hosts, minutes));
        m.latencies.sort();
        println!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.2} s / {:.2} s | {:.1}% |",
            variant.label(),
            m.requests_per_s,
            m.connections,
            m.rpcs_per_s * HOSTS_IN_FLEET as f64,
            m.held * HOSTS_IN_FLEET as f64,
            percentile(&m.latencies, 0.5).as_secs_f64(),
            percentile(&m.latencies, 0.99).as_secs_f64(),
            100.0 * m.removals_missed as f64 / (m.removals_seen + m.removals_missed).max(1) as f64,
        );
        eprintln!(
            "  ({} simulated in {:.1} s)",
            variant.label(),
            wall.elapsed().as_secs_f64()
        );
    }
}
