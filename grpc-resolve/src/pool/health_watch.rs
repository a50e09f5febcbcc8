//! Client-side health checking (gRPC's design, gRFC A17): one `grpc.health.v1.Health/Watch`
//! stream per endpoint connection, whose answers take the endpoint out of rotation
//! (anything but SERVING) and bring it back (SERVING) within one round trip of the server
//! changing its status, long before the registry's next check.
//!
//! A server answering `UNIMPLEMENTED` has no health service: it counts as serving, as in
//! gRPC, and is not asked again on that connection. A stream that ends or fails is opened
//! again with backoff and changes nothing by itself (a connection whose stream failed
//! before it answered counts as serving): only the server's word takes an endpoint out.
//! The stream lives as long as the connection's turn in the reconnect loop, which drops it
//! (cancelling the stream) when the connection leaves rotation, so it never holds a
//! draining server's graceful stop.
//!
//! May use: `endpoint` (where the health goes), `grpc` (the stream), `http2`, the crate's
//! `error`.

use discovery_core::Backoff;
use tonic_health::pb::health_check_response::ServingStatus;

use super::endpoint::{Endpoint, Health};
use super::grpc;
use super::http2::Connection;

/// Watches the health of `service` on connection `generation` of `endpoint`, calling
/// `changed` whenever that changes what a pick sees. Runs until dropped.
pub(crate) async fn run(
    endpoint: &Endpoint,
    connection: &Connection,
    generation: u64,
    service: &str,
    backoff: &Backoff,
    changed: impl Fn(),
) {
    let mut attempt = 0u32;
    loop {
        match grpc::watch(connection, service).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(answer)) => {
                        attempt = 0;
                        let health = match answer.status() {
                            ServingStatus::Serving => Health::Serving,
                            _ => Health::NotServing,
                        };
                        tracing::debug!(endpoint = %endpoint.id, status = ?answer.status(), "health watch answered");
                        if endpoint.set_health(generation, health) {
                            changed();
                        }
                    }
                    Ok(None) => {
                        tracing::debug!(endpoint = %endpoint.id, "health watch ended; opening it again");
                        break;
                    }
                    Err(status) => {
                        tracing::debug!(endpoint = %endpoint.id, %status, "health watch failed; opening it again");
                        break;
                    }
                }
            },
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::debug!(endpoint = %endpoint.id, "the server has no health service; counting it as serving");
                if endpoint.set_health(generation, Health::Serving) {
                    changed();
                }
                return std::future::pending().await;
            }
            Err(status) => {
                tracing::debug!(endpoint = %endpoint.id, %status, "health watch refused; opening it again");
            }
        }
        if endpoint.health_unanswered(generation) {
            changed();
        }
        tokio::time::sleep(backoff.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}
