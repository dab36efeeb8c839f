//! What a start and a closed window do, decided without a toolkit (both images and `main` ask
//! here).
//!
//! Why this shape: a person who starts the app from a menu or a terminal expects to see it, so a
//! start without `--minimized` always opens the window; `start_minimized` (default on) applies
//! only to the start at login, whose autostart entry passes `--minimized`. A hand-over between
//! the two images (light mode, [`crate::relaunch`]) also passes `--minimized`, always with
//! `--carried`: then the window stays closed whatever the setting says, because the image
//! before had none.
//!
//! Closing the window keeps the app running in the tray, which needs a tray host: the desktop's
//! `org.kde.StatusNotifierWatcher` on the session bus (KDE, XFCE, Cinnamon, GNOME with the
//! AppIndicator extension...). Without one (plain GNOME), a closed window would leave a process
//! nobody can see or reach, so the app tells the user once and follows [`NoTray`].

use std::ffi::OsString;

use serde::{Deserialize, Serialize};

use crate::relaunch::{CARRIED_FLAG, MINIMIZED_FLAG, VIEW_FLAG};
use crate::settings::AppTable;

/// The bus name a tray host owns (the StatusNotifierItem specification).
pub const TRAY_WATCHER: &str = "org.kde.StatusNotifierWatcher";

/// `no_tray` of the `[app]` table: what closing the window does when the desktop has no tray.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum NoTray {
    /// The window is minimized instead of closed: forwarding goes on and the app stays in the
    /// taskbar / dash, where the user can find it (default: closing a tray app's window never
    /// stops forwarding, with or without a tray).
    #[default]
    KeepWindow,
    /// The app quits: forwarding stops.
    Quit,
}

/// Whether a start with `args` (without the program name) opens the window.
pub fn opens_window(args: &[OsString], app: &AppTable) -> bool {
    let has = |f: &str| args.iter().any(|a| a == f);
    if has(VIEW_FLAG) {
        // The light image handing back for the window.
        return true;
    }
    if !has(MINIMIZED_FLAG) {
        // A person started it.
        return true;
    }
    if has(CARRIED_FLAG) {
        // A hand-over of a process that had no window.
        return false;
    }
    // The start at login.
    !app.start_minimized
}

/// Whether a start with `args` runs the light image instead of the app: light mode, and no
/// window to show.
pub fn wants_light_image(args: &[OsString], app: &AppTable) -> bool {
    app.light_mode && !opens_window(args, app)
}

/// What closing the window does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnClose {
    /// Hide it and keep the webview (light mode off); the tray brings it back.
    Hide,
    /// Let it go; light mode's hand-over to the light image follows.
    LightMode,
    /// No tray: minimize it instead; `tell` the user why (the first time only).
    Minimize { tell: bool },
    /// No tray: tell the user, then quit.
    Quit,
}

/// What closing the window does, with or without a `tray_host`; `told` when the user was told
/// about the missing tray already in this process.
pub fn on_close(app: &AppTable, tray_host: bool, told: bool) -> OnClose {
    match (tray_host, app.no_tray) {
        (true, _) if app.light_mode => OnClose::LightMode,
        (true, _) => OnClose::Hide,
        (false, NoTray::KeepWindow) => OnClose::Minimize { tell: !told },
        (false, NoTray::Quit) => OnClose::Quit,
    }
}

/// A notification's title and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub title: &'static str,
    pub body: &'static str,
}

/// What the user is told when there is no tray.
pub fn no_tray_message(choice: NoTray) -> Message {
    match choice {
        NoTray::KeepWindow => Message {
            title: "No system tray: Webhook Connect stays in its window",
            body: "This desktop shows no tray icons, so a closed window could not be opened again. The window was minimized instead and forwarding goes on. To quit, use \"Quit Webhook Connect\" in Settings; to quit whenever the window is closed, change \"Without a system tray\" there.",
        },
        NoTray::Quit => Message {
            title: "Webhook Connect has quit",
            body: "This desktop shows no tray icons, so Webhook Connect cannot keep forwarding in the background: it quit when its window was closed. Start it again to go on; to keep it running instead, change \"Without a system tray\" in Settings.",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn table(light_mode: bool, start_minimized: bool) -> AppTable {
        AppTable {
            light_mode,
            start_minimized,
            ..AppTable::default()
        }
    }

    #[test]
    fn a_person_starting_the_app_always_sees_the_window() {
        // The defaults (no settings yet): start minimized, light mode.
        assert!(opens_window(&args(&[]), &AppTable::default()));
        assert!(opens_window(&args(&[]), &table(true, true)));
        assert!(opens_window(&args(&[]), &table(false, true)));
        assert!(opens_window(&args(&["--verbose"]), &table(true, true)));
        assert!(!wants_light_image(&args(&[]), &AppTable::default()));
    }

    #[test]
    fn start_minimized_applies_to_the_start_at_login_only() {
        let login = args(&["--minimized"]);
        assert!(!opens_window(&login, &AppTable::default()));
        assert!(wants_light_image(&login, &AppTable::default()));
        // Minimized start turned off: the login start shows the window too.
        assert!(opens_window(&login, &table(true, false)));
        assert!(!wants_light_image(&login, &table(true, false)));
        // Not light mode: the app starts, its window hidden.
        assert!(!wants_light_image(&login, &table(false, true)));
    }

    #[test]
    fn hand_overs_keep_the_window_state_of_the_image_before() {
        for start_minimized in [true, false] {
            let t = table(true, start_minimized);
            assert!(!opens_window(&args(&["--minimized", "--carried"]), &t));
            assert!(wants_light_image(&args(&["--minimized", "--carried"]), &t));
            // The app restarting itself with its window (it was asked for meanwhile).
            assert!(opens_window(&args(&["--carried"]), &t));
            // The light image handing back for the window.
            let back = args(&["--view", r#"{"name":"overview"}"#, "--carried"]);
            assert!(opens_window(&back, &t));
            assert!(!wants_light_image(&back, &t));
        }
    }

    #[test]
    fn with_a_tray_closing_keeps_the_app_in_the_tray() {
        assert_eq!(
            on_close(&AppTable::default(), true, false),
            OnClose::LightMode
        );
        assert_eq!(on_close(&table(false, true), true, false), OnClose::Hide);
        let quit = AppTable {
            no_tray: NoTray::Quit,
            ..AppTable::default()
        };
        assert_eq!(on_close(&quit, true, true), OnClose::LightMode);
    }

    #[test]
    fn without_a_tray_closing_follows_the_setting_and_tells_once() {
        // Default: keep the window (minimized), told the first time only.
        assert_eq!(NoTray::default(), NoTray::KeepWindow);
        assert_eq!(
            on_close(&AppTable::default(), false, false),
            OnClose::Minimize { tell: true }
        );
        assert_eq!(
            on_close(&AppTable::default(), false, true),
            OnClose::Minimize { tell: false }
        );
        // Light mode off: the window is not hidden where nothing could show it again.
        assert_eq!(
            on_close(&table(false, true), false, false),
            OnClose::Minimize { tell: true }
        );
        let quit = AppTable {
            no_tray: NoTray::Quit,
            ..AppTable::default()
        };
        assert_eq!(on_close(&quit, false, false), OnClose::Quit);
        assert!(no_tray_message(NoTray::Quit).title.contains("quit"));
        assert!(
            no_tray_message(NoTray::KeepWindow)
                .body
                .contains("Without a system tray")
        );
    }

    #[test]
    fn no_tray_is_read_from_the_app_table() {
        let t: AppTable = toml::from_str("no_tray = \"quit\"").unwrap();
        assert_eq!(t.no_tray, NoTray::Quit);
        let t: AppTable = toml::from_str("light_mode = false").unwrap();
        assert_eq!(t.no_tray, NoTray::KeepWindow, "default");
        assert!(
            toml::to_string(&AppTable::default())
                .unwrap()
                .contains("no_tray = \"keep_window\"")
        );
    }
}
