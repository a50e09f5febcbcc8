//! Checks the agent runs itself: TTL, HTTP, TCP and gRPC runners (`runner`), the probes and
//! the HTTP clients they own (`probe`), the TLS of gRPC checks (`tls`), Consul's
//! success/failure thresholds, and the reaper of services critical for too long (`reaper`).
//!
//! It sits above `state` (results go into the store, a runner's handle is kept with its
//! check so that removing the check stops it) and uses `config`, `error` and `wire`'s
//! durations besides; never the HTTP layer.

mod probe;
mod reaper;
mod runner;
mod tls;

pub(crate) use reaper::{deregister_after, reaper};
pub(crate) use runner::{Checks, apply_result, effective_interval};
