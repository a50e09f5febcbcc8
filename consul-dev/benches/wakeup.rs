//! How quickly blocked watchers wake after a change, with 10,000 registered instances and
//! 1,000 concurrent blocking queries. Prints figures; asserts nothing about timings.
//!
//! Run with `cargo bench -p consul-dev --bench wakeup`.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use consul_dev::DevAgent;
use futures_util::stream::{self, StreamExt};

const SERVICES: usize = 100;
const PER_SERVICE: usize = 100;
const WATCHERS: usize = 1_000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let agent = DevAgent::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("agent starts");
    let base = format!("http://{}", agent.http_addr());
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(2 * WATCHERS)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");

    let start = Instant::now();
    stream::iter(0..SERVICES * PER_SERVICE)
        .map(|i| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let body = format!(
                    r#"{{"Name":"svc-{}","ID":"inst-{i}","Port":{},"Check":{{"TTL":"10m","Status":"passing"}}}}"#,
                    i % SERVICES,
                    10_000 + i
                );
                let r = http
                    .put(format!("{base}/v1/agent/service/register"))
                    .body(body)
                    .send()
                    .await
                    .expect("register");
                assert!(r.status().is_success(), "register failed: {}", r.status());
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
    println!(
        "registered {} instances ({} services x {}) in {:?}",
        SERVICES * PER_SERVICE,
        SERVICES,
        PER_SERVICE,
        start.elapsed()
    );

    // Scenario 1: all watchers on one service.
    let hot: Vec<String> = vec!["svc-0".to_owned(); WATCHERS];
    scenario(
        &http,
        &base,
        "1,000 watchers on one service",
        &hot,
        "inst-0",
    )
    .await;

    // Scenario 2: watchers spread over every service; only one service changes.
    let spread: Vec<String> = (0..WATCHERS)
        .map(|i| format!("svc-{}", i % SERVICES))
        .collect();
    scenario(
        &http,
        &base,
        "1,000 watchers over 100 services",
        &spread,
        "inst-100",
    )
    .await;

    agent.shutdown().await;
}

/// Starts one blocking query per entry of `services`, changes `instance`'s check once all
/// are in flight, and reports when the watchers of the changed service woke.
async fn scenario(
    http: &reqwest::Client,
    base: &str,
    title: &str,
    services: &[String],
    instance: &str,
) {
    let mut indexes = Vec::new();
    for name in services {
        let r = http
            .get(format!("{base}/v1/health/service/{name}"))
            .send()
            .await
            .expect("read");
        let index: u64 = r.headers()["x-consul-index"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("index");
        indexes.push(index);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (name, index) in services.iter().zip(indexes) {
        let http = http.clone();
        let url = format!("{base}/v1/health/service/{name}?index={index}&wait=10s");
        let tx = tx.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let r = http.get(url).send().await.expect("blocking read");
            let _ = r.bytes().await.expect("body");
            let _ = tx.send((name, Instant::now()));
        });
    }
    drop(tx);
    // Give the queries time to arrive and block; this is setup, not a measurement.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changed_service = format!(
        "svc-{}",
        instance
            .trim_start_matches("inst-")
            .parse::<usize>()
            .unwrap_or(0)
            % SERVICES
    );
    let expected = services.iter().filter(|s| **s == changed_service).count();
    let change = Instant::now();
    let r = http
        .put(format!(
            "{base}/v1/agent/check/fail/service:{instance}?note=bench"
        ))
        .send()
        .await
        .expect("change");
    assert!(r.status().is_success());
    let mut woke = Vec::new();
    let mut others = 0;
    while woke.len() < expected {
        let Some((name, at)) = rx.recv().await else {
            break;
        };
        if name == changed_service {
            woke.push(at.saturating_duration_since(change));
        } else {
            others += 1;
        }
    }
    woke.sort();
    let pct = |p: f64| woke[((woke.len() as f64 - 1.0) * p) as usize];
    println!(
        "{title}: {} watchers of {changed_service} woke; first {:?}, median {:?}, p99 {:?}, last {:?}; \
         unrelated watchers answered meanwhile: {others}",
        woke.len(),
        woke[0],
        pct(0.5),
        pct(0.99),
        woke[woke.len() - 1],
    );
    // Let the remaining watchers time out before the next scenario.
    while rx.recv().await.is_some() {}
    // Restore the check so the next scenario starts from the same state.
    let _ = http
        .put(format!("{base}/v1/agent/check/pass/service:{instance}"))
        .send()
        .await;
}
