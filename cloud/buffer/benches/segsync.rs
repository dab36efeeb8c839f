//! What a recycled log segment saves per `fdatasync`: `cargo bench -p connect-buffer --bench
//! segsync`. Two measurements, each with its two cases interleaved operation by operation (so a
//! shared disk's slow moments hit both alike), in a directory on the file system under test
//! (`BENCH_DIR`, default the system's temporary directory):
//!
//! 1. `raw`: 4 KiB `pwrite` + `fdatasync`, appending to a new file (it grows: the file system
//!    commits the new size and extents with each sync) against overwriting a second file whose
//!    blocks were written and synced before (nothing but data to flush).
//! 2. `store`: the embedded store, one durable enqueue at a time (64-byte body, so one sync per
//!    message), into a new store's fresh segment against into a second store's recycled one (a
//!    first segment filled, drained, kept as the spare and reused after a restart).
//!
//! Per round: mean, median and p99 of each case, and the ratio of the means and of the medians.
//!
//! Environment: `BENCH_DIR`, `BENCH_SYNCS` (syncs per case and round, default 1500),
//! `BENCH_ROUNDS` (default 3).

#![allow(clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_buffer::embedded::{EmbeddedBuffer, EmbeddedOptions};
use connect_buffer::suite::{message, registration, settings};
use connect_buffer::{Buffer, ChannelSettings, ManualClock};
use connect_protocol::message::StoredMessage;
use connect_protocol::time::Timestamp;

const CH: &str = "bench";
const PAGE: usize = 4096;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Mean, median and p99 of per-operation times, in µs.
fn summary(mut t: Vec<Duration>) -> (f64, f64, f64) {
    t.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = t.iter().map(|d| us(*d)).sum::<f64>() / t.len() as f64;
    (mean, us(t[t.len() / 2]), us(t[t.len() * 99 / 100]))
}

fn raw_round(dir: &Path, syncs: usize) -> (Vec<Duration>, Vec<Duration>) {
    let page = [0x5au8; PAGE];
    let open = |name: &str| {
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join(name))
            .unwrap()
    };
    let grow = open("append.bin");
    let over = open("overwrite.bin");
    for i in 0..syncs {
        over.write_all_at(&page, (i * PAGE) as u64).unwrap();
    }
    over.sync_all().unwrap();
    let timed = |f: &std::fs::File, i: usize| {
        let t = Instant::now();
        f.write_all_at(&page, (i * PAGE) as u64).unwrap();
        f.sync_data().unwrap();
        t.elapsed()
    };
    let (mut append, mut overwrite) = (Vec::new(), Vec::new());
    for i in 0..syncs {
        append.push(timed(&grow, i));
        overwrite.push(timed(&over, i));
    }
    drop((grow, over));
    std::fs::remove_file(dir.join("append.bin")).unwrap();
    std::fs::remove_file(dir.join("overwrite.bin")).unwrap();
    (append, overwrite)
}

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes: 8 * 1024 * 1024,
        ..EmbeddedOptions::default()
    }
}

fn roomy() -> ChannelSettings {
    ChannelSettings {
        max_queue_size: 1_000_000,
        max_in_flight: 100_000,
        ..settings()
    }
}

fn small(clock: &ManualClock) -> StoredMessage {
    let mut m = message(clock, CH, "hook-a", 3600);
    m.body = Some(vec![b'1'; 64]);
    m
}

/// Leaves a store whose next active segment is a recycled one: a first segment filled (large
/// bodies, few syncs), a second started, the first drained, so it is the spare, which the next
/// open rolls onto.
async fn with_spare(dir: &Path, clock: &Arc<ManualClock>) {
    let b = EmbeddedBuffer::open_with(dir, clock.clone(), options()).unwrap();
    b.register_channel(registration(CH, roomy())).await.unwrap();
    let mut n = 0;
    while b.log_stats().unwrap().segments < 2 {
        let mut m = message(clock, CH, "hook-a", 3600);
        m.body = Some(vec![b'x'; 256 * 1024]);
        b.enqueue(m).await.unwrap();
        n += 1;
    }
    for l in b.lease(CH, "c1", n).await.unwrap() {
        b.ack(CH, &l.message.message_id, "c1").await.unwrap();
    }
    b.close().await.unwrap();
}

/// Sequential durable enqueues of small messages, one into a new store's fresh segment, one
/// into a second store's recycled segment, in turn.
async fn store_round(dir: &Path, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
        1_770_000_000_000_000,
    )));
    let (fresh_dir, reused_dir) = (dir.join("fresh"), dir.join("recycled"));
    with_spare(&reused_dir, &clock).await;
    let reused = EmbeddedBuffer::open_with(&reused_dir, clock.clone(), options()).unwrap();
    let fresh = EmbeddedBuffer::open_with(&fresh_dir, clock.clone(), options()).unwrap();
    fresh
        .register_channel(registration(CH, roomy()))
        .await
        .unwrap();
    // Each record is ~200 bytes: both stay within their first segment (8 MiB; the spare
    // reused is as large).
    assert!(
        n * 512 < options().segment_bytes as usize,
        "BENCH_SYNCS too large"
    );
    let (mut append, mut overwrite) = (Vec::new(), Vec::new());
    for _ in 0..n {
        for (b, into) in [(&fresh, &mut append), (&reused, &mut overwrite)] {
            let s = Instant::now();
            b.enqueue(small(&clock)).await.unwrap();
            into.push(s.elapsed());
        }
    }
    fresh.close().await.unwrap();
    reused.close().await.unwrap();
    std::fs::remove_dir_all(fresh_dir).unwrap();
    std::fs::remove_dir_all(reused_dir).unwrap();
    (append, overwrite)
}

fn main() {
    let base: PathBuf = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let syncs = env_or("BENCH_SYNCS", 1500);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let tmp = tempfile::tempdir_in(&base).unwrap();
    println!(
        "segsync: {syncs} syncs per case and round, {rounds} rounds, in {}",
        tmp.path().display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:<6} {:>5} {:>22} {:>22} {:>10} {:>10}",
        "what", "round", "append µs mean/p50/p99", "overwrite µs …", "mean ratio", "p50 ratio"
    );
    let row = |what: &str, round: usize, a: Vec<Duration>, o: Vec<Duration>| {
        let (am, a50, a99) = summary(a);
        let (om, o50, o99) = summary(o);
        println!(
            "{what:<6} {round:>5} {:>22} {:>22} {:>10.2} {:>10.2}",
            format!("{am:.0} / {a50:.0} / {a99:.0}"),
            format!("{om:.0} / {o50:.0} / {o99:.0}"),
            om / am,
            o50 / a50
        );
    };
    for round in 0..rounds {
        let (a, o) = raw_round(tmp.path(), syncs);
        row("raw", round, a, o);
        let (a, o) = rt.block_on(store_round(tmp.path(), syncs));
        row("store", round, a, o);
    }
}
