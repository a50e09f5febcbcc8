//! `demo`: the whole path on one machine. Starts a Consul agent (the embedded consul-dev,
//! unless `CONSUL_HTTP_ADDR` names one), three Adder servers that register with gRPC health
//! checks, and a client that spreads calls over them through discovery; then stops one server
//! gracefully while the calls go on, and shows that none failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use consul_api::{Client, Config, ConsulRegistry};
use discovery_core::{Query, Resolver, Update};
use examples::pb::adder_client::AdderClient;
use examples::{CallStats, ServerOptions};
use futures_util::StreamExt;
use grpc_resolve::DiscoveredChannel;

const SERVERS: usize = 3;
const CONCURRENCY: usize = 4;

/// The demo.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9100).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        // Keep the demo's own lines readable; RUST_LOG=info shows every step.
        let filter = tracing_subscriber::EnvFilter::new("warn");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    } else {
        examples::init_tracing();
    }
    examples::serve_metrics(args.metrics_addr)?;
    match tokio::time::timeout(Duration::from_secs(60), run()).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!("the demo did not finish within a minute"),
    }
}

async fn run() -> anyhow::Result<()> {
    let (agent, registry) = match std::env::var("CONSUL_HTTP_ADDR") {
        Ok(addr) if !addr.is_empty() => {
            println!("consul: using the agent at {addr} (CONSUL_HTTP_ADDR)");
            (None, examples::registry_from_env()?)
        }
        _ => {
            let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse()?)
                .await
                .context("start the embedded consul-dev agent")?;
            println!(
                "consul: started embedded consul-dev at http://{} (its UI is at /ui/)",
                agent.http_addr()
            );
            let client = Client::new(Config::new(&agent.http_addr())?)?;
            (Some(agent), ConsulRegistry::new(client))
        }
    };

    let opts = ServerOptions::default();
    let mut servers = Vec::new();
    for _ in 0..SERVERS {
        let running = examples::start_server(registry.clone(), &opts).await?;
        println!(
            "server: {} serving on {}",
            running.id(),
            running.local_addr()
        );
        servers.push(running);
    }

    println!("waiting for Consul's gRPC health checks to pass on all {SERVERS} servers...");
    let mut watch = registry.watch(&Query::new(&opts.service));
    loop {
        match watch.next().await {
            Some(Update::Snapshot(instances)) if instances.len() == SERVERS => break,
            Some(_) => continue,
            None => anyhow::bail!("the watch ended"),
        }
    }
    println!("all {SERVERS} servers are passing in Consul");

    let channel = DiscoveredChannel::builder(registry.clone(), opts.service.clone()).build();
    let stats = Arc::new(CallStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let calls = tokio::spawn(examples::call_loop(
        AdderClient::new(channel),
        None,
        CONCURRENCY,
        examples::DEFAULT_DEADLINE,
        stats.clone(),
        stop_rx,
    ));

    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "\nphase 1: {CONCURRENCY} concurrent callers, {} calls so far, per backend:",
        stats.ok() + stats.failed()
    );
    print_counts(&stats.per_backend(), &BTreeMap::new());

    let leaving = servers.remove(0);
    let leaving_id = leaving.id().to_owned();
    println!("\nstopping {leaving_id} gracefully: NOT_SERVING, deregister, drain, close");
    leaving.stop().await?;
    let at_stop = stats.per_backend();
    println!("{leaving_id} stopped; calls continue");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    calls.await?;
    let at_end = stats.per_backend();
    println!("\nphase 2: calls per backend since {leaving_id} stopped:");
    print_counts(&at_end, &at_stop);

    println!("\ntotal calls per backend:");
    stats.print();

    for server in servers {
        server.stop().await?;
    }
    if let Some(agent) = agent {
        agent.shutdown().await;
    }
    if stats.failed() > 0 {
        anyhow::bail!("{} calls failed", stats.failed());
    }
    Ok(())
}

fn print_counts(now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) {
    for (backend, n) in now {
        let earlier = before.get(backend).copied().unwrap_or(0);
        println!("  {backend}: {} calls", n - earlier);
    }
}
