//! Ingress: `POST /webhook/{id}` and `/webhook/{namespace}/{id}` (PROTOCOL §2).
//!
//! Steps run exactly in the order of §2.3 and the first failure answers: route, id syntax,
//! header limits, configuration lookup, body size (streamed, before authentication),
//! authentication, rate limit, payload decoding and limits, schema, then the module. For
//! `webhook_connect` the answer is 2xx only after the buffer confirmed a durable write.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use connect_config::{AuthRequest, DataType, Lookup, Module, Webhook};
use connect_protocol::error::ErrorCode;
use connect_protocol::frames::IngressAccepted;
use connect_protocol::ids::{is_valid_namespace, new_message_id, validate_webhook_id};
use connect_protocol::json::JsonError;
use connect_protocol::message::StoredMessage;
use connect_protocol::time::Timestamp;
use http_body_util::BodyExt;

use crate::app::AppState;
use crate::http::error::{ApiError, ApiResult};

/// Longest time the buffer may take to confirm a write before the sender gets 503 (§2.7).
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);

// The request is taken whole, not through one extractor per part: `HeaderMap`, `Uri` and
// `Method` extractors clone those parts, which a request that is stored cannot afford.
pub async fn receive_webhook(
    State(st): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    handle(st, None, id, req).await
}

pub async fn receive_namespaced_webhook(
    State(st): State<AppState>,
    Path((ns, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    handle(st, Some(ns), id, req).await
}

async fn handle(st: AppState, ns: Option<String>, id: String, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied() else {
        return ApiError::internal("ingress", "the peer address is missing").into_response();
    };
    let query = parts.uri.query().map(str::to_owned);
    let mut label = ("".to_owned(), "_unknown".to_owned());
    let mut body_len = 0usize;
    let res = pipeline(
        &st,
        ns,
        id,
        peer,
        parts.method,
        parts.uri,
        query,
        parts.headers,
        body,
        &mut label,
        &mut body_len,
    )
    .await;
    let res = match res {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    st.metrics().ingress(
        &label.0,
        &label.1,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
        body_len,
    );
    res
}

#[allow(clippy::too_many_arguments)]
async fn pipeline(
    st: &AppState,
    ns: Option<String>,
    id: String,
    peer: SocketAddr,
    method: Method,
    uri: Uri,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
    label: &mut (String, String),
    body_len: &mut usize,
) -> ApiResult<Response> {
    // 1. Method.
    if method != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    // 2. Identifier syntax.
    if let Some(ns) = &ns
        && !is_valid_namespace(ns)
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "Invalid namespace format",
        ));
    }
    let id = id.trim().to_owned();
    validate_webhook_id(&id).map_err(|d| ApiError::bad_request(ErrorCode::InvalidRequest, d))?;
    // 3. Header limits.
    check_headers(st, &headers)?;
    // 4. Configuration lookup (the file backend ignores the namespace after its syntax check;
    //    etcd maps `/webhook/{id}` to ETCD_NAMESPACE).
    if st.shutdown().is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::BufferUnavailable,
            "Server shutting down",
        )
        .retry_after(st.settings().retry_after_seconds));
    }
    let Some(cfg) = st.config() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ConfigNotLoaded,
            "Configuration not loaded",
        )
        .retry_after(st.settings().retry_after_seconds));
    };
    let mut max_body = st.settings().max_body_bytes;
    let mut hosted = false;
    let webhook = match cfg.webhooks.lookup(cfg.namespace_for(ns.as_deref()), &id) {
        Lookup::Found(w) => w.clone(),
        Lookup::Disabled(_) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::WebhookUnavailable,
                "Webhook unavailable",
            )
            .retry_after(st.settings().retry_after_seconds));
        }
        // Not configured: a self-service webhook (HOSTED.md §3), on `/webhook/{id}` only.
        Lookup::NotFound => match st.hosted().ingress_target(&id).await {
            Ok(Some(t)) if ns.is_none() => {
                max_body = t.max_body_bytes;
                hosted = true;
                t.webhook
            }
            Ok(_) => return Err(webhook_not_found()),
            Err(e) => {
                return Err(ApiError::from(e).retry_after(st.settings().retry_after_seconds));
            }
        },
    };
    *label = match (&webhook.module, hosted) {
        // A self-service webhook id is a capability (HOSTED.md §3): metrics name the channel.
        (connect_config::Module::WebhookConnect(cs), true) => (String::new(), cs.channel.clone()),
        _ => (
            webhook.namespace.clone().unwrap_or_default(),
            webhook.id.clone(),
        ),
    };
    // 5. Body size and read timeout, before authentication.
    let bytes = read_body(st, &headers, body, max_body).await?;
    *body_len = bytes.len();
    // 6. Authentication.
    let query = query.unwrap_or_default();
    let now_unix = chrono::Utc::now().timestamp();
    webhook
        .authenticate(&AuthRequest {
            headers: &headers,
            query: &query,
            peer: peer.ip(),
            body: &bytes,
            global_trusted_proxies: st.settings().trusted(),
            now_unix,
        })
        .map_err(ApiError::unauthorized)?;
    // 7. Rate limit (authenticated requests only; bucket per namespace and entry).
    if let Some(rl) = &webhook.rate_limit {
        let window = Duration::from_secs(rl.window_seconds);
        // A shared buffer keeps the window in the store, so the limit is global (CONFIG §2.5);
        // if the store cannot answer, this process's window still limits.
        let shared = st
            .buffer()
            .rate_limit(&webhook.key, rl.max_requests, window)
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "shared rate limit unavailable; using the local window");
                None
            });
        let verdict = shared.unwrap_or_else(|| {
            let mut limits = st.rate_limits().lock();
            limits
                .entry(webhook.key.clone())
                .or_insert_with(|| connect_config::SlidingWindow::new(rl.max_requests, window))
                .check(Instant::now())
        });
        if let Err(retry) = verdict {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "Rate limit exceeded",
            )
            .retry_after(retry));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // 8–10. Payload decoding, limits and schema.
    let is_json = webhook.data_type == DataType::Json;
    // The value itself is needed only for a schema or for masking; otherwise the raw bytes
    // are stored and a validating pass that builds nothing is enough (and much cheaper).
    let needs_value = webhook.json_schema.is_some()
        || webhook.cleanup.enabled
        || !matches!(webhook.module, Module::WebhookConnect(_));
    if is_json && !needs_value {
        connect_protocol::json::check_payload(&bytes, content_type.as_deref())
            .map_err(json_error)?;
    }
    let parsed = match webhook.data_type {
        DataType::Json if needs_value => {
            let v = connect_protocol::json::parse_payload(&bytes, content_type.as_deref())
                .map_err(json_error)?;
            webhook.validate_schema(&v).map_err(|errors| {
                let mut e = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::SchemaValidationFailed,
                    "JSON schema validation failed",
                );
                e.body.errors = Some(errors.into_iter().take(10).collect());
                e
            })?;
            Some(v)
        }
        DataType::Json | DataType::Blob => None,
    };
    // 11. Module.
    match &webhook.module {
        Module::WebhookConnect(cs) => {
            if !st.settings().enabled {
                return Err(ApiError::not_initialized(st.settings().retry_after_seconds));
            }
            let msg = build_message(
                &webhook,
                &id,
                &cs.channel,
                cs.ttl_seconds,
                &uri,
                &query,
                &headers,
                bytes,
                is_json,
                parsed,
                content_type,
            );
            let started = Instant::now();
            let enq = tokio::time::timeout(ENQUEUE_TIMEOUT, st.buffer().enqueue(msg)).await;
            let (message_id, _seq) = match enq {
                Ok(Ok(r)) => r,
                // Deleted through another replica between the lookup and the write.
                Ok(Err(connect_buffer::BufferError::ChannelNotFound)) if hosted => {
                    return Err(webhook_not_found());
                }
                Ok(Err(e)) => {
                    return Err(ApiError::from(e).retry_after(st.settings().retry_after_seconds));
                }
                Err(_) => {
                    return Err(ApiError::buffer_unavailable(
                        st.settings().retry_after_seconds,
                    ));
                }
            };
            st.metrics().enqueued(
                st.buffer().backend_name(),
                &cs.channel,
                started.elapsed().as_secs_f64(),
            );
            Ok(axum::Json(IngressAccepted {
                message: "200 OK".into(),
                message_id: Some(message_id),
            })
            .into_response())
        }
        Module::Log(_) | Module::SaveToDisk(_) => {
            crate::modules::run_local(&webhook, &headers, &bytes, parsed, content_type.as_deref())
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ErrorCode::ProcessingError,
                        "Processing error",
                    )
                    .tap_log(&e.to_string())
                })?;
            Ok(axum::Json(IngressAccepted {
                message: "200 OK".into(),
                message_id: None,
            })
            .into_response())
        }
    }
}

fn webhook_not_found() -> ApiError {
    ApiError::not_found(ErrorCode::WebhookNotFound, "Webhook ID not found")
}

trait TapLog {
    fn tap_log(self, cause: &str) -> Self;
}

impl TapLog for ApiError {
    fn tap_log(self, cause: &str) -> Self {
        tracing::error!(error = %cause, "module failed");
        self
    }
}

fn json_error(e: JsonError) -> ApiError {
    let code = match e {
        JsonError::Encoding => ErrorCode::InvalidEncoding,
        JsonError::Malformed => ErrorCode::MalformedJson,
        JsonError::TooDeep(_) => ErrorCode::JsonTooDeep,
        JsonError::StringTooLong(_) => ErrorCode::StringTooLong,
    };
    ApiError::bad_request(code, e.to_string())
}

fn check_headers(st: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    check_header_limits(
        headers,
        st.settings().max_headers,
        st.settings().max_header_bytes,
    )
}

/// §2.3 step 3: at most `max_headers` fields, at most `max_bytes` of names and values, no CR,
/// LF or NUL in a value.
pub fn check_header_limits(
    headers: &HeaderMap,
    max_headers: usize,
    max_bytes: usize,
) -> ApiResult<()> {
    let n = headers.len();
    if n > max_headers {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidHeaders,
            format!("Too many headers: {n} (max: {max_headers})"),
        ));
    }
    let mut total = 0usize;
    for (k, v) in headers {
        let vb = v.as_bytes();
        if vb.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidHeaders,
                "Invalid header",
            ));
        }
        total += k.as_str().len() + vb.len();
    }
    if total > max_bytes {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidHeaders,
            format!("Headers too large: {total} bytes (max: {max_bytes})"),
        ));
    }
    Ok(())
}

fn too_large(n: u64, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("Payload too large: {n} bytes (max: {max})"),
    )
    .closing()
}

/// Reads the body as a stream, aborting as soon as it passes the limit or the timeout.
async fn read_body(st: &AppState, headers: &HeaderMap, body: Body, max: u64) -> ApiResult<Vec<u8>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(n) = declared
        && n > max
    {
        return Err(too_large(n, max));
    }
    let read = async {
        let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(max) as usize);
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                ApiError::bad_request(ErrorCode::InvalidRequest, "Invalid request body")
            })?;
            if let Ok(data) = frame.into_data() {
                if (buf.len() + data.len()) as u64 > max {
                    return Err(too_large((buf.len() + data.len()) as u64, max));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf)
    };
    // A small body usually came with the head: then it is read without arming a timer.
    let mut read = std::pin::pin!(read);
    if let Some(r) = futures::FutureExt::now_or_never(read.as_mut()) {
        return r;
    }
    match tokio::time::timeout(st.settings().body_read_timeout(), read).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BodyTimeout,
            "Request body timeout",
        )
        .closing()),
    }
}

#[allow(clippy::too_many_arguments)]
fn build_message(
    webhook: &Webhook,
    requested_id: &str,
    channel: &str,
    ttl_seconds: u64,
    uri: &Uri,
    query: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
    is_json: bool,
    parsed: Option<serde_json::Value>,
    content_type: Option<String>,
) -> StoredMessage {
    let now = Timestamp::now();
    let raw_headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut msg = StoredMessage {
        message_id: new_message_id(),
        channel: channel.to_owned(),
        webhook_id: requested_id.to_owned(),
        namespace: webhook.namespace.clone(),
        sequence: 0,
        received_at: now,
        expires_at: now.plus_seconds(ttl_seconds as f64),
        method: "POST".into(),
        path: uri.path().to_owned(),
        query: query.to_owned(),
        raw_headers: Some(raw_headers),
        body: Some(body),
        payload: None,
        masked_headers: None,
        content_type,
        is_json,
    };
    if webhook.cleanup.enabled {
        // Credential cleanup: the raw body and headers are neither stored nor relayed (§3.3).
        let payload = parsed.unwrap_or_else(|| msg.payload_view());
        msg.payload = Some(connect_config::cleanup::mask_value(
            &payload,
            &webhook.cleanup,
        ));
        msg.masked_headers = Some(connect_config::cleanup::mask_headers(
            &msg.headers_map(),
            &webhook.cleanup,
        ));
        msg.query = connect_config::cleanup::mask_query(&msg.query, &webhook.cleanup);
        msg.raw_headers = None;
        msg.body = None;
    }
    msg
}
