//! A server served over TLS with a gRPC check over TLS (`CheckKind::GrpcTls`, Consul's
//! `GRPCUseTLS`) end to end against consul-dev, which runs the check: registered, passing
//! (the agent completed a verified handshake: the server speaks nothing but TLS), critical
//! while NOT_SERVING, and critical once the server is gone. consul-dev trusts the test CA
//! for its checks (`Config::check_tls_ca`, a real agent's `enable_agent_tls_for_checks` with
//! a CA file); the certificate is the workspace's test-only one for `127.0.0.1`
//! (`testdata/tls/`). Against consul-dev only: a real Consul would need that CA configured.

mod common;

use std::time::Duration;

use common::{check_until, dev_agent_with};
use consul_api::{CheckStatus, ConsulRegistry, HealthCheck};
use discovery_core::CheckSpec;
use grpc_register::{CheckKind, Registered, Running};
use tonic::transport::{Identity, Server, ServerTlsConfig};

const SERVER_CERT: &[u8] = include_bytes!("../../testdata/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../../testdata/tls/server.key");
const SERVER_CA: &[u8] = include_bytes!("../../testdata/tls/ca.pem");

/// A TLS server with no services of its own (the health service only) on a free loopback
/// port, registered with a gRPC check over TLS every second.
async fn tls_server(registry: &ConsulRegistry) -> Running {
    let identity = Identity::from_pem(SERVER_CERT, SERVER_KEY);
    let router = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))
        .expect("the test identity")
        .add_routes(Default::default());
    Registered::builder(registry.clone(), "secure")
        .check(CheckKind::GrpcTls {
            service: health::SERVER.into(),
        })
        .check_interval(Duration::from_secs(1))
        .check_timeout(Duration::from_millis(500))
        .drain(Duration::ZERO)
        .start(router, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the server starts")
}

async fn status(registry: &ConsulRegistry, id: &str, want: CheckStatus) -> HealthCheck {
    check_until(registry, id, &format!("{want:?}"), |c| c.status == want).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_tls_check_passes_then_fails_once_not_serving_and_once_the_server_is_gone() {
    let (_agent, registry) = dev_agent_with(
        consul_dev::Config::default()
            .node_name("dev")
            .check_tls_ca(SERVER_CA.to_vec()),
    )
    .await;
    let running = tls_server(&registry).await;
    assert!(
        matches!(
            running.registrations()[0].check,
            Some(CheckSpec::Grpc { use_tls: true, .. })
        ),
        "the registration asks for TLS: {:?}",
        running.registrations()[0].check
    );
    let id = running.id().to_owned();
    let target = running.local_addr().to_string();

    let check = status(&registry, &id, CheckStatus::Passing).await;
    assert_eq!(check.kind, "grpc", "{check:?}");
    assert_eq!(
        check.output,
        format!("gRPC check {target}: success"),
        "the agent's health call went through TLS: {check:?}"
    );

    running.health().set_not_serving(health::SERVER).await;
    let check = status(&registry, &id, CheckStatus::Critical).await;
    assert!(
        check.output.contains("NOT_SERVING"),
        "the agent read the health state over TLS: {check:?}"
    );
    running.health().set_serving(health::SERVER).await;
    status(&registry, &id, CheckStatus::Passing).await;

    // Gone as a crash leaves it (a graceful stop would deregister it first).
    drop(running);
    let check = status(&registry, &id, CheckStatus::Critical).await;
    assert!(
        check.output.contains("failed"),
        "the agent could not reach the server: {check:?}"
    );
}
