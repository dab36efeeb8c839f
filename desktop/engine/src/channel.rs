//! One channel's context ([`ChannelCtx`]): its configuration, token, HTTP clients, limits,
//! live status and history, the cancellation [`Tokens`] of its shutdown phases, and settlement
//! (ACK / NACK / extend, over the WebSocket or `POST /connect/ack`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_protocol::frames::ClientFrame;
use connect_protocol::headers as h;
use connect_protocol::message::WireMessage;
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{ChannelStatus, LinkState};
use crate::config::ChannelConfig;
use crate::error::EngineError;
use crate::forward;
use crate::handle::Inner;
use crate::history::{Entry, History};
use crate::modules::Modules;
use crate::outcome_log::Subject;
use crate::status::Live;
use crate::transport::cloud_http::{CloudHttpOptions, cloud_client};
use crate::transport::tls::ws_tls_config;

/// How long a pause or disconnect waits for running deliveries before closing the link.
const PAUSE_GRACE: Duration = Duration::from_secs(10);
/// How often the queue depth is read from `/connect/status` while connected.
const QUEUE_POLL: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub(crate) struct Tokens {
    /// Cancelled first: stop reading new messages.
    pub(crate) intake: CancellationToken,
    /// Cancelled once in-flight deliveries are settled (or the grace ran out): close links.
    pub(crate) drained: CancellationToken,
    /// Abort deliveries still running (they are NACKed).
    pub(crate) hard: CancellationToken,
}

impl Tokens {
    pub(crate) fn new() -> Self {
        Self {
            intake: CancellationToken::new(),
            drained: CancellationToken::new(),
            hard: CancellationToken::new(),
        }
    }

    pub(crate) fn child(&self) -> Self {
        Self {
            intake: self.intake.child_token(),
            drained: self.drained.child_token(),
            hard: self.hard.child_token(),
        }
    }
}

/// Feeds the one-at-a-time worker of an `ordered` target.
pub(crate) type OrderedQueue = mpsc::UnboundedSender<(Arc<Link>, WireMessage, u64)>;

#[derive(Debug)]
pub(crate) struct ChannelCtx {
    pub(crate) cfg: ChannelConfig,
    pub(crate) token: Mutex<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) cloud: reqwest::Client,
    /// TLS for `wss://` links (an `https://` cloud_url), with the HTTP client's settings.
    pub(crate) ws_tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) target_clients: HashMap<String, reqwest::Client>,
    /// For replays to another URL.
    pub(crate) plain_client: reqwest::Client,
    pub(crate) target_limits: HashMap<String, Arc<Semaphore>>,
    pub(crate) ordered_queues: Mutex<HashMap<String, OrderedQueue>>,
    pub(crate) global: Arc<Semaphore>,
    pub(crate) channel_limit: Option<Arc<Semaphore>>,
    pub(crate) live: Mutex<Live>,
    pub(crate) history: Mutex<History>,
    pub(crate) tokens: Tokens,
    pub(crate) deliveries: TaskTracker,
    pub(crate) enabled: watch::Sender<bool>,
    pub(crate) paused: watch::Receiver<bool>,
    pub(crate) modules: Option<Arc<Modules>>,
    /// Wakes the queue poller before its next tick: on connecting, and when the channel's
    /// dead letters were changed through the admin API ([`EngineHandle::refresh_queue`]).
    pub(crate) queue_wake: tokio::sync::Notify,
    pub(crate) finished: tokio::sync::broadcast::Sender<crate::handle::Finished>,
}

/// The connection a message arrived on, used to settle it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) connection_id: String,
    pub(crate) ws: Option<mpsc::UnboundedSender<Message>>,
    pub(crate) v2: bool,
    pub(crate) ack_timeout: Duration,
}

#[derive(Debug)]
pub(crate) enum Settle {
    Ack,
    Nack { retry: bool, error: String },
    Extend,
}

/// An error with its causes: reqwest's own message hides them ("error sending request for
/// url"), which would leave a TLS or proxy failure unexplained in `last_error`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        next = cause.source();
    }
    text
}

pub(crate) fn target_client(verify_tls: bool) -> Result<reqwest::Client, EngineError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .danger_accept_invalid_certs(!verify_tls)
        .build()
        .map_err(|e| EngineError::Setup(format!("HTTP client: {e}")))
}

impl ChannelCtx {
    pub(crate) fn new(
        cfg: ChannelConfig,
        inner: &Inner,
        history: History,
    ) -> Result<Self, EngineError> {
        let cloud = cloud_client(
            &cfg.cloud_url,
            &CloudHttpOptions {
                connect_timeout: cfg.connection_timeout,
                request_timeout: None,
                verify_ssl: cfg.verify_ssl,
                ca_cert_path: cfg.ca_cert_path.clone(),
                client_cert_path: cfg.client_cert_path.clone(),
                client_key_path: cfg.client_key_path.clone(),
            },
            &inner.env,
        )?;
        let mut target_clients = HashMap::new();
        let mut target_limits = HashMap::new();
        let all = cfg.targets.iter().map(|(k, t)| (k.clone(), t)).chain(
            cfg.default_target
                .iter()
                .map(|t| ("*default*".to_owned(), t)),
        );
        for (k, t) in all {
            target_clients.insert(k.clone(), target_client(t.verify_tls)?);
            if let Some(n) = t.max_concurrent_requests {
                target_limits.insert(k, Arc::new(Semaphore::new(n)));
            }
        }
        let (enabled, _) = watch::channel(cfg.enabled);
        let tokens = inner.tokens.child();
        let modules = match &cfg.module {
            None => None,
            Some(mode) => {
                let (m, warnings) = Modules::load(mode, &inner.env)?;
                for w in warnings {
                    tracing::warn!(channel = %cfg.channel, "{w}");
                }
                let m = Arc::new(m);
                if let crate::modules::ModuleMode::Etcd(src) = mode {
                    crate::etcd_modules::spawn(
                        m.clone(),
                        src.clone(),
                        inner.env.clone(),
                        tokens.hard.clone(),
                    );
                }
                Some(m)
            }
        };
        let ws_tls = if cfg.cloud_url.starts_with("https://") {
            Some(ws_tls_config(&cfg)?)
        } else {
            None
        };
        Ok(Self {
            token: Mutex::new(cfg.token.clone()),
            env: inner.env.clone(),
            cloud,
            ws_tls,
            target_clients,
            plain_client: target_client(true)?,
            target_limits,
            ordered_queues: Mutex::new(HashMap::new()),
            global: inner.global.clone(),
            channel_limit: cfg
                .max_concurrent_requests
                .map(|n| Arc::new(Semaphore::new(n))),
            live: Mutex::new(Live::new()),
            history: Mutex::new(history),
            tokens,
            deliveries: TaskTracker::new(),
            enabled,
            paused: inner.paused.subscribe(),
            modules,
            queue_wake: tokio::sync::Notify::new(),
            finished: inner.finished.clone(),
            cfg,
        })
    }

    pub(crate) fn snapshot(&self) -> ChannelStatus {
        self.live.lock().snapshot(&self.cfg.key, &self.cfg.channel)
    }

    pub(crate) fn running(&self) -> bool {
        *self.enabled.borrow() && !*self.paused.borrow()
    }

    /// Ends this channel (removal or replacement).
    pub(crate) async fn stop(&self, grace: Duration) {
        self.tokens.intake.cancel();
        self.deliveries.close();
        if tokio::time::timeout(grace, self.deliveries.wait())
            .await
            .is_err()
        {
            self.tokens.hard.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.deliveries.wait()).await;
        }
        self.tokens.drained.cancel();
        self.tokens.hard.cancel();
        self.live.lock().status.state = LinkState::Stopped;
    }

    /// Waits until running deliveries are settled (bounded), before a link is closed.
    pub(crate) async fn settled(&self) {
        let deadline = Instant::now() + PAUSE_GRACE;
        while !self.tokens.drained.is_cancelled()
            && self.live.lock().status.in_flight > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn set_state(&self, state: LinkState, error: Option<String>) {
        let mut l = self.live.lock();
        match error {
            Some(e) => l.status.fail(state, e),
            None => l.status.state = state,
        }
    }

    pub(crate) fn token(&self) -> String {
        self.token.lock().clone()
    }

    pub(crate) fn http_base(&self) -> &str {
        &self.cfg.cloud_url
    }

    pub(crate) fn common_headers(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        req = req.bearer_auth(self.token()).header(h::VERSION, "2");
        if let Some(id) = &self.cfg.connector_id {
            req = req.header(h::CONNECTOR_ID, id);
        }
        req
    }

    /// The subject of a delivery's log lines (see `outcome_log`).
    pub(crate) fn subject<'a>(&'a self, msg: &'a WireMessage, target: &'a str) -> Subject<'a> {
        Subject {
            channel: &self.cfg.channel,
            message_id: &msg.message_id,
            webhook_id: &msg.webhook_id,
            target,
        }
    }

    /// `GET /connect/status/{channel}`, ready to send.
    pub(crate) fn status_request(&self) -> reqwest::RequestBuilder {
        let url = format!("{}/connect/status/{}", self.http_base(), self.cfg.channel);
        self.common_headers(self.cloud.get(url))
            .timeout(self.cfg.connection_timeout.max(Duration::from_secs(1)))
    }

    /// Settles one message; ACKs fall back to `POST /connect/ack` when the socket is gone.
    pub(crate) async fn settle(&self, link: &Link, message_id: &str, action: Settle) {
        if matches!(action, Settle::Extend) && !link.v2 {
            return;
        }
        if let Some(ws) = &link.ws {
            let frame = match &action {
                Settle::Ack => ClientFrame::Ack {
                    message_id: message_id.to_owned(),
                },
                Settle::Nack { retry, error } => ClientFrame::Nack {
                    message_id: message_id.to_owned(),
                    retry: *retry,
                    error: link.v2.then(|| error.clone()),
                },
                Settle::Extend => ClientFrame::Extend {
                    message_id: message_id.to_owned(),
                },
            };
            let text = serde_json::to_string(&frame).unwrap_or_default();
            if ws.send(Message::Text(text.into())).is_ok() || !matches!(action, Settle::Ack) {
                return;
            }
        }
        let mut q: Vec<(&str, String)> = vec![("message_id", message_id.to_owned())];
        match &action {
            Settle::Ack => {}
            Settle::Nack { retry, error } => {
                q.push(("status", "nack".into()));
                q.push(("retry", retry.to_string()));
                if link.v2 {
                    q.push(("error", error.clone()));
                }
            }
            Settle::Extend => q.push(("status", "extend".into())),
        }
        for attempt in 0..3u32 {
            let req = self
                .common_headers(self.cloud.post(format!("{}/connect/ack", self.http_base())))
                .header(h::CONNECTION_ID, &link.connection_id)
                .query(&q)
                .timeout(Duration::from_secs(10));
            match req.send().await {
                Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => {
                    if !r.status().is_success() {
                        tracing::debug!(message_id, status = %r.status(), "settle not applied");
                    }
                    return;
                }
                Ok(r) => tracing::warn!(message_id, status = %r.status(), "settle failed"),
                Err(e) => tracing::warn!(message_id, error = %e, "settle failed"),
            }
            tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt + 1))).await;
        }
    }

    /// Sets the final outcome of history entry `seq` with `f` and tells
    /// [`subscribe_finished`](crate::EngineHandle::subscribe_finished) receivers.
    pub(crate) fn finish(&self, seq: u64, f: impl FnOnce(&mut Entry)) {
        let mut h = self.history.lock();
        let mut done = None;
        h.update(seq, |e| {
            f(e);
            done = Some(crate::handle::Finished {
                key: self.cfg.key.clone(),
                summary: e.summary.clone(),
                error: e
                    .attempts
                    .last()
                    .filter(|a| a.status.is_none())
                    .and_then(|a| a.error.clone()),
            });
        });
        drop(h);
        if let Some(d) = done {
            // No receiver is the common case (the app and `run` do not listen).
            let _ = self.finished.send(d);
        }
    }

    /// Records a received message in the history; returns its sequence number.
    pub(crate) fn remember(
        &self,
        msg: &WireMessage,
        target_key: Option<String>,
        url: Option<String>,
    ) -> u64 {
        let (body, _) = forward::body_of(msg);
        let mut h = self.history.lock();
        let seq = h.next_seq();
        h.push(Entry::received(seq, msg, body, target_key, url));
        seq
    }
}

/// Reads the channel's queue at the cloud every few seconds while connected, and at once when
/// woken (on connecting, or after its dead letters changed).
pub(crate) async fn queue_poller(ctx: Arc<ChannelCtx>) {
    loop {
        tokio::select! {
            _ = ctx.tokens.intake.cancelled() => return,
            _ = tokio::time::sleep(QUEUE_POLL) => {}
            _ = ctx.queue_wake.notified() => {}
        }
        let state = ctx.live.lock().status.state;
        if !matches!(state, LinkState::Connected | LinkState::Degraded) {
            continue;
        }
        let Ok(status) = crate::cloud_status::read(ctx.status_request()).await else {
            continue;
        };
        let depth = status.queue_depth();
        ctx.live.lock().status.queue = Some(depth);
    }
}
