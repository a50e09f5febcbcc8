//! Health.
#![forbid(unsafe_code)]
