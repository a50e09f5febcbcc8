//! Where a transport's requests travel: over the network, one HTTP client per connection
//! the budget allows (so each owns at most one pooled connection, or one HTTP/2 connection),
//! or through an [`Exchange`] standing in for the agent. Uses the configuration, the TLS
//! material, the counters and the exchange seam.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, StatusCode, Version};

use super::exchange::{BoxError, ConnectionId, Exchange};
use super::split::Protocol;
use super::stats::Counters;
use crate::config::Config;
use crate::error::Error;
use crate::tls::TlsMaterial;

/// The largest answer body the client reads. A catalog of ten thousand instances is a few
/// megabytes; anything far beyond is a misbehaving server, not data.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// An answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// The network or an exchange.
pub(crate) enum Wire {
    Http(Box<HttpWire>),
    Exchange(Arc<dyn Exchange>),
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wire::Http(_) => f.write_str("Wire::Http"),
            Wire::Exchange(_) => f.write_str("Wire::Exchange"),
        }
    }
}

/// One reqwest client per connection, built when first used.
pub(crate) struct HttpWire {
    config: Config,
    material: TlsMaterial,
    clients: Mutex<HashMap<(Protocol, ConnectionId), reqwest::Client>>,
    counters: Arc<Counters>,
}

impl Wire {
    /// The network, as `config` describes it; fails if its TLS files are unusable.
    pub(crate) fn http(config: &Config, counters: Arc<Counters>) -> Result<Self, Error> {
        let material = TlsMaterial::load(&config.tls)?;
        let wire = HttpWire {
            config: config.clone(),
            material,
            clients: Mutex::new(HashMap::new()),
            counters,
        };
        // Build one client now, so that unusable settings fail here, not at the first call.
        wire.build(Protocol::Unknown)?;
        Ok(Wire::Http(Box::new(wire)))
    }

    /// Sends `request` on `connection` and reads the answer, within `deadline`.
    pub(crate) async fn send(
        &self,
        protocol: Protocol,
        connection: ConnectionId,
        request: reqwest::Request,
        deadline: Duration,
    ) -> Result<Answer, Error> {
        let exchange = async {
            match self {
                Wire::Http(wire) => {
                    let client = wire.client(protocol, connection)?;
                    let resp = client.execute(request).await.map_err(Error::from_reqwest)?;
                    let (status, version, headers) =
                        (resp.status(), resp.version(), resp.headers().clone());
                    let body = read_body(resp).await?;
                    Ok(Answer {
                        status,
                        version,
                        headers,
                        body,
                    })
                }
                Wire::Exchange(exchange) => {
                    let resp = exchange
                        .exchange(connection, to_http(&request)?)
                        .await
                        .map_err(Error::Transport)?;
                    if resp.body().len() > MAX_BODY {
                        return Err(Error::TooLarge { limit: MAX_BODY });
                    }
                    let (parts, body) = resp.into_parts();
                    Ok(Answer {
                        status: parts.status,
                        version: parts.version,
                        headers: parts.headers,
                        body,
                    })
                }
            }
        };
        match tokio::time::timeout(deadline, exchange).await {
            Ok(answer) => answer,
            Err(elapsed) => Err(Error::Timeout(Box::new(elapsed))),
        }
    }

    /// Closes `connection` (its client, and with it the pooled connection, is dropped).
    pub(crate) fn forget(&self, protocol: Protocol, connection: ConnectionId) {
        if let Wire::Http(wire) = self {
            wire.lock().remove(&(protocol, connection));
        }
    }
}

impl HttpWire {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(Protocol, ConnectionId), reqwest::Client>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(
        &self,
        protocol: Protocol,
        connection: ConnectionId,
    ) -> Result<reqwest::Client, Error> {
        if let Some(client) = self.lock().get(&(protocol, connection)) {
            return Ok(client.clone());
        }
        // Built outside the lock (it reads certificates); a racing build loses.
        let built = self.build(protocol)?;
        Ok(self
            .lock()
            .entry((protocol, connection))
            .or_insert(built)
            .clone())
    }

    /// A client whose pool holds the one connection it stands for.
    fn build(&self, protocol: Protocol) -> Result<reqwest::Client, Error> {
        let builder = self
            .config
            .http_builder(&self.material)?
            .connector_layer(CountConnects(self.counters.clone()));
        let builder = match protocol {
            // The probe offers both by ALPN and learns which the agent picks.
            Protocol::Unknown => builder.pool_max_idle_per_host(0),
            // One request at a time on it, so one pooled connection is all it ever needs.
            Protocol::Http1 => builder.http1_only().pool_max_idle_per_host(1),
            // hyper's pool opens one HTTP/2 connection per client and shares it.
            Protocol::Http2 => builder.http2_prior_knowledge(),
        };
        builder
            .build()
            .map_err(|e| Error::config("http client", crate::error::causes(&e)))
    }
}

/// A request as the exchange sees it.
fn to_http(request: &reqwest::Request) -> Result<http::Request<Bytes>, Error> {
    let body = request
        .body()
        .and_then(reqwest::Body::as_bytes)
        .map(Bytes::copy_from_slice)
        .unwrap_or_default();
    let mut out = http::Request::builder()
        .method(request.method().clone())
        .uri(request.url().as_str())
        .body(body)
        .map_err(|e| Error::config("request", e.to_string()))?;
    *out.headers_mut() = request.headers().clone();
    Ok(out)
}

/// Reads the body, refusing more than [`MAX_BODY`] bytes without buffering them.
async fn read_body(mut resp: reqwest::Response) -> Result<Bytes, Error> {
    if resp
        .content_length()
        .is_some_and(|len| len > MAX_BODY as u64)
    {
        return Err(Error::TooLarge { limit: MAX_BODY });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Error::from_reqwest)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Error::TooLarge { limit: MAX_BODY });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// A connector layer that counts the connections it opens.
#[derive(Debug, Clone)]
struct CountConnects(Arc<Counters>);

impl<S> tower_layer::Layer<S> for CountConnects {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counters: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Counted<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S, R> tower_service::Service<R> for Counted<S>
where
    S: tower_service::Service<R, Error = BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let connecting = self.inner.call(request);
        let counters = self.counters.clone();
        Box::pin(async move {
            let connection = connecting.await?;
            Counters::add(&counters.connections_opened);
            Ok(connection)
        })
    }
}
