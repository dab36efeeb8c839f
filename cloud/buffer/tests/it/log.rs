//! The embedded backend's message log: the upgrade from format 1, a torn tail cut at every
//! byte, compaction of a pinned head segment, the dead-letter cap and the byte cap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use connect_buffer::embedded::{EmbeddedBuffer, EmbeddedOptions};
use connect_buffer::suite::{message, registration, settings};
use connect_buffer::{Buffer, BufferError, ChannelSettings, ManualClock, PeekFilter};
use connect_protocol::message::{DeadLetterReason, MessageState};
use connect_protocol::time::Timestamp;

pub(crate) const CH: &str = "team-alpha";

pub(crate) fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_micros(
        1_770_000_000_000_000,
    )))
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("test data directory");
    for e in std::fs::read_dir(from).expect("test data directory") {
        let e = e.expect("test data directory");
        let dest = to.join(e.file_name());
        if e.file_type().expect("test data directory").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("test data directory");
        }
    }
}

pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("test data directory")
        .map(|e| e.expect("test data directory").path())
        .collect();
    v.sort();
    v
}

/// `tests/fixtures/format-v1` was written by the format-1 code (see its README).
#[tokio::test]
async fn a_format_1_store_is_upgraded_and_keeps_every_message() {
    // Round 0 upgrades; round 1 opens the upgraded store again.
    upgrade_fixture("format-v1", 0..2).await;
}

/// `tests/fixtures/format-v2` is the format-1 fixture as the format-2 code left it after
/// upgrading it and taking one more message (fixed-layout heads, no padding).
#[tokio::test]
async fn a_format_2_store_is_upgraded_and_keeps_every_message() {
    upgrade_fixture("format-v2", 1..3).await;
    // A build of format 2 would take a padding record for a torn tail: the store now says 4.
    assert_eq!(upgraded_version("format-v2").await, 4);
}

/// `tests/fixtures/format-v3` is `format-v2` as the format-3 code left it after one more
/// message (compact heads, unsealed records, no segment headers).
#[tokio::test]
async fn a_format_3_store_is_upgraded_and_keeps_every_message() {
    upgrade_fixture("format-v3", 2..4).await;
    // A build of format 3 would take a sealed record for a torn tail: the store now says 4.
    assert_eq!(upgraded_version("format-v3").await, 4);
}

/// The format version a copy of the fixture records once this build has opened it.
async fn upgraded_version(fixture: &str) -> u64 {
    let tmp = tempfile::tempdir().expect("fixture");
    let dir = tmp.path().join("data");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture),
        &dir,
    );
    EmbeddedBuffer::open(&dir, clock())
        .expect("fixture")
        .close()
        .await
        .expect("fixture");
    let db = redb::Database::open(dir.join("buffer.redb")).expect("fixture");
    let txn = db.begin_read().expect("fixture");
    let meta = txn
        .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
        .expect("fixture");
    meta.get("format_version")
        .expect("fixture")
        .expect("fixture")
        .value()
}

/// Opens a copy of a fixture once per round (the first upgrades it) and checks every
/// message and channel of the format-1 scenario; each round adds one message.
async fn upgrade_fixture(name: &str, rounds: std::ops::Range<u64>) {
    let tmp = tempfile::tempdir().expect("fixture");
    let dir = tmp.path().join("data");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
        &dir,
    );
    let clock = clock();
    for round in rounds {
        let b = EmbeddedBuffer::open(&dir, clock.clone()).expect("open");
        let alpha = b.stats("alpha").await.expect("fixture");
        assert_eq!(
            (
                alpha.ready,
                alpha.delayed,
                alpha.dead_letters,
                alpha.in_flight
            ),
            (3 + round, 1, 1, 0),
            "round {round}"
        );
        assert_eq!(
            (alpha.counters.received, alpha.counters.acked),
            (6 + round, 1)
        );
        let beta = b.channel("beta").await.expect("fixture").expect("beta");
        assert_eq!(beta.token.current_digest, "rotated-digest");
        assert_eq!(beta.webhook_ids, vec!["hook-a", "ns1/hook-b"]);

        let (dead, _) = b.dead_letters("alpha", 10).await.expect("fixture");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, Some(DeadLetterReason::Rejected));
        assert_eq!(
            dead[0].attempts.last_error.as_deref(),
            Some("target said 404")
        );
        assert_eq!(
            dead[0].message.body.as_deref(),
            Some("{\"n\":3,\"bin\":\"\u{e9}\"}".as_bytes())
        );

        let delayed = b
            .peek("alpha", PeekFilter::Delayed, 10)
            .await
            .expect("fixture");
        assert_eq!(
            delayed[0].attempts.last_error.as_deref(),
            Some("target said 503")
        );
        assert_eq!(delayed[0].state, MessageState::Delayed);

        let ready = b
            .peek("alpha", PeekFilter::Ready, 10)
            .await
            .expect("fixture");
        let got: Vec<(u64, u32, Vec<u8>, String)> = ready
            .iter()
            .map(|r| {
                (
                    r.message.sequence,
                    r.attempts.delivery_count,
                    r.message.body.clone().expect("fixture"),
                    r.message.query.clone(),
                )
            })
            .collect();
        let body = |n: u32| format!("{{\"n\":{n},\"bin\":\"\u{e9}\"}}").into_bytes();
        assert_eq!(
            got[..3],
            [
                (2, 1, body(1), "a=1".into()),
                (5, 0, body(4), "a=4".into()),
                (6, 0, body(5), "a=5".into())
            ]
        );
        assert_eq!(
            ready[0].message.raw_headers.as_ref().expect("fixture")[0],
            ("X-Sig".to_owned(), "sha256=1".to_owned())
        );

        let beta_msgs = b.peek("beta", PeekFilter::All, 10).await.expect("fixture");
        assert_eq!(beta_msgs.len(), 2);
        let masked = &beta_msgs[0].message;
        assert_eq!(masked.namespace.as_deref(), Some("ns1"));
        assert_eq!(
            (masked.body.is_none(), masked.raw_headers.is_none()),
            (true, true)
        );
        assert_eq!(
            masked.payload,
            Some(serde_json::json!({"masked": "***", "n": 1}))
        );
        assert_eq!(
            masked.masked_headers.as_ref().expect("fixture")["authorization"],
            "***"
        );
        assert_eq!(
            beta_msgs[1].message.body.as_deref(),
            Some(&(0u8..=255).collect::<Vec<u8>>()[..])
        );
        assert_eq!(
            beta.settings.max_queue_bytes,
            connect_buffer::DEFAULT_MAX_QUEUE_BYTES,
            "a format-1 channel record gets the default byte cap"
        );

        // The upgraded store keeps working: sequence numbers continue.
        let (_, seq) = b
            .enqueue(message(&clock, "alpha", "hook-a", 60))
            .await
            .expect("fixture");
        assert_eq!(seq, 7 + round);
        b.close().await.expect("fixture");
    }
    assert!(!segments(&dir).is_empty());
}

/// Messages written in one session and a last session's records cut at every byte: the
/// committed prefix always comes back whole, and a cut record never half-appears.
#[tokio::test]
async fn a_torn_tail_is_cut_at_every_byte_and_the_prefix_survives() {
    // Hundreds of stores are opened and closed: on a memory file system where there is one,
    // so the test measures the recovery logic rather than the disk's fsync.
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let base = tmp.path().join("base");
    let clock = clock();
    let mut committed = Vec::new();
    {
        let b = EmbeddedBuffer::open(&base, clock.clone()).unwrap();
        b.register_channel(registration(CH, settings()))
            .await
            .unwrap();
        for i in 0..4 {
            let mut m = message(&clock, CH, "hook-a", 3600);
            m.body = Some(format!("committed {i}").into_bytes());
            committed.push(b.enqueue(m).await.unwrap().0);
        }
        b.close().await.unwrap();
    }
    let before: Vec<(PathBuf, u64)> = segments(&base)
        .into_iter()
        .map(|p| {
            let n = std::fs::metadata(&p).unwrap().len();
            (p, n)
        })
        .collect();
    let mut last = Vec::new();
    {
        let b = EmbeddedBuffer::open(&base, clock.clone()).unwrap();
        for i in 0..2 {
            let mut m = message(&clock, CH, "hook-a", 3600);
            m.body = Some(format!("last batch {i}").into_bytes());
            // Small records: every byte of them is a case (each opens a store).
            m.raw_headers = None;
            m.content_type = None;
            last.push(b.enqueue(m).await.unwrap().0);
        }
        b.close().await.unwrap();
    }
    // The last session wrote into one new segment.
    let grown: Vec<(PathBuf, u64)> = segments(&base)
        .into_iter()
        .map(|p| {
            let n = std::fs::metadata(&p).unwrap().len();
            (p, n)
        })
        .filter(|(p, n)| *n > 0 && !before.iter().any(|(q, m)| q == p && m == n))
        .collect();
    assert_eq!(grown.len(), 1, "{grown:?}");
    let (tail, len) = grown[0].clone();
    let name = tail.file_name().unwrap().to_owned();
    let mut record_ends = Vec::new();
    for cut in 0..=len {
        let dir = tmp.path().join(format!("cut{cut}"));
        copy_dir(&base, &dir);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("log").join(&name))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let b = EmbeddedBuffer::open(&dir, clock.clone()).unwrap();
        let got = b.peek(CH, PeekFilter::All, 100).await.unwrap();
        let ids: Vec<String> = got.iter().map(|r| r.message.message_id.clone()).collect();
        assert_eq!(&ids[..4], &committed[..], "cut at {cut}");
        let extra = ids.len() - 4;
        assert_eq!(&ids[4..], &last[..extra], "cut at {cut}");
        for (i, r) in got[4..].iter().enumerate() {
            assert_eq!(
                r.message.body.as_deref(),
                Some(format!("last batch {i}").as_bytes())
            );
        }
        if record_ends.len() < extra {
            record_ends.push(cut);
        }
        // The cut store accepts new messages after what survived.
        let (_, seq) = b.enqueue(message(&clock, CH, "hook-a", 60)).await.unwrap();
        assert!(seq as usize > 4 + extra, "cut at {cut}: seq {seq}");
        b.close().await.unwrap();
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(
        record_ends.len(),
        2,
        "every record appeared exactly at its end"
    );
    assert_eq!(*record_ends.last().unwrap(), len);
}

/// A batch that ends near a page boundary is padded to it: the next batch starts on a fresh
/// page, readers skip the padding, and a tail torn anywhere in the padding loses nothing.
#[tokio::test]
async fn a_batch_is_padded_to_a_page_and_the_padding_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let clock = clock();
    let body = vec![b'p'; 16_000];
    let id = {
        let b = EmbeddedBuffer::open(&base, clock.clone()).unwrap();
        b.register_channel(registration(CH, settings()))
            .await
            .unwrap();
        let mut m = message(&clock, CH, "hook-a", 3600);
        m.body = Some(body.clone());
        let id = b.enqueue(m).await.unwrap().0;
        b.close().await.unwrap();
        id
    };
    // One record of ~16.3 KB in a fresh segment: padded to 16 KiB, the padding a few dozen
    // bytes (well under a quarter of the batch).
    let tail = segments(&base)
        .into_iter()
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect::<Vec<_>>();
    assert_eq!(tail.len(), 1, "{tail:?}");
    let len = std::fs::metadata(&tail[0]).unwrap().len();
    assert_eq!(len, 16 * 1024, "the batch ends on a page boundary");
    let name = tail[0].file_name().unwrap().to_owned();
    // Every cut from the end of the message record on (inside the padding) keeps it.
    for cut in (len - 120..=len).rev() {
        let dir = tmp.path().join(format!("cut{cut}"));
        copy_dir(&base, &dir);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("log").join(&name))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let b = EmbeddedBuffer::open(&dir, clock.clone()).unwrap();
        let got = b.peek(CH, PeekFilter::All, 10).await.unwrap();
        if got.is_empty() {
            // Cut into the message record itself: it was never acknowledged.
            assert!(cut < len - 16, "lost at a cut in the padding: {cut}");
            b.close().await.unwrap();
            break;
        }
        assert_eq!(got.len(), 1, "cut at {cut}");
        assert_eq!(got[0].message.message_id, id);
        assert_eq!(got[0].message.body.as_deref(), Some(&body[..]));
        b.enqueue(message(&clock, CH, "hook-a", 60)).await.unwrap();
        assert_eq!(b.stats(CH).await.unwrap().ready, 2, "cut at {cut}");
        b.close().await.unwrap();
    }
}

/// A queue drained in order while the sweep runs: the head segment shrinks from one sweep to
/// the next, so it is left to the consumer and nothing is copied forward (copying it cost a
/// third of a drain's writes and a buffer the size of a segment).
#[tokio::test]
async fn a_head_segment_being_drained_is_not_copied_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let clock = clock();
    let opts = EmbeddedOptions {
        segment_bytes: 16 * 1024,
        ..EmbeddedOptions::default()
    };
    let b = EmbeddedBuffer::open_with(&dir, clock.clone(), opts).unwrap();
    b.set_compact_stall(Duration::from_millis(300));
    let s = ChannelSettings {
        max_queue_size: 10_000,
        max_in_flight: 10_000,
        ..settings()
    };
    b.register_channel(registration(CH, s)).await.unwrap();
    for _ in 0..200 {
        let mut m = message(&clock, CH, "hook-a", 3600);
        m.body = Some(vec![b'x'; 1024]);
        b.enqueue(m).await.unwrap();
    }
    let leased = b.lease(CH, "c1", 200).await.unwrap();
    assert_eq!(leased.len(), 200);
    // A steady consumer: a few ACKs between sweeps (the cloud sweeps every 250 ms).
    for chunk in leased.chunks(4) {
        for m in chunk {
            b.ack(CH, &m.message.message_id, "c1").await.unwrap();
        }
        b.sweep(None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = b.log_stats().unwrap();
    assert_eq!(stats.live_messages, 0, "{stats:?}");
    assert_eq!(stats.copied_records, 0, "{stats:?}");
    b.close().await.unwrap();
}

/// A dead letter pins the head segment; compaction copies it forward and the head goes.
#[tokio::test]
async fn a_pinned_head_segment_is_compacted_away() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let clock = clock();
    let opts = EmbeddedOptions {
        segment_bytes: 16 * 1024,
        ..EmbeddedOptions::default()
    };
    let b = EmbeddedBuffer::open_with(&dir, clock.clone(), opts.clone()).unwrap();
    // Compacted once it has not changed for 100 ms (5 s in production).
    b.set_compact_stall(Duration::from_millis(100));
    let s = ChannelSettings {
        max_queue_size: 10_000,
        ..settings()
    };
    b.register_channel(registration(CH, s)).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let mut m = message(&clock, CH, "hook-a", 3600);
        m.body = Some(vec![b'x'; 1024]);
        ids.push(b.enqueue(m).await.unwrap().0);
    }
    assert!(
        b.log_stats().unwrap().segments >= 10,
        "{:?}",
        b.log_stats().unwrap()
    );
    let leased = b.lease(CH, "c1", 200).await.unwrap();
    assert_eq!(leased.len(), 200);
    b.nack(CH, &ids[0], "c1", false, Some("kept".into()))
        .await
        .unwrap();
    for id in &ids[1..] {
        b.ack(CH, id, "c1").await.unwrap();
    }
    // Let the writer settle, then sweep (which compacts) until the log is small: two segment
    // files at most (the active one, which may be a recycled file of a whole segment's length,
    // and the spare; 160 KiB and more before).
    const SMALL: u64 = 2 * 16 * 1024 + 8 * 1024;
    let mut stats = b.log_stats().unwrap();
    for _ in 0..100 {
        b.sweep(None).await.unwrap();
        b.enqueue(message(&clock, CH, "hook-a", 3600))
            .await
            .unwrap();
        let id = b.lease(CH, "c2", 1).await.unwrap()[0]
            .message
            .message_id
            .clone();
        b.ack(CH, &id, "c2").await.unwrap();
        stats = b.log_stats().unwrap();
        if stats.segments <= 2 && stats.bytes < SMALL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stats.segments <= 2 && stats.bytes < SMALL, "{stats:?}");
    assert_eq!(stats.live_messages, 1);
    assert!(stats.copied_records >= 1, "{stats:?}");
    b.close().await.unwrap();
    drop(b);
    let b = EmbeddedBuffer::open_with(&dir, clock.clone(), opts).unwrap();
    let (dead, total) = b.dead_letters(CH, 10).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(dead[0].message.message_id, ids[0]);
    assert_eq!(dead[0].attempts.last_error.as_deref(), Some("kept"));
    assert_eq!(dead[0].message.body.as_deref(), Some(&[b'x'; 1024][..]));
    assert_eq!(b.stats(CH).await.unwrap().ready, 0);
}

#[tokio::test]
async fn dead_letters_are_capped_oldest_first_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let clock = clock();
    let opts = EmbeddedOptions {
        max_dead_letters: 3,
        ..EmbeddedOptions::default()
    };
    let b = EmbeddedBuffer::open_with(&dir, clock.clone(), opts.clone()).unwrap();
    b.register_channel(registration(CH, settings()))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            b.enqueue(message(&clock, CH, "hook-a", 3600))
                .await
                .unwrap()
                .0,
        );
    }
    b.lease(CH, "c1", 5).await.unwrap();
    for id in &ids {
        b.nack(CH, id, "c1", false, None).await.unwrap();
    }
    let check = |b: EmbeddedBuffer| async move {
        let (dead, total) = b.dead_letters(CH, 10).await.unwrap();
        assert_eq!(total, 3);
        let got: Vec<&str> = dead.iter().map(|r| r.message.message_id.as_str()).collect();
        assert_eq!(got, vec![&ids[4][..], &ids[3][..], &ids[2][..]]);
        let stats = b.stats(CH).await.unwrap();
        assert_eq!(stats.counters.dead_letters_dropped, 2);
        b.close().await.unwrap();
    };
    check(b).await;
    // The same after a restart.
    let b = EmbeddedBuffer::open_with(&dir, clock.clone(), opts).unwrap();
    let (_, total) = b.dead_letters(CH, 10).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(b.stats(CH).await.unwrap().counters.dead_letters_dropped, 2);
}

#[tokio::test]
async fn the_byte_cap_refuses_like_the_message_cap_and_frees_on_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = clock();
    let b = EmbeddedBuffer::open(&tmp.path().join("data"), clock.clone()).unwrap();
    let s = ChannelSettings {
        max_queue_bytes: 3 * 1024,
        ..settings()
    };
    b.register_channel(registration(CH, s)).await.unwrap();
    let big = || {
        let mut m = message(&clock, CH, "hook-a", 3600);
        m.body = Some(vec![b'y'; 1200]);
        m
    };
    let first = b.enqueue(big()).await.unwrap().0;
    b.enqueue(big()).await.unwrap();
    assert_eq!(b.enqueue(big()).await, Err(BufferError::QueueFull));
    // A small one still fits.
    b.enqueue(message(&clock, CH, "hook-a", 3600))
        .await
        .unwrap();
    b.lease(CH, "c1", 1).await.unwrap();
    b.ack(CH, &first, "c1").await.unwrap();
    b.enqueue(big()).await.unwrap();
    // Dead letters do not count toward it, as with the message cap.
    let leased = b.lease(CH, "c1", 3).await.unwrap();
    for l in &leased {
        b.nack(CH, &l.message.message_id, "c1", false, None)
            .await
            .unwrap();
    }
    b.enqueue(big()).await.unwrap();
    b.enqueue(big()).await.unwrap();
}
