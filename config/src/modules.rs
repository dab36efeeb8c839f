//! The local modules `log` and `save_to_disk` (CONFIG §2.3), shared by the cloud and the
//! connector's module mode.
//!
//! `save_to_disk` is the one place where configuration turns into file-system writes, so every
//! path rule is checked at load *and* again before each write (symlinks may change in between).

use base64::Engine as _;
use serde_json::{Map, Value};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use connect_protocol::time::Timestamp;

use crate::cleanup::{self, Cleanup};
use crate::fields::{self, Warnings};

// =============================================================================================
// log

/// `module-config` of a `log` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub pretty_print: bool,
    pub redact_sensitive: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            pretty_print: false,
            redact_sensitive: true,
        }
    }
}

impl LogSettings {
    pub(crate) fn parse(m: &Map<String, Value>, w: &mut Warnings<'_>) -> Result<Self, String> {
        w.unknown_keys(m, "module-config.", &["pretty_print", "redact_sensitive"]);
        let mut s = LogSettings::default();
        if let Some(v) = m.get("pretty_print").filter(|v| !v.is_null()) {
            s.pretty_print = fields::boolean(v, "module-config.pretty_print")?;
        }
        if let Some(v) = m.get("redact_sensitive").filter(|v| !v.is_null()) {
            s.redact_sensitive = fields::boolean(v, "module-config.redact_sensitive")?;
        }
        Ok(s)
    }
}

/// Name fragments whose values the `log` module redacts (matched on the lower-cased name with
/// `-` read as `_`).
const LOG_SENSITIVE: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "authorization",
    "auth",
    "credential",
    "credentials",
    "private_key",
    "privatekey",
    "session",
    "cookie",
    "ssn",
    "credit_card",
    "creditcard",
    "database_url",
    "db_url",
    "connection_string",
    "conn_string",
];

pub const LOG_REDACTED: &str = "[REDACTED]";
pub const LOG_MAX_STRING_CHARS: usize = 10_000;
pub const LOG_TRUNCATED: &str = "…[truncated]";
const LOG_MAX_DEPTH: usize = 100;

fn log_sensitive(name: &str) -> bool {
    let n = name.to_lowercase().replace('-', "_");
    LOG_SENSITIVE.iter().any(|s| n.contains(s))
}

fn redact_log(v: &Value, depth: usize) -> Value {
    match v {
        Value::Object(m) if depth < LOG_MAX_DEPTH => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if log_sensitive(k) {
                        Value::String(LOG_REDACTED.into())
                    } else {
                        redact_log(x, depth + 1)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) if depth < LOG_MAX_DEPTH => {
            Value::Array(a.iter().map(|x| redact_log(x, depth + 1)).collect())
        }
        other => other.clone(),
    }
}

fn truncate_strings(v: &Value, depth: usize) -> Value {
    match v {
        Value::String(s) => match s.char_indices().nth(LOG_MAX_STRING_CHARS) {
            Some((cut, _)) => Value::String(format!("{}{LOG_TRUNCATED}", &s[..cut])),
            None => v.clone(),
        },
        Value::Object(m) if depth < LOG_MAX_DEPTH => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), truncate_strings(x, depth + 1)))
                .collect(),
        ),
        Value::Array(a) if depth < LOG_MAX_DEPTH => {
            Value::Array(a.iter().map(|x| truncate_strings(x, depth + 1)).collect())
        }
        other => other.clone(),
    }
}

/// What the `log` module records for one request.
#[derive(Debug, Clone, Copy)]
pub struct LogInput<'a> {
    pub webhook_id: &'a str,
    pub namespace: Option<&'a str>,
    pub received_at: &'a Timestamp,
    /// Header name → value (string) map.
    pub headers: &'a Map<String, Value>,
    pub payload: &'a Value,
}

/// Builds the `log` record: credential cleanup (when enabled), then `redact_sensitive`, then
/// string truncation. Returns the text to print (one line, or indented JSON with `pretty_print`).
pub fn render_log(settings: &LogSettings, cleanup: &Cleanup, input: &LogInput<'_>) -> String {
    let mut headers = Value::Object(cleanup::mask_headers(input.headers, cleanup));
    let mut payload = cleanup::mask_value(input.payload, cleanup);
    if settings.redact_sensitive {
        headers = redact_log(&headers, 0);
        payload = redact_log(&payload, 0);
    }
    let mut rec = Map::new();
    rec.insert("webhook_id".into(), Value::String(input.webhook_id.into()));
    rec.insert(
        "namespace".into(),
        input
            .namespace
            .map_or(Value::Null, |n| Value::String(n.into())),
    );
    rec.insert(
        "received_at".into(),
        Value::String(input.received_at.to_rfc3339()),
    );
    rec.insert("headers".into(), headers);
    rec.insert("payload".into(), payload);
    let rec = truncate_strings(&Value::Object(rec), 0);
    let text = if settings.pretty_print {
        serde_json::to_string_pretty(&rec)
    } else {
        serde_json::to_string(&rec)
    };
    // Serializing a Value cannot fail; keep a valid record shape if it ever does.
    text.unwrap_or_else(|_| "{}".into())
}

// =============================================================================================
// save_to_disk

/// Why a `save_to_disk` write failed. The cloud answers 500, the connector NACKs with retry.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("unsafe path: {0}")]
    Unsafe(String),
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
}

/// `module-config` of a `save_to_disk` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveToDiskSettings {
    /// `path` as configured.
    pub path: String,
    /// `base_dir` after resolving symlinks (the confinement root).
    pub base_dir: PathBuf,
    /// The target directory before symlink resolution (`base_dir` joined with a relative
    /// `path`); re-resolved before every write.
    pub target: PathBuf,
}

const SYSTEM_DIRS: &[&str] = &[
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/sys",
    "/proc",
    "/dev",
    "/root",
    "/boot",
    "/var/log",
    "/var/db",
    "/var/run",
    "/var/lib",
    "/var/cache",
    "/var/spool",
    "/var/mail",
    "/var/backups",
];

fn is_system_dir(p: &Path) -> bool {
    SYSTEM_DIRS
        .iter()
        .any(|d| p.starts_with(d) || p.starts_with(format!("/private{d}")))
}

/// Why a `save_to_disk` `path` / `base_dir` is refused (§2.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    #[error("{key}: contains a NUL character")]
    Nul { key: &'static str },
    #[error("{key}: contains a '..' segment")]
    DotDot { key: &'static str },
    #[error("module-config.base_dir: working directory unavailable")]
    NoWorkingDir,
    #[error("module-config.base_dir: cannot be resolved")]
    BaseUnresolvable,
    #[error("module-config.base_dir: lies inside a system directory")]
    SystemDir,
    #[error("module-config.path: {0}")]
    Target(TargetError),
}

/// Why the target directory cannot be written into (checked at load and before each write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("cannot be resolved")]
    Unresolvable,
    #[error("escapes base_dir")]
    EscapesBase,
    #[error("exists and is not a directory")]
    NotADirectory,
}

/// `%XX` decoding of raw text (no `+` rule: these are paths).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// No `..` segment and no NUL, in the text itself and after one and two rounds of
/// percent-decoding (`%2e%2e`, `%252e%252e`, `%00`).
fn check_path_text(s: &str, key: &'static str) -> Result<(), UnsafePath> {
    let once = percent_decode(s);
    let twice = percent_decode(&once);
    for form in [s, once.as_str(), twice.as_str()] {
        if form.contains('\0') {
            return Err(UnsafePath::Nul { key });
        }
        if form.split(['/', '\\']).any(|seg| seg == "..") {
            return Err(UnsafePath::DotDot { key });
        }
    }
    Ok(())
}

/// Resolves symlinks of the longest existing prefix of `p` (made absolute against the working
/// directory) and appends the remaining components, which contain no `..` (checked before).
fn resolve_existing(p: &Path) -> io::Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    let mut existing = abs.as_path();
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        match fs::canonicalize(existing) {
            Ok(mut c) => {
                for comp in rest.iter().rev() {
                    c.push(comp);
                }
                return Ok(c);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let name = existing.file_name().ok_or(e)?;
                rest.push(name);
                existing = existing
                    .parent()
                    .ok_or_else(|| io::Error::other("no existing ancestor"))?;
            }
            Err(e) => return Err(e),
        }
    }
}

fn clean_components(p: &Path) -> PathBuf {
    // `.` components are dropped; `..` was rejected earlier.
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

impl SaveToDiskSettings {
    pub(crate) fn parse(m: &Map<String, Value>, w: &mut Warnings<'_>) -> Result<Self, String> {
        for k in m.keys() {
            match k.as_str() {
                "path" | "base_dir" => {}
                "format" | "append" => w.push(format!("module-config.{k} is ignored")),
                other => w.push(format!("unknown key 'module-config.{other}' ignored")),
            }
        }
        let path = match m.get("path") {
            None | Some(Value::Null) => ".".to_string(),
            Some(v) => fields::nonempty(v, "module-config.path")?.to_string(),
        };
        let base = match m.get("base_dir") {
            None | Some(Value::Null) => None,
            Some(v) => Some(fields::nonempty(v, "module-config.base_dir")?.to_string()),
        };
        Self::new(&path, base.as_deref()).map_err(|e| e.to_string())
    }

    /// Validates `path` and `base_dir` (default: the working directory) per §2.3.
    pub fn new(path: &str, base_dir: Option<&str>) -> Result<Self, UnsafePath> {
        check_path_text(path, "module-config.path")?;
        let base_raw = match base_dir {
            Some(b) => {
                check_path_text(b, "module-config.base_dir")?;
                PathBuf::from(b)
            }
            None => std::env::current_dir().map_err(|_| UnsafePath::NoWorkingDir)?,
        };
        let base = resolve_existing(&clean_components(&base_raw))
            .map_err(|_| UnsafePath::BaseUnresolvable)?;
        if is_system_dir(&base) {
            return Err(UnsafePath::SystemDir);
        }
        let p = Path::new(path);
        let target = if p.is_absolute() {
            clean_components(p)
        } else {
            clean_components(&base.join(p))
        };
        let s = SaveToDiskSettings {
            path: path.to_string(),
            base_dir: base,
            target,
        };
        s.resolved_target().map_err(UnsafePath::Target)?;
        Ok(s)
    }

    /// The target directory after resolving symlinks, checked to stay inside `base_dir` and not
    /// to be an existing non-directory.
    pub fn resolved_target(&self) -> Result<PathBuf, TargetError> {
        let dir = resolve_existing(&self.target).map_err(|_| TargetError::Unresolvable)?;
        if !dir.starts_with(&self.base_dir) {
            return Err(TargetError::EscapesBase);
        }
        if let Ok(md) = fs::metadata(&dir)
            && !md.is_dir()
        {
            return Err(TargetError::NotADirectory);
        }
        Ok(dir)
    }

    /// Writes `document` (after credential cleanup when enabled) as `<stem>.json` in the target
    /// directory: temp file (created exclusively, never through a symlink, mode 0600), fsync,
    /// rename, fsync of the directory. A redelivery with the same stem replaces the file.
    pub fn write(
        &self,
        cleanup: &Cleanup,
        document: &Value,
        stem: &str,
    ) -> Result<PathBuf, SaveError> {
        let valid_stem = !stem.is_empty()
            && stem.len() <= 200
            && !stem.starts_with('.')
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid_stem {
            return Err(SaveError::Unsafe("invalid file name".into()));
        }
        let doc = cleanup::mask_value(document, cleanup);
        let bytes = serde_json::to_vec(&doc).map_err(io::Error::other)?;

        let dir = self
            .resolved_target()
            .map_err(|e| SaveError::Unsafe(e.to_string()))?;
        create_dirs(&self.base_dir, &dir)?;
        // Re-resolve after creating: a symlink planted meanwhile must not lead outside.
        let dir = self
            .resolved_target()
            .map_err(|e| SaveError::Unsafe(e.to_string()))?;
        if !dir.is_dir() {
            return Err(SaveError::Unsafe("target is not a directory".into()));
        }

        let final_path = dir.join(format!("{stem}.json"));
        let tmp_path = dir.join(format!(".{stem}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let result = write_file(&tmp_path, &bytes).and_then(|()| {
            // rename replaces a symlink at the final name instead of following it.
            fs::rename(&tmp_path, &final_path)?;
            File::open(&dir)?.sync_all()
        });
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp_path);
            return Err(e.into());
        }
        Ok(final_path)
    }
}

/// Creates the missing directories between `base` and `dir` with mode 0700 (set explicitly
/// afterwards, so the umask does not matter).
fn create_dirs(base: &Path, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if p.starts_with(base) || base.starts_with(p) => cur = p,
            _ => break,
        }
    }
    for d in missing.iter().rev() {
        match DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => fs::set_permissions(d, fs::Permissions::from_mode(0o700))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The document `save_to_disk` writes for a body: the parsed JSON value when there is one, else
/// the UTF-8 text as a JSON string, else `{"body_b64": …}`.
pub fn disk_document(body: &[u8], parsed: Option<&Value>) -> Value {
    if let Some(v) = parsed {
        return v.clone();
    }
    match std::str::from_utf8(body) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => {
            let mut m = Map::new();
            m.insert(
                "body_b64".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            );
            Value::Object(m)
        }
    }
}

#[cfg(test)]
mod tests;
