//! The background tasks of a [`super::RedisBuffer`]: the health and data-generation check,
//! the connection-registry refresh, and the `P:ctl` subscriber with its message handling.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::Inner;

pub(super) async fn ping_loop(inner: Arc<Inner>) {
    loop {
        // Answers like a PING, and notices a Redis that lost its data.
        if let Err(e) = inner.check_generation().await {
            inner.note_failure(&e);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub(super) async fn refresh_loop(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(inner.opts.heartbeat).await;
        let conns: Vec<(String, String)> = inner.local_conns.lock().iter().cloned().collect();
        if conns.is_empty() {
            continue;
        }
        let now = inner.clock.now().micros();
        if let Err(e) = inner.touch_connections(&conns, now, true).await {
            inner.note_failure(&e);
        }
    }
}

pub(super) async fn subscribe_loop(inner: Arc<Inner>) {
    let urls = inner.opts.endpoint.subscribe_urls();
    for url in urls.iter().cycle() {
        let client = match redis::Client::open(url.as_str()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "invalid redis url for pub/sub");
                return;
            }
        };
        match client.get_async_pubsub().await {
            Ok(mut ps) => match ps.subscribe(&inner.ctl).await {
                Ok(()) => {
                    let mut stream = ps.on_message();
                    while let Some(msg) = stream.next().await {
                        inner.on_ctl(msg.get_payload_bytes());
                    }
                }
                Err(e) => tracing::debug!(error = %e, "redis subscribe failed"),
            },
            Err(e) => tracing::debug!(error = %e, "redis pub/sub connection failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Inner {
    /// A `P:ctl` message from some replica; our own are already handled locally.
    fn on_ctl(&self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let mut parts = text.splitn(3, '\n');
        let (Some(kind), Some(from), Some(channel)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if from == self.opts.replica_id {
            return;
        }
        match kind {
            "wake" => {
                let n = self.notifiers.live(channel);
                if let Some(n) = n {
                    n.notify_one();
                }
            }
            // A rotation (published by the rotate script), a registration, a deletion.
            "token" | "chan" | "del" => {
                // Full only if nobody reads; the periodic re-read still catches up.
                let _ = self.change_tx.try_send(channel.to_owned());
            }
            "close" => {
                if let Some((channel, conn)) = channel.split_once('\n') {
                    // Full only if nobody listens; the request is then moot.
                    let _ = self
                        .close_tx
                        .try_send((channel.to_owned(), conn.to_owned()));
                }
            }
            _ => {}
        }
    }
}
