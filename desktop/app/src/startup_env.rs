//! Start-up environment on Linux. WebKitGTK, GDK and glibc's allocator read some settings only
//! from the process environment, at load time, before `main` could configure them any other way.
//! The app never writes its own environment (`std::env::set_var` is banned workspace-wide); instead
//! `main` re-executes the binary once, with the defaults below added to the new image's
//! environment. A variable the user set is never touched, and
//! `WEBHOOK_CONNECT_APP_ENV_DEFAULTS=off` starts the app with the environment exactly as given.
//! docs/BENCHMARKS.md ("Desktop app") has what each default saves.
//!
//! A start without a window in light mode does not run the app at all: [`start_light_image`]
//! executes the light image (`webhook-connect-light`, no WebKit) with the same defaults.

use std::ffi::OsString;

/// Set in the re-executed process (to `applied`) so that it never loops; a user sets it to `off`
/// to skip the defaults.
pub const ENV_DEFAULTS: &str = "WEBHOOK_CONNECT_APP_ENV_DEFAULTS";

/// One variable the app sets when the user did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvDefault {
    pub name: &'static str,
    pub value: &'static str,
    /// Also left out when any of these is set (the user took charge of the same thing).
    pub unless_set: &'static [&'static str],
}

const COMPOSITING: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// The defaults, with why each is there.
pub const DEFAULTS: &[EnvDefault] = &[
    // WebKit's accelerated compositing renders the page through OpenGL; without a GPU (VMs,
    // remote desktops, CI) that is Mesa's llvmpipe in the web process, ~80 MiB for a page that
    // does not need it. Costs smooth GPU scrolling and animations on machines with a GPU;
    // `WEBKIT_DISABLE_COMPOSITING_MODE=0` turns compositing back on (and keeps GDK's GL, below).
    EnvDefault {
        name: COMPOSITING,
        value: "1",
        unless_set: &[],
    },
    // GDK opens GLX when it starts, which loads Mesa (and its 100 MB libLLVM) into the app process
    // even with no window at all: ~30 MiB in light mode. Nothing in the app uses GDK's GL once
    // compositing is off (WebKit then draws in software anyway).
    EnvDefault {
        name: "GDK_GL",
        value: "disable",
        unless_set: &[COMPOSITING],
    },
    // glibc gives each thread that allocates its own arena (up to 8 per core); the app's threads
    // (tokio workers, GTK, WebKit's) allocate little. Two arenas: ~2-3 MiB less heap.
    EnvDefault {
        name: "MALLOC_ARENA_MAX",
        value: "2",
        unless_set: &[],
    },
];

/// What to add to the environment `get` describes: every default whose variables are unset. None
/// when nothing is to be done: the defaults were applied already, the user turned them off, or
/// every variable is set.
pub fn missing(get: impl Fn(&str) -> Option<OsString>) -> Option<Vec<EnvDefault>> {
    if get(ENV_DEFAULTS).is_some() {
        return None;
    }
    let add: Vec<EnvDefault> = DEFAULTS
        .iter()
        .copied()
        .filter(|d| get(d.name).is_none() && d.unless_set.iter().all(|u| get(u).is_none()))
        .collect();
    (!add.is_empty()).then_some(add)
}

/// Re-executes the running binary with the missing defaults (same arguments, same pid). Returns
/// only when there is nothing to do, or when `exec` failed (then the app runs on without them).
#[cfg(target_os = "linux")]
pub fn apply() {
    use std::os::unix::process::CommandExt as _;
    let Some(add) = missing(|k| std::env::var_os(k)) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(&exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args);
    with_defaults(&mut cmd, add);
    let err = cmd.exec();
    eprintln!(
        "webhook-connect-app: could not re-execute {} with the default environment ({err}); starting without it",
        exe.display()
    );
}

/// Adds `add` to the environment of `cmd`, marked as applied so that it never loops.
#[cfg(target_os = "linux")]
fn with_defaults(cmd: &mut std::process::Command, add: Vec<EnvDefault>) {
    cmd.env(ENV_DEFAULTS, "applied");
    for d in add {
        cmd.env(d.name, d.value);
    }
}

/// Nothing to do off Linux.
#[cfg(not(target_os = "linux"))]
pub fn apply() {}

/// Whether a start with `args` (without the program name) and these `[app]` settings has no
/// window to show in light mode: then the light image runs instead (no WebKit loaded at all).
/// The decision is [`connect_appcore::launch::wants_light_image`]'s.
pub fn wants_light_image(args: &[OsString], app: &connect_appcore::settings::AppTable) -> bool {
    connect_appcore::launch::wants_light_image(args, app)
}

/// Linux: a start without a window in light mode (autostart's `--minimized` with
/// `start_minimized`, or a hand-over) goes straight to the light image next to this binary, with the start-up
/// defaults added to its environment (GDK's GL matters there too). Returns when the app is to
/// start instead: a window to show, not light mode, no light image installed, or `exec` failed.
#[cfg(target_os = "linux")]
pub fn start_light_image() {
    use connect_appcore::relaunch::{self, CARRIED_FLAG};
    use std::os::unix::process::CommandExt as _;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(config) = relaunch::config_dir() else {
        return;
    };
    let app = connect_appcore::settings::read_app_table(
        &config.join(connect_appcore::settings::FILE_NAME),
    );
    if !wants_light_image(&args, &app) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let Some(light) = relaunch::light_exe(&exe) else {
        return;
    };
    let carried = args.iter().any(|a| a == CARRIED_FLAG);
    let mut cmd = std::process::Command::new(&light);
    cmd.args(relaunch::light_args(&exe, carried));
    if let Some(add) = missing(|k| std::env::var_os(k)) {
        with_defaults(&mut cmd, add);
    }
    let err = cmd.exec();
    eprintln!(
        "webhook-connect-app: could not start the light image {} ({err}); starting the app",
        light.display()
    );
}

/// Nothing to do off Linux.
#[cfg(not(target_os = "linux"))]
pub fn start_light_image() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let m: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn names(v: Option<Vec<EnvDefault>>) -> Vec<&'static str> {
        v.unwrap_or_default().iter().map(|d| d.name).collect()
    }

    #[test]
    fn adds_only_what_the_user_did_not_set() {
        assert_eq!(
            names(missing(env(&[]))),
            [
                "WEBKIT_DISABLE_COMPOSITING_MODE",
                "GDK_GL",
                "MALLOC_ARENA_MAX"
            ]
        );
        assert_eq!(
            names(missing(env(&[("MALLOC_ARENA_MAX", "8")]))),
            ["WEBKIT_DISABLE_COMPOSITING_MODE", "GDK_GL"]
        );
        // Compositing back on: GDK keeps its GL too.
        assert_eq!(
            names(missing(env(&[("WEBKIT_DISABLE_COMPOSITING_MODE", "0")]))),
            ["MALLOC_ARENA_MAX"]
        );
        let all: Vec<(&str, &str)> = DEFAULTS.iter().map(|d| (d.name, "x")).collect();
        assert_eq!(missing(env(&all)), None);
    }

    #[test]
    fn only_a_start_without_a_window_in_light_mode_goes_to_the_light_image() {
        use connect_appcore::settings::AppTable;
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let table = |light_mode, start_minimized| AppTable {
            light_mode,
            start_minimized,
            ..AppTable::default()
        };
        // Defaults: light mode, start minimized at login; a start by hand shows the window.
        assert!(!wants_light_image(&args(&[]), &AppTable::default()));
        assert!(wants_light_image(
            &args(&["--minimized"]),
            &AppTable::default()
        ));
        assert!(wants_light_image(
            &args(&["--minimized", "--carried"]),
            &table(true, false)
        ));
        // A window to show.
        assert!(!wants_light_image(&args(&[]), &table(true, false)));
        assert!(!wants_light_image(
            &args(&["--minimized"]),
            &table(true, false)
        ));
        assert!(!wants_light_image(
            &args(&["--view", r#"{"name":"overview"}"#, "--carried"]),
            &table(true, true)
        ));
        // Not light mode: the app keeps its webview loaded, hidden.
        assert!(!wants_light_image(
            &args(&["--minimized"]),
            &table(false, true)
        ));
    }

    #[test]
    fn never_twice_and_can_be_turned_off() {
        assert_eq!(missing(env(&[(ENV_DEFAULTS, "applied")])), None);
        assert_eq!(missing(env(&[(ENV_DEFAULTS, "off")])), None);
    }

    #[test]
    fn values_are_what_webkit_gdk_and_glibc_read() {
        let value = |n: &str| DEFAULTS.iter().find(|d| d.name == n).map(|d| d.value);
        assert_eq!(value("WEBKIT_DISABLE_COMPOSITING_MODE"), Some("1"));
        assert_eq!(value("GDK_GL"), Some("disable"));
        assert_eq!(value("MALLOC_ARENA_MAX"), Some("2"));
    }
}
