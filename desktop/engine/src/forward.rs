//! Forwarding one wire message to its local target (PROTOCOL.md §11.2): target choice, exact
//! body, header filtering, URL building, local retries and the ACK/NACK decision.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use connect_protocol::headers as h;
use connect_protocol::message::WireMessage;
use serde_json::Value;

use crate::config::Target;

/// Longest wait between local attempts.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// What to tell the cloud about a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ack,
    /// NACK `retry=false` (dead letter).
    Reject(String),
    /// NACK `retry=true`.
    Retry(String),
}

/// The result of one local attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    Failed(String),
}

impl Outcome {
    /// The reason in a few words, safe for a log line: the status, or the kind of failure
    /// without its details (which name the target URL, and a URL may carry credentials).
    pub fn brief(&self) -> String {
        match self {
            Outcome::Status { status, .. } => format!("HTTP {status}"),
            Outcome::Failed(e) => e.split(':').next().unwrap_or_default().trim().to_owned(),
        }
    }
}

/// A local retry about to happen, for the log and the counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryNote {
    /// The attempt that failed (from 1).
    pub attempt: u32,
    pub of: u32,
    /// [`Outcome::brief`] of the failed attempt.
    pub reason: String,
    pub wait: Duration,
}

/// Classification of one attempt: final, or worth another local attempt.
pub fn classify(outcome: &Outcome) -> (Verdict, bool) {
    match outcome {
        Outcome::Status { status, .. } if (200..300).contains(status) => (Verdict::Ack, false),
        Outcome::Status { status, .. } if *status == 408 || *status == 429 || *status >= 500 => {
            (Verdict::Retry(format!("HTTP {status}")), true)
        }
        Outcome::Status { status, .. } => (Verdict::Reject(format!("HTTP {status}")), false),
        Outcome::Failed(e) => (Verdict::Retry(e.clone()), true),
    }
}

/// `targets["ns/id"]`, then `targets[id]`, then `default_target`.
pub fn select_target<'a>(
    targets: &'a BTreeMap<String, Target>,
    default_target: Option<&'a Target>,
    msg: &WireMessage,
) -> Option<(String, &'a Target)> {
    if let Some(ns) = msg.namespace.as_deref() {
        let key = format!("{ns}/{}", msg.webhook_id);
        if let Some(t) = targets.get(&key) {
            return Some((key, t));
        }
    }
    if let Some(t) = targets.get(&msg.webhook_id) {
        return Some((msg.webhook_id.clone(), t));
    }
    default_target.map(|t| ("*default*".to_owned(), t))
}

fn is_json_ct(ct: &str) -> bool {
    let ct = ct.to_ascii_lowercase();
    let base = ct.split(';').next().unwrap_or_default().trim().to_owned();
    base == "application/json" || base.ends_with("+json")
}

/// The body to forward and whether it is the JSON fallback.
pub fn body_of(msg: &WireMessage) -> (Vec<u8>, bool) {
    if let Some(Ok(bytes)) = msg
        .body_b64
        .as_deref()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
    {
        return (bytes, false);
    }
    match &msg.payload {
        Value::Null => (Vec::new(), false),
        Value::String(s) if msg.content_type.as_deref().is_some_and(|c| !is_json_ct(c)) => {
            (s.clone().into_bytes(), false)
        }
        v => (v.to_string().into_bytes(), true),
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
    "expect",
];

fn filter(fields: Vec<(String, String)>) -> Vec<(String, String)> {
    let named: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    fields
        .into_iter()
        .filter(|(k, _)| {
            let l = k.to_ascii_lowercase();
            !HOP_BY_HOP.contains(&l.as_str()) && !named.contains(&l)
        })
        .collect()
}

/// The request headers for attempt `attempt` (1-based), in order.
pub fn headers_for(
    msg: &WireMessage,
    target: &Target,
    attempt: u32,
    json_fallback: bool,
) -> Vec<(String, String)> {
    let mut out = match &msg.raw_headers {
        Some(raw) => filter(raw.clone()),
        None => {
            let fields = msg
                .headers
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .filter(|(_, v)| v != "***REDACTED***")
                .collect();
            let mut f = filter(fields);
            if json_fallback
                && !f
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                f.push(("Content-Type".into(), "application/json".into()));
            }
            f
        }
    };
    if target.x_original_headers {
        for (k, v) in &msg.headers {
            if let Some(s) = v.as_str() {
                out.push((
                    format!("X-Original-{}", k.to_ascii_lowercase()),
                    s.to_owned(),
                ));
            }
        }
    }
    let set = |out: &mut Vec<(String, String)>, k: &str, v: String| {
        out.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        out.push((k.to_owned(), v));
    };
    for (k, v) in &target.headers {
        set(&mut out, k, v.clone());
    }
    set(&mut out, "X-Webhook-Message-ID", msg.message_id.clone());
    set(&mut out, "X-Webhook-ID", msg.webhook_id.clone());
    if let Some(c) = &msg.channel {
        set(&mut out, "X-Webhook-Channel", c.clone());
    }
    set(&mut out, "X-Webhook-Attempt", attempt.to_string());
    match msg.delivery_count {
        Some(n) => set(&mut out, "X-Webhook-Delivery-Count", n.to_string()),
        None => out.retain(|(n, _)| !n.eq_ignore_ascii_case(h::DELIVERY_COUNT)),
    }
    out
}

/// `target.url` plus the optional (rewritten) path and query.
pub fn url_for(msg: &WireMessage, target: &Target) -> String {
    let mut url = target.url.clone();
    if let Some(path) = msg.path.as_deref().filter(|_| target.append_path) {
        let path = match &target.path_rewrite {
            Some(r) => r.pattern.replace(path, r.replacement.as_str()).into_owned(),
            None => path.to_owned(),
        };
        let (base, q) = match url.split_once('?') {
            Some((b, q)) => (b.to_owned(), Some(q.to_owned())),
            None => (url.clone(), None),
        };
        let joined = if base.ends_with('/') && path.starts_with('/') {
            format!("{}{}", base.trim_end_matches('/'), path)
        } else if !base.ends_with('/') && !path.starts_with('/') && !path.is_empty() {
            format!("{base}/{path}")
        } else {
            format!("{base}{path}")
        };
        url = match q {
            Some(q) => format!("{joined}?{q}"),
            None => joined,
        };
    }
    if let Some(q) = msg
        .query
        .as_deref()
        .filter(|q| target.append_query && !q.is_empty())
    {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(q);
    }
    url
}

/// Wait before local attempt `k + 1` after attempt `k` (1-based).
pub fn retry_wait(target: &Target, k: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(MAX_RETRY_WAIT);
    }
    let f = target
        .retry_backoff_multiplier
        .powi(k.saturating_sub(1) as i32);
    let secs = (target.retry_delay.as_secs_f64() * f).min(MAX_RETRY_WAIT.as_secs_f64());
    Duration::from_secs_f64(secs.max(0.0))
}

/// The target's last answer, kept for the recent-events view.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body_excerpt: String,
}

/// What happened to one delivery.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub verdict: Verdict,
    pub attempts: u32,
    pub response: Response,
    pub duration: Duration,
    /// Every attempt, for the history.
    pub log: Vec<crate::api::Attempt>,
    /// [`Outcome::brief`] of the last attempt (empty when none was made).
    pub brief: String,
}

/// Body bytes kept from a target response.
pub const EXCERPT_BYTES: usize = 2048;

/// Runs one attempt.
pub async fn attempt_once(
    client: &reqwest::Client,
    msg: &WireMessage,
    target: &Target,
    attempt: u32,
) -> (Outcome, Response) {
    let (body, json_fallback) = body_of(msg);
    let method = target
        .method
        .clone()
        .or_else(|| msg.method.clone())
        .unwrap_or_else(|| "POST".to_owned());
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut req = client
        .request(method, url_for(msg, target))
        .timeout(target.timeout)
        .body(body);
    for (k, v) in headers_for(msg, target, attempt, json_fallback) {
        req = req.header(k, v);
    }
    match req.send().await {
        Err(e) => (Outcome::Failed(describe(&e)), Response::default()),
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .filter(|_| status == 429 || status == 503);
            let headers = r
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = read_excerpt(r).await;
            (
                Outcome::Status {
                    status,
                    retry_after,
                },
                Response {
                    status: Some(status),
                    headers,
                    body_excerpt: body,
                },
            )
        }
    }
}

async fn read_excerpt(mut r: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = r.chunk().await {
        let room = EXCERPT_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= EXCERPT_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        format!("connection failed: {e}")
    } else {
        format!("request failed: {e}")
    }
}

/// Delivers with local retries and returns the final verdict. `on_retry` runs before the wait
/// for each further attempt.
pub async fn deliver(
    client: &reqwest::Client,
    msg: &WireMessage,
    target: &Target,
    mut on_retry: impl FnMut(&RetryNote),
) -> Delivery {
    let started = Instant::now();
    let max = target.attempts();
    let url = url_for(msg, target);
    let mut log = Vec::new();
    let mut k = 1;
    loop {
        let at = std::time::SystemTime::now();
        let t0 = Instant::now();
        let (outcome, response) = attempt_once(client, msg, target, k).await;
        log.push(crate::api::Attempt {
            at: crate::history::rfc3339(at),
            target_url: url.clone(),
            status: response.status,
            duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
            response_headers: response.headers.clone(),
            response_body_excerpt: response.body_excerpt.clone(),
            error: match &outcome {
                Outcome::Failed(e) => Some(e.clone()),
                Outcome::Status { .. } => None,
            },
        });
        let (verdict, retryable) = classify(&outcome);
        if !retryable || k >= max {
            return Delivery {
                verdict,
                attempts: k,
                response,
                duration: started.elapsed(),
                log,
                brief: outcome.brief(),
            };
        }
        let ra = match outcome {
            Outcome::Status { retry_after, .. } => retry_after,
            Outcome::Failed(_) => None,
        };
        let wait = retry_wait(target, k, ra);
        on_retry(&RetryNote {
            attempt: k,
            of: max,
            reason: outcome.brief(),
            wait,
        });
        tokio::time::sleep(wait).await;
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(extra: Value) -> Target {
        let mut v = json!({"url": "http://localhost:9/base"});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        let cfg =
            json!({"cloud_url": "http://x", "channel": "c", "token": "t", "default_target": v});
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.json");
        std::fs::write(&p, cfg.to_string()).unwrap();
        let c = crate::config::load(&crate::config::Sources {
            config_file: Some(p),
            ..Default::default()
        })
        .unwrap();
        c.channels[0].default_target.clone().unwrap()
    }

    fn msg(extra: Value) -> WireMessage {
        let mut v = json!({"type": "webhook", "message_id": "msg_1", "webhook_id": "gh",
            "timestamp": "2026-02-09T10:15:02.004512+00:00", "payload": {"a": 1},
            "headers": {"host": "h", "content-type": "application/json"},
            "channel": "c", "delivery_count": 2, "path": "/webhook/gh", "query": "x=1"});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    fn st(status: u16) -> Outcome {
        Outcome::Status {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn a_brief_reason_names_no_url() {
        let failed = Outcome::Failed(
            "connection failed: error sending request for url (http://127.0.0.1:9/in?sig=s3cr3t)"
                .into(),
        );
        assert_eq!(failed.brief(), "connection failed");
        assert_eq!(Outcome::Failed("timeout".into()).brief(), "timeout");
        assert_eq!(st(503).brief(), "HTTP 503");
    }

    #[test]
    fn decision_table() {
        assert_eq!(classify(&st(200)), (Verdict::Ack, false));
        assert_eq!(classify(&st(204)), (Verdict::Ack, false));
        assert_eq!(
            classify(&st(404)),
            (Verdict::Reject("HTTP 404".into()), false)
        );
        assert_eq!(
            classify(&st(400)),
            (Verdict::Reject("HTTP 400".into()), false)
        );
        assert_eq!(
            classify(&st(301)),
            (Verdict::Reject("HTTP 301".into()), false)
        );
        assert_eq!(
            classify(&st(408)),
            (Verdict::Retry("HTTP 408".into()), true)
        );
        assert_eq!(
            classify(&st(429)),
            (Verdict::Retry("HTTP 429".into()), true)
        );
        assert_eq!(
            classify(&st(503)),
            (Verdict::Retry("HTTP 503".into()), true)
        );
        assert_eq!(
            classify(&Outcome::Failed("timeout".into())),
            (Verdict::Retry("timeout".into()), true)
        );
    }

    #[test]
    fn headers_drop_hop_by_hop_keep_order_and_add_webhook_fields() {
        let m = msg(
            json!({"raw_headers": [["Host", "h"], ["X-B", "1"], ["Connection", "close, X-Drop"],
            ["X-Drop", "no"], ["Content-Length", "3"], ["Expect", "100-continue"], ["X-A", "2"],
            ["X-B", "3"], ["Transfer-Encoding", "chunked"], ["Keep-Alive", "1"], ["X-Over", "old"]]}),
        );
        let t = target(json!({"headers": {"x-over": "new"}}));
        let hs = headers_for(&m, &t, 1, false);
        let names: Vec<&str> = hs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "X-B",
                "X-A",
                "X-B",
                "x-over",
                "X-Webhook-Message-ID",
                "X-Webhook-ID",
                "X-Webhook-Channel",
                "X-Webhook-Attempt",
                "X-Webhook-Delivery-Count"
            ]
        );
        assert_eq!(hs[3].1, "new");
        assert_eq!(hs[8].1, "2");
    }

    #[test]
    fn fallbacks_without_raw_fields() {
        let m = msg(json!({"headers": {"host": "h", "x-secret": "***REDACTED***", "x-k": "v"}}));
        let (body, json_fb) = body_of(&m);
        assert_eq!(body, br#"{"a":1}"#);
        assert!(json_fb);
        let hs = headers_for(&m, &target(json!({})), 1, json_fb);
        assert!(hs.contains(&("x-k".into(), "v".into())));
        assert!(hs.contains(&("Content-Type".into(), "application/json".into())));
        assert!(!hs.iter().any(|(k, _)| k == "x-secret" || k == "host"));
        let m = msg(json!({"payload": "plain", "content_type": "text/plain"}));
        assert_eq!(body_of(&m).0, b"plain");
        let m = msg(json!({"payload": null}));
        assert!(body_of(&m).0.is_empty());
        let m = msg(json!({"body_b64": "AAEC"}));
        assert_eq!(body_of(&m).0, vec![0, 1, 2]);
    }

    #[test]
    fn url_path_rewrite_and_query() {
        let t = target(json!({"append_path": true, "append_query": true,
            "path_rewrite": {"pattern": "^/webhook/", "replacement": "/hooks/"}}));
        assert_eq!(
            url_for(&msg(json!({})), &t),
            "http://localhost:9/base/hooks/gh?x=1"
        );
        let t = target(json!({"url": "http://l/p?y=2", "append_query": true}));
        assert_eq!(url_for(&msg(json!({})), &t), "http://l/p?y=2&x=1");
    }

    #[test]
    fn retry_waits_grow_and_are_capped() {
        let t = target(json!({"retry_delay_seconds": 10, "retry_backoff_multiplier": 3}));
        assert_eq!(retry_wait(&t, 1, None), Duration::from_secs(10));
        assert_eq!(retry_wait(&t, 2, None), Duration::from_secs(30));
        assert_eq!(retry_wait(&t, 3, None), Duration::from_secs(60));
        assert_eq!(
            retry_wait(&t, 1, Some(Duration::from_secs(500))),
            Duration::from_secs(60)
        );
        let t = target(json!({"retry_enabled": false}));
        assert_eq!(t.attempts(), 1);
    }

    #[test]
    fn target_choice() {
        let mut targets = BTreeMap::new();
        targets.insert("ns1/gh".to_owned(), target(json!({"url": "http://ns/"})));
        targets.insert("gh".to_owned(), target(json!({"url": "http://plain/"})));
        let m = msg(json!({"namespace": "ns1"}));
        assert_eq!(
            select_target(&targets, None, &m).unwrap().1.url,
            "http://ns/"
        );
        let m = msg(json!({}));
        assert_eq!(
            select_target(&targets, None, &m).unwrap().1.url,
            "http://plain/"
        );
        let m = msg(json!({"webhook_id": "other"}));
        assert!(select_target(&targets, None, &m).is_none());
    }
}
