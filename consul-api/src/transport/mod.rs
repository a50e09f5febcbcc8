//! The connections to one agent and the budget that bounds them. Below the client: uses the
//! configuration, the TLS material and the error type; the client sends every request
//! through here, and the watches take their blocking slots here.
//!
//! A [`Transport`] is shared by every clone of a client and, by default, by every client
//! built from equal settings in the process (`shared`). It learns the protocol first (an
//! HTTPS agent is asked once, on a connection of its own, and its answer's version says
//! whether it speaks HTTP/2), then spends the budget as `split` says: blocking slots lent
//! as leases (`lease`), short slots for everything else, polls paced (`pacer`). Each
//! connection the budget allows is a client of its own (`wire`), used by one request at a
//! time over HTTP/1.1, so the connections never outnumber the budget.

mod connections;
mod exchange;
mod lease;
mod pacer;
mod shared;
mod split;
mod stats;
mod wire;

pub(crate) use connections::{Route, Transport};
pub use exchange::{BoxError, ConnectionId, Exchange};
pub(crate) use lease::{Lease, LeaseRequest, Leases};
pub(crate) use shared::transport as shared;
pub use split::Protocol;
pub use stats::ClientStats;
pub(crate) use wire::Answer;
pub use wire::MAX_BODY;
