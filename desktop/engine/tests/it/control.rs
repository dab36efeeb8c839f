//! History, replay, pause/resume, disconnect, removal, queue depth, module mode and shutdown
//! NACKs, against the real cloud.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use connect_engine::api::Outcome;
use connect_engine::api::Transport;
use connect_engine::config::{ChannelConfig, ConnectorConfig, TransportChoice};
use connect_engine::{Engine, LinkState, ReplayRequest};
use connect_testkit::{RecordingTarget, wait_until, within};
use serde_json::json;

use crate::harness::{Cloud, Logs, TOKEN, engine_config, retries_elapse, start_engine, status};

const T: Duration = Duration::from_secs(30);

async fn connected(engine: &connect_engine::EngineHandle) {
    wait_until(T, "connected", || async {
        status(engine).state == LinkState::Connected
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_new_engine_takes_over_history_counters_and_pause_carried_out_of_the_old_one() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let cfg = || {
        engine_config(
            &cloud.base,
            "ch",
            TOKEN,
            "websocket",
            json!({"url": target.url}),
        )
    };
    let old = Engine::start(cfg()).unwrap();
    connected(&old).await;
    let bodies = ["{\"n\":1}", "[\"ü\",\t2.50]", "{ \"n\" : 3 }\n"];
    for b in bodies {
        cloud.post(b).await.unwrap();
    }
    target.wait_for_count(3, T).await.unwrap();
    wait_until(T, "three delivered", || async {
        status(&old).counters.delivered == 3
    })
    .await
    .unwrap();
    // The queue poller's first reading (every 5 s while connected).
    wait_until(T, "the queue read at the cloud", || async {
        status(&old).queue.is_some()
    })
    .await
    .unwrap();
    old.set_paused(true);
    let before = old.events("ch").unwrap();
    let first_id = before.last().unwrap().message_id.clone();
    let first_detail = old.event("ch", &first_id).unwrap();
    old.shutdown(Duration::from_secs(5)).await;
    let queue = status(&old).queue;
    let carried = old.carry_out();
    assert!(
        old.events("ch").unwrap().is_empty(),
        "carried out, not copied"
    );
    // Through the file format: JSON.
    let text = serde_json::to_string(&carried).unwrap();
    let carried: connect_engine::Carried = serde_json::from_str(&text).unwrap();

    let mut config = cfg();
    let channels = std::mem::take(&mut config.channels);
    let new = Engine::start(config).unwrap();
    new.carry_in(carried);
    for c in channels {
        new.add_channel(c).unwrap();
    }
    assert!(new.is_paused(), "the pause switch is carried");
    // Durations through JSON may differ in the last bit (serde_json's fast float parsing).
    let ms = |d: f64| (d * 1e6).round();
    let plain = |mut v: Vec<connect_engine::EventSummary>| {
        for e in &mut v {
            e.duration_ms = ms(e.duration_ms);
        }
        v
    };
    let plain_detail = |mut d: connect_engine::EventDetail| {
        d.summary.duration_ms = ms(d.summary.duration_ms);
        for a in &mut d.attempts {
            a.duration_ms = ms(a.duration_ms);
        }
        d
    };
    assert_eq!(plain(new.events("ch").unwrap()), plain(before));
    assert_eq!(
        plain_detail(new.event("ch", &first_id).unwrap()),
        plain_detail(first_detail)
    );
    assert_eq!(status(&new).counters.delivered, 3);
    assert_eq!(status(&new).counters.received, 3);
    // Paused, the new engine never reads the queue itself: the carried reading stands.
    assert!(queue.is_some());
    assert_eq!(status(&new).queue, queue);

    // A carried event replays byte for byte; new events are numbered after the carried ones.
    let r = new
        .replay(ReplayRequest {
            key: "ch".into(),
            message_id: first_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.summary.outcome, Outcome::Delivered);
    let got = target.wait_for_count(4, T).await.unwrap();
    assert_eq!(got[3].body, got[0].body);
    new.set_paused(false);
    cloud.post("{\"n\":4}").await.unwrap();
    target.wait_for_count(5, T).await.unwrap();
    wait_until(T, "four delivered", || async {
        status(&new).counters.delivered == 4
    })
    .await
    .unwrap();
    let events = new.events("ch").unwrap();
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(events[0].outcome, Outcome::Delivered);
    assert_eq!(
        events[0].replay_of, None,
        "newest first: the webhook after the restart"
    );
    new.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn history_keeps_the_request_and_replay_resends_it_exactly_or_edited() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let other = RecordingTarget::start().await.unwrap();
    let engine = start_engine(
        &cloud.base,
        "ch",
        TOKEN,
        "websocket",
        json!({"url": target.url}),
    );
    connected(&engine).await;
    let body = "{ \"b\" :\t[1, 2.50, \"ü\"] }\n";
    cloud.post(body).await.unwrap();
    let reqs = target.wait_for_count(1, T).await.unwrap();
    let id = reqs[0].header("x-webhook-message-id").unwrap().to_owned();
    wait_until(T, "event settled", || async {
        engine.events("ch").unwrap()[0].outcome == Outcome::Delivered
    })
    .await
    .unwrap();
    let d = engine.event("ch", &id).unwrap();
    assert_eq!(d.request.body_text.as_deref(), Some(body));
    assert_eq!(d.request.body_len, body.len() as u64);
    assert!(!d.request.body_truncated);
    assert_eq!(d.request.method.as_deref(), Some("POST"));
    assert!(
        d.request
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v == "application/json")
    );
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].status, Some(200));
    assert_eq!(d.summary.response_status, Some(200));
    assert!(status(&engine).latency.p50_ms.is_some());

    // Same target, unchanged: the exact bytes again, with the original message id.
    let r = engine
        .replay(ReplayRequest {
            key: "ch".into(),
            message_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.summary.outcome, Outcome::Delivered);
    assert_eq!(r.summary.replay_of.as_deref(), Some(id.as_str()));
    let reqs = target.wait_for_count(2, T).await.unwrap();
    assert_eq!(reqs[1].body, reqs[0].body);
    assert_eq!(reqs[1].header("x-webhook-message-id"), Some(id.as_str()));

    // Another URL, edited body and headers; the target answers 422 → a failed replay.
    other.set_status(422);
    let edited = b"edited \x00 bytes".to_vec();
    let r = engine
        .replay(ReplayRequest {
            key: "ch".into(),
            message_id: id.clone(),
            target_url: Some(format!("{}/elsewhere", other.url)),
            headers: Some(vec![("X-Edited".into(), "yes".into())]),
            body_base64: Some(base64::engine::general_purpose::STANDARD.encode(&edited)),
        })
        .await
        .unwrap();
    assert_eq!(r.summary.outcome, Outcome::Failed);
    assert_eq!(r.attempts[0].status, Some(422));
    let got = other.wait_for_count(1, T).await.unwrap();
    assert_eq!(got[0].body.as_ref(), edited.as_slice());
    assert_eq!(got[0].path, "/elsewhere");
    assert_eq!(got[0].header("x-edited"), Some("yes"));
    assert!(got[0].header("content-type").is_none());

    let events = engine.events("ch").unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events.iter().filter(|e| e.replay_of.is_some()).count(), 2);
    // Replays are not cloud deliveries.
    assert_eq!(status(&engine).counters.delivered, 1);
    assert!(engine.event("ch", "msg_missing").is_err());
    assert!(
        engine
            .replay(ReplayRequest {
                key: "nope".into(),
                message_id: id,
                ..Default::default()
            })
            .await
            .is_err()
    );
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test]
async fn pause_keeps_messages_at_the_cloud_and_resume_delivers_them() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let engine = start_engine(
        &cloud.base,
        "ch",
        TOKEN,
        "websocket",
        json!({"url": target.url}),
    );
    connected(&engine).await;
    engine.set_paused(true);
    wait_until(T, "paused and gone from the cloud", || async {
        status(&engine).state == LinkState::Paused
            && cloud
                .admin_get("/channels/ch/stats")
                .await
                .is_ok_and(|v| v["connected_clients"] == 0)
    })
    .await
    .unwrap();
    cloud.post("{\"n\":1}").await.unwrap();
    wait_until(T, "queued at the cloud", || async {
        cloud
            .admin_get("/channels/ch/stats")
            .await
            .is_ok_and(|v| v["messages_queued"] == 1)
    })
    .await
    .unwrap();
    // Eight of the engine's own retry delays (~4 s) pass before the check (a probe engine of its own:
    // pausing pauses every channel of this one), so a paused channel that reconnected on its
    // own after a delay would have forwarded the webhook by then.
    let probe = start_engine(
        "http://127.0.0.1:1",
        "probe",
        "probe-token",
        "websocket",
        json!({"url": "http://127.0.0.1:1/"}),
    );
    retries_elapse(&probe, 8).await;
    probe.shutdown(Duration::from_secs(2)).await;
    assert_eq!(target.count(), 0, "forwarded while paused");
    engine.set_paused(false);
    target.wait_for_count(1, T).await.unwrap();
    connected(&engine).await;

    // Disconnect one channel, then connect it again.
    engine.set_channel_enabled("ch", false).unwrap();
    wait_until(T, "disconnected", || async {
        status(&engine).state == LinkState::Disconnected
    })
    .await
    .unwrap();
    cloud.post("{\"n\":2}").await.unwrap();
    engine.set_channel_enabled("ch", true).unwrap();
    target.wait_for_count(2, T).await.unwrap();
    assert!(engine.set_channel_enabled("other", true).is_err());
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

/// The periodic reading comes every 5 s; each of these waits is shorter (2.5 s, stretched by
/// `CONNECT_TEST_TIME_SCALE` but always below the tick), so only the wake on connecting and
/// `refresh_queue` can satisfy it (the poller's timer restarts after a reading).
fn sooner_than_a_tick() -> Duration {
    connect_testkit::timing::scaled_below(Duration::from_millis(2500), Duration::from_secs(5))
}

#[tokio::test]
async fn the_queue_is_read_on_connecting_and_again_when_asked() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let engine = start_engine(
        &cloud.base,
        "ch",
        TOKEN,
        "websocket",
        json!({"url": target.url}),
    );
    connected(&engine).await;
    wait_until(
        sooner_than_a_tick(),
        "a reading right after connecting",
        || async { status(&engine).queue.is_some() },
    )
    .await
    .unwrap();
    assert_eq!(status(&engine).queue.unwrap().dead_letters, 0);
    // A 4xx makes a dead letter at the cloud; the reading does not know yet.
    target.set_status(400);
    cloud.post("{\"dead\":1}").await.unwrap();
    wait_until(T, "dead-lettered", || async {
        status(&engine).counters.dead_lettered == 1
    })
    .await
    .unwrap();
    engine.refresh_queue("ch").unwrap();
    wait_until(
        sooner_than_a_tick(),
        "the dead letter in a fresh reading",
        || async { status(&engine).queue.is_some_and(|q| q.dead_letters == 1) },
    )
    .await
    .unwrap();
    assert!(engine.refresh_queue("no-such-channel").is_err());
    engine.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn channels_are_added_replaced_and_removed_at_runtime_and_queue_depth_is_read() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    let engine = Engine::start(ConnectorConfig::new(Vec::new())).unwrap();
    assert!(engine.status().is_empty());
    let cfg = ChannelConfig::basic(
        "app-key-1",
        &cloud.base,
        "ch",
        TOKEN,
        TransportChoice::Only(Transport::Sse),
        Some(&target.url),
        &BTreeMap::new(),
    )
    .unwrap();
    engine.add_channel(cfg.clone()).unwrap();
    wait_until(T, "connected", || async {
        engine
            .status()
            .first()
            .is_some_and(|s| s.state == LinkState::Connected && s.key == "app-key-1")
    })
    .await
    .unwrap();
    cloud.post("{\"a\":1}").await.unwrap();
    target.wait_for_count(1, T).await.unwrap();
    wait_until(T, "queue depth from /connect/status", || async {
        engine.status()[0]
            .queue
            .as_ref()
            .is_some_and(|q| q.connected && q.pending == 0)
    })
    .await
    .unwrap();
    // Replacing keeps the history.
    engine.add_channel(cfg).unwrap();
    assert_eq!(engine.status().len(), 1);
    assert_eq!(engine.events("app-key-1").unwrap().len(), 1);
    cloud.post("{\"a\":2}").await.unwrap();
    target.wait_for_count(2, T).await.unwrap();
    within(
        T,
        "remove",
        engine.remove_channel("app-key-1", Duration::from_secs(2)),
    )
    .await
    .unwrap();
    assert!(engine.status().is_empty());
    wait_until(T, "no connection left at the cloud", || async {
        cloud
            .admin_get("/channels/ch/stats")
            .await
            .is_ok_and(|v| v["connected_clients"] == 0)
    })
    .await
    .unwrap();
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test]
async fn module_mode_saves_to_disk_and_dead_letters_unknown_ids() {
    let cloud = Cloud::start("ch").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let webhooks = json!({
        "hook": {"module": "save_to_disk", "module-config": {"path": "out", "base_dir": dir.path()}},
    });
    let wpath = dir.path().join("webhooks.json");
    std::fs::write(&wpath, webhooks.to_string()).unwrap();
    let cfg = json!({
        "cloud_url": cloud.base, "channel": "ch", "token": TOKEN, "protocol": "websocket",
        "reconnect_delay": 0.1, "webhooks_config": wpath,
    });
    let p = dir.path().join("connector.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    let cfg = connect_engine::config::load(&connect_engine::Sources {
        config_file: Some(p),
        ..Default::default()
    })
    .unwrap();
    let engine = Engine::start(cfg).unwrap();
    connected(&engine).await;
    cloud.post("{\"saved\":true}").await.unwrap();
    // `blobhook` has no local definition and there is no `default`: NACK without retry.
    let s = cloud
        .post_raw(
            "blobhook",
            b"raw".to_vec(),
            &[("content-type", "text/plain")],
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    // The module writes a temporary file and renames it into place: count only finished
    // documents, never the temporary one caught mid-write.
    let documents = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&out)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.extension().is_some_and(|x| x == "json")
                            && !p.file_name().unwrap().to_string_lossy().starts_with('.')
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until(T, "one file written", || async { documents().len() == 1 })
        .await
        .unwrap();
    let path = documents().remove(0);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(doc.to_string().contains("\"saved\":true"), "{doc}");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("msg_") && name.ends_with(".json"),
        "{name}"
    );
    wait_until(T, "ack and dead letter at the cloud", || async {
        cloud
            .admin_get("/channels/ch/stats")
            .await
            .is_ok_and(|v| v["messages_acked"] == 1 && v["dead_letters"] == 1)
    })
    .await
    .unwrap();
    let s = status(&engine);
    assert_eq!((s.counters.delivered, s.counters.dead_lettered), (1, 1));
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test]
async fn shutdown_nacks_deliveries_still_running_after_the_grace() {
    let cloud = Cloud::start("ch").await.unwrap();
    let target = RecordingTarget::start().await.unwrap();
    target.set_delay(Duration::from_secs(60));
    let engine = start_engine(
        &cloud.base,
        "ch",
        TOKEN,
        "websocket",
        json!({"url": target.url}),
    );
    connected(&engine).await;
    cloud.post("{\"slow\":1}").await.unwrap();
    target.wait_for_count(1, T).await.unwrap();
    within(T, "shutdown", engine.shutdown(Duration::from_millis(500)))
        .await
        .unwrap();
    // Handed back at once, not after the 30 s ack timeout.
    wait_until(Duration::from_secs(10), "NACK at the cloud", || async {
        cloud
            .admin_get("/channels/ch/stats")
            .await
            .is_ok_and(|v| v["messages_nacked"] == 1 && v["messages_in_flight"] == 0)
    })
    .await
    .unwrap();
}

/// etcd module mode against a real etcd: definitions under `{prefix}{namespace}/webhooks/` are
/// read at start and followed live; an invalid put keeps the previous definition; the last good
/// definitions serve while etcd is down and the watch resumes after it returns; a deleted
/// definition dead-letters the next message.
#[tokio::test]
async fn etcd_module_mode_follows_puts_and_deletes_live() {
    use etcd_client::Client;
    let logs = Logs::capture();
    let mut etcd = connect_testkit::EtcdServer::start().await.unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let def = |sub: &str| {
        json!({"module": "save_to_disk", "module-config": {"path": sub, "base_dir": dir.path()}})
            .to_string()
    };
    let key = "/cwm/team/webhooks/hook";
    kv.put(key, def("a"), None).await.unwrap();
    // Another namespace's definition of the same id is not ours.
    kv.put("/cwm/default/webhooks/hook", def("wrong"), None)
        .await
        .unwrap();
    let cloud = Cloud::start("ch").await.unwrap();
    let cfg = json!({
        "cloud_url": cloud.base, "channel": "ch", "token": TOKEN, "protocol": "websocket",
        "reconnect_delay": 0.1, "etcd_host": "127.0.0.1", "etcd_port": etcd.port,
        "namespace": "team",
    });
    let p = dir.path().join("connector.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    let cfg = connect_engine::config::load(&connect_engine::Sources {
        config_file: Some(p),
        ..Default::default()
    })
    .unwrap();
    let engine = Engine::start(cfg).unwrap();
    connected(&engine).await;
    let count = |sub: &str| {
        std::fs::read_dir(dir.path().join(sub))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    cloud.post("{\"n\":1}").await.unwrap();
    wait_until(T, "saved under a/", || async { count("a") == 1 })
        .await
        .unwrap();

    // An invalid put keeps the previous definition.
    kv.put(key, "{\"module\": \"no_such_module\"}", None)
        .await
        .unwrap();
    // The engine has seen it (and kept the previous definition) before the next webhook.
    logs.wait_line(
        T,
        "the invalid put rejected",
        &["invalid definition; keeping the previous one"],
    )
    .await;
    cloud.post("{\"n\":2}").await.unwrap();
    wait_until(T, "still saved under a/", || async { count("a") == 2 })
        .await
        .unwrap();

    // A valid put takes over.
    let rev = kv.put(key, def("b"), None).await.unwrap();
    applied(&logs, rev.header().map(|h| h.revision()), T).await;
    cloud.post("{\"n\":3}").await.unwrap();
    wait_until(T, "saved under b/", || async { count("b") == 1 })
        .await
        .unwrap();
    let before_b = count("b");

    // etcd down: the last good definitions keep serving.
    etcd.kill9();
    cloud.post("{\"n\":4}").await.unwrap();
    wait_until(T, "served while etcd is down", || async {
        count("b") == before_b + 1
    })
    .await
    .unwrap();

    // etcd back: the watch resumes; a delete dead-letters the next message.
    etcd.restart().await.unwrap();
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let rev = kv.delete(key, None).await.unwrap();
    // The engine's watch reconnects with backoff after the outage.
    applied(
        &logs,
        rev.header().map(|h| h.revision()),
        Duration::from_secs(60),
    )
    .await;
    let dead = || async {
        cloud
            .admin_get("/channels/ch/stats")
            .await
            .map(|v| v["dead_letters"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    assert_eq!(dead().await, 0);
    cloud.post("{\"n\":5}").await.unwrap();
    wait_until(T, "a dead letter after the delete", || async {
        dead().await == 1
    })
    .await
    .unwrap();
    assert_eq!(count("b"), before_b + 1, "saved by the deleted definition");
    assert_eq!(count("wrong"), 0);
    within(T, "shutdown", engine.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

/// Waits until the engine's log says it applied etcd `revision` (its watch reached that change).
async fn applied(logs: &Logs, revision: Option<i64>, within: Duration) {
    let revision = revision.expect("etcd answers with a header");
    logs.wait_line(
        within,
        &format!("etcd revision {revision} applied"),
        &[
            "module definitions updated from etcd",
            &format!("revision={revision} "),
        ],
    )
    .await;
}
