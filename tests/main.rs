//! All integration tests build into this one binary (ripgrep's layout).

mod case;
mod cli;
mod common;
mod crash;
mod faults;
mod fixture;
mod interop;
mod tamper;
mod vectors;
