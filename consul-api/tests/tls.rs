//! HTTPS to the agent: the CA from `CONSUL_CACERT` is trusted, the certificate is checked
//! against the address or `CONSUL_TLS_SERVER_NAME`, and an untrusted or misnamed server is
//! refused. The server is a minimal HTTPS responder with the workspace's test-only
//! certificates (`testdata/tls/`): consul-dev speaks plain HTTP only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use consul_api::{Client, Config};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

const SERVER_CERT: &[u8] = include_bytes!("../../testdata/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../../testdata/tls/server.key");

fn ca_path() -> String {
    format!("{}/../testdata/tls/ca.pem", env!("CARGO_MANIFEST_DIR"))
}

/// An HTTPS server whose every answer is the leader address, as `/v1/status/leader` gives.
async fn https_agent() -> SocketAddr {
    let certs = CertificateDer::pem_slice_iter(SERVER_CERT)
        .collect::<Result<Vec<_>, _>>()
        .expect("the test certificate parses");
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).expect("the test key parses");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("a server TLS config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("a local address");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let answer = service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new("\"10.0.0.1:8300\"".to_owned()))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), answer)
                    .await;
            });
        }
    });
    addr
}

async fn leader(vars: &[(&str, String)]) -> Result<String, consul_api::Error> {
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.clone())
    })?;
    Client::new(config)?.status().leader().await
}

#[tokio::test]
async fn a_server_the_ca_vouches_for_is_reached_by_address_or_by_name() {
    let addr = https_agent().await;
    let by_address = leader(&[
        ("CONSUL_HTTP_ADDR", format!("https://{addr}")),
        ("CONSUL_CACERT", ca_path()),
    ])
    .await
    .expect("the certificate names 127.0.0.1");
    assert_eq!(by_address, "10.0.0.1:8300");

    let by_name = leader(&[
        ("CONSUL_HTTP_ADDR", format!("https://{addr}")),
        ("CONSUL_CACERT", ca_path()),
        ("CONSUL_TLS_SERVER_NAME", "localhost".to_owned()),
    ])
    .await
    .expect("the certificate names localhost");
    assert_eq!(by_name, "10.0.0.1:8300");
}

#[tokio::test]
async fn an_untrusted_or_misnamed_server_is_refused() {
    let addr = https_agent().await;
    let untrusted = leader(&[("CONSUL_HTTP_ADDR", format!("https://{addr}"))]).await;
    // The certificate itself is refused (not, say, the connection): rustls says why.
    assert!(
        format!("{untrusted:?}").contains("InvalidCertificate(UnknownIssuer)"),
        "without CONSUL_CACERT the test CA is not trusted: {untrusted:?}"
    );

    let misnamed = leader(&[
        ("CONSUL_HTTP_ADDR", format!("https://{addr}")),
        ("CONSUL_CACERT", ca_path()),
        ("CONSUL_TLS_SERVER_NAME", "consul.internal".to_owned()),
    ])
    .await;
    assert!(
        format!("{misnamed:?}").contains("InvalidCertificate(NotValidForName"),
        "the certificate does not name consul.internal: {misnamed:?}"
    );

    let unchecked = leader(&[
        ("CONSUL_HTTP_ADDR", format!("https://{addr}")),
        ("CONSUL_HTTP_SSL_VERIFY", "false".to_owned()),
    ])
    .await
    .expect("with verification off, any certificate will do");
    assert_eq!(unchecked, "10.0.0.1:8300");
}
