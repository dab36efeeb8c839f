//! The behavioural suite every [`Buffer`] backend must pass (PROTOCOL §6, §7, §8.4, §10.1).
//!
//! Why a suite and not per-backend tests: the cloud must behave identically on the embedded
//! store and on Redis, so both run the very same cases. A backend provides a [`Harness`]
//! (how to open — and re-open — the backend on one store, with a [`ManualClock`]) and
//! expands [`buffer_suite!`](crate::buffer_suite) with it, which generates one
//! `#[tokio::test]` per case, each under a timeout:
//!
//! ```ignore
//! connect_buffer::buffer_suite!(MyHarness::new().await);
//! ```
//!
//! Time only moves when a case advances the clock, so backoff, TTL and ack timeouts are
//! deterministic. Backend-specific behaviour (lock files, fault injection) is tested beside
//! the backend, not here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connect_protocol::admin::{ChannelState, TokenSource};
use connect_protocol::ids::new_message_id;
use connect_protocol::message::{DeadLetterReason, MessageState, StoredMessage};

use crate::{
    AckOutcome, Buffer, BufferError, ChannelRegistration, ChannelSettings, Clock, Leased,
    LostLease, ManualClock, NackOutcome, PeekFilter, ReplayOutcome,
};

mod hosted;
pub use hosted::{
    accounts_are_unique_and_found_by_key_digest, caps_hold_under_concurrent_creates,
    hosted_channels_are_unique_and_survive_reopen,
};

/// How a backend is opened for the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The clock of every buffer this harness opens.
    fn clock(&self) -> &ManualClock;

    /// Opens the backend on this harness's store. Called again after `close()` it must see
    /// everything that was durable (a restart).
    async fn open(&self) -> Arc<dyn Buffer>;
}

/// Generous upper bound for one case; every case finishes in well under a second.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Expands to one `#[tokio::test]` per suite case, each opening a fresh harness with `$make`
/// (an expression, may contain `.await`).
#[macro_export]
macro_rules! buffer_suite {
    ($make:expr) => {
        $crate::buffer_suite!(@cases $make;
            fifo_order_by_sequence,
            queue_full_counts_unsettled_but_not_dead_letters,
            ids_are_unique_and_sequence_survives_reopen,
            lease_is_exclusive_between_connections,
            lease_within_stops_at_the_byte_budget,
            ack_settles_once_and_accepts_late_acks,
            redelivers_after_nack,
            nack_without_retry_dead_letters_as_rejected,
            max_delivery_attempts_dead_letters,
            ack_timeout_returns_message_to_head,
            extend_resets_the_lease_deadline,
            release_returns_leases_to_head_in_order,
            ttl_expiry_dead_letters_and_counts,
            dead_letters_list_get_replay_delete_purge,
            replay_counts_toward_queue_size,
            dlq_retention_discards_old_dead_letters,
            peek_has_no_side_effects,
            stats_report_counters_and_depths,
            token_rotation_and_configured_token_change,
            owner_is_kept_while_configured,
            orphaned_channels_drain_and_are_deleted,
            delete_channel_discards_and_resets_sequence,
            state_survives_reopen,
            notifier_signals_new_ready_work,
            connection_registry_enforces_max,
            unknown_channel_is_reported,
            accounts_are_unique_and_found_by_key_digest,
            hosted_channels_are_unique_and_survive_reopen,
            caps_hold_under_concurrent_creates,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let harness = $make;
                tokio::time::timeout($crate::suite::CASE_TIMEOUT, $crate::suite::$case(&harness))
                    .await
                    .expect(concat!("suite case ", stringify!($case), " timed out"));
            }
        )+
    };
}

// --- helpers ------------------------------------------------------------------------------

const CH: &str = "team-alpha";
const TOKEN: &str = "cfg-token-digest";

/// Small, test-friendly settings.
pub fn settings() -> ChannelSettings {
    ChannelSettings {
        max_queue_size: 100,
        max_queue_bytes: crate::DEFAULT_MAX_QUEUE_BYTES,
        max_connections: 10,
        max_in_flight: 100,
        ack_timeout_seconds: 30,
        max_delivery_attempts: 5,
        retry_backoff_max_seconds: 60,
        dlq_retention_seconds: 0,
        ttl_seconds: 3600,
    }
}

pub fn registration(name: &str, settings: ChannelSettings) -> ChannelRegistration {
    ChannelRegistration {
        name: name.to_owned(),
        settings,
        configured_token_digest: TOKEN.to_owned(),
        owner: "hook-a".to_owned(),
        webhook_ids: vec!["hook-a".to_owned()],
    }
}

/// A message for `channel` received now that lives `ttl` seconds.
pub fn message(clock: &ManualClock, channel: &str, webhook: &str, ttl: u64) -> StoredMessage {
    let now = clock.now();
    StoredMessage {
        message_id: new_message_id(),
        channel: channel.to_owned(),
        webhook_id: webhook.to_owned(),
        namespace: None,
        sequence: 0,
        received_at: now,
        expires_at: now.plus_seconds(ttl as f64),
        method: "POST".to_owned(),
        path: format!("/webhook/{webhook}"),
        query: String::new(),
        raw_headers: Some(vec![(
            "Content-Type".to_owned(),
            "application/json".to_owned(),
        )]),
        body: Some(br#"{"ok":true}"#.to_vec()),
        payload: None,
        masked_headers: None,
        content_type: Some("application/json".to_owned()),
        is_json: true,
    }
}

async fn setup(h: &dyn Harness, settings: ChannelSettings) -> Arc<dyn Buffer> {
    let b = h.open().await;
    b.register_channel(registration(CH, settings))
        .await
        .unwrap();
    b
}

async fn put(h: &dyn Harness, b: &dyn Buffer, ttl: u64) -> (String, u64) {
    b.enqueue(message(h.clock(), CH, "hook-a", ttl))
        .await
        .unwrap()
}

async fn put_n(h: &dyn Harness, b: &dyn Buffer, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(put(h, b, 3600).await.0);
    }
    ids
}

fn ids(leased: &[Leased]) -> Vec<String> {
    leased
        .iter()
        .map(|l| l.message.message_id.clone())
        .collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

async fn reopen(h: &dyn Harness, b: Arc<dyn Buffer>) -> Arc<dyn Buffer> {
    b.close().await.unwrap();
    drop(b);
    h.open().await
}

// --- ordering and capacity ----------------------------------------------------------------

pub async fn fifo_order_by_sequence(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let mut sent = Vec::new();
    for i in 1..=5u64 {
        let (id, seq) = put(h, &*b, 3600).await;
        assert_eq!(seq, i, "sequence starts at 1 and grows by one");
        sent.push(id);
    }
    let got = b.lease(CH, "c1", 10).await.unwrap();
    assert_eq!(ids(&got), sent);
    assert!(got.iter().all(|l| l.delivery_count == 1));
    let seqs: Vec<u64> = got.iter().map(|l| l.message.sequence).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

pub async fn queue_full_counts_unsettled_but_not_dead_letters(h: &dyn Harness) {
    let b = setup(
        h,
        ChannelSettings {
            max_queue_size: 3,
            ..settings()
        },
    )
    .await;
    put_n(h, &*b, 3).await;
    let full = b.enqueue(message(h.clock(), CH, "hook-a", 3600)).await;
    assert_eq!(full, Err(BufferError::QueueFull));

    // In-flight messages still count.
    let leased = b.lease(CH, "c1", 1).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(
        b.enqueue(message(h.clock(), CH, "hook-a", 3600)).await,
        Err(BufferError::QueueFull)
    );

    // Dead letters do not.
    let nack = b
        .nack(CH, &leased[0].message.message_id, "c1", false, None)
        .await
        .unwrap();
    assert_eq!(nack, NackOutcome::DeadLettered(DeadLetterReason::Rejected));
    put(h, &*b, 3600).await;
    assert_eq!(
        b.enqueue(message(h.clock(), CH, "hook-a", 3600)).await,
        Err(BufferError::QueueFull)
    );

    // Delayed ones do.
    let leased = b.lease(CH, "c1", 1).await.unwrap();
    b.nack(CH, &leased[0].message.message_id, "c1", true, None)
        .await
        .unwrap();
    assert_eq!(b.stats(CH).await.unwrap().delayed, 1);
    assert_eq!(
        b.enqueue(message(h.clock(), CH, "hook-a", 3600)).await,
        Err(BufferError::QueueFull)
    );
}

pub async fn ids_are_unique_and_sequence_survives_reopen(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let first = message(h.clock(), CH, "hook-a", 3600);
    let mut clash = message(h.clock(), CH, "hook-a", 3600);
    clash.message_id = first.message_id.clone();
    let (id1, s1) = b.enqueue(first).await.unwrap();
    let (id2, s2) = b.enqueue(clash).await.unwrap();
    assert_ne!(id1, id2, "a colliding id is regenerated");
    assert!(id2.starts_with("msg_") && id2.len() == 20, "{id2}");
    assert_eq!((s1, s2), (1, 2));

    // Settling messages never frees their numbers.
    let leased = b.lease(CH, "c1", 2).await.unwrap();
    for l in &leased {
        b.ack(CH, &l.message.message_id, "c1").await.unwrap();
    }
    let b = reopen(h, b).await;
    let (_, s3) = put(h, &*b, 3600).await;
    assert_eq!(s3, 3, "the persisted counter continues after a restart");
    let got = b.lease(CH, "c1", 5).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.sequence, 3);
}

// --- leases, ACK, NACK --------------------------------------------------------------------

pub async fn lease_within_stops_at_the_byte_budget(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let mut sent = Vec::new();
    for _ in 0..8 {
        let mut m = message(h.clock(), CH, "hook-a", 3600);
        m.body = Some(vec![b'x'; 10_000]);
        sent.push(b.enqueue(m).await.unwrap().0);
    }
    // A budget smaller than one message still leases one.
    let one = b.lease_within(CH, "c1", 10, 1).await.unwrap();
    assert_eq!(ids(&one), sent[..1]);
    // Three bodies' worth stops after the message that reaches it (stored size counts
    // the body and its envelope): two or three messages, never more.
    let some = b.lease_within(CH, "c1", 10, 25_000).await.unwrap();
    assert!((2..=3).contains(&some.len()), "{}", some.len());
    assert_eq!(ids(&some), sent[1..1 + some.len()]);
    // `max` still bounds, and no budget takes the rest in order.
    let rest = b.lease(CH, "c1", 10).await.unwrap();
    assert_eq!(ids(&rest), sent[1 + some.len()..]);
    // Requeued (head) messages obey the budget too.
    b.release(CH, "c1").await.unwrap();
    let again = b.lease_within(CH, "c2", 10, 1).await.unwrap();
    assert_eq!(again.len(), 1);
}

pub async fn lease_is_exclusive_between_connections(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let sent = put_n(h, &*b, 4).await;
    let a = b.lease(CH, "conn-a", 2).await.unwrap();
    let c = b.lease(CH, "conn-b", 10).await.unwrap();
    assert_eq!(ids(&a), sent[..2].to_vec());
    assert_eq!(ids(&c), sent[2..].to_vec());
    assert!(b.lease(CH, "conn-a", 10).await.unwrap().is_empty());
    // Only the holder may NACK or extend.
    assert_eq!(
        b.nack(CH, &sent[0], "conn-b", true, None).await.unwrap(),
        NackOutcome::NotHeld
    );
    assert!(!b.extend(CH, &sent[0], "conn-b").await.unwrap());
    assert_eq!(
        b.ack(CH, &sent[0], "conn-b").await.unwrap(),
        AckOutcome::NotInFlight
    );
    assert_eq!(b.stats(CH).await.unwrap().in_flight, 4);
}

pub async fn ack_settles_once_and_accepts_late_acks(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let sent = put_n(h, &*b, 2).await;

    // Current holder.
    b.lease(CH, "conn-a", 1).await.unwrap();
    assert_eq!(
        b.ack(CH, &sent[0], "conn-a").await.unwrap(),
        AckOutcome::Settled { held_lease: true }
    );
    assert_eq!(
        b.ack(CH, &sent[0], "conn-a").await.unwrap(),
        AckOutcome::NotInFlight
    );
    assert_eq!(
        b.ack(CH, "msg_0000000000000000", "conn-a").await.unwrap(),
        AckOutcome::NotInFlight
    );

    // Late ACK from a former holder after the lease moved on.
    b.lease(CH, "conn-a", 1).await.unwrap();
    h.clock().advance(secs(31.0));
    let report = b.sweep(None).await.unwrap();
    assert_eq!(report.expired_leases.len(), 1);
    let again = b.lease(CH, "conn-b", 1).await.unwrap();
    assert_eq!(ids(&again), vec![sent[1].clone()]);
    assert_eq!(again[0].delivery_count, 2);
    assert_eq!(
        b.ack(CH, &sent[1], "conn-a").await.unwrap(),
        AckOutcome::Settled { held_lease: false }
    );
    assert_eq!(
        b.ack(CH, &sent[1], "conn-b").await.unwrap(),
        AckOutcome::NotInFlight
    );

    let stats = b.stats(CH).await.unwrap();
    assert_eq!(stats.counters.acked, 2);
    assert_eq!((stats.ready, stats.in_flight), (0, 0));
}

pub async fn redelivers_after_nack(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let (id, _) = put(h, &*b, 3600).await;
    b.lease(CH, "c1", 1).await.unwrap();
    let t0 = h.clock().now();
    let outcome = b
        .nack(CH, &id, "c1", true, Some("HTTP 500".into()))
        .await
        .unwrap();
    let NackOutcome::Delayed { until } = outcome else {
        panic!("expected delayed, got {outcome:?}")
    };
    let delay = (until.micros() - t0.micros()) as f64 / 1e6;
    assert!(
        (0.8..=1.2).contains(&delay),
        "first backoff is 1 s ± 20 %, got {delay}"
    );

    let stats = b.stats(CH).await.unwrap();
    assert_eq!((stats.delayed, stats.ready, stats.in_flight), (1, 0, 0));
    assert_eq!(stats.counters.nacked, 1);
    assert!(
        b.lease(CH, "c2", 1).await.unwrap().is_empty(),
        "delayed is not ready"
    );

    h.clock().advance(secs(0.7));
    assert_eq!(b.sweep(None).await.unwrap().promoted, 0);
    h.clock().advance(secs(0.6));
    assert_eq!(b.sweep(None).await.unwrap().promoted, 1);

    // Redelivered to any connection, the same message id, the next delivery count.
    let got = b.lease(CH, "c2", 1).await.unwrap();
    assert_eq!(ids(&got), vec![id.clone()]);
    assert_eq!(got[0].delivery_count, 2);
    let view = b.peek(CH, PeekFilter::InFlight, 10).await.unwrap();
    assert_eq!(view[0].attempts.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(view[0].leased_to.as_deref(), Some("c2"));

    // Second backoff doubles.
    let t1 = h.clock().now();
    let NackOutcome::Delayed { until } = b.nack(CH, &id, "c2", true, None).await.unwrap() else {
        panic!("expected delayed")
    };
    let delay = (until.micros() - t1.micros()) as f64 / 1e6;
    assert!(
        (1.6..=2.4).contains(&delay),
        "second backoff is 2 s ± 20 %, got {delay}"
    );
}

pub async fn nack_without_retry_dead_letters_as_rejected(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let (id, _) = put(h, &*b, 3600).await;
    b.lease(CH, "c1", 1).await.unwrap();
    let long = "x".repeat(2000);
    let outcome = b.nack(CH, &id, "c1", false, Some(long)).await.unwrap();
    assert_eq!(
        outcome,
        NackOutcome::DeadLettered(DeadLetterReason::Rejected)
    );

    let (list, total) = b.dead_letters(CH, 10).await.unwrap();
    assert_eq!(total, 1);
    let dl = &list[0];
    assert_eq!(dl.message.message_id, id);
    assert_eq!(dl.state, MessageState::DeadLettered);
    assert_eq!(dl.reason, Some(DeadLetterReason::Rejected));
    assert_eq!(dl.attempts.delivery_count, 1);
    assert_eq!(
        dl.attempts.last_error.as_ref().map(|e| e.chars().count()),
        Some(1024)
    );
    assert_eq!(dl.dead_lettered_at, Some(h.clock().now()));
    assert!(dl.attempts.first_attempt_at.is_some() && dl.attempts.last_attempt_at.is_some());

    let stats = b.stats(CH).await.unwrap();
    assert_eq!(
        (stats.counters.nacked, stats.counters.dead_lettered),
        (1, 1)
    );
    assert_eq!(stats.counters.expired, 0);
    assert_eq!((stats.dead_letters, stats.in_flight), (1, 0));
    assert!(b.lease(CH, "c1", 1).await.unwrap().is_empty());
}

pub async fn max_delivery_attempts_dead_letters(h: &dyn Harness) {
    let b = setup(
        h,
        ChannelSettings {
            max_delivery_attempts: 2,
            ..settings()
        },
    )
    .await;

    // Via NACKs: the NACK of the last allowed delivery dead-letters.
    let (id, _) = put(h, &*b, 3600).await;
    b.lease(CH, "c1", 1).await.unwrap();
    assert!(matches!(
        b.nack(CH, &id, "c1", true, None).await.unwrap(),
        NackOutcome::Delayed { .. }
    ));
    h.clock().advance(secs(2.0));
    b.sweep(None).await.unwrap();
    assert_eq!(b.lease(CH, "c1", 1).await.unwrap()[0].delivery_count, 2);
    assert_eq!(
        b.nack(CH, &id, "c1", true, None).await.unwrap(),
        NackOutcome::DeadLettered(DeadLetterReason::MaxDeliveryAttempts)
    );

    // Via ack timeouts: the exhausted message is dead-lettered when it needs a third delivery.
    let (id2, _) = put(h, &*b, 3600).await;
    for expected in 1..=2 {
        let got = b.lease(CH, "c1", 1).await.unwrap();
        assert_eq!(got[0].delivery_count, expected);
        h.clock().advance(secs(31.0));
        b.sweep(None).await.unwrap();
    }
    assert!(b.lease(CH, "c1", 1).await.unwrap().is_empty());
    let dl = b
        .dead_letter(CH, &id2)
        .await
        .unwrap()
        .expect("dead-lettered");
    assert_eq!(dl.reason, Some(DeadLetterReason::MaxDeliveryAttempts));
    assert_eq!(dl.attempts.delivery_count, 2);
    let stats = b.stats(CH).await.unwrap();
    assert_eq!((stats.dead_letters, stats.counters.dead_lettered), (2, 2));
    assert_eq!(stats.counters.dispatched, 4);
}

pub async fn ack_timeout_returns_message_to_head(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let sent = put_n(h, &*b, 3).await;
    b.lease(CH, "conn-a", 1).await.unwrap();
    h.clock().advance(secs(29.0));
    assert!(b.sweep(None).await.unwrap().expired_leases.is_empty());
    h.clock().advance(secs(2.0));
    let report = b.sweep(None).await.unwrap();
    assert_eq!(
        report.expired_leases,
        vec![LostLease {
            channel: CH.to_owned(),
            connection_id: "conn-a".to_owned(),
            message_id: sent[0].clone(),
        }]
    );
    let got = b.lease(CH, "conn-b", 3).await.unwrap();
    assert_eq!(ids(&got), sent, "the timed-out message is back at the head");
    let counts: Vec<u32> = got.iter().map(|l| l.delivery_count).collect();
    assert_eq!(counts, vec![2, 1, 1]);
    assert!(
        b.sweep(None).await.unwrap().expired_leases.is_empty(),
        "sweep is idempotent"
    );
}

pub async fn extend_resets_the_lease_deadline(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let (id, _) = put(h, &*b, 3600).await;
    b.lease(CH, "c1", 1).await.unwrap();
    h.clock().advance(secs(20.0));
    assert!(b.extend(CH, &id, "c1").await.unwrap());
    let view = b.peek(CH, PeekFilter::InFlight, 1).await.unwrap();
    assert_eq!(
        view[0].lease_expires_at,
        Some(h.clock().now().plus_seconds(30.0))
    );
    h.clock().advance(secs(20.0));
    assert!(b.sweep(None).await.unwrap().expired_leases.is_empty());
    h.clock().advance(secs(11.0));
    assert_eq!(b.sweep(None).await.unwrap().expired_leases.len(), 1);
    assert!(!b.extend(CH, &id, "c1").await.unwrap(), "no lease any more");
}

pub async fn release_returns_leases_to_head_in_order(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let sent = put_n(h, &*b, 5).await;
    b.lease(CH, "conn-a", 2).await.unwrap();
    b.lease(CH, "conn-b", 2).await.unwrap();
    let released = b.release(CH, "conn-a").await.unwrap();
    assert_eq!(released, sent[..2].to_vec());
    let got = b.lease(CH, "conn-c", 10).await.unwrap();
    assert_eq!(
        ids(&got),
        vec![sent[0].clone(), sent[1].clone(), sent[4].clone()]
    );
    let counts: Vec<u32> = got.iter().map(|l| l.delivery_count).collect();
    assert_eq!(counts, vec![2, 2, 1]);

    assert_eq!(b.release(CH, "conn-b").await.unwrap(), sent[2..4].to_vec());
    assert_eq!(
        ids(&b.lease(CH, "conn-c", 10).await.unwrap()),
        sent[2..4].to_vec()
    );
    assert!(b.release(CH, "conn-a").await.unwrap().is_empty());
}

pub async fn ttl_expiry_dead_letters_and_counts(h: &dyn Harness) {
    // A lease outlives the message's TTL here.
    let b = setup(
        h,
        ChannelSettings {
            ack_timeout_seconds: 600,
            ..settings()
        },
    )
    .await;
    let (leased_short, _) = put(h, &*b, 60).await;
    assert_eq!(
        ids(&b.lease(CH, "conn-x", 1).await.unwrap()),
        vec![leased_short.clone()]
    );
    let (short, _) = put(h, &*b, 60).await;
    let (long, _) = put(h, &*b, 3600).await;

    h.clock().advance(secs(61.0));
    let report = b.sweep(None).await.unwrap();
    assert_eq!((report.expired, report.dead_lettered), (1, 1));
    let dl = b
        .dead_letter(CH, &short)
        .await
        .unwrap()
        .expect("expired message is a dead letter");
    assert_eq!(dl.reason, Some(DeadLetterReason::Expired));
    assert_eq!(dl.attempts.delivery_count, 0);
    assert!(b.dead_letter(CH, &long).await.unwrap().is_none());
    // A leased message is not interrupted by expiry ...
    assert!(b.dead_letter(CH, &leased_short).await.unwrap().is_none());
    assert_eq!(b.stats(CH).await.unwrap().in_flight, 1);
    // ... but dead-lettered as expired when it needs another delivery.
    b.release(CH, "conn-x").await.unwrap();
    let got = b.lease(CH, "conn-y", 10).await.unwrap();
    assert_eq!(ids(&got), vec![long.clone()]);
    let dl = b
        .dead_letter(CH, &leased_short)
        .await
        .unwrap()
        .expect("expired at dispatch");
    assert_eq!(dl.reason, Some(DeadLetterReason::Expired));

    // A delayed message expires too.
    b.nack(CH, &long, "conn-y", true, None).await.unwrap();
    h.clock().advance(secs(3600.0));
    let report = b.sweep(None).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        b.dead_letter(CH, &long).await.unwrap().unwrap().reason,
        Some(DeadLetterReason::Expired)
    );

    let stats = b.stats(CH).await.unwrap();
    assert_eq!(
        (stats.counters.expired, stats.counters.dead_lettered),
        (3, 3)
    );
    assert_eq!(
        (
            stats.dead_letters,
            stats.ready,
            stats.delayed,
            stats.in_flight
        ),
        (3, 0, 0, 0)
    );
    assert!(
        stats.webhook_pending.is_empty(),
        "dead letters are not pending"
    );
}

// --- dead letters -------------------------------------------------------------------------

/// Dead-letters `n` new messages, one second apart; returns their ids oldest first.
async fn dead_letter_n(h: &dyn Harness, b: &dyn Buffer, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (id, _) = put(h, b, 600).await;
        let got = b.lease(CH, "c1", 1).await.unwrap();
        assert_eq!(ids(&got), vec![id.clone()]);
        b.nack(CH, &id, "c1", false, Some("bad".into()))
            .await
            .unwrap();
        h.clock().advance(secs(1.0));
        out.push(id);
    }
    out
}

pub async fn dead_letters_list_get_replay_delete_purge(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let dead = dead_letter_n(h, &*b, 4).await;

    let (list, total) = b.dead_letters(CH, 3).await.unwrap();
    assert_eq!(total, 4);
    let listed: Vec<String> = list.iter().map(|r| r.message.message_id.clone()).collect();
    assert_eq!(
        listed,
        vec![dead[3].clone(), dead[2].clone(), dead[1].clone()],
        "newest first"
    );

    let one = b.dead_letter(CH, &dead[0]).await.unwrap().expect("found");
    assert_eq!(one.message.body.as_deref(), Some(&br#"{"ok":true}"#[..]));
    assert!(
        b.dead_letter(CH, "msg_ffffffffffffffff")
            .await
            .unwrap()
            .is_none()
    );

    // Replay: tail, same id and sequence, fresh attempt budget, fresh expiry.
    let (other, _) = put(h, &*b, 600).await;
    let before = one.message.clone();
    h.clock().advance(secs(100.0));
    assert_eq!(
        b.replay(CH, &dead[0]).await.unwrap(),
        ReplayOutcome::Replayed
    );
    assert_eq!(
        b.replay(CH, &dead[0]).await.unwrap(),
        ReplayOutcome::NotFound
    );
    assert_eq!(
        b.replay(CH, "msg_ffffffffffffffff").await.unwrap(),
        ReplayOutcome::NotFound
    );
    let got = b.lease(CH, "c2", 10).await.unwrap();
    assert_eq!(
        ids(&got),
        vec![other, dead[0].clone()],
        "a replay joins the tail"
    );
    let replayed = &got[1];
    assert_eq!(replayed.delivery_count, 1);
    assert_eq!(replayed.message.sequence, before.sequence);
    assert_eq!(
        replayed.message.expires_at,
        h.clock().now().plus_seconds(600.0)
    );

    // Bulk replay: oldest first, limited.
    let bulk = b.replay_all(CH, Some(1)).await.unwrap();
    assert_eq!(
        (bulk.replayed, bulk.remaining, bulk.stopped_queue_full),
        (1, 2, false)
    );
    let got = b.lease(CH, "c2", 10).await.unwrap();
    assert_eq!(ids(&got), vec![dead[1].clone()]);

    assert!(b.delete_dead_letter(CH, &dead[2]).await.unwrap());
    assert!(!b.delete_dead_letter(CH, &dead[2]).await.unwrap());
    assert!(
        !b.delete_dead_letter(CH, &dead[1]).await.unwrap(),
        "not a dead letter"
    );
    assert_eq!(b.purge_dead_letters(CH).await.unwrap(), 1);
    assert_eq!(b.dead_letters(CH, 10).await.unwrap().1, 0);

    let c = b.stats(CH).await.unwrap().counters;
    assert_eq!((c.replayed, c.discarded, c.dead_lettered), (2, 2, 4));
}

pub async fn replay_counts_toward_queue_size(h: &dyn Harness) {
    let b = setup(
        h,
        ChannelSettings {
            max_queue_size: 2,
            ..settings()
        },
    )
    .await;
    let dead = dead_letter_n(h, &*b, 2).await;
    put(h, &*b, 600).await;
    let bulk = b.replay_all(CH, None).await.unwrap();
    assert_eq!(
        (bulk.replayed, bulk.remaining, bulk.stopped_queue_full),
        (1, 1, true)
    );
    assert_eq!(
        b.replay(CH, &dead[1]).await.unwrap(),
        ReplayOutcome::QueueFull
    );
    assert!(
        b.dead_letter(CH, &dead[1]).await.unwrap().is_some(),
        "still a dead letter"
    );
    assert!(
        b.dead_letter(CH, &dead[0]).await.unwrap().is_none(),
        "oldest replayed first"
    );
    assert_eq!(
        b.enqueue(message(h.clock(), CH, "hook-a", 60)).await,
        Err(BufferError::QueueFull)
    );
}

pub async fn dlq_retention_discards_old_dead_letters(h: &dyn Harness) {
    let b = setup(
        h,
        ChannelSettings {
            dlq_retention_seconds: 60,
            ..settings()
        },
    )
    .await;
    b.register_channel(registration("keeper", settings()))
        .await
        .unwrap();
    let (keep_id, _) = b
        .enqueue(message(h.clock(), "keeper", "hook-a", 600))
        .await
        .unwrap();
    b.lease("keeper", "c1", 1).await.unwrap();
    b.nack("keeper", &keep_id, "c1", false, None).await.unwrap();

    let dead = dead_letter_n(h, &*b, 1).await; // the clock moved 1 s past the dead-lettering
    h.clock().advance(secs(58.0));
    assert_eq!(b.sweep(None).await.unwrap().dlq_removed, 0);
    h.clock().advance(secs(1.5));
    assert_eq!(b.sweep(None).await.unwrap().dlq_removed, 1);
    assert!(b.dead_letter(CH, &dead[0]).await.unwrap().is_none());
    assert_eq!(b.stats(CH).await.unwrap().counters.discarded, 1);

    h.clock().advance(secs(86_400.0 * 30.0));
    b.sweep(None).await.unwrap();
    assert!(
        b.dead_letter("keeper", &keep_id).await.unwrap().is_some(),
        "retention 0 keeps"
    );
}

// --- views --------------------------------------------------------------------------------

pub async fn peek_has_no_side_effects(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let sent = put_n(h, &*b, 4).await;
    b.lease(CH, "c1", 2).await.unwrap();
    b.nack(CH, &sent[1], "c1", true, None).await.unwrap();
    let before = b.stats(CH).await.unwrap();

    let all = b.peek(CH, PeekFilter::All, 10).await.unwrap();
    let view: Vec<(String, MessageState)> = all
        .iter()
        .map(|r| (r.message.message_id.clone(), r.state))
        .collect();
    assert_eq!(
        view,
        vec![
            (sent[0].clone(), MessageState::InFlight),
            (sent[2].clone(), MessageState::Ready),
            (sent[3].clone(), MessageState::Ready),
            (sent[1].clone(), MessageState::Delayed),
        ]
    );
    assert_eq!(all[0].leased_to.as_deref(), Some("c1"));
    assert!(all[3].next_attempt_at.is_some());
    assert_eq!(b.peek(CH, PeekFilter::Ready, 1).await.unwrap().len(), 1);
    assert_eq!(b.peek(CH, PeekFilter::Delayed, 10).await.unwrap().len(), 1);
    assert_eq!(b.peek(CH, PeekFilter::InFlight, 10).await.unwrap().len(), 1);

    assert_eq!(
        b.stats(CH).await.unwrap(),
        before,
        "peeking changes nothing"
    );
    let got = b.lease(CH, "c2", 1).await.unwrap();
    assert_eq!(ids(&got), vec![sent[2].clone()]);
    assert_eq!(got[0].delivery_count, 1);
}

pub async fn stats_report_counters_and_depths(h: &dyn Harness) {
    let b = h.open().await;
    let mut reg = registration(CH, settings());
    reg.webhook_ids = vec!["hook-a".into(), "hook-b".into(), "team/hook-c".into()];
    b.register_channel(reg).await.unwrap();
    let empty = b.stats(CH).await.unwrap();
    assert_eq!(empty.oldest_unsettled_at, None);

    let first_at = h.clock().now();
    let (a1, _) = b
        .enqueue(message(h.clock(), CH, "hook-a", 600))
        .await
        .unwrap();
    h.clock().advance(secs(5.0));
    b.enqueue(message(h.clock(), CH, "hook-a", 600))
        .await
        .unwrap();
    b.enqueue(message(h.clock(), CH, "hook-b", 600))
        .await
        .unwrap();
    let mut namespaced = message(h.clock(), CH, "hook-c", 600);
    namespaced.namespace = Some("team".into());
    b.enqueue(namespaced).await.unwrap();

    b.lease(CH, "c1", 2).await.unwrap(); // a1, a2
    b.ack(CH, &a1, "c1").await.unwrap();
    let s = b.stats(CH).await.unwrap();
    assert_eq!(s.counters.received, 4);
    assert_eq!(s.counters.dispatched, 2);
    assert_eq!(s.counters.acked, 1);
    assert_eq!(
        (s.ready, s.in_flight, s.delayed, s.dead_letters),
        (2, 1, 0, 0)
    );
    assert_eq!(s.oldest_unsettled_at, Some(first_at.plus_seconds(5.0)));
    let pending: Vec<(&str, u64)> = s
        .webhook_pending
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        pending,
        vec![("hook-a", 1), ("hook-b", 1), ("team/hook-c", 1)]
    );
}

// --- channels and tokens ------------------------------------------------------------------

pub async fn token_rotation_and_configured_token_change(h: &dyn Harness) {
    let b = h.open().await;
    let reg = registration(CH, settings());
    let r = b.register_channel(reg.clone()).await.unwrap();
    assert!(r.created && !r.configured_token_changed);
    assert_eq!(r.record.token.current_digest, TOKEN);
    assert_eq!(r.record.token.source, TokenSource::Config);

    let t0 = h.clock().now();
    let t = b.rotate_token(CH, "rot-1".into(), 3600).await.unwrap();
    assert_eq!(t.current_digest, "rot-1");
    assert_eq!(t.previous_digest.as_deref(), Some(TOKEN));
    assert_eq!(t.previous_expires_at, Some(t0.plus_seconds(3600.0)));
    assert_eq!((t.source, t.rotated_at), (TokenSource::Rotated, Some(t0)));
    assert_eq!(t.configured_digest, TOKEN);

    // At most one previous token: the one in grace is dropped.
    h.clock().advance(secs(10.0));
    let t = b.rotate_token(CH, "rot-2".into(), 0).await.unwrap();
    assert_eq!(t.previous_digest.as_deref(), Some("rot-1"));
    assert_eq!(t.previous_expires_at, Some(h.clock().now()));

    // Unchanged configuration keeps the rotation, also across a restart.
    let r = b.register_channel(reg.clone()).await.unwrap();
    assert!(!r.created && !r.configured_token_changed);
    assert_eq!(r.record.token.current_digest, "rot-2");
    let b = reopen(h, b).await;
    let rec = b.channel(CH).await.unwrap().expect("persisted");
    assert_eq!(rec.token, t);
    assert!(b.rotate_token("nope", "x".into(), 1).await == Err(BufferError::ChannelNotFound));

    // A changed configured token wins and drops every other token.
    let mut changed = reg;
    changed.configured_token_digest = "cfg-2".into();
    let r = b.register_channel(changed).await.unwrap();
    assert!(r.configured_token_changed);
    let t = &r.record.token;
    assert_eq!(
        (t.current_digest.as_str(), t.configured_digest.as_str()),
        ("cfg-2", "cfg-2")
    );
    assert_eq!(
        (t.previous_digest.clone(), t.source),
        (None, TokenSource::Config)
    );
    let b = reopen(h, b).await;
    assert_eq!(b.channel(CH).await.unwrap().unwrap().token, r.record.token);
}

pub async fn owner_is_kept_while_configured(h: &dyn Harness) {
    let b = h.open().await;
    let created_at = h.clock().now();
    let mut reg = registration(CH, settings());
    reg.owner = "hook-b".into();
    reg.webhook_ids = vec!["hook-a".into(), "hook-b".into()];
    assert_eq!(
        b.register_channel(reg.clone()).await.unwrap().record.owner,
        "hook-b"
    );

    h.clock().advance(secs(60.0));
    reg.owner = "hook-a".into();
    reg.settings.max_queue_size = 7;
    let r = b.register_channel(reg.clone()).await.unwrap();
    assert_eq!(
        r.record.owner, "hook-b",
        "the persisted owner stays while configured"
    );
    assert_eq!(r.record.settings.max_queue_size, 7);
    assert_eq!(r.record.created_at, created_at);
    assert_eq!(r.record.updated_at, h.clock().now());

    reg.webhook_ids = vec!["hook-c".into(), "hook-d".into()];
    reg.owner = "hook-d".into();
    let r = b.register_channel(reg).await.unwrap();
    assert_eq!(
        r.record.owner, "hook-c",
        "the first remaining webhook takes over"
    );
    assert_eq!(
        r.record.webhook_ids,
        vec!["hook-c".to_owned(), "hook-d".to_owned()]
    );

    let b = reopen(h, b).await;
    let rec = b.channel(CH).await.unwrap().unwrap();
    assert_eq!((rec.owner.as_str(), rec.created_at), ("hook-c", created_at));
    assert_eq!(rec.settings.max_queue_size, 7);
}

pub async fn orphaned_channels_drain_and_are_deleted(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    b.register_channel(registration("other", settings()))
        .await
        .unwrap();
    let (id, _) = put(h, &*b, 3600).await;
    b.orphan_channel(CH).await.unwrap();
    b.orphan_channel("other").await.unwrap();
    let rec = b.channel(CH).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.orphaned_at),
        (ChannelState::Orphaned, Some(h.clock().now()))
    );
    assert_eq!(
        b.enqueue(message(h.clock(), CH, "hook-a", 60)).await,
        Err(BufferError::Orphaned)
    );

    // Re-registration revives "other" with its state intact.
    b.register_channel(registration("other", settings()))
        .await
        .unwrap();
    let other = b.channel("other").await.unwrap().unwrap();
    assert_eq!(
        (other.state, other.orphaned_at),
        (ChannelState::Active, None)
    );

    let retention = Some(Duration::from_secs(100));
    h.clock().advance(secs(101.0));
    assert!(
        b.sweep(retention)
            .await
            .unwrap()
            .channels_deleted
            .is_empty(),
        "not empty yet"
    );
    let got = b.lease(CH, "c1", 1).await.unwrap(); // connectors may still drain
    b.ack(CH, &got[0].message.message_id, "c1").await.unwrap();
    assert_eq!(got[0].message.message_id, id);
    assert!(
        b.sweep(None).await.unwrap().channels_deleted.is_empty(),
        "no policy, no deletion"
    );
    assert_eq!(
        b.sweep(retention).await.unwrap().channels_deleted,
        vec![CH.to_owned()]
    );
    assert!(b.channel(CH).await.unwrap().is_none());
    assert!(b.channel("other").await.unwrap().is_some());
    let names: Vec<String> = b
        .channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["other".to_owned()]);
}

pub async fn delete_channel_discards_and_resets_sequence(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    dead_letter_n(h, &*b, 1).await;
    put_n(h, &*b, 3).await;
    b.lease(CH, "c1", 1).await.unwrap();
    assert_eq!(b.delete_channel(CH).await.unwrap(), 3);
    assert_eq!(
        b.delete_channel(CH).await,
        Err(BufferError::ChannelNotFound)
    );
    assert_eq!(
        b.enqueue(message(h.clock(), CH, "hook-a", 60)).await,
        Err(BufferError::ChannelNotFound)
    );

    let b = reopen(h, b).await;
    assert!(
        b.channel(CH).await.unwrap().is_none(),
        "deletion is durable"
    );
    let r = b
        .register_channel(registration(CH, settings()))
        .await
        .unwrap();
    assert!(r.created);
    assert_eq!(
        put(h, &*b, 60).await.1,
        1,
        "a re-created channel starts at 1"
    );
    let s = b.stats(CH).await.unwrap();
    assert_eq!((s.counters.received, s.dead_letters, s.ready), (1, 0, 1));
}

pub async fn state_survives_reopen(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let sent = put_n(h, &*b, 6).await;
    b.lease(CH, "c1", 5).await.unwrap();
    b.ack(CH, &sent[1], "c1").await.unwrap();
    b.nack(CH, &sent[2], "c1", false, Some("nope".into()))
        .await
        .unwrap();
    b.nack(CH, &sent[3], "c1", true, None).await.unwrap();
    // sent[0] and sent[4] stay leased; sent[5] was never delivered.
    let before = b.stats(CH).await.unwrap().counters;

    let b = reopen(h, b).await;
    let s = b.stats(CH).await.unwrap();
    assert_eq!(s.counters, before, "counters are persisted");
    assert_eq!(
        (s.ready, s.in_flight, s.delayed, s.dead_letters),
        (3, 0, 1, 1)
    );
    let dl = b
        .dead_letter(CH, &sent[2])
        .await
        .unwrap()
        .expect("dead letter persisted");
    assert_eq!(dl.attempts.last_error.as_deref(), Some("nope"));

    // Formerly leased messages are ready again in sequence order with their delivery count.
    let got = b.lease(CH, "c2", 10).await.unwrap();
    assert_eq!(
        ids(&got),
        vec![sent[0].clone(), sent[4].clone(), sent[5].clone()]
    );
    let counts: Vec<u32> = got.iter().map(|l| l.delivery_count).collect();
    assert_eq!(counts, vec![2, 2, 1]);
    assert_eq!(got[0].message.sequence, 1);
    assert_eq!(got[0].message.body.as_deref(), Some(&br#"{"ok":true}"#[..]));

    h.clock().advance(secs(2.0));
    assert_eq!(
        b.sweep(None).await.unwrap().promoted,
        1,
        "the delayed message kept its due time"
    );
    let got = b.lease(CH, "c2", 10).await.unwrap();
    assert_eq!(
        (ids(&got), got[0].delivery_count),
        (vec![sent[3].clone()], 2)
    );
    assert_eq!(
        b.ack(CH, &sent[1], "c1").await.unwrap(),
        AckOutcome::NotInFlight,
        "ack persisted"
    );
}

pub async fn notifier_signals_new_ready_work(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    let n = b.notifier(CH);
    let quiet = Duration::from_millis(50);
    let wait = Duration::from_secs(5);
    assert!(
        tokio::time::timeout(quiet, n.notified()).await.is_err(),
        "nothing yet"
    );

    let (id, _) = put(h, &*b, 3600).await;
    tokio::time::timeout(wait, n.notified())
        .await
        .expect("enqueue notifies");
    b.lease(CH, "c1", 1).await.unwrap();
    assert!(
        tokio::time::timeout(quiet, n.notified()).await.is_err(),
        "lease does not"
    );

    b.release(CH, "c1").await.unwrap();
    tokio::time::timeout(wait, n.notified())
        .await
        .expect("release notifies");

    b.lease(CH, "c1", 1).await.unwrap();
    h.clock().advance(secs(31.0));
    b.sweep(None).await.unwrap();
    tokio::time::timeout(wait, n.notified())
        .await
        .expect("lease expiry notifies");

    b.lease(CH, "c1", 1).await.unwrap();
    b.nack(CH, &id, "c1", true, None).await.unwrap();
    h.clock().advance(secs(5.0));
    b.sweep(None).await.unwrap();
    tokio::time::timeout(wait, n.notified())
        .await
        .expect("promotion notifies");

    b.lease(CH, "c1", 1).await.unwrap();
    b.nack(CH, &id, "c1", false, None).await.unwrap();
    assert!(tokio::time::timeout(quiet, n.notified()).await.is_err());
    b.replay(CH, &id).await.unwrap();
    tokio::time::timeout(wait, n.notified())
        .await
        .expect("replay notifies");
}

pub async fn connection_registry_enforces_max(h: &dyn Harness) {
    let b = setup(h, settings()).await;
    assert!(b.add_connection(CH, "c1", 2).await.unwrap());
    assert!(b.add_connection(CH, "c2", 2).await.unwrap());
    assert!(!b.add_connection(CH, "c3", 2).await.unwrap());
    assert_eq!(b.connection_count(CH).await.unwrap(), 2);
    b.remove_connection(CH, "c1").await.unwrap();
    assert_eq!(b.connection_count(CH).await.unwrap(), 1);
    assert!(b.add_connection(CH, "c3", 2).await.unwrap());

    // Concurrent adds never exceed the limit.
    let adds = (0..20).map(|i| {
        let b = b.clone();
        async move { b.add_connection(CH, &format!("x{i}"), 5).await.unwrap() }
    });
    let admitted = futures_count(adds).await;
    assert_eq!(admitted, 3);
    assert_eq!(b.connection_count(CH).await.unwrap(), 5);
}

async fn futures_count<F: std::future::Future<Output = bool> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> usize {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut n = 0;
    for h in handles {
        n += usize::from(h.await.unwrap());
    }
    n
}

pub async fn unknown_channel_is_reported(h: &dyn Harness) {
    let b = h.open().await;
    let nf = Err(BufferError::ChannelNotFound);
    assert_eq!(
        b.enqueue(message(h.clock(), "ghost", "hook-a", 60))
            .await
            .map(|_| ()),
        nf
    );
    assert_eq!(b.lease("ghost", "c1", 1).await.map(|_| ()), nf);
    assert_eq!(b.stats("ghost").await.map(|_| ()), nf);
    assert_eq!(b.dead_letters("ghost", 1).await.map(|_| ()), nf);
    assert_eq!(b.replay("ghost", "msg_0").await.map(|_| ()), nf);
    assert_eq!(b.orphan_channel("ghost").await, nf);
    assert!(b.channel("ghost").await.unwrap().is_none());
    let seen: BTreeSet<String> = b
        .channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(seen.is_empty());
}
