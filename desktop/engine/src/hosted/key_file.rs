//! An API key kept in a file instead of the OS keyring (HOSTED.md §4: `--key-file PATH`, for
//! machines without one). The file must be readable by its owner only (mode 0600 or 0400): a
//! key file that group or others may read is refused, never used. It is written the same way:
//! a new file of mode 0600 renamed over the old one, so no reader ever sees a partial key.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Group or other permission bits are set.
    #[error(
        "key file {} has mode {mode:04o}: it must be readable by its owner only (chmod 600 {})",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {} holds no API key", path.display())]
    Empty { path: PathBuf },
    #[error("key file {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

impl KeyFileError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Checks an API key's form: one line of visible ASCII (it is sent in a header).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the API key is empty".into());
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the API key must be one word of visible ASCII characters".into());
    }
    Ok(())
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

/// Reads the key of `path`, refusing a file others may read.
pub fn read(path: &Path) -> Result<String, KeyFileError> {
    let meta = std::fs::metadata(path).map_err(|e| KeyFileError::io(path, e))?;
    check_mode(path, &meta)?;
    let text = std::fs::read_to_string(path).map_err(|e| KeyFileError::io(path, e))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(KeyFileError::Empty {
            path: path.to_owned(),
        });
    }
    check_key(key).map_err(|reason| KeyFileError::Invalid {
        path: path.to_owned(),
        reason,
    })?;
    Ok(key.to_owned())
}

/// Writes `key` to `path` with mode 0600 (the directory is created, mode 0700, if missing).
pub fn write(path: &Path, key: &str) -> Result<(), KeyFileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir).map_err(|e| KeyFileError::io(&dir, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(key.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(KeyFileError::io(path, e));
    }
    Ok(())
}

/// Removes the key file; a missing one is not an error.
pub fn remove(path: &Path) -> Result<(), KeyFileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(KeyFileError::io(path, e)),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_written_key_reads_back_and_is_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/key");
        write(&path, "whc_abc").expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).expect("read"), "whc_abc");
        // Replacing keeps the mode and leaves no temporary file behind.
        write(&path, "whc_def").expect("write");
        assert_eq!(read(&path).expect("read"), "whc_def");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub"))
                .expect("ls")
                .count(),
            1
        );
        remove(&path).expect("remove");
        remove(&path).expect("a missing file is removed already");
    }

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "whc_abc\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = read(&path).expect_err("0644 is refused");
        assert!(
            matches!(e, KeyFileError::Permissions { mode: 0o644, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(read(&path).is_err(), "group-readable is refused too");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert_eq!(read(&path).expect("0400 is owner-only"), "whc_abc");
    }

    #[test]
    fn keys_are_one_visible_word() {
        assert!(check_key("whc_AbC-_09").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("whc_a b").is_err());
        assert!(check_key("whc_a\r\nX-Evil: 1").is_err());
    }
}
