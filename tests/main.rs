//! All integration tests build into this one binary (ripgrep's layout).

mod cli;
mod common;
mod crash;
mod faults;
mod fixture;
mod interop;
mod report;
mod tamper;
mod vectors;
