//! A single-node, in-memory, Consul-compatible agent.
#![forbid(unsafe_code)]
