//! Opening one redb file of the embedded store (`buffer.redb`, `hosted.redb`) so that a
//! damaged file is refused at start with its path in the message (docs/OPERATIONS.md,
//! "Backups": "a damaged file fails at start (exit 69) instead of later"):
//!
//! - A file that exists is *opened*, never initialised: redb's `create` turns an empty file
//!   into a new, empty store, so a backup copy that was cut to nothing started "fine" with
//!   every channel, message or account gone. Only a missing file is created.
//! - A missing `buffer.redb` is not created beside a log that holds records.
//! - redb 2.6 asserts (panics) on a file shorter than its header says; that panic is caught
//!   here and refused like any other damage, instead of ending the process with a panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use redb::Database;

use crate::BufferError;

/// Opens the redb file at `path` (creating it only if it does not exist). `what` names the
/// store in the message ("the buffer store", "the accounts store").
pub(crate) fn open(path: &Path, cache_bytes: usize, what: &str) -> Result<Database, BufferError> {
    let refused =
        |why: String| BufferError::Unavailable(format!("opening {what} {}: {why}", path.display()));
    let exists = path
        .try_exists()
        .map_err(|e| refused(format!("cannot check the file: {e}")))?;
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    let opened = catch_unwind(AssertUnwindSafe(|| {
        if exists {
            builder.open(path)
        } else {
            builder.create(path)
        }
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            Err(refused(
                "the file is damaged or is not a store file (restore it from a backup)".into(),
            ))
        }
        Ok(Err(e)) => Err(refused(e.to_string())),
        Err(_) => Err(refused(
            "the file is damaged: shorter than its header says (restore it from a backup)".into(),
        )),
    }
}

/// Refuses to create a new `buffer.redb` at `path` beside a log that already holds records:
/// the log's records name channels that only that file knew, so a new, empty store would
/// start with every one of them lost (a backup restored without `buffer.redb`).
pub(crate) fn ensure_log_has_its_store(path: &Path, log_dir: &Path) -> Result<(), BufferError> {
    let missing = !path.try_exists().unwrap_or(true);
    if !missing {
        return Ok(());
    }
    let holds_records = std::fs::read_dir(log_dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                e.file_name().to_string_lossy().ends_with(".log")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
        .unwrap_or(false);
    if holds_records {
        return Err(BufferError::Unavailable(format!(
            "opening the buffer store {}: the file is missing but {} holds messages; restore \
             it together with the log (a backup is buffer.redb, hosted.redb and log/)",
            path.display(),
            log_dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_created_and_an_empty_one_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.redb");
        drop(open(&path, 1 << 20, "the test store").expect("created"));
        drop(open(&path, 1 << 20, "the test store").expect("opened again"));
        std::fs::write(&path, b"").expect("emptied");
        let err = open(&path, 1 << 20, "the test store").expect_err("an empty file is refused");
        assert!(err.to_string().contains("store.redb"), "{err}");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn a_log_with_records_needs_its_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, log) = (dir.path().join("buffer.redb"), dir.path().join("log"));
        ensure_log_has_its_store(&db, &log).expect("no log yet");
        std::fs::create_dir(&log).expect("log dir");
        std::fs::write(log.join("0000000001.log"), b"").expect("empty segment");
        ensure_log_has_its_store(&db, &log).expect("an empty segment holds nothing");
        std::fs::write(log.join("0000000002.log"), b"records").expect("segment");
        let err = ensure_log_has_its_store(&db, &log).expect_err("records without their store");
        assert!(err.to_string().contains("buffer.redb"), "{err}");
        std::fs::write(&db, b"").expect("store file");
        ensure_log_has_its_store(&db, &log).expect("the store is there");
    }

    #[test]
    fn a_truncated_file_is_refused_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.redb");
        drop(open(&path, 1 << 20, "the test store").expect("created"));
        let len = std::fs::metadata(&path).expect("metadata").len();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(len / 2))
            .expect("truncated");
        let err = open(&path, 1 << 20, "the test store").expect_err("a truncated file is refused");
        assert!(err.to_string().contains("shorter than its header"), "{err}");
    }
}
