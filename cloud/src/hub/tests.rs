//! Unit tests of the dispatcher and the long-poll accounting, against an embedded buffer with
//! a manual clock. The dispatcher is driven by hand (`dispatch_once`), so no task races them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use connect_buffer::embedded::EmbeddedBuffer;
use connect_buffer::suite::{message, registration, settings};
use connect_buffer::{Buffer, ChannelSettings, ManualClock};
use connect_protocol::ids::Protocol;
use connect_protocol::time::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::hub::channel::ChannelRt;
use crate::hub::conn::{Conn, NewConn};
use crate::hub::dispatch::dispatch_once;
use crate::metrics::Metrics;

const CH: &str = "orders";

struct Fixture {
    buffer: Arc<dyn Buffer>,
    clock: Arc<ManualClock>,
    metrics: Metrics,
    rt: ChannelRt,
    _dir: tempfile::TempDir,
}

async fn fixture(s: ChannelSettings) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let buffer: Arc<dyn Buffer> =
        Arc::new(EmbeddedBuffer::open(dir.path(), clock.clone()).expect("buffer"));
    let rec = buffer
        .register_channel(registration(CH, s.clone()))
        .await
        .expect("register")
        .record;
    let rt = ChannelRt::new(CH.into(), rec.settings.clone(), rec.token.clone());
    Fixture {
        buffer,
        clock,
        metrics: Metrics::default(),
        rt,
        _dir: dir,
    }
}

impl Fixture {
    async fn enqueue(&self, n: usize) {
        for _ in 0..n {
            self.buffer
                .enqueue(message(&self.clock, CH, "hook-a", 3600))
                .await
                .expect("enqueue");
        }
    }

    async fn connect(&self, id: &str, protocol: Protocol) -> Arc<Conn> {
        assert!(
            self.buffer
                .add_connection(CH, id, 10)
                .await
                .expect("add connection")
        );
        let c = Arc::new(Conn::new(
            id.into(),
            NewConn {
                channel: CH.into(),
                protocol,
                connector_id: None,
                remote_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                protocol_version: 2,
                token_digest: String::new(),
                poll_affinity: None,
            },
        ));
        self.rt.add_connection(
            c.clone(),
            || self.buffer.notifier(CH),
            CancellationToken::new,
        );
        c
    }

    async fn dispatch(&self) {
        dispatch_once(self.buffer.as_ref(), &self.metrics, &self.rt)
            .await
            .expect("dispatch");
    }

    async fn ready(&self) -> u64 {
        self.buffer.stats(CH).await.expect("stats").ready
    }
}

/// What a connection was handed so far.
async fn received(c: &Conn) -> usize {
    let mut rx = c.receiver().await;
    let mut n = 0;
    while let Ok(b) = rx.try_recv() {
        n += b.len();
    }
    n
}

#[tokio::test]
async fn dispatch_shares_messages_evenly_between_connections() {
    let f = fixture(settings()).await;
    let a = f.connect("ws_a", Protocol::Websocket).await;
    let b = f.connect("ws_b", Protocol::Websocket).await;
    f.enqueue(6).await;
    f.dispatch().await;
    assert_eq!((a.in_flight(), b.in_flight()), (3, 3));
    assert_eq!((received(&a).await, received(&b).await), (3, 3));
    assert_eq!(f.ready().await, 0);
}

#[tokio::test]
async fn dispatch_prefers_the_connection_with_fewer_leases() {
    let f = fixture(settings()).await;
    let a = f.connect("ws_a", Protocol::Websocket).await;
    f.enqueue(4).await;
    f.dispatch().await;
    assert_eq!(a.in_flight(), 4, "a lone connection takes a batch");
    let b = f.connect("ws_b", Protocol::Websocket).await;
    f.enqueue(3).await;
    f.dispatch().await;
    // b has no lease, so it is served first until it catches up with a.
    assert_eq!((a.in_flight(), b.in_flight()), (4, 3));
}

#[tokio::test]
async fn dispatch_stays_within_max_in_flight() {
    let f = fixture(ChannelSettings {
        max_in_flight: 2,
        ..settings()
    })
    .await;
    let a = f.connect("ws_a", Protocol::Websocket).await;
    f.enqueue(5).await;
    f.dispatch().await;
    assert_eq!(a.in_flight(), 2);
    assert_eq!(f.ready().await, 3);
    // Settling one frees exactly one slot.
    a.record_ack(true);
    f.dispatch().await;
    assert_eq!(a.in_flight(), 2);
    assert_eq!(f.ready().await, 2);
}

#[tokio::test]
async fn a_poll_connection_takes_only_what_its_request_wants() {
    let f = fixture(settings()).await;
    let p = f.connect("lp_a", Protocol::LongPoll).await;
    f.enqueue(5).await;
    f.dispatch().await;
    assert_eq!(p.in_flight(), 0, "no request waiting: nothing is leased");
    p.poll_want(2, 100);
    f.dispatch().await;
    assert_eq!(p.in_flight(), 2);
    assert_eq!(received(&p).await, 2);
    assert_eq!(p.capacity(100), 0, "the request's window is used up");
    assert_eq!(f.ready().await, 3);
}

#[tokio::test]
async fn a_poll_window_the_buffer_cannot_fill_is_given_back() {
    let f = fixture(settings()).await;
    let p = f.connect("lp_a", Protocol::LongPoll).await;
    f.enqueue(1).await;
    p.poll_want(3, 100);
    f.dispatch().await;
    assert_eq!(p.in_flight(), 1);
    // Two slots of the window were reserved and not leased: they stay open for the request.
    assert_eq!(p.capacity(100), 2);
    f.enqueue(1).await;
    f.dispatch().await;
    assert_eq!(p.in_flight(), 2);
    assert_eq!(p.capacity(100), 1);
    p.poll_stop();
    assert_eq!(p.capacity(100), 0);
}

#[tokio::test]
async fn a_poll_window_is_bounded_by_max_in_flight() {
    let f = fixture(settings()).await;
    let p = f.connect("lp_a", Protocol::LongPoll).await;
    f.enqueue(3).await;
    p.poll_want(10, 2);
    assert_eq!(p.capacity(2), 2);
    assert!(!p.poll_refill(10, 2), "an open window is not refilled");
    p.poll_stop();
    assert!(
        p.poll_refill(10, 2),
        "an empty window with free slots is reopened"
    );
}

#[tokio::test]
async fn a_newer_poll_request_answers_the_older_one() {
    let f = fixture(settings()).await;
    let p = f.connect("lp_a", Protocol::LongPoll).await;
    let mut first = p.poll_begin();
    let mut second = p.poll_begin();
    assert!(
        first.cancelled.try_recv().is_ok(),
        "the older request is answered"
    );
    // The older request ending must not clear the newer one's slot.
    p.poll_end(&first);
    p.cancel_poll();
    assert!(
        second.cancelled.try_recv().is_ok(),
        "cancel_poll still reaches the newer request"
    );
}

#[tokio::test]
async fn a_closing_connection_gets_nothing() {
    let f = fixture(settings()).await;
    let a = f.connect("ws_a", Protocol::Websocket).await;
    a.close(crate::hub::conn::CloseReason::Admin);
    f.enqueue(2).await;
    f.dispatch().await;
    assert_eq!(a.in_flight(), 0);
    assert_eq!(f.ready().await, 2);
}

#[tokio::test]
async fn a_connection_holds_at_most_its_outbox_of_large_messages() {
    let mut s = settings();
    s.max_in_flight = 100;
    let f = fixture(s).await;
    let c = f.connect("ws_big", Protocol::Websocket).await;
    for _ in 0..30 {
        let mut m = message(&f.clock, CH, "hook-a", 3600);
        m.body = Some(vec![b'x'; 1024 * 1024]);
        f.buffer.enqueue(m).await.expect("enqueue");
    }
    f.dispatch().await;
    // 8 MiB of outbox: 8 of the 1 MiB messages (with their envelopes: 7 fill it, the 8th is
    // the one that reaches it), not all 30 that max_in_flight would allow.
    let mut rx = c.receiver().await;
    let mut held = Vec::new();
    while let Ok(b) = rx.try_recv() {
        held.push(b);
    }
    let first: usize = held.iter().map(|b| b.len()).sum();
    assert!((1..=9).contains(&first), "{first} messages held at once");
    assert_eq!(c.outbox_room(), 0);
    f.dispatch().await;
    assert!(
        rx.try_recv().is_err(),
        "nothing more while the outbox is full"
    );

    // The transport wrote them (dropped the batches): room again, and the rest follows.
    held.clear();
    assert_eq!(c.outbox_room(), crate::hub::conn::OUTBOX_BYTES);
    f.dispatch().await;
    let mut next = 0;
    while let Ok(b) = rx.try_recv() {
        next += b.len();
    }
    assert!((1..=9).contains(&next), "{next}");
}

#[tokio::test]
async fn one_message_larger_than_the_outbox_is_still_delivered() {
    let f = fixture(settings()).await;
    let c = f.connect("ws_huge", Protocol::Websocket).await;
    let mut m = message(&f.clock, CH, "hook-a", 3600);
    m.body = Some(vec![b'x'; 9 * 1024 * 1024]);
    f.buffer.enqueue(m).await.expect("enqueue");
    f.dispatch().await;
    assert_eq!(received(&c).await, 1);
}

/// Issue #14: a channel nobody connects to has no dispatcher task (no memory for it, no
/// wake-ups); the first connection starts one, which then delivers.
#[tokio::test]
async fn a_channel_gets_its_dispatcher_task_at_its_first_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let buffer: Arc<dyn Buffer> =
        Arc::new(EmbeddedBuffer::open(dir.path(), clock.clone()).expect("buffer"));
    let tracker = tokio_util::task::TaskTracker::new();
    let hub = crate::hub::Hub::new(
        buffer.clone(),
        Arc::new(Metrics::default()),
        tracker.clone(),
    );
    for i in 0..100 {
        let rec = buffer
            .register_channel(registration(&format!("idle-{i}"), settings()))
            .await
            .expect("register")
            .record;
        hub.upsert_channel(&rec);
    }
    assert_eq!(
        tracker.len(),
        0,
        "dispatchers of channels without connections"
    );

    let added = hub
        .add_conn(NewConn {
            channel: "idle-7".into(),
            protocol: Protocol::Websocket,
            connector_id: None,
            remote_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            protocol_version: 2,
            token_digest: String::new(),
            poll_affinity: None,
        })
        .await
        .expect("add");
    let crate::hub::AddConn::Added(conn) = added else {
        panic!("not added");
    };
    assert_eq!(tracker.len(), 1);
    assert!(hub.channel("idle-7").is_some_and(|rt| rt.has_dispatcher()));
    buffer
        .enqueue(message(&clock, "idle-7", "hook-a", 3600))
        .await
        .expect("enqueue");
    let mut rx = conn.receiver().await;
    let batch = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered in time")
        .expect("a batch");
    assert_eq!(batch.len(), 1);
    hub.close_all(crate::hub::conn::CloseReason::Shutdown);
    tracker.close();
    tracker.wait().await;
}

/// Housekeeping's cost follows what is due, not how many connections are open: with
/// connections on many channels and no grace ending it checks no token; a rotation's grace end
/// checks that channel's connections, once, and closes the one still on the previous token
/// (4005). It used to check every connection's token every second: ~8 ms of a worker with
/// 10,000 idle connectors, which showed in ingest p99 (issue #13).
#[tokio::test]
async fn housekeeping_checks_tokens_only_where_a_grace_ended() {
    use crate::hub::conn::CloseReason;
    use crate::hub::{AddConn, Hub};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let buffer: Arc<dyn Buffer> =
        Arc::new(EmbeddedBuffer::open(dir.path(), clock).expect("buffer"));
    let hub = Hub::new(
        buffer.clone(),
        Arc::new(Metrics::default()),
        tokio_util::task::TaskTracker::new(),
    );
    let mut records = Vec::new();
    let mut conns = Vec::new();
    for i in 0..40 {
        let name = format!("ch{i}");
        let rec = buffer
            .register_channel(registration(&name, settings()))
            .await
            .expect("register")
            .record;
        hub.upsert_channel(&rec);
        let added = hub
            .add_conn(NewConn {
                channel: name,
                protocol: Protocol::Websocket,
                connector_id: None,
                remote_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                protocol_version: 2,
                token_digest: rec.token.current_digest.clone(),
                poll_affinity: None,
            })
            .await
            .expect("add connection");
        let AddConn::Added(c) = added else {
            panic!("connection refused");
        };
        records.push(rec);
        conns.push(c);
    }
    for _ in 0..3 {
        hub.housekeeping().await;
    }
    assert_eq!(hub.token_checks(), 0, "no grace ended: no token checked");

    // ch0's token rotated with a short grace: its connection stays until the grace ends.
    let mut rotated = records[0].clone();
    rotated.token.previous_digest = Some(rotated.token.current_digest.clone());
    rotated.token.current_digest = "ab".repeat(32);
    let grace = Duration::from_millis(300);
    rotated.token.previous_expires_at = Some(Timestamp(
        Timestamp::now().0 + chrono::Duration::from_std(grace).expect("grace"),
    ));
    hub.upsert_channel(&rotated);
    hub.housekeeping().await;
    assert!(!conns[0].is_closing(), "still in its grace");
    let deadline = Instant::now() + grace + Duration::from_secs(10);
    while !conns[0].is_closing() {
        assert!(
            Instant::now() < deadline,
            "not closed after its grace ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.housekeeping().await;
    }
    assert_eq!(conns[0].close_reason(), Some(CloseReason::TokenRevoked));
    assert!(conns[1..].iter().all(|c| !c.is_closing()));
    assert_eq!(
        hub.token_checks(),
        1,
        "only the rotated channel's connection was checked"
    );
    for _ in 0..3 {
        hub.housekeeping().await;
    }
    assert_eq!(hub.token_checks(), 1, "and only once");
}
