//! custody: a tamper-evident evidence vault.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod dsse;
pub mod hash;
pub mod ingest;
pub mod keys;
pub mod layout;
pub mod log;
pub mod preserve;
pub mod progress;
pub mod restore;
pub mod segment;
pub mod sources;
pub mod store;
pub mod time;
pub mod vault;
pub mod verify;
