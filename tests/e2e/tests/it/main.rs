//! End-to-end scenario suite: the real cloud binary on loopback (`connect_testkit::cloud`), real
//! WebSocket, SSE and long-poll clients, a recording local target. Build the binaries first
//! (`cargo build --workspace --bins`); `scripts/test.sh` does.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure with its message

mod backup;
mod bad_input;
mod behind_proxy;
mod cli_hosted;
mod client;
mod connector;
mod connector_control;
mod connector_honesty;
mod crash_loop;
mod disk_full;
mod dispatch;
mod edge;
mod etcd;
mod fairness;
mod hosted;
mod local_modules;
mod ops;
mod power_loss;
mod redis;
mod redis_layout;
mod redis_power_loss;
mod redis_upgrade;
mod reload;
mod replicas;
mod resilience;
mod reverse_proxy;
mod rolling;
mod scenario_02;
mod scenario_04;
mod secrets;
mod stalled;
mod startup;
mod vault;
mod vault_tls;
