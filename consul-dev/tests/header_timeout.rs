//! The header-read timeout under load: 500 connections trickling their request heads are
//! closed while normal requests keep being answered quickly. Conformance case 59;
//! `tests/README.md` lists every case and where it is tested. Alone in its binary, so that
//! no other test of the suite shares its process while it measures.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use consul_dev::{Config, DevAgent};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long past the timeout the test waits for the agent before failing.
const SLACK: Duration = Duration::from_secs(10);

/// A client that sends a request head one byte a second and never finishes it; returns
/// how long after its first byte the agent closed the connection, and what it wrote.
async fn trickle(addr: SocketAddr) -> (Duration, Vec<u8>) {
    let mut conn = TcpStream::connect(addr).await.expect("connects");
    let head = format!(
        "GET /v1/status/leader HTTP/1.1\r\nHost: consul\r\nX-Long: {}\r\n\r\n",
        "x".repeat(120)
    );
    let mut bytes = head.bytes();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let first = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            read = conn.read(&mut buf) => match read {
                Ok(0) | Err(_) => return (first.elapsed(), got),
                Ok(k) => got.extend_from_slice(&buf[..k]),
            },
            _ = tick.tick() => {
                let byte = bytes.next().expect("a head longer than the test");
                if conn.write_all(&[byte]).await.is_err() {
                    return (first.elapsed(), got);
                }
            }
        }
    }
}

/// Case 59: 500 connections trickling their request heads, one byte a second, are closed
/// without an answer once the header-read timeout has passed since their first byte, while
/// normal requests keep being answered in under 100 ms throughout.
///
/// The agent runs on a runtime of its own, as it would in its own process; the tricklers
/// and the prober share another, so the clients' work does not delay the agent's tasks.
#[test]
fn case_59_trickling_heads_are_closed_while_normal_requests_answer() {
    const TRICKLERS: usize = 500;
    const TIMEOUT: Duration = Duration::from_secs(3);
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    };
    let agent_runtime = runtime();
    // Raised above Consul's default of 200: the 500 trickling connections and the prober
    // all come from 127.0.0.1 (case 60 checks that tricklers count against the limit).
    let config = Config::default()
        .node_name("dev-node")
        .http_max_conns_per_client(TRICKLERS + 10)
        .http_header_read_timeout(TIMEOUT);
    let agent = agent_runtime
        .block_on(DevAgent::start_with(
            config,
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("agent starts");
    let addr = agent.addr();
    runtime().block_on(async move {
        let mut tricklers = JoinSet::new();
        for _ in 0..TRICKLERS {
            tricklers.spawn(trickle(addr));
        }
        let prober = tokio::spawn(async move {
            let http = common::client();
            let url = format!("http://{addr}/v1/status/leader");
            let mut slowest = Duration::ZERO;
            let mut answered = 0;
            let until = Instant::now() + TIMEOUT + Duration::from_secs(2);
            while Instant::now() < until {
                let start = Instant::now();
                let r = http
                    .get(&url)
                    .send()
                    .await
                    .expect("a normal request is answered");
                assert_eq!(r.status(), 200);
                r.text().await.expect("its body");
                slowest = slowest.max(start.elapsed());
                answered += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (slowest, answered)
        });
        let mut closed_after = Vec::new();
        while let Some(done) = tokio::time::timeout(TIMEOUT + SLACK, tricklers.join_next())
            .await
            .expect("every trickling connection is closed")
        {
            let (after, got) = done.expect("a trickler");
            assert!(
                got.is_empty(),
                "closed without an answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            closed_after.push(after);
        }
        closed_after.sort();
        let (first, last) = (closed_after[0], closed_after[TRICKLERS - 1]);
        println!(
            "{TRICKLERS} trickling connections closed {first:?} to {last:?} after their first byte"
        );
        assert!(
            first >= TIMEOUT,
            "none closed before the timeout: {first:?}"
        );
        assert!(
            last < TIMEOUT + Duration::from_secs(2),
            "all closed soon after the timeout: {last:?}"
        );
        let (slowest, answered) = prober.await.expect("the prober");
        println!("{answered} normal requests meanwhile, the slowest answered in {slowest:?}");
        assert!(
            slowest < Duration::from_millis(100),
            "normal requests answered in under 100 ms throughout: slowest {slowest:?}"
        );
    });
    agent_runtime.block_on(agent.shutdown());
}
