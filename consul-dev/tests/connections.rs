//! Connections as Consul's agent handles them: the per-client connection limit
//! (`limits.http_max_conns_per_client`, 200) and its raw 429, and the header-read timeout
//! that makes connections trickling their request heads count only until it closes them.
//! Conformance cases 57, 58, 60, 61, 78 (case 59, timed, has a test binary to itself:
//! `header_timeout.rs`); `tests/README.md` lists every case and where it is tested.
//!
//! The clients here are raw TCP, so that each test controls exactly how many connections
//! exist and sees the bytes the agent writes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Agent;
use consul_dev::Config;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Consul's answer to the connection over the limit, byte for byte.
const TOO_MANY: &str = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n\
    Content-Length: 81\r\nConnection: close\r\n\r\n\
    Your IP is issuing too many concurrent connections, please rate limit your calls\n";

/// How long a raw client waits for an answer it expects before failing.
const ANSWER: Duration = Duration::from_secs(10);

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connects")
}

/// Everything the agent writes on `conn` until it closes it, as text.
async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(ANSWER, conn.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the agent closes the connection in time");
    String::from_utf8(got).expect("UTF-8")
}

/// Sends a request for `path` on a raw connection.
async fn send_get(conn: &mut TcpStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: consul\r\n\r\n");
    conn.write_all(request.as_bytes())
        .await
        .expect("request sent");
}

/// Reads one answer's head (up to the blank line) and returns its status line.
async fn status_line(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(ANSWER, conn.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("reads");
        assert_ne!(
            n,
            0,
            "closed before a whole head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).expect("UTF-8");
    head.lines().next().unwrap_or_default().to_owned()
}

/// Reads `path` on `conn` (kept open) and returns its `X-Consul-Index`.
async fn current_index(conn: &mut TcpStream, path: &str) -> u64 {
    send_get(conn, path).await;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).await.expect("an answer's head");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).expect("UTF-8").to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {head:?}"))
            .trim()
            .to_owned()
    };
    let mut body = vec![0u8; header("content-length:").parse().expect("a length")];
    conn.read_exact(&mut body).await.expect("the body");
    header("x-consul-index:").parse().expect("a numeric index")
}

/// Case 57: with the default limit, 200 connections from one IP are held even when idle
/// (never having sent a byte); the 201st gets Consul's exact raw 429 before it sends
/// anything and is closed; when one of the 200 closes, a new connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_57_the_201st_connection_gets_consuls_raw_429() {
    let a = Agent::start().await;
    let addr = a.agent.addr();
    let mut open = Vec::new();
    for _ in 0..200 {
        open.push(connect(addr).await);
    }
    // The agent counts a connection once it has accepted it; a request on the last one
    // proves all 200 are accepted (and counted) before the 201st arrives.
    send_get(
        open.last_mut().expect("200 connections"),
        "/v1/status/leader",
    )
    .await;
    assert_eq!(
        status_line(open.last_mut().expect("200")).await,
        "HTTP/1.1 200 OK"
    );
    let mut over = connect(addr).await;
    assert_eq!(
        read_to_close(&mut over).await,
        TOO_MANY,
        "the 201st connection gets Consul's bytes, unasked, then the close"
    );
    drop(open.pop());
    let mut next = wait_for_room(addr).await;
    send_get(&mut next, "/v1/status/leader").await;
    assert_eq!(
        status_line(&mut next).await,
        "HTTP/1.1 200 OK",
        "a closed connection makes room for a new one"
    );
}

/// Connects until a connection is admitted (a close is uncounted as soon as the agent
/// sees it, which is soon but not at once).
async fn wait_for_room(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + ANSWER;
    loop {
        let mut conn = connect(addr).await;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut byte)).await {
            Err(_) => return conn,
            Ok(_) => assert!(Instant::now() < deadline, "no room after a close"),
        }
    }
}

/// Case 58: 250 concurrent blocking queries from one client: with the default limit 200
/// are held and 50 are answered with Consul's 429; with the limit raised to 300, all 250
/// are held; a change answers every held one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_58_250_blocking_queries_against_the_limit() {
    let default = Agent::start().await;
    let (held, refused) = blocking_queries(&default, 250, 200).await;
    assert_eq!(
        (held, refused),
        (200, 50),
        "200 held and 50 refused, as Consul does"
    );

    // Raised above Consul's default of 200: this half checks that a raised limit holds
    // all 250.
    let raised = Agent::start_with(
        Config::default()
            .node_name("dev-node")
            .http_max_conns_per_client(300),
    )
    .await;
    let (held, refused) = blocking_queries(&raised, 250, 250).await;
    assert_eq!(
        (held, refused),
        (250, 0),
        "all 250 held with the limit at 300"
    );
}

/// Starts `n` blocking queries on their own connections, waits until `expect_held` are
/// blocked, wakes them with a change, and counts how many were answered 200 after the
/// change and how many got Consul's 429.
async fn blocking_queries(a: &Agent, n: usize, expect_held: usize) -> (usize, usize) {
    let addr = a.agent.addr();
    // The index is read on the first of the `n` connections, so that no other connection
    // (a client's idle pooled one) takes a place under the limit.
    let mut first = connect(addr).await;
    let index = current_index(&mut first, "/v1/health/service/web").await;
    let mut first = Some(first);
    let mut queries = JoinSet::new();
    for _ in 0..n {
        let conn = first.take();
        queries.spawn(async move {
            let mut conn = match conn {
                Some(conn) => conn,
                None => connect(addr).await,
            };
            let path = format!("/v1/health/service/web?index={index}&wait=5m");
            // A refused connection may be closed before or while the request is written.
            let request = format!("GET {path} HTTP/1.1\r\nHost: consul\r\n\r\n");
            let _ = conn.write_all(request.as_bytes()).await;
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                    Err(e) => panic!("the connection failed: {e}"),
                }
                if got.starts_with(b"HTTP/1.1 200") || got == TOO_MANY.as_bytes() {
                    break;
                }
            }
            String::from_utf8(got).expect("UTF-8")
        });
    }
    tokio::time::timeout(ANSWER, a.agent.wait_for_blocked_queries(expect_held))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the admitted queries block: {} of {expect_held}",
                a.agent.blocked_queries()
            )
        });
    let mut refused = 0;
    // The refused ones answer at once; the held ones only after the change.
    while refused < n - expect_held {
        let answer = tokio::time::timeout(ANSWER, queries.join_next())
            .await
            .expect("the refused connections are answered at once")
            .expect("a query")
            .expect("the query task");
        assert_eq!(
            answer, TOO_MANY,
            "a query answered before the change is a 429"
        );
        refused += 1;
    }
    assert_eq!(
        a.agent.blocked_queries(),
        expect_held,
        "no more held than admitted"
    );
    // From another client IP: this one has no room left, as it would have none on Consul.
    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("a client on 127.0.0.2");
    let r = other
        .put(a.url("/v1/agent/service/register"))
        .body(json!({"Name": "web"}).to_string())
        .send()
        .await
        .expect("another IP has its own limit");
    assert_eq!(r.status(), 200, "the change is registered");
    let mut held = 0;
    while let Some(answer) = tokio::time::timeout(ANSWER, queries.join_next())
        .await
        .expect("every held query is answered after the change")
    {
        let answer = answer.expect("the query task");
        assert!(
            answer.starts_with("HTTP/1.1 200 OK"),
            "a held query is answered 200 after the change: {answer:?}"
        );
        held += 1;
    }
    (held, refused)
}

/// Case 60: connections still sending their request heads count against the limit: 200
/// tricklers leave no room for a 201st connection (429) until the header-read timeout
/// closes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_60_trickling_connections_count_against_the_limit() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let a = Agent::start_with(
        Config::default()
            .node_name("dev-node")
            .http_header_read_timeout(TIMEOUT),
    )
    .await;
    let addr = a.agent.addr();
    let mut open = Vec::new();
    for _ in 0..200 {
        let mut conn = connect(addr).await;
        conn.write_all(b"GET /v1/sta")
            .await
            .expect("the head's first bytes");
        open.push(conn);
    }
    // The agent accepts in arrival order, so the 200 are counted before this one.
    let mut over = connect(addr).await;
    assert_eq!(
        read_to_close(&mut over).await,
        TOO_MANY,
        "no room while 200 trickle"
    );
    let closed = read_to_close(open.last_mut().expect("200")).await;
    assert_eq!(
        closed, "",
        "a trickler is closed without an answer at the timeout"
    );
    let mut next = wait_for_room(addr).await;
    send_get(&mut next, "/v1/status/leader").await;
    assert_eq!(
        status_line(&mut next).await,
        "HTTP/1.1 200 OK",
        "room again after the timeout"
    );
    drop(open);
}

/// Case 61: a burst of 1,000 connections at once is queued by the kernel, as for Consul
/// (Go listens with a backlog of `somaxconn`), so none waits out a dropped SYN's
/// one-second retransmit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_61_a_burst_of_connections_is_queued_not_dropped() {
    // No limit: the burst is 1,000 connections from one IP, over Consul's default of 200.
    let a = Agent::start_with(
        Config::default()
            .node_name("dev-node")
            .http_max_conns_per_client(0),
    )
    .await;
    let addr = a.agent.addr();
    let mut burst = JoinSet::new();
    for _ in 0..1_000 {
        burst.spawn(async move {
            let start = Instant::now();
            let conn = connect(addr).await;
            (start.elapsed(), conn)
        });
    }
    let mut slowest = Duration::ZERO;
    let mut open = Vec::new();
    while let Some(done) = burst.join_next().await {
        let (took, conn) = done.expect("a connect");
        slowest = slowest.max(took);
        open.push(conn);
    }
    assert!(
        slowest < Duration::from_millis(900),
        "every connection of the burst was queued at once; the slowest took {slowest:?}"
    );
}

/// Case 78: a request head is read up to Go's allowance (1 MiB of headers and its 4 KiB of
/// slack): a 900 KiB header is served, a 1.1 MiB one gets 431.
#[tokio::test]
async fn case_78_heads_up_to_gos_allowance() {
    let a = Agent::start().await;
    for (size, want) in [
        (900 * 1024, "HTTP/1.1 200 OK"),
        (1_100 * 1024, "HTTP/1.1 431"),
    ] {
        let mut conn = connect(a.agent.addr()).await;
        let request = format!(
            "GET /v1/status/leader HTTP/1.1\r\nHost: consul\r\nX-Big: {}\r\n\r\n",
            "b".repeat(size)
        );
        // The agent may answer (431) before the whole head is written.
        let _ = conn.write_all(request.as_bytes()).await;
        let line = status_line(&mut conn).await;
        assert!(line.starts_with(want), "{size} bytes: {line:?}");
    }
}
