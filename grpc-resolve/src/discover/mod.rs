//! Discovery, the pure part: turning a resolver's snapshots into endpoint changes.
//!
//! A resolver yields whole snapshots; a balancer wants to know what to add, change and
//! drop, so that connections to instances that stay are kept. [`diff()`] computes that, as a
//! pure function; the channel's discovery task applies each diff to its pool.
//!
//! For callers with their own balancer, [`changes`] offers the same diffs as a tower
//! `Discover` stream of `Change<String, Endpoint>`.
//!
//! May use: nothing else of the crate (within it, the adapter uses the diff).

mod adapter;
mod diff;

pub use adapter::{ChangeStream, changes};
pub use diff::{Changes, diff};
