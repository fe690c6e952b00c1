//! All integration tests build into this one binary (ripgrep's layout).

mod case;
mod cli;
mod common;
mod crash;
mod faults;
mod fixture;
mod founding;
mod interop;
mod keyring;
mod keys;
mod lifecycle;
mod report;
mod s3;
mod service;
mod tamper;
mod vectors;
mod witness;
