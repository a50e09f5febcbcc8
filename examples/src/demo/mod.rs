//! The live failover demo behind `cargo run --release -p examples --bin demo`.
//!
//! An embedded consul-dev agent, real `add-server` child processes (so a SIGKILL or a
//! SIGSTOP is as real as it gets), and callers going through one
//! [`DiscoveredChannel`](grpc_resolve::DiscoveredChannel) without pause while the scenario
//! breaks things: a server joins, one is killed, one hangs and resumes, one turns
//! NOT_SERVING and back, the agent restarts empty, every server is replaced in a rolling
//! restart. Each step states what the design promises about its failed calls; at the end a
//! table puts every step's calls beside what the servers themselves counted, and the run
//! fails if a promise did not hold.
//!
//! The parts: `board` (what the screen shows, fed by the rest), `fleet` (the child
//! processes), `traffic` (the callers and their per-step tally), `consul_watch` (Consul's
//! view), `rows` and `screen` (drawing), `report` (the final table and the promises),
//! `steps` (the scenario's steps), `scenario` (the setup and teardown around them).

mod board;
mod consul_watch;
mod fleet;
mod report;
mod rows;
mod scenario;
mod screen;
mod steps;
mod traffic;

pub use scenario::{STEPS, Settings, run};
