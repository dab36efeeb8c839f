//! Connector configuration (CONFIG.md §7): file + `CONNECTOR_*` env + flags.
//!
//! Precedence is implemented by overlaying JSON maps: the file's top level, then the env
//! values, then the flags that were given. With a `channels` array, each entry is overlaid on
//! that merged top level, so env and flags act as defaults for every channel.
//!
//! Layout: `types` holds what the engine runs on ([`ConnectorConfig`], [`ChannelConfig`],
//! [`Target`], ...); `sources` reads the layers (file, `CONNECTOR_*` env, flags) into one JSON
//! map; `validate` turns each channel's map into a checked [`ChannelConfig`]; [`load`] here
//! puts them together.

mod sources;
mod types;
mod validate;

use std::path::PathBuf;

use serde_json::{Map, Value, json};

pub use sources::CONFIG_FILE_ENV;
pub use types::{
    Backoff, ChannelConfig, ConnectorConfig, LogFormat, Overrides, PathRewrite, Sources, Target,
    TransportChoice,
};
pub use validate::resolve_token_ref;

use sources::{
    CHANNEL_ONLY_KEYS, ENV_KEYS, Kind, TOP_KEYS, apply_flags, env_value, non_empty, read_file,
};
use validate::channel_from;

/// A connector configuration that cannot be used (exit code 64 in the CLI). The text names the
/// key (with its `channels[i].` / target prefix) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorConfigError {
    /// The configuration file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configuration file is not YAML / JSON, or its top level is not a mapping.
    #[error("{}: {detail}", path.display())]
    Syntax { path: PathBuf, detail: String },
    /// A `CONNECTOR_*` variable does not hold a value of its key's type.
    #[error("{name}={raw:?} is not a valid value")]
    EnvValue { name: String, raw: String },
    /// `protocol` is not a transport or `auto`.
    #[error("{ctx}invalid protocol {value:?}: expected websocket, sse, long_poll or auto")]
    Protocol { ctx: String, value: String },
    /// A required key is missing.
    #[error("{ctx}{key} is required")]
    Missing { ctx: String, key: &'static str },
    /// A key holds a value of the wrong type (`got` is the value as given).
    #[error("{ctx}{key} must be {expected}, got {got}")]
    WrongType {
        ctx: String,
        key: String,
        expected: &'static str,
        got: String,
    },
    /// Two entries of `channels` name the same channel.
    #[error("channel {0:?} is configured twice")]
    Duplicate(String),
    /// A `token_ref` that cannot be read (`env:` unset, `file:` unreadable or empty, keyring).
    #[error("token_ref {reference:?}: {reason}")]
    TokenRef { reference: String, reason: String },
    /// The keyring has no readable token for the account a `token_ref` names.
    #[error("token_ref {reference:?} (account {account:?}): {reason}")]
    Keyring {
        reference: String,
        account: String,
        reason: String,
    },
    /// A `token_ref` in none of the known forms.
    #[error("token_ref {0:?} must be env:<VAR>, file:<path> or keyring[:<account>]")]
    TokenRefForm(String),
    /// A value out of its range, in the wrong shape, or inconsistent with another key.
    #[error("{0}")]
    Invalid(String),
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConnectorConfigError> {
    Err(ConnectorConfigError::Invalid(msg.into()))
}

/// Builds and validates the configuration from its sources.
pub fn load(sources: &Sources) -> Result<ConnectorConfig, ConnectorConfigError> {
    let mut warnings = Vec::new();
    let file = sources
        .config_file
        .clone()
        .or_else(|| non_empty(&sources.env, CONFIG_FILE_ENV).map(PathBuf::from));
    let mut top = match &file {
        Some(path) => read_file(path)?,
        None => Map::new(),
    };
    // env layer
    for (var, key, kind) in ENV_KEYS {
        if let Some(raw) = non_empty(&sources.env, var) {
            top.insert((*key).to_owned(), env_value(var, raw, *kind)?);
        }
    }
    if let Some(url) = non_empty(&sources.env, "CONNECTOR_TARGET_URL") {
        let mut t = Map::new();
        t.insert("url".into(), json!(url));
        if let Some(m) = non_empty(&sources.env, "CONNECTOR_TARGET_METHOD") {
            t.insert("method".into(), json!(m));
        }
        if let Some(s) = non_empty(&sources.env, "CONNECTOR_TARGET_TIMEOUT") {
            t.insert(
                "timeout_seconds".into(),
                env_value("CONNECTOR_TARGET_TIMEOUT", s, Kind::Num)?,
            );
        }
        top.insert("default_target".into(), Value::Object(t));
    }
    // flag layer
    apply_flags(&mut top, &sources.flags);

    for k in top.keys() {
        if !TOP_KEYS.contains(&k.as_str()) {
            warnings.push(format!("unknown configuration key {k:?} ignored"));
        }
    }

    // Checked first so that a bad flag is reported even when other keys are missing.
    if let Some(Value::String(p)) = top.get("protocol") {
        TransportChoice::parse(p)?;
    }
    let max_concurrent_requests = match top.get("max_concurrent_requests") {
        None | Some(Value::Null) => 10,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n as usize,
            _ => {
                return err(format!(
                    "max_concurrent_requests must be an integer ≥ 1, got {v}"
                ));
            }
        },
    };
    let log_level = match top.get("log_level").and_then(Value::as_str) {
        None => "INFO".to_owned(),
        Some(l) => {
            let up = l.trim().to_ascii_uppercase();
            let up = if up == "WARN" {
                "WARNING".to_owned()
            } else {
                up
            };
            if !["DEBUG", "INFO", "WARNING", "ERROR"].contains(&up.as_str()) {
                return err(format!(
                    "invalid log_level {l:?}: expected DEBUG, INFO, WARNING or ERROR"
                ));
            }
            up
        }
    };
    let log_format = match top.get("log_format").and_then(Value::as_str) {
        None => LogFormat::Text,
        Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
        Some(f) if f.eq_ignore_ascii_case("text") => LogFormat::Text,
        Some(f) => {
            warnings.push(format!("log_format {f:?} is not text or json; using text"));
            LogFormat::Text
        }
    };

    let channel_maps: Vec<Map<String, Value>> = match top.remove("channels") {
        None | Some(Value::Null) => vec![top.clone()],
        Some(Value::Array(items)) => {
            if top.get("channel").is_some_and(|c| !c.is_null()) {
                return err("`channel` must not be set at the top level when `channels` is used");
            }
            if items.is_empty() {
                return err("`channels` is empty");
            }
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let Value::Object(entry) = item else {
                    return err(format!("channels[{i}] must be an object"));
                };
                for k in entry.keys() {
                    if !TOP_KEYS.contains(&k.as_str()) && !CHANNEL_ONLY_KEYS.contains(&k.as_str()) {
                        warnings.push(format!("unknown key {k:?} in channels[{i}] ignored"));
                    }
                }
                if entry
                    .get("enabled")
                    .is_some_and(|e| e == &Value::Bool(false))
                {
                    continue;
                }
                let mut merged = top.clone();
                merged.remove("max_concurrent_requests");
                // The token is one setting spelled two ways: an entry that names either form
                // replaces both inherited ones (an inherited `token` must not beat the entry's
                // own `token_ref`).
                if entry.contains_key("token") || entry.contains_key("token_ref") {
                    merged.remove("token");
                    merged.remove("token_ref");
                }
                merged.extend(entry);
                out.push(merged);
            }
            out
        }
        Some(_) => return err("`channels` must be an array"),
    };

    let mut channels = Vec::new();
    for (i, m) in channel_maps.iter().enumerate() {
        let ch = channel_from(m, i, &sources.env, &mut warnings)?;
        if channels
            .iter()
            .any(|c: &ChannelConfig| c.channel == ch.channel)
        {
            return Err(ConnectorConfigError::Duplicate(ch.channel));
        }
        channels.push(ch);
    }
    let history_size = match top.get("history_size") {
        None | Some(Value::Null) => crate::history::DEFAULT_HISTORY,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 100_000 => n as usize,
            _ => {
                return err(format!(
                    "history_size must be an integer 0..=100000, got {v}"
                ));
            }
        },
    };
    Ok(ConnectorConfig {
        channels,
        max_concurrent_requests,
        log_level,
        log_format,
        warnings,
        env: sources.env.clone(),
        history_size,
    })
}

#[cfg(test)]
mod tests;
