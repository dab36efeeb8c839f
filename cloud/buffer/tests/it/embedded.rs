//! Embedded-backend specifics: the lock file, the format version, I/O failures, limits and
//! throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_buffer::embedded::{EmbeddedBuffer, EmbeddedOptions};
use connect_buffer::suite::{message, registration, settings};
use connect_buffer::{Buffer, BufferError, ChannelSettings, SystemClock};

use crate::EmbeddedHarness;

const CH: &str = "team-alpha";
const T: Duration = Duration::from_secs(30);

async fn with_timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let h = EmbeddedHarness::new();
    let first = h.open_embedded();
    let dir = h.dir.path().join("data");
    let second = EmbeddedBuffer::open(&dir, h.clock.clone());
    assert!(matches!(second, Err(BufferError::Locked(_))), "{second:?}");

    // Closing releases the directory.
    with_timeout(first.close()).await.unwrap();
    let third = EmbeddedBuffer::open(&dir, h.clock.clone()).expect("reopen after close");
    drop(third);
    EmbeddedBuffer::open(&dir, h.clock.clone()).expect("reopen after drop");
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let h = EmbeddedHarness::new();
    let _b = h.open_embedded();
    let mode = std::fs::metadata(h.dir.path().join("data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn a_store_from_a_newer_version_is_refused() {
    let h = EmbeddedHarness::new();
    drop(h.open_embedded());
    {
        let db = redb::Database::create(h.dir.path().join("data/buffer.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            txn.open_table(def)
                .unwrap()
                .insert("format_version", 99)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let err = EmbeddedBuffer::open(&h.dir.path().join("data"), h.clock.clone()).unwrap_err();
    let BufferError::Unavailable(text) = err else {
        panic!("unexpected {err:?}")
    };
    assert!(text.contains("format version 99"), "{text}");
}

#[tokio::test]
async fn commit_failures_make_enqueue_unavailable_and_health_bad() {
    let h = EmbeddedHarness::new();
    let b = h.open_embedded();
    with_timeout(b.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    assert!(b.health().ok);

    b.fail_commits(true);
    let r = with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 60))).await;
    assert!(matches!(r, Err(BufferError::Unavailable(_))), "{r:?}");
    let health = b.health();
    assert!(!health.ok);
    assert!(health.reason.unwrap().contains("injected I/O failure"));
    let stats = with_timeout(b.stats(CH)).await.unwrap();
    assert_eq!(
        (stats.ready, stats.counters.received),
        (0, 0),
        "the failed enqueue left no trace"
    );

    b.fail_commits(false);
    let (_, seq) = with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 60)))
        .await
        .unwrap();
    assert_eq!(seq, 2, "the failed write's sequence number is not reused");
    assert!(b.health().ok);
    assert_eq!(with_timeout(b.lease(CH, "c1", 10)).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_fails_its_batch_and_every_later_one_and_cuts_them_from_the_log() {
    for depth in [1, 2, 4] {
        failed_syncs_leave_nothing_behind(depth).await;
    }
}

async fn failed_syncs_leave_nothing_behind(syncs_in_flight: usize) {
    let h = EmbeddedHarness::new();
    let options = EmbeddedOptions {
        syncs_in_flight,
        ..EmbeddedOptions::default()
    };
    let open = || {
        EmbeddedBuffer::open_with(&h.dir.path().join("data"), h.clock.clone(), options.clone())
            .expect("open")
    };
    let b = Arc::new(open());
    with_timeout(b.register_channel(registration(CH, settings())))
        .await
        .expect("store call");
    let mut stored = Vec::new();
    for _ in 0..5 {
        let (id, _) = with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 600)))
            .await
            .expect("store call");
        stored.push(id);
    }

    // Concurrent enqueues land in several batches, some synced at the same time; the
    // records reach the file but no sync succeeds.
    b.fail_syncs(true);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (b, m) = (b.clone(), message(&h.clock, CH, "hook-a", 600));
            tokio::spawn(async move { b.enqueue(m).await })
        })
        .collect();
    for t in tasks {
        let r = with_timeout(t).await.expect("store call");
        assert!(matches!(r, Err(BufferError::Unavailable(_))), "{r:?}");
    }
    let health = b.health();
    assert!(!health.ok);
    assert!(
        health
            .reason
            .expect("store call")
            .contains("injected sync failure")
    );

    b.fail_syncs(false);
    for _ in 0..5 {
        let (id, _) = with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 600)))
            .await
            .expect("store call");
        stored.push(id);
    }
    assert!(b.health().ok);
    assert_eq!(
        with_timeout(b.stats(CH)).await.expect("store call").ready,
        10
    );

    // After a restart exactly the acknowledged messages are there: the failed batches
    // were cut from the log, not left to come back.
    with_timeout(b.close()).await.expect("store call");
    drop(b);
    let b = open();
    assert_eq!(
        with_timeout(b.stats(CH)).await.expect("store call").ready,
        10
    );
    let leased: Vec<String> = with_timeout(b.lease(CH, "c1", 100))
        .await
        .expect("store call")
        .into_iter()
        .map(|l| l.message.message_id.clone())
        .collect();
    assert_eq!(leased, stored);
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let h = EmbeddedHarness::new();
    let b = h.open_embedded();
    with_timeout(b.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    let mut big = message(&h.clock, CH, "hook-a", 60);
    big.body = Some(vec![
        b'x';
        connect_buffer::embedded::MAX_STORED_MESSAGE_BYTES
    ]);
    assert_eq!(
        with_timeout(b.enqueue(big)).await,
        Err(BufferError::TooLarge)
    );
}

#[tokio::test]
async fn closed_buffer_is_unavailable() {
    let h = EmbeddedHarness::new();
    let b = h.open_embedded();
    with_timeout(b.register_channel(registration(CH, settings())))
        .await
        .unwrap();
    with_timeout(b.close()).await.unwrap();
    assert!(!b.health().ok);
    let r = with_timeout(b.enqueue(message(&h.clock, CH, "hook-a", 60))).await;
    assert!(matches!(r, Err(BufferError::Unavailable(_))), "{r:?}");
}

/// Concurrent enqueues share commits and keep sequence order equal to dispatch order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_are_dispatched_in_sequence_order() {
    let h = EmbeddedHarness::new();
    let b: Arc<dyn Buffer> = Arc::new(h.open_embedded());
    let s = ChannelSettings {
        max_queue_size: 100_000,
        ..settings()
    };
    with_timeout(b.register_channel(registration(CH, s)))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let b = b.clone();
            let clock = h.clock.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    b.enqueue(message(&clock, CH, "hook-a", 600)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        with_timeout(t).await.unwrap();
    }
    let got = with_timeout(b.lease(CH, "c1", 2000)).await.unwrap();
    let seqs: Vec<u64> = got.iter().map(|l| l.message.sequence).collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
}

/// Throughput with 50 concurrent callers (durable, group-committed). Run with
/// `cargo test --release -p connect-buffer --test it -- --ignored --nocapture enqueue_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn enqueue_rate() {
    let dir = tempfile::tempdir().unwrap();
    let b: Arc<dyn Buffer> =
        Arc::new(EmbeddedBuffer::open(dir.path(), Arc::new(SystemClock)).unwrap());
    let s = ChannelSettings {
        max_queue_size: 10_000_000,
        ..settings()
    };
    b.register_channel(registration(CH, s)).await.unwrap();
    let callers = 50;
    let per_caller = 1_000;
    let clock = Arc::new(connect_buffer::ManualClock::new(
        connect_protocol::time::Timestamp::now(),
    ));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let b = b.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    let mut m = message(&clock, CH, "hook-a", 3600);
                    m.body = Some(vec![b'x'; 1024]);
                    b.enqueue(m).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let n = callers * per_caller;
    println!(
        "{n} enqueues in {elapsed:?}: {:.0}/s",
        n as f64 / elapsed.as_secs_f64()
    );
}

/// Issue #14: the sweep visits the channels with timed work (leases, delays, expiry,
/// dead-letter and orphan retention) and none of the idle ones, however many there are.
#[tokio::test]
async fn the_sweep_visits_only_channels_with_due_work() {
    let h = EmbeddedHarness::new();
    let b = h.open_embedded();
    let retention = Some(Duration::from_secs(60));
    for i in 0..500 {
        b.register_channel(registration(&format!("idle-{i}"), settings()))
            .await
            .unwrap();
    }
    let mut s = settings();
    s.ack_timeout_seconds = 10;
    s.dlq_retention_seconds = 100;
    b.register_channel(registration(CH, s)).await.unwrap();

    // The first sweep looks at every channel once.
    with_timeout(b.sweep(retention)).await.unwrap();
    assert_eq!(b.sweep_visits(), 501);
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(1));
        with_timeout(b.sweep(retention)).await.unwrap();
    }
    assert_eq!(b.sweep_visits(), 501, "idle channels were visited again");

    // A lease: nothing due until its deadline, then exactly this channel.
    b.enqueue(message(&h.clock, CH, "hook-a", 3600))
        .await
        .unwrap();
    let leased = b.lease(CH, "conn-1", 1).await.unwrap();
    assert_eq!(leased.len(), 1);
    h.clock.advance(Duration::from_secs(5));
    with_timeout(b.sweep(retention)).await.unwrap();
    assert_eq!(b.sweep_visits(), 501);
    h.clock.advance(Duration::from_secs(6));
    let report = with_timeout(b.sweep(retention)).await.unwrap();
    assert_eq!(report.expired_leases.len(), 1);
    assert_eq!(b.sweep_visits(), 502);

    // A NACK with retry: the channel comes due when the delay ends (second delivery: 1.6 to
    // 2.4 s) and the message is promoted then.
    let leased = b.lease(CH, "conn-2", 1).await.unwrap();
    let id = leased[0].message.message_id.clone();
    b.nack(CH, &id, "conn-2", true, None).await.unwrap();
    h.clock.advance(Duration::from_millis(2500));
    let report = with_timeout(b.sweep(retention)).await.unwrap();
    assert_eq!(report.promoted, 1);
    assert_eq!(b.sweep_visits(), 503);

    // Expiry: the message dies at its TTL, then its dead letter at the DLQ retention.
    h.clock.advance(Duration::from_secs(3600));
    let report = with_timeout(b.sweep(retention)).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(b.sweep_visits(), 504);
    h.clock.advance(Duration::from_secs(50));
    with_timeout(b.sweep(retention)).await.unwrap();
    assert_eq!(b.sweep_visits(), 504);
    h.clock.advance(Duration::from_secs(51));
    let report = with_timeout(b.sweep(retention)).await.unwrap();
    assert_eq!(report.dlq_removed, 1);
    assert_eq!(b.sweep_visits(), 505);

    // An orphan is deleted when its retention ends, and only it is visited.
    b.orphan_channel("idle-7").await.unwrap();
    with_timeout(b.sweep(retention)).await.unwrap();
    assert_eq!(b.sweep_visits(), 506);
    h.clock.advance(Duration::from_secs(61));
    let report = with_timeout(b.sweep(retention)).await.unwrap();
    assert_eq!(report.channels_deleted, vec!["idle-7".to_owned()]);
    assert_eq!(b.sweep_visits(), 507);
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(1000));
        with_timeout(b.sweep(retention)).await.unwrap();
    }
    assert_eq!(b.sweep_visits(), 507, "nothing is due any more");

    // A different orphan retention looks at every channel once more.
    with_timeout(b.sweep(None)).await.unwrap();
    assert_eq!(b.sweep_visits(), 507 + 500);
}

/// Create/delete churn (self-service channels) leaves nothing per deleted channel behind: not
/// the notifier a hub held for it, nor the due-work heap's entries for its far-off work (a
/// message expiring in a week, dead-letter retention), even under names used once only.
#[tokio::test]
async fn deleted_channels_leave_no_notifier_or_due_entry_behind() {
    let h = EmbeddedHarness::new();
    let b = h.open_embedded();
    let mut s = settings();
    s.dlq_retention_seconds = 7 * 24 * 3600;
    for i in 0..2_000 {
        let name = format!("churn-{i}");
        b.register_channel(registration(&name, s.clone()))
            .await
            .unwrap();
        // What the hub does: hold the channel's notifier while the channel lives.
        let notify = b.notifier(&name);
        b.enqueue(message(&h.clock, &name, "hook-a", 7 * 24 * 3600))
            .await
            .unwrap();
        b.delete_channel(&name).await.unwrap();
        drop(notify);
    }
    let (notifiers, heap, forgotten) = b.index_sizes();
    assert!(
        notifiers <= 200 && heap <= 200 && forgotten <= 200,
        "after 2,000 deleted channels: {notifiers} notifiers, {heap} due entries, \
         {forgotten} forgotten"
    );
}

/// `visit_channels` (start-up's walk of the store) hands over every channel's record, the same
/// records `channels` lists, also after a reopen.
#[tokio::test]
async fn visiting_channels_hands_over_every_record() {
    let h = EmbeddedHarness::new();
    let b = h.open_embedded();
    for name in ["c-one", "c-two", "c-three"] {
        with_timeout(b.register_channel(registration(name, settings())))
            .await
            .unwrap();
    }
    with_timeout(b.close()).await.unwrap();
    drop(b);
    let b = h.open_embedded();
    let mut seen = Vec::new();
    with_timeout(b.visit_channels(&mut |rec| seen.push(rec)))
        .await
        .unwrap();
    seen.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(seen, with_timeout(b.channels()).await.unwrap());
    assert_eq!(seen.len(), 3);
}
