//! Wire formats, one concern a file: Go's durations and booleans (`go`), the Go-json-like
//! request decoder and its error texts (`decode`), the request shapes of the agent and the
//! catalog (`agent_request`, `catalog_request`) and the response shapes (`out`).
//!
//! It uses `state`'s model and nothing else of the crate: no HTTP, no store, no runner.
//! The HTTP layer turns a [`DecodeError`] into Consul's 400.

mod agent_request;
mod catalog_request;
mod decode;
mod go;
mod out;

pub(crate) use agent_request::{CheckDef, CheckUpdate, ServiceDef, validate_meta};
pub(crate) use catalog_request::{CatalogCheck, CatalogDeregistration, CatalogRegistration};
pub(crate) use decode::{DecodeError, parse_body};
pub(crate) use go::{nanos_to_duration, parse_go_bool, parse_go_duration};
pub(crate) use out::{
    AgentHealthOut, AgentServiceOut, CheckOut, NodeOut, NodeServiceOut, NodeServicesOut,
    ServiceEntryOut, ServiceNodeOut,
};
