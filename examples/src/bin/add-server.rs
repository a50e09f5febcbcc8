//! `add-server`: serves Adder, registered in Consul with a gRPC health check; on SIGINT or
//! SIGTERM it deregisters, drains and stops, prints how many `Add` calls it answered and
//! exits 0. SIGUSR1 turns its health NOT_SERVING and SIGUSR2 back SERVING (for fault
//! drills such as the demo's); `--served-file` keeps its count where it survives a SIGKILL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use examples::{AdderService, Served};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_tracing();
    let args = Args::parse();
    let check_interval = Duration::try_from_secs_f64(args.check_interval)
        .map_err(|e| anyhow::anyhow!("--check-interval: {e}"))?;
    let served = Arc::new(match &args.served_file {
        Some(path) => Served::with_file(path)
            .map_err(|e| anyhow::anyhow!("--served-file {}: {e}", path.display()))?,
        None => Served::new(),
    });
    let registry = examples::registry_from_env()?;
    let opts = examples::ServerOptions {
        service: args.service,
        listen: args.listen,
        check_interval,
        ..Default::default()
    };
    let service = AdderService::counting(served.clone());
    let running = examples::start_adder(registry, &opts, service).await?;
    println!("serving {} on {}", running.id(), running.local_addr());
    let toggles = tokio::spawn(health_toggles(running.health().clone()));
    running
        .run_until(async {
            grpc_register::shutdown_signal().await;
            // The stop sequence owns the health state from here.
            toggles.abort();
        })
        .await?;
    println!("served {} Add calls", served.count());
    println!("stopped");
    Ok(())
}

/// SIGUSR1: NOT_SERVING; SIGUSR2: SERVING (the whole server and `add.Adder`). Consul's
/// check and clients watching `grpc.health.v1` see the change; calls are still answered.
async fn health_toggles(health: health::Health) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::warn!("no SIGUSR1/SIGUSR2 handlers: health stays as it is");
        return;
    };
    loop {
        let serving = tokio::select! {
            _ = usr1.recv() => false,
            _ = usr2.recv() => true,
        };
        for service in [health::SERVER, examples::ADDER_HEALTH_NAME] {
            if serving {
                health.set_serving(service).await;
            } else {
                health.set_not_serving(service).await;
            }
        }
        println!(
            "health: {}",
            if serving { "SERVING" } else { "NOT_SERVING" }
        );
    }
}
