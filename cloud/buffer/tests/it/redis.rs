//! The behavioural suite against the Redis backend (a real `redis-server` per case), plus
//! what only the Redis backend has: replicas sharing one Redis, key isolation by prefix,
//! outages.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connect_buffer::redis::{RedisBuffer, RedisOptions};
use connect_buffer::suite::{Harness, message, registration, settings};
use connect_buffer::{
    AckOutcome, Buffer, BufferError, Created, HostedChannelRecord, ManualClock, NackOutcome,
};
use connect_protocol::time::Timestamp;
use connect_testkit::RedisServer;

const CH: &str = "team-alpha";
const T: Duration = Duration::from_secs(30);

async fn with_timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

/// One redis-server per case; `open` connects a new buffer (a restart, or another replica).
pub struct RedisHarness {
    pub server: RedisServer,
    pub clock: Arc<ManualClock>,
    pub prefix: String,
}

impl RedisHarness {
    pub async fn start() -> Self {
        Self {
            server: RedisServer::start().await.expect("redis-server"),
            clock: Arc::new(ManualClock::new(Timestamp::from_micros(
                1_770_000_000_000_000,
            ))),
            prefix: "whc".into(),
        }
    }

    pub async fn open_redis(&self, prefix: &str) -> RedisBuffer {
        let opts = RedisOptions::new(self.server.url.clone(), prefix);
        RedisBuffer::open(opts, self.clock.clone())
            .await
            .expect("open redis buffer")
    }
}

#[async_trait]
impl Harness for RedisHarness {
    fn clock(&self) -> &ManualClock {
        &self.clock
    }

    async fn open(&self) -> Arc<dyn Buffer> {
        Arc::new(self.open_redis(&self.prefix).await)
    }
}

mod suite {
    use super::RedisHarness;

    connect_buffer::buffer_suite!(RedisHarness::start().await);
}

#[tokio::test]
async fn replicas_share_messages_leases_and_acks() {
    let h = RedisHarness::start().await;
    let a = h.open_redis("whc").await;
    let b = h.open_redis("whc").await;
    with_timeout(a.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    let (id, _) = with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 600)))
        .await
        .unwrap();
    let got = with_timeout(a.lease(CH, "conn-a", 10)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        with_timeout(b.lease(CH, "conn-b", 10))
            .await
            .unwrap()
            .is_empty()
    );
    // Settled through the other replica.
    assert_eq!(
        with_timeout(b.ack(CH, &id, "conn-a")).await.unwrap(),
        AckOutcome::Settled { held_lease: true }
    );
    assert_eq!(with_timeout(a.stats(CH)).await.unwrap().counters.acked, 1);
}

#[tokio::test]
async fn any_replica_reclaims_timed_out_leases() {
    let h = RedisHarness::start().await;
    let a = h.open_redis("whc").await;
    let b = h.open_redis("whc").await;
    with_timeout(a.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    let (id, _) = with_timeout(a.enqueue(message(&h.clock, CH, "hook-a", 600)))
        .await
        .unwrap();
    with_timeout(a.lease(CH, "conn-a", 1)).await.unwrap();
    drop(a); // as if the replica died: nothing released
    h.clock.advance(Duration::from_secs(31));
    let report = with_timeout(b.sweep(None)).await.unwrap();
    assert_eq!(report.expired_leases.len(), 1);
    assert_eq!(report.expired_leases[0].connection_id, "conn-a");
    let got = with_timeout(b.lease(CH, "conn-b", 1)).await.unwrap();
    assert_eq!(got[0].message.message_id, id);
    assert_eq!(got[0].delivery_count, 2);
    assert!(matches!(
        with_timeout(b.nack(CH, &id, "conn-b", true, None))
            .await
            .unwrap(),
        NackOutcome::Delayed { .. }
    ));
}

#[tokio::test]
async fn a_wake_on_one_replica_reaches_the_others() {
    let h = RedisHarness::start().await;
    let a = h.open_redis("whc").await;
    let b = h.open_redis("whc").await;
    with_timeout(a.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    let n = b.notifier(CH);
    // Give b's subscriber a moment to subscribe; the wait below is the real check.
    let waiter = tokio::spawn(async move { n.notified().await });
    for _ in 0..20 {
        with_timeout(a.enqueue(message(&h.clock, CH, "hook-a", 600)))
            .await
            .unwrap();
        if waiter.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    with_timeout(waiter).await.expect("b was woken");
}

#[tokio::test]
async fn prefixes_isolate_deployments() {
    let h = RedisHarness::start().await;
    let a = h.open_redis("blue").await;
    let b = h.open_redis("green").await;
    with_timeout(a.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    assert!(with_timeout(b.channel(CH)).await.unwrap().is_none());
    assert_eq!(
        with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 60))).await,
        Err(BufferError::ChannelNotFound)
    );
    assert!(
        RedisBuffer::open(
            RedisOptions::new(h.server.url.clone(), "bad:prefix"),
            h.clock.clone()
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn the_connection_registry_is_shared_and_forgets_dead_replicas() {
    let h = RedisHarness::start().await;
    let a = h.open_redis("whc").await;
    let b = h.open_redis("whc").await;
    with_timeout(a.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    assert!(with_timeout(a.add_connection(CH, "c1", 1)).await.unwrap());
    assert!(!with_timeout(b.add_connection(CH, "c2", 1)).await.unwrap());
    assert!(with_timeout(b.has_connection(CH, "c1")).await.unwrap());
    // Not refreshed for three heartbeats (45 s by default): stale everywhere.
    h.clock.advance(Duration::from_secs(46));
    assert_eq!(with_timeout(b.connection_count(CH)).await.unwrap(), 0);
    assert!(!with_timeout(b.has_connection(CH, "c1")).await.unwrap());
    assert!(with_timeout(b.add_connection(CH, "c2", 1)).await.unwrap());
}

#[tokio::test]
async fn an_outage_fails_fast_reports_unhealthy_and_heals() {
    let mut h = RedisHarness::start().await;
    let b = h.open_redis("whc").await;
    with_timeout(b.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    assert!(b.health().ok);
    h.server.kill9();
    let r = with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 60))).await;
    assert!(matches!(r, Err(BufferError::Unavailable(_))), "{r:?}");
    assert!(!b.health().ok);
    // No persistence in this server: the channel is gone after the restart, but the
    // connection comes back by itself.
    h.server.restart().await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if b.health().ok
            && b.register_channel(registration(CH, settings()))
                .await
                .is_ok()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never healed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 60)))
        .await
        .unwrap();
}

#[tokio::test]
async fn wait_replicas_confirms_enqueues_or_refuses_them() {
    let h = RedisHarness::start().await;
    let mut opts = RedisOptions::new(h.server.url.clone(), "whc");
    opts.wait_replicas = 1;
    let b = RedisBuffer::open(opts, h.clock.clone()).await.unwrap();
    // No replica yet: the confirmation times out (5 s) and the enqueue is refused.
    let r = with_timeout(b.register_channel(registration(CH, settings()))).await;
    assert!(
        matches!(r, Err(BufferError::Unavailable(ref e)) if e.contains("0 of 1")),
        "{r:?}"
    );

    let port = h.server.port.to_string();
    let _replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while b
        .register_channel(registration(CH, settings()))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica never confirmed"
        );
    }
    with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 60)))
        .await
        .unwrap();
}

#[tokio::test]
async fn channel_changes_are_announced_to_the_other_replicas() {
    let h = RedisHarness::start().await;
    let a = h.open_redis("whc").await;
    let b = h.open_redis("whc").await;
    let mut changes = a.channel_changes().expect("a change feed");
    assert!(a.channel_changes().is_none(), "the first caller takes it");
    with_timeout(b.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    assert_eq!(with_timeout(changes.recv()).await.as_deref(), Some(CH));
    with_timeout(b.rotate_token(CH, "e".repeat(64), 0))
        .await
        .unwrap();
    assert_eq!(with_timeout(changes.recv()).await.as_deref(), Some(CH));
    // A's own changes are applied by A itself, not announced back to it.
    with_timeout(a.rotate_token(CH, "f".repeat(64), 0))
        .await
        .unwrap();
    with_timeout(b.delete_channel(CH)).await.unwrap();
    assert_eq!(with_timeout(changes.recv()).await.as_deref(), Some(CH));
    assert!(changes.try_recv().is_err(), "nothing else was announced");
}

fn hosted_channel(name: &str, webhook: &str) -> HostedChannelRecord {
    HostedChannelRecord {
        channel: name.into(),
        account_id: "acc_0000000000000001".into(),
        webhook_id: webhook.into(),
        created_at: Timestamp::from_micros(2_000_000),
        updated_at: Timestamp::from_micros(2_000_000),
        description: None,
        verify: None,
        ttl_seconds: 60,
        max_queue_size: 10,
        max_delivery_attempts: 3,
    }
}

/// A replica that crashes between reserving a channel's place in its account (the atomic
/// `max_channels` check) and writing the channel's record must not hold that place forever:
/// the place counts while the create may still be under way, and is freed once its lease
/// lapses. The code before kept such a phantom place for good (the account stayed one channel
/// short of its quota until that very name was created).
#[tokio::test]
async fn a_create_interrupted_after_its_reservation_leaves_no_phantom_place() {
    let h = RedisHarness::start().await;
    let b = h.open_redis("whc").await;
    let create = async |name: &str| {
        let c = hosted_channel(name, &format!("wh_{name}"));
        with_timeout(b.create_hosted_channel(&c, 2)).await.unwrap()
    };
    let ghost = hosted_channel("alice.ghost", "wh_ghost");
    assert!(
        with_timeout(b.reserve_channel_place_only(&ghost, 2))
            .await
            .unwrap()
    );
    assert_eq!(create("alice.a").await, Created::Created);
    assert_eq!(
        create("alice.b").await,
        Created::Full,
        "a reservation counts while its create may be under way"
    );
    h.clock.advance(Duration::from_secs(3_600));
    assert_eq!(create("alice.b").await, Created::Created);
    assert_eq!(
        create("alice.c").await,
        Created::Full,
        "the cap still holds"
    );
    let names: Vec<String> = with_timeout(b.account_channels("acc_0000000000000001"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.channel)
        .collect();
    assert_eq!(names, ["alice.a", "alice.b"]);
}
