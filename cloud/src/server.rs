//! Serving: `run` takes a bound listener and a shutdown future (mini-redis style), so
//! `main` binds the configured address and tests bind `127.0.0.1:0`.
//!
//! Shutdown (§6.5): refuse new ingress and connections, stop dispatching, wait up to the
//! grace period for outstanding ACKs, close every stream (1001 / `server_shutdown` / 204),
//! release leases, flush the buffer.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::app::AppState;
use crate::hub::CloseReason;

pub async fn run(
    listener: TcpListener,
    st: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    st.spawn_background();
    let app = st
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    let st2 = st.clone();
    let drained = async move {
        shutdown.await;
        tracing::info!("shutdown requested: refusing new work, waiting for outstanding ACKs");
        st2.shutdown.cancel();
        st2.hub.dispatch_stop.cancel();
        let deadline = Instant::now() + st2.settings.shutdown_grace();
        while Instant::now() < deadline && outstanding(&st2) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        st2.hub.close_all(CloseReason::Shutdown);
        // Give streams a moment to write their close frames and release their leases.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && st2.hub.connections_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(drained)
        .await?;
    st.tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), st.tracker.wait()).await;
    if let Err(e) = st.buffer().close().await {
        tracing::warn!(error = %e, "closing the buffer failed");
    }
    Ok(())
}

fn outstanding(st: &AppState) -> usize {
    st.hub
        .channel_names()
        .iter()
        .filter_map(|n| st.hub.channel(n))
        .map(|rt| {
            rt.conns
                .read()
                .iter()
                .map(|c| c.in_flight.load(Ordering::Acquire))
                .sum::<usize>()
        })
        .sum()
}
