//! TLS (the `tls` feature) against a tonic server that speaks only TLS: the server's
//! certificate is verified under the configured name, and an endpoint whose certificate
//! the client does not trust, or whose certificate is not valid for the name checked, never
//! becomes ready. The certificates are the workspace's test-only ones in `testdata/tls/`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{SERVICE, check, settle};
use discovery_core::{MemoryRegistry, Registration, Registry, ServiceInstance};
use grpc_resolve::DiscoveredChannel;
use grpc_resolve::rustls::pki_types::pem::PemObject;
use grpc_resolve::rustls::pki_types::{CertificateDer, ServerName};
use grpc_resolve::rustls::{ClientConfig, RootCertStore};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
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

/// A client config trusting the certificates in `roots` (PEM).
fn trusting(roots: &str) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots.as_bytes()) {
        store
            .add(cert.expect("the test certificate parses"))
            .expect("a usable root");
    }
    let provider = Arc::new(grpc_resolve::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    Arc::new(config)
}

/// A channel trusting `roots`, checking certificates against `name` (the instance
/// registers as 127.0.0.1).
fn channel_named(registry: MemoryRegistry, roots: &str, name: &'static str) -> DiscoveredChannel {
    DiscoveredChannel::builder(registry, SERVICE)
        .empty_timeout(Duration::from_secs(2))
        .tls(trusting(roots))
        .tls_server_name(ServerName::try_from(name).expect("a valid name"))
        .build()
}

fn channel(registry: MemoryRegistry, roots: &str) -> DiscoveredChannel {
    channel_named(registry, roots, "localhost")
}

/// Waits until `channel` has failed to connect at least twice.
async fn connect_failures(channel: &DiscoveredChannel) {
    // The eager connect loop keeps failing the handshake. A failed attempt changes no
    // endpoint state, so there is no event to await: look at the counter now and then.
    settle(async {
        while channel.stats().connect_failures < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
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
    connect_failures(&channel).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_not_valid_for_the_name_checked_is_refused() {
    let addr = tls_backend().await;
    // The CA vouches for the certificate, but only for "localhost".
    let channel = channel_named(registry_with(addr).await, CA, "adder.example");
    connect_failures(&channel).await;
    assert!(
        channel.endpoints().iter().all(|e| !e.ready),
        "a certificate for another name is refused: {:?}",
        channel.endpoints()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_name_the_endpoint_address_is_checked() {
    let addr = tls_backend().await;
    // The certificate also names IP 127.0.0.1, the address the instance registers.
    let channel = DiscoveredChannel::builder(registry_with(addr).await, SERVICE)
        .empty_timeout(Duration::from_secs(2))
        .tls(trusting(CA))
        .build();
    let status = check(&channel).await.expect("the call succeeds over TLS");
    assert_eq!(status, ServingStatus::Serving);
}
