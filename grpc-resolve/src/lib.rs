//! A load-balancing tonic channel fed by a [`discovery_core::Resolver`].
//!
//! ```
//! use discovery_core::{MemoryRegistry, Registration, Registry, ServiceInstance};
//! use grpc_resolve::DiscoveredChannel;
//! use tonic_health::pb::health_check_response::ServingStatus;
//! use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse()?)?;
//! # let port = incoming.local_addr()?.port();
//! # let (_reporter, health) = tonic_health::server::health_reporter();
//! # let server = tonic::transport::Server::builder().add_service(health);
//! # tokio::spawn(server.serve_with_incoming(incoming));
//! let registry = MemoryRegistry::new(); // or a Consul resolver
//! let instance = ServiceInstance::new("adder-1", "adder", "127.0.0.1", port);
//! registry.register(&Registration::new(instance)).await?;
//!
//! let channel = DiscoveredChannel::builder(registry, "adder")
//!     .connect_timeout(std::time::Duration::from_secs(2))
//!     .build();
//! // Any tonic-generated client takes the channel.
//! let mut client = HealthClient::new(channel.clone());
//! let answer = client.check(HealthCheckRequest { service: String::new() }).await?;
//! assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
//! # Ok(())
//! # }
//! ```
//!
//! # Why not `Channel::balance_channel`
//!
//! tonic's balancer treats an endpoint as ready before it has connected and reports zero
//! load for every connection, so a dead endpoint keeps getting calls while it is listed;
//! it applies discovery only inside `poll_ready`, so an idle channel keeps stale
//! endpoints; and with no endpoints a call waits forever. This crate keeps the parts
//! apart, as linkerd does, each layer using only the ones below it:
//!
//! - [`DiscoveredChannel`] (the channel): the tower service tonic calls; a call waits a
//!   bounded time for a ready endpoint, then fails `Unavailable` naming the service. Its
//!   discovery task follows the resolver's watch and applies each snapshot's diff as it
//!   arrives, traffic or not; resolver errors keep the last good set.
//! - the pool: each endpoint connects eagerly in its own task, is *ready* only while its
//!   connection is up, and is ejected for a while after consecutive failures. Each
//!   connection watches its server's `grpc.health.v1` status ([`Builder::health_check`]),
//!   and an endpoint whose calls stop completing while others' complete is taken out and
//!   probed ([`Builder::unresponsive_after`]). The
//!   connection is one hyper HTTP/2 connection (TLS with the `tls` feature, on by default)
//!   that calls send on directly, without a tonic `Channel`'s buffer task in between;
//!   endpoint settings (keepalive, windows, concurrency limit, TLS) are the [`Builder`]'s.
//! - the balancer: weighted power of two choices over ready endpoints, by in-flight calls
//!   per unit of weight; with [`Builder::prefer_locality`], only over those in the preferred
//!   zone while any of them is ready.
//! - [`discover`]: pure, the diff of a snapshot against the current set, and a tower
//!   `Discover` stream for callers with their own balancer.

#![forbid(unsafe_code)]

mod balance;
mod channel;
pub mod discover;
mod error;
mod pool;
mod replay;
mod target;

pub use channel::{Builder, DiscoveredChannel, ResponseFuture};
pub use error::{BoxError, Error};
pub use pool::{Condition, EndpointInfo, Stats};
pub use target::Target;

/// The rustls this crate's TLS is built on (the `tls` feature), for
/// [`Builder::tls`]'s `ClientConfig`.
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;
