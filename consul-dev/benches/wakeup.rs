//! How quickly blocked watchers wake after a change, with 10,000 registered instances and
//! 1,000 concurrent blocking queries. Prints figures; asserts nothing about timings.
//!
//! The catalog is 1,000 services of 10 instances each, every instance with a TTL check.
//! Watchers behave like real clients: each loops on `GET /v1/health/service/<name>` with the
//! last `X-Consul-Index`, reading every answer in full. A round waits until all watchers are
//! blocked, changes one instance's check output, and measures from just before the change
//! request until each watcher of the changed service has its whole new answer. Shapes:
//!
//! - `spread`: one watcher on each of the 1,000 services; one of them changes.
//! - `clustered`: ten watchers on each of 100 services; one of those services changes.
//! - `hot`: all 1,000 watchers on one 10-instance service, which changes.
//!
//! Run with `cargo bench -p consul-dev --bench wakeup`; `WAKEUP_ROUNDS=N` sets the rounds per
//! shape (default 7) and `WAKEUP_SHAPES=hot,spread` picks shapes. Watchers speak minimal
//! HTTP/1.1 on their own keep-alive connections (a full client would dominate the figures);
//! they share this process and the machine's cores with the agent, as tests do.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use consul_dev::{Config, DevAgent};
use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const SERVICES: usize = 1_000;
const PER_SERVICE: usize = 10;
const WATCHERS: usize = 1_000;

static CHANGES: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let rounds: usize = std::env::var("WAKEUP_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let agent = Arc::new(
        DevAgent::start_with(
            Config::default().node_name("bench"),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("agent starts"),
    );
    let base = format!("http://{}", agent.http_addr());
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(2 * WATCHERS)
        .timeout(Duration::from_secs(900))
        .build()
        .expect("client");

    let start = Instant::now();
    stream::iter(0..SERVICES * PER_SERVICE)
        .map(|i| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let body = format!(
                    r#"{{"Name":"svc-{}","ID":"inst-{i}","Port":{},"Tags":["bench","v1"],"Meta":{{"zone":"z{}"}},"Check":{{"TTL":"30m","Status":"passing"}}}}"#,
                    i % SERVICES,
                    10_000 + i,
                    i % 3,
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
        "registered {} instances ({SERVICES} services x {PER_SERVICE}) in {:?}; {rounds} rounds per shape",
        SERVICES * PER_SERVICE,
        start.elapsed()
    );

    let spread: Vec<usize> = (0..WATCHERS).map(|i| i % SERVICES).collect();
    let clustered: Vec<usize> = (0..WATCHERS).map(|i| i % 100).collect();
    let hot: Vec<usize> = vec![0; WATCHERS];
    let shapes: [(&str, &[usize]); 3] = [
        ("spread    (1 watcher on each of 1,000 services)", &spread),
        (
            "clustered (10 watchers on each of 100 services)",
            &clustered,
        ),
        ("hot       (1,000 watchers on one service)      ", &hot),
    ];
    let only = std::env::var("WAKEUP_SHAPES").unwrap_or_default();
    for (title, services) in shapes {
        let name = title.split_whitespace().next().unwrap_or_default();
        if !only.is_empty() && !only.split(',').any(|s| s == name) {
            continue;
        }
        shape(&agent, &http, &base, title, services, rounds).await;
    }
    if let Ok(agent) = Arc::try_unwrap(agent) {
        agent.shutdown().await;
    }
}

/// A wake reported by a watcher: its service and when its answer was fully read.
type Wake = (usize, Instant);

/// Runs `rounds` rounds with one watcher per entry of `services` (a service number each).
async fn shape(
    agent: &DevAgent,
    http: &reqwest::Client,
    base: &str,
    title: &str,
    services: &[usize],
    rounds: usize,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Wake>();
    let watchers: Vec<_> = services
        .iter()
        .map(|&svc| tokio::spawn(watch(agent.addr(), svc, tx.clone())))
        .collect();
    drop(tx);
    let mut lasts = Vec::new();
    let mut unrelated = 0;
    for round in 0..rounds {
        // Setup, not measured: every watcher is back in its blocking query.
        agent.wait_for_blocked_queries(services.len()).await;
        while rx.try_recv().is_ok() {}
        // A different service each round; in the hot shape always the watched one.
        let changed = services[(round * 7_919) % services.len()];
        let expected = services.iter().filter(|&&s| s == changed).count();
        let instance = changed + SERVICES * (round % PER_SERVICE);
        let change = Instant::now();
        let r = http
            .put(format!(
                "{base}/v1/agent/check/update/service:inst-{instance}"
            ))
            // A new output every time, so every round is a change.
            .body(format!(
                r#"{{"Status":"passing","Output":"bench change {}"}}"#,
                CHANGES.fetch_add(1, Ordering::Relaxed)
            ))
            .send()
            .await
            .expect("change");
        assert!(r.status().is_success(), "change failed: {}", r.status());
        let mut woke = 0;
        let mut last = Duration::ZERO;
        while woke < expected {
            let (svc, at) = rx.recv().await.expect("watchers run");
            if svc == changed {
                woke += 1;
                last = last.max(at.saturating_duration_since(change));
            } else {
                unrelated += 1;
            }
        }
        println!("  {title} round {round}: {expected} woke, last after {last:?}");
        lasts.push(last);
    }
    for w in watchers {
        w.abort();
    }
    // Aborted watchers close their connections; the agent drops their queries.
    let mut left = agent.blocked_queries();
    while left > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = agent.blocked_queries();
    }
    lasts.sort();
    println!(
        "{title}: last watcher woken after: median {:?}, min {:?}, max {:?} over {} rounds; \
         unrelated wakes: {unrelated}",
        lasts[lasts.len() / 2],
        lasts[0],
        lasts[lasts.len() - 1],
        lasts.len(),
    );
}

/// One client watching service `svc` like a real one: blocking reads on its own keep-alive
/// connection, each answer read in full. A minimal HTTP/1.1 client, so that the figures are
/// mostly the agent's work rather than a full-featured client's.
async fn watch(addr: SocketAddr, svc: usize, tx: mpsc::UnboundedSender<Wake>) {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut index = 0u64;
    loop {
        let request = format!(
            "GET /v1/health/service/svc-{svc}?index={index}&wait=10m HTTP/1.1\r\nHost: bench\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.expect("write");
        let (new_index, body_len) = read_response(&mut conn, &mut buf).await;
        assert!(body_len > 2, "the service has instances");
        index = new_index;
        if tx.send((svc, Instant::now())).is_err() {
            return;
        }
    }
}

/// Reads one `200` response with a `Content-Length` body; returns its `X-Consul-Index` and
/// body length.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> (u64, usize) {
    buf.clear();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).expect("ascii head");
            let mut lines = head.split("\r\n");
            let status = lines.next().expect("status line");
            assert!(status.starts_with("HTTP/1.1 200"), "unexpected {status}");
            let (mut length, mut index) = (None, None);
            for line in lines {
                let (name, value) = line.split_once(':').expect("header line");
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("x-consul-index") {
                    index = value.parse::<u64>().ok();
                }
            }
            let length = length.expect("Content-Length");
            let total = end + 4 + length;
            while buf.len() < total {
                buf.reserve(total - buf.len());
                assert!(conn.read_buf(buf).await.expect("read") > 0, "closed");
            }
            return (index.expect("X-Consul-Index"), length);
        }
        buf.reserve(16 * 1024);
        assert!(conn.read_buf(buf).await.expect("read") > 0, "closed");
    }
}
