//! The local control endpoint of a running connector, and its client (`webhook-connect status`,
//! `events`, `replay`). Loopback HTTP with a random bearer token; the URL and token are written
//! to a state file readable only by the user (mode 0600), removed at exit.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use connect_engine::EngineHandle;
use connect_engine::api::{ChannelStatus, EventDetail, EventSummary, ReplayRequest};
use serde::{Deserialize, Serialize};

/// Why the control endpoint could not start (the CLI exits 64: it is configuration).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("control address {listen:?}: {source}")]
    Address {
        listen: String,
        source: std::net::AddrParseError,
    },
    #[error("control address {0:?} must be a loopback address")]
    NotLoopback(String),
    #[error("control address {listen}: {source}")]
    Bind {
        listen: String,
        source: std::io::Error,
    },
    #[error("control address: {0}")]
    LocalAddr(std::io::Error),
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("control file {}: {source}", path.display())]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why the client cannot read the state file of a running connector.
#[derive(Debug, thiserror::Error)]
pub enum ReadInfoError {
    #[error("cannot read {}: {source} (is a connector running? use --control-file)", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Why a request to a running connector's control endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("connector at {url} is not answering: {source}")]
    NotAnswering { url: String, source: reqwest::Error },
    /// The answer's body could not be read.
    #[error("{0}")]
    Body(reqwest::Error),
    /// An error status; the text is the answer's `error` field, else its body.
    #[error("{message}")]
    Refused {
        status: reqwest::StatusCode,
        message: String,
    },
    /// A success whose body is not what was asked for.
    #[error("{0}")]
    Decode(serde_json::Error),
}

/// What the state file holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlInfo {
    pub url: String,
    pub token: String,
    pub pid: u32,
}

/// Default state file: `$XDG_RUNTIME_DIR/webhook-connect/control.json`, else
/// `~/.cache/webhook-connect/control.json`.
pub fn default_file(env: &std::collections::BTreeMap<String, String>) -> Option<PathBuf> {
    let base = env
        .get("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("webhook-connect").join("control.json"))
}

#[derive(Clone)]
struct Ctl {
    engine: EngineHandle,
    token: String,
}

fn authorized(ctl: &Ctl, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == ctl.token)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn status(State(ctl): State<Ctl>, headers: HeaderMap) -> Response {
    if !authorized(&ctl, &headers) {
        return error(StatusCode::UNAUTHORIZED, "bad control token");
    }
    Json(ctl.engine.status()).into_response()
}

#[derive(Deserialize)]
struct EventsQuery {
    channel: Option<String>,
}

/// One channel's events.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChannelEvents {
    pub key: String,
    pub events: Vec<EventSummary>,
}

async fn events(
    State(ctl): State<Ctl>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    if !authorized(&ctl, &headers) {
        return error(StatusCode::UNAUTHORIZED, "bad control token");
    }
    let keys: Vec<String> = match q.channel {
        Some(c) => vec![c],
        None => ctl.engine.status().into_iter().map(|s| s.key).collect(),
    };
    let mut out = Vec::new();
    for key in keys {
        match ctl.engine.events(&key) {
            Ok(events) => out.push(ChannelEvents { key, events }),
            Err(e) => return error(StatusCode::NOT_FOUND, e.to_string()),
        }
    }
    Json(out).into_response()
}

async fn event(
    State(ctl): State<Ctl>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !authorized(&ctl, &headers) {
        return error(StatusCode::UNAUTHORIZED, "bad control token");
    }
    match ctl.engine.find_event(&id) {
        Some((_, d)) => Json(d).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no event {id:?} in the history"),
        ),
    }
}

async fn replay(
    State(ctl): State<Ctl>,
    headers: HeaderMap,
    Json(mut req): Json<ReplayRequest>,
) -> Response {
    if !authorized(&ctl, &headers) {
        return error(StatusCode::UNAUTHORIZED, "bad control token");
    }
    if req.key.is_empty() {
        match ctl.engine.find_event(&req.message_id) {
            Some((key, _)) => req.key = key,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no event {:?} in the history", req.message_id),
                );
            }
        }
    }
    match ctl.engine.replay(req).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// A running control endpoint; dropping it removes the state file.
pub struct Control {
    file: Option<PathBuf>,
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Binds `listen` (loopback only) and serves the control API until the runtime ends.
pub async fn start(
    engine: EngineHandle,
    listen: &str,
    file: Option<PathBuf>,
) -> Result<Control, StartError> {
    let addr: std::net::SocketAddr = listen.parse().map_err(|source| StartError::Address {
        listen: listen.to_owned(),
        source,
    })?;
    if !addr.ip().is_loopback() {
        return Err(StartError::NotLoopback(listen.to_owned()));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listen: listen.to_owned(),
            source,
        })?;
    let local = listener.local_addr().map_err(StartError::LocalAddr)?;
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let ctl = Ctl {
        engine,
        token: token.clone(),
    };
    let app = axum::Router::new()
        .route("/status", get(status))
        .route("/events", get(events))
        .route("/events/{id}", get(event))
        .route("/replay", post(replay))
        .with_state(ctl);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let info = ControlInfo {
        url: format!("http://{local}"),
        token,
        pid: std::process::id(),
    };
    if let Some(f) = &file {
        let bytes = serde_json::to_vec_pretty(&info).map_err(StartError::Encode)?;
        write_private(f, &bytes).map_err(|source| StartError::WriteFile {
            path: f.clone(),
            source,
        })?;
    }
    tracing::info!(url = %info.url, file = ?file, "control endpoint listening");
    Ok(Control { file })
}

/// Client side: reads the state file.
pub fn read_info(file: &Path) -> Result<ControlInfo, ReadInfoError> {
    let text = std::fs::read_to_string(file).map_err(|source| ReadInfoError::Unreadable {
        path: file.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ReadInfoError::Invalid {
        path: file.to_owned(),
        source,
    })
}

pub struct Client {
    info: ControlInfo,
    http: reqwest::Client,
}

impl Client {
    pub fn new(info: ControlInfo) -> Self {
        Self {
            info,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, RequestError> {
        let r = req
            .bearer_auth(&self.info.token)
            .send()
            .await
            .map_err(|source| RequestError::NotAnswering {
                url: self.info.url.clone(),
                source,
            })?;
        let status = r.status();
        let text = r.text().await.map_err(RequestError::Body)?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(RequestError::Refused { status, message });
        }
        serde_json::from_str(&text).map_err(RequestError::Decode)
    }

    pub async fn status(&self) -> Result<Vec<ChannelStatus>, RequestError> {
        self.send(self.http.get(format!("{}/status", self.info.url)))
            .await
    }

    pub async fn events(&self, channel: Option<&str>) -> Result<Vec<ChannelEvents>, RequestError> {
        let mut req = self.http.get(format!("{}/events", self.info.url));
        if let Some(c) = channel {
            req = req.query(&[("channel", c)]);
        }
        self.send(req).await
    }

    pub async fn event(&self, id: &str) -> Result<EventDetail, RequestError> {
        let url = format!(
            "{}/events/{}",
            self.info.url,
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        );
        self.send(self.http.get(url)).await
    }

    pub async fn replay(&self, req: &ReplayRequest) -> Result<EventDetail, RequestError> {
        self.send(
            self.http
                .post(format!("{}/replay", self.info.url))
                .json(req),
        )
        .await
    }
}
