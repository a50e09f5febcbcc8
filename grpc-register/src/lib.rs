//! Register.
#![forbid(unsafe_code)]
