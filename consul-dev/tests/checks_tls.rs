//! Checks over TLS as Consul's agent runs them: gRPC checks with `GRPCUseTLS` (verified
//! against the public roots or the agent's CA for checks, `TLSSkipVerify`,
//! `TLSServerName`, a plaintext server, a server that stops), and HTTPS checks trusting
//! the CA for checks. Conformance cases 86, 87; `tests/README.md` lists every case. The
//! certificates are the workspace's test-only ones (`testdata/tls/`: a server certificate
//! for `localhost` and `127.0.0.1` from a CA no public root store holds).

mod common;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use common::{Agent, LONG};
use consul_dev::Config;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

const SERVER_CERT: &[u8] = include_bytes!("../../testdata/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../../testdata/tls/server.key");
const SERVER_CA: &[u8] = include_bytes!("../../testdata/tls/ca.pem");

/// A TLS connection a tonic server can serve.
struct Tls(TlsStream<TcpStream>);

impl Connected for Tls {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for Tls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A gRPC health server, over TLS with the test certificate (ALPN `h2`, as tonic's TLS
/// servers offer) unless `plain`. Aborting both handles stops it: the listener closes.
struct HealthTarget {
    addr: SocketAddr,
    reporter: HealthReporter,
    tasks: [JoinHandle<()>; 2],
}

impl HealthTarget {
    async fn start(tls: bool) -> HealthTarget {
        let (reporter, service) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = tonic::transport::Server::builder().add_service(service);
        if !tls {
            let server = tokio::spawn(async move {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let _ = router.serve_with_incoming(incoming).await;
            });
            let idle = tokio::spawn(async {});
            return HealthTarget {
                addr,
                reporter,
                tasks: [server, idle],
            };
        }
        let certs = CertificateDer::pem_slice_iter(SERVER_CERT)
            .collect::<Result<Vec<_>, _>>()
            .expect("the test certificate");
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).expect("the test key");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the test identity");
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Tls>>(16);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    // A failed handshake is the client's verdict; the check reports it.
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = tx.send(Ok(Tls(tls))).await;
                    }
                });
            }
        });
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
            let _ = router.serve_with_incoming(incoming).await;
        });
        HealthTarget {
            addr,
            reporter,
            tasks: [accept, server],
        }
    }

    fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Registers service `id` with a 1s gRPC check `id` on `target`, with `extra` fields,
/// starting from `initial`, the status the test expects it to leave.
async fn register_grpc(a: &Agent, id: &str, target: &str, initial: &str, extra: serde_json::Value) {
    let mut check = json!({"CheckID": id, "GRPC": target, "Interval": "1s", "Status": initial});
    for (k, v) in extra.as_object().expect("an object") {
        check[k] = v.clone();
    }
    a.register(json!({"Name": id, "Check": check})).await;
}

/// Case 86: `GRPCUseTLS` checks. Against a server whose certificate no public root signed,
/// verified → critical (`… connection error: desc = "transport: authentication handshake
/// failed: …"`, naming the certificate), `TLSSkipVerify` → passing
/// `gRPC check <target>: success`, no `GRPCUseTLS` → critical. With the agent's CA for
/// checks (`enable_agent_tls_for_checks`): the target's IP verified → passing;
/// `TLSServerName` `localhost` → passing, `other.example` → critical (the name is
/// verified); a plaintext server → critical; NOT_SERVING → critical; the server stopped
/// → critical.
#[tokio::test]
async fn case_86_grpc_tls_check() {
    let server = HealthTarget::start(true).await;
    server
        .reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let plain = HealthTarget::start(false).await;
    let target = server.addr.to_string();
    let tls = json!({"GRPCUseTLS": true});

    let public = Agent::start().await;
    register_grpc(&public, "verified", &target, "passing", tls.clone()).await;
    register_grpc(
        &public,
        "skip",
        &target,
        "critical",
        json!({"GRPCUseTLS": true, "TLSSkipVerify": true}),
    )
    .await;
    register_grpc(&public, "cleartext", &target, "passing", json!({})).await;
    let c = public
        .wait_check("verified", "verified", "critical", LONG)
        .await;
    let output = c["Output"].as_str().expect("an output");
    assert!(
        output.starts_with(&format!(
            "gRPC check {target}: failed: rpc error: code = Unavailable desc = connection \
             error: desc = \"transport: authentication handshake failed: "
        )) && output.contains("certificate"),
        "an unknown issuer fails verification, and the output says so in grpc-go's words: \
         {output}"
    );
    let c = public.wait_check("skip", "skip", "passing", LONG).await;
    assert_eq!(
        c["Output"],
        format!("gRPC check {target}: success"),
        "TLSSkipVerify accepts the certificate"
    );
    public
        .wait_check("cleartext", "cleartext", "critical", LONG)
        .await;

    let private = Agent::start_with(
        Config::default()
            .node_name("dev-node")
            .check_tls_ca(SERVER_CA.to_vec()),
    )
    .await;
    register_grpc(&private, "by-ip", &target, "critical", tls.clone()).await;
    register_grpc(
        &private,
        "by-name",
        &target,
        "critical",
        json!({"GRPCUseTLS": true, "TLSServerName": "localhost"}),
    )
    .await;
    register_grpc(
        &private,
        "wrong-name",
        &target,
        "passing",
        json!({"GRPCUseTLS": true, "TLSServerName": "other.example"}),
    )
    .await;
    register_grpc(&private, "plain", &plain.addr.to_string(), "passing", tls).await;
    let c = private.wait_check("by-ip", "by-ip", "passing", LONG).await;
    assert_eq!(c["Output"], format!("gRPC check {target}: success"));
    private
        .wait_check("by-name", "by-name", "passing", LONG)
        .await;
    let c = private
        .wait_check("wrong-name", "wrong-name", "critical", LONG)
        .await;
    assert!(
        c["Output"]
            .as_str()
            .is_some_and(|o| o.contains("certificate")),
        "a name the certificate does not hold fails verification: {}",
        c["Output"]
    );
    private.wait_check("plain", "plain", "critical", LONG).await;

    server
        .reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let c = private.wait_check("by-ip", "by-ip", "critical", LONG).await;
    assert_eq!(
        c["Output"],
        format!("gRPC {target} serving status: NOT_SERVING")
    );
    server
        .reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    private.wait_check("by-ip", "by-ip", "passing", LONG).await;
    server.stop();
    private.wait_check("by-ip", "by-ip", "critical", LONG).await;
    plain.stop();
}

/// Case 87: an HTTPS check of a server whose certificate the agent's CA for checks signed
/// → passing; the same check on an agent with the public roots → critical; with
/// `TLSSkipVerify` there → passing. (The HTTPS server is a consul-dev agent itself.)
#[tokio::test]
async fn case_87_https_check_trusts_the_ca_for_checks() {
    let target = consul_dev::DevAgent::start_with(
        Config::default().https(SERVER_CERT.to_vec(), SERVER_KEY.to_vec()),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("an HTTPS agent starts");
    let url = format!("https://{}/v1/status/leader", target.http_addr());
    let http = |id: &str, initial: &str, skip: bool| {
        json!({"Name": id, "Check": {"CheckID": id, "HTTP": url, "Interval": "1s",
            "Status": initial, "TLSSkipVerify": skip}})
    };

    let private = Agent::start_with(
        Config::default()
            .node_name("dev-node")
            .check_tls_ca(SERVER_CA.to_vec()),
    )
    .await;
    private.register(http("trusted", "critical", false)).await;
    let c = private
        .wait_check("trusted", "trusted", "passing", LONG)
        .await;
    assert!(
        c["Output"]
            .as_str()
            .is_some_and(|o| o.starts_with(&format!("HTTP GET {url}: 200 OK"))),
        "{}",
        c["Output"]
    );

    let public = Agent::start().await;
    public.register(http("untrusted", "passing", false)).await;
    public.register(http("skip", "critical", true)).await;
    public
        .wait_check("untrusted", "untrusted", "critical", LONG)
        .await;
    public.wait_check("skip", "skip", "passing", LONG).await;
}

/// A CA for checks that holds no certificate fails the agent's start with a clear error.
#[tokio::test]
async fn a_check_ca_without_a_certificate_fails_the_start() {
    let err = consul_dev::DevAgent::start_with(
        Config::default().check_tls_ca(b"no PEM here".to_vec()),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect_err("an unusable CA is refused");
    assert!(
        matches!(
            err,
            consul_dev::Error::CheckTls(_) | consul_dev::Error::Client(_)
        ),
        "the error says what is wrong: {err}"
    );
}
