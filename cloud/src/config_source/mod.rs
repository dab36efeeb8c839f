//! Configuration sources (CONFIG.md §4–6): where webhook definitions come from (the file or
//! etcd), how secrets are resolved (environment, Vault), and how a change becomes the
//! configuration in force.
//!
//! Every source produces a [`raw::RawConfig`] (unresolved definitions keyed by namespace and
//! id); [`manager::ConfigManager::apply_raw`] resolves and validates it per entry, keeps the
//! previous valid definition of an entry that became invalid, and hands the result to
//! [`crate::runtime::Runtime::apply_config_with`]. Builds and swaps are serialized by one lock,
//! so a file reload, an etcd event, a Vault rotation and an admin reload never interleave. The
//! sources depend on the [`crate::runtime::Runtime`], never on the HTTP application state.
//!
//! Layout:
//! - [`raw`]: what a source produces, the per-entry build and the reload diff.
//! - [`manager`]: [`manager::ConfigManager`], the apply lock, status, admin reloads.
//! - [`start`]: pre-bind checks, the first load, spawning the watchers.
//! - `file` / `file_watch`: reading the files; watching them (directory events + content hash
//!   + safety poll, debounced).
//! - `etcd` / `etcd_watch`: keys, reads and the client; initial read, watch with resume from
//!   the last revision, reconnect backoff.
//! - [`vault`]: KV reader, cache with TTL, background refresh (live rotation).
//! - [`error`]: typed errors ([`error::SourceError`], [`error::ApplyError`],
//!   [`error::StartError`] with its exit code).

pub mod error;
pub mod etcd;
mod etcd_watch;
mod file;
mod file_watch;
pub mod manager;
pub mod raw;
pub mod start;
pub mod vault;
