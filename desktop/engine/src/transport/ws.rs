//! The WebSocket transport (§5.1).

use std::sync::Arc;
use std::time::Duration;

use connect_protocol::close;
use connect_protocol::frames::{ClientFrame, ParsedServerFrame, ServerFrame};
use connect_protocol::headers as h;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::proxy::CloudProxy;
use super::{MAX_MESSAGE, is_v2};
use crate::channel::{ChannelCtx, Link, error_chain};
use crate::config::TransportChoice;
use crate::session::{ConnError, End, Session, connected};

pub(crate) async fn run_ws(ctx: &Arc<ChannelCtx>, stop: &CancellationToken) -> Session {
    let fail = |r| Session {
        connected: false,
        result: Err(r),
    };
    let base = ctx.http_base();
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        format!("ws://{}", base.trim_start_matches("http://"))
    };
    let url = format!("{ws_base}/connect/stream/{}", ctx.cfg.channel);
    let mut req = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return fail(ConnError::Other(format!("bad url: {e}"))),
    };
    let hs = req.headers_mut();
    let mut add = |k: &'static str, v: String| {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            hs.insert(k, v);
        }
    };
    add("authorization", format!("Bearer {}", ctx.token()));
    add(h::VERSION, "2".into());
    if let Some(id) = &ctx.cfg.connector_id {
        add(h::CONNECTOR_ID, id.clone());
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let tls = ctx.ws_tls.clone().map(tokio_tungstenite::Connector::Rustls);
    let proxy = CloudProxy::for_cloud(&ctx.cfg.cloud_url, &ctx.env);
    let connect = async {
        match proxy {
            None => {
                tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, tls).await
            }
            Some(proxy) => {
                let host = req.uri().host().unwrap_or_default().to_owned();
                let https = req.uri().scheme_str() == Some("wss");
                let port = req.uri().port_u16().unwrap_or(if https { 443 } else { 80 });
                let stream = proxy
                    .tunnel(&host, port)
                    .await
                    .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
                tokio_tungstenite::client_async_tls_with_config(req, stream, Some(config), tls)
                    .await
            }
        }
    };
    let (ws, resp) = tokio::select! {
        _ = stop.cancelled() => return Session { connected: false, result: Ok(End::Draining) },
        r = tokio::time::timeout(ctx.cfg.connection_timeout, connect) => match r {
            Err(_) => return fail(ConnError::Other("connection timeout".into())),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                let s = resp.status().as_u16();
                // 403 is how a v1 server reports a bad token on the upgrade, but also how proxies
                // refuse WebSocket: under `auto` it is a transport failure (fall back to SSE, whose
                // answer then tells a bad token apart).
                let forbidden_by_proxy = s == 403 && ctx.cfg.protocol == TransportChoice::Auto;
                return fail(if s == 401 || (s == 403 && !forbidden_by_proxy) {
                    ConnError::Auth(format!("HTTP {s}: invalid channel token"))
                } else if forbidden_by_proxy {
                    ConnError::Other(
                        "WebSocket upgrade answered HTTP 403 (refused by a proxy, or a bad token)"
                            .into(),
                    )
                } else {
                    ConnError::Other(format!("WebSocket upgrade answered HTTP {s}"))
                });
            }
            Ok(Err(e)) => return fail(ConnError::Other(format!("WebSocket connect: {}", error_chain(&e)))),
            Ok(Ok(x)) => x,
        },
    };
    let mut v2 = is_v2(resp.headers());
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut link = Arc::new(Link {
        connection_id: String::new(),
        ws: Some(tx.clone()),
        v2,
        ack_timeout: Duration::from_secs(30),
    });
    let mut was_connected = false;
    let end = loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break End::Draining,
            n = tokio::time::timeout(ctx.cfg.heartbeat_timeout, stream.next()) => n,
        };
        let frame = match next {
            Err(_) => break End::HeartbeatTimeout,
            Ok(None) => break End::Closed(None, "stream ended".into()),
            Ok(Some(Err(e))) => break End::Closed(None, format!("read error: {e}")),
            Ok(Some(Ok(f))) => f,
        };
        match frame {
            Message::Text(t) => match ServerFrame::parse(t.as_str()) {
                Ok(ParsedServerFrame::Connected(c)) => {
                    v2 = v2 || c.protocol_version.is_some_and(|v| v >= 2);
                    link = Arc::new(Link {
                        connection_id: c.connection_id.clone(),
                        ws: Some(tx.clone()),
                        v2,
                        ack_timeout: Duration::from_secs(
                            c.ack_timeout_seconds.unwrap_or(30).max(1),
                        ),
                    });
                    was_connected = true;
                    connected(ctx, &link, c.protocol_version);
                    tracing::info!(channel = %ctx.cfg.channel, connection_id = %c.connection_id, "connected (websocket)");
                }
                Ok(ParsedServerFrame::Webhook(m)) => ctx.accept(&link, *m),
                Ok(ParsedServerFrame::Heartbeat) => {
                    let hb = ClientFrame::Heartbeat {
                        timestamp: Some(connect_protocol::time::Timestamp::now()),
                    };
                    let _ = tx.send(Message::Text(
                        serde_json::to_string(&hb).unwrap_or_default().into(),
                    ));
                }
                Ok(ParsedServerFrame::Error(e)) => {
                    tracing::warn!(channel = %ctx.cfg.channel, error = %e, "server error frame")
                }
                Ok(ParsedServerFrame::Unknown) => {}
                Err(e) => {
                    tracing::warn!(channel = %ctx.cfg.channel, error = %e, "unparsable frame ignored")
                }
            },
            Message::Close(c) => {
                let (code, reason) = c
                    .map(|c| (Some(u16::from(c.code)), c.reason.to_string()))
                    .unwrap_or((None, String::new()));
                break End::Closed(code, reason);
            }
            _ => {}
        }
    };
    if matches!(end, End::Draining) {
        ctx.settled().await;
        let _ = tx.send(Message::Close(Some(CloseFrame {
            code: close::NORMAL.into(),
            reason: close::reason(close::NORMAL).into(),
        })));
        drop(stream);
        drop(tx);
        drop(link);
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    } else {
        // The socket is gone: ending the writer makes later settlements of deliveries still
        // running fail over to `POST /connect/ack`, which accepts late ACKs from closed
        // connections (§5.4).
        writer.abort();
    }
    Session {
        connected: was_connected,
        result: Ok(end),
    }
}
