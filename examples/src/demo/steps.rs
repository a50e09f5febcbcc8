//! The scenario's seven steps, each ending with the promise the design makes about its
//! failed calls. Uses the scenario's `Demo`, the fleet, the board and the report.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use consul_api::{CheckStatus, QueryOptions};
use grpc_resolve::EndpointInfo;

use super::board::{ConsulView, Process};
use super::consul_watch;
use super::report::Promise;
use super::scenario::{Agent, Demo};

/// How long the demo waits for the channel or Consul to show a change before it gives up
/// (Consul's checks run every second; discovery follows in milliseconds).
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs every step in order.
pub(super) async fn all(demo: &mut Demo) -> anyhow::Result<()> {
    three_start(demo).await?;
    fourth_joins(demo).await?;
    kill(demo).await?;
    hang(demo).await?;
    not_serving(demo).await?;
    agent_restart(demo).await?;
    rolling_restart(demo).await
}

async fn three_start(demo: &mut Demo) -> anyhow::Result<()> {
    let title = "three servers start and register";
    demo.begin(1, title);
    demo.board
        .caption("starting n1, n2, n3: add-server child processes");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let index = demo.fleet.spawn().await?;
        ids.push(demo.fleet.servers()[index].id.clone());
    }
    demo.board
        .caption("waiting for Consul's gRPC checks to pass and the channel to connect");
    wait_ready(demo, &ids).await?;
    demo.board
        .caption("calls spread over the three (weighted power of two choices on in-flight calls)");
    demo.traffic.resume();
    tokio::time::sleep(Duration::from_secs(3)).await;
    demo.end(title, Promise::NoFailures).await
}

async fn fourth_joins(demo: &mut Demo) -> anyhow::Result<()> {
    let title = "a fourth server joins";
    demo.begin(2, title);
    demo.board.caption("starting n4");
    let index = demo.fleet.spawn().await?;
    let id = demo.fleet.servers()[index].id.clone();
    wait_ready(demo, std::slice::from_ref(&id)).await?;
    demo.board
        .caption("n4 is in rotation: its share of the calls (with slow start, ramping up)");
    tokio::time::sleep(Duration::from_secs(4)).await;
    demo.end(title, Promise::NoFailures).await
}

async fn kill(demo: &mut Demo) -> anyhow::Result<()> {
    let title = "SIGKILL one server";
    demo.begin(3, title);
    let index = 1;
    let (name, id) = named(demo, index);
    let before = endpoint(demo, &id).context("n2 is not in the channel")?;
    demo.board.caption(format!(
        "kill -KILL {name}: the calls in flight on it (now {}) may fail, no other",
        before.in_flight
    ));
    demo.fleet.kill(index).await?;
    // Calls the channel sends it before it sees the connection drop are lost with it too.
    let start = Instant::now();
    let Some(late) = sent_until_out_of_rotation(demo, &id, before.calls).await else {
        anyhow::bail!("the channel still has {name} ready {PATIENCE:?} after it was killed")
    };
    demo.board.caption(format!(
        "{name} killed; the channel took it out of rotation after {:.0} ms ({late} calls sent to it meanwhile); Consul's check turns it critical",
        start.elapsed().as_secs_f64() * 1000.0
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A call lost with its connection says so: Unavailable, which retry policies key on.
    demo.failures_as = Some(tonic::Code::Unavailable);
    let promise = Promise::AtMost {
        bound: before.in_flight as u64 + late,
        which: format!(
            "calls in flight on {name} at the kill ({}) and sent to it before the channel saw the connection drop ({late})",
            before.in_flight
        ),
    };
    demo.end(title, promise).await
}

async fn hang(demo: &mut Demo) -> anyhow::Result<()> {
    let title = "one server hangs (SIGSTOP) and resumes";
    demo.begin(4, title);
    let index = 2;
    let (name, id) = named(demo, index);
    let before = endpoint(demo, &id);
    demo.fleet.signal(index, "STOP", Process::Hung).await?;
    let stuck = before.as_ref().map_or(0, |e| e.in_flight);
    let sent_before = before.map_or(0, |e| e.calls);
    demo.board.caption(format!(
        "kill -STOP {name}: its kernel still accepts, nothing answers; the calls in flight on it ({stuck}) and those sent to it until the channel sees it stopped answering may fail, no other"
    ));
    // Calls the channel sends it before it finds it silent (its calls waiting, no answer,
    // the others answering: about 300 ms) are stuck with it too.
    let start = Instant::now();
    let late = match sent_until_out_of_rotation(demo, &id, sent_before).await {
        Some(late) => late,
        None => {
            demo.broken(format!(
                "the channel still has {name} ready {PATIENCE:?} after it hung"
            ));
            endpoint(demo, &id).map_or(0, |e| e.calls.saturating_sub(sent_before))
        }
    };
    demo.board.caption(format!(
        "{name} hung; the channel took it out of rotation after {:.0} ms ({late} calls sent to it meanwhile)",
        start.elapsed().as_secs_f64() * 1000.0
    ));
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(start.elapsed())).await;
    demo.fleet.signal(index, "CONT", Process::Running).await?;
    demo.board.caption(format!(
        "kill -CONT {name}: it answers again and comes back into rotation"
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let promise = Promise::AtMost {
        bound: stuck as u64 + late,
        which: format!(
            "calls in flight on {name} when it hung ({stuck}) and sent to it before the channel found it silent ({late})"
        ),
    };
    demo.end(title, promise).await
}

async fn not_serving(demo: &mut Demo) -> anyhow::Result<()> {
    let title = "one server turns NOT_SERVING and back";
    demo.begin(5, title);
    let index = 3;
    let (name, id) = named(demo, index);
    demo.fleet
        .signal(index, "USR1", Process::NotServing)
        .await?;
    let start = Instant::now();
    demo.board.caption(format!(
        "{name} NOT_SERVING (SIGUSR1): it still answers, and should get no new calls"
    ));
    let left = wait_until(demo, &format!("{name} to leave rotation"), |eps| {
        !eps.iter().any(|e| e.id == id && e.ready)
    })
    .await;
    match left {
        Ok(()) => demo.board.caption(format!(
            "{name} left rotation {:.2} s after turning NOT_SERVING",
            start.elapsed().as_secs_f64()
        )),
        Err(err) => demo.broken(format!("{err:#}")),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    demo.fleet.signal(index, "USR2", Process::Running).await?;
    let back = Instant::now();
    demo.board
        .caption(format!("{name} SERVING again (SIGUSR2): it comes back"));
    match wait_ready(demo, std::slice::from_ref(&id)).await {
        Ok(()) => demo.board.caption(format!(
            "{name} back in rotation {:.2} s after turning SERVING",
            back.elapsed().as_secs_f64()
        )),
        Err(err) => demo.broken(format!("{err:#}")),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    demo.end(title, Promise::NoFailures).await
}

async fn agent_restart(demo: &mut Demo) -> anyhow::Result<()> {
    let title = "the agent restarts empty";
    demo.begin(6, title);
    if let Agent::External(addr) = &demo.agent {
        demo.board.caption(format!(
            "skipped: the agent at {addr} (CONSUL_HTTP_ADDR) is not the demo's to restart"
        ));
        return demo.end(title, Promise::NoFailures).await;
    }
    demo.board
        .caption("stopping the agent: every registration goes with it");
    demo.agent.stop().await;
    demo.board
        .caption("starting an empty agent on the same port; the servers must register again");
    demo.agent.start_again().await?;
    let start = Instant::now();
    let alive = alive_ids(demo);
    let registered = loop {
        let (passing, _) = demo
            .consul
            .health()
            .service(&demo.service, &QueryOptions::default().passing(true))
            .await
            .unwrap_or_default();
        if alive
            .iter()
            .all(|id| passing.iter().any(|e| &e.service.id == id))
        {
            break true;
        }
        if start.elapsed() >= PATIENCE {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if registered {
        demo.board.caption(format!(
            "all {} servers registered and passing again {:.2} s after the agent came back",
            alive.len(),
            start.elapsed().as_secs_f64()
        ));
    } else {
        demo.broken(format!(
            "the servers were not all registered and passing {PATIENCE:?} after the agent came back"
        ));
    }
    if let Err(err) = wait_ready(demo, &alive).await {
        demo.broken(format!("{err:#}"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    demo.end(title, Promise::NoFailures).await
}

async fn rolling_restart(demo: &mut Demo) -> anyhow::Result<()> {
    let title = "a rolling restart of every server";
    demo.begin(7, title);
    for index in demo.fleet.alive() {
        let (name, _) = named(demo, index);
        demo.board.caption(format!(
            "kill -TERM {name}: NOT_SERVING, deregister, drain, stop"
        ));
        let status = demo.fleet.terminate(index).await?;
        anyhow::ensure!(
            status.success(),
            "{name} did not exit 0 on SIGTERM: {status}"
        );
        let fresh = demo.fleet.spawn().await?;
        let (fresh_name, fresh_id) = named(demo, fresh);
        demo.board.caption(format!(
            "{name} stopped; its replacement {fresh_name} starts"
        ));
        if let Err(err) = wait_ready(demo, std::slice::from_ref(&fresh_id)).await {
            let consul = consul_watch::look(&demo.consul, &demo.service).await;
            let why = match consul {
                ConsulView::Up(statuses)
                    if statuses.get(&fresh_id) == Some(&CheckStatus::Passing) =>
                {
                    format!(
                        "; Consul lists {fresh_name} passing, so discovery is not following the agent"
                    )
                }
                _ => String::new(),
            };
            // Going on would stop the servers the callers still have.
            demo.broken(format!("{err:#}{why}; the rolling restart stops here"));
            return demo.end(title, Promise::NoFailures).await;
        }
    }
    demo.board.caption("every server replaced");
    tokio::time::sleep(Duration::from_secs(1)).await;
    demo.end(title, Promise::NoFailures).await
}

fn named(demo: &Demo, index: usize) -> (String, String) {
    let server = &demo.fleet.servers()[index];
    (server.name.clone(), server.id.clone())
}

fn endpoint(demo: &Demo, id: &str) -> Option<EndpointInfo> {
    demo.channel.endpoints().into_iter().find(|e| e.id == id)
}

/// Watches endpoint `id` until the channel takes it out of rotation (or forgets it), and
/// returns how many calls the channel sent it beyond `sent_before` meanwhile; `None` if it
/// is still ready after [`PATIENCE`].
async fn sent_until_out_of_rotation(demo: &Demo, id: &str, sent_before: u64) -> Option<u64> {
    let start = Instant::now();
    let mut last_calls = sent_before;
    loop {
        match endpoint(demo, id) {
            Some(e) if e.ready && start.elapsed() < PATIENCE => {
                last_calls = e.calls;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Some(e) if e.ready => return None,
            Some(e) => return Some(e.calls.saturating_sub(sent_before)),
            None => return Some(last_calls.saturating_sub(sent_before)),
        }
    }
}

fn alive_ids(demo: &Demo) -> Vec<String> {
    demo.fleet
        .alive()
        .into_iter()
        .map(|i| demo.fleet.servers()[i].id.clone())
        .collect()
}

/// Waits until every one of `ids` is ready in the channel.
async fn wait_ready(demo: &Demo, ids: &[String]) -> anyhow::Result<()> {
    wait_until(
        demo,
        &format!("{} to be ready in the channel", ids.join(", ")),
        |eps| {
            ids.iter()
                .all(|id| eps.iter().any(|e| &e.id == id && e.ready))
        },
    )
    .await
}

async fn wait_until(
    demo: &Demo,
    what: &str,
    done: impl FnMut(&[EndpointInfo]) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(PATIENCE, demo.channel.wait_for(done))
        .await
        .map(drop)
        .map_err(|_| anyhow::anyhow!("gave up after {PATIENCE:?} waiting for {what}"))
}
