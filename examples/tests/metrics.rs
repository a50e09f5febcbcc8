//! `add-client --metrics-addr` serves Prometheus text a scraper can read: the real binaries
//! (two `add-server`s, one `add-client`) against an in-process consul-dev; after 1,000
//! calls the scrape lists the documented grpc-resolve and consul-api series, with their
//! help text, and the per-endpoint call counters add up to 1,000.
//!
//! `add-client` prints its `calls:` line when the calls are done and then stays up for
//! `--linger` seconds, so the test scrapes after that line and then ends it with SIGTERM.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use consul_api::{Client, Config, QueryOptions};

const SERVICE: &str = "adder-metrics";

/// Kills a child process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn add_server(consul: &str) -> Killed {
    let mut server = Command::new(env!("CARGO_BIN_EXE_add-server"))
        .args(["--service", SERVICE, "--listen", "127.0.0.1:0"])
        .env("CONSUL_HTTP_ADDR", consul)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("add-server starts");
    let mut lines = BufReader::new(server.stdout.take().expect("piped stdout")).lines();
    let first = lines.next().expect("a first line").expect("utf-8");
    assert!(first.starts_with("serving "), "{first}");
    Killed(server)
}

/// A port free a moment ago, for the client's metrics listener.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("an address").port()
}

/// The body of `GET /metrics` at `addr` (HTTP/1.1, one request, connection closed after).
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("the metrics listener accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("the request is sent");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("the answer is read");
    let raw = String::from_utf8(raw).expect("Prometheus text is UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "expected 200, got {head}");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// One sample of the text format: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a series and a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The samples named `name` whose labels include all of `labels`.
fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The one sample named `name` with `labels`.
fn one(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(samples, name, labels).as_slice() {
        [sample] => sample.value,
        other => panic!("expected one {name} {labels:?}, found {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_of_add_client_lists_the_documented_series_and_its_calls_add_up() {
    let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let consul_addr = agent.http_addr();
    let consul = Client::new(Config::new(&consul_addr).unwrap()).unwrap();
    let _servers = [add_server(&consul_addr), add_server(&consul_addr)];
    // Consul's gRPC checks must pass before the client can see the servers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (entries, _) = consul
            .health()
            .service(SERVICE, &QueryOptions::default().passing(true))
            .await
            .unwrap();
        if entries.len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the servers' checks never passed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut client = Command::new(env!("CARGO_BIN_EXE_add-client"))
        .args([
            "--service",
            SERVICE,
            "--calls",
            "1000",
            "--concurrency",
            "4",
        ])
        .args(["--metrics-addr", &metrics_addr, "--linger", "120"])
        .env("CONSUL_HTTP_ADDR", &consul_addr)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("add-client starts");
    let stdout = client.stdout.take().expect("piped stdout");
    let mut client = Killed(client);
    let printed = tokio::task::spawn_blocking(move || {
        let mut printed = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("utf-8");
            let done = line.starts_with("calls: ");
            printed.push(line);
            if done {
                break;
            }
        }
        printed
    })
    .await
    .unwrap();
    assert_eq!(
        printed.last().map(String::as_str),
        Some("calls: 1000 ok, 0 failed"),
        "{printed:?}"
    );

    let text = tokio::task::spawn_blocking(move || scrape(&metrics_addr))
        .await
        .unwrap();
    let samples = samples(&text);
    let service = [("service", SERVICE)];

    // grpc-resolve: calls, per endpoint and in all; endpoints by state; discovery; latency.
    let per_endpoint = find(&samples, "grpc_resolve_endpoint_calls_total", &service);
    assert_eq!(
        per_endpoint.len(),
        2,
        "expected one call counter per server: {per_endpoint:?}"
    );
    assert_eq!(
        per_endpoint.iter().map(|s| s.value).sum::<f64>(),
        1000.0,
        "expected the per-endpoint call counters to add up to 1,000: {per_endpoint:?}"
    );
    assert!(
        per_endpoint.iter().all(|s| s.value > 0.0),
        "expected both servers called: {per_endpoint:?}"
    );
    assert_eq!(one(&samples, "grpc_resolve_calls_total", &service), 1000.0);
    assert_eq!(
        one(
            &samples,
            "grpc_resolve_endpoints",
            &[("service", SERVICE), ("state", "ready")]
        ),
        2.0,
        "expected both endpoints ready"
    );
    assert!(one(&samples, "grpc_resolve_discovery_updates_total", &service) >= 1.0);
    assert_eq!(
        one(
            &samples,
            "grpc_resolve_call_duration_seconds_count",
            &service
        ),
        1000.0,
        "expected one latency sample per call"
    );
    let under_ten_seconds = one(
        &samples,
        "grpc_resolve_call_duration_seconds_bucket",
        &[("service", SERVICE), ("le", "10")],
    );
    assert_eq!(
        under_ten_seconds, 1000.0,
        "expected every call faster than 10 s"
    );
    assert!(
        one(
            &samples,
            "grpc_resolve_discovery_apply_seconds_count",
            &service
        ) >= 1.0
    );
    assert_eq!(
        find(&samples, "grpc_resolve_endpoint_failures_total", &service)
            .iter()
            .map(|s| s.value)
            .sum::<f64>(),
        0.0,
        "expected no failed attempt"
    );

    // consul-api: the watch's requests, the loop, the budget.
    assert!(
        one(
            &samples,
            "consul_api_watch_requests_total",
            &[("service", SERVICE), ("outcome", "ok")]
        ) >= 1.0,
        "expected the watch's first read counted ok"
    );
    assert_eq!(one(&samples, "consul_api_watches_active", &[]), 1.0);
    assert_eq!(
        one(&samples, "consul_api_connections_budget", &[]),
        consul_api::DEFAULT_MAX_CONNECTIONS as f64
    );
    let in_use = one(&samples, "consul_api_connections_in_use", &[]);
    assert!(
        (0.0..=consul_api::DEFAULT_MAX_CONNECTIONS as f64).contains(&in_use),
        "expected the connections in use within the budget, got {in_use}"
    );

    // Described: the scrape carries the help text.
    for name in [
        "grpc_resolve_endpoint_calls_total",
        "grpc_resolve_call_duration_seconds",
        "consul_api_watch_requests_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "expected help text for {name}"
        );
    }

    // SIGTERM ends the linger early, with the calls' exit code.
    let pid = client.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || client.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "add-client exits 0: {status}");
}
