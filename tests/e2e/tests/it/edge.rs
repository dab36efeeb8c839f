//! Bounds at the edge (issue #13, finding 1): sockets that never send a byte are closed after
//! `WEBHOOK_CONNECT_FIRST_BYTE_TIMEOUT_SECONDS`, sockets beyond
//! `WEBHOOK_CONNECT_MAX_HTTP_CONNECTIONS` are closed at once, and a real webhook gets its answer
//! once the silent ones are gone. (Before: 19,994 silent sockets filled the descriptor limit and
//! stayed open for good; webhooks and `/health/live` timed out.)

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use connect_testkit::cloud::{Cloud, connect_hook};

const SILENT: usize = 2000;

/// This test process needs more than the usual 1,024 descriptors.
fn raise_own_nofile() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
}

#[tokio::test]
async fn silent_sockets_are_closed_and_a_webhook_is_answered_once_they_are_gone() {
    raise_own_nofile();
    let cloud = Cloud::start_with(
        json!({"hook": connect_hook("edge", "edge-token-0123456789", json!({}))}),
        &[
            ("WEBHOOK_CONNECT_FIRST_BYTE_TIMEOUT_SECONDS", "1"),
            ("WEBHOOK_CONNECT_MAX_HTTP_CONNECTIONS", "500"),
        ],
    )
    .await
    .unwrap();
    let addr = format!("127.0.0.1:{}", cloud.port);
    let opened = Instant::now();
    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Every silent socket is closed by the cloud: beyond the cap at once, the rest at the
    // first-byte deadline. (A read that only times out means a socket left open.)
    let closed = futures::future::join_all(silent.iter_mut().map(|s| async move {
        let mut b = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }))
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "{open} of {SILENT} silent sockets still open after 10 s"
    );
    let all_closed_after = opened.elapsed();
    assert!(
        all_closed_after >= Duration::from_millis(900),
        "the silent sockets within the cap were closed before their deadline ({all_closed_after:?})"
    );
    // The capacity is back: a webhook is taken, and liveness answers.
    let (status, body) = cloud.post("hook", r#"{"after":"silence"}"#).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let live = cloud
        .http
        .get(format!("{}/health/live", cloud.base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    drop(silent);
}

#[tokio::test]
async fn while_the_cap_is_taken_new_sockets_are_closed_at_once_not_queued() {
    let cloud = Cloud::start_with(
        json!({"hook": connect_hook("edge", "edge-token-0123456789", json!({}))}),
        &[
            ("WEBHOOK_CONNECT_FIRST_BYTE_TIMEOUT_SECONDS", "30"),
            ("WEBHOOK_CONNECT_MAX_HTTP_CONNECTIONS", "20"),
        ],
    )
    .await
    .unwrap();
    let addr = format!("127.0.0.1:{}", cloud.port);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Give the accept loop time to take all 20 (they stay: their deadline is 30 s away).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut b)).await;
    assert!(
        matches!(r, Ok(Ok(0) | Err(_))),
        "a socket beyond the cap was not closed at once: {r:?}"
    );
    // A held socket that speaks is served as usual.
    use tokio::io::AsyncWriteExt;
    let s = &mut held[0];
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
}

/// The cloud runs without transparent huge pages (`cloud/src/hugepages.rs`): with them, the
/// kernel zeroed 2 MiB per page fault while the store's index grew, and no webhook was answered
/// for 20–110 ms at a time. The kernel reports the process's setting in `/proc/<pid>/status`.
#[tokio::test]
async fn the_cloud_turns_transparent_huge_pages_off_for_itself() {
    let cloud =
        Cloud::start(json!({"hook": connect_hook("thp", "thp-token-0123456789", json!({}))}))
            .await
            .expect("cloud starts");
    let status = std::fs::read_to_string(format!("/proc/{}/status", cloud.pid())).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .expect("this kernel reports THP_enabled (Linux 5.0 and later)");
    assert_eq!(
        line.split_whitespace().nth(1),
        Some("0"),
        "huge pages are still on for the cloud: {line}"
    );
}
