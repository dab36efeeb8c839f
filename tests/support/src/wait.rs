//! Deadline-bounded polling instead of sleeps, and free ports.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::time::{Instant, sleep, timeout_at};

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `probe` every 20 ms until it returns `true`; errors naming `what` once `timeout` passes.
///
/// The probe always runs at least once, and a probe that hangs is cut off at the deadline. Uses
/// tokio time, so it also works under `tokio::time::pause()`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, what, || {
        let fut = probe();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `probe` every 20 ms until it returns `Some`; errors naming `what` once `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(value)) = timeout_at(deadline, probe()).await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Awaits `fut`, or errors naming `what` if it takes longer than `timeout`.
pub async fn within<T>(timeout: Duration, what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("timed out after {timeout:?}: {what}"))
}

/// A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, release it).
///
/// Only for children that must be told a port on their command line; in-process servers should
/// bind `127.0.0.1:0` themselves and keep the listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding 127.0.0.1:0 must work on a test machine")
}
