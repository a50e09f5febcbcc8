//! How fast a change in Consul reaches a `DiscoveredChannel`, beside the floor: a raw
//! blocking query, started before the same change, woken by it. Against consul-dev in this
//! process (on a runtime of its own). Also how many blocking queries a hundred channels
//! built independently from the environment hold at the agent. Prints the tables for
//! BENCHMARKS.md; asserts nothing.
//!
//! One trial is one change to a second instance of the service: registered (passing),
//! its TTL check failed, passed again, deregistered; timed from just before the write until
//! the channel's endpoint set shows it (and until the raw query returns). Trials are 25 ms
//! apart, so the watch's own spacing of queries (20 ms) is not what is measured. Run:
//! `cargo bench -p examples --bench propagation` (or `cargo xtask bench`); `CYCLES=n`
//! (default 250, four trials each) changes the number of trials.

use std::time::{Duration, Instant};

use consul_api::agent::{CheckDefinition, ServiceRegistration};
use consul_api::{CheckStatus, Client, Config, ConsulRegistry, QueryOptions};
use grpc_resolve::DiscoveredChannel;

const SERVICE: &str = "prop";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Register,
    Fail,
    Pass,
    Deregister,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Fail => "TTL check pass → fail",
            Kind::Pass => "TTL check fail → pass",
            Kind::Deregister => "deregister",
        }
    }

    /// Whether the second instance is in the endpoint set after this change.
    fn present_after(self) -> bool {
        matches!(self, Kind::Register | Kind::Pass)
    }
}

fn registration(id: &str, port: u16) -> ServiceRegistration {
    let mut reg = ServiceRegistration::new(SERVICE);
    reg.id = Some(id.to_owned());
    reg.address = Some("127.0.0.1".into());
    reg.port = Some(port);
    let mut check = CheckDefinition::ttl(Duration::from_secs(600));
    check.status = Some(CheckStatus::Passing);
    reg.check = Some(check);
    reg
}

async fn change(writer: &Client, kind: Kind) {
    let agent = writer.agent();
    match kind {
        Kind::Register => agent.register_service(&registration("prop-b", 7002)).await,
        Kind::Fail => agent.fail_ttl("service:prop-b", "down").await,
        Kind::Pass => agent.pass_ttl("service:prop-b", "up").await,
        Kind::Deregister => agent.deregister_service("prop-b").await,
    }
    .expect("the agent takes the change");
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "{:.2} | {:.2} | {:.2}",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3
    )
}

fn main() {
    let cycles: usize = std::env::var("CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250);
    let agent_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dev = agent_rt
        .block_on(consul_dev::DevAgent::start("127.0.0.1:0".parse().unwrap()))
        .expect("consul-dev starts");
    let addr = dev.http_addr();
    let config = Config::new(&addr).unwrap();

    client_rt.block_on(async {
        let writer = Client::new(config.clone().shared(false)).unwrap();
        let raw = Client::new(config.clone().shared(false)).unwrap();
        writer
            .agent()
            .register_service(&registration("prop-a", 7001))
            .await
            .unwrap();
        let channel = DiscoveredChannel::builder(ConsulRegistry::new(Client::new(config.clone()).unwrap()), SERVICE).build();
        channel.wait_for(|e| e.len() == 1).await;

        let mut results: Vec<(Kind, Duration, Duration)> = Vec::new();
        for _ in 0..cycles {
            for kind in [Kind::Register, Kind::Fail, Kind::Pass, Kind::Deregister] {
                let opts = QueryOptions::default().passing(true);
                let (_, meta) = raw.health().service(SERVICE, &opts).await.unwrap();
                let floor = {
                    let raw = raw.clone();
                    tokio::spawn(async move {
                        let mut opts = QueryOptions::blocking(meta.last_index, Duration::from_secs(60));
                        opts.passing = true;
                        raw.health().service(SERVICE, &opts).await.unwrap();
                        Instant::now()
                    })
                };
                // Let the raw query reach the agent before the change.
                dev.wait_for_blocked_queries(2).await;
                let start = Instant::now();
                change(&writer, kind).await;
                let present = kind.present_after();
                channel
                    .wait_for(|e| e.iter().any(|e| e.id == "prop-b") == present)
                    .await;
                let reached = start.elapsed();
                let floor = floor.await.unwrap().saturating_duration_since(start);
                results.push((kind, reached, floor));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }

        println!("### propagation: a change in consul-dev until a DiscoveredChannel shows it ({} trials)\n", results.len());
        println!("| change | trials | channel p50 ms | p99 ms | max ms | floor (raw blocking query) p50 ms | p99 ms | max ms |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for kind in [Kind::Register, Kind::Fail, Kind::Pass, Kind::Deregister] {
            let of: Vec<_> = results.iter().filter(|r| r.0 == kind).collect();
            println!(
                "| {} | {} | {} | {} |",
                kind.label(),
                of.len(),
                percentiles(of.iter().map(|r| r.1).collect()),
                percentiles(of.iter().map(|r| r.2).collect()),
            );
        }
        println!(
            "| all | {} | {} | {} |",
            results.len(),
            percentiles(results.iter().map(|r| r.1).collect()),
            percentiles(results.iter().map(|r| r.2).collect()),
        );
        drop(channel);

        // A hundred channels on one service, each built from the environment on its own,
        // and the same with each client kept apart (one blocking query per channel, as the
        // peer libraries do).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let base = dev.blocked_queries();
        println!("\n### 100 channels on one service: blocking queries in flight at the agent\n");
        println!("| channels built | blocking queries in flight |");
        println!("| --- | ---: |");
        for (label, shared) in [("from the environment (shared by default)", true), ("each with its own client (`shared(false)`)", false)] {
            let lookup = |name: &str| (name == "CONSUL_HTTP_ADDR").then(|| addr.clone());
            let channels: Vec<DiscoveredChannel> = (0..100)
                .map(|_| {
                    let config = Config::from_lookup(lookup).unwrap().shared(shared);
                    DiscoveredChannel::builder(ConsulRegistry::new(Client::new(config).unwrap()), SERVICE).build()
                })
                .collect();
            for c in &channels {
                c.wait_for(|e| e.len() == 1).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!("| {label} | {} |", dev.blocked_queries() - base);
            drop(channels);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    agent_rt.block_on(dev.shutdown());
}
