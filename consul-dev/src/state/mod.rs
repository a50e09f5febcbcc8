//! The store below the HTTP layer: the agent's model (`model`), the [`Store`] with its
//! indexes and wake-ups (`store`), and the one lock it is [`Shared`] behind (`shared`).
//!
//! It uses `config` and nothing above it: no HTTP, wire format or check runner. Those sit on
//! top (`wire` renders the model, `blocking` waits on the wake-ups, `checks` reports into
//! the store).

mod model;
mod shared;
mod store;

pub(crate) use model::{
    Check, CheckSpec, DEFAULT_OUTPUT_MAX_SIZE, Key, Node, Runner, Service, Status, TaggedAddr,
    Weights,
};
pub(crate) use shared::Shared;
pub(crate) use store::Store;
