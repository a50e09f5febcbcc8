//! The `consul-dev` binary: a single-node, in-memory, Consul-compatible agent.
#![forbid(unsafe_code)]

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use consul_dev::{Config, DevAgent};

/// A single-node, in-memory, Consul-compatible agent for development and tests.
#[derive(Parser)]
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
    /// Turn ACLs on (default deny) with this management token. Prefer the environment
    /// variable: a command-line argument is visible to every user in process listings.
    #[arg(long, env = "CONSUL_DEV_ACL_TOKEN", hide_env_values = true)]
    acl_token: Option<String>,
    /// Test flag: reaper period in milliseconds (Consul: 30000).
    #[arg(long, value_name = "MS")]
    reaper_interval_ms: Option<u64>,
    /// Test flag: floor of DeregisterCriticalServiceAfter in milliseconds (Consul: 60000).
    #[arg(long, value_name = "MS")]
    min_deregister_after_ms: Option<u64>,
    /// Concurrent HTTP connections allowed per client IP, as Consul's
    /// `limits.http_max_conns_per_client` (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 200)]
    http_max_conns_per_client: usize,
    /// Seconds a client may take to send a request head after its first byte (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    http_header_read_timeout: u64,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain, the agent's first.
    #[arg(long, value_name = "PEM", requires = "https_key_file")]
    https_cert_file: Option<PathBuf>,
    /// The PEM private key of --https-cert-file.
    #[arg(long, value_name = "PEM", requires = "https_cert_file")]
    https_key_file: Option<PathBuf>,
}

/// By hand so that the management token never reaches a log or a panic message.
impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Args {
            http_addr,
            node,
            datacenter,
            acl_token,
            reaper_interval_ms,
            min_deregister_after_ms,
            http_max_conns_per_client,
            http_header_read_timeout,
            https_cert_file,
            https_key_file,
        } = self;
        f.debug_struct("Args")
            .field("http_addr", http_addr)
            .field("node", node)
            .field("datacenter", datacenter)
            .field("acl_token", &acl_token.as_ref().map(|_| "<redacted>"))
            .field("reaper_interval_ms", reaper_interval_ms)
            .field("min_deregister_after_ms", min_deregister_after_ms)
            .field("http_max_conns_per_client", http_max_conns_per_client)
            .field("http_header_read_timeout", http_header_read_timeout)
            .field("https_cert_file", https_cert_file)
            .field("https_key_file", https_key_file)
            .finish()
    }
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
    let mut config = Config::default()
        .datacenter(args.datacenter)
        .http_max_conns_per_client(args.http_max_conns_per_client)
        .http_header_read_timeout(Duration::from_secs(args.http_header_read_timeout));
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
    if let (Some(cert), Some(key)) = (&args.https_cert_file, &args.https_key_file) {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        config = config.https(read(cert)?, read(key)?);
    }
    let agent = DevAgent::start_with(config, args.http_addr)
        .await
        .with_context(|| format!("starting consul-dev on {}", args.http_addr))?;
    tracing::info!("HTTP API on {}", agent.url());
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn acl_token_names_its_env_var_and_hides_its_value() {
        let command = Args::command();
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == "acl_token")
            .expect("an --acl-token argument");
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some("CONSUL_DEV_ACL_TOKEN"),
            "--acl-token falls back to CONSUL_DEV_ACL_TOKEN"
        );
        assert!(
            arg.is_hide_env_values_set(),
            "--help must not print the token taken from the environment"
        );
    }

    #[test]
    fn acl_token_flag_still_parses() {
        let args = Args::try_parse_from(["consul-dev", "--acl-token", "from-flag"])
            .expect("--acl-token parses");
        assert_eq!(args.acl_token.as_deref(), Some("from-flag"));
    }

    #[test]
    fn connection_limit_defaults_to_consuls_and_can_be_raised() {
        let args = Args::try_parse_from(["consul-dev"]).expect("no flags parse");
        assert_eq!(args.http_max_conns_per_client, 200, "Consul's default");
        assert_eq!(args.http_header_read_timeout, 10);
        let args = Args::try_parse_from(["consul-dev", "--http-max-conns-per-client", "0"])
            .expect("the flag parses");
        assert_eq!(args.http_max_conns_per_client, 0, "0: no limit");
    }

    #[test]
    fn https_needs_both_the_certificate_and_the_key() {
        let alone = Args::try_parse_from(["consul-dev", "--https-cert-file", "c.pem"]);
        assert!(alone.is_err(), "a certificate without a key is refused");
        let both = Args::try_parse_from([
            "consul-dev",
            "--https-cert-file",
            "c.pem",
            "--https-key-file",
            "k.pem",
        ])
        .expect("both parse");
        assert_eq!(both.https_key_file, Some(PathBuf::from("k.pem")));
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let args = Args::try_parse_from(["consul-dev", "--acl-token", "s3cr3t-token"])
            .expect("--acl-token parses");
        let debug = format!("{args:?}");
        assert!(
            !debug.contains("s3cr3t-token"),
            "the token must not appear in Debug output: {debug}"
        );
        assert!(
            debug.contains("<redacted>"),
            "Debug output shows that a token is set: {debug}"
        );
    }
}
