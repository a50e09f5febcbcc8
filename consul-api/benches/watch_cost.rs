//! What watching a thousand services costs, against consul-dev in this process (on a
//! runtime of its own) behind a proxy that counts the connections it sees. Prints the
//! tables for BENCHMARKS.md; asserts nothing.
//!
//! - idle: 1,000 watched services for `IDLE_SECS` (60) with nothing changing: requests
//!   made, connections open, RSS, CPU seconds of the watching runtime's threads;
//! - busy: the same 1,000 services with one change a second spread over them at random
//!   for `BUSY_SECS` (300): propagation (change written → subscriber sees it) p50/p99/max,
//!   for the services inside the blocking budget when they changed and for those outside.
//!
//! Default settings throughout (a budget of 16: 12 blocking slots, polls paced 100 ms
//! apart, a quiet service polled at most every 30 s). Run: `cargo bench -p consul-api
//! --bench watch_cost` (or `cargo xtask bench`); `SERVICES`, `IDLE_SECS`, `BUSY_SECS`
//! change the sizes.

// The tests' proxy, which counts the connections the agent sees.
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/common/proxy.rs"]
mod proxy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consul_api::agent::ServiceRegistration;
use consul_api::{Client, Config, ConsulRegistry};
use discovery_core::{Query, Resolver, Update};
use futures_util::StreamExt;

/// Per service: each answer's highest port, and when it arrived.
type Answers = HashMap<String, Vec<(u16, Instant)>>;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of this process's threads whose name starts with `prefix`.
fn cpu_seconds(prefix: &str) -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime, the 14th and 15th fields of the line.
        ticks += fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    }
    // Linux's USER_HZ is 100 on every common configuration.
    ticks as f64 / 100.0
}

/// Resident memory of the process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn register(client: &Client, service: &str, id: &str, port: u16) {
    let mut reg = ServiceRegistration::new(service);
    reg.id = Some(id.to_owned());
    reg.address = Some("127.0.0.1".into());
    reg.port = Some(port);
    client.agent().register_service(&reg).await.unwrap();
}

fn percentiles(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "- | - | -".into();
    }
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "{:.3} s | {:.3} s | {:.3} s",
        at(0.5).as_secs_f64(),
        at(0.99).as_secs_f64(),
        v[v.len() - 1].as_secs_f64()
    )
}

fn main() {
    let services = env("SERVICES", 1_000) as usize;
    let idle_secs = env("IDLE_SECS", 60);
    let busy_secs = env("BUSY_SECS", 300);
    let agent_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("agent")
        .enable_all()
        .build()
        .unwrap();
    let watch_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("watch")
        .enable_all()
        .build()
        .unwrap();
    let (dev, writer, proxy_addr, counts) = agent_rt.block_on(async {
        let dev = consul_dev::DevAgent::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let writer = Client::new(Config::new(&dev.http_addr()).unwrap().shared(false)).unwrap();
        let (addr, counts) = proxy::start(dev.addr()).await;
        (dev, writer, addr, counts)
    });
    let names: Vec<String> = (0..services).map(|i| format!("svc-{i}")).collect();
    agent_rt.block_on(async {
        let writer = &writer;
        for batch in names.chunks(16) {
            futures_util::future::join_all(
                batch
                    .iter()
                    .map(|n| async move { register(writer, n, &format!("{n}-1"), 7000).await }),
            )
            .await;
        }
    });

    let rss_before = rss_mib();
    let client = Client::new(Config::new(&proxy_addr.to_string()).unwrap()).unwrap();
    let registry = ConsulRegistry::new(client.clone());
    // Per service: each answer's highest port, and when it arrived.
    let seen: Arc<Mutex<Answers>> = Arc::default();
    let started = Instant::now();
    watch_rt.block_on(async {
        for name in &names {
            let mut updates = registry.watch(&Query::new(name));
            let (seen, name) = (seen.clone(), name.clone());
            tokio::spawn(async move {
                while let Some(update) = updates.next().await {
                    if let Update::Snapshot(instances) = update {
                        let port = instances.iter().map(|i| i.port).max().unwrap_or(0);
                        seen.lock()
                            .unwrap()
                            .entry(name.clone())
                            .or_default()
                            .push((port, Instant::now()));
                    }
                }
            });
        }
    });
    while seen.lock().unwrap().len() < services {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "{services} watches answered in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // Let the first answers settle into blocking queries and polls.
    std::thread::sleep(Duration::from_secs(5));

    // === idle ===
    let (stats0, cpu0, rss0) = (client.stats(), cpu_seconds("watch"), rss_mib());
    std::thread::sleep(Duration::from_secs(idle_secs));
    let (stats1, cpu1, rss1) = (client.stats(), cpu_seconds("watch"), rss_mib());
    println!("\n### idle: {services} watched services, {idle_secs} s, nothing changing\n");
    println!(
        "| requests | of which polls | requests/s | connections open (peak) | connections opened | RSS of the process (watches' share) | CPU of the watching runtime |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let requests = stats1.requests - stats0.requests;
    println!(
        "| {requests} | {} | {:.1} | {} ({}) | {} | {:.1} MiB ({:.1} MiB) | {:.2} s ({:.1}% of a core) |",
        stats1.polls - stats0.polls,
        requests as f64 / idle_secs as f64,
        counts.open(),
        counts.peak(),
        stats1.connections_opened,
        rss1,
        rss1 - rss_before,
        cpu1 - cpu0,
        100.0 * (cpu1 - cpu0) / idle_secs as f64,
    );
    let _ = rss0;

    // === busy ===
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    // Each change: the service, the port it now has, when it was written, and whether its
    // watch held a blocking slot then.
    let mut pending: Vec<(String, u16, Instant, bool)> = Vec::new();
    let busy_start = Instant::now();
    for round in 0..busy_secs {
        let name = names[fastrand::usize(..names.len())].clone();
        // Whether its watch holds a blocking slot, asked on the runtime its loops run on.
        let blocking = watch_rt.block_on(async { registry.watch_hub().blocking() });
        let hot = blocking.iter().any(|q| q.service == name);
        let port = 10_000 + round as u16;
        let at = Instant::now();
        agent_rt.block_on(register(&writer, &name, &format!("{name}-x"), port));
        pending.push((name, port, at, hot));
        let next = busy_start + Duration::from_secs(round + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // Wait for the last ones to arrive (a service outside the budget may take a while).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let seen = seen.lock().unwrap();
        let done = pending
            .iter()
            .all(|(n, p, _, _)| seen.get(n).is_some_and(|h| h.iter().any(|(q, _)| q >= p)));
        if done || Instant::now() > deadline {
            break;
        }
        drop(seen);
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen_now = seen.lock().unwrap().clone();
    let mut lost = 0;
    for (name, port, at, hot) in &pending {
        // The first answer that showed this change (a later change to the same service
        // shows it too).
        match seen_now
            .get(name)
            .and_then(|h| h.iter().find(|(q, _)| q >= port))
        {
            Some((_, when)) => {
                let took = when.saturating_duration_since(*at);
                if *hot {
                    inside.push(took)
                } else {
                    outside.push(took)
                }
            }
            _ => lost += 1,
        }
    }
    let stats2 = client.stats();
    println!(
        "\n### busy: {services} watched services, one change a second at random, {busy_secs} s\n"
    );
    println!("| changed services | changes | propagation p50 | p99 | max |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| inside the blocking budget when changed | {} | {} |",
        inside.len(),
        percentiles(inside)
    );
    println!(
        "| outside it (polled) | {} | {} |",
        outside.len(),
        percentiles(outside)
    );
    println!(
        "\n{lost} changes not seen within 300 s after the last; {} requests/s during the busy run; {} preemptions; {} connections opened in all; peak open {}",
        format_args!(
            "{:.1}",
            (stats2.requests - stats1.requests) as f64 / busy_start.elapsed().as_secs_f64()
        ),
        stats2.preemptions,
        stats2.connections_opened,
        counts.peak(),
    );
    drop((registry, client));
    agent_rt.block_on(dev.shutdown());
}
