//! HTTPS as Consul's HTTPS listener serves it (`Config::https`): HTTP/2 or HTTP/1.1 by
//! ALPN, one h2 connection counting once against the per-client limit however many
//! blocking queries it carries, the 429 written through TLS, Go's answer to plain HTTP on
//! the TLS port, and Consul's 5s handshake deadline. The certificates are the workspace's
//! test-only ones (`testdata/tls/`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use consul_dev::{Config, DevAgent, Error};
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject as _;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

const SERVER_CERT: &[u8] = include_bytes!("../../testdata/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../../testdata/tls/server.key");
const SERVER_CA: &[u8] = include_bytes!("../../testdata/tls/ca.pem");

const TOO_MANY: &str = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n\
    Content-Length: 81\r\nConnection: close\r\n\r\n\
    Your IP is issuing too many concurrent connections, please rate limit your calls\n";

async fn https_agent(config: Config) -> DevAgent {
    let config = config
        .node_name("dev-node")
        .https(SERVER_CERT.to_vec(), SERVER_KEY.to_vec());
    DevAgent::start_with(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("an HTTPS agent starts")
}

/// A client trusting the test CA; HTTP/2 when the server offers it, unless `http1_only`.
fn client(http1_only: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(SERVER_CA).expect("the test CA parses");
    let builder = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(60));
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().expect("an HTTPS client")
}

/// A raw TLS connection offering only `http/1.1`, verified against the test CA.
async fn tls_http1(addr: std::net::SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(SERVER_CA) {
        roots.add(cert.expect("the CA parses")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the TLS handshake succeeds")
}

async fn read_to_close(conn: &mut (impl AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    // A TLS peer may close without close_notify after the 429; what was read counts.
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
        .await
        .expect("the agent closes the connection in time");
    String::from_utf8(got).expect("UTF-8")
}

#[tokio::test]
async fn https_speaks_http2_or_http1_by_alpn() {
    let agent = https_agent(Config::default()).await;
    assert_eq!(agent.scheme(), "https");
    let url = format!("{}/v1/status/leader", agent.url());
    let r = client(false).get(&url).send().await.expect("an h2 request");
    assert_eq!(
        r.version(),
        http::Version::HTTP_2,
        "ALPN picks h2, as Go's server offers it first"
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), r#""127.0.0.1:8300""#);
    let r = client(true)
        .get(&url)
        .send()
        .await
        .expect("an HTTP/1.1 request");
    assert_eq!(
        r.version(),
        http::Version::HTTP_11,
        "a client without h2 gets HTTP/1.1"
    );
    assert_eq!(r.status(), 200);
}

/// Many blocking queries over one h2 connection are one connection to the limit (lowered
/// here to 2, so that the third connection is over it): a second connection is admitted,
/// the third gets Consul's 429 through TLS, and a write multiplexed over the h2 connection
/// answers every query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_queries_over_one_h2_connection_count_as_one() {
    const QUERIES: usize = 100;
    let agent = https_agent(Config::default().http_max_conns_per_client(2)).await;
    let h2 = client(false);
    let base = agent.url();
    let first = h2
        .get(format!("{base}/v1/health/service/web"))
        .send()
        .await
        .expect("the first request");
    assert_eq!(first.version(), http::Version::HTTP_2);
    let index = first.headers()["x-consul-index"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let mut queries = JoinSet::new();
    for _ in 0..QUERIES {
        let query = h2.get(format!(
            "{base}/v1/health/service/web?index={index}&wait=5m"
        ));
        queries.spawn(async move { query.send().await.expect("a blocking query").status() });
    }
    tokio::time::timeout(
        Duration::from_secs(20),
        agent.wait_for_blocked_queries(QUERIES),
    )
    .await
    .expect("all queries block on the one h2 connection");

    // Kept to the end: dropping a client closes its idle pooled connection.
    let http1 = client(true);
    let second = http1
        .get(format!("{base}/v1/status/leader"))
        .send()
        .await
        .expect("a second connection is under the limit of 2");
    assert_eq!(second.status(), 200);
    // The second client's idle keep-alive connection still counts: this is the third.
    let mut third = tls_http1(agent.addr()).await;
    assert_eq!(
        read_to_close(&mut third).await,
        TOO_MANY,
        "the third connection gets Consul's 429, through TLS"
    );

    let r = h2
        .put(format!("{base}/v1/agent/service/register"))
        .body(json!({"Name": "web"}).to_string())
        .send()
        .await
        .expect("a write multiplexed over the h2 connection");
    assert_eq!(r.status(), 200);
    while let Some(status) = queries.join_next().await {
        assert_eq!(
            status.expect("a query task"),
            200,
            "every blocking query is answered"
        );
    }
}

#[tokio::test]
async fn plain_http_to_the_https_port_gets_gos_400() {
    let agent = https_agent(Config::default()).await;
    let mut tcp = TcpStream::connect(agent.addr()).await.expect("connects");
    tcp.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: consul\r\n\r\n")
        .await
        .expect("a plain request");
    assert_eq!(
        read_to_close(&mut tcp).await,
        "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    );
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_after_consuls_5s() {
    let agent = https_agent(Config::default()).await;
    let mut tcp = TcpStream::connect(agent.addr()).await.expect("connects");
    tcp.write_all(&[0x16, 0x03])
        .await
        .expect("half a record header");
    let start = Instant::now();
    assert_eq!(
        read_to_close(&mut tcp).await,
        "",
        "closed without an answer"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(4_900) && took < Duration::from_secs(8),
        "closed at Consul's https_handshake_timeout of 5s: {took:?}"
    );
}

#[tokio::test]
async fn an_unusable_certificate_or_key_fails_the_start() {
    let config = Config::default().https(b"not a certificate".to_vec(), SERVER_KEY.to_vec());
    let err = DevAgent::start_with(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect_err("no certificate in the PEM");
    assert!(matches!(err, Error::Https(_)), "an HTTPS error: {err:?}");
    let config = Config::default().https(SERVER_CERT.to_vec(), SERVER_CA.to_vec());
    let err = DevAgent::start_with(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect_err("no key in the key PEM");
    assert!(matches!(err, Error::Https(_)), "an HTTPS error: {err:?}");
}
