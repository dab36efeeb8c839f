//! The running engine: one reconnect loop per channel, the transports, delivery tasks and
//! settlement, the history and replay, and the handle used to control it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use connect_protocol::frames::{ClientFrame, ParsedServerFrame, ServerFrame};
use connect_protocol::headers as h;
use connect_protocol::message::WireMessage;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{
    ChannelState, ChannelStatus, EventDetail, EventSummary, Outcome, ReplayRequest, Transport,
};
use crate::cloud_status::StatusError;
use crate::config::{ChannelConfig, ConnectorConfig, Protocol, Target};
use crate::forward::{self, Verdict};
use crate::history::{Entry, History};
use crate::modules::Modules;
use crate::outcome_log::Subject;
use crate::sse::SseParser;
use crate::status::Live;

/// Why a poll answer without a protocol version ends the long-poll session.
const UNMARKED_POLL: &str = "the poll answer names no protocol version although /connect/status \
     did; nothing from it was forwarded";

/// Default grace period for in-flight deliveries on shutdown.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Largest accepted WebSocket message / SSE line / poll body (§11.1).
const MAX_MESSAGE: usize = 256 << 20;
/// Connection failures before `auto` falls back to the next transport.
const AUTO_FALLBACK_AFTER: u32 = 3;
/// How long `auto` stays on a fallback transport before trying WebSocket again.
const AUTO_RETRY_BETTER: Duration = Duration::from_secs(600);
/// How long a pause or disconnect waits for running deliveries before closing the link.
const PAUSE_GRACE: Duration = Duration::from_secs(10);
/// How often the queue depth is read from `/connect/status` while connected.
const QUEUE_POLL: Duration = Duration::from_secs(5);
/// How often `token_ref` is re-read after a 4005, waiting for the new token.
const TOKEN_WATCH: Duration = Duration::from_secs(5);

/// Start-up or control failure (bad TLS files, unknown channel, ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// Entry point.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Starts every enabled channel. Must be called inside a tokio runtime.
    pub fn start(config: ConnectorConfig) -> Result<EngineHandle, EngineError> {
        let (paused, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            global: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            env: config.env.clone(),
            channels: Mutex::new(Vec::new()),
            paused,
            tokens: Tokens::new(),
            loops: TaskTracker::new(),
            history_size: AtomicUsize::new(config.history_size),
            carried: Mutex::new(HashMap::new()),
        });
        let handle = EngineHandle { inner };
        for ch in config.channels {
            handle.add_channel(ch)?;
        }
        Ok(handle)
    }
}

#[derive(Debug)]
struct Inner {
    global: Arc<Semaphore>,
    env: BTreeMap<String, String>,
    channels: Mutex<Vec<Arc<ChannelCtx>>>,
    paused: watch::Sender<bool>,
    tokens: Tokens,
    loops: TaskTracker,
    history_size: AtomicUsize,
    /// Channels taken over from a previous process ([`EngineHandle::carry_in`]), by key, until
    /// the channel is added.
    carried: Mutex<HashMap<String, CarriedChannel>>,
}

/// What one process hands to the next when it replaces itself (the desktop app does in light
/// mode): the pause switch and, per channel, the history, the counters and the last queue depth
/// read at the cloud (shown until the next reading, so a tray does not fall back to its own
/// dead-letter count while paused or reconnecting). Live state (links,
/// leases, running deliveries, the charts' time series) is not carried: the old process settles
/// its deliveries before it ends and the new one connects afresh.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Carried {
    pub paused: bool,
    pub channels: Vec<CarriedChannel>,
}

/// One channel of [`Carried`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CarriedChannel {
    pub key: String,
    pub counters: crate::api::Counters,
    pub next_seq: u64,
    /// Oldest first.
    pub entries: Vec<Entry>,
    /// The last reading of the channel's queue at the cloud, if any (absent in files written
    /// before it was carried).
    #[serde(default)]
    pub queue: Option<crate::api::QueueDepth>,
}

/// Controls a running engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl EngineHandle {
    fn channel(&self, key: &str) -> Result<Arc<ChannelCtx>, EngineError> {
        self.inner
            .channels
            .lock()
            .iter()
            .find(|c| c.cfg.key == key)
            .cloned()
            .ok_or_else(|| EngineError(format!("unknown channel {key:?}")))
    }

    /// A snapshot of every channel.
    pub fn status(&self) -> Vec<ChannelStatus> {
        self.inner
            .channels
            .lock()
            .iter()
            .map(|c| c.snapshot())
            .collect()
    }

    /// Starts a channel; one with the same key is replaced (its history is kept).
    pub fn add_channel(&self, cfg: ChannelConfig) -> Result<(), EngineError> {
        if self.inner.tokens.intake.is_cancelled() {
            return Err(EngineError("the engine is shutting down".into()));
        }
        let previous = {
            let list = self.inner.channels.lock();
            list.iter().find(|c| c.cfg.key == cfg.key).cloned()
        };
        let carried = match previous {
            Some(_) => None,
            None => self.inner.carried.lock().remove(&cfg.key),
        };
        let capacity = self.inner.history_size.load(Ordering::Relaxed);
        let (history, carried) = match (&previous, carried) {
            (Some(p), _) => (
                std::mem::replace(&mut *p.history.lock(), History::new(0)),
                None,
            ),
            (None, Some(c)) => (
                History::restore(capacity, c.entries, c.next_seq),
                Some((c.counters, c.queue)),
            ),
            (None, None) => (History::new(capacity), None),
        };
        let ctx = Arc::new(ChannelCtx::new(cfg, &self.inner, history)?);
        if let Some((counters, queue)) = carried {
            let mut live = ctx.live.lock();
            live.status.counters = counters;
            live.status.queue = queue;
        }
        {
            let mut list = self.inner.channels.lock();
            list.retain(|c| c.cfg.key != ctx.cfg.key);
            list.push(ctx.clone());
        }
        if let Some(p) = previous {
            self.inner
                .loops
                .spawn(async move { p.stop(DEFAULT_GRACE).await });
        }
        self.inner.loops.spawn(channel_loop(ctx.clone()));
        self.inner.loops.spawn(queue_poller(ctx));
        Ok(())
    }

    /// Everything [`Carried`] holds, taken out of this engine (its histories are left empty).
    /// Meant for after [`Self::shutdown`], when nothing changes them any more.
    pub fn carry_out(&self) -> Carried {
        let channels = self.inner.channels.lock().clone();
        Carried {
            paused: self.is_paused(),
            channels: channels
                .iter()
                .map(|c| {
                    let (entries, next_seq) = c.history.lock().take_all();
                    let live = c.live.lock();
                    CarriedChannel {
                        key: c.cfg.key.clone(),
                        counters: live.status.counters.clone(),
                        next_seq,
                        entries,
                        queue: live.status.queue.clone(),
                    }
                })
                .collect(),
        }
    }

    /// Takes over what a previous process carried out: the pause switch at once, each
    /// channel's history and counters when a channel with its key is added. Call before adding
    /// channels; a key that is never added is dropped with the engine.
    pub fn carry_in(&self, carried: Carried) {
        self.set_paused(carried.paused);
        let mut stash = self.inner.carried.lock();
        for c in carried.channels {
            stash.insert(c.key.clone(), c);
        }
    }

    /// Stops a channel: no new messages, running deliveries get `grace`, then it is dropped.
    pub async fn remove_channel(&self, key: &str, grace: Duration) {
        let removed = {
            let mut list = self.inner.channels.lock();
            let found = list.iter().position(|c| c.cfg.key == key);
            found.map(|i| list.remove(i))
        };
        if let Some(c) = removed {
            c.stop(grace).await;
        }
    }

    /// Reads the channel's queue at the cloud now rather than at the next tick (if connected):
    /// after its dead letters were replayed, deleted or purged, say.
    pub fn refresh_queue(&self, key: &str) -> Result<(), EngineError> {
        self.channel(key)?.queue_wake.notify_one();
        Ok(())
    }

    /// Connects (`true`) or disconnects (`false`) one channel; history and counters stay.
    pub fn set_channel_enabled(&self, key: &str, enabled: bool) -> Result<(), EngineError> {
        self.channel(key)?.enabled.send_replace(enabled);
        Ok(())
    }

    /// Pauses or resumes every channel: paused channels close their links after running
    /// deliveries finish, and messages wait at the cloud.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// Events kept per channel.
    pub fn set_history_size(&self, n: usize) {
        self.inner.history_size.store(n, Ordering::Relaxed);
        for c in self.inner.channels.lock().iter() {
            c.history.lock().set_capacity(n);
        }
    }

    /// The channel's history, newest first.
    pub fn events(&self, key: &str) -> Result<Vec<EventSummary>, EngineError> {
        Ok(self.channel(key)?.history.lock().summaries())
    }

    /// One event with its request and attempts.
    pub fn event(&self, key: &str, message_id: &str) -> Result<EventDetail, EngineError> {
        self.channel(key)?
            .history
            .lock()
            .get(message_id)
            .map(Entry::detail)
            .ok_or_else(|| EngineError(format!("no event {message_id:?} in the history")))
    }

    /// Every channel key with its events, newest first (for lookups across channels).
    pub fn find_event(&self, message_id: &str) -> Option<(String, EventDetail)> {
        self.inner.channels.lock().iter().find_map(|c| {
            c.history
                .lock()
                .get(message_id)
                .map(|e| (c.cfg.key.clone(), e.detail()))
        })
    }

    /// Re-sends an event to its target or another URL, optionally edited. The replay is a new
    /// event (`replay_of` set); nothing is ACKed or NACKed at the cloud.
    pub async fn replay(&self, req: ReplayRequest) -> Result<EventDetail, EngineError> {
        self.channel(&req.key)?.replay(req).await
    }

    /// Stops taking messages, lets running deliveries finish for up to `grace`, NACKs
    /// (`retry=true`) what is still running, then closes the connections (WebSocket 1000).
    pub async fn shutdown(&self, grace: Duration) {
        let tokens = &self.inner.tokens;
        tokens.intake.cancel();
        let channels: Vec<_> = self.inner.channels.lock().clone();
        let all = futures::future::join_all(channels.iter().map(|c| {
            c.deliveries.close();
            c.deliveries.wait()
        }));
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("grace period over; NACKing unfinished deliveries");
            tokens.hard.cancel();
            let again = futures::future::join_all(channels.iter().map(|c| c.deliveries.wait()));
            let _ = tokio::time::timeout(Duration::from_secs(5), again).await;
        }
        tokens.drained.cancel();
        self.inner.loops.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.loops.wait()).await;
        tokens.hard.cancel();
        for c in &channels {
            c.live.lock().status.state = ChannelState::Stopped;
        }
    }
}

#[derive(Clone, Debug)]
struct Tokens {
    /// Cancelled first: stop reading new messages.
    intake: CancellationToken,
    /// Cancelled once in-flight deliveries are settled (or the grace ran out): close links.
    drained: CancellationToken,
    /// Abort deliveries still running (they are NACKed).
    hard: CancellationToken,
}

impl Tokens {
    fn new() -> Self {
        Self {
            intake: CancellationToken::new(),
            drained: CancellationToken::new(),
            hard: CancellationToken::new(),
        }
    }

    fn child(&self) -> Self {
        Self {
            intake: self.intake.child_token(),
            drained: self.drained.child_token(),
            hard: self.hard.child_token(),
        }
    }
}

/// Feeds the one-at-a-time worker of an `ordered` target.
type OrderedQueue = mpsc::UnboundedSender<(Arc<Link>, WireMessage, u64)>;

#[derive(Debug)]
struct ChannelCtx {
    cfg: ChannelConfig,
    token: Mutex<String>,
    env: BTreeMap<String, String>,
    cloud: reqwest::Client,
    /// TLS for `wss://` links (an `https://` cloud_url), with the HTTP client's settings.
    ws_tls: Option<Arc<rustls::ClientConfig>>,
    target_clients: HashMap<String, reqwest::Client>,
    /// For replays to another URL.
    plain_client: reqwest::Client,
    target_limits: HashMap<String, Arc<Semaphore>>,
    ordered_queues: Mutex<HashMap<String, OrderedQueue>>,
    global: Arc<Semaphore>,
    channel_limit: Option<Arc<Semaphore>>,
    live: Mutex<Live>,
    history: Mutex<History>,
    tokens: Tokens,
    deliveries: TaskTracker,
    enabled: watch::Sender<bool>,
    paused: watch::Receiver<bool>,
    modules: Option<Arc<Modules>>,
    /// Wakes the queue poller before its next tick: on connecting, and when the channel's
    /// dead letters were changed through the admin API ([`EngineHandle::refresh_queue`]).
    queue_wake: tokio::sync::Notify,
}

/// The connection a message arrived on, used to settle it.
#[derive(Debug)]
struct Link {
    connection_id: String,
    ws: Option<mpsc::UnboundedSender<Message>>,
    v2: bool,
    ack_timeout: Duration,
}

#[derive(Debug)]
enum Settle {
    Ack,
    Nack { retry: bool, error: String },
    Extend,
}

#[derive(Debug)]
enum ConnError {
    Auth(String),
    /// Long-poll against a protocol v1 server, whose polls cannot be settled (§11.1); found
    /// from its status answer, before polling.
    V1LongPoll,
    Other(String),
}

#[derive(Debug)]
enum End {
    /// Intake stopped (shutdown, pause, disconnect, removal).
    Draining,
    /// The server closed (WebSocket close code, or SSE terminal error mapped to one).
    Closed(Option<u16>, String),
    HeartbeatTimeout,
}

struct Session {
    connected: bool,
    result: Result<End, ConnError>,
}

/// The rustls settings of `wss://` links, matching the cloud HTTP client's: webpki roots plus
/// `ca_cert_path`, no verification when `verify_ssl` is false, the client certificate. The ring
/// provider is named explicitly (as reqwest does), so no process-wide default is needed even when
/// another crate enables a second rustls provider.
fn ws_tls_config(cfg: &ChannelConfig) -> Result<Arc<rustls::ClientConfig>, EngineError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError(format!("TLS: {e}")))?;
    let builder = if cfg.verify_ssl {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = &cfg.ca_cert_path {
            let err = |e: String| EngineError(format!("ca_cert_path {}: {e}", ca.display()));
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(e.to_string()))?;
            if certs.is_empty() {
                return Err(err("no certificate in the file".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| err(e.to_string()))?;
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
    let config = match (&cfg.client_cert_path, &cfg.client_key_path) {
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_file_iter(c)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| EngineError(format!("{}: {e}", c.display())))?;
            let key = PrivateKeyDer::from_pem_file(k)
                .map_err(|e| EngineError(format!("{}: {e}", k.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| EngineError(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `verify_ssl = false`: any certificate is accepted (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The proxy for the cloud (CONFIG.md §7.2): `HTTPS_PROXY` for an `https` cloud_url, `HTTP_PROXY`
/// for `http` (upper or lower case), unless `NO_PROXY` names the host. Read from the injected
/// environment, then from the process's (as reqwest would).
fn cloud_proxy(cloud_url: &str, env: &BTreeMap<String, String>) -> Option<String> {
    let var = |k: &str| {
        env.get(k)
            .cloned()
            .or_else(|| std::env::var(k).ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let (scheme, rest) = cloud_url.split_once("://")?;
    let proxy = if scheme.eq_ignore_ascii_case("https") {
        var("HTTPS_PROXY").or_else(|| var("https_proxy"))
    } else {
        var("HTTP_PROXY").or_else(|| var("http_proxy"))
    }?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
    .to_ascii_lowercase();
    let no_proxy = var("NO_PROXY")
        .or_else(|| var("no_proxy"))
        .unwrap_or_default();
    let bypass = no_proxy.split(',').map(str::trim).any(|e| {
        let e = e.trim_start_matches('.').to_ascii_lowercase();
        e == "*" || (!e.is_empty() && (host == e || host.ends_with(&format!(".{e}"))))
    });
    (!bypass).then_some(proxy)
}

/// Opens a `CONNECT` tunnel to `host:port` through an `http://[user:pass@]host:port` proxy.
async fn connect_tunnel(
    proxy: &str,
    host: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = match proxy.split_once("://") {
        None => proxy,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => {
            return Err(format!(
                "proxy {proxy:?}: only http:// proxies carry WebSocket links"
            ));
        }
    };
    let rest = rest.split('/').next().unwrap_or_default();
    let (auth, addr) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("proxy {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = auth {
        let plain = percent_encoding::percent_decode_str(a).decode_utf8_lossy();
        let b64 = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
        head.push_str(&format!("Proxy-Authorization: Basic {b64}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("proxy {addr}: {e}"))?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() > 16 * 1024 {
            return Err(format!("proxy {addr}: answer head too long"));
        }
        match stream.read(&mut byte).await {
            Ok(1) => answer.push(byte[0]),
            Ok(_) => return Err(format!("proxy {addr} closed the connection")),
            Err(e) => return Err(format!("proxy {addr}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default().trim().to_owned();
    let ok = status
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2') && c.len() == 3);
    if !ok {
        return Err(format!("proxy {addr} refused the tunnel: {status}"));
    }
    Ok(stream)
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

fn target_client(verify_tls: bool) -> Result<reqwest::Client, EngineError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .danger_accept_invalid_certs(!verify_tls)
        .build()
        .map_err(|e| EngineError(format!("HTTP client: {e}")))
}

impl ChannelCtx {
    fn new(cfg: ChannelConfig, inner: &Inner, history: History) -> Result<Self, EngineError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connection_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(!cfg.verify_ssl);
        if let Some(ca) = &cfg.ca_cert_path {
            let pem = std::fs::read(ca)
                .map_err(|e| EngineError(format!("ca_cert_path {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| EngineError(format!("ca_cert_path {}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        if let (Some(c), Some(k)) = (&cfg.client_cert_path, &cfg.client_key_path) {
            let mut pem =
                std::fs::read(c).map_err(|e| EngineError(format!("{}: {e}", c.display())))?;
            pem.extend(std::fs::read(k).map_err(|e| EngineError(format!("{}: {e}", k.display())))?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| EngineError(format!("client certificate: {e}")))?;
            b = b.identity(id);
        }
        // The proxy is chosen here (from the injected environment first) rather than by reqwest
        // from the process environment, so that WebSocket links use the same one.
        b = b.no_proxy();
        if let Some(p) = cloud_proxy(&cfg.cloud_url, &inner.env) {
            let proxy =
                reqwest::Proxy::all(&p).map_err(|e| EngineError(format!("proxy {p:?}: {e}")))?;
            b = b.proxy(proxy);
        }
        let cloud = b
            .build()
            .map_err(|e| EngineError(format!("HTTP client: {e}")))?;
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
                let (m, warnings) = Modules::load(mode, &inner.env).map_err(EngineError)?;
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
            cfg,
        })
    }

    fn snapshot(&self) -> ChannelStatus {
        self.live.lock().snapshot(&self.cfg.key, &self.cfg.channel)
    }

    fn running(&self) -> bool {
        *self.enabled.borrow() && !*self.paused.borrow()
    }

    /// Ends this channel (removal or replacement).
    async fn stop(&self, grace: Duration) {
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
        self.live.lock().status.state = ChannelState::Stopped;
    }

    /// Waits until running deliveries are settled (bounded), before a link is closed.
    async fn settled(&self) {
        let deadline = Instant::now() + PAUSE_GRACE;
        while !self.tokens.drained.is_cancelled()
            && self.live.lock().status.in_flight > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn set_state(&self, state: ChannelState, error: Option<String>) {
        let mut l = self.live.lock();
        match error {
            Some(e) => l.status.fail(state, e),
            None => l.status.state = state,
        }
    }

    fn token(&self) -> String {
        self.token.lock().clone()
    }

    fn http_base(&self) -> &str {
        &self.cfg.cloud_url
    }

    fn common_headers(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req = req.bearer_auth(self.token()).header(h::VERSION, "2");
        if let Some(id) = &self.cfg.connector_id {
            req = req.header(h::CONNECTOR_ID, id);
        }
        req
    }

    /// The subject of a delivery's log lines (see `outcome_log`).
    fn subject<'a>(&'a self, msg: &'a WireMessage, target: &'a str) -> Subject<'a> {
        Subject {
            channel: &self.cfg.channel,
            message_id: &msg.message_id,
            webhook_id: &msg.webhook_id,
            target,
        }
    }

    /// `GET /connect/status/{channel}`, ready to send.
    fn status_request(&self) -> reqwest::RequestBuilder {
        let url = format!("{}/connect/status/{}", self.http_base(), self.cfg.channel);
        self.common_headers(self.cloud.get(url))
            .timeout(self.cfg.connection_timeout.max(Duration::from_secs(1)))
    }

    /// Settles one message; ACKs fall back to `POST /connect/ack` when the socket is gone.
    async fn settle(&self, link: &Link, message_id: &str, action: Settle) {
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

    /// Records a received message in the history; returns its sequence number.
    fn remember(&self, msg: &WireMessage, target_key: Option<String>, url: Option<String>) -> u64 {
        let (body, _) = forward::body_of(msg);
        let mut h = self.history.lock();
        let seq = h.next_seq();
        h.push(Entry::received(seq, msg, body, target_key, url));
        seq
    }

    /// Takes one wire message from any transport.
    fn accept(self: &Arc<Self>, link: &Arc<Link>, mut msg: WireMessage) {
        // A v1 server does not name the channel in its messages; `X-Webhook-Channel` still must.
        if msg.channel.is_none() {
            msg.channel = Some(self.cfg.channel.clone());
        }
        {
            let mut l = self.live.lock();
            l.status.counters.received += 1;
            l.status.last_event_at = Some(SystemTime::now());
        }
        if msg.message_id.is_empty() {
            return;
        }
        if let Some(modules) = &self.modules {
            let seq = self.remember(&msg, None, None);
            let ctx = self.clone();
            let link = link.clone();
            let modules = modules.clone();
            self.deliveries
                .spawn(async move { ctx.run_modules(&link, &msg, seq, &modules).await });
            return;
        }
        let selected = if msg.webhook_id.is_empty() {
            None
        } else {
            forward::select_target(&self.cfg.targets, self.cfg.default_target.as_ref(), &msg)
                .map(|(k, t)| (k, t.clone()))
        };
        let Some((key, target)) = selected else {
            let error = if msg.webhook_id.is_empty() {
                "missing webhook_id"
            } else {
                "no target for webhook_id"
            };
            let seq = self.remember(&msg, None, None);
            let ctx = self.clone();
            let link = link.clone();
            self.deliveries.spawn(async move {
                {
                    let mut l = ctx.live.lock();
                    l.status.counters.failed += 1;
                    l.status.counters.dead_lettered += 1;
                }
                ctx.history.lock().update(seq, |e| {
                    e.summary.outcome = Outcome::DeadLetter;
                    e.push_attempts(vec![crate::api::Attempt {
                        at: crate::history::rfc3339(SystemTime::now()),
                        target_url: String::new(),
                        status: None,
                        duration_ms: 0.0,
                        response_headers: Vec::new(),
                        response_body_excerpt: String::new(),
                        error: Some(error.to_owned()),
                    }]);
                });
                ctx.settle(
                    &link,
                    &msg.message_id,
                    Settle::Nack {
                        retry: false,
                        error: error.to_owned(),
                    },
                )
                .await;
                ctx.subject(&msg, "-").dead_lettered(error);
            });
            return;
        };
        let seq = self.remember(
            &msg,
            Some(key.clone()),
            Some(forward::url_for(&msg, &target)),
        );
        if target.ordered {
            let tx = {
                let mut q = self.ordered_queues.lock();
                q.entry(key.clone())
                    .or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        self.deliveries.spawn(ordered_worker(
                            self.clone(),
                            key.clone(),
                            target.clone(),
                            rx,
                        ));
                        tx
                    })
                    .clone()
            };
            let _ = tx.send((link.clone(), msg, seq));
            return;
        }
        let ctx = self.clone();
        let link = link.clone();
        self.deliveries
            .spawn(async move { ctx.process(link, msg, key, target, false, seq).await });
    }

    /// Module mode: runs the local webhooks.json module of the message, then settles it.
    async fn run_modules(&self, link: &Link, msg: &WireMessage, seq: u64, modules: &Modules) {
        let started = Instant::now();
        self.live.lock().status.in_flight += 1;
        let result = modules.handle(msg).await;
        let elapsed = started.elapsed();
        let (action, outcome, error) = match &result {
            Ok(()) => (Settle::Ack, Outcome::Delivered, None),
            Err(crate::modules::ModuleError::Permanent(e)) => (
                Settle::Nack {
                    retry: false,
                    error: e.clone(),
                },
                Outcome::DeadLetter,
                Some(e.clone()),
            ),
            Err(crate::modules::ModuleError::Transient(e)) => (
                Settle::Nack {
                    retry: true,
                    error: e.clone(),
                },
                Outcome::Retry,
                Some(e.clone()),
            ),
        };
        self.settle(link, &msg.message_id, action).await;
        match &result {
            Ok(()) => {}
            Err(crate::modules::ModuleError::Permanent(e)) => {
                self.subject(msg, "module").dead_lettered(e);
            }
            Err(crate::modules::ModuleError::Transient(e)) => {
                self.subject(msg, "module").handed_back(e);
            }
        }
        {
            let mut l = self.live.lock();
            l.status.in_flight -= 1;
            match outcome {
                Outcome::Delivered => l.status.counters.delivered += 1,
                Outcome::DeadLetter => {
                    l.status.counters.failed += 1;
                    l.status.counters.dead_lettered += 1;
                }
                _ => l.status.counters.failed += 1,
            }
            l.finished(elapsed, result.is_ok());
        }
        self.history.lock().update(seq, |e| {
            e.summary.outcome = outcome;
            e.summary.duration_ms = elapsed.as_secs_f64() * 1000.0;
            e.summary.attempts = 1;
            e.summary.target_url = Some(format!("module:{}", modules.describe(msg)));
            e.push_attempts(vec![crate::api::Attempt {
                at: crate::history::rfc3339(SystemTime::now()),
                target_url: format!("module:{}", modules.describe(msg)),
                status: None,
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                response_headers: Vec::new(),
                response_body_excerpt: String::new(),
                error,
            }]);
        });
    }

    async fn process(
        self: Arc<Self>,
        link: Arc<Link>,
        msg: WireMessage,
        key: String,
        target: Target,
        ordered: bool,
        seq: u64,
    ) {
        self.live.lock().status.in_flight += 1;
        let hard = self.tokens.hard.clone();
        tokio::select! {
            _ = hard.cancelled() => {
                // The grace ran out: hand the message back now rather than at the ack timeout.
                self.settle(&link, &msg.message_id, Settle::Nack {
                    retry: true,
                    error: "connector shutting down".into(),
                }).await;
                self.history.lock().update(seq, |e| e.summary.outcome = Outcome::Retry);
            }
            _ = self.process_inner(&link, &msg, &key, &target, ordered, seq) => {}
        }
        self.live.lock().status.in_flight -= 1;
    }

    async fn process_inner(
        &self,
        link: &Link,
        msg: &WireMessage,
        key: &str,
        target: &Target,
        ordered: bool,
        seq: u64,
    ) {
        let received = Instant::now();
        // Leases are kept while waiting for a permit too.
        let work = async {
            let _g = self.global.acquire().await;
            let _c = match &self.channel_limit {
                Some(s) => Some(s.acquire().await),
                None => None,
            };
            let _t = match self.target_limits.get(key) {
                Some(s) => Some(s.acquire().await),
                None => None,
            };
            let Some(client) = self.target_clients.get(key) else {
                return forward::Delivery {
                    verdict: Verdict::Reject("no target for webhook_id".into()),
                    attempts: 0,
                    response: forward::Response::default(),
                    duration: Duration::ZERO,
                    log: Vec::new(),
                    brief: "no target for webhook_id".into(),
                };
            };
            let subject = self.subject(msg, key);
            let on_retry = |note: &forward::RetryNote| {
                self.live.lock().status.counters.retried += 1;
                subject.retrying(note);
            };
            if !ordered {
                return forward::deliver(client, msg, target, on_retry).await;
            }
            // Ordered: retry locally until success, a permanent failure or expiry.
            let mut round = 1u32;
            let mut log = Vec::new();
            loop {
                let mut d = forward::deliver(client, msg, target, on_retry).await;
                log.append(&mut d.log);
                let expired = msg.expires_at.as_ref().is_some_and(|e| e.0 <= chrono_now());
                if !matches!(d.verdict, Verdict::Retry(_))
                    || expired
                    || self.tokens.intake.is_cancelled()
                {
                    let keep = log.len().saturating_sub(crate::history::ATTEMPTS_CAP);
                    log.drain(..keep);
                    d.log = log;
                    return d;
                }
                self.live.lock().status.counters.retried += 1;
                let wait = forward::retry_wait(target, round, None);
                subject.retrying_ordered(round, &d.brief, wait);
                tokio::time::sleep(wait).await;
                round = round.saturating_add(1);
            }
        };
        let every = (link.ack_timeout / 3).max(Duration::from_secs(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        let delivery = loop {
            tokio::select! {
                d = &mut work => break d,
                _ = ticker.tick(), if link.v2 => {
                    self.settle(link, &msg.message_id, Settle::Extend).await;
                }
            }
        };
        let elapsed = received.elapsed();
        let action = match &delivery.verdict {
            Verdict::Ack => Settle::Ack,
            Verdict::Reject(e) => Settle::Nack {
                retry: false,
                error: e.clone(),
            },
            Verdict::Retry(e) => Settle::Nack {
                retry: true,
                error: e.clone(),
            },
        };
        self.settle(link, &msg.message_id, action).await;
        match &delivery.verdict {
            Verdict::Ack => {}
            Verdict::Reject(_) => self.subject(msg, key).dead_lettered(&delivery.brief),
            Verdict::Retry(_) => self.subject(msg, key).handed_back(&delivery.brief),
        }
        let outcome = match delivery.verdict {
            Verdict::Ack => Outcome::Delivered,
            Verdict::Reject(_) => Outcome::DeadLetter,
            Verdict::Retry(_) => Outcome::Retry,
        };
        {
            let mut l = self.live.lock();
            match outcome {
                Outcome::Delivered => l.status.counters.delivered += 1,
                Outcome::DeadLetter => {
                    l.status.counters.failed += 1;
                    l.status.counters.dead_lettered += 1;
                }
                _ => l.status.counters.failed += 1,
            }
            l.finished(elapsed, outcome == Outcome::Delivered);
        }
        self.history.lock().update(seq, |e| {
            e.summary.outcome = outcome;
            e.summary.response_status = delivery.response.status;
            e.summary.duration_ms = elapsed.as_secs_f64() * 1000.0;
            e.summary.attempts = delivery.attempts;
            e.push_attempts(delivery.log);
        });
    }

    async fn replay(&self, req: ReplayRequest) -> Result<EventDetail, EngineError> {
        let (mut msg, body, target_key, truncated) = {
            let h = self.history.lock();
            let e = h.get(&req.message_id).ok_or_else(|| {
                EngineError(format!("no event {:?} in the history", req.message_id))
            })?;
            (
                e.wire.clone(),
                e.body.clone(),
                e.target_key.clone(),
                e.truncated(),
            )
        };
        let body = match &req.body_base64 {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| EngineError(format!("body_base64: {e}")))?,
            None if truncated => {
                return Err(EngineError(
                    "the history kept only the first MiB of this body: replay it with an edited body".into(),
                ));
            }
            None => body,
        };
        if let Some(headers) = req.headers {
            msg.raw_headers = Some(headers);
        }
        msg.body_b64 = Some(base64::engine::general_purpose::STANDARD.encode(&body));
        let configured = target_key.as_deref().and_then(|k| {
            if k == "*default*" {
                self.cfg.default_target.as_ref()
            } else {
                self.cfg.targets.get(k)
            }
        });
        let (mut target, client) = match (&req.target_url, configured) {
            (Some(url), base) => {
                let mut t = match base {
                    Some(b) => b.clone(),
                    None => Target::from_url(url).map_err(|e| EngineError(e.0))?,
                };
                t.url = url.clone();
                t.append_path = false;
                t.append_query = false;
                t.path_rewrite = None;
                (t, self.plain_client.clone())
            }
            (None, Some(t)) => {
                let c = target_key
                    .as_deref()
                    .and_then(|k| self.target_clients.get(k))
                    .cloned()
                    .unwrap_or_else(|| self.plain_client.clone());
                (t.clone(), c)
            }
            (None, None) => {
                return Err(EngineError(
                    "this event had no target: give a target URL to replay it to".into(),
                ));
            }
        };
        target.retry_enabled = false;
        let seq;
        let replay_id;
        {
            let mut h = self.history.lock();
            seq = h.next_seq();
            replay_id = format!("{}.r{seq}", req.message_id);
            let mut e = Entry::received(
                seq,
                &msg,
                body,
                target_key,
                Some(forward::url_for(&msg, &target)),
            );
            e.summary.message_id = replay_id.clone();
            e.summary.replay_of = Some(req.message_id.clone());
            h.push(e);
        }
        let d = forward::deliver(&client, &msg, &target, |_| {}).await;
        let outcome = match d.verdict {
            Verdict::Ack => Outcome::Delivered,
            Verdict::Reject(_) => Outcome::Failed,
            Verdict::Retry(_) => Outcome::Retry,
        };
        let mut h = self.history.lock();
        h.update(seq, |e| {
            e.summary.outcome = outcome;
            e.summary.response_status = d.response.status;
            e.summary.duration_ms = d.duration.as_secs_f64() * 1000.0;
            e.summary.attempts = d.attempts;
            e.push_attempts(d.log);
        });
        h.get(&replay_id)
            .map(Entry::detail)
            .ok_or_else(|| EngineError("the history is too small to keep the replay".into()))
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

async fn ordered_worker(
    ctx: Arc<ChannelCtx>,
    key: String,
    target: Target,
    mut rx: mpsc::UnboundedReceiver<(Arc<Link>, WireMessage, u64)>,
) {
    loop {
        let next = tokio::select! {
            _ = ctx.tokens.intake.cancelled() => None,
            n = rx.recv() => n,
        };
        let Some((link, msg, seq)) = next else { break };
        ctx.clone()
            .process(link, msg, key.clone(), target.clone(), true, seq)
            .await;
    }
    // Stopping: hand back what is still queued here.
    rx.close();
    while let Some((link, msg, seq)) = rx.recv().await {
        ctx.settle(
            &link,
            &msg.message_id,
            Settle::Nack {
                retry: true,
                error: "connector shutting down".into(),
            },
        )
        .await;
        ctx.history
            .lock()
            .update(seq, |e| e.summary.outcome = Outcome::Retry);
    }
}

/// Reads the channel's queue at the cloud every few seconds while connected, and at once when
/// woken (on connecting, or after its dead letters changed).
async fn queue_poller(ctx: Arc<ChannelCtx>) {
    loop {
        tokio::select! {
            _ = ctx.tokens.intake.cancelled() => return,
            _ = tokio::time::sleep(QUEUE_POLL) => {}
            _ = ctx.queue_wake.notified() => {}
        }
        let state = ctx.live.lock().status.state;
        if !matches!(state, ChannelState::Connected | ChannelState::Degraded) {
            continue;
        }
        let Ok(status) = crate::cloud_status::read(ctx.status_request()).await else {
            continue;
        };
        let depth = status.queue_depth();
        ctx.live.lock().status.queue = Some(depth);
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.8..1.2))
}

fn name(p: Protocol) -> Transport {
    match p {
        Protocol::WebSocket | Protocol::Auto => Transport::Websocket,
        Protocol::Sse => Transport::Sse,
        Protocol::LongPoll => Transport::LongPoll,
    }
}

/// Waits while the channel is paused or disconnected; false when the channel is ending.
async fn wait_until_running(ctx: &ChannelCtx) -> bool {
    let mut enabled = ctx.enabled.subscribe();
    let mut paused = ctx.paused.clone();
    loop {
        if ctx.tokens.intake.is_cancelled() {
            return false;
        }
        if ctx.running() {
            return true;
        }
        let state = if *enabled.borrow_and_update() {
            ChannelState::Paused
        } else {
            ChannelState::Disconnected
        };
        paused.borrow_and_update();
        ctx.live.lock().status.idle(state);
        tokio::select! {
            _ = ctx.tokens.intake.cancelled() => return false,
            _ = enabled.changed() => {}
            _ = paused.changed() => {}
        }
    }
}

/// A token cancelled when the channel ends or is paused / disconnected.
fn session_stop(ctx: &ChannelCtx) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = ctx.tokens.intake.child_token();
    let mut enabled = ctx.enabled.subscribe();
    let mut paused = ctx.paused.clone();
    let s = stop.clone();
    let watcher = tokio::spawn(async move {
        loop {
            if !*enabled.borrow_and_update() || *paused.borrow_and_update() {
                s.cancel();
                return;
            }
            tokio::select! {
                _ = s.cancelled() => return,
                r = enabled.changed() => if r.is_err() { return },
                r = paused.changed() => if r.is_err() { return },
            }
        }
    });
    (stop, watcher)
}

async fn channel_loop(ctx: Arc<ChannelCtx>) {
    let backoff = ctx.cfg.backoff.clone();
    let mut delay = backoff.initial;
    let auto = ctx.cfg.protocol == Protocol::Auto;
    let ladder = [Protocol::WebSocket, Protocol::Sse, Protocol::LongPoll];
    let mut rung = 0usize;
    let mut rung_failures = 0u32;
    let mut fell_back_at: Option<Instant> = None;
    let mut server_v1 = false;
    let mut failures = 0u32;
    loop {
        if !wait_until_running(&ctx).await {
            return;
        }
        if auto && rung > 0 && fell_back_at.is_some_and(|t| t.elapsed() >= AUTO_RETRY_BETTER) {
            rung = 0;
            rung_failures = 0;
            fell_back_at = None;
        }
        let proto = if auto { ladder[rung] } else { ctx.cfg.protocol };
        {
            let mut l = ctx.live.lock();
            l.status.connection_attempts += 1;
            l.status.transport = Some(name(proto));
            if l.status.state != ChannelState::AuthFailed {
                l.status.state = if failures >= 3 || rung > 0 {
                    ChannelState::Degraded
                } else {
                    ChannelState::Connecting
                };
            }
        }
        let (stop, watcher) = session_stop(&ctx);
        let session = match proto {
            Protocol::WebSocket | Protocol::Auto => run_ws(&ctx, &stop).await,
            Protocol::Sse => run_sse(&ctx, &stop).await,
            Protocol::LongPoll => run_poll(&ctx, &stop).await,
        };
        watcher.abort();
        if session.connected {
            delay = backoff.initial;
            failures = 0;
            rung_failures = 0;
            // `auto` never falls back to long-poll against a v1 server (§11.1).
            server_v1 = ctx.live.lock().status.server_protocol_version.is_none();
        }
        ctx.live.lock().status.connection_id = None;
        let mut wait = jitter(delay);
        match session.result {
            Ok(End::Draining) => {
                // Paused or disconnected: wait at the top of the loop. Ending: return there.
                delay = backoff.initial;
                continue;
            }
            Ok(End::Closed(Some(4005), reason)) => {
                if reload_token(&ctx) {
                    tracing::warn!(channel = %ctx.cfg.channel, "token revoked; reloaded it from token_ref");
                    wait = jitter(backoff.initial);
                } else if ctx.cfg.token_ref.is_some() {
                    // Never reconnect with the revoked token; switch over once its source
                    // holds another one (a rotation typed in after the close, CONFIG.md §8.2).
                    tracing::error!(channel = %ctx.cfg.channel, "token revoked (4005): waiting for a new token in token_ref");
                    ctx.set_state(
                        ChannelState::AuthFailed,
                        Some(format!(
                            "token revoked (4005 {reason}): waiting for a new token in token_ref"
                        )),
                    );
                    loop {
                        tokio::select! {
                            _ = ctx.tokens.intake.cancelled() => return,
                            _ = tokio::time::sleep(TOKEN_WATCH) => {}
                        }
                        if reload_token(&ctx) {
                            break;
                        }
                    }
                    tracing::info!(channel = %ctx.cfg.channel, "token_ref holds a new token; reconnecting");
                    wait = jitter(backoff.initial);
                } else {
                    tracing::error!(channel = %ctx.cfg.channel, "token revoked (4005): stopping this channel");
                    ctx.set_state(
                        ChannelState::AuthFailed,
                        Some(format!(
                            "token revoked (4005 {reason}): the channel is stopped until it is given the new token"
                        )),
                    );
                    ctx.tokens.intake.cancelled().await;
                    return;
                }
            }
            Ok(End::Closed(Some(4006), reason)) => {
                tracing::error!(channel = %ctx.cfg.channel, "channel removed (4006): stopping this channel");
                ctx.set_state(
                    ChannelState::Stopped,
                    Some(format!("channel removed: {reason}")),
                );
                ctx.tokens.intake.cancelled().await;
                return;
            }
            Ok(End::Closed(code, reason)) => {
                tracing::info!(channel = %ctx.cfg.channel, ?code, %reason, "connection closed; reconnecting");
                ctx.set_state(
                    ChannelState::Connecting,
                    Some(format!("closed {code:?}: {reason}")),
                );
                if code == Some(1001) {
                    wait = jitter(backoff.initial.min(Duration::from_secs(2)));
                }
            }
            Ok(End::HeartbeatTimeout) => {
                tracing::warn!(channel = %ctx.cfg.channel, "nothing from the cloud for heartbeat_timeout; reconnecting");
                ctx.set_state(ChannelState::Connecting, Some("heartbeat timeout".into()));
            }
            Err(ConnError::Auth(e)) if reload_token(&ctx) => {
                // Rotated while the link was down (no 4005 arrived): the new token is in the source.
                tracing::warn!(channel = %ctx.cfg.channel, error = %e, "token rejected; reloaded it from token_ref");
                ctx.set_state(
                    ChannelState::Connecting,
                    Some(format!("{e}; reloaded the token from token_ref")),
                );
                wait = jitter(backoff.initial);
            }
            Err(ConnError::Auth(e)) => {
                tracing::error!(channel = %ctx.cfg.channel, error = %e, "authentication failed; retrying slowly");
                ctx.set_state(ChannelState::AuthFailed, Some(e));
                wait = jitter(backoff.max);
            }
            Err(ConnError::V1LongPoll) => {
                server_v1 = true;
                failures += 1;
                let e = "long-poll refused: the cloud speaks protocol v1 (its /connect/status \
                         names no protocol version), whose long-poll cannot settle messages \
                         (ACKs answer 404); nothing was polled; use websocket, sse or auto";
                ctx.set_state(ChannelState::Degraded, Some(e.into()));
                if auto {
                    tracing::warn!(channel = %ctx.cfg.channel, "protocol v1 cloud: long-poll skipped, back to WebSocket");
                    rung = 0;
                    rung_failures = 0;
                    fell_back_at = None;
                } else {
                    tracing::error!(channel = %ctx.cfg.channel, "{e}");
                    wait = jitter(backoff.max);
                }
            }
            Err(ConnError::Other(e)) => {
                tracing::warn!(channel = %ctx.cfg.channel, error = %e, "connection failed");
                failures += 1;
                rung_failures += 1;
                ctx.set_state(
                    if failures >= 3 {
                        ChannelState::Degraded
                    } else {
                        ChannelState::Connecting
                    },
                    Some(e),
                );
                if auto && rung_failures >= AUTO_FALLBACK_AFTER {
                    let max_rung = if server_v1 { 1 } else { 2 };
                    if rung < max_rung {
                        rung += 1;
                        rung_failures = 0;
                        fell_back_at = Some(Instant::now());
                        tracing::warn!(channel = %ctx.cfg.channel, transport = ?name(ladder[rung]), "falling back");
                    }
                }
            }
        }
        if !session.connected {
            delay = delay.mul_f64(backoff.multiplier).min(backoff.max);
        }
        tokio::select! {
            _ = ctx.tokens.intake.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Re-reads `token_ref`; true when it now gives another token than the one in use (which is
/// then used). False without a `token_ref`, when it is unchanged or cannot be read.
fn reload_token(ctx: &ChannelCtx) -> bool {
    let Some(r) = ctx.cfg.token_ref.as_deref() else {
        return false;
    };
    match crate::config::resolve_token_ref(r, &ctx.env, &ctx.cfg.cloud_url, &ctx.cfg.channel) {
        Ok(t) if t != ctx.token() => {
            *ctx.token.lock() = t;
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(channel = %ctx.cfg.channel, error = %e, "re-reading token_ref failed");
            false
        }
    }
}

fn connected(ctx: &ChannelCtx, link: &Link, version: Option<u32>) {
    {
        let mut l = ctx.live.lock();
        l.status.connected();
        l.status.connection_id = Some(link.connection_id.clone());
        l.status.server_protocol_version = version.or(link.v2.then_some(2));
    }
    ctx.queue_wake.notify_one();
}

pub(crate) fn is_v2(headers: &http::HeaderMap) -> bool {
    headers
        .get(h::VERSION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|v| v >= 2)
}

async fn run_ws(ctx: &Arc<ChannelCtx>, stop: &CancellationToken) -> Session {
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
    let proxy = cloud_proxy(&ctx.cfg.cloud_url, &ctx.env);
    let connect = async {
        match proxy {
            None => {
                tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, tls).await
            }
            Some(proxy) => {
                let host = req.uri().host().unwrap_or_default().to_owned();
                let https = req.uri().scheme_str() == Some("wss");
                let port = req.uri().port_u16().unwrap_or(if https { 443 } else { 80 });
                let stream = connect_tunnel(&proxy, &host, port).await.map_err(|e| {
                    tokio_tungstenite::tungstenite::Error::Io(std::io::Error::other(e))
                })?;
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
                let forbidden_by_proxy = s == 403 && ctx.cfg.protocol == Protocol::Auto;
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
            code: 1000.into(),
            reason: "normal".into(),
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

async fn run_sse(ctx: &Arc<ChannelCtx>, stop: &CancellationToken) -> Session {
    let fail = |r| Session {
        connected: false,
        result: Err(r),
    };
    let req = ctx
        .common_headers(ctx.cloud.get(format!(
            "{}/connect/stream/{}/sse",
            ctx.http_base(),
            ctx.cfg.channel
        )))
        .header("accept", "text/event-stream");
    let resp = tokio::select! {
        _ = stop.cancelled() => return Session { connected: false, result: Ok(End::Draining) },
        r = tokio::time::timeout(ctx.cfg.connection_timeout, req.send()) => match r {
            Err(_) => return fail(ConnError::Other("connection timeout".into())),
            Ok(Err(e)) => return fail(ConnError::Other(format!("SSE connect: {}", error_chain(&e)))),
            Ok(Ok(r)) => r,
        },
    };
    let s = resp.status().as_u16();
    // The cloud answers a bad token with 401; a 403 under `auto` may be a proxy refusing event
    // streams, so it falls back to long-poll like any transport failure.
    if s == 401 || (s == 403 && ctx.cfg.protocol != Protocol::Auto) {
        return fail(ConnError::Auth(format!("HTTP {s}: invalid channel token")));
    }
    if !resp.status().is_success() {
        return fail(ConnError::Other(format!("SSE answered HTTP {s}")));
    }
    let mut v2 = is_v2(resp.headers());
    let mut stream = resp.bytes_stream();
    let mut parser = SseParser::default();
    let mut link = Arc::new(Link {
        connection_id: String::new(),
        ws: None,
        v2,
        ack_timeout: Duration::from_secs(30),
    });
    let mut was_connected = false;
    let end = 'outer: loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break End::Draining,
            n = tokio::time::timeout(ctx.cfg.heartbeat_timeout, stream.next()) => n,
        };
        let chunk = match next {
            Err(_) => break End::HeartbeatTimeout,
            Ok(None) => break End::Closed(None, "stream ended".into()),
            Ok(Some(Err(e))) => break End::Closed(None, format!("read error: {e}")),
            Ok(Some(Ok(c))) => c,
        };
        for ev in parser.feed(&chunk) {
            match ev.event.as_str() {
                "connected" => {
                    let c: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
                    let pv = c["protocol_version"].as_u64().map(|v| v as u32);
                    v2 = v2 || pv.is_some_and(|v| v >= 2);
                    link = Arc::new(Link {
                        connection_id: c["connection_id"].as_str().unwrap_or_default().to_owned(),
                        ws: None,
                        v2,
                        ack_timeout: Duration::from_secs(
                            c["ack_timeout_seconds"].as_u64().unwrap_or(30).max(1),
                        ),
                    });
                    was_connected = true;
                    connected(ctx, &link, pv);
                    tracing::info!(channel = %ctx.cfg.channel, connection_id = %link.connection_id, "connected (sse)");
                }
                "webhook" => match serde_json::from_str::<WireMessage>(&ev.data) {
                    Ok(m) => ctx.accept(&link, m),
                    Err(e) => {
                        tracing::warn!(channel = %ctx.cfg.channel, error = %e, "unparsable webhook event")
                    }
                },
                "error" => {
                    let c: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
                    let code = c["error"].as_str().unwrap_or_default().to_owned();
                    let mapped = match code.as_str() {
                        "token_revoked" => Some(4005),
                        "channel_removed" => Some(4006),
                        "max_connections_reached" => Some(4003),
                        "disconnected_by_admin" => Some(4004),
                        "server_shutdown" => Some(1001),
                        _ => None,
                    };
                    break 'outer End::Closed(mapped, code);
                }
                _ => {}
            }
        }
    };
    if matches!(end, End::Draining) {
        // Settle running deliveries while the stream is still open: a v1 cloud forgets a
        // closed stream at once, and ACKs for it then answer 404 (the message comes again).
        ctx.settled().await;
    }
    drop(stream);
    Session {
        connected: was_connected,
        result: Ok(end),
    }
}

async fn run_poll(ctx: &Arc<ChannelCtx>, stop: &CancellationToken) -> Session {
    // The cloud's version first, from an answer that takes no message (see `cloud_status`).
    let checked = tokio::select! {
        _ = stop.cancelled() => return Session { connected: false, result: Ok(End::Draining) },
        r = crate::cloud_status::read(ctx.status_request()) => r,
    };
    match checked {
        Ok(status) if status.v2 => {}
        Ok(_) => {
            return Session {
                connected: false,
                result: Err(ConnError::V1LongPoll),
            };
        }
        Err(e) => {
            let e = match e {
                StatusError::Auth(_) => ConnError::Auth(e.to_string()),
                StatusError::Status(_) | StatusError::Request(_) => ConnError::Other(e.to_string()),
            };
            return Session {
                connected: false,
                result: Err(e),
            };
        }
    }
    let timeout = ctx.cfg.heartbeat_timeout.as_secs().clamp(1, 30);
    let mut conn: Option<String> = None;
    let mut was_connected = false;
    loop {
        // The first poll of a session is short, so the channel shows connected (or the failure)
        // at once instead of after a full long-poll wait with nothing to deliver.
        let wait = if was_connected { timeout } else { 1 };
        let mut req = ctx
            .common_headers(ctx.cloud.get(format!(
                "{}/connect/stream/{}/poll",
                ctx.http_base(),
                ctx.cfg.channel
            )))
            .query(&[
                ("timeout", wait.to_string()),
                ("max_messages", "10".to_owned()),
            ])
            .timeout(Duration::from_secs(wait + 5));
        if let Some(c) = &conn {
            req = req.header(h::CONNECTION_ID, c);
        }
        let resp = tokio::select! {
            _ = stop.cancelled() => return Session { connected: was_connected, result: Ok(End::Draining) },
            r = req.send() => r,
        };
        let fail = |r| Session {
            connected: was_connected,
            result: Err(r),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return fail(ConnError::Other(format!(
                    "poll timeout: no answer within {} s",
                    wait + 5
                )));
            }
            Err(e) => return fail(ConnError::Other(format!("poll: {}", error_chain(&e)))),
        };
        let s = resp.status().as_u16();
        let v2_header = is_v2(resp.headers());
        match s {
            // A v2 server marks its 204s too. An unmarked one contradicts the status answer
            // (a proxy in between?): stop before anything is forwarded.
            204 if !v2_header => return fail(ConnError::Other(UNMARKED_POLL.into())),
            204 => {
                if !was_connected {
                    was_connected = true;
                    {
                        let mut l = ctx.live.lock();
                        l.status.connected();
                        l.status.server_protocol_version = Some(2);
                    }
                    ctx.queue_wake.notify_one();
                }
                continue;
            }
            200 => {}
            401 | 403 => return fail(ConnError::Auth(format!("HTTP {s}: invalid channel token"))),
            _ => return fail(ConnError::Other(format!("poll answered HTTP {s}"))),
        }
        let body: Value = match resp.json().await {
            Ok(v) => v,
            Err(e) => return fail(ConnError::Other(format!("poll body: {e}"))),
        };
        let pv = body["protocol_version"].as_u64().map(|v| v as u32);
        let id = body["connection_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let link = Arc::new(Link {
            connection_id: id.clone(),
            ws: None,
            v2: v2_header || pv.is_some_and(|v| v >= 2),
            ack_timeout: Duration::from_secs(
                body["ack_timeout_seconds"].as_u64().unwrap_or(30).max(1),
            ),
        });
        if !link.v2 {
            // As for an unmarked 204. These messages cannot be settled on this link and are not
            // forwarded; when (or whether) the cloud gives them out again is up to the cloud.
            let n = body["messages"].as_array().map_or(0, Vec::len);
            tracing::warn!(channel = %ctx.cfg.channel, messages = n, "a poll answer without a protocol version: its messages were not forwarded");
            return fail(ConnError::Other(UNMARKED_POLL.into()));
        }
        if !was_connected || conn.as_deref() != Some(&id) {
            connected(ctx, &link, pv);
        }
        was_connected = true;
        conn = Some(id);
        for m in body["messages"].as_array().cloned().unwrap_or_default() {
            match serde_json::from_value::<WireMessage>(m) {
                Ok(m) => ctx.accept(&link, m),
                Err(e) => {
                    tracing::warn!(channel = %ctx.cfg.channel, error = %e, "unparsable poll message")
                }
            }
        }
    }
}

#[cfg(test)]
mod proxy_tests {
    use std::collections::BTreeMap;

    use super::cloud_proxy;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_proxy_follows_the_scheme_and_no_proxy() {
        let e = env(&[
            ("HTTPS_PROXY", "http://p:3128"),
            ("HTTP_PROXY", "http://q:3128"),
            ("NO_PROXY", "internal.example, .corp.example,10.0.0.1"),
        ]);
        let p = |url: &str| cloud_proxy(url, &e);
        assert_eq!(p("https://cloud.example").as_deref(), Some("http://p:3128"));
        assert_eq!(
            p("http://cloud.example:8000/x").as_deref(),
            Some("http://q:3128")
        );
        assert_eq!(p("https://internal.example"), None);
        assert_eq!(p("https://a.internal.example:443"), None);
        assert_eq!(p("https://b.corp.example"), None);
        assert_eq!(p("https://10.0.0.1:8443"), None);
        assert_eq!(
            p("https://notinternal.example").as_deref(),
            Some("http://p:3128")
        );
        let all = env(&[("HTTPS_PROXY", "http://p:3128"), ("NO_PROXY", "*")]);
        assert_eq!(cloud_proxy("https://x.example", &all), None);
    }
}
