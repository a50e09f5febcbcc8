//! Throughput and latency of `DiscoveredChannel` against a direct tonic `Channel` and tonic's
//! `balance_channel`, on real Adder servers over loopback.
//!
//! - throughput: 64 concurrent callers making unary calls for one second per measurement;
//! - latency: one caller, p50 of 2,000 sequential calls.
//!
//! The four variants (the last is this channel over the direct variant's one backend) are
//! measured in interleaved rounds (timings on a shared 2-core machine move ±20% run to run,
//! so only ratios within one run mean anything); printed are each variant's median over the
//! rounds and the median of each round's own comparison with direct. Run:
//! `cargo bench -p examples --bench balance` (or `cargo xtask bench`); `ROUNDS=n` changes
//! the number of rounds (default 7), and `ONLY=0|1|2|3` measures one variant alone (for a
//! profiler). Besides latency, it prints the CPU time the calling thread spends per call
//! (Linux), which moves much less than latency and shows the channel's own per-call cost
//! (for `balance_channel` the balancing runs on its buffer's worker thread, not the
//! caller's).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use discovery_core::{MemoryRegistry, Registration, Registry, ServiceInstance};
use examples::AdderService;
use examples::pb::AddRequest;
use examples::pb::adder_client::AdderClient;
use examples::pb::adder_server::AdderServer;
use grpc_resolve::DiscoveredChannel;
use tonic::transport::channel::Change;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};

const CALLERS: usize = 64;
const MEASURE: Duration = Duration::from_secs(1);
const LATENCY_CALLS: usize = 2_000;

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    // The servers get a runtime of their own, as they would in other processes.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let addrs: Vec<SocketAddr> = (0..3).map(|_| servers.block_on(serve())).collect();

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    client.block_on(run(addrs, rounds));
    drop(servers);
}

async fn serve() -> SocketAddr {
    // tonic's serve_with_incoming ignores Server::tcp_nodelay: set it on the listener.
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .expect("bind")
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().expect("bound");
    tokio::spawn(
        Server::builder()
            .add_service(AdderServer::new(AdderService::default()))
            .serve_with_incoming(incoming),
    );
    addr
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .tcp_nodelay(true)
}

async fn run(addrs: Vec<SocketAddr>, rounds: usize) {
    let registry = MemoryRegistry::new();
    for (i, addr) in addrs.iter().enumerate() {
        let instance = ServiceInstance::new(
            format!("adder-{i}"),
            "adder",
            addr.ip().to_string(),
            addr.port(),
        );
        registry
            .register(&Registration::new(instance))
            .await
            .expect("register");
    }
    let ours = DiscoveredChannel::builder(registry, "adder").build();
    tokio::time::timeout(
        Duration::from_secs(10),
        ours.wait_for(|endpoints| endpoints.iter().filter(|e| e.ready).count() == 3),
    )
    .await
    .expect("three ready endpoints within 10s");

    // The same channel over the direct variant's one backend: separates the channel's own
    // per-call cost from the effect of spreading over three connections.
    let single = MemoryRegistry::new();
    single
        .register(&Registration::new(ServiceInstance::new(
            "adder-0",
            "adder",
            addrs[0].ip().to_string(),
            addrs[0].port(),
        )))
        .await
        .expect("register");
    let ours_one = DiscoveredChannel::builder(single, "adder").build();
    tokio::time::timeout(
        Duration::from_secs(10),
        ours_one.wait_for(|endpoints| endpoints.iter().any(|e| e.ready)),
    )
    .await
    .expect("a ready endpoint within 10s");

    let direct = endpoint(addrs[0]).connect().await.expect("direct connect");

    let (balanced, tx) = Channel::balance_channel::<usize>(1024);
    for (i, addr) in addrs.iter().enumerate() {
        tx.send(Change::Insert(i, endpoint(*addr)))
            .await
            .expect("balance_channel insert");
    }

    let variants: [(&str, MakeClient); 4] = [
        ("DiscoveredChannel (3 backends)", {
            let c = ours.clone();
            Box::new(move || Client::Ours(AdderClient::new(c.clone())))
        }),
        ("direct Channel (1 backend)", {
            let c = direct.clone();
            Box::new(move || Client::Direct(AdderClient::new(c.clone())))
        }),
        ("balance_channel (3 backends)", {
            let c = balanced.clone();
            Box::new(move || Client::Direct(AdderClient::new(c.clone())))
        }),
        ("DiscoveredChannel (1 backend)", {
            let c = ours_one.clone();
            Box::new(move || Client::Ours(AdderClient::new(c.clone())))
        }),
    ];

    // Warm every path up (connections, HTTP/2 windows, allocator).
    for (_, make) in &variants {
        throughput(make, Duration::from_millis(300)).await;
    }

    let only: Option<usize> = std::env::var("ONLY").ok().and_then(|v| v.parse().ok());
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut p50: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (_, make)) in variants.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            rps[i].push(throughput(make, MEASURE).await);
            let (latency, caller_cpu) = latency_p50(make).await;
            p50[i].push(latency);
            if let Some(caller_cpu) = caller_cpu {
                cpu[i].push(caller_cpu);
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }

    // Besides the medians of each variant, the median over rounds of each round's own
    // comparison with direct: a round's variants run back to back, so their comparison is
    // less exposed to the machine's load drifting between rounds.
    println!(
        "\n{CALLERS} concurrent callers, unary Add, {rounds} interleaved rounds of {MEASURE:?}:"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        let ratios = paired(&rps[i], &rps[1], |v, d| v / d);
        println!(
            "  {name:32} median {:>9.0} calls/s  ({:.3} of direct; per round {})",
            median(&mut rps[i].clone()),
            median(&mut ratios.clone()),
            list(&ratios, 3),
        );
    }
    println!("\n1 caller, p50 latency of {LATENCY_CALLS} calls, median over rounds:");
    for (i, (name, _)) in variants.iter().enumerate() {
        let deltas = paired(&p50[i], &p50[1], |v, d| v - d);
        println!(
            "  {name:32} p50 {:>7.1} µs  ({:+.1} µs vs direct; per round {})",
            median(&mut p50[i].clone()),
            median(&mut deltas.clone()),
            list(&deltas, 1),
        );
    }
    if cpu.iter().all(|v| v.len() == rounds) {
        // Less noisy than latency: the CPU the calling thread spends per call (the caller
        // runs on this thread; connections and servers run on others).
        println!("\n1 caller, CPU time of the calling thread per call, median over rounds:");
        for (i, (name, _)) in variants.iter().enumerate() {
            let deltas = paired(&cpu[i], &cpu[1], |v, d| v - d);
            println!(
                "  {name:32} {:>6.1} µs  ({:+.1} µs vs direct; per round {})",
                median(&mut cpu[i].clone()),
                median(&mut deltas.clone()),
                list(&deltas, 1),
            );
        }
    }
    let stats = ours.stats();
    println!("\nDiscoveredChannel stats after the run: {stats:?}");
}

/// Makes one client of a variant per caller.
type MakeClient = Box<dyn Fn() -> Client>;

/// A client over either channel type.
enum Client {
    Ours(AdderClient<DiscoveredChannel>),
    Direct(AdderClient<Channel>),
}

impl Client {
    async fn add(&mut self, a: i64) -> bool {
        let req = AddRequest { a, b: 1 };
        match self {
            Client::Ours(c) => c.add(req).await.is_ok(),
            Client::Direct(c) => c.add(req).await.is_ok(),
        }
    }
}

async fn throughput(make: &dyn Fn() -> Client, duration: Duration) -> f64 {
    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let mut client = make();
        let (done, ok, failed) = (done.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                if client.add(i).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("  ({failed} calls failed)");
    }
    ok.load(Ordering::Relaxed) as f64 / elapsed
}

/// The p50 latency of sequential calls from one caller, and the CPU time the calling
/// thread spent per call where the platform tells it.
async fn latency_p50(make: &dyn Fn() -> Client) -> (f64, Option<f64>) {
    let mut client = make();
    let mut samples = Vec::with_capacity(LATENCY_CALLS);
    let cpu_before = thread_cpu_ns();
    for i in 0..LATENCY_CALLS {
        let start = Instant::now();
        client.add(i as i64).await;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let cpu = thread_cpu_ns()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before) as f64 / 1e3 / LATENCY_CALLS as f64);
    (median(&mut samples), cpu)
}

/// CPU time this thread has run, in nanoseconds (Linux's schedstat; `None` elsewhere).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Each round's `compare(variant, direct)`, sorted.
fn paired(variant: &[f64], direct: &[f64], compare: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let mut out: Vec<f64> = variant
        .iter()
        .zip(direct)
        .map(|(v, d)| compare(*v, *d))
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

fn list(values: &[f64], decimals: usize) -> String {
    let parts: Vec<String> = values.iter().map(|v| format!("{v:.decimals$}")).collect();
    format!("[{}]", parts.join(" "))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
