//! Recycled log segments (format 4): a drained segment is kept as the spare and written over
//! as a later segment. Whatever a crash leaves of the new life, the earlier life's records —
//! whole, with good CRCs, right where the next record would start — never come back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use connect_buffer::embedded::{EmbeddedBuffer, EmbeddedOptions};
use connect_buffer::suite::{message, registration, settings};
use connect_buffer::{Buffer, ChannelSettings, ManualClock, PeekFilter};
use connect_protocol::message::StoredMessage;

use crate::log::{CH, clock, copy_dir, segments};

/// Every message of these tests encodes to the same length, so the records of two lives of a
/// segment start at the same offsets.
fn fixed(clock: &ManualClock, i: usize) -> StoredMessage {
    let mut m = message(clock, CH, "hook-a", 3600);
    m.body = Some(format!("body {i:06}").into_bytes());
    m.raw_headers = None;
    m.content_type = None;
    m
}

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes: 64 * 1024,
        ..EmbeddedOptions::default()
    }
}

fn roomy() -> ChannelSettings {
    ChannelSettings {
        max_queue_size: 100_000,
        max_in_flight: 10_000,
        ..settings()
    }
}

fn spares(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("log"))
        .expect("test store")
        .map(|e| e.expect("test store").path())
        .filter(|p| p.extension().is_some_and(|e| e == "spare"))
        .collect()
}

/// Fills a first segment, moves on to a second, settles everything in the first: the first
/// is kept as the spare. Returns the ids still queued (all in the second segment).
async fn fill_and_drain(b: &EmbeddedBuffer, clock: &ManualClock) -> Vec<String> {
    b.register_channel(registration(CH, roomy()))
        .await
        .expect("test store");
    let mut first: Vec<String> = Vec::new();
    let mut i = 0;
    loop {
        let before = b.log_stats().expect("test store").segments;
        let id = b.enqueue(fixed(clock, i)).await.expect("test store").0;
        i += 1;
        if b.log_stats().expect("test store").segments > before {
            // This one went into the second segment.
            let mut queued = vec![id];
            for _ in 0..3 {
                queued.push(b.enqueue(fixed(clock, i)).await.expect("test store").0);
                i += 1;
            }
            let leased = b.lease(CH, "c1", first.len()).await.expect("test store");
            assert_eq!(leased.len(), first.len());
            for id in &first {
                b.ack(CH, id, "c1").await.expect("test store");
            }
            // The ACKs are written lazily, with the next durable write; the writer runs the
            // housekeeping (which keeps the drained segment) after answering that write and
            // before it takes the next: once a second write is answered, it has run.
            for _ in 0..2 {
                queued.push(b.enqueue(fixed(clock, i)).await.expect("test store").0);
                i += 1;
            }
            return queued;
        }
        first.push(id);
    }
}

async fn store_with_a_spare(base: &Path, clock: &Arc<ManualClock>) -> Vec<String> {
    let b = EmbeddedBuffer::open_with(base, clock.clone(), options()).expect("test store");
    let queued = fill_and_drain(&b, clock).await;
    b.close().await.expect("test store");
    assert_eq!(
        spares(base).len(),
        1,
        "the drained first segment is the spare"
    );
    queued
}

/// (files, bytes) in the log directory.
fn on_disk(dir: &Path) -> (u64, u64) {
    let files: Vec<u64> = std::fs::read_dir(dir.join("log"))
        .expect("test store")
        .map(|e| e.expect("test store").metadata().expect("test store").len())
        .collect();
    (files.len() as u64, files.iter().sum())
}

/// The spare counts in the log's figures; a write that fails (a full disk) gives its space
/// back at once, and writes that succeed again keep the next drained segment.
#[tokio::test]
async fn the_spare_is_counted_and_given_back_when_a_write_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let clock = clock();
    let b = EmbeddedBuffer::open_with(&dir, clock.clone(), options()).unwrap();
    let queued = fill_and_drain(&b, &clock).await;
    assert_eq!(
        spares(&dir).len(),
        1,
        "the drained first segment is the spare"
    );
    let stats = b.log_stats().unwrap();
    assert_eq!(
        (stats.segments, stats.bytes),
        on_disk(&dir),
        "the log's figures are what is on disk, spare included"
    );
    assert!(stats.bytes > 2 * 60 * 1024, "{stats:?}");

    b.fail_commits(true);
    assert!(b.enqueue(fixed(&clock, 0)).await.is_err());
    assert!(spares(&dir).is_empty(), "the spare's space is given back");
    assert_eq!(
        (
            b.log_stats().unwrap().segments,
            b.log_stats().unwrap().bytes
        ),
        on_disk(&dir)
    );
    b.fail_commits(false);
    b.enqueue(fixed(&clock, 0)).await.unwrap();
    assert_eq!(b.stats(CH).await.unwrap().ready, queued.len() as u64 + 1);
    b.close().await.unwrap();
}

/// A segment started on the spare is counted (the figure `/metrics` shows, and the power-loss
/// test and the ingest bench read to know recycling really happened); one started on a new
/// file is not. While a recycled segment is written, what is left of its earlier life ahead
/// of the writes is shown (the ingest bench reads it to tell its window overwrote).
#[tokio::test]
async fn a_segment_started_on_the_spare_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let clock = clock();
    let b = EmbeddedBuffer::open_with(&dir, clock.clone(), options()).unwrap();
    fill_and_drain(&b, &clock).await;
    assert_eq!(spares(&dir).len(), 1);
    assert_eq!(
        b.log_stats().unwrap().recycled_segments,
        0,
        "both segments so far were new files"
    );
    b.close().await.unwrap();
    drop(b);
    // Opening starts a new active segment: on the spare.
    let b = EmbeddedBuffer::open_with(&dir, clock.clone(), options()).unwrap();
    assert!(
        spares(&dir).is_empty(),
        "the spare became the active segment"
    );
    let stats = b.log_stats().unwrap();
    assert_eq!(stats.recycled_segments, 1);
    // The earlier life lies ahead of the new header: appends overwrite it.
    assert!(stats.active_overwrite_ahead > 60 * 1024, "{stats:?}");
    b.enqueue(fixed(&clock, 0)).await.unwrap();
    let ahead = b.log_stats().unwrap().active_overwrite_ahead;
    assert!(ahead < stats.active_overwrite_ahead, "{ahead}");
    b.close().await.unwrap();
}

/// The last session's records in a recycled segment, cut at every byte over the bytes of the
/// segment's earlier life: the committed prefix always comes back whole, a cut record never
/// half-appears, and the earlier life's records (messages that were settled) never appear.
#[tokio::test]
async fn a_recycled_segment_torn_at_every_byte_keeps_its_prefix_and_never_its_earlier_life() {
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let base = tmp.path().join("base");
    let clock = clock();
    let committed = store_with_a_spare(&base, &clock).await;
    let earlier_life = std::fs::read(&spares(&base)[0]).unwrap();

    let mut last = Vec::new();
    {
        let b = EmbeddedBuffer::open_with(&base, clock.clone(), options()).unwrap();
        for i in 0..2 {
            // Bodies that differ from the earlier life's at the same place down to the last
            // byte (else a cut there would leave a whole record, rightly read back).
            last.push(b.enqueue(fixed(&clock, 900_005 + i)).await.unwrap().0);
        }
        b.close().await.unwrap();
    }
    assert!(
        spares(&base).is_empty(),
        "the spare became the active segment"
    );
    let active = segments(&base).pop().unwrap();
    let new_life = std::fs::read(&active).unwrap();
    let len = new_life.len();
    // Two lives laid out alike: where the new one ends, a whole record of the earlier one
    // starts (magic, message kind, sealed) — the case a missing check would let through.
    assert!(earlier_life.len() > len + 16);
    assert_eq!(
        earlier_life[len..len + 4],
        [0x43, 0x57, 1, 1],
        "the earlier life has a record right after the new life's last one"
    );

    let name = active.file_name().unwrap().to_owned();
    let mut record_ends = Vec::new();
    for cut in 0..=len {
        let dir = tmp.path().join(format!("cut{cut}"));
        copy_dir(&base, &dir);
        // A crash that left the new life's first `cut` bytes: after them, the earlier life.
        let mut torn = new_life[..cut].to_vec();
        torn.extend_from_slice(&earlier_life[cut..]);
        std::fs::write(dir.join("log").join(&name), &torn).unwrap();
        let b = EmbeddedBuffer::open_with(&dir, clock.clone(), options()).unwrap();
        let got = b.peek(CH, PeekFilter::All, 10_000).await.unwrap();
        let ids: Vec<String> = got.iter().map(|r| r.message.message_id.clone()).collect();
        let n = committed.len();
        assert_eq!(&ids[..n.min(ids.len())], &committed[..], "cut at {cut}");
        let extra = ids.len() - n;
        assert!(
            extra <= last.len(),
            "cut at {cut}: {extra} records too many"
        );
        assert_eq!(&ids[n..], &last[..extra], "cut at {cut}");
        if record_ends.len() < extra {
            record_ends.push(cut);
        }
        // The store takes new messages after what survived, and keeps them (checked at
        // some cuts only: each opens the store once more).
        let (id, seq) = b.enqueue(fixed(&clock, 1)).await.unwrap();
        assert!(seq as usize > n + extra, "cut at {cut}: seq {seq}");
        b.close().await.unwrap();
        drop(b);
        if cut % 16 == 0 || cut == len {
            let b = EmbeddedBuffer::open_with(&dir, clock.clone(), options()).unwrap();
            let again = b.peek(CH, PeekFilter::All, 10_000).await.unwrap();
            assert_eq!(again.len(), n + extra + 1, "cut at {cut}");
            assert_eq!(again.last().unwrap().message.message_id, id);
            b.close().await.unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(
        record_ends.len(),
        2,
        "every record appeared exactly at its end"
    );
    assert_eq!(*record_ends.last().unwrap(), len);
}
