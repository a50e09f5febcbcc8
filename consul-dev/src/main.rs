//! The `consul-dev` binary: a single-node, in-memory, Consul-compatible agent.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use consul_dev::{Config, DevAgent};

/// A single-node, in-memory, Consul-compatible agent for development and tests.
#[derive(Debug, Parser)]
#[command(name = "consul-dev", version)]
struct Args {
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8500", env = "CONSUL_DEV_HTTP_ADDR")]
    http_addr: SocketAddr,
    /// Node name (default: the host name).
    #[arg(long)]
    node: Option<String>,
    /// Datacenter name.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// Turn ACLs on (default deny) with this management token.
    #[arg(long)]
    acl_token: Option<String>,
    /// Test flag: reaper period in milliseconds (Consul: 30000).
    #[arg(long, value_name = "MS")]
    reaper_interval_ms: Option<u64>,
    /// Test flag: floor of DeregisterCriticalServiceAfter in milliseconds (Consul: 60000).
    #[arg(long, value_name = "MS")]
    min_deregister_after_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = Config::default().datacenter(args.datacenter);
    if let Some(node) = args.node {
        config = config.node_name(node);
    }
    if let Some(token) = args.acl_token {
        config = config.acl_token(token);
    }
    if let Some(ms) = args.reaper_interval_ms {
        config = config.reaper_interval(Duration::from_millis(ms));
    }
    if let Some(ms) = args.min_deregister_after_ms {
        config = config.min_deregister_after(Duration::from_millis(ms));
    }
    let agent = DevAgent::start_with(config, args.http_addr)
        .await
        .with_context(|| format!("starting consul-dev on {}", args.http_addr))?;
    tracing::info!("HTTP API on http://{}", agent.http_addr());
    wait_for_signal().await?;
    tracing::info!("shutting down");
    agent.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
