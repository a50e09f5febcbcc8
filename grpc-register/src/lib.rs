#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// Layers, each using only those before it: `error`, `signal`, `metrics`, `advertise`, `http_health`;
// `keepalive`; `server`; `builder` on top.
mod advertise;
mod builder;
mod error;
mod http_health;
mod keepalive;
pub mod metrics;
mod server;
mod signal;

pub use advertise::local_ip_toward;
pub use builder::{Builder, CheckKind, Registered, RouterLayer};
pub use error::Error;
pub use server::Running;
pub use signal::shutdown_signal;
