#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// Layers, each using only those before it: `error`, `signal`, `metrics`, `advertise`, `http_health`;
// `keepalive`; `registration`; `server`; `builder` on top.
mod advertise;
mod builder;
mod error;
mod http_health;
mod keepalive;
pub mod metrics;
mod registration;
mod server;
mod signal;

pub use advertise::local_ip_toward;
pub use builder::{Builder, Registered, RouterLayer};
pub use error::Error;
pub use registration::CheckKind;
pub use server::Running;
pub use signal::shutdown_signal;
