//! TLS for gRPC checks with `GRPCUseTLS`, as Consul's agent dials them: Go's `crypto/tls`
//! client from `OutgoingTLSConfigForCheck`. The roots are the public ones (Mozilla's, from
//! `webpki-roots`, where Go reads the system's) unless the agent is given a CA for checks
//! ([`Config::check_tls_ca`](crate::Config::check_tls_ca), Consul's
//! `enable_agent_tls_for_checks` with a CA file); `TLSSkipVerify` skips the certificate's
//! verification (not the handshake's signatures, as Go's `InsecureSkipVerify`);
//! `TLSServerName` replaces the target's host as the name sent (SNI) and verified. ALPN
//! offers `h2` and the server must pick it, as grpc-go's client insists (since 1.67).
//! A failed handshake is a [`HandshakeError`], worded as grpc-go words it. Uses only
//! `error`'s [`chain`].

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore};
use tonic::codegen::Service;

use crate::error::chain;

/// The two client configurations every TLS check uses, built once per agent: one that
/// verifies the server's certificate and one that does not (`TLSSkipVerify`). Cloning is
/// cheap.
#[derive(Clone)]
pub(crate) struct CheckTls {
    verified: Arc<ClientConfig>,
    unverified: Arc<ClientConfig>,
}

/// By hand: rustls' configurations print every root certificate.
impl std::fmt::Debug for CheckTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckTls").finish_non_exhaustive()
    }
}

impl CheckTls {
    /// Trusts the certificates of `ca_pem` (PEM, one or more), or the public roots without
    /// one. Fails on a PEM that holds no usable certificate.
    pub(crate) fn new(ca_pem: Option<&[u8]>) -> Result<CheckTls, Box<dyn StdError + Send + Sync>> {
        let provider = Arc::new(crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match ca_pem {
            Some(pem) => {
                let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
                if certs.is_empty() {
                    return Err("the check CA PEM holds no certificate".into());
                }
                for cert in certs {
                    roots.add(cert)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = || {
            ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
        };
        let mut verified = builder()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut unverified = builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth();
        for config in [&mut verified, &mut unverified] {
            config.alpn_protocols = vec![b"h2".to_vec()];
        }
        Ok(CheckTls {
            verified: Arc::new(verified),
            unverified: Arc::new(unverified),
        })
    }

    /// The connector for one check: `server_name` (`TLSServerName`) or else the target's
    /// host is the name sent and verified; `skip_verify` is `TLSSkipVerify`.
    pub(crate) fn connector(
        &self,
        target: &str,
        server_name: &str,
        skip_verify: bool,
    ) -> Result<Connector, String> {
        let name = if server_name.is_empty() {
            host_of(target)
        } else {
            server_name
        };
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
        let config = if skip_verify {
            &self.unverified
        } else {
            &self.verified
        };
        Ok(Connector {
            tls: TlsConnector::from(Arc::clone(config)),
            name,
        })
    }
}

/// The host of `host:port` (`[v6]:port` without its brackets), as Go's `SplitHostPort`;
/// the whole target when it has no port.
fn host_of(target: &str) -> &str {
    if let Some(rest) = target.strip_prefix('[')
        && let Some((host, _)) = rest.split_once(']')
    {
        return host;
    }
    match target.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => target,
    }
}

/// Dials the check's target over TCP and runs the TLS handshake, for tonic's
/// `Endpoint::connect_with_connector`.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a connector's failure is: a dial error, or a [`HandshakeError`].
type ConnectError = Box<dyn StdError + Send + Sync>;

impl Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no authority"))?
                .as_str()
                .to_owned();
            let tcp = TcpStream::connect(authority).await?;
            let tls = this.tls.connect(this.name, tcp).await.map_err(|e| {
                HandshakeError(format!("authentication handshake failed: {}", chain(&e)))
            })?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(HandshakeError(
                    "credentials: cannot check peer: missing selected ALPN property".to_owned(),
                )
                .into());
            }
            Ok(TokioIo::new(tls))
        })
    }
}

/// A TLS handshake that failed, or a server that did not pick `h2`; its text is the part
/// of grpc-go's `connection error: desc = "transport: …"` after `transport: `.
#[derive(Debug)]
pub(crate) struct HandshakeError(String);

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transport: {}", self.0)
    }
}

impl StdError for HandshakeError {}

/// `TLSSkipVerify`: any certificate is accepted, but the handshake's signatures are still
/// checked with the key the server presented, as Go's `InsecureSkipVerify` does.
#[derive(Debug)]
struct SkipVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_verified_is_the_targets_host_unless_tls_server_name_says_otherwise() {
        assert_eq!(host_of("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_of("localhost:8080"), "localhost");
        assert_eq!(
            host_of("[::1]:8080"),
            "::1",
            "brackets are not part of the host"
        );
        assert_eq!(
            host_of("localhost"),
            "localhost",
            "no port: the whole target"
        );
        let tls = CheckTls::new(None).expect("the public roots load");
        let by_target = tls.connector("localhost:1", "", false).unwrap();
        assert_eq!(by_target.name, ServerName::try_from("localhost").unwrap());
        let by_setting = tls
            .connector("127.0.0.1:1", "health.internal", false)
            .unwrap();
        assert_eq!(
            by_setting.name,
            ServerName::try_from("health.internal").unwrap(),
            "TLSServerName replaces the target's host"
        );
        let bad = tls
            .connector("127.0.0.1:1", "not a name", false)
            .unwrap_err();
        assert!(
            bad.contains("invalid TLS server name"),
            "a clear error: {bad}"
        );
    }

    #[test]
    fn a_check_ca_without_a_certificate_is_refused() {
        let err = CheckTls::new(Some(b"not a certificate")).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
        let ca = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/tls/ca.pem"
        ))
        .expect("the test CA");
        assert!(CheckTls::new(Some(&ca)).is_ok(), "the test CA loads");
    }
}
