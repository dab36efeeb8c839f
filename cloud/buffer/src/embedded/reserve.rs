//! A small file of zeros beside the store, given up when the disk is full so that drained
//! segments can still be deleted (their deletion needs one small redb commit first), and
//! made again once there is room.

use std::path::{Path, PathBuf};

pub const BYTES: usize = 1024 * 1024;

fn path(db: &Path) -> PathBuf {
    db.with_file_name("RESERVE")
}

/// Makes the reserve if it is missing; false when there is no room for it (yet).
pub fn ensure(db: &Path) -> bool {
    let p = path(db);
    if std::fs::metadata(&p).is_ok_and(|m| m.len() as usize == BYTES) {
        return true;
    }
    let made =
        std::fs::write(&p, vec![0u8; BYTES]).and_then(|()| std::fs::File::open(&p)?.sync_all());
    if made.is_err() {
        let _ = std::fs::remove_file(&p);
    }
    made.is_ok()
}

/// Gives the reserve up; false when there was none.
pub fn release(db: &Path) -> bool {
    std::fs::remove_file(path(db)).is_ok()
}
