//! Consul client.
#![forbid(unsafe_code)]
