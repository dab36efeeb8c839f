//! The message log: numbered segment files under `<data>/log/`, appended by the writer
//! thread only, read by anyone at a [`Loc`], deleted oldest first once nothing in them is
//! live (Kafka's log segments, with RabbitMQ's "copy the few live records forward" for a
//! head segment pinned by a dead letter or a delayed message).
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
    size: u64,
    live: u64,
    live_bytes: u64,
}

/// Every segment file, shared by the writer (appends, rolls, deletes) and the readers.
pub(super) struct Segments {
    dir: PathBuf,
    inner: Mutex<BTreeMap<u32, Seg>>,
    /// Records copied forward by compaction since the store was opened.
    copied: AtomicU64,
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
    pub segments: u64,
    pub bytes: u64,
    pub live_messages: u64,
    pub live_bytes: u64,
    /// Records copied forward by compaction since the store was opened.
    pub copied_records: u64,
}

fn name(seg: u32) -> String {
    format!("{seg:010}.log")
}

impl Segments {
    pub fn path(&self, seg: u32) -> PathBuf {
        self.dir.join(name(seg))
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
            ..LogStats::default()
        };
        for seg in inner.values() {
            s.bytes += seg.size;
            s.live_messages += seg.live;
            s.live_bytes += seg.live_bytes;
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

    /// Reads one whole record.
    pub fn read(&self, loc: Loc) -> std::io::Result<Vec<u8>> {
        let file = self
            .inner
            .lock()
            .get(&loc.seg)
            .map(|s| s.file.clone())
            .ok_or_else(|| std::io::Error::other(format!("segment {} is gone", loc.seg)))?;
        let mut buf = vec![0; loc.len as usize];
        file.read_exact_at(&mut buf, u64::from(loc.off))?;
        Ok(buf)
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
                return Err(e);
            }
            end += bytes.len() as u64;
        }
        if let Some(s) = self.inner.lock().get_mut(&seg) {
            s.size = end;
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
        }
        Ok(())
    }

    /// Starts a new active segment.
    pub fn roll(&self) -> std::io::Result<u32> {
        let next = self.active().0 + 1;
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(self.path(next))?;
        sync_dir(&self.dir)?;
        self.inner.lock().insert(
            next,
            Seg {
                file: Arc::new(file),
                size: 0,
                live: 0,
                live_bytes: 0,
            },
        );
        Ok(next)
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

    /// Removes a segment file (readers holding it keep their handle).
    pub fn delete(&self, seg: u32) -> std::io::Result<()> {
        if self.inner.lock().remove(&seg).is_some() {
            std::fs::remove_file(self.path(seg))?;
        }
        Ok(())
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
            copied: AtomicU64::new(0),
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
    let mut numbers: Vec<u32> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            n.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    numbers.sort_unstable();
    let last = numbers.last().copied();
    for n in numbers {
        let path = segments.path(n);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let is_last = Some(n) == last;
        let (good, total) = scan(&file, n, is_last, &mut visit)?;
        if good < total {
            if is_last {
                tracing::warn!(
                    segment = %path.display(),
                    kept = good,
                    dropped = total - good,
                    "cutting a torn tail off the message log (a batch that was never acknowledged)"
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
                live: 0,
                live_bytes: 0,
            },
        );
    }
    // Always append to a fresh segment: an old one may end in bytes that were cut.
    segments.roll()?;
    Ok(())
}

/// Reads every well-formed record of one segment; returns (end of the last good record,
/// file length). Bodies are skipped, except in the last segment where they are checked too
/// (a crash can tear only the tail of the segment being written).
fn scan(
    file: &File,
    seg: u32,
    check_bodies: bool,
    visit: &mut impl FnMut(Scanned<'_>),
) -> std::io::Result<(u64, u64)> {
    let total = file.metadata()?.len();
    let mut r = BufReader::with_capacity(256 * 1024, file);
    r.seek(SeekFrom::Start(0))?;
    let mut at = 0u64;
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
        if frame.check(&fb, &head).is_err() {
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
    Ok((at, total))
}
