//! What a channel keeps once a large backlog has drained: the embedded backend's index grows
//! with the backlog (docs/OPERATIONS.md, "about 100 bytes per stored message"), and a drained
//! channel must give that room back rather than hold the high-water mark of its busiest hour
//! for as long as the process runs. Heap bytes counted by a global allocator.
//!
//! Its own test binary, because the counting allocator is process-wide.

#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::sync::Arc;

use connect_buffer::embedded::EmbeddedBuffer;
use connect_buffer::suite::{message, registration, settings};
use connect_buffer::{Buffer, ChannelSettings, ManualClock};
use connect_protocol::time::Timestamp;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BACKLOG: usize = 200_000;
/// Left queued after the drain, so the channel is in use, not empty.
const LEFT: usize = 100;
/// Durable enqueues after the drain, so that the writer has written every ack (below).
const BARRIERS: usize = 2;
/// What the process may hold beyond what it held before the backlog, once it has drained and
/// the writer has caught up: nothing in proportion to the backlog (~16 MB of index at its
/// peak). 126-139 KB measured at 200,000 in session 19 (the channel's tables at their
/// shrunk size and the 102 messages left). Before the tables were cut as they emptied,
/// 9.3 MB stayed at 200,000 (~47 B per message of the high-water mark). The bound was 6 MiB
/// until session 19, when the figure included the acks still queued for the writer (up to
/// 6.6 MB, once in CI).
const MAX_KEPT_BYTES: isize = 1024 * 1024;

fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backlog_gives_its_index_memory_back() {
    let shm = std::path::Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
        1_770_000_000_000_000,
    )));
    let b: Arc<dyn Buffer> =
        Arc::new(EmbeddedBuffer::open(&tmp.path().join("data"), clock.clone()).unwrap());
    let s = ChannelSettings {
        max_queue_size: 10_000_000,
        max_queue_bytes: 1 << 40,
        max_in_flight: 1_000_000,
        ..settings()
    };
    b.register_channel(registration("drain", s)).await.unwrap();
    // One message in and out first, so the "before" figure includes what any channel that
    // has seen a message holds.
    b.enqueue(message(&clock, "drain", "hook-a", 3600))
        .await
        .unwrap();
    for l in b.lease("drain", "c1", 10).await.unwrap() {
        b.ack("drain", &l.message.message_id, "c1").await.unwrap();
    }
    let before = live();

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (b, clock) = (b.clone(), clock.clone());
            tokio::spawn(async move {
                for _ in 0..BACKLOG / 50 {
                    let mut m = message(&clock, "drain", "hook-a", 3600);
                    m.body = Some(vec![b'x'; 64]);
                    b.enqueue(m).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let peak = live() - before;
    let mut drained = 0;
    while drained < BACKLOG - LEFT {
        let want = (BACKLOG - LEFT - drained).min(1_000);
        let leased = b.lease("drain", "c1", want).await.unwrap();
        assert!(!leased.is_empty(), "nothing to lease after {drained}");
        for l in &leased {
            b.ack("drain", &l.message.message_id, "c1").await.unwrap();
        }
        drained += leased.len();
    }
    // Acks are not awaited: each is a job in the writer's queue until the writer has written
    // it (what the figure measured before, 1.3-6.6 MB depending on how far behind the writer
    // was). An enqueue is answered once its batch is on disk, and batches are written and
    // synced in order, so after two of them every ack before has been written and let go of
    // (the first's batch may still be dropped while its answer is on its way).
    for _ in 0..BARRIERS {
        b.enqueue(message(&clock, "drain", "hook-a", 3600))
            .await
            .unwrap();
    }
    assert_eq!(
        b.stats("drain").await.unwrap().ready,
        (LEFT + BARRIERS) as u64
    );
    let kept = live() - before;
    eprintln!(
        "index at a {BACKLOG} backlog: {peak} B; after draining all but {LEFT} and enqueueing {BARRIERS}: {kept} B kept"
    );
    assert!(
        kept <= MAX_KEPT_BYTES,
        "a drained channel keeps {kept} B of the {peak} B its {BACKLOG} backlog took"
    );
    b.close().await.unwrap();
}
