//! The message log: numbered segment files under `<data>/log/`, appended by the writer
//! thread only, read by anyone at a [`Loc`], deleted oldest first once nothing in them is
//! live (Kafka's log segments, with RabbitMQ's "copy the few live records forward" for a
//! head segment pinned by a dead letter or a delayed message).
//!
//! A dead segment is recycled rather than deleted when there is no spare yet: it is renamed to
//! `NNNNNNNNNN.spare` (its number then) and becomes the next active segment at the next roll,
//! written over from the start. On ext4 (and most file systems) an `fdatasync` that only
//! overwrites blocks the file already has needs no journal commit, where one that grows the
//! file commits the new size and extents every time (4 KiB syncs on this machine's ext4:
//! 86–97 µs overwriting against 132–231 µs appending; docs/BENCHMARKS.md, "Session 16").
//! Each life of a segment starts with a header holding a random salt, and its records are
//! sealed with it (`codec`), so the bytes of its earlier lives past the new last record end
//! the scan like a torn tail. A recycled active segment is cut back to its last record when it
//! is rolled or closed, so every segment but a crashed active one ends at its last record, as
//! before.
//!
//! Liveness is counted per segment: the writer adds one for every message record it appends;
//! the backend takes one away when that copy of the message stops mattering (settled,
//! dropped, or superseded by a later copy). State and settle records are never counted:
//! they always follow their message record, and once every segment before them is gone the
//! messages they describe are either in a later segment or settled.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::codec::{self, FRAME, Frame};

/// Where a record is: segment number, byte offset and whole length (frame included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Loc {
    pub seg: u32,
    pub off: u32,
    pub len: u32,
}

struct Seg {
    file: Arc<File>,
    /// The end of the last record: where the next one goes.
    size: u64,
    /// The file's length: more than `size` in a recycled active segment (its earlier lives).
    file_len: u64,
    /// The salt this life's records are sealed with; `None` for a segment written before
    /// format 4 (unsealed records, no header).
    salt: Option<u64>,
    /// Holds nothing but sealed records (of any life), so it may be recycled once dead. A
    /// segment of unsealed records never is: they would read as valid in a later life.
    recyclable: bool,
    live: u64,
    live_bytes: u64,
}

/// A dead segment kept for reuse.
#[derive(Clone, Copy, Debug)]
struct Spare {
    /// Its number in its last life (its file is `NNNNNNNNNN.spare`).
    former: u32,
    len: u64,
}

/// Recycling a segment smaller than this gains little; it is deleted. (Segments are at least
/// 64 KiB, less the last batch that did not fit.)
const MIN_SPARE: u64 = 16 * 1024;

/// Every segment file, shared by the writer (appends, rolls, deletes) and the readers.
pub(super) struct Segments {
    dir: PathBuf,
    inner: Mutex<BTreeMap<u32, Seg>>,
    /// At most one dead segment kept for the next roll. Lock order: `inner`, then `spare`.
    spare: Mutex<Option<Spare>>,
    /// Records copied forward by compaction since the store was opened.
    copied: AtomicU64,
    /// Segments started on the spare since the store was opened.
    recycled: AtomicU64,
}

/// What [`Segments::housekeep`] decided; the writer acts on it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Housekeeping {
    pub roll: bool,
    /// Segments (oldest first, never the active one) with nothing live.
    pub delete: Vec<u32>,
}

/// Figures for `/health`, metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Segment files, the spare included.
    pub segments: u64,
    /// Bytes of the segment files on disk, the spare included.
    pub bytes: u64,
    pub live_messages: u64,
    pub live_bytes: u64,
    /// Records copied forward by compaction since the store was opened.
    pub copied_records: u64,
    /// Segments started on the spare (a drained segment written over) since the store was
    /// opened: how a test or a bench tells that recycling really happened.
    pub recycled_segments: u64,
    /// Bytes of the active segment's earlier life still ahead of its last record: while more
    /// than 0, appends overwrite blocks the file has (no journal commit) instead of growing it.
    pub active_overwrite_ahead: u64,
}

fn name(seg: u32) -> String {
    format!("{seg:010}.log")
}

impl Segments {
    pub fn path(&self, seg: u32) -> PathBuf {
        self.dir.join(name(seg))
    }

    fn spare_path(&self, former: u32) -> PathBuf {
        self.dir.join(format!("{former:010}.spare"))
    }

    /// The active (last) segment and its size.
    pub fn active(&self) -> (u32, u64) {
        let inner = self.inner.lock();
        inner.last_key_value().map_or((0, 0), |(k, s)| (*k, s.size))
    }

    /// The oldest segment that is not the active one, with (size, live bytes).
    pub fn head(&self) -> Option<(u32, u64, u64)> {
        let inner = self.inner.lock();
        let (&last, _) = inner.last_key_value()?;
        inner
            .iter()
            .next()
            .filter(|(k, _)| **k != last)
            .map(|(k, s)| (*k, s.size, s.live_bytes))
    }

    pub fn stats(&self) -> LogStats {
        let inner = self.inner.lock();
        let mut s = LogStats {
            segments: inner.len() as u64,
            copied_records: self.copied.load(Ordering::Relaxed),
            recycled_segments: self.recycled.load(Ordering::Relaxed),
            ..LogStats::default()
        };
        if let Some(active) = inner.values().next_back() {
            s.active_overwrite_ahead = active.file_len.saturating_sub(active.size);
        }
        for seg in inner.values() {
            s.bytes += seg.file_len.max(seg.size);
            s.live_messages += seg.live;
            s.live_bytes += seg.live_bytes;
        }
        if let Some(spare) = *self.spare.lock() {
            s.segments += 1;
            s.bytes += spare.len;
        }
        s
    }

    pub fn count_copied(&self) {
        self.copied.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_live(&self, loc: Loc) {
        if let Some(s) = self.inner.lock().get_mut(&loc.seg) {
            s.live += 1;
            s.live_bytes += u64::from(loc.len);
        }
    }

    pub fn drop_live(&self, loc: Loc) {
        if let Some(s) = self.inner.lock().get_mut(&loc.seg) {
            s.live = s.live.saturating_sub(1);
            s.live_bytes = s.live_bytes.saturating_sub(u64::from(loc.len));
        }
    }

    /// Reads one whole record, checked against its segment's salt and given back unsealed.
    /// (A segment recycled since `loc` was handed out holds another life's bytes there: they
    /// fail the check.)
    pub fn read(&self, loc: Loc) -> std::io::Result<Vec<u8>> {
        let (file, salt) = self
            .inner
            .lock()
            .get(&loc.seg)
            .map(|s| (s.file.clone(), s.salt))
            .ok_or_else(|| std::io::Error::other(format!("segment {} is gone", loc.seg)))?;
        let mut buf = vec![0; loc.len as usize];
        file.read_exact_at(&mut buf, u64::from(loc.off))?;
        codec::unseal(&mut buf, salt).map_err(|e| {
            std::io::Error::other(format!("segment {} offset {}: {e}", loc.seg, loc.off))
        })?;
        Ok(buf)
    }

    /// The active segment and the salt its records are sealed with.
    pub fn active_salt(&self) -> Option<(u32, u64)> {
        let inner = self.inner.lock();
        let (k, s) = inner.last_key_value()?;
        Some((*k, s.salt?))
    }

    /// Appends `parts` one after another to the active segment (a `pwrite` each); on failure
    /// the segment is cut back to where it was, so a later append starts on a record boundary.
    pub fn append(&self, parts: &[&[u8]]) -> std::io::Result<(u32, u64)> {
        let (seg, file, at) = {
            let inner = self.inner.lock();
            let (k, s) = inner
                .last_key_value()
                .ok_or_else(|| std::io::Error::other("no active segment"))?;
            (*k, s.file.clone(), s.size)
        };
        let mut end = at;
        for bytes in parts {
            if let Err(e) = file.write_all_at(bytes, end) {
                let _ = file.set_len(at);
                if let Some(s) = self.inner.lock().get_mut(&seg) {
                    s.file_len = at;
                }
                return Err(e);
            }
            end += bytes.len() as u64;
        }
        if let Some(s) = self.inner.lock().get_mut(&seg) {
            s.size = end;
            s.file_len = s.file_len.max(end);
        }
        Ok((seg, at))
    }

    /// `fdatasync` of the active segment; on failure it is cut back to `keep` bytes.
    pub fn sync(&self, keep: Option<(u32, u64)>) -> std::io::Result<()> {
        let (seg, file) = {
            let inner = self.inner.lock();
            match inner.last_key_value() {
                Some((k, s)) => (*k, s.file.clone()),
                None => return Ok(()),
            }
        };
        let r = file.sync_data();
        if r.is_err()
            && let Some((kseg, at)) = keep
            && kseg == seg
        {
            let _ = file.set_len(at);
            if let Some(s) = self.inner.lock().get_mut(&seg) {
                s.size = at;
                s.file_len = at;
            }
        }
        r
    }

    /// `fdatasync` of segment `seg` (a syncer thread's share of a pipelined commit); a
    /// segment deleted meanwhile has nothing left to sync.
    pub fn sync_segment(&self, seg: u32) -> std::io::Result<()> {
        let file = self.inner.lock().get(&seg).map(|s| s.file.clone());
        match file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Cuts segment `seg` back to `at` bytes after a failed sync, so the next append
    /// starts where the last durable batch ended.
    pub fn cut_back(&self, seg: u32, at: u64) -> std::io::Result<()> {
        let file = self.inner.lock().get(&seg).map(|s| s.file.clone());
        let Some(file) = file else { return Ok(()) };
        file.set_len(at)?;
        if let Some(s) = self.inner.lock().get_mut(&seg) {
            s.size = s.size.min(at);
            s.file_len = at;
        }
        Ok(())
    }

    /// Starts a new active segment: the spare when there is one (renamed; its earlier lives'
    /// bytes stay until written over), else a new file. Its header is synced before any
    /// record goes in, so a segment's life is known whatever reaches the disk after it.
    pub fn roll(&self) -> std::io::Result<u32> {
        self.close_active()?;
        let next = {
            let inner = self.inner.lock();
            let last = inner.last_key_value().map_or(0, |(k, _)| *k);
            let former = self.spare.lock().map_or(0, |s| s.former);
            last.max(former) + 1
        };
        let path = self.path(next);
        let recycled = self.spare.lock().take().and_then(|spare| {
            let from = self.spare_path(spare.former);
            let opened = std::fs::rename(&from, &path).and_then(|()| {
                OpenOptions::new().read(true).write(true).open(&path)
            });
            match opened {
                Ok(file) => Some((file, spare.len)),
                Err(e) => {
                    tracing::debug!(error = %e, "reusing the spare log segment failed; starting a new one");
                    let _ = std::fs::remove_file(&from);
                    None
                }
            }
        });
        let reused = recycled.is_some();
        let (file, len) = match recycled {
            Some(f) => f,
            None => (
                OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(&path)?,
                0,
            ),
        };
        let salt: u64 = rand::random();
        file.write_all_at(&codec::segment_header(next, salt), 0)?;
        file.sync_data()?;
        sync_dir(&self.dir)?;
        self.inner.lock().insert(
            next,
            Seg {
                file: Arc::new(file),
                size: codec::SEGMENT_START,
                file_len: len.max(codec::SEGMENT_START),
                salt: Some(salt),
                recyclable: true,
                live: 0,
                live_bytes: 0,
            },
        );
        if reused {
            self.recycled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(next)
    }

    /// Cuts a recycled active segment back to its last record (and syncs that), so that it
    /// ends where its records end once it is no longer written: at a roll and at close.
    pub fn close_active(&self) -> std::io::Result<()> {
        let active = {
            let inner = self.inner.lock();
            inner
                .last_key_value()
                .filter(|(_, s)| s.file_len > s.size)
                .map(|(k, s)| (*k, s.file.clone(), s.size))
        };
        let Some((seg, file, size)) = active else {
            return Ok(());
        };
        file.set_len(size)?;
        file.sync_data()?;
        if let Some(s) = self.inner.lock().get_mut(&seg) {
            s.file_len = size;
        }
        Ok(())
    }

    /// Deletes the spare (to give its space back when the disk is full).
    pub fn drop_spare(&self) {
        if let Some(spare) = self.spare.lock().take()
            && let Err(e) = std::fs::remove_file(self.spare_path(spare.former))
        {
            tracing::warn!(error = %e, "deleting the spare log segment failed");
        }
    }

    /// What to do after a batch: roll when the active segment is full (or holds nothing live
    /// and is worth reclaiming), delete dead segments from the head.
    pub fn housekeep(&self, segment_bytes: u64) -> Housekeeping {
        let inner = self.inner.lock();
        let mut h = Housekeeping::default();
        let Some((&last, active)) = inner.last_key_value() else {
            return h;
        };
        let reclaim_at = (segment_bytes / 64).max(64 * 1024);
        h.roll = active.size >= segment_bytes || (active.live == 0 && active.size >= reclaim_at);
        for (&k, s) in inner.iter() {
            if k == last || s.live > 0 {
                break;
            }
            h.delete.push(k);
        }
        h
    }

    /// Removes a dead segment: kept as the spare when `recycle` allows, there is none yet and
    /// it may be recycled, else deleted. (Readers holding it keep their handle; what they read
    /// after it was recycled fails the salt check.)
    pub fn delete(&self, seg: u32, recycle: bool) -> std::io::Result<()> {
        let Some(s) = self.inner.lock().remove(&seg) else {
            return Ok(());
        };
        let path = self.path(seg);
        if recycle && s.recyclable && s.file_len >= MIN_SPARE {
            let mut spare = self.spare.lock();
            if spare.is_none() {
                match std::fs::rename(&path, self.spare_path(seg)) {
                    Ok(()) => {
                        *spare = Some(Spare {
                            former: seg,
                            len: s.file_len,
                        });
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::debug!(segment = seg, error = %e, "keeping a log segment as the spare failed");
                    }
                }
            }
        }
        std::fs::remove_file(path)
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// One record met by [`open`]'s scan.
pub(super) struct Scanned<'a> {
    pub loc: Loc,
    pub kind: u8,
    pub head: &'a [u8],
}

impl Segments {
    /// No segments yet: [`Segments::open`] reads them.
    pub fn new(dir: &Path) -> Arc<Self> {
        Arc::new(Self {
            dir: dir.to_owned(),
            inner: Mutex::new(BTreeMap::new()),
            spare: Mutex::new(None),
            copied: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
        })
    }
}

/// Opens the log directory (creating it), scans every record in order and hands each to
/// `visit`, cuts a torn tail off the last segment, and leaves a fresh active segment.
pub(super) fn open(
    segments: &Arc<Segments>,
    mut visit: impl FnMut(Scanned<'_>),
) -> std::io::Result<()> {
    let dir = segments.dir.clone();
    let dir = dir.as_path();
    std::fs::create_dir_all(dir)?;
    let mut numbers: Vec<u32> = Vec::new();
    let mut spares: Vec<(u32, u64)> = Vec::new();
    for e in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
        let Ok(n) = e.file_name().into_string() else {
            continue;
        };
        if let Some(k) = n.strip_suffix(".log").and_then(|k| k.parse().ok()) {
            numbers.push(k);
        } else if let Some(k) = n.strip_suffix(".spare").and_then(|k| k.parse().ok()) {
            spares.push((k, e.metadata()?.len()));
        }
    }
    numbers.sort_unstable();
    // One spare is kept (the largest); any other is left over from a crash.
    spares.sort_unstable_by_key(|&(k, len)| (len, k));
    if let Some((former, len)) = spares.pop() {
        *segments.spare.lock() = Some(Spare { former, len });
    }
    for (k, _) in spares {
        std::fs::remove_file(segments.spare_path(k))?;
    }
    let last = numbers.last().copied();
    for n in numbers {
        let path = segments.path(n);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let is_last = Some(n) == last;
        let end = scan(&file, n, is_last, &mut visit)?;
        let (good, total) = (end.good, end.total);
        if good < total {
            if is_last {
                tracing::warn!(
                    segment = %path.display(),
                    kept = good,
                    dropped = total - good,
                    "cutting the message log after its last whole record (a batch that was never acknowledged, or what is left of a recycled segment's earlier life)"
                );
                file.set_len(good)?;
                file.sync_all()?;
            } else {
                tracing::error!(
                    segment = %path.display(),
                    at = good,
                    "the message log is damaged here; records after this point in the segment are skipped"
                );
            }
        }
        segments.inner.lock().insert(
            n,
            Seg {
                file: Arc::new(file),
                size: good,
                file_len: if is_last { good } else { total },
                salt: end.salt,
                // Whatever is past a damaged point may be anything: such a file is deleted.
                recyclable: end.salt.is_some() && (is_last || good == total),
                live: 0,
                live_bytes: 0,
            },
        );
    }
    // Always append to a fresh segment: an old one may end in bytes that were cut.
    segments.roll()?;
    Ok(())
}

/// Where [`scan`] stopped.
struct ScanEnd {
    /// The end of the last good record.
    good: u64,
    /// The file's length.
    total: u64,
    /// The salt of the segment's life (from its header); `None` for a segment of unsealed
    /// records (written before format 4).
    salt: Option<u64>,
}

/// Reads every well-formed record of one segment. Bodies are skipped, except in the last
/// segment where they are checked too (a crash can tear only the tail of the segment being
/// written). A segment starting with a header of another segment's life (a recycled file
/// whose new header never reached the disk) has no records.
fn scan(
    file: &File,
    seg: u32,
    check_bodies: bool,
    visit: &mut impl FnMut(Scanned<'_>),
) -> std::io::Result<ScanEnd> {
    let total = file.metadata()?.len();
    let mut r = BufReader::with_capacity(256 * 1024, file);
    r.seek(SeekFrom::Start(0))?;
    let mut at = 0u64;
    let mut salt = None;
    let mut head = Vec::new();
    let mut body = Vec::new();
    while at + FRAME as u64 <= total {
        let mut fb = [0u8; FRAME];
        r.read_exact(&mut fb)?;
        let Ok(frame) = Frame::parse(&fb) else { break };
        if at + frame.total() > total || at + frame.total() > u64::from(u32::MAX) {
            break;
        }
        head.resize(frame.head_len as usize, 0);
        r.read_exact(&mut head)?;
        if frame.kind == codec::KIND_SEGMENT {
            // Only at the start, and only this segment's own.
            let own = at == 0
                && frame.check(&fb, &head, None).is_ok()
                && codec::decode_segment_header(&head).is_ok_and(|(n, _)| n == seg);
            if !own {
                break;
            }
            salt = codec::decode_segment_header(&head).ok().map(|(_, s)| s);
            at += frame.total();
            continue;
        }
        if frame.check(&fb, &head, salt).is_err() {
            break;
        }
        if frame.kind == codec::KIND_MESSAGE && check_bodies {
            body.resize(frame.body_len as usize, 0);
            r.read_exact(&mut body)?;
            if codec::decode_message(&head, &body, "").is_err() {
                break;
            }
        } else {
            r.seek_relative(i64::from(frame.body_len))?;
        }
        visit(Scanned {
            loc: Loc {
                seg,
                off: at as u32,
                len: frame.total() as u32,
            },
            kind: frame.kind,
            head: &head,
        });
        at += frame.total();
    }
    Ok(ScanEnd {
        good: at,
        total,
        salt,
    })
}
