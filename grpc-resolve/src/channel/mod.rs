//! The channel: a tower service that tonic clients call, balancing over discovered
//! endpoints.
//!
//! `poll_ready` is always ready: readiness of a discovered set is a per-call question (is
//! any endpoint ready *now*?), and answering it in `poll_ready` is what makes tonic's own
//! balancer apply discovery only while traffic flows. Instead each call waits, up to the
//! empty timeout, until an endpoint is ready, picks one by weighted power of two choices,
//! and stays counted on it until its response body ends.
//!
//! A call is sent once more, to another endpoint, when the first attempt provably did not
//! reach the server (the endpoint's connection had closed, hyper returned the request
//! undispatched, the server refused the stream) or the server answered `Unavailable` without a
//! body (a draining or overloaded server). Request bodies are streams, consumed as they are
//! sent; the crate's `replay` module keeps a copy of up to 64 KiB while sending, so unary and
//! small streaming requests can go again and larger ones simply are not retried. Retries are
//! bounded by the channel's retry budget ([`budget`]): a fraction of recent calls plus a
//! small floor.
//!
//! A call may instead be hedged ([`hedge`], opt-in for methods safe to run twice): when its
//! attempt has not answered within a delay, the same request also goes to another
//! endpoint, and the first answer wins.
//!
//! From the top down: [`builder`] starts a [`service`] (the channel and one call's path:
//! the retry loop or the hedging race), which starts the [`discovery`] task and sends each
//! [`attempt`] (one endpoint's try, using [`body`], the response body that keeps a call
//! counted, and [`classify`], what an outcome says), using [`budget`] (the retry budget),
//! [`hedge`] (the race), [`timeout`] and [`future`]. Below the channel: the pool,
//! `discover`, `replay`, `error`.

mod attempt;
mod body;
mod budget;
mod builder;
mod classify;
mod discovery;
mod future;
mod hedge;
mod service;
mod timeout;

pub use builder::Builder;
pub use future::ResponseFuture;
pub use hedge::Hedging;
pub use service::DiscoveredChannel;
