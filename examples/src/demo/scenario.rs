//! Setting the demo up (the agent, the channel, the callers, the screen), running its steps
//! (in `steps`), and tearing it down into the final report. Uses every other part.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use consul_api::{Client, Config, ConsulRegistry};
use grpc_resolve::DiscoveredChannel;

use super::board::{Board, LogWriter};
use super::fleet::Fleet;
use super::report::{self, Promise, StepResult};
use super::screen::{Screen, Sources};
use super::traffic::Traffic;
use super::{consul_watch, steps};

/// The number of steps in the scenario.
pub const STEPS: usize = 7;

/// How a demo runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The program the backends run: `add-server`, or a binary that runs its code
    /// ([`run_add_server`](crate::run_add_server)) when given `server_args` first.
    pub server_exe: PathBuf,
    /// Arguments before the server's own flags (`--service`, `--listen`, `--served-file`).
    pub server_args: Vec<String>,
    /// Callers calling at once.
    pub concurrency: usize,
    /// Each call's deadline: a call stuck on a hung backend fails after this.
    pub deadline: Duration,
    /// Print plain lines instead of redrawing the screen.
    pub plain: bool,
}

impl Settings {
    /// Backends from `server_exe` (an `add-server`), 8 callers, a 1 s deadline, and plain
    /// lines unless stdout is a terminal.
    pub fn new(server_exe: impl Into<PathBuf>) -> Self {
        Settings {
            server_exe: server_exe.into(),
            server_args: Vec::new(),
            concurrency: 8,
            deadline: Duration::from_secs(1),
            plain: !std::io::stdout().is_terminal(),
        }
    }
}

/// The agent the demo runs on.
#[derive(Debug)]
pub(super) enum Agent {
    /// Ours: it can be restarted.
    Embedded {
        agent: Option<consul_dev::DevAgent>,
        addr: SocketAddr,
    },
    /// Named by `CONSUL_HTTP_ADDR`: not ours to restart.
    External(String),
}

impl Agent {
    async fn start() -> anyhow::Result<Self> {
        if let Ok(addr) = std::env::var("CONSUL_HTTP_ADDR")
            && !addr.is_empty()
        {
            return Ok(Agent::External(addr));
        }
        let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse()?)
            .await
            .context("start the embedded consul-dev agent")?;
        let addr = agent.addr();
        Ok(Agent::Embedded {
            agent: Some(agent),
            addr,
        })
    }

    /// `host:port`, as `CONSUL_HTTP_ADDR` takes it.
    pub(super) fn addr(&self) -> String {
        match self {
            Agent::Embedded { addr, .. } => addr.to_string(),
            Agent::External(addr) => addr.clone(),
        }
    }

    /// Stops the embedded agent (its state goes with it).
    pub(super) async fn stop(&mut self) {
        if let Agent::Embedded { agent, .. } = self
            && let Some(agent) = agent.take()
        {
            agent.shutdown().await;
        }
    }

    /// Starts an empty embedded agent on the same port.
    pub(super) async fn start_again(&mut self) -> anyhow::Result<()> {
        if let Agent::Embedded { agent, addr } = self {
            let fresh = consul_dev::DevAgent::start(*addr)
                .await
                .with_context(|| format!("start consul-dev again on {addr}"))?;
            *agent = Some(fresh);
        }
        Ok(())
    }
}

/// Everything the steps work with.
#[derive(Debug)]
pub(super) struct Demo {
    pub(super) board: Board,
    pub(super) fleet: Fleet,
    pub(super) traffic: Arc<Traffic>,
    pub(super) channel: DiscoveredChannel,
    pub(super) consul: Client,
    pub(super) service: String,
    pub(super) agent: Agent,
    pub(super) screen: Screen,
    results: Vec<StepResult>,
    /// Each server's count at the end of the last step, by instance id.
    served_before: BTreeMap<String, u64>,
    step_started: Instant,
    /// Promises the running step saw broken besides its failed calls.
    broken: Vec<String>,
    /// The code the running step's failed calls must carry, if any.
    pub(super) failures_as: Option<tonic::Code>,
}

/// Runs the demo. `Ok(true)` when every step kept its promise and matched the servers'
/// counts; `Err` when the demo itself could not go on (a server that never started, an
/// agent that never came back), with what it was waiting for.
pub async fn run(settings: Settings) -> anyhow::Result<bool> {
    let board = Board::new(settings.plain);
    init_logs(&board);
    anyhow::ensure!(
        settings.server_exe.is_file(),
        "no server program at {}",
        settings.server_exe.display()
    );
    let dir = std::env::temp_dir().join(format!("consul-grpc-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let outcome = run_in(settings, board, dir.clone()).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn run_in(settings: Settings, board: Board, dir: PathBuf) -> anyhow::Result<bool> {
    let agent = Agent::start().await?;
    let addr = agent.addr();
    let (service, agent_word) = match &agent {
        Agent::Embedded { .. } => ("adder".to_owned(), format!("consul-dev {addr}")),
        Agent::External(_) => (
            format!("demo-adder-{}", std::process::id()),
            format!("agent {addr} (CONSUL_HTTP_ADDR)"),
        ),
    };
    let consul = Client::new(Config::new(&addr)?)?;
    let channel =
        DiscoveredChannel::builder(ConsulRegistry::new(consul.clone()), service.clone()).build();
    let traffic = Arc::new(Traffic::start(
        channel.clone(),
        settings.concurrency,
        settings.deadline,
    ));
    let header = format!(
        "consul-grpc demo | {} callers, deadline {:?} -> DiscoveredChannel -> add-server processes | {agent_word}",
        settings.concurrency, settings.deadline
    );
    board.event(header.clone());
    let fleet = Fleet::new(
        settings.server_exe.clone(),
        settings.server_args.clone(),
        addr,
        service.clone(),
        dir,
        board.clone(),
        !settings.plain,
    );
    let watcher = consul_watch::spawn(consul.clone(), service.clone(), board.clone());
    let screen = Screen::start(Sources {
        board: board.clone(),
        channel: channel.clone(),
        traffic: traffic.clone(),
        header,
    });
    let mut demo = Demo {
        board: board.clone(),
        fleet,
        traffic: traffic.clone(),
        channel,
        consul,
        service,
        agent,
        screen,
        results: Vec::new(),
        served_before: BTreeMap::new(),
        step_started: Instant::now(),
        broken: Vec::new(),
        failures_as: None,
    };
    let started = Instant::now();
    let outcome = steps::all(&mut demo).await;
    let took = started.elapsed();

    // Whatever happened: stop calling, stop every server gracefully, then report.
    traffic.stop().await;
    for index in demo.fleet.alive() {
        if let Err(err) = demo.fleet.terminate(index).await {
            board.event(format!(
                "stopping {}: {err:#}",
                demo.fleet.servers()[index].name
            ));
        }
    }
    watcher.abort();
    let Demo {
        screen,
        fleet,
        results,
        mut agent,
        ..
    } = demo;
    screen.stop();
    agent.stop().await;
    outcome?;

    println!();
    println!(
        "servers (served: each one's own count of Add calls answered; ok: answers the callers got from it):"
    );
    let totals = traffic.totals();
    for (index, server) in fleet.servers().iter().enumerate() {
        let served = fleet.served(index)?;
        println!(
            "  {:<4} {:<28} served {served:>8}  ok {:>8}",
            server.name,
            server.id,
            totals.get(&server.id).copied().unwrap_or(0)
        );
    }
    println!();
    print!("{}", report::render(&results));
    println!("scenario: {:.1} s", took.as_secs_f64());
    Ok(report::all_kept(&results))
}

// === impl Demo ===

impl Demo {
    /// A step begins; after the first (which starts them once its servers are ready) the
    /// callers go again.
    pub(super) fn begin(&mut self, number: usize, title: &str) {
        self.step_started = Instant::now();
        self.board.step(number, STEPS, title);
        if number > 1 {
            self.traffic.resume();
        }
    }

    /// The running step saw a promise of the design broken (besides its failed calls): it
    /// is shown now and counts against the step at the end.
    pub(super) fn broken(&mut self, what: String) {
        self.board.caption(format!("BROKEN: {what}"));
        self.broken.push(what);
    }

    /// A step ends: pause the callers until their calls have ended and compare what they
    /// saw with what each server counted meanwhile. The callers stay paused until the next
    /// step begins, so no call falls between steps (or after the last).
    pub(super) async fn end(&mut self, title: &str, promise: Promise) -> anyhow::Result<()> {
        self.traffic.pause().await;
        let tally = self.traffic.take();
        let mut served = BTreeMap::new();
        for (index, server) in self.fleet.servers().iter().enumerate() {
            let now = self.fleet.served(index)?;
            let before = self
                .served_before
                .insert(server.id.clone(), now)
                .unwrap_or(0);
            if now > before {
                served.insert(server.id.clone(), now - before);
            }
        }
        self.board.step_done(title, tally.ok_total(), tally.failed);
        self.board.event(format!(
            "end of step: {} ok, {} failed; the servers counted {}",
            tally.ok_total(),
            tally.failed,
            served.values().sum::<u64>()
        ));
        self.screen.print_rows();
        self.results.push(StepResult {
            title: title.to_owned(),
            promise,
            tally,
            served,
            duration: self.step_started.elapsed(),
            broken: std::mem::take(&mut self.broken),
            failures_as: self.failures_as.take(),
        });
        Ok(())
    }
}

/// The demo's own logs: `warn` unless `RUST_LOG` says otherwise; on stderr without a
/// terminal, on the screen's log lines with one (so they do not tear the picture).
fn init_logs(board: &Board) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if board.plain() {
        builder.with_writer(std::io::stderr).try_init()
    } else {
        let board = board.clone();
        builder
            .with_ansi(false)
            .without_time()
            .with_writer(move || LogWriter::new(board.clone()))
            .try_init()
    };
}
