//! What a recycled log segment saves per `fdatasync`: `cargo bench -p connect-buffer --bench
//! segsync`. Two measurements, each with its two cases in the same run, in a directory on the
//! file system under test (`BENCH_DIR`, default the system's temporary directory):
//!
//! 1. `raw`: 4 KiB `pwrite` + `fdatasync`, appending to a new file (it grows: the file system
//!    commits the new size and extents with each sync) against overwriting the same file once
//!    its blocks are written (nothing but data to flush).
//! 2. `store`: the embedded store, one durable enqueue at a time (64-byte body, so one sync per
//!    message), into a new segment against into a recycled one (a first segment filled,
//!    drained, kept as the spare and reused after a restart). The two cases alternate which
//!    goes first from round to round.
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
    let path = dir.join("raw.bin");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let pass = || {
        (0..syncs)
            .map(|i| {
                let t = Instant::now();
                f.write_all_at(&page, (i * PAGE) as u64).unwrap();
                f.sync_data().unwrap();
                t.elapsed()
            })
            .collect::<Vec<_>>()
    };
    let append = pass();
    // The same offsets again: every write now lands on blocks the file has.
    let overwrite = pass();
    drop(f);
    std::fs::remove_file(path).unwrap();
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

/// Sequential durable enqueues of small messages into a new store's fresh segment, or into a
/// recycled one.
async fn store_case(dir: &Path, recycled: bool, n: usize) -> Vec<Duration> {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
        1_770_000_000_000_000,
    )));
    if recycled {
        with_spare(dir, &clock).await;
    }
    let b = EmbeddedBuffer::open_with(dir, clock.clone(), options()).unwrap();
    if !recycled {
        b.register_channel(registration(CH, roomy())).await.unwrap();
    }
    // Each record is ~200 bytes: the case stays within its first segment (8 MiB; the spare
    // it reuses is as large).
    assert!(
        n * 512 < options().segment_bytes as usize,
        "BENCH_SYNCS too large"
    );
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        b.enqueue(small(&clock)).await.unwrap();
        t.push(s.elapsed());
    }
    b.close().await.unwrap();
    t
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
        "{:<6} {:>5} {:>24} {:>24} {:>17}",
        "what", "round", "append µs mean/p50/p99", "overwrite µs …", "overwrite/append"
    );
    let row = |what: &str, round: usize, a: Vec<Duration>, o: Vec<Duration>| {
        let (am, a50, a99) = summary(a);
        let (om, o50, o99) = summary(o);
        println!(
            "{what:<6} {round:>5} {:>24} {:>24} {:>17.2}",
            format!("{am:.0} / {a50:.0} / {a99:.0}"),
            format!("{om:.0} / {o50:.0} / {o99:.0}"),
            om / am
        );
    };
    for round in 0..rounds {
        let (a, o) = raw_round(tmp.path(), syncs);
        row("raw", round, a, o);
        let fresh = tmp.path().join(format!("fresh{round}"));
        let reused = tmp.path().join(format!("recycled{round}"));
        let (a, o) = if round % 2 == 0 {
            let a = rt.block_on(store_case(&fresh, false, syncs));
            (a, rt.block_on(store_case(&reused, true, syncs)))
        } else {
            let o = rt.block_on(store_case(&reused, true, syncs));
            (rt.block_on(store_case(&fresh, false, syncs)), o)
        };
        row("store", round, a, o);
        std::fs::remove_dir_all(&fresh).unwrap();
        std::fs::remove_dir_all(&reused).unwrap();
    }
}
