//! The channel's own gRPC calls on one endpoint's connection: the `grpc.health.v1` client
//! (tonic-health's generated one) for the health `Watch` stream and the probe of a
//! suspected endpoint, sent straight on the connection, not through the balancer.
//!
//! They carry their own `user-agent`, `grpc-resolve-health/<version>`, as Envoy's health
//! checks carry `Envoy/HC`, so a server can tell them from its callers' traffic.
//!
//! May use: `http2` (the connection), the crate's `replay` (the body type it sends).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use hyper::body::Incoming;
use tonic::body::Body;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_service::Service;

use super::http2::Connection;
use crate::replay::ReplayBody;

/// The `user-agent` of the channel's own health calls.
pub(crate) const HEALTH_USER_AGENT: &str =
    concat!("grpc-resolve-health/", env!("CARGO_PKG_VERSION"));

/// A tonic client's transport over one connection.
#[derive(Clone)]
struct OnConnection(Connection);

type Sent = Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, hyper::Error>> + Send>>;

impl Service<http::Request<Body>> for OnConnection {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Sent;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        // The connection's own readiness is awaited in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Sent {
        let mut connection = self.0.clone();
        let (mut parts, body) = request.into_parts();
        parts.headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(HEALTH_USER_AGENT),
        );
        // Nothing is replayed: the body is never sent twice.
        let (body, _replay) = ReplayBody::new(body, 0);
        Box::pin(async move {
            connection.ready().await?;
            connection.send(parts, body).await
        })
    }
}

fn client(connection: &Connection) -> HealthClient<OnConnection> {
    HealthClient::new(OnConnection(connection.clone()))
}

/// Opens a `Watch` stream for `service` on `connection`.
pub(crate) async fn watch(
    connection: &Connection,
    service: &str,
) -> Result<tonic::Streaming<HealthCheckResponse>, tonic::Status> {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    Ok(client(connection).watch(request).await?.into_inner())
}

/// Whether the server behind `connection` answers a `Check` for `service` within `limit`:
/// any answer it gives counts, `UNIMPLEMENTED` and `NOT_FOUND` included, since it proves
/// the server is running; a transport failure or the time running out does not.
pub(crate) async fn answers(connection: &Connection, service: &str, limit: Duration) -> bool {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let checked = tokio::time::timeout(limit, client(connection).check(request)).await;
    match checked {
        Err(_) => false,
        Ok(Ok(_)) => true,
        // A status the server sent has no source; one tonic made of a transport error has
        // that error as its source.
        Ok(Err(status)) => std::error::Error::source(&status).is_none(),
    }
}
