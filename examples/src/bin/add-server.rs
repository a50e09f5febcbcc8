//! `add-server`: serves Adder, registered in Consul with a gRPC health check; on SIGINT or
//! SIGTERM it deregisters, drains and stops, prints how many `Add` calls it answered and
//! exits 0. SIGUSR1 turns its health NOT_SERVING and SIGUSR2 back SERVING (for fault
//! drills such as the demo's); `--served-file` keeps its count where it survives a SIGKILL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Serves the Adder service, registered in Consul.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The service name to register.
    #[arg(long, default_value = "adder")]
    service: String,
    /// Where to listen; port 0 picks a free port (the real one is registered).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How often Consul runs the gRPC health check, in seconds.
    #[arg(long, default_value_t = 1.0)]
    check_interval: f64,
    /// Keep the number of `Add` calls answered in this file, rewritten before each answer
    /// (so it is right even after a SIGKILL).
    #[arg(long)]
    served_file: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9100).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_tracing();
    let args = Args::parse();
    examples::serve_metrics(args.metrics_addr)?;
    let check_interval = Duration::try_from_secs_f64(args.check_interval)
        .map_err(|e| anyhow::anyhow!("--check-interval: {e}"))?;
    let opts = examples::ServerOptions {
        service: args.service,
        listen: args.listen,
        check_interval,
        ..Default::default()
    };
    examples::run_add_server(&opts, args.served_file.as_deref()).await
}
