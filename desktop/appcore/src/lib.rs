//! The desktop app's behaviour without a window toolkit, shared by its two images: the Tauri
//! app (`desktop/app`, with the window) and the light image (`desktop/light`, tray only, no
//! WebKit), between which light mode hands over (see [`relaunch`]).
//!
//! Layout:
//! - [`launch`]: whether a start opens the window, and what closing it does without a tray.
//! - [`settings`]: `settings.toml` (CONFIG.md §8.1): TOML model, secrets moved out, atomic 0600 writes.
//! - [`secrets`]: the OS keyring behind [`secrets::SecretStore`] (account names of §8.2), with an
//!   in-memory fake.
//! - [`core`]: channels, events, dead letters, settings over the connector engine.
//! - [`accounts`]: self-service (HOSTED.md §5): sign-in with an API key, channels created
//!   through `/api/v1` (the engine's `hosted::HostedClient`), "Use here", deletion at the
//!   cloud, dead letters with the key.
//! - [`dead_letters`]: a channel's dead letters at its cloud, with the admin token or (self-service)
//!   the account's API key.
//! - [`error`]: [`error::CoreError`] and its IPC form [`error::CommandError`] `{ code, message }`.
//! - [`tray`]: the aggregate tray state, icons, tooltip and status line (pure).
//! - [`menu`]: the tray menu's items, and what each item does to the core ([`menu::dispatch`]
//!   returns the desktop-side effects).
//! - [`notify`]: which notifications to show, rate-limited (pure).
//! - [`refresh`]: the once-a-second refresh of tray and notifications both images run.
//! - [`relaunch`]: light mode's hand-over (Linux): the carried file, the images' arguments.
//! - [`ts`]: `ui/src/generated/app.ts`, the IPC types generated from these (drift-tested).

pub mod accounts;
pub mod core;
pub mod dead_letters;
pub mod error;
pub mod launch;
pub mod menu;
pub mod notify;
pub mod refresh;
pub mod relaunch;
pub mod secrets;
pub mod settings;
pub mod tray;
pub mod ts;

/// The log filter without `RUST_LOG`: `info`, but not the engine's per-delivery outcome lines.
/// They name the webhook id, and a self-service webhook id is the secret part of its URL
/// (HOSTED.md §3: knowing it lets anyone post); the window's inspector and the notifications
/// tell the same outcomes without putting the id in a log the desktop may keep (the journal).
pub const DEFAULT_LOG_FILTER: &str = "info,connect_engine::outcome_log=error";

/// First thing in either image's `main` (after any re-exec): after a hand-over (`--carried`),
/// ends and reaps the previous image's helpers (Linux); then logs to stderr, filtered by
/// `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]), in colour only on a terminal (a log redirected to a file stays
/// plain text).
pub fn init_image() {
    #[cfg(target_os = "linux")]
    if std::env::args().any(|a| a == relaunch::CARRIED_FLAG) {
        relaunch::end_leftovers();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
