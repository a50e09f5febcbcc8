//! A registry outage and the servers' return: probed on a capped, jittered backoff while it
//! is down, registered again within a second of it answering, and listed passing at once
//! (the health state is the re-registration's initial check status), so Consul need not
//! first run the check at its random offset within the interval.
//!
//! First on paused time against a registry that records each call (the exact schedule of a
//! 30 s outage), then in real time against consul-dev stopped and started empty on its port.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{check_until, dev_agent_with, registry_at, start};
use consul_api::CheckStatus;
use discovery_core::{CheckSpec, Error, HealthStatus, MemoryRegistry, Registration, Registry};
use grpc_register::{CheckKind, Registered};
use tokio::time::Instant;

/// A registry that can be taken down and brought back empty, recording each call it gets.
#[derive(Clone, Default)]
struct Agent(Arc<Mutex<AgentState>>);

#[derive(Default)]
struct AgentState {
    /// The registry while up.
    up: Option<MemoryRegistry>,
    calls: Vec<Call>,
}

#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    what: &'static str,
    /// What a `register` call asked for.
    registration: Option<Registration>,
}

// === impl Agent ===

impl Agent {
    fn up() -> Self {
        let agent = Agent::default();
        agent.restart_empty();
        agent
    }

    fn stop(&self) {
        self.0.lock().unwrap().up = None;
    }

    fn restart_empty(&self) {
        self.0.lock().unwrap().up = Some(MemoryRegistry::new());
    }

    /// The registry behind, as long as it is up.
    fn memory(&self) -> MemoryRegistry {
        self.0.lock().unwrap().up.clone().expect("the agent is up")
    }

    /// How many calls came so far: a mark for [`Agent::calls_since`]. (On paused time
    /// many calls share one instant, so a time would not do.)
    fn mark(&self) -> usize {
        self.0.lock().unwrap().calls.len()
    }

    fn calls_since(&self, mark: usize) -> Vec<Call> {
        self.0.lock().unwrap().calls[mark..].to_vec()
    }

    /// Records a call; the registry if up, else the error a refused connection gives.
    fn call(
        &self,
        what: &'static str,
        registration: Option<&Registration>,
    ) -> Result<MemoryRegistry, Error> {
        let mut state = self.0.lock().unwrap();
        state.calls.push(Call {
            at: Instant::now(),
            what,
            registration: registration.cloned(),
        });
        state.up.clone().ok_or_else(|| {
            Error::unavailable(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "agent down",
            ))
        })
    }
}

#[async_trait]
impl Registry for Agent {
    async fn register(&self, registration: &Registration) -> Result<(), Error> {
        self.call("register", Some(registration))?
            .register(registration)
            .await
    }

    async fn deregister(&self, id: &str) -> Result<(), Error> {
        self.call("deregister", None)?.deregister(id).await
    }

    async fn is_registered(&self, id: &str) -> Result<bool, Error> {
        self.call("is_registered", None)?.is_registered(id).await
    }

    async fn report(&self, id: &str, status: HealthStatus, output: &str) -> Result<(), Error> {
        self.call("report", None)?.report(id, status, output).await
    }
}

async fn serve(agent: &Agent, check: CheckKind) -> grpc_register::Running {
    start(
        Registered::builder(agent.clone(), "adder")
            .check(check)
            .also_register("multiplier", "calc.Multiplier")
            .drain(Duration::ZERO),
    )
    .await
}

fn grpc() -> CheckKind {
    CheckKind::Grpc {
        service: health::SERVER.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_30s_outage_the_servers_are_back_within_a_second_of_the_registry_answering() {
    let agent = Agent::up();
    // The default 10 s check interval: the keep-alive looks every 8-10 s while all is well.
    let running = serve(&agent, grpc()).await;
    let ids: Vec<String> = running
        .registrations()
        .iter()
        .map(|r| r.instance.id.clone())
        .collect();

    agent.stop();
    let (down, mark) = (Instant::now(), agent.mark());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let calls = agent.calls_since(mark);
    let noticed = calls.first().expect("the outage is noticed").at - down;
    assert!(
        noticed <= Duration::from_secs(10),
        "noticed at the next look, within one interval: {noticed:?}"
    );
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].at - w[0].at).collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        longest <= Duration::from_secs(1),
        "probed at least once a second while down (the cap), longest gap {longest:?}"
    );
    assert!(
        gaps.iter()
            .skip(4)
            .all(|g| *g >= Duration::from_millis(500)),
        "once capped, no faster than 2 probes/s: {gaps:?}"
    );
    let probing = Duration::from_secs(30) - noticed;
    let rate = calls.len() as f64 / probing.as_secs_f64();
    println!(
        "down 30 s: noticed after {noticed:?}, then {} calls in {probing:?} ({rate:.2}/s) for \
         two registrations, longest gap {longest:?}",
        calls.len()
    );
    assert!(
        rate <= 2.0,
        "one call per round, not one per registration: {rate:.2}/s"
    );

    agent.restart_empty();
    let (back, mark) = (Instant::now(), agent.mark());
    let memory = agent.memory();
    loop {
        let known = memory.instances();
        if ids.iter().all(|id| known.iter().any(|i| &i.id == id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = back.elapsed();
    println!("both registered again {took:?} after the registry answered");
    assert!(
        took <= Duration::from_secs(1),
        "registered again within the 1 s cap of the registry answering: {took:?}"
    );
    let after = agent.calls_since(mark);
    assert_eq!(
        after.first().map(|c| c.what),
        Some("is_registered"),
        "the first call after the outage is the cheap read: {after:?}"
    );
    for call in after.iter().filter(|c| c.what == "register") {
        let registration = call.registration.as_ref().unwrap();
        assert_eq!(
            registration.initial_status,
            Some(HealthStatus::Passing),
            "{} lost in the outage comes back with its SERVING state as the check's initial \
             status",
            registration.instance.id
        );
    }
    running.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_first_registration_and_one_forgotten_while_answering_leave_the_verdict_to_the_check() {
    let agent = Agent::up();
    let running = serve(&agent, grpc()).await;
    let first = agent.calls_since(0);
    assert!(
        first
            .iter()
            .filter_map(|c| c.registration.as_ref())
            .all(|r| r.initial_status.is_none()),
        "a first registration starts critical until the registry's first run: {first:?}"
    );

    // Reaped, say: the registry forgets the instance while answering all along.
    let id = running.id().to_owned();
    agent.memory().deregister(&id).await.unwrap();
    let forgot = agent.mark();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let again: Vec<Registration> = agent
        .calls_since(forgot)
        .into_iter()
        .filter_map(|c| c.registration)
        .collect();
    assert_eq!(again.len(), 1, "registered again within one interval");
    assert_eq!(
        again[0].initial_status, None,
        "no claim: the registry may have removed it for being critical"
    );
    running.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_ttl_registration_always_starts_with_the_health_state() {
    let agent = Agent::up();
    let running = serve(&agent, CheckKind::Ttl(Duration::from_secs(15))).await;
    let registrations: Vec<Registration> = agent
        .calls_since(0)
        .into_iter()
        .filter_map(|c| c.registration)
        .collect();
    assert_eq!(registrations.len(), 2, "both services registered");
    for registration in &registrations {
        assert!(matches!(registration.check, Some(CheckSpec::Ttl { .. })));
        assert_eq!(
            registration.initial_status,
            Some(HealthStatus::Passing),
            "the server is its TTL check: {} starts passing, not critical until the first \
             report",
            registration.instance.id
        );
    }
    running.stop().await.unwrap();
}

/// Consul runs a new check first at a random point within its interval, and starts it
/// critical; 10 s here, Consul's default. So without the health state as initial status a
/// server would be listed passing only 0-10 s after registering again.
const INTERVAL: Duration = Duration::from_secs(10);

/// Long enough for every server to notice (its next look, within one interval) and for the
/// backoff to reach its 1 s cap (about 1.5 s later): a 30 s outage leaves it at the same cap.
const OUTAGE: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_down_then_back_empty_lists_every_server_passing_within_2s() {
    let config = || consul_dev::Config::default().node_name("dev");
    let (agent, registry) = dev_agent_with(config()).await;
    let addr = agent.addr();
    let mut servers = Vec::new();
    for _ in 0..3 {
        let running = start(
            Registered::builder(registry_at(&agent.http_addr()), "phoenix")
                .check_interval(INTERVAL)
                .drain(Duration::ZERO),
        )
        .await;
        servers.push(running);
    }

    agent.shutdown().await;
    tokio::time::sleep(OUTAGE).await;
    let agent = consul_dev::DevAgent::start_with(config(), addr)
        .await
        .expect("the same port again");
    let back = Instant::now();
    let mut each = Vec::new();
    for server in &servers {
        check_until(&registry, server.id(), "registered and passing", |c| {
            c.status == CheckStatus::Passing
        })
        .await;
        each.push(back.elapsed());
    }
    let took = back.elapsed();
    println!("registered and passing after the agent answered again: {each:?}");
    assert!(
        took < Duration::from_secs(2),
        "every server registered and passing within 2 s of the agent answering: {each:?}"
    );
    for server in servers {
        server.stop().await.unwrap();
    }
    drop(agent);
}
