//! Requests hyper refuses before any router sees them (issue #13, finding 4): more header
//! fields than hyper takes, a request head larger than its read buffer, a URI over its 65,534
//! bytes, an unparsable header line. Each used to get hyper's bare 431 / 414 / 400 with an empty
//! body and none of the security headers; now each is the documented JSON error with the
//! security and version headers. Over a real socket: these errors happen below the router.

use std::time::Duration;

use connect_testkit::in_process::TestCloud;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::default_webhooks;

/// A parsed HTTP/1.1 answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (and then `tail`, written while the answer is read: a client still sending
/// when the server has answered) and reads the answer up to the connection's end.
async fn exchange(cloud: &TestCloud, head: Vec<u8>, tail: Vec<u8>) -> Answer {
    let stream = TcpStream::connect(cloud.addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may close before everything is written; that is the point.
        if wr.write_all(&head).await.is_ok() {
            let _ = wr.write_all(&tail).await;
        }
        wr
    });
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut raw))
        .await
        .expect("an answer and the end of the connection within 20 s")
        .expect("read the answer");
    drop(writer.await);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {status_line} {body:?}"));
    Answer {
        status,
        headers,
        body,
    }
}

fn assert_documented(a: &Answer, status: u16, code: &str, detail_prefix: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.body["code"], code, "{}", a.body);
    let detail = a.body["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with(detail_prefix), "detail {detail:?}");
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(a.header("x-frame-options"), Some("DENY"));
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("x-webhook-connect-version"), Some("2"));
    assert_eq!(a.header("connection"), Some("close"));
}

fn request_with_headers(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n{extra}\r\n{{}}"
    )
    .into_bytes()
}

fn many_headers(n: usize) -> String {
    (0..n).map(|i| format!("x-h{i}: v\r\n")).collect()
}

#[tokio::test]
async fn more_header_fields_than_hyper_takes_is_a_json_400() {
    let cloud = TestCloud::start(default_webhooks()).await.expect("cloud");
    let a = exchange(
        &cloud,
        request_with_headers("/webhook/hook", &many_headers(250)),
        Vec::new(),
    )
    .await;
    assert_documented(&a, 400, "invalid_headers", "Too many headers: more than ");
    cloud.stop().await;
}

#[tokio::test]
async fn fewer_fields_than_hyper_takes_still_get_the_pipeline_s_exact_count() {
    let cloud = TestCloud::start(default_webhooks()).await.expect("cloud");
    let a = exchange(
        &cloud,
        request_with_headers(
            "/webhook/hook",
            &format!("connection: close\r\n{}", many_headers(150)),
        ),
        Vec::new(),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["code"], "invalid_headers");
    assert_eq!(a.body["detail"], "Too many headers: 154 (max: 100)");
    cloud.stop().await;
}

#[tokio::test]
async fn a_one_megabyte_header_is_a_json_400() {
    let cloud = TestCloud::start(default_webhooks()).await.expect("cloud");
    let head = b"POST /webhook/hook HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    let mut tail = vec![b'a'; 1024 * 1024];
    tail.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\n{}");
    let a = exchange(&cloud, head, tail).await;
    assert_documented(&a, 400, "invalid_headers", "Headers too large: more than ");
    cloud.stop().await;
}

#[tokio::test]
async fn a_uri_over_hyper_s_limit_is_a_json_414() {
    let cloud = TestCloud::start(default_webhooks()).await.expect("cloud");
    let path = format!("/webhook/hook?pad={}", "a".repeat(70_000));
    let a = exchange(&cloud, request_with_headers(&path, ""), Vec::new()).await;
    assert_documented(&a, 414, "invalid_request", "URI too long");
    cloud.stop().await;
}

#[tokio::test]
async fn an_unparsable_header_line_is_a_json_400() {
    let cloud = TestCloud::start(default_webhooks()).await.expect("cloud");
    let a = exchange(
        &cloud,
        request_with_headers("/webhook/hook", "no colon here\r\n"),
        Vec::new(),
    )
    .await;
    assert_documented(&a, 400, "invalid_request", "Malformed request");
    cloud.stop().await;
}

#[tokio::test]
async fn the_second_request_on_a_kept_alive_connection_gets_the_same_answer() {
    let cloud = TestCloud::start(default_webhooks()).await.expect("cloud");
    let mut both = b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
    both.extend(request_with_headers("/webhook/hook", &many_headers(250)));
    let stream = TcpStream::connect(cloud.addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(&both).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut raw))
        .await
        .expect("answers within 20 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw);
    let second = text
        .match_indices("HTTP/1.1 ")
        .nth(1)
        .map(|(i, _)| &raw[i..])
        .unwrap_or_else(|| panic!("two answers expected: {text:?}"));
    assert!(text.starts_with("HTTP/1.1 200 "), "{text:?}");
    assert_documented(
        &parse(second),
        400,
        "invalid_headers",
        "Too many headers: more than ",
    );
    cloud.stop().await;
}
