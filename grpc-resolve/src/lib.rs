#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod balance;
mod channel;
pub mod discover;
mod error;
pub mod metrics;
mod pool;
mod replay;
mod target;

pub use channel::{Builder, DiscoveredChannel, Hedging, ResponseFuture};
pub use error::{BoxError, Error};
pub use pool::{Condition, EndpointInfo, Stats};
pub use target::Target;

/// The rustls this crate's TLS is built on (the `tls` feature), for
/// [`Builder::tls`]'s `ClientConfig`.
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;
