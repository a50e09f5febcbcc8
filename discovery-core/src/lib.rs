#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod backoff;
mod error;
mod memory;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
mod model;
mod registry;
mod resolver;
mod update;

pub use backoff::Backoff;
pub use error::{Error, SharedError};
pub use memory::MemoryRegistry;
pub use model::{
    CheckSpec, Consistency, HealthStatus, ParseHealthStatusError, Query, Registration,
    ServiceInstance, Weights,
};
#[cfg(any(test, feature = "mock"))]
pub use registry::MockRegistry;
pub use registry::Registry;
#[cfg(any(test, feature = "mock"))]
pub use resolver::MockResolver;
pub use resolver::{Resolver, UpdateStream};
pub use update::Update;
