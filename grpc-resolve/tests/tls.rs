//! TLS through the builder's endpoint hook: the channel's own connector (which watches the
//! connection) carries tonic's TLS, the server's certificate is verified, and an endpoint
//! whose certificate the client does not trust never becomes ready. The certificates are
//! the workspace's test-only ones in `testdata/tls/`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{SERVICE, check, settle};
use discovery_core::{MemoryRegistry, Registration, Registry, ServiceInstance};
use grpc_resolve::DiscoveredChannel;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

const CA: &str = include_str!("../../testdata/tls/ca.pem");
const SERVER_CERT: &str = include_str!("../../testdata/tls/server.pem");
const SERVER_KEY: &str = include_str!("../../testdata/tls/server.key");

/// A health server that speaks only TLS.
async fn tls_backend() -> SocketAddr {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind")
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().expect("a local address");
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(SERVER_CERT, SERVER_KEY));
    tokio::spawn(async move {
        // Keep the reporter alive with the server.
        let _reporter = reporter;
        Server::builder()
            .tls_config(tls)
            .expect("a valid server TLS config")
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
            .expect("the server runs");
    });
    addr
}

async fn registry_with(addr: SocketAddr) -> MemoryRegistry {
    let registry = MemoryRegistry::new();
    registry
        .register(&Registration::new(ServiceInstance::new(
            "tls-0",
            SERVICE,
            "127.0.0.1",
            addr.port(),
        )))
        .await
        .expect("register");
    registry
}

fn channel(registry: MemoryRegistry, ca: &'static str) -> DiscoveredChannel {
    DiscoveredChannel::builder(registry, SERVICE)
        .https(true)
        .empty_timeout(Duration::from_secs(2))
        .endpoint(move |ep| {
            ep.tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    // The name the certificate is checked against (and sent as SNI).
                    .domain_name("localhost"),
            )
            .expect("a valid client TLS config")
        })
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_over_tls_to_a_server_the_ca_vouches_for() {
    let addr = tls_backend().await;
    let channel = channel(registry_with(addr).await, CA);
    settle(channel.wait_for(|eps| eps.iter().any(|e| e.ready))).await;
    let status = check(&channel).await.expect("the call succeeds over TLS");
    assert_eq!(status, ServingStatus::Serving);
    assert_eq!(channel.stats().connect_failures, 0, "{:?}", channel.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_the_client_does_not_trust_never_becomes_ready() {
    let addr = tls_backend().await;
    // The server's own certificate as the only root: not a CA, so it vouches for nothing.
    let channel = channel(registry_with(addr).await, SERVER_CERT);
    // The eager connect loop keeps failing the handshake. A failed attempt changes no
    // endpoint state, so there is no event to await: look at the counter now and then.
    settle(async {
        while channel.stats().connect_failures < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        channel.endpoints().iter().all(|e| !e.ready),
        "an untrusted endpoint is never ready: {:?}",
        channel.endpoints()
    );
    let status = check(&channel)
        .await
        .expect_err("no trusted endpoint, so the call fails");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}
