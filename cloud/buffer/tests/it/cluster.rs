//! The behavioural suite against the Redis backend on a real three-primary Redis Cluster
//! (one per case), plus what only a cluster has: a channel's slot moving to another primary
//! while replicas write, and `P:ctl` messages reaching replicas connected to other nodes.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use connect_buffer::redis::{RedisBuffer, RedisOptions};
use connect_buffer::suite::{Harness, message, registration, settings};
use connect_buffer::{Buffer, BufferError, ManualClock};
use connect_protocol::time::Timestamp;
use connect_testkit::RedisCluster;

const CH: &str = "team-alpha";
const T: Duration = Duration::from_secs(60);

async fn with_timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

/// One cluster per case; `open` connects a new buffer through all three seeds.
pub struct ClusterHarness {
    pub cluster: RedisCluster,
    pub clock: Arc<ManualClock>,
}

impl ClusterHarness {
    pub async fn start() -> Self {
        Self {
            cluster: RedisCluster::start().await.expect("redis cluster"),
            clock: Arc::new(ManualClock::new(Timestamp::from_micros(
                1_770_000_000_000_000,
            ))),
        }
    }

    pub async fn open_redis(&self) -> RedisBuffer {
        let opts = RedisOptions::cluster(self.cluster.seeds(), "whc");
        RedisBuffer::open(opts, self.clock.clone())
            .await
            .expect("open redis buffer on the cluster")
    }
}

#[async_trait]
impl Harness for ClusterHarness {
    fn clock(&self) -> &ManualClock {
        &self.clock
    }

    async fn open(&self) -> Arc<dyn Buffer> {
        Arc::new(self.open_redis().await)
    }
}

mod suite {
    use super::ClusterHarness;

    connect_buffer::buffer_suite!(ClusterHarness::start().await);
}

/// Enqueues until `stop`, retrying an enqueue answered `Unavailable` (as a webhook sender
/// retries a 503); returns the ids of the accepted messages and how many attempts failed.
async fn write(
    b: Arc<RedisBuffer>,
    clock: Arc<ManualClock>,
    stop: Arc<AtomicBool>,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut failed = 0;
    while !stop.load(Ordering::Acquire) {
        match b.enqueue(message(&clock, CH, "hook-a", 3600)).await {
            Ok((id, _)) => ids.push(id),
            Err(BufferError::Unavailable(_)) => failed += 1,
            Err(e) => panic!("enqueue: {e}"),
        }
    }
    (ids, failed)
}

async fn received(b: &RedisBuffer) -> u64 {
    with_timeout(b.stats(CH))
        .await
        .expect("stats")
        .counters
        .received
}

#[tokio::test]
async fn a_live_channel_moves_to_another_primary_and_nothing_is_lost() {
    let h = ClusterHarness::start().await;
    let a = Arc::new(h.open_redis().await);
    let b = Arc::new(h.open_redis().await);
    let mut s = settings();
    s.max_queue_size = 1_000_000;
    with_timeout(a.register_channel(registration(CH, s)))
        .await
        .unwrap();
    let slot = h.cluster.keyslot("whc:{team-alpha}:state").unwrap();
    let from = h.cluster.owner(slot).unwrap();
    let to = *h.cluster.ports().iter().find(|p| **p != from).unwrap();

    // Two replicas write until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|buf| tokio::spawn(write(buf, h.clock.clone(), stop.clone())))
        .collect();
    let watcher = a.clone();
    connect_testkit::wait_until(T, "the first writes", || {
        let watcher = watcher.clone();
        async move { received(&watcher).await >= 50 }
    })
    .await
    .unwrap();
    // The slot's keys move one by one, with pauses: scripts meet ASK and TRYAGAIN meanwhile.
    let before = received(&a).await;
    let moved = h
        .cluster
        .migrate_slot(slot, to, 1, Duration::from_millis(100))
        .await
        .unwrap();
    let after = received(&a).await;
    assert!(moved >= 5, "only {moved} keys moved");
    assert_eq!(h.cluster.owner(slot).unwrap(), to);
    assert!(after > before, "no write landed while the slot moved");
    // And writes go on against the new owner (MOVED).
    connect_testkit::wait_until(T, "writes after the move", || {
        let watcher = watcher.clone();
        async move { received(&watcher).await >= after + 50 }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Release);

    let mut accepted = Vec::new();
    let mut failed = 0;
    for w in writers {
        let (ids, f) = with_timeout(w).await.unwrap();
        accepted.extend(ids);
        failed += f;
    }
    eprintln!(
        "{} accepted, {} during the move of {moved} keys, {failed} attempts refused (retried)",
        accepted.len(),
        after - before
    );

    // Every accepted message is there exactly once, through either replica.
    let stats = with_timeout(b.stats(CH)).await.unwrap();
    assert_eq!(stats.counters.received, accepted.len() as u64);
    assert_eq!(stats.ready, accepted.len() as u64);
    let mut seen = HashSet::new();
    loop {
        let got = with_timeout(b.lease(CH, "conn-b", 500)).await.unwrap();
        if got.is_empty() {
            break;
        }
        for l in got {
            assert!(seen.insert(l.message.message_id.clone()), "leased twice");
        }
    }
    let accepted: HashSet<String> = accepted.into_iter().collect();
    assert_eq!(seen, accepted);
}

#[tokio::test]
async fn channel_changes_reach_replicas_on_other_nodes() {
    let h = ClusterHarness::start().await;
    let a = h.open_redis().await;
    let b = h.open_redis().await;
    let mut changes = a.channel_changes().expect("a change feed");
    with_timeout(b.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    assert_eq!(with_timeout(changes.recv()).await.as_deref(), Some(CH));
    with_timeout(b.rotate_token(CH, "d".repeat(64), 0))
        .await
        .unwrap();
    assert_eq!(with_timeout(changes.recv()).await.as_deref(), Some(CH));
    with_timeout(b.delete_channel(CH)).await.unwrap();
    assert_eq!(with_timeout(changes.recv()).await.as_deref(), Some(CH));
}
