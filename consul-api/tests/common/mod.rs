//! Helpers shared by the integration tests: the agent under test (`agent`), an in-process
//! fake agent on the transport seam for paused-time tests (`fake`), and a TCP proxy that
//! counts connections and records what passes (`proxy`).

#![allow(dead_code, unreachable_pub)]

mod agent;
pub mod fake;
pub mod proxy;

#[allow(unused_imports)]
pub use agent::*;
