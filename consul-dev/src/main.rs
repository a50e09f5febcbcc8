//! The `consul-dev` binary.
fn main() {}
