//! Serving: `run` takes a bound listener and a shutdown future (mini-redis style), so
//! `main` binds the configured address and tests bind `127.0.0.1:0`.
//!
//! Shutdown (§6.5): refuse new ingress and connections, stop dispatching, wait up to the
//! grace period for outstanding ACKs, close every stream (1001 / `server_shutdown` / 204),
//! release leases, flush the buffer.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::app::AppState;
use crate::edge::handoff::Handoff;
use crate::edge::head_errors::{self, HEAD_BUFFER_BYTES, HeadGuard, HeadLimits};
use crate::hub::conn::CloseReason;

pub async fn run(
    listener: TcpListener,
    st: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    st.spawn_background();
    let router = crate::http::router(st.clone());
    let st2 = st.clone();
    let drained = async move {
        shutdown.await;
        tracing::info!("shutdown requested: refusing new work, waiting for outstanding ACKs");
        st2.shutdown().cancel();
        st2.hub().stop_token().cancel();
        let deadline = Instant::now() + st2.settings().shutdown_grace();
        while Instant::now() < deadline && outstanding(&st2) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        st2.hub().close_all(CloseReason::Shutdown);
        // Give streams a moment to write their close frames and release their leases.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && st2.hub().connections_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::pin!(drained);
    let nofile = crate::edge::raise_nofile();
    let cap = crate::edge::connection_cap(st.settings().max_http_connections, nofile);
    tracing::info!(
        max_http_connections = cap,
        open_files_limit = nofile,
        "connection bounds"
    );
    let gate = crate::edge::Gate::new(cap);
    let first_byte = Duration::from_secs_f64(st.settings().first_byte_timeout_seconds);
    // hyper's own header cap (100) would answer 431 before the ingress pipeline can give its
    // documented 400; ours is enforced in the pipeline, so hyper gets a looser one.
    let hyper_max_headers = head_errors::hyper_max_headers(st.settings().max_headers);
    // What hyper refuses itself is answered in the documented shape (edge::head_errors).
    let head_limits = Arc::new(HeadLimits {
        hyper_max_headers,
        max_headers: st.settings().max_headers,
        max_header_bytes: st.settings().max_header_bytes,
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_headers(hyper_max_headers)
        .max_buf_size(HEAD_BUFFER_BYTES);
    // HTTP/2: pings find a peer that stopped answering (or never spoke HTTP/2 past the preface).
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(
            st.settings().heartbeat_interval_seconds,
        )))
        .keep_alive_timeout(Duration::from_secs(20))
        // The HTTP/1 limits are applied above h2, in the documented shape (http::h2_limits).
        .max_header_list_size(crate::edge::limits::H2_MAX_HEADER_LIST_BYTES);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            _ = &mut drained => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(permit) = gate.admit() else {
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let handoff = Handoff::default();
                let handoff2 = handoff.clone();
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req.extensions_mut().insert(handoff2.clone());
                    router.clone().oneshot(req.map(axum::body::Body::new))
                });
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let head_limits = head_limits.clone();
                tokio::spawn(async move {
                    if !crate::edge::first_byte(&stream, first_byte).await {
                        return;
                    }
                    let io = TokioIo::new(HeadGuard::new(stream, head_limits, permit, handoff));
                    let conn = builder.serve_connection_with_upgrades(io, svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    st.tracker().close();
    let _ = tokio::time::timeout(Duration::from_secs(3), st.tracker().wait()).await;
    if let Err(e) = st.buffer().close().await {
        tracing::warn!(error = %e, "closing the buffer failed");
    }
    Ok(())
}

fn outstanding(st: &AppState) -> usize {
    st.hub()
        .channel_names()
        .iter()
        .filter_map(|n| st.hub().channel(n))
        .map(|rt| {
            rt.connections()
                .iter()
                .map(|c| c.in_flight())
                .sum::<usize>()
        })
        .sum()
}
