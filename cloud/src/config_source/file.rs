//! The file source (CONFIG.md §6.1–6.2): `WEBHOOKS_CONFIG_FILE` and `CONNECTIONS_CONFIG_FILE`.
//!
//! Reading here; watching in `file_watch`. Watching: the parent directories (of the configured path and of what it resolves to through
//! symlinks) are watched with `notify`, so in-place edits, atomic replacement by rename and
//! symlink swaps (Kubernetes `..data`) all produce events. Events only *trigger* a check: what
//! decides is the SHA-256 of the content, so spurious events cost one read and identical content
//! is ignored. A periodic safety poll runs the same check for file systems without events
//! (network mounts, some container overlays), and covers a watcher that could not be created.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config_source::error::SourceError;
use crate::config_source::raw::{FileError, RawConfig, read_json};
use crate::settings::Settings;

/// Content hashes of the two files (`None`: missing or unreadable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hashes {
    webhooks: Option<[u8; 32]>,
    connections: Option<[u8; 32]>,
}

pub struct FileRead {
    pub raw: RawConfig,
    pub hashes: Hashes,
}

/// Reads the files. `which = Some((webhooks, connections))` limits what is read (admin reload).
/// A webhooks file that is missing, unreadable, not JSON or not an object → `Err`; connection
/// file problems are warnings (a missing file means `{}`).
pub fn read_all(settings: &Settings, which: Option<(bool, bool)>) -> Result<FileRead, SourceError> {
    let (want_hooks, want_conns) = which.unwrap_or((true, true));
    let mut raw = RawConfig::default();
    let mut hashes = Hashes::default();
    if want_hooks {
        let (doc, h) = read_json(&settings.webhooks_config_file).map_err(SourceError::File)?;
        raw.webhooks = RawConfig::webhooks_from_doc(&doc).map_err(|source| {
            SourceError::File(FileError::NotAnObject {
                path: settings.webhooks_config_file.clone(),
                source,
            })
        })?;
        hashes.webhooks = Some(h);
    }
    if want_conns {
        let path = &settings.connections_config_file;
        if path.exists() {
            match read_json(path) {
                Ok((doc, h)) => {
                    hashes.connections = Some(h);
                    match doc.as_object() {
                        Some(m) => {
                            raw.connections =
                                m.iter().map(|(k, v)| (k.clone(), Ok(v.clone()))).collect();
                        }
                        None => raw
                            .warnings
                            .push(format!("{} is not a JSON object; ignored", path.display())),
                    }
                }
                Err(e) => raw.warnings.push(format!("{e}; connections ignored")),
            }
        }
    }
    Ok(FileRead { raw, hashes })
}

fn hash_of(path: &Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    std::fs::read(path)
        .ok()
        .map(|b| sha2::Sha256::digest(&b).into())
}

pub(crate) fn current_hashes(settings: &Settings) -> Hashes {
    Hashes {
        webhooks: hash_of(&settings.webhooks_config_file),
        connections: hash_of(&settings.connections_config_file),
    }
}

/// Directories to watch: the parent of each configured path and the parent of its resolved
/// target (a symlink may point elsewhere).
pub(crate) fn watch_dirs(settings: &Settings) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for p in [
        &settings.webhooks_config_file,
        &settings.connections_config_file,
    ] {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
        if let Some(d) = abs.parent() {
            out.insert(d.to_path_buf());
        }
        if let Ok(real) = std::fs::canonicalize(p)
            && let Some(d) = real.parent()
        {
            out.insert(d.to_path_buf());
        }
    }
    out.retain(|d| d.is_dir());
    out
}
