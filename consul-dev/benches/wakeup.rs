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
//! The `hot` shape also measures a *floor*, in the same run, one floor round after each hot
//! round: the least this machine and kernel take to wake the same 1,000 watchers with the
//! same answer. A minimal tokio server (no HTTP framework, see [`floor`]) holds a pending
//! request on each of 1,000 other keep-alive connections, made by the same watcher code, and
//! on a trigger writes one real, pre-encoded hot answer of the agent (taken from it at the
//! start of the shape; later answers differ only in a check output of a few more bytes) to
//! all of them at once. Its figure runs from the trigger until the last watcher has read the
//! whole answer. The hot figure also includes the change's own `PUT` round trip, about the
//! `spread` figure, which is small next to it. `hot / floor` is then how many times the
//! minimum the agent's wake-up of a hot service costs.
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

use bytes::Bytes;
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
            // Raised above Consul's default of 200: the bench's 1,000 watchers and its
            // writers all connect from 127.0.0.1.
            Config::default()
                .node_name("bench")
                .http_max_conns_per_client(4 * WATCHERS),
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
        let floor = if name == "hot" {
            let answer = hot_answer(agent.addr(), services[0]).await;
            println!("floor answer: {} bytes, head and body", answer.len());
            Some(floor::Floor::start(answer, services.len()).await)
        } else {
            None
        };
        shape(&agent, &http, &base, title, services, rounds, floor).await;
    }
    if let Ok(agent) = Arc::try_unwrap(agent) {
        agent.shutdown().await;
    }
}

/// A wake reported by a watcher: its service and when its answer was fully read.
type Wake = (usize, Instant);

/// Runs `rounds` rounds with one watcher per entry of `services` (a service number each);
/// with a `floor`, each round is followed by a floor round.
async fn shape(
    agent: &DevAgent,
    http: &reqwest::Client,
    base: &str,
    title: &str,
    services: &[usize],
    rounds: usize,
    floor: Option<floor::Floor>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Wake>();
    let watchers: Vec<_> = services
        .iter()
        .map(|&svc| tokio::spawn(watch(agent.addr(), svc, tx.clone())))
        .collect();
    drop(tx);
    let mut lasts = Vec::new();
    let mut floors = Vec::new();
    let mut unrelated = 0;
    for round in 0..rounds {
        // Setup, not measured: every watcher is back in its blocking query, and the floor's
        // watchers are idle too.
        agent.wait_for_blocked_queries(services.len()).await;
        if let Some(floor) = &floor {
            floor.settle().await;
        }
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
        lasts.push(last);
        match &floor {
            None => println!("  {title} round {round}: {expected} woke, last after {last:?}"),
            Some(floor) => {
                // Not while the agent still takes the hot watchers' next queries.
                agent.wait_for_blocked_queries(services.len()).await;
                let f = floor.round().await;
                println!(
                    "  {title} round {round}: {expected} woke, last after {last:?}; \
                     floor {f:?}, ratio {:.1}",
                    ratio(last, f)
                );
                floors.push(f);
            }
        }
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
    let ratios: Vec<f64> = lasts
        .iter()
        .zip(&floors)
        .map(|(&h, &f)| ratio(h, f))
        .collect();
    let last = Summary::of(lasts);
    println!(
        "{title}: last watcher woken after: median {:?}, min {:?}, max {:?} over {} rounds; \
         unrelated wakes: {unrelated}",
        last.median, last.min, last.max, last.rounds,
    );
    if let Some(floor) = floor {
        floor.stop();
        let f = Summary::of(floors);
        let mut ratios = ratios;
        ratios.sort_by(f64::total_cmp);
        println!(
            "floor     (same 1,000 watchers, same answer, bare tokio server): last watcher \
             woken after: median {:?}, min {:?}, max {:?} over {} rounds",
            f.median, f.min, f.max, f.rounds,
        );
        println!(
            "hot / floor: {:.1} (ratio of medians); per-round ratios: median {:.1}, min {:.1}, \
             max {:.1}",
            ratio(last.median, f.median),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
        );
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// Median, min and max of a set of round figures.
struct Summary {
    median: Duration,
    min: Duration,
    max: Duration,
    rounds: usize,
}

impl Summary {
    fn of(mut figures: Vec<Duration>) -> Summary {
        figures.sort();
        Summary {
            median: figures[figures.len() / 2],
            min: figures[0],
            max: figures[figures.len() - 1],
            rounds: figures.len(),
        }
    }
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
        let answer = read_response(&mut conn, &mut buf).await;
        assert!(answer.body_len > 2, "the service has instances");
        index = answer.index;
        if tx.send((svc, Instant::now())).is_err() {
            return;
        }
    }
}

/// What a watcher needs from an answer.
struct Answer {
    /// Its `X-Consul-Index`.
    index: u64,
    body_len: usize,
    /// Head and body: how many bytes of the buffer are this answer.
    total_len: usize,
}

/// Reads one `200` response with a `Content-Length` body into `buf`.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
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
            return Answer {
                index: index.expect("X-Consul-Index"),
                body_len: length,
                total_len: total,
            };
        }
        buf.reserve(16 * 1024);
        assert!(conn.read_buf(buf).await.expect("read") > 0, "closed");
    }
}

/// The agent's whole current answer (head and body, as sent) to a watcher of service `svc`.
async fn hot_answer(addr: SocketAddr, svc: usize) -> Bytes {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /v1/health/service/svc-{svc} HTTP/1.1\r\nHost: bench\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let answer = read_response(&mut conn, &mut buf).await;
    buf.truncate(answer.total_len);
    Bytes::from(buf)
}

// === floor ===

/// A bare server that answers every pending request with the same bytes on a trigger: the
/// least work any server can do to wake its watchers, so what is left is the kernel's and the
/// watchers' share.
mod floor {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, watch};
    use tokio::task::JoinHandle;

    use super::Wake;

    /// The floor server and its watchers.
    pub(super) struct Floor {
        /// Each send answers every pending request.
        trigger: watch::Sender<u64>,
        /// Connections whose request is read and which wait for the trigger.
        pending: Arc<AtomicUsize>,
        wakes: tokio::sync::Mutex<mpsc::UnboundedReceiver<Wake>>,
        watchers: usize,
        tasks: Vec<JoinHandle<()>>,
    }

    impl Floor {
        /// Starts the server and `watchers` watchers on it, each on its own connection.
        pub(super) async fn start(answer: Bytes, watchers: usize) -> Floor {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let (trigger, _) = watch::channel(0);
            let pending = Arc::new(AtomicUsize::new(0));
            let mut tasks = vec![tokio::spawn(serve(
                listener,
                answer,
                trigger.subscribe(),
                Arc::clone(&pending),
            ))];
            let (tx, rx) = mpsc::unbounded_channel();
            // Service 0 for all: the watchers do not care what they watch, only the server.
            tasks.extend((0..watchers).map(|_| tokio::spawn(super::watch(addr, 0, tx.clone()))));
            Floor {
                trigger,
                pending,
                wakes: tokio::sync::Mutex::new(rx),
                watchers,
                tasks,
            }
        }

        /// One round: waits until every watcher's request is pending (not measured), answers
        /// them all, and returns how long until the last watcher read its whole answer.
        pub(super) async fn round(&self) -> Duration {
            self.settle().await;
            let mut wakes = self.wakes.lock().await;
            while wakes.try_recv().is_ok() {}
            let start = Instant::now();
            self.trigger.send_modify(|n| *n += 1);
            let mut last = Duration::ZERO;
            for _ in 0..self.watchers {
                let (_, at) = wakes.recv().await.expect("watchers run");
                last = last.max(at.saturating_duration_since(start));
            }
            last
        }

        /// Waits until every watcher's request is pending.
        pub(super) async fn settle(&self) {
            while self.pending.load(Ordering::SeqCst) < self.watchers {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }

        /// Stops the server and its watchers.
        pub(super) fn stop(self) {
            for t in self.tasks {
                t.abort();
            }
        }
    }

    /// Accepts connections (`TCP_NODELAY`, as the agent's) and serves each on its own task.
    async fn serve(
        listener: TcpListener,
        answer: Bytes,
        trigger: watch::Receiver<u64>,
        pending: Arc<AtomicUsize>,
    ) {
        // The connection tasks end with their connections, when the watchers are aborted.
        loop {
            let (conn, _) = listener.accept().await.expect("accept");
            conn.set_nodelay(true).expect("nodelay");
            tokio::spawn(connection(
                conn,
                answer.clone(),
                trigger.clone(),
                Arc::clone(&pending),
            ));
        }
    }

    /// Reads a request head, waits for the trigger, writes `answer`; again until the peer
    /// closes. The request itself is ignored: every answer is the same.
    async fn connection(
        mut conn: TcpStream,
        answer: Bytes,
        mut trigger: watch::Receiver<u64>,
        pending: Arc<AtomicUsize>,
    ) {
        let mut buf = Vec::with_capacity(4096);
        loop {
            // The watchers send one bodiless GET at a time, so a request ends at its blank
            // line and nothing follows it until it is answered.
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
            buf.clear();
            // Marked seen before counting, so a trigger once the count shows this request
            // is sure to answer it.
            trigger.borrow_and_update();
            pending.fetch_add(1, Ordering::SeqCst);
            let triggered = trigger.changed().await;
            pending.fetch_sub(1, Ordering::SeqCst);
            if triggered.is_err() || conn.write_all(&answer).await.is_err() {
                return;
            }
        }
    }
}
