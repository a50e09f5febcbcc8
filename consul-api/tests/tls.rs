//! HTTPS to the agent: the CA from `CONSUL_CACERT` is trusted, the certificate is checked
//! against the address or `CONSUL_TLS_SERVER_NAME`, and an untrusted or misnamed server is
//! refused. With `CONSUL_CLIENT_CERT` and `CONSUL_CLIENT_KEY` the client proves who it is to
//! an agent that requires it (Consul's `verify_incoming`), and an unusable key is a
//! configuration error. The server is a minimal HTTPS responder with the workspace's
//! test-only certificates (`testdata/tls/`): consul-dev speaks plain HTTP only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use consul_api::{Client, Config};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::AlertDescription;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;

const SERVER_CERT: &[u8] = include_bytes!("../../testdata/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../../testdata/tls/server.key");
const SERVER_CA: &[u8] = include_bytes!("../../testdata/tls/ca.pem");
const CLIENT_CA: &[u8] = include_bytes!("../../testdata/tls/client-ca.pem");
const CLIENT_CERT: &[u8] = include_bytes!("../../testdata/tls/client.pem");

fn testdata(file: &str) -> String {
    format!("{}/../testdata/tls/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn ca_path() -> String {
    testdata("ca.pem")
}

/// What the server made of one TLS handshake: the client certificates it verified (none
/// when it asked for none), or why it refused.
type Handshake = Result<Vec<CertificateDer<'static>>, rustls::Error>;

/// An HTTPS server whose every answer is the leader address, as `/v1/status/leader` gives.
async fn https_agent() -> SocketAddr {
    serve(WebPkiClientVerifier::no_client_auth()).await.0
}

/// As [`https_agent`], but it requires a client certificate `client_ca` signed, as a
/// Consul agent with `verify_incoming` does, and reports every handshake.
async fn https_agent_requiring_client_certs(
    client_ca: &[u8],
) -> (SocketAddr, mpsc::UnboundedReceiver<Handshake>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca) {
        roots
            .add(cert.expect("the client CA parses"))
            .expect("the client CA is a usable root");
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .expect("a client certificate verifier");
    serve(verifier).await
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn serve(
    client_verifier: Arc<dyn ClientCertVerifier>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Handshake>) {
    let certs = CertificateDer::pem_slice_iter(SERVER_CERT)
        .collect::<Result<Vec<_>, _>>()
        .expect("the test certificate parses");
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).expect("the test key parses");
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(certs, key)
        .expect("a server TLS config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("a local address");
    let (handshakes, handshakes_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let handshakes = handshakes.clone();
            tokio::spawn(async move {
                // A side that refuses the other's certificate ends the handshake: nothing
                // to serve.
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(err) => {
                        let why = rustls_error(&err).cloned().unwrap_or_else(|| {
                            rustls::Error::General(format!("not a TLS refusal: {err}"))
                        });
                        let _ = handshakes.send(Err(why));
                        return;
                    }
                };
                let client_certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
                let _ = handshakes.send(Ok(client_certs
                    .iter()
                    .map(|cert| cert.clone().into_owned())
                    .collect()));
                let answer = service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new("\"10.0.0.1:8300\"".to_owned()))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), answer)
                    .await;
            });
        }
    });
    (addr, handshakes_rx)
}

/// The TLS error somewhere in `err`'s causes. rustls errors travel inside `io::Error`s,
/// whose `source` skips the error they wrap, so each one is opened.
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        cause = err.source();
    }
    None
}

fn lookup(vars: &[(&str, String)]) -> Result<Config, consul_api::Error> {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.clone())
    })
}

async fn leader(vars: &[(&str, String)]) -> Result<String, consul_api::Error> {
    Client::new(lookup(vars)?)?.status().leader().await
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

/// The variables that reach `addr` over TLS, trusting its certificate.
fn trusting(addr: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("CONSUL_HTTP_ADDR", format!("https://{addr}")),
        ("CONSUL_CACERT", ca_path()),
    ]
}

#[tokio::test]
async fn the_client_certificate_from_the_environment_is_sent_and_accepted() {
    let (addr, mut handshakes) = https_agent_requiring_client_certs(CLIENT_CA).await;
    let mut vars = trusting(addr);
    vars.push(("CONSUL_CLIENT_CERT", testdata("client.pem")));
    vars.push(("CONSUL_CLIENT_KEY", testdata("client.key")));
    let leader = leader(&vars)
        .await
        .expect("the server accepts the certificate the client CA signed");
    assert_eq!(leader, "10.0.0.1:8300");

    let presented = handshakes
        .recv()
        .await
        .expect("the server reports the handshake")
        .expect("the handshake succeeds");
    let expected = CertificateDer::from_pem_slice(CLIENT_CERT).expect("client.pem parses");
    assert_eq!(
        presented,
        vec![expected],
        "the server verified exactly client.pem"
    );
}

#[tokio::test]
async fn without_a_client_certificate_the_agent_refuses_the_connection() {
    let (addr, mut handshakes) = https_agent_requiring_client_certs(CLIENT_CA).await;
    let err = leader(&trusting(addr))
        .await
        .expect_err("the server requires a client certificate");
    assert!(
        matches!(err, consul_api::Error::Transport(_)),
        "the connection fails, not the configuration or the answer: {err:?}"
    );
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
        )),
        "the server says a certificate is required: {err:?}"
    );
    let refusal = handshakes
        .recv()
        .await
        .expect("the server reports the handshake");
    assert_eq!(
        refusal,
        Err(rustls::Error::NoCertificatesPresented),
        "the server saw no client certificate"
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_or_for_servers_is_refused() {
    let with_client_cert = |addr, cert: &str, key: &str| {
        let mut vars = trusting(addr);
        vars.push(("CONSUL_CLIENT_CERT", testdata(cert)));
        vars.push(("CONSUL_CLIENT_KEY", testdata(key)));
        vars
    };

    // client.pem, but the server trusts only the server CA for clients.
    let (addr, mut handshakes) = https_agent_requiring_client_certs(SERVER_CA).await;
    let err = leader(&with_client_cert(addr, "client.pem", "client.key"))
        .await
        .expect_err("the server does not trust the client CA");
    assert!(
        matches!(err, consul_api::Error::Transport(_)),
        "the connection fails, not the configuration: {err:?}"
    );
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
        "the server says it does not know the issuer: {err:?}"
    );
    let refusal = handshakes
        .recv()
        .await
        .expect("the server reports the handshake");
    assert_eq!(
        refusal,
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        )),
        "the server refused the certificate's issuer"
    );

    // The server's own certificate and key: signed by the CA the server trusts, but not
    // for clients.
    let (addr, mut handshakes) = https_agent_requiring_client_certs(SERVER_CA).await;
    let err = leader(&with_client_cert(addr, "server.pem", "server.key"))
        .await
        .expect_err("a certificate without clientAuth is refused");
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(
            AlertDescription::UnsupportedCertificate
        )),
        "the server says the certificate is not for this use: {err:?}"
    );
    let refusal = handshakes
        .recv()
        .await
        .expect("the server reports the handshake");
    assert!(
        matches!(
            refusal,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurposeContext { .. }
            ))
        ),
        "the server refused the certificate's purpose: {refusal:?}"
    );
}

/// A file under the temp directory that is removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("consul-api-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write a temp file");
        TempFile(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Well-formed base64 whose bytes are neither a key nor a certificate.
const GARBAGE: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A PEM file with one `label` block of [`GARBAGE`].
fn corrupt_pem(name: &str, label: &str) -> TempFile {
    TempFile::new(
        name,
        &format!("-----BEGIN {label}-----\n{GARBAGE}\n-----END {label}-----\n"),
    )
}

/// Builds a client with `client.pem` and `key` as its identity.
fn client_with_key(key: String) -> Result<Client, consul_api::Error> {
    Client::new(lookup(&[
        ("CONSUL_HTTP_ADDR", "https://127.0.0.1:8501".to_owned()),
        ("CONSUL_CACERT", ca_path()),
        ("CONSUL_CLIENT_CERT", testdata("client.pem")),
        ("CONSUL_CLIENT_KEY", key),
    ])?)
}

#[test]
fn an_unusable_client_key_is_a_configuration_error_naming_the_key() {
    let corrupt = corrupt_pem("corrupt.key", "PRIVATE KEY");
    let not_pem = TempFile::new("not-pem.key", "this is not a key\n");
    for (case, key) in [
        ("a missing file", testdata("missing.key")),
        ("a file without a key", not_pem.path()),
        ("a certificate", testdata("client.pem")),
        ("a key that is not a key", corrupt.path()),
        ("another certificate's key", testdata("server.key")),
    ] {
        let err = client_with_key(key.clone()).expect_err(case);
        assert!(
            matches!(
                err,
                consul_api::Error::Config {
                    setting: "CONSUL_CLIENT_KEY",
                    ..
                }
            ),
            "{case}: a configuration error naming CONSUL_CLIENT_KEY, got {err:?}"
        );
        let text = format!("{err} / {err:?}");
        assert!(
            text.contains(&key),
            "{case}: the error names the file: {err}"
        );
        assert!(
            !text.contains(GARBAGE),
            "{case}: the error shows the key's contents: {text}"
        );
    }
}

#[test]
fn a_client_certificate_file_without_a_certificate_is_a_configuration_error() {
    let err = Client::new(
        lookup(&[
            ("CONSUL_HTTP_ADDR", "https://127.0.0.1:8501".to_owned()),
            ("CONSUL_CLIENT_CERT", testdata("client.key")),
            ("CONSUL_CLIENT_KEY", testdata("client.key")),
        ])
        .expect("the variables are well-formed"),
    )
    .expect_err("client.key holds no certificate");
    match &err {
        consul_api::Error::Config {
            setting: "CONSUL_CLIENT_CERT",
            message,
        } => assert!(
            message.contains(&testdata("client.key")),
            "the error names the file: {err}"
        ),
        other => panic!("a configuration error naming CONSUL_CLIENT_CERT, got {other:?}"),
    }
}

#[test]
fn an_unusable_ca_file_is_a_configuration_error_naming_it() {
    let corrupt = corrupt_pem("corrupt-ca.pem", "CERTIFICATE");
    let not_pem = TempFile::new("not-pem-ca.pem", "this is not a certificate\n");
    for (case, ca) in [
        ("a missing file", testdata("missing-ca.pem")),
        ("a file without a certificate", not_pem.path()),
        ("a key instead of a certificate", testdata("client.key")),
        ("a certificate that is not one", corrupt.path()),
    ] {
        let err = Client::new(
            lookup(&[
                ("CONSUL_HTTP_ADDR", "https://127.0.0.1:8501".to_owned()),
                ("CONSUL_CACERT", ca.clone()),
            ])
            .expect("the variables are well-formed"),
        )
        .expect_err(case);
        match &err {
            consul_api::Error::Config {
                setting: "CONSUL_CACERT",
                message,
            } => {
                assert!(message.contains(&ca), "{case}: names the file: {err}");
                assert!(
                    message != "builder error" && !message.ends_with(": builder error"),
                    "{case}: says what is wrong: {err}"
                );
            }
            other => panic!("{case}: a configuration error naming CONSUL_CACERT, got {other:?}"),
        }
    }
}
