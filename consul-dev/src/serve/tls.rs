//! HTTPS as Consul's HTTPS listener serves it: rustls (ring provider) with the agent's
//! certificate, ALPN offering `h2` then `http/1.1` (Consul's `setupHTTPS` calls
//! `http2.ConfigureServer`), a handshake deadline (`limits.https_handshake_timeout`, 5s),
//! and Go's plain-text answer to a plain HTTP request on the TLS port. Uses nothing else
//! of the crate.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// Consul's default `limits.https_handshake_timeout`.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What Go's TLS server writes to a client that speaks plain HTTP to it.
const PLAIN_HTTP_TO_HTTPS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The TLS acceptor for `cert_chain_pem` (leaf first) and `key_pem`.
pub(crate) fn acceptor(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<TlsAcceptor, Box<dyn StdError + Send + Sync>> {
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err("the certificate PEM holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether the connection negotiated HTTP/2.
pub(crate) fn is_h2(tls: &TlsStream<TcpStream>) -> bool {
    tls.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// Runs the handshake within Consul's deadline; `None` when it fails or takes too long
/// (the connection is then closed, as Go closes it). A client that sends plain HTTP gets
/// Go's 400 first.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    mut tcp: TcpStream,
) -> Option<TlsStream<TcpStream>> {
    let handshake = async {
        if looks_like_http(&tcp).await {
            let _ = tcp.write_all(PLAIN_HTTP_TO_HTTPS).await;
            return None;
        }
        acceptor.accept(tcp).await.ok()
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .ok()
        .flatten()
}

/// Go's `looksLikeHttp`: the first five bytes of what should be a TLS record start an
/// HTTP request instead.
async fn looks_like_http(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 5];
    loop {
        match tcp.peek(&mut first).await {
            Ok(n) if n == first.len() => break,
            // A TLS record's header is 5 bytes; fewer means more are coming, unless the
            // first byte already says TLS (a handshake record starts with 0x16).
            Ok(n) if n > 0 && first[0] == 0x16 => return false,
            Ok(0) | Err(_) => return false,
            // Bytes are waiting, so `readable` would return at once: poll gently instead.
            // Only a client that trickles its first bytes gets here, and the handshake
            // deadline bounds it.
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    matches!(&first, b"GET /" | b"HEAD " | b"POST " | b"PUT /" | b"OPTIO")
}
