//! Webhook Connect desktop app: a Tauri 2 tray shell over the connector engine
//! (`connect-engine`). The engine forwards; `connect-appcore` keeps settings, tokens, the tray
//! model and notifications (re-exported here); this crate adds the window.
//!
//! Layout:
//! - [`startup_env`]: Linux start-up defaults for WebKit/GTK/glibc variables (re-exec once), and
//!   the start straight into the light image.
//! - [`shell`]: Tauri: plugins, IPC commands, tray, window / light mode, the one-second ticker.

pub use connect_appcore::{
    accounts, core, error, launch, menu, notify, refresh, relaunch, secrets, settings, tray,
};

pub mod shell;
pub mod startup_env;

pub use shell::run;
