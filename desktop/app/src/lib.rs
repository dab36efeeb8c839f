//! Webhook Connect desktop app: a Tauri 2 tray shell over the connector engine
//! (`connect-engine`). The engine forwards; this crate keeps settings, tokens and the tray.
//!
//! Layout:
//! - [`settings`]: `settings.toml` (CONFIG.md §8.1): TOML model, secrets moved out, atomic 0600 writes.
//! - [`secrets`]: the OS keyring behind [`secrets::SecretStore`] (account names of §8.2), with an
//!   in-memory fake.
//! - [`core`]: the app's behaviour without Tauri: channels, events, dead letters, settings.
//! - [`tray`]: the aggregate tray state, icons, tooltip and status line (pure).
//! - [`menu`]: the tray menu's items, and what each item does to the core ([`menu::dispatch`]
//!   returns the desktop-side effects).
//! - [`notify`]: which notifications to show, rate-limited (pure).
//! - [`relaunch`]: light mode's restart without the webview (Linux): the carried file and the
//!   next image's arguments.
//! - [`startup_env`]: Linux start-up defaults for WebKit/GTK/glibc variables (re-exec once).
//! - [`shell`]: Tauri: plugins, IPC commands, tray, window / light mode, the one-second ticker.

pub mod core;
pub mod menu;
pub mod notify;
pub mod relaunch;
pub mod secrets;
pub mod settings;
pub mod shell;
pub mod startup_env;
pub mod tray;

pub use shell::run;
