//! Resolve.
#![forbid(unsafe_code)]
