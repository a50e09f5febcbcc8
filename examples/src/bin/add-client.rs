//! `add-client`: calls Adder on the instances Consul lists, spreading the calls; prints calls
//! per backend and `calls: N ok, M failed`; exits 1 if any call failed.
//!
//! With `--metrics-addr`, it serves its metrics (the channel's and the Consul client's) in
//! the Prometheus text format; `--linger SECS` keeps it up that long after the calls, so a
//! scraper can read the final counts (SIGINT or SIGTERM ends the wait early).

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use examples::CallStats;
use examples::pb::adder_client::AdderClient;
use grpc_resolve::{DiscoveredChannel, Hedging};

/// Calls the Adder service through Consul discovery.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The service name to resolve.
    #[arg(long, default_value = "adder")]
    service: String,
    /// How many calls to make; 0 runs until SIGINT.
    #[arg(long, default_value_t = 10)]
    calls: u64,
    /// How many calls to keep in flight.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// How long a call waits for an instance when none is known, in seconds.
    #[arg(long, default_value_t = 10.0)]
    empty_timeout: f64,
    /// Each call's deadline (sent as grpc-timeout), in seconds.
    #[arg(long, default_value_t = examples::DEFAULT_DEADLINE.as_secs_f64())]
    deadline: f64,
    /// Hedge each call (Add is safe to run twice): after this many milliseconds without
    /// an answer it also goes to another instance, up to 3 attempts; the first answer wins.
    #[arg(long)]
    hedge_after: Option<u64>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9100).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// After the calls, stay up this many seconds (for a last scrape), then exit.
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_tracing();
    let args = Args::parse();
    let linger = std::time::Duration::try_from_secs_f64(args.linger)
        .map_err(|e| anyhow::anyhow!("--linger: {e}"))?;
    examples::serve_metrics(args.metrics_addr)?;
    let registry = examples::registry_from_env()?;
    let empty_timeout = std::time::Duration::try_from_secs_f64(args.empty_timeout)
        .map_err(|e| anyhow::anyhow!("--empty-timeout: {e}"))?;
    let deadline = std::time::Duration::try_from_secs_f64(args.deadline)
        .map_err(|e| anyhow::anyhow!("--deadline: {e}"))?;
    let mut builder =
        DiscoveredChannel::builder(registry, args.service).empty_timeout(empty_timeout);
    if let Some(millis) = args.hedge_after {
        let delay = std::time::Duration::from_millis(millis);
        builder = builder.hedging(Hedging::after(delay).max_attempts(3));
    }
    let channel = builder.build();
    let stats = Arc::new(CallStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let calls = (args.calls > 0).then_some(args.calls);
    let run = examples::call_loop(
        AdderClient::new(channel.clone()),
        calls,
        args.concurrency,
        deadline,
        stats.clone(),
        stop_rx,
    );
    tokio::pin!(run);
    let signal = grpc_register::shutdown_signal();
    tokio::pin!(signal);
    let signalled = tokio::select! {
        () = &mut run => false,
        () = &mut signal => {
            let _ = stop_tx.send(true);
            run.await;
            true
        }
    };
    stats.print();
    if !signalled && !linger.is_zero() {
        // The channel stays up meanwhile, so its gauges still describe it.
        let _ = tokio::time::timeout(linger, signal).await;
    }
    drop(channel);
    std::process::exit(if stats.failed() == 0 { 0 } else { 1 });
}
