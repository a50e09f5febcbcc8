//! HTTP/2 to an HTTPS agent, as Consul serves it (Go's `http2.ConfigureServer` on its HTTPS
//! listener): the client learns the protocol from one probe, then every watch blocks, as a
//! stream, at most 200 to a connection (Go's h2 server queues streams past 250), so a few
//! hundred watches hold a few connections instead of a few hundred. Against consul-dev's
//! HTTPS listener, and a minimal HTTPS responder (which can also refuse h2, and counts the
//! streams on each connection), both with the workspace's test-only certificates
//! (`testdata/tls/`).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fake::{query_pairs, wait_of};
use consul_api::{Client, Config, ConsulRegistry, Protocol};
use discovery_core::{Query, Resolver, Update};
use futures_util::StreamExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

const SERVER_CERT: &[u8] = include_bytes!("../../testdata/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../../testdata/tls/server.key");

/// What the server saw: connections by negotiated protocol, and the most requests in
/// flight on one connection.
#[derive(Debug, Default)]
struct Seen {
    protocols: Mutex<Vec<Option<Vec<u8>>>>,
    most_streams: AtomicUsize,
}

fn entry(service: &str) -> String {
    serde_json::json!([{
        "Node": {"Node": "n1", "Address": "127.0.0.1"},
        "Service": {"ID": format!("{service}-1"), "Service": service, "Port": 7000},
        "Checks": []
    }])
    .to_string()
}

/// Answers like an agent whose data never changes: reads at once, blocking queries after
/// their wait.
async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    in_flight: Arc<AtomicUsize>,
    seen: Arc<Seen>,
) -> Result<hyper::Response<String>, Infallible> {
    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.most_streams.fetch_max(now, Ordering::SeqCst);
    let query = query_pairs(request.uri());
    let path = request.uri().path().to_owned();
    if query.iter().any(|(k, _)| k == "index") {
        tokio::time::sleep(wait_of(&query)).await;
    }
    in_flight.fetch_sub(1, Ordering::SeqCst);
    let body = match path.strip_prefix("/v1/health/service/") {
        Some(service) => entry(service),
        None => "\"10.0.0.1:8300\"".to_owned(),
    };
    Ok(hyper::Response::builder()
        .header("X-Consul-Index", "7")
        .body(body)
        .unwrap())
}

async fn https_agent(alpn: &[&[u8]]) -> (SocketAddr, Arc<Seen>) {
    let certs = CertificateDer::pem_slice_iter(SERVER_CERT)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                seen.protocols.lock().unwrap().push(negotiated);
                let in_flight = Arc::new(AtomicUsize::new(0));
                let service =
                    service_fn(move |request| answer(request, in_flight.clone(), seen.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn client(addr: SocketAddr) -> Client {
    let ca = format!("{}/../testdata/tls/ca.pem", env!("CARGO_MANIFEST_DIR"));
    let config = Config::from_lookup(|name| match name {
        "CONSUL_HTTP_ADDR" => Some(format!("https://{addr}")),
        "CONSUL_CACERT" => Some(ca.clone()),
        _ => None,
    })
    .unwrap();
    Client::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_watches_block_as_streams_on_two_connections() {
    let (addr, seen) = https_agent(&[b"h2", b"http/1.1"]).await;
    let client = client(addr);
    let registry = ConsulRegistry::new(client.clone());
    let mut streams = Vec::new();
    for i in 0..250 {
        let mut updates = registry.watch(&Query::new(format!("svc-{i}")));
        match tokio::time::timeout(Duration::from_secs(10), updates.next()).await {
            Ok(Some(Update::Snapshot(s))) => assert_eq!(s.len(), 1),
            other => panic!("svc-{i}: expected its instance, got {other:?}"),
        }
        streams.push(updates);
    }
    // Let every watch start its blocking query.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = client.stats();
    assert_eq!(stats.protocol, Protocol::Http2);
    assert_eq!(stats.blocking_held, 250, "every watch blocks; none polls");
    assert_eq!(stats.polls, 0);
    let protocols = seen.protocols.lock().unwrap().clone();
    assert_eq!(
        protocols.len(),
        3,
        "the probe, then two h2 connections for 250 streams: {protocols:?}"
    );
    assert!(
        protocols
            .iter()
            .all(|p| p.as_deref() == Some(b"h2".as_slice())),
        "all negotiated h2: {protocols:?}"
    );
    let most = seen.most_streams.load(Ordering::SeqCst);
    assert!(
        (200..=208).contains(&most),
        "at most 200 blocking streams on one connection (and a few short ones): {most}"
    );
    assert_eq!(stats.connections_opened, 3);
}

#[tokio::test]
async fn an_https_agent_without_h2_is_spoken_to_over_http1() {
    let (addr, seen) = https_agent(&[b"http/1.1"]).await;
    let client = client(addr);
    assert_eq!(client.status().leader().await.unwrap(), "10.0.0.1:8300");
    assert_eq!(client.stats().protocol, Protocol::Http1);
    let protocols = seen.protocols.lock().unwrap().clone();
    assert!(
        protocols
            .iter()
            .all(|p| p.as_deref() == Some(b"http/1.1".as_slice())),
        "{protocols:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_consul_devs_https_listener_watches_block_as_h2_streams() {
    let dev_config = consul_dev::Config::default().https(SERVER_CERT.to_vec(), SERVER_KEY.to_vec());
    let dev = consul_dev::DevAgent::start_with(dev_config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("consul-dev serves HTTPS");
    let client = client(dev.addr());
    let mut streams = Vec::new();
    let registry = ConsulRegistry::new(client.clone());
    for i in 0..250 {
        let name = format!("h2-{i}");
        let mut reg = consul_api::agent::ServiceRegistration::new(&name);
        reg.port = Some(7000);
        client.agent().register_service(&reg).await.unwrap();
        let mut updates = registry.watch(&Query::new(&name));
        match tokio::time::timeout(Duration::from_secs(10), updates.next()).await {
            Ok(Some(Update::Snapshot(s))) => assert_eq!(s.len(), 1),
            other => panic!("{name}: expected its instance, got {other:?}"),
        }
        streams.push(updates);
    }
    dev.wait_for_blocked_queries(250).await;
    let stats = client.stats();
    assert_eq!(
        stats.protocol,
        Protocol::Http2,
        "consul-dev's HTTPS speaks h2"
    );
    assert_eq!(stats.blocking_held, 250);
    assert_eq!(stats.polls, 0);
    assert_eq!(
        stats.connections_opened, 3,
        "the probe, then two h2 connections carry everything: {stats:?}"
    );
    assert_eq!(stats.throttled, 0);
}
