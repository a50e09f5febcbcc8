//! The command-line contract of `add-server` and `add-client`, run as a user would.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use consul_api::{Client, Config, QueryOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_registers_client_calls_and_sigterm_deregisters() {
    let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = agent.http_addr();
    let consul = Client::new(Config::new(&addr).unwrap()).unwrap();

    let mut server = Command::new(env!("CARGO_BIN_EXE_add-server"))
        .args(["--service", "adder-cli", "--listen", "127.0.0.1:0"])
        .env("CONSUL_HTTP_ADDR", &addr)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("add-server starts");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    assert!(first.starts_with("serving adder-cli-127.0.0.1-"), "{first}");

    // Consul's gRPC check must pass before the client can see it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (entries, _) = consul
            .health()
            .service("adder-cli", &QueryOptions::default().passing(true))
            .await
            .unwrap();
        if entries.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server's check never passed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_add-client"))
                .args([
                    "--service",
                    "adder-cli",
                    "--calls",
                    "50",
                    "--concurrency",
                    "2",
                    // Hedged: the flag is accepted and changes nothing while the one
                    // server answers.
                    "--hedge-after",
                    "200",
                ])
                .env("CONSUL_HTTP_ADDR", &addr)
                .env("RUST_LOG", "warn")
                .output()
                .expect("add-client runs")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&client.stdout);
    assert!(client.status.success(), "add-client exits 0: {stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("calls: 50 ok, 0 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("adder-cli-127.0.0.1-"),
        "calls per backend: {stdout}"
    );

    let pid = server.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "SIGTERM ends add-server with exit code 0: {status}"
    );
    let services = consul.agent().services().await.unwrap();
    assert!(
        services.values().all(|s| s.service != "adder-cli"),
        "deregistered before exiting: {services:?}"
    );
}

#[test]
fn client_exits_1_when_calls_fail() {
    // No agent and no servers: every call fails (after the empty-set deadline).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = Command::new(env!("CARGO_BIN_EXE_add-client"))
        .args(["--calls", "1", "--empty-timeout", "0.2"])
        .env("CONSUL_HTTP_ADDR", &dead)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("calls: 0 ok, 1 failed"),
        "{stdout}"
    );
}

#[test]
fn a_call_ends_at_its_deadline_before_the_empty_timeout() {
    // No servers, a 30 s wait for one, a 0.3 s deadline: the call ends at its deadline, with
    // the deadline's code, long before the wait would.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap().to_string();
    drop(listener);
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_add-client"))
        .args(["--calls", "1", "--empty-timeout", "30", "--deadline", "0.3"])
        .env("CONSUL_HTTP_ADDR", &dead)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("last error: DeadlineExceeded"),
        "the failure names the deadline: {stdout}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 30 s empty timeout did not decide: {stdout}"
    );
}

#[test]
fn a_deadline_that_is_not_a_duration_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_add-client"))
        .args(["--calls", "1", "--deadline=-1"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--deadline"), "{stderr}");
}
