//! The Redis buffer end to end (PROTOCOL §10.3): two cloud processes sharing one real
//! `redis-server` — cross-replica delivery, ACKs, lease reclaim, token rotation, a Redis
//! outage, durability across a Redis crash with `appendfsync always`, channels registered again
//! after a restart that lost every key, and `rediss://` with a private CA.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use connect_testkit::{RecordingTarget, RedisServer, wait_until};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{TestConnector, Transport};
use connect_testkit::cloud::{Cloud, connect_hook};

const TOKEN: &str = "redis-e2e-channel-token";
const CH: &str = "shared";
const WAIT: Duration = Duration::from_secs(20);

fn hooks(extra: Value) -> Value {
    json!({"hook": connect_hook(CH, TOKEN, extra)})
}

async fn replica(redis: &RedisServer, extra: Value) -> anyhow::Result<Cloud> {
    Cloud::start_with(
        hooks(extra),
        &[
            ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", "e2e"),
        ],
    )
    .await
}

/// A raw SSE client: events arrive on `events` as (name, data).
struct Sse {
    task: JoinHandle<()>,
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sse {
    async fn open(base: &str, token: &str) -> anyhow::Result<Self> {
        let r = reqwest::Client::new()
            .get(format!("{base}/connect/stream/{CH}/sse"))
            .bearer_auth(token)
            .header("x-webhook-connect-version", "2")
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "sse answered {}", r.status());
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = r.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = stream.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(i) = buf.find("\n\n") {
                    let ev: String = buf.drain(..i + 2).collect();
                    let mut name = String::new();
                    let mut data = Value::Null;
                    for line in ev.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            name = v.to_owned();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data = serde_json::from_str(v).unwrap_or(Value::Null);
                        }
                    }
                    if !name.is_empty() && tx.send((name, data)).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(("closed".into(), Value::Null));
        });
        Ok(Self { task, events })
    }

    /// The next event named `name` (others are skipped).
    async fn next(&mut self, name: &str) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow::anyhow!("no {name} event in time"))?
                .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
            if ev.0 == name {
                return Ok(ev.1);
            }
            anyhow::ensure!(ev.0 != "closed", "stream ended before a {name} event");
        }
    }
}

async fn settle(
    cloud: &Cloud,
    conn: &str,
    message_id: &str,
    status: &str,
) -> anyhow::Result<(u16, Value)> {
    let r = cloud
        .http
        .post(format!(
            "{}/connect/ack?message_id={message_id}&status={status}",
            cloud.base
        ))
        .bearer_auth(TOKEN)
        .header("x-connection-id", conn)
        .send()
        .await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

async fn stat(cloud: &Cloud, field: &str) -> u64 {
    cloud
        .stats(CH)
        .await
        .ok()
        .and_then(|v| v[field].as_u64())
        .unwrap_or(u64::MAX)
}

#[tokio::test]
async fn a_connector_on_one_replica_receives_webhooks_posted_to_another() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let a = replica(&redis, json!({})).await?;
    let b = replica(&redis, json!({})).await?;
    let target = RecordingTarget::start().await?;
    let conn = TestConnector::start(Transport::Ws, &a.base, CH, TOKEN, &target.url);
    wait_until(WAIT, "connector connected", || async {
        stat(&b, "connected_clients").await == 1
    })
    .await?;
    let mut sent = HashSet::new();
    for i in 0..20 {
        let (s, v) = b.post("hook", &format!(r#"{{"i":{i}}}"#)).await?;
        assert_eq!(s, 200, "{v}");
        sent.insert(v["message_id"].as_str().unwrap().to_owned());
    }
    wait_until(
        WAIT,
        "every webhook delivered through replica A",
        || async {
            let seen: HashSet<String> = conn.message_ids().into_iter().collect();
            sent.is_subset(&seen)
        },
    )
    .await?;
    wait_until(WAIT, "all settled, seen from replica B", || async {
        stat(&b, "messages_acked").await == 20 && stat(&b, "messages_queued").await == 0
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_sse_ack_sent_to_another_replica_settles_the_lease() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let a = replica(&redis, json!({})).await?;
    let b = replica(&redis, json!({})).await?;
    let mut sse = Sse::open(&a.base, TOKEN).await?;
    let conn = sse.next("connected").await?["connection_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (s, _) = b.post("hook", r#"{"n":1}"#).await?;
    assert_eq!(s, 200);
    let m1 = sse.next("webhook").await?["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = settle(&b, &conn, &m1, "ack").await?;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let (s, v) = settle(&b, &conn, &m1, "ack").await?;
    assert_eq!(s, 404, "a second ACK is not in flight: {v}");

    // NACK and extend through B need the current lease, which B checks in Redis.
    b.post("hook", r#"{"n":2}"#).await?;
    let m2 = sse.next("webhook").await?["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(settle(&b, &conn, &m2, "extend").await?.0, 200);
    assert_eq!(settle(&b, &conn, &m2, "nack").await?.0, 200);
    let again = sse.next("webhook").await?;
    assert_eq!(again["message_id"].as_str(), Some(m2.as_str()));
    assert_eq!(settle(&b, &conn, &m2, "ack").await?.0, 200);

    // An unknown connection is still unknown everywhere.
    assert_eq!(settle(&b, "sse_nope", &m2, "ack").await?.0, 404);
    wait_until(WAIT, "settled everywhere", || async {
        stat(&a, "messages_acked").await == 2
            && stat(&a, "messages_in_flight").await == 0
            && stat(&a, "messages_queued").await == 0
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_killed_replicas_leases_are_reclaimed_by_the_other() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let mut a = replica(&redis, json!({"ack_timeout_seconds": 5})).await?;
    let b = replica(&redis, json!({"ack_timeout_seconds": 5})).await?;
    let mut sse = Sse::open(&a.base, TOKEN).await?;
    sse.next("connected").await?;
    let (_, v) = b.post("hook", r#"{"lost":true}"#).await?;
    let id = v["message_id"].as_str().unwrap().to_owned();
    let first = sse.next("webhook").await?;
    assert_eq!(first["message_id"].as_str(), Some(id.as_str()));
    a.kill9(); // holds the lease, never ACKs, never releases

    let target = RecordingTarget::start().await?;
    let conn = TestConnector::start(Transport::Sse, &b.base, CH, TOKEN, &target.url);
    wait_until(WAIT, "redelivered through replica B", || async {
        conn.message_ids().contains(&id)
    })
    .await?;
    let redelivered = conn.seen.lock()[0].clone();
    assert_eq!(
        redelivered["delivery_count"].as_u64(),
        Some(2),
        "{redelivered}"
    );
    wait_until(WAIT, "settled", || async {
        stat(&b, "messages_acked").await == 1
    })
    .await?;
    Ok(())
}

/// docs/OPERATIONS.md, "Upgrades": a replica that stops cleanly (SIGTERM, as a rolling
/// upgrade stops it) releases its leases at once — the other replica redelivers long before
/// `ack_timeout_seconds` (an hour here) could reclaim them.
#[tokio::test]
async fn a_replica_stopped_cleanly_releases_its_leases_at_once() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let extra = json!({"ack_timeout_seconds": 3600});
    let mut a = Cloud::start_with(
        hooks(extra.clone()),
        &[
            ("WEBHOOK_CONNECT_REDIS_URL", &redis.url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", "e2e"),
            ("WEBHOOK_CONNECT_SHUTDOWN_GRACE_SECONDS", "1"),
        ],
    )
    .await?;
    let b = replica(&redis, extra).await?;
    let mut sse = Sse::open(&a.base, TOKEN).await?;
    sse.next("connected").await?;
    let (_, v) = b.post("hook", r#"{"held":"by A"}"#).await?;
    let id = v["message_id"].as_str().unwrap().to_owned();
    let first = sse.next("webhook").await?;
    assert_eq!(first["message_id"].as_str(), Some(id.as_str()));
    // Never ACKed: A holds the lease when it is told to stop.
    let code = a
        .proc
        .terminate(connect_testkit::timing::scaled(Duration::from_secs(30)));
    assert_eq!(
        code,
        Some(0),
        "SIGTERM ends replica A cleanly:\n{}",
        a.logs()
    );

    let target = RecordingTarget::start().await?;
    let conn = TestConnector::start(Transport::Sse, &b.base, CH, TOKEN, &target.url);
    wait_until(
        connect_testkit::timing::scaled(WAIT),
        "redelivered through replica B",
        || async { conn.message_ids().contains(&id) },
    )
    .await?;
    let redelivered = conn.seen.lock()[0].clone();
    assert_eq!(
        redelivered["message_id"].as_str(),
        Some(id.as_str()),
        "{redelivered}"
    );
    Ok(())
}

#[tokio::test]
async fn token_rotation_on_one_replica_holds_on_the_other() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let a = replica(&redis, json!({})).await?;
    let b = replica(&redis, json!({})).await?;
    let mut old_stream = Sse::open(&b.base, TOKEN).await?;
    old_stream.next("connected").await?;

    let new_token = a.rotate_token(CH).await?;

    // B closes the connection authenticated with the revoked token ...
    let err = old_stream.next("error").await?;
    assert_eq!(err["error"].as_str(), Some("token_revoked"), "{err}");
    // ... refuses the old token and accepts the new one.
    assert_eq!(b.connector_status(CH, TOKEN).await, 401);
    assert_eq!(b.connector_status(CH, &new_token).await, 200);
    Ok(())
}

#[tokio::test]
async fn a_redis_outage_answers_503_and_the_service_heals() -> anyhow::Result<()> {
    let mut redis =
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await?;
    let b = replica(&redis, json!({})).await?;
    assert_eq!(b.post("hook", r#"{"before":1}"#).await?.0, 200);

    redis.kill9();
    let (s, v) = b.post("hook", r#"{"during":1}"#).await?;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["code"].as_str(), Some("buffer_unavailable"), "{v}");
    let health = |cloud: &Cloud| {
        let http = cloud.http.clone();
        let url = format!("{}/health", cloud.base);
        async move {
            let r = http.get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    wait_until(WAIT, "health reports the buffer", || async {
        let (s, v) = health(&b).await;
        s == 503 && v["components"]["buffer"] == "unhealthy"
    })
    .await?;

    redis.restart().await?;
    wait_until(WAIT, "ingress accepts again", || async {
        b.post("hook", r#"{"after":1}"#)
            .await
            .is_ok_and(|(s, _)| s == 200)
    })
    .await?;
    wait_until(WAIT, "health recovers", || async {
        let (s, v) = health(&b).await;
        s == 200 && v["components"]["buffer"] == "healthy"
    })
    .await?;
    assert!(stat(&b, "messages_received").await >= 2);
    Ok(())
}

#[tokio::test]
async fn a_redis_crash_loses_no_acknowledged_webhook_with_appendfsync_always() -> anyhow::Result<()>
{
    let mut redis =
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await?;
    let a = replica(&redis, json!({"max_queue_size": 100000})).await?;
    let b = replica(&redis, json!({"max_queue_size": 100000})).await?;
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut senders = Vec::new();
    for w in 0..8 {
        let base = if w % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let (accepted, stop) = (accepted.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                if let Ok(r) = http
                    .post(format!("{base}/webhook/hook"))
                    .body(format!(r#"{{"w":{w},"i":{i}}}"#))
                    .send()
                    .await
                    && r.status() == 200
                    && let Ok(v) = r.json::<Value>().await
                {
                    accepted
                        .lock()
                        .push(v["message_id"].as_str().unwrap_or_default().to_owned());
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    wait_until(WAIT, "some webhooks accepted", || async {
        accepted.lock().len() >= 300
    })
    .await?;
    redis.kill9();
    let before = accepted.lock().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart().await?;
    wait_until(WAIT, "more accepted after the Redis restart", || async {
        accepted.lock().len() >= before + 100
    })
    .await?;
    stop.cancel();
    for s in senders {
        let _ = s.await;
    }
    let accepted: HashSet<String> = accepted.lock().iter().cloned().collect();
    let target = RecordingTarget::start().await?;
    let conn = TestConnector::start(Transport::Ws, &a.base, CH, TOKEN, &target.url);
    wait_until(
        Duration::from_secs(60),
        "every accepted webhook delivered",
        || async {
            let seen: HashSet<String> = conn.message_ids().into_iter().collect();
            accepted.is_subset(&seen)
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn rate_limits_are_shared_by_the_replicas() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let mut hook = connect_hook(CH, TOKEN, json!({}));
    hook["rate_limit"] = json!({"max_requests": 3, "window_seconds": 60});
    let env = [
        ("WEBHOOK_CONNECT_REDIS_URL", redis.url.as_str()),
        ("WEBHOOK_CONNECT_REDIS_PREFIX", "e2e"),
    ];
    let a = Cloud::start_with(json!({"hook": hook.clone()}), &env).await?;
    let b = Cloud::start_with(json!({"hook": hook}), &env).await?;
    assert_eq!(a.post("hook", r#"{"n":1}"#).await?.0, 200);
    assert_eq!(b.post("hook", r#"{"n":2}"#).await?.0, 200);
    assert_eq!(a.post("hook", r#"{"n":3}"#).await?.0, 200);
    let r = b
        .http
        .post(format!("{}/webhook/hook", b.base))
        .body(r#"{"n":4}"#)
        .send()
        .await?;
    assert_eq!(
        r.status(),
        429,
        "the fourth request within the window, on either replica"
    );
    let retry: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(a.post("hook", r#"{"n":5}"#).await?.0, 429);
    assert_eq!(stat(&a, "messages_received").await, 3);
    Ok(())
}

#[tokio::test]
async fn an_admin_disconnect_on_one_replica_closes_the_connection_on_the_other()
-> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let a = replica(&redis, json!({})).await?;
    let b = replica(&redis, json!({})).await?;
    let mut sse = Sse::open(&a.base, TOKEN).await?;
    let conn = sse.next("connected").await?["connection_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = b
        .admin(
            reqwest::Method::DELETE,
            &format!("/channels/{CH}/connections/{conn}"),
        )
        .await?;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("disconnected")),
        "{v}"
    );
    let err = sse.next("error").await?;
    assert_eq!(
        err["error"].as_str(),
        Some("disconnected_by_admin"),
        "{err}"
    );
    wait_until(WAIT, "deregistered everywhere", || async {
        stat(&b, "connected_clients").await == 0
    })
    .await?;
    let (s, _) = b
        .admin(
            reqwest::Method::DELETE,
            &format!("/channels/{CH}/connections/sse_00000000000000000000000000000000"),
        )
        .await?;
    assert_eq!(s, 404);
    Ok(())
}

#[tokio::test]
async fn a_redis_restart_without_persistence_registers_the_channels_again() -> anyhow::Result<()> {
    // No persistence: the restart loses every key, channel registrations included.
    let mut redis = RedisServer::start().await?;
    let a = replica(&redis, json!({})).await?;
    let b = replica(&redis, json!({})).await?;
    let target = RecordingTarget::start().await?;
    let conn = TestConnector::start(Transport::Ws, &a.base, CH, TOKEN, &target.url);
    wait_until(WAIT, "connector connected", || async {
        stat(&b, "connected_clients").await == 1
    })
    .await?;
    let (s, v) = b.post("hook", r#"{"before":1}"#).await?;
    assert_eq!(s, 200, "{v}");

    redis.restart().await?;
    // Until both replicas registered the channel again, ingress is an outage (503), never
    // "channel not found".
    let answers: Mutex<Vec<(u16, u16)>> = Mutex::default();
    wait_until(WAIT, "both replicas accept again", || async {
        let (sa, _) = a
            .post("hook", r#"{"probe":1}"#)
            .await
            .unwrap_or((0, Value::Null));
        let (sb, _) = b
            .post("hook", r#"{"probe":1}"#)
            .await
            .unwrap_or((0, Value::Null));
        answers.lock().push((sa, sb));
        sa == 200 && sb == 200
    })
    .await?;
    let answers = answers.into_inner();
    assert!(
        answers
            .iter()
            .all(|(x, y)| [200, 503].contains(x) && [200, 503].contains(y)),
        "{answers:?}"
    );
    // Delivery works again: a webhook posted to B reaches the connector on A.
    let (s, v) = b.post("hook", r#"{"after":1}"#).await?;
    assert_eq!(s, 200, "{v}");
    let id = v["message_id"].as_str().unwrap_or_default().to_owned();
    wait_until(
        WAIT,
        "the webhook posted after the restart delivered",
        || async { conn.message_ids().contains(&id) },
    )
    .await?;
    for c in [&a, &b] {
        // The connector's registration survived (put back by its replica) or was renewed.
        wait_until(WAIT, "one connection registered", || async {
            stat(c, "connected_clients").await == 1
        })
        .await?;
        // Each replica noticed the loss by itself and registered its channels again.
        wait_until(
            WAIT,
            "the replica registered its channels again",
            || async {
                c.proc
                    .stderr_text()
                    .contains("channels registered again after the buffer lost its data")
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn rediss_with_a_private_ca() -> anyhow::Result<()> {
    let pki = connect_testkit::TestPki::generate()?;
    let tls_port = connect_testkit::free_port().to_string();
    let (cert, key, ca) = (
        pki.server_cert.to_str().unwrap_or_default(),
        pki.server_key.to_str().unwrap_or_default(),
        pki.ca.to_str().unwrap_or_default(),
    );
    // The plain port stays open for the kit's readiness probe; the cloud gets the TLS port.
    let _redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        ca,
        "--tls-auth-clients",
        "no",
    ])
    .await?;
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let env = [
        ("WEBHOOK_CONNECT_REDIS_URL", url.as_str()),
        ("WEBHOOK_CONNECT_REDIS_PREFIX", "e2e"),
        ("SSL_CERT_FILE", ca),
    ];
    let a = Cloud::start_with(hooks(json!({})), &env).await?;
    let b = Cloud::start_with(hooks(json!({})), &env).await?;
    let target = RecordingTarget::start().await?;
    let conn = TestConnector::start(Transport::Ws, &a.base, CH, TOKEN, &target.url);
    let (s, v) = b.post("hook", r#"{"over":"tls"}"#).await?;
    assert_eq!(s, 200, "{v}");
    let id = v["message_id"].as_str().unwrap_or_default().to_owned();
    wait_until(WAIT, "delivered through Redis over TLS", || async {
        conn.message_ids().contains(&id)
    })
    .await?;
    let h: Value = a
        .http
        .get(format!("{}/health", a.base))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(h["components"]["buffer"], "healthy", "{h}");
    assert_eq!(h["components"]["buffer_backend"], "redis", "{h}");

    // Trusting another CA only: start-up fails and says why.
    let other = connect_testkit::TestPki::generate()?;
    let other_ca = other.ca.to_string_lossy().into_owned();
    let dir = tempfile::tempdir()?;
    let hooks_file = dir.path().join("webhooks.json");
    std::fs::write(&hooks_file, hooks(json!({})).to_string())?;
    let listen = format!("127.0.0.1:{}", connect_testkit::free_port());
    let data = dir.path().join("data");
    let mut p = connect_testkit::ChildProcess::spawn(
        connect_testkit::workspace_bin("webhook-connect-cloud")?,
        &[],
        &[
            ("WEBHOOK_CONNECT_LISTEN", listen.as_str()),
            (
                "WEBHOOK_CONNECT_DATA_DIR",
                data.to_str().unwrap_or_default(),
            ),
            (
                "WEBHOOKS_CONFIG_FILE",
                hooks_file.to_str().unwrap_or_default(),
            ),
            ("WEBHOOK_CONNECT_REDIS_URL", url.as_str()),
            ("SSL_CERT_FILE", other_ca.as_str()),
        ],
        "cloud",
    )?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.is_running() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(p.exit_status().and_then(|s| s.code()), Some(69));
    let err = p.stderr_text();
    assert!(
        err.contains("cannot use the Redis buffer") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    Ok(())
}

/// `rediss://` seeds of a Redis Cluster: the client learns the other nodes from the cluster
/// itself, and must reach them over TLS too (with the private CA), following MOVED answers.
/// Two clouds on the TLS cluster; a webhook posted to one reaches the real connector on the
/// other, with keys spread over every node.
#[tokio::test]
async fn rediss_on_a_cluster_with_a_private_ca() -> anyhow::Result<()> {
    let pki = connect_testkit::TestPki::generate()?;
    let cluster = connect_testkit::RedisCluster::start_tls(&pki).await?;
    let urls = cluster.tls_urls();
    assert!(urls.starts_with("rediss://"), "{urls}");
    let ca = pki.ca.to_str().unwrap_or_default();
    let env = [
        ("WEBHOOK_CONNECT_REDIS_CLUSTER_URLS", urls.as_str()),
        ("WEBHOOK_CONNECT_REDIS_PREFIX", "tlscluster"),
        ("SSL_CERT_FILE", ca),
    ];
    // Several channels, so that keys land on every primary.
    let channels: Vec<String> = (0..6).map(|i| format!("tls-{i}")).collect();
    let doc: serde_json::Map<String, Value> = channels
        .iter()
        .map(|c| (c.clone(), connect_hook(c, TOKEN, json!({}))))
        .collect();
    let a = Cloud::start_with(Value::Object(doc.clone()), &env).await?;
    let b = Cloud::start_with(Value::Object(doc), &env).await?;
    let h: Value = a
        .http
        .get(format!("{}/health", a.base))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(h["components"]["buffer"], "healthy", "{h}");
    let target = RecordingTarget::start().await?;
    let mut ids = HashSet::new();
    let mut connectors = Vec::new();
    for c in &channels {
        connectors.push(crate::connector::connector_flags(
            &a,
            c,
            TOKEN,
            "websocket",
            &target.url,
            &[],
        )?);
        let (s, v) = b.post(c, r#"{"over":"tls cluster"}"#).await?;
        assert_eq!(s, 200, "{c}: {v}\n{}", b.logs());
        ids.insert(v["message_id"].as_str().unwrap_or_default().to_owned());
    }
    wait_until(
        WAIT,
        "every channel's webhook delivered over the TLS cluster",
        || async {
            let got: HashSet<String> = target
                .requests()
                .iter()
                .filter_map(|r| r.header("x-webhook-message-id").map(str::to_owned))
                .collect();
            ids.is_subset(&got)
        },
    )
    .await?;
    // The channels' keys really are spread over the primaries.
    let owners: HashSet<u16> = channels
        .iter()
        .map(|c| cluster.owner(cluster.keyslot(&format!("tlscluster:{{{c}}}"))?))
        .collect::<anyhow::Result<_>>()?;
    assert!(owners.len() > 1, "all channels on one node: {owners:?}");
    drop(connectors);
    Ok(())
}
