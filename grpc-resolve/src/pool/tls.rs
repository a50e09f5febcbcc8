//! TLS for endpoint connections (the `tls` feature), on rustls.
//!
//! May use: `error`.

use std::sync::Arc;

use http::uri::Authority;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::error::BoxError;

/// The TLS every endpoint connection goes through.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    /// The name certificates are checked against (and sent as SNI); the endpoint's host
    /// when unset.
    server_name: Option<ServerName<'static>>,
}

// === impl Tls ===

impl Tls {
    /// TLS with `config`, offering HTTP/2 by ALPN when the config offers nothing, checking
    /// certificates against `server_name` or else each endpoint's host.
    pub(crate) fn new(config: Arc<ClientConfig>, server_name: Option<ServerName<'static>>) -> Self {
        let config = if config.alpn_protocols.is_empty() {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            Arc::new(config)
        } else {
            config
        };
        Tls {
            connector: TlsConnector::from(config),
            server_name,
        }
    }

    /// Runs the TLS handshake over a connected TCP stream.
    pub(crate) async fn handshake(
        &self,
        authority: &Authority,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, BoxError> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => {
                // An IPv6 host comes bracketed in an authority.
                let host = authority
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                ServerName::try_from(host.to_owned())?
            }
        };
        Ok(self.connector.connect(name, tcp).await?)
    }
}
