//! Engine integration tests against the REAL cloud binary on loopback and a recording local
//! target (and, in `v1`, against a protocol-v1 cloud stand-in from the test kit). Build the
//! binaries first (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used)] // tests: a panic is a failure with its message

mod control;
mod harness;
mod health;
mod hosted;
mod scenarios;
mod v1;
mod v1_honesty;
