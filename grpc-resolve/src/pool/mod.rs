//! The endpoints a channel balances over, with their connection, load and ejection state.
//!
//! The pool is the only state shared between the discovery task, the reconnect loops and
//! the call path. It knows nothing of resolution or of the channel above it: it is given
//! [`Changes`](crate::discover::Changes) to apply, and calls pick from it.
//!
//! Each endpoint owns one HTTP/2 connection, present only while it is up (see
//! [`reconnect`] and [`http2`]). A removed endpoint leaves the pool at once, so no new
//! call picks it, but calls already in flight hold their own handle on its connection and
//! finish normally; only when an answer drops most ready endpoints at once does the shrink
//! guard keep the connected ones a while as a fallback.
//!
//! With a concurrency limit, an endpoint with that many calls in flight is not picked; when
//! every ready endpoint is full, calls wait (up to the empty timeout) for one to finish.
//!
//! Locality preference: with a preferred locality configured, a pick considers only the
//! usable endpoints in that locality while there is at least one, and all usable endpoints
//! otherwise. Only readiness decides the fallback, not load: a zone's last ready endpoint
//! takes all of its zone's calls, which is what keeping traffic in the zone means.
//!
//! Passive outlier detection: after `consecutive_failures` transport failures or
//! `Unavailable` answers in a row, an endpoint is ejected for a time that doubles with each
//! ejection in a row (up to a cap); its connection is dropped and it comes back by
//! reconnecting. The last usable endpoint is never ejected: failing calls reaching the caller
//! beat every call waiting for nothing.
//!
//! Beside them: ejection by failure rate ([`outlier::rate_ejections`]), slow
//! start ([`slow_start`]) and the shrink guard ([`guard`]), run by the pool's maintenance
//! task ([`maintain`]) and on connection events; see the crate's README for the rules.
//!
//! From the top down: [`pick`] (a call's pick) and [`maintain`] (the pool's timer task) use
//! [`set`] (the `Pool`: apply, the set-wide decisions), which uses [`guard`] and
//! [`slow_start`] and [`reconnect`] (one endpoint's reconnect loop, with [`health_watch`]
//! and [`grpc`]); [`hooks`] starts [`monitor`] (unresponsive endpoints) and gives those
//! tasks their view of the pool. Below: [`endpoint`] (one endpoint, with [`readiness`], where its connection
//! stands, and [`progress`], its calls' progress), [`http2`] (the connection handle and
//! handshake, with [`tls`]), [`outlier`], [`stats`] and [`settings`]. Nothing here uses the
//! channel or discovery's task.

mod endpoint;

mod grpc;
mod guard;
mod health_watch;
mod hooks;
mod http2;
mod maintain;
mod monitor;
mod outlier;
mod pick;
mod progress;
mod readiness;
mod reconnect;
mod set;
mod settings;
mod slow_start;
mod stats;
#[cfg(feature = "tls")]
mod tls;

pub(crate) use endpoint::Endpoint;
pub use endpoint::EndpointInfo;
pub(crate) use http2::Connection;
pub(crate) use maintain::run as maintain;
pub(crate) use pick::Picked;
pub use readiness::Condition;
pub(crate) use set::Pool;
pub(crate) use settings::{DEFAULT_CONNECT_TIMEOUT, PoolConfig};
pub use stats::Stats;
#[cfg(feature = "tls")]
pub(crate) use tls::Tls;
