//! The single writer thread: every change reaches the disk through it, in submission order.
//!
//! It drains whatever is queued into one batch, appends the batch's records to the log with
//! ONE `pwrite` and ONE `fdatasync` (group commit: many concurrent enqueues share a sync),
//! applies channel changes to redb, then runs each job's callback with where its records
//! landed. Jobs that need durability (enqueue, channel and token changes, admin operations)
//! are written as soon as they are seen; batches of only non-durable changes (lease
//! bookkeeping, ACKs, NACK delays) wait up to [`LAZY_COMMIT`] for company, as §10.1 allows —
//! losing them only causes a redelivery.
//!
//! Counters are written to redb at most once a second (and before a segment is deleted, so
//! a sequence number can never be handed out twice). A failed write is reported to the jobs
//! of that batch and in [`Shared::failure`]; the next batch simply tries again, and a redb
//! that refused a commit is reopened, so a full disk heals by itself once space is freed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redb::Database;

use super::codec::{self, KIND_MESSAGE};
use super::log::{Loc, Segments};
use super::meta::{self, CountersDisk, MetaWrite};
use super::pipeline::{Batch, Pipeline};
use super::reserve;
use crate::Result;

/// How long a batch of only non-durable changes waits for more work before it is written.
const LAZY_COMMIT: Duration = Duration::from_millis(50);
/// How often pending counters are written while nothing else touches redb.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);
/// How long after a failed redb reopen the next one is tried.
const REOPEN_BACKOFF: Duration = Duration::from_millis(500);
/// How long the writer looks for the next job, yielding its CPU to any runnable thread,
/// before it parks. Under load the next enqueue comes within microseconds, and finding the
/// writer awake spares the enqueuer a futex wake and the job the wake-up latency (measured:
/// +8–15 % durable ingest with the store on tmpfs, no change on the disk, where the sync
/// dominates; docs/BENCHMARKS.md). An idle writer spends this once per batch.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

/// One record for the log.
pub(super) enum Rec {
    /// A framed record (`codec`) to append.
    New(Vec<u8>),
    /// A message record to copy from elsewhere in the log (compaction).
    Copy(Loc),
}

/// Runs on the writer thread after the batch holding the job was written (or failed), with
/// the place of each of the job's records (a copy whose source was gone has `len == 0`).
pub(super) type OnCommit = Box<dyn FnOnce(Result<&[Loc], String>) + Send>;

pub(super) struct Job {
    pub recs: Vec<Rec>,
    pub meta: Vec<MetaWrite>,
    pub durable: bool,
    pub on_commit: Option<OnCommit>,
}

impl Job {
    /// Completes a job that never reached the writer.
    pub fn fail(self, reason: &str) {
        if let Some(done) = self.on_commit {
            done(Err(reason.to_owned()));
        }
    }
}

/// State shared between the writer thread and the backend.
pub(super) struct Shared {
    /// The last write failure; `None` once a write succeeds again.
    pub failure: Mutex<Option<String>>,
    /// Fault injection: every write fails while set.
    pub fail_commits: AtomicBool,
    /// Fault injection: every pipelined sync fails (after its batch was appended) while set.
    pub fail_syncs: AtomicBool,
    /// The next channel id (persisted with every redb commit).
    pub next_channel_id: AtomicU64,
    pub segments: Arc<Segments>,
    /// A new segment is started once the active one reaches this size.
    pub segment_bytes: u64,
}

/// The handle to the writer thread.
pub(super) struct Writer {
    tx: Sender<Job>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Starts the writer with `syncs_in_flight` batches allowed in the device at once.
    pub fn spawn(
        db: Database,
        db_path: PathBuf,
        shared: Arc<Shared>,
        syncs_in_flight: usize,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let pipeline = Pipeline::start(shared.clone(), syncs_in_flight)
            .map_err(|e| meta::io("starting the sync threads", e))?;
        let thread = std::thread::Builder::new()
            .name("buffer-writer".into())
            .spawn(move || {
                Thread {
                    db: Some(db),
                    db_path,
                    shared,
                    counters: HashMap::new(),
                    counters_flushed: Instant::now(),
                    reopen_after: Instant::now(),
                    pipeline,
                }
                .run(rx)
            })
            .map_err(|e| meta::io("starting the writer thread", e))?;
        Ok(Self { tx, thread })
    }

    /// Queues a job; gives it back when the writer is gone.
    pub fn send(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).map_err(|e| e.0)
    }

    /// Stops accepting jobs, lets the thread write what is queued and waits for it, which
    /// also closes the database.
    pub fn shutdown(self) {
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("buffer writer thread panicked");
        }
    }
}

/// The next job: looked for (yielding) for [`SPIN_BEFORE_PARK`], then waited for until
/// [`COUNTERS_EVERY`] passes.
fn next_job(rx: &Receiver<Job>) -> Result<Job, RecvTimeoutError> {
    let until = Instant::now() + SPIN_BEFORE_PARK;
    loop {
        match rx.try_recv() {
            Ok(job) => return Ok(job),
            Err(mpsc::TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(mpsc::TryRecvError::Empty) if Instant::now() < until => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Empty) => return rx.recv_timeout(COUNTERS_EVERY),
        }
    }
}

struct Thread {
    /// `None` after a failed commit until it is reopened.
    db: Option<Database>,
    db_path: PathBuf,
    shared: Arc<Shared>,
    /// The latest counters snapshot of each channel, not yet in redb.
    counters: HashMap<String, CountersDisk>,
    counters_flushed: Instant,
    reopen_after: Instant,
    pipeline: Arc<Pipeline>,
}

/// Where a batch's records went.
struct Appended {
    /// Segment and offset of the write; `None` when there was nothing to write.
    start: Option<(u32, u64)>,
    locs: Vec<Loc>,
    live: Vec<Loc>,
}

impl Thread {
    fn run(mut self, rx: Receiver<Job>) {
        let mut batch: Vec<Job> = Vec::new();
        loop {
            let job = match next_job(&rx) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    self.flush_counters_if_due();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            batch.push(job);
            batch.extend(rx.try_iter());
            if !batch.iter().any(|j| j.durable) {
                let deadline = Instant::now() + LAZY_COMMIT;
                while let Ok(job) =
                    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    let durable = job.durable;
                    batch.push(job);
                    if durable {
                        break;
                    }
                }
                batch.extend(rx.try_iter());
            }
            // While every sync slot is busy, more jobs queue up and join this batch.
            self.pipeline.wait_for_slot();
            batch.extend(rx.try_iter());
            self.write_batch(std::mem::take(&mut batch));
        }
        self.pipeline.shutdown();
        if let Err(e) = self.shared.segments.close_active() {
            tracing::warn!(error = %e, "cutting the active log segment back to its last record failed");
        }
        if let Err(e) = self.flush_counters() {
            tracing::error!(error = %e, "writing the buffer counters at close failed");
        }
    }

    /// Appends the batch and hands its sync to the pipeline; a batch that changes channels
    /// in redb is synced here, after every earlier batch, and then committed to redb.
    fn write_batch(&mut self, mut jobs: Vec<Job>) {
        if let Some((seg, at)) = self.pipeline.take_cut() {
            // A write failed: the spare's space may be what the disk lacks.
            self.shared.segments.drop_spare();
            if let Err(e) = self.shared.segments.cut_back(seg, at) {
                tracing::error!(segment = seg, error = %e, "cutting the log back after a failed sync failed");
            }
        }
        let appended = if self.shared.fail_commits.load(Ordering::SeqCst) {
            Err("injected I/O failure".to_owned())
        } else {
            self.append(&mut jobs)
        };
        let appended = match appended {
            Ok(a) => a,
            Err(e) => {
                self.shared.segments.drop_spare();
                self.pipeline.done(
                    Batch {
                        jobs,
                        locs: Vec::new(),
                        live: Vec::new(),
                    },
                    Err(e),
                );
                self.housekeep();
                return;
            }
        };
        let mut writes = Vec::new();
        for w in jobs.iter().flat_map(|j| j.meta.iter()) {
            match w {
                MetaWrite::Counters { name, snap } => match self.counters.get_mut(name) {
                    Some(pending) => pending.clone_from(snap),
                    None => {
                        self.counters.insert(name.clone(), snap.clone());
                    }
                },
                MetaWrite::Drop { name } => {
                    self.counters.remove(name);
                    writes.push(w);
                }
                MetaWrite::Channel { .. } => writes.push(w),
            }
        }
        // With one sync in flight a syncer thread would only add a hand-over (two thread
        // switches per batch) to the same wait: the writer syncs the batch itself.
        if writes.is_empty()
            && self.pipeline.depth() > 1
            && let Some(start) = appended.start
        {
            self.pipeline.submit(
                Batch {
                    jobs,
                    locs: appended.locs,
                    live: appended.live,
                },
                start,
            );
        } else {
            let mut result = Ok(());
            if appended.start.is_some() {
                self.pipeline.drain();
                result = self.sync_here(appended.start);
            }
            if result.is_err() {
                self.shared.segments.drop_spare();
            }
            if result.is_ok() && !writes.is_empty() {
                result = self.meta_commit(&writes);
            }
            self.pipeline.done(
                Batch {
                    jobs,
                    locs: appended.locs,
                    live: appended.live,
                },
                result,
            );
        }
        self.housekeep();
    }

    /// Syncs the active segment on this thread (with one sync in flight, or before a redb
    /// commit); on failure the segment is cut back to where the batch began.
    fn sync_here(&self, start: Option<(u32, u64)>) -> Result<(), String> {
        if self.shared.fail_syncs.load(Ordering::SeqCst) {
            if let Some((seg, at)) = start {
                let _ = self.shared.segments.cut_back(seg, at);
            }
            return Err("injected sync failure".to_owned());
        }
        self.shared
            .segments
            .sync(start)
            .map_err(|e| format!("syncing the message log: {e}"))
    }

    /// Appends every record of `jobs` with one write (plus padding to a page boundary),
    /// sealed for the segment they land in.
    fn append(&mut self, jobs: &mut [Job]) -> Result<Appended, String> {
        let segments = self.shared.segments.clone();
        let mut spans = Vec::new();
        // One record (a large body, or a quiet moment) is written as it is; several are
        // gathered into one buffer for a single write.
        let single = matches!(
            jobs.iter().flat_map(|j| j.recs.iter()).collect::<Vec<_>>()[..],
            [Rec::New(_)]
        );
        let mut gathered = Vec::new();
        if !single {
            for rec in jobs.iter().flat_map(|j| j.recs.iter()) {
                let start = gathered.len();
                match rec {
                    Rec::New(bytes) => gathered.extend_from_slice(bytes),
                    Rec::Copy(from) => match segments.read(*from) {
                        Ok(bytes) => {
                            gathered.extend_from_slice(&bytes);
                            segments.count_copied();
                        }
                        Err(e) => tracing::debug!(error = %e, "compaction source gone"),
                    },
                }
                spans.push((start, gathered.len() - start));
            }
        }
        let single_rec = jobs
            .iter_mut()
            .flat_map(|j| j.recs.iter_mut())
            .find_map(|r| match r {
                Rec::New(bytes) if single => Some(bytes),
                _ => None,
            });
        let len = match &single_rec {
            Some(bytes) => {
                spans.push((0, bytes.len()));
                bytes.len()
            }
            None => gathered.len(),
        };
        if len == 0 {
            // Nothing to write (no records, or only copies whose source is gone).
            let gone = Loc {
                seg: 0,
                off: 0,
                len: 0,
            };
            return Ok(Appended {
                start: None,
                locs: vec![gone; spans.len()],
                live: Vec::new(),
            });
        }
        let (_, size) = segments.active();
        // The same decision `pad_for` makes.
        let rolls = self.rolls(size, len);
        // A second write, not a copy of a large single record into a padded buffer.
        let mut pad = match self.pad_for(size, len) {
            0 => Vec::new(),
            n => codec::pad_record(n),
        };
        if rolls {
            // Every batch in flight belongs to the old segment: let its syncs finish first,
            // so a failed one only ever cuts the active segment.
            self.pipeline.drain();
            segments
                .roll()
                .map_err(|e| format!("starting a log segment: {e}"))?;
        }
        let (_, salt) = segments
            .active_salt()
            .ok_or("the active log segment has no header")?;
        if !pad.is_empty() {
            codec::seal(&mut pad, salt);
        }
        let buf: &[u8] = match single_rec {
            Some(bytes) => {
                codec::seal(bytes, salt);
                bytes
            }
            None => {
                for &(start, len) in &spans {
                    if len > 0 {
                        codec::seal(&mut gathered[start..start + len], salt);
                    }
                }
                &gathered
            }
        };
        let (seg, at) = segments
            .append(&[buf, &pad])
            .map_err(|e| format!("writing the message log: {e}"))?;
        let mut locs = Vec::with_capacity(spans.len());
        let mut live = Vec::new();
        for (start, len) in spans {
            let loc = Loc {
                seg,
                off: (at + start as u64) as u32,
                len: len as u32,
            };
            if len > 0 && buf[start + 2] == KIND_MESSAGE {
                segments.add_live(loc);
                live.push(loc);
            }
            locs.push(loc);
        }
        Ok(Appended {
            start: Some((seg, at)),
            locs,
            live,
        })
    }

    /// The padding that ends a batch of `len` bytes on a page boundary (the active segment
    /// holding `size`), wherever it will be appended (at the end of the active segment, or at the start of a new one); 0 when
    /// it would be large beside the batch.
    fn pad_for(&self, size: u64, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let at = if self.rolls(size, len) {
            codec::SEGMENT_START
        } else {
            size
        };
        let pad = codec::pad_after(at + len as u64);
        // Padding costs disk space (not writes: that page is written anyway), so only where
        // it is small beside the batch; disk use stays within 1.25× the records' bytes.
        if pad * 4 <= len { pad } else { 0 }
    }

    /// Does a batch of `len` bytes start a new segment when the active one holds `size`?
    fn rolls(&self, size: u64, len: usize) -> bool {
        size > codec::SEGMENT_START && size + len as u64 > self.shared.segment_bytes
    }

    /// One redb transaction with `writes` and every pending counters snapshot.
    fn meta_commit(&mut self, writes: &[&MetaWrite]) -> Result<(), String> {
        if self.db.is_none() {
            if Instant::now() < self.reopen_after {
                return Err("buffer store closed after a failed write; reopening".into());
            }
            match meta::open_db(&self.db_path) {
                Ok(db) => self.db = Some(db),
                Err(e) => {
                    self.reopen_after = Instant::now() + REOPEN_BACKOFF;
                    return Err(e.to_string());
                }
            }
        }
        let Some(db) = &self.db else {
            return Err("buffer store closed".into());
        };
        let next_id = self.shared.next_channel_id.load(Ordering::SeqCst);
        match meta::commit(db, writes, &self.counters, next_id) {
            Ok(()) => {
                self.counters.clear();
                self.counters_flushed = Instant::now();
                Ok(())
            }
            Err(e) => {
                // redb refuses every later commit after an I/O error until it is reopened.
                self.db = None;
                self.reopen_after = Instant::now() + REOPEN_BACKOFF;
                Err(format!("writing the channel store: {e}"))
            }
        }
    }

    fn flush_counters(&mut self) -> Result<(), String> {
        if self.counters.is_empty() {
            return Ok(());
        }
        self.meta_commit(&[])
    }

    fn flush_counters_if_due(&mut self) {
        if self.counters_flushed.elapsed() >= COUNTERS_EVERY
            && let Err(e) = self.flush_counters()
        {
            tracing::debug!(error = %e, "writing the buffer counters failed; will retry");
        }
    }

    /// Starts a new segment and deletes dead ones from the head.
    fn housekeep(&mut self) {
        self.flush_counters_if_due();
        let segments = self.shared.segments.clone();
        let plan = segments.housekeep(self.shared.segment_bytes);
        if plan.roll {
            // As in `append`: no batch of the old segment may still be syncing.
            self.pipeline.drain();
            if let Err(e) = segments.roll() {
                tracing::debug!(error = %e, "starting a log segment failed; will retry");
            }
        }
        let plan = segments.housekeep(self.shared.segment_bytes);
        if plan.delete.is_empty() {
            return;
        }
        // Records copied forward out of these segments must be durable first.
        self.pipeline.drain();
        // The counters (with each channel's sequence) must be durable before the records
        // that also prove a sequence number was used disappear. On a full disk that write
        // can fail (when redb must grow), and only deleting segments would free space: the
        // reserve file gives the room for it, so a queue that filled the disk frees it by
        // being drained.
        if let Err(e) = self.flush_counters() {
            if !reserve::release(&self.db_path) {
                tracing::debug!(error = %e, "not deleting log segments until the counters are written");
                return;
            }
            tracing::warn!(error = %e, "disk full: released the reserve to delete drained log segments");
            self.reopen_after = Instant::now();
            if let Err(e) = self.flush_counters() {
                tracing::debug!(error = %e, "not deleting log segments until the counters are written");
                return;
            }
        }
        // While writes fail (a full disk) nothing is kept for reuse: the space is needed.
        let recycle = self.shared.failure.lock().is_none();
        for seg in plan.delete {
            if let Err(e) = segments.delete(seg, recycle) {
                tracing::warn!(segment = seg, error = %e, "deleting a log segment failed");
            }
        }
        reserve::ensure(&self.db_path);
    }
}
