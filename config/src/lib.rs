//! `webhooks.json` (CONFIG.md §2–3): the webhook model shared by the cloud's ingress and the
//! connector's module mode.
//!
//! Loading is per entry and fails closed: a bad entry (unknown module, empty auth block,
//! unresolvable placeholder, invalid schema, unsafe path, …) is disabled with a reported error
//! while every other entry keeps serving. Nothing here does network I/O; secrets come in through
//! the [`placeholders::SecretSource`] trait, the environment through [`placeholders::EnvSource`].
//!
//! Layout:
//! - [`placeholders`]: `{$VAR}` / `{$VAR:default}` / `{$vault:path#field}` resolution (§3).
//! - [`model`]: one validated [`Webhook`] (§2.2–2.3, §2.5–2.8) and its parser.
//! - [`webhooks`]: a [`WebhookSet`] of entries with `default` fallback lookup and derived channels (§2.1, §2.9).
//! - [`auth`]: the authentication methods and the client-IP rule (§2.4).
//! - [`ratelimit`]: the sliding window (§2.5).
//! - [`schema`]: compiled `json_schema` without remote references (§2.6).
//! - [`cleanup`]: credential masking of payloads, headers and query strings (§2.7).
//! - [`modules`]: the local modules `log` and `save_to_disk` (§2.3).
//! - `fields` (private): typed readers that accept numbers and booleans given as strings
//!   ([`bool_from_text`], the one table of boolean spellings, is public).

pub mod auth;
pub mod cleanup;
mod fields;
pub mod model;
pub mod modules;
pub mod placeholders;
pub mod ratelimit;
pub mod schema;
pub mod webhooks;

pub use auth::{Auth, AuthRequest, client_ip};
pub use cleanup::{Cleanup, CleanupMode, mask_headers, mask_query, mask_value};
pub use fields::bool_from_text;
pub use model::{
    ConnectSettings, DataType, MAX_QUEUE_BYTES, MIN_QUEUE_BYTES, Module, RateLimitSpec, Webhook,
    entry_key,
};
pub use modules::{LogSettings, SaveToDiskSettings, TargetError, UnsafePath};
pub use placeholders::{
    EnvSource, MapEnv, PlaceholderError, ProcessEnv, SecretLookup, SecretSource, resolve,
};
pub use ratelimit::SlidingWindow;
pub use schema::{InvalidSchema, Schema};
pub use webhooks::{ChannelSpec, ChannelSpecRef, Entry, Lookup, WebhookSet};
