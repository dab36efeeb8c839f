//! [`PowerLossFs`]: a FUSE filesystem held in memory that loses, on a simulated power cut,
//! every write not made durable by `fsync`/`fdatasync` — the way a disk's volatile cache
//! does, and the way a process kill never can (the kernel keeps a killed process's written
//! pages). The idea is Jepsen's LazyFS and FoundationDB's simulated disks, inside our CI.
//!
//! Each file has two contents: what readers see now, and what had reached "the disk" at the
//! file's last `fsync`. [`PowerLossFs::crash`] unmounts (dropping the kernel's page cache
//! too), puts every file back to its synced content — or, with [`Crash::TornTail`], keeps the
//! unsynced writes except the last, which survives only in part, as when some of a batch's
//! pages reached the platter — and mounts again at the same place.
//!
//! Model limits: names (create, rename, unlink, mkdir) are durable at once, as on a
//! journaling filesystem that commits metadata with the next fsync of any file; only file
//! contents are volatile. [`Durability::IgnoreFsync`] treats `fsync` as a no-op, which is
//! what a store that never syncs gets: a test uses it to show the harness catches that.
//!
//! Needs `/dev/fuse` and root (CI runs as root): mounting is done by the `mount` system call.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

/// How long an `fsync`/`fdatasync` takes before it makes the data durable (a disk's cache
/// flush; measured here on the CI disk: 0.1–0.6 ms, up to 3 ms when busy).
pub const FLUSH_LATENCY: Duration = Duration::from_millis(2);

/// Whether `fsync` makes data durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fsync`/`fdatasync` of a file make its current content survive a crash.
    Honest,
    /// `fsync` does nothing: nothing written after mounting survives a crash.
    IgnoreFsync,
}

/// What survives of the unsynced writes at a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// None of them.
    LoseAll,
    /// All but the last write of each file, and of the last one its first `keep` per mille.
    TornTail { keep_per_mille: u16 },
}

/// What a crash threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Files whose content went back (wholly or partly) to an older state.
    pub files_reverted: usize,
    /// Bytes of unsynced writes lost.
    pub bytes_lost: u64,
}

/// A mounted power-loss filesystem (unmounted on drop).
pub struct PowerLossFs {
    state: Arc<Mutex<State>>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    _dir: tempfile::TempDir,
}

impl PowerLossFs {
    /// Mounts an empty filesystem on a fresh temporary directory.
    pub fn mount(durability: Durability) -> Result<Self> {
        anyhow::ensure!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: the power-loss tests need FUSE (modprobe fuse)"
        );
        let dir = tempfile::tempdir()?;
        let mountpoint = dir.path().join("disk");
        std::fs::create_dir(&mountpoint)?;
        let state = Arc::new(Mutex::new(State::new(durability)));
        let session = Some(mount(&state, &mountpoint)?);
        Ok(Self {
            state,
            mountpoint,
            session,
            _dir: dir,
        })
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The power starts failing: from now on no `fsync` completes (one in progress when this
    /// is called, inside its [`FLUSH_LATENCY`], fails too). Call it before killing the process
    /// that writes, then [`PowerLossFs::crash`]: killing a process blocked in a FUSE request
    /// waits for that request, so without this a flush under way would still complete.
    pub fn power_off(&self) {
        self.state.lock().power_off = true;
    }

    /// Arms a cut at a precise moment: the power goes off right after the first `fsync` of a
    /// file renamed from a name ending in `suffix` completes — for a store's spare log segment
    /// (`.spare`) renamed into the active one, the moment its new header is durable and
    /// nothing after it is, the earlier life's records lying right behind it. Wait for
    /// [`PowerLossFs::powered_off`], kill the writer, then [`PowerLossFs::crash`] (which
    /// disarms).
    pub fn power_off_after_first_sync_of_renamed(&self, suffix: &str) {
        self.state.lock().trip = Trip::Armed {
            suffix: suffix.to_owned(),
        };
    }

    /// Whether the power is off (by [`PowerLossFs::power_off`] or an armed trip).
    pub fn powered_off(&self) -> bool {
        self.state.lock().power_off
    }

    /// Cuts the power: unmounts, drops what was not synced (see [`Crash`]) and mounts again
    /// with the power back on. Whoever had files open must be gone first (kill the process
    /// using it).
    pub fn crash(&mut self, how: Crash) -> Result<CrashReport> {
        if let Some(session) = self.session.take()
            && let Err(e) = session.umount_and_join()
            && self.mounted()
        {
            return Err(e)
                .context("unmounting the power-loss filesystem (is a process still using it?)");
        }
        // (An error with the filesystem unmounted is the session thread seeing its connection
        // end as aborted, ECONNABORTED, instead of ENODEV: the unmount itself went through.)
        let report = {
            let mut state = self.state.lock();
            state.power_off = false;
            state.trip = Trip::Disarmed;
            state.crash(how)
        };
        self.session = Some(mount(&self.state, &self.mountpoint)?);
        Ok(report)
    }

    /// Whether the mount point is still mounted (`/proc/self/mountinfo`).
    fn mounted(&self) -> bool {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return true;
        };
        let at = self.mountpoint.to_string_lossy();
        info.lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|p| p == at))
    }

    /// Bytes written but not yet synced, over all files.
    pub fn unsynced_bytes(&self) -> u64 {
        self.state.lock().unsynced_bytes()
    }
}

impl Drop for PowerLossFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}

fn mount(state: &Arc<Mutex<State>>, at: &Path) -> Result<BackgroundSession> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("powerloss".into()),
        MountOption::RW,
        MountOption::CUSTOM("default_permissions".into()),
    ];
    fuser::spawn_mount(Fs(state.clone()), at, &config)
        .with_context(|| format!("mounting the power-loss filesystem on {}", at.display()))
}

/// The state of every inode, shared between mounts.
struct State {
    durability: Durability,
    /// Set by [`PowerLossFs::power_off`]: the power is failing, no flush completes any more.
    power_off: bool,
    /// See [`PowerLossFs::power_off_after_first_sync_of_renamed`].
    trip: Trip,
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

/// A power cut armed to happen at a file system event.
enum Trip {
    Disarmed,
    /// At the first sync of a file renamed from a name ending in `suffix`, once renamed.
    Armed {
        suffix: String,
    },
    /// At the first sync of this inode.
    Renamed {
        ino: u64,
    },
}

struct Node {
    kind: FileType,
    perm: u16,
    mtime: SystemTime,
    /// Directories: name → inode.
    children: BTreeMap<OsString, u64>,
    parent: u64,
    /// Files: what readers see now.
    data: Vec<u8>,
    /// Files: how to go back from `data` to the content at the last sync, newest last.
    undo: Vec<Undo>,
}

/// One change since the last sync, and what it replaced.
enum Undo {
    /// `len` bytes written at `offset`; `old` held the bytes it overwrote, `old_len` the size.
    Write {
        offset: usize,
        len: usize,
        old: Vec<u8>,
        old_len: usize,
    },
    /// The size set from `old_len`; `cut` held the bytes a shrink removed.
    SetLen { old_len: usize, cut: Vec<u8> },
}

impl Undo {
    fn bytes(&self) -> u64 {
        match self {
            Undo::Write { len, .. } => *len as u64,
            Undo::SetLen { cut, .. } => cut.len().max(1) as u64,
        }
    }

    /// Reverts `data` from after this change to before it, except the first `keep` bytes of
    /// a write (a torn write: that much reached the disk).
    fn revert(self, data: &mut Vec<u8>, keep: usize) {
        match self {
            Undo::Write {
                offset,
                len,
                old,
                old_len,
            } => {
                let keep = keep.min(len);
                for (i, byte) in old.iter().enumerate().skip(keep) {
                    data[offset + i] = *byte;
                }
                data.truncate(old_len.max(offset + keep));
            }
            Undo::SetLen { old_len, cut } => {
                data.resize(old_len - cut.len(), 0);
                data.extend_from_slice(&cut);
            }
        }
    }
}

impl Node {
    fn new(kind: FileType, perm: u16, parent: u64) -> Self {
        Self {
            kind,
            perm,
            mtime: SystemTime::now(),
            children: BTreeMap::new(),
            parent,
            data: Vec::new(),
            undo: Vec::new(),
        }
    }
}

const ROOT: u64 = 1;
const TTL: Duration = Duration::from_secs(1);

impl State {
    fn new(durability: Durability) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(FileType::Directory, 0o755, ROOT));
        Self {
            durability,
            power_off: false,
            trip: Trip::Disarmed,
            nodes,
            next_ino: ROOT + 1,
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let n = self.nodes.get(&ino)?;
        let size = n.data.len() as u64;
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: n.mtime,
            mtime: n.mtime,
            ctime: n.mtime,
            crtime: n.mtime,
            kind: n.kind,
            perm: n.perm,
            nlink: if n.kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.nodes.get(&parent)?.children.get(name).copied()
    }

    fn add(&mut self, parent: u64, name: &OsStr, kind: FileType, perm: u16) -> Result<u64, Errno> {
        let dir = self.nodes.get(&parent).ok_or(Errno::ENOENT)?;
        if dir.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        if dir.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, Node::new(kind, perm, parent));
        if let Some(dir) = self.nodes.get_mut(&parent) {
            dir.children.insert(name.to_owned(), ino);
        }
        Ok(ino)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let ino = self.child(parent, name).ok_or(Errno::ENOENT)?;
        let node = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        match (want_dir, node.kind == FileType::Directory) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if !node.children.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.nodes.remove(&ino);
        if let Some(dir) = self.nodes.get_mut(&parent) {
            dir.children.remove(name);
        }
        Ok(())
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let start = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
        let end = start.checked_add(bytes.len()).ok_or(Errno::EFBIG)?;
        let old_len = node.data.len();
        let old = node.data[start.min(old_len)..end.min(old_len)].to_vec();
        if old_len < end {
            node.data.resize(end, 0);
        }
        node.data[start..end].copy_from_slice(bytes);
        node.undo.push(Undo::Write {
            offset: start,
            len: bytes.len(),
            old,
            old_len,
        });
        node.mtime = SystemTime::now();
        Ok(())
    }

    fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let len = usize::try_from(len).map_err(|_| Errno::EFBIG)?;
        let old_len = node.data.len();
        let cut = node.data.get(len..).map(<[u8]>::to_vec).unwrap_or_default();
        node.undo.push(Undo::SetLen { old_len, cut });
        node.data.resize(len, 0);
        node.mtime = SystemTime::now();
        Ok(())
    }

    fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        if self.power_off {
            // The flush was still in the device when the power went.
            return Err(Errno::EIO);
        }
        let durability = self.durability;
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        if durability == Durability::Honest {
            node.undo.clear();
        }
        if matches!(self.trip, Trip::Renamed { ino: armed } if armed == ino) {
            self.trip = Trip::Disarmed;
            self.power_off = true;
        }
        Ok(())
    }

    /// `ino` was renamed from `from`: arms the trip on it if it waits for such a name.
    fn renamed(&mut self, ino: u64, from: &OsStr) {
        if let Trip::Armed { suffix } = &self.trip
            && from.as_encoded_bytes().ends_with(suffix.as_bytes())
        {
            self.trip = Trip::Renamed { ino };
        }
    }

    fn unsynced_bytes(&self) -> u64 {
        self.nodes
            .values()
            .flat_map(|n| n.undo.iter())
            .map(Undo::bytes)
            .sum()
    }

    fn crash(&mut self, how: Crash) -> CrashReport {
        let mut report = CrashReport::default();
        for node in self.nodes.values_mut() {
            if node.undo.is_empty() {
                continue;
            }
            report.files_reverted += 1;
            let undo = std::mem::take(&mut node.undo);
            match how {
                Crash::LoseAll => {
                    for change in undo.into_iter().rev() {
                        report.bytes_lost += change.bytes();
                        change.revert(&mut node.data, 0);
                    }
                }
                Crash::TornTail { keep_per_mille } => {
                    // Everything but the last change reached the disk; of the last, a prefix.
                    if let Some(last) = undo.into_iter().next_back() {
                        let bytes = last.bytes();
                        let keep = (bytes * u64::from(keep_per_mille.min(1000)) / 1000) as usize;
                        report.bytes_lost += bytes - keep as u64;
                        last.revert(&mut node.data, keep);
                    }
                }
            }
        }
        report
    }
}

/// The FUSE side: every operation on the shared [`State`].
struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn entry(&self, ino: Result<u64, Errno>, reply: ReplyEntry) {
        let state = self.0.lock();
        match ino.map(|i| state.attr(i)) {
            Ok(Some(attr)) => reply.entry(&TTL, &attr, Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn empty(result: Result<(), Errno>, reply: ReplyEmpty) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

fn perm(mode: u32) -> u16 {
    (mode & 0o7777) as u16
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ino = self.0.lock().child(parent.0, name).ok_or(Errno::ENOENT);
        self.entry(ino, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.lock().attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.0.lock();
        if let Some(len) = size
            && let Err(e) = state.set_len(ino.0, len)
        {
            return reply.error(e);
        }
        if let Some(mode) = mode
            && let Some(node) = state.nodes.get_mut(&ino.0)
        {
            node.perm = perm(mode);
        }
        match state.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let ino = self
            .0
            .lock()
            .add(parent.0, name, FileType::Directory, perm(mode));
        self.entry(ino, reply);
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let ino = self
            .0
            .lock()
            .add(parent.0, name, FileType::RegularFile, perm(mode));
        self.entry(ino, reply);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.0.lock();
        let made = state.add(parent.0, name, FileType::RegularFile, perm(mode));
        match made.map(|ino| state.attr(ino)) {
            Ok(Some(attr)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.0.lock().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.0.lock().remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut state = self.0.lock();
        let Some(ino) = state.child(parent.0, name) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(old) = state.child(newparent.0, newname)
            && old != ino
        {
            let is_dir = state
                .nodes
                .get(&old)
                .is_some_and(|n| n.kind == FileType::Directory);
            if let Err(e) = state.remove(newparent.0, newname, is_dir) {
                return reply.error(e);
            }
        }
        if let Some(dir) = state.nodes.get_mut(&parent.0) {
            dir.children.remove(name);
        }
        match state.nodes.get_mut(&newparent.0) {
            Some(dir) => {
                dir.children.insert(newname.to_owned(), ino);
            }
            None => return reply.error(Errno::ENOENT),
        }
        if let Some(node) = state.nodes.get_mut(&ino) {
            node.parent = newparent.0;
        }
        state.renamed(ino, name);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.0.lock().nodes.contains_key(&ino.0) {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.0.lock();
        let Some(node) = state.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let start = (offset as usize).min(node.data.len());
        let end = start.saturating_add(size as usize).min(node.data.len());
        reply.data(&node.data[start..end]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.0.lock().write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a sync.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // A disk's cache flush takes time, and a cut during it loses the write: until the
        // flush returns, the written bytes are as volatile as before it began. (Without it a
        // store that syncs right after each write leaves a window of microseconds, and a cut
        // at a random moment rarely finds anything unsynced to lose.)
        std::thread::sleep(FLUSH_LATENCY);
        Self::empty(self.0.lock().sync(ino.0), reply);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Names are durable at once in this model.
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let mut state = self.0.lock();
        let len = state.nodes.get(&ino.0).map(|n| n.data.len() as u64);
        match len {
            Some(len) if offset + length > len => {
                Self::empty(state.set_len(ino.0, offset + length), reply)
            }
            Some(_) => reply.ok(),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.0.lock();
        let Some(dir) = state.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let mut entries: Vec<(u64, FileType, OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (dir.parent, FileType::Directory, "..".into()),
        ];
        for (name, child) in &dir.children {
            let kind = state
                .nodes
                .get(child)
                .map_or(FileType::RegularFile, |n| n.kind);
            entries.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 16 GiB free in 4 KiB blocks: the store's full-disk checks must not trip.
        let blocks = 4 * 1024 * 1024;
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, 4096, 255, 4096);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(state: &mut State) -> u64 {
        state
            .add(ROOT, OsStr::new("f"), FileType::RegularFile, 0o644)
            .expect("create")
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_drops_the_rest() {
        let mut s = State::new(Durability::Honest);
        let f = file(&mut s);
        s.write(f, 0, b"durable").expect("write");
        s.sync(f).expect("sync");
        s.write(f, 7, b"-volatile").expect("write");
        let report = s.crash(Crash::LoseAll);
        assert_eq!(s.nodes[&f].data, b"durable");
        assert_eq!(report.files_reverted, 1);
    }

    #[test]
    fn a_torn_tail_keeps_earlier_writes_and_part_of_the_last() {
        let mut s = State::new(Durability::Honest);
        let f = file(&mut s);
        s.write(f, 0, b"aaaa").expect("write");
        s.write(f, 4, b"bbbbbbbbbb").expect("write");
        s.crash(Crash::TornTail {
            keep_per_mille: 500,
        });
        assert_eq!(s.nodes[&f].data, b"aaaabbbbb");
    }

    #[test]
    fn an_armed_trip_cuts_the_power_after_the_first_sync_of_the_renamed_file() {
        let mut s = State::new(Durability::Honest);
        s.trip = Trip::Armed {
            suffix: ".spare".into(),
        };
        let other = file(&mut s);
        let spare = s
            .add(ROOT, OsStr::new("1.spare"), FileType::RegularFile, 0o644)
            .expect("create");
        s.sync(spare).expect("sync");
        assert!(!s.power_off, "not renamed yet");
        s.renamed(spare, OsStr::new("1.spare"));
        s.sync(other).expect("sync");
        assert!(!s.power_off, "another file");
        s.write(spare, 0, b"header").expect("write");
        s.sync(spare).expect("the header's sync completes");
        assert!(s.power_off);
        s.write(spare, 6, b"record").expect("write");
        assert!(s.sync(spare).is_err(), "nothing after it is durable");
        s.crash(Crash::LoseAll);
        assert_eq!(s.nodes[&spare].data, b"header");
    }

    #[test]
    fn ignoring_fsync_loses_everything() {
        let mut s = State::new(Durability::IgnoreFsync);
        let f = file(&mut s);
        s.write(f, 0, b"never durable").expect("write");
        s.sync(f).expect("sync");
        s.crash(Crash::LoseAll);
        assert!(s.nodes[&f].data.is_empty());
    }
}
