//! A minimal connector standing in for the connector engine: it pulls over WebSocket, SSE or
//! long-poll, forwards the exact body bytes to a local target, and ACKs on 2xx / NACKs
//! otherwise. It reconnects until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Sse,
    Poll,
}

pub struct TestConnector {
    task: JoinHandle<()>,
    pub seen: Arc<Mutex<Vec<Value>>>,
    pub connects: Arc<AtomicUsize>,
}

impl Drop for TestConnector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestConnector {
    pub fn start(
        transport: Transport,
        base: &str,
        channel: &str,
        token: &str,
        target: &str,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connects = Arc::new(AtomicUsize::new(0));
        let ctx = Ctx {
            base: base.trim_end_matches('/').to_owned(),
            channel: channel.to_owned(),
            token: token.to_owned(),
            target: target.to_owned(),
            http: reqwest::Client::new(),
            seen: seen.clone(),
            connects: connects.clone(),
        };
        let task = tokio::spawn(async move {
            loop {
                let r = match transport {
                    Transport::Ws => ctx.run_ws().await,
                    Transport::Sse => ctx.run_sse().await,
                    Transport::Poll => ctx.run_poll().await,
                };
                if let Err(e) = r {
                    eprintln!("test connector ({transport:?}) error: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        TestConnector {
            task,
            seen,
            connects,
        }
    }

    pub fn message_ids(&self) -> Vec<String> {
        self.seen
            .lock()
            .iter()
            .filter_map(|m| m["message_id"].as_str().map(str::to_owned))
            .collect()
    }
}

struct Ctx {
    base: String,
    channel: String,
    token: String,
    target: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Value>>>,
    connects: Arc<AtomicUsize>,
}

impl Ctx {
    /// Forwards one wire message; returns true on 2xx.
    async fn forward(&self, msg: &Value) -> bool {
        self.seen.lock().push(msg.clone());
        let body = msg["body_b64"]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_else(|| msg["payload"].to_string().into_bytes());
        let mut req = self.http.post(&self.target).body(body);
        if let Some(raw) = msg["raw_headers"].as_array() {
            for h in raw {
                let (Some(k), Some(v)) = (h[0].as_str(), h[1].as_str()) else {
                    continue;
                };
                if !["host", "content-length", "connection", "transfer-encoding"]
                    .contains(&k.to_ascii_lowercase().as_str())
                {
                    req = req.header(k, v);
                }
            }
        }
        req = req.header(
            "x-webhook-message-id",
            msg["message_id"].as_str().unwrap_or_default(),
        );
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }

    async fn run_ws(&self) -> anyhow::Result<()> {
        let url = format!(
            "{}/connect/stream/{}",
            self.base.replacen("http", "ws", 1),
            self.channel
        );
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse()?);
        req.headers_mut()
            .insert("x-webhook-connect-version", "2".parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        self.connects.fetch_add(1, Ordering::SeqCst);
        while let Some(frame) = ws.next().await {
            let Message::Text(t) = frame? else { continue };
            let v: Value = serde_json::from_str(t.as_str())?;
            if v["type"] == "webhook" {
                let ok = self.forward(&v).await;
                let reply = if ok {
                    serde_json::json!({"type": "ack", "message_id": v["message_id"]})
                } else {
                    serde_json::json!({"type": "nack", "message_id": v["message_id"], "retry": true, "error": "target failed"})
                };
                ws.send(Message::Text(reply.to_string().into())).await?;
            } else if v["type"] == "heartbeat" {
                ws.send(Message::Text(
                    serde_json::json!({"type": "heartbeat"}).to_string().into(),
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn settle(&self, conn: &str, id: &str, ok: bool) -> anyhow::Result<()> {
        let q = if ok {
            format!("message_id={id}")
        } else {
            format!("message_id={id}&status=nack&retry=true")
        };
        let r = self
            .http
            .post(format!("{}/connect/ack?{q}", self.base))
            .bearer_auth(&self.token)
            .header("x-connection-id", conn)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "ack answered {}", r.status());
        Ok(())
    }

    async fn run_sse(&self) -> anyhow::Result<()> {
        let r = self
            .http
            .get(format!("{}/connect/stream/{}/sse", self.base, self.channel))
            .bearer_auth(&self.token)
            .header("x-webhook-connect-version", "2")
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "sse answered {}", r.status());
        self.connects.fetch_add(1, Ordering::SeqCst);
        let mut stream = r.bytes_stream();
        let mut buf = String::new();
        let mut conn = String::new();
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(i) = buf.find("\n\n") {
                let ev: String = buf.drain(..i + 2).collect();
                let mut name = "";
                let mut data = "";
                for line in ev.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v;
                    }
                }
                match name {
                    "connected" => {
                        let v: Value = serde_json::from_str(data)?;
                        conn = v["connection_id"].as_str().unwrap_or_default().to_owned();
                    }
                    "webhook" => {
                        let v: Value = serde_json::from_str(data)?;
                        let ok = self.forward(&v).await;
                        self.settle(&conn, v["message_id"].as_str().unwrap_or_default(), ok)
                            .await?;
                    }
                    "error" => anyhow::bail!("sse error event: {data}"),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn run_poll(&self) -> anyhow::Result<()> {
        let mut conn: Option<String> = None;
        self.connects.fetch_add(1, Ordering::SeqCst);
        loop {
            let mut req = self
                .http
                .get(format!(
                    "{}/connect/stream/{}/poll?timeout=2&max_messages=10",
                    self.base, self.channel
                ))
                .bearer_auth(&self.token)
                .header("x-webhook-connect-version", "2");
            if let Some(c) = &conn {
                req = req.header("x-connection-id", c);
            }
            let r = req.send().await?;
            match r.status().as_u16() {
                204 => continue,
                200 => {}
                s => anyhow::bail!("poll answered {s}"),
            }
            let v: Value = r.json().await?;
            let c = v["connection_id"].as_str().unwrap_or_default().to_owned();
            conn = Some(c.clone());
            for m in v["messages"].as_array().cloned().unwrap_or_default() {
                let ok = self.forward(&m).await;
                self.settle(&c, m["message_id"].as_str().unwrap_or_default(), ok)
                    .await?;
            }
        }
    }
}
