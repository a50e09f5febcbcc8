//! `demo`: the live failover demo. Starts an embedded consul-dev agent (unless
//! `CONSUL_HTTP_ADDR` names one), Adder servers as child processes and callers going
//! through a `DiscoveredChannel`, then breaks things while the calls go on: a server joins,
//! one is killed, one hangs and resumes, one turns NOT_SERVING and back, the agent restarts
//! empty, a rolling restart replaces every server. Redraws a board in a terminal, prints
//! plain lines otherwise; ends with each step's calls beside the servers' own counts, and
//! exits 1 if a step broke what the design promises (see `examples::demo`).
//!
//! The child processes are this binary again, as `demo serve`, which runs exactly what
//! `add-server` runs: `cargo run --bin demo` builds only this binary, and an `add-server`
//! left over from an older build might not take the flags the demo passes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// The live failover demo.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Callers calling at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Each call's deadline, in seconds.
    #[arg(long, default_value_t = 1.0)]
    deadline: f64,
    /// Print plain lines even on a terminal.
    #[arg(long)]
    plain: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9100): the demo's channel
    /// and Consul client (the servers are child processes, with metrics of their own off).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// One of the demo's backends: what `add-server` does, with its flags.
    #[command(hide = true)]
    Serve {
        #[arg(long, default_value = "adder")]
        service: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long)]
        served_file: Option<PathBuf>,
    },
}

/// A bound on the whole run, so a demo that cannot go on never hangs (the scenario itself
/// takes under a minute).
const LIMIT: Duration = Duration::from_secs(180);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Mode::Serve {
        service,
        listen,
        served_file,
    }) = args.mode
    {
        examples::init_tracing();
        let opts = examples::ServerOptions {
            service,
            listen,
            ..Default::default()
        };
        return examples::run_add_server(&opts, served_file.as_deref()).await;
    }
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    examples::serve_metrics(args.metrics_addr)?;
    let exe = std::env::current_exe().context("find the demo's own path")?;
    let mut settings = examples::demo::Settings::new(exe);
    settings.server_args = vec!["serve".to_owned()];
    settings.concurrency = args.concurrency;
    settings.deadline = Duration::try_from_secs_f64(args.deadline)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| {
            format!(
                "--deadline {}: not a positive number of seconds",
                args.deadline
            )
        })?;
    settings.plain |= args.plain;
    let terminal = !settings.plain;
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(LIMIT, examples::demo::run(settings)) => {
            outcome.unwrap_or_else(|_| Err(anyhow::anyhow!("the demo did not finish within {LIMIT:?}")))
        }
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if terminal {
        // The screen hides the cursor while it draws; an early end must give it back.
        print!("\x1b[?25h");
        let _ = std::io::stdout().flush();
    }
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(err) => Err(err),
    }
}
