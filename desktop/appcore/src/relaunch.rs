//! Light mode's hand-over between the two images of the desktop app (Linux). Closing the window
//! destroys the webview and its web process, but WebKit's network process, Mesa and the heap
//! WebKit used stay with the app process: ~130 MiB in all. And even a start without a window
//! pays ~25 MiB for loading (relocating) WebKit, JavaScriptCore and their libraries. So in light
//! mode, once the window has gone, the app replaces itself (same pid, `exec`) with the light
//! image, [`LIGHT_BIN`]: tray, engine and notifications over GTK, without WebKit. Asked for the
//! window, the light image replaces itself with the app again the same way.
//!
//! At each hand-over the engine settles its running deliveries, the histories, counters and
//! pause switch are written to a private file, and the next image is executed with `--carried`;
//! it reads the file back, deletes it and connects again. When the light image is not installed
//! next to the app, the app executes itself again with `--minimized --carried` instead.
//!
//! The file is `carried-{pid}.json` in `$XDG_RUNTIME_DIR/webhook-connect` (a per-user tmpfs) or
//! else the app's cache directory; directory 0700, file 0600: it holds webhook bodies. Only the
//! file of this very pid is read, and only when it is less than [`FRESH`] old.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use connect_engine::Carried;

use crate::menu::View;

/// Command-line flag: start with the tray only (used by autostart).
pub const MINIMIZED_FLAG: &str = "--minimized";
/// The app's identifier (its `tauri.conf.json`): names its config and cache directories.
pub const IDENTIFIER: &str = "dev.webhookconnect.desktop";
/// The app's product name (its `tauri.conf.json`): names its autostart entry.
pub const PRODUCT_NAME: &str = "Webhook Connect";
/// File name of the light image, installed next to the app's binary.
pub const LIGHT_BIN: &str = "webhook-connect-light";
/// Light image's flag: the app binary to go back to when the window is asked for.
pub const APP_FLAG: &str = "--app";
/// App flag: the view to show first (JSON of [`View`]), from the light image's tray menu.
pub const VIEW_FLAG: &str = "--view";

/// The app's config directory (Tauri's `app_config_dir` on Linux):
/// `$XDG_CONFIG_HOME/<identifier>`, else `~/.config/<identifier>`.
pub fn config_dir() -> Option<PathBuf> {
    xdg_dir("XDG_CONFIG_HOME", ".config")
}

/// The app's cache directory (Tauri's `app_cache_dir` on Linux).
pub fn cache_dir() -> Option<PathBuf> {
    xdg_dir("XDG_CACHE_HOME", ".cache")
}

fn xdg_dir(var: &str, under_home: &str) -> Option<PathBuf> {
    let base = match std::env::var_os(var) {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(under_home),
    };
    Some(base.join(IDENTIFIER))
}

/// Where the carried files of this user go: [`dir`] with the cache directory as the fallback.
pub fn default_dir() -> PathBuf {
    dir(
        std::env::var_os("XDG_RUNTIME_DIR"),
        cache_dir().unwrap_or_else(std::env::temp_dir),
    )
}

/// The light image next to `app_exe`, when it is installed there.
pub fn light_exe(app_exe: &Path) -> Option<PathBuf> {
    let p = app_exe.parent()?.join(LIGHT_BIN);
    p.is_file().then_some(p)
}

/// The light image's arguments: the app to go back to, and `--carried` when a file was written.
pub fn light_args(app_exe: &Path, carried: bool) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec![APP_FLAG.into(), app_exe.into()];
    if carried {
        out.push(CARRIED_FLAG.into());
    }
    out
}

/// The app's arguments when the light image hands back: the window opens on `view` (even when
/// the app is set to start minimized).
pub fn app_args(view: &View, carried: bool) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    if let Ok(v) = serde_json::to_string(view) {
        out.push(VIEW_FLAG.into());
        out.push(v.into());
    }
    if carried {
        out.push(CARRIED_FLAG.into());
    }
    out
}

/// The value of `flag` in `args` (`flag value` or `flag=value`).
pub fn flag_value(args: &[OsString], flag: &str) -> Option<OsString> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == OsStr::new(flag) {
            return it.next().cloned();
        }
        if let Some(v) = a
            .to_str()
            .and_then(|s| s.strip_prefix(flag)?.strip_prefix('='))
        {
            return Some(v.into());
        }
    }
    None
}

/// The view given with [`VIEW_FLAG`], if any and valid.
pub fn view_arg(args: &[OsString]) -> Option<View> {
    let v = flag_value(args, VIEW_FLAG)?;
    serde_json::from_str(v.to_str()?).ok()
}

/// Command-line flag: take over what the process this one replaced carried out.
pub const CARRIED_FLAG: &str = "--carried";

/// How old a carried file may be. A restart takes a few seconds at most (the grace period for
/// running deliveries); anything older was left by a restart that failed.
pub const FRESH: Duration = Duration::from_secs(120);

/// Where carried files go: `$XDG_RUNTIME_DIR/webhook-connect`, else `fallback` (the app's cache
/// directory).
pub fn dir(runtime_dir: Option<OsString>, fallback: PathBuf) -> PathBuf {
    match runtime_dir {
        Some(d) if !d.is_empty() && Path::new(&d).is_absolute() => {
            Path::new(&d).join("webhook-connect")
        }
        _ => fallback,
    }
}

fn file_of(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("carried-{pid}.json"))
}

/// Writes what the next image of process `pid` takes over; returns the file.
pub fn write(dir: &Path, pid: u32, carried: &Carried) -> std::io::Result<PathBuf> {
    create_private_dir(dir)?;
    let path = file_of(dir, pid);
    let tmp = dir.join(format!("carried-{pid}.json.tmp"));
    let mut f = private_file(&tmp)?;
    serde_json::to_writer(&mut f, carried)?;
    f.flush()?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The first half of every hand-over: settles the core's running deliveries and writes what it
/// carries (histories, counters, pause switch) for the next image of this process, in
/// [`default_dir`]. Whether the file was written (the next image gets `--carried` only then).
pub async fn settle_and_carry(core: &crate::core::Core) -> bool {
    core.shutdown().await;
    let carried = core.carry_out();
    let dir = default_dir();
    match write(&dir, std::process::id(), &carried) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "history not carried over");
            false
        }
    }
}

/// Reads and deletes the file process `pid` carried out for itself. None when there is none,
/// when it is older than [`FRESH`], or when it does not parse (then it is deleted and the reason
/// logged): the app then starts with empty histories, as on a normal start.
pub fn take(dir: &Path, pid: u32) -> Option<Carried> {
    let path = file_of(dir, pid);
    let meta = std::fs::metadata(&path).ok()?;
    let text = std::fs::read(&path);
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(file = %path.display(), error = %e, "could not delete the carried file");
    }
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    if age > FRESH {
        tracing::warn!(file = %path.display(), age_s = age.as_secs(), "ignoring a stale carried file");
        return None;
    }
    match text
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_slice::<Carried>(&t).map_err(|e| e.to_string()))
    {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable carried file");
            None
        }
    }
}

/// The arguments of the next image: this process's (without the program name), without any
/// earlier `--minimized`/`--carried`, then `--minimized` unless the window is to open, and
/// `--carried` when a file was written.
pub fn args(
    current: impl IntoIterator<Item = OsString>,
    open_window: bool,
    carried: bool,
) -> Vec<OsString> {
    let mut out: Vec<OsString> = current
        .into_iter()
        .skip(1)
        .filter(|a| a != OsStr::new(MINIMIZED_FLAG) && a != OsStr::new(CARRIED_FLAG))
        .collect();
    // A view asked for by the light image was shown already.
    if let Some(i) = out.iter().position(|a| a == OsStr::new(VIEW_FLAG)) {
        out.drain(i..(i + 2).min(out.len()));
    }
    if !open_window {
        out.push(MINIMIZED_FLAG.into());
    }
    if carried {
        out.push(CARRIED_FLAG.into());
    }
    out
}

/// Replaces this process image with `exe args`. Returns only on failure.
#[cfg(unix)]
pub fn exec(exe: &Path, args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = std::process::Command::new(exe);
    // The same binary again keeps its argv[0]; another one (the light image, the app) gets its
    // own path.
    let same = std::env::current_exe().is_ok_and(|c| c == exe);
    if same && let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.args(args).exec()
}

/// In the new image (Linux): ends and reaps the previous image's helper processes. They are
/// still children of this pid (WebKit's web and network processes); they exit by themselves
/// once their sockets close at `exec`, but nothing in this image would ever wait for them, so
/// they would stay as zombies. Call first thing in `main`, before this image starts any child
/// of its own: every child there is then a leftover. The waits run on one background thread.
#[cfg(target_os = "linux")]
pub fn end_leftovers() {
    use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};
    let me = std::process::id();
    let leftovers: Vec<Pid> = children_of(me)
        .into_iter()
        .filter_map(|p| Pid::from_raw(p as i32))
        .collect();
    if leftovers.is_empty() {
        return;
    }
    for p in &leftovers {
        let _ = kill_process(*p, Signal::TERM);
    }
    let spawned = std::thread::Builder::new()
        .name("reap-leftovers".into())
        .spawn(move || {
            for p in leftovers {
                let _ = waitpid(Some(p), WaitOptions::empty());
            }
        });
    if let Err(e) = spawned {
        eprintln!("webhook-connect-app: cannot reap the previous image's helpers: {e}");
    }
}

/// Pids whose parent is `parent`, from `/proc/*/stat`.
#[cfg(target_os = "linux")]
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_of(&stat))
                == Some(parent)
        })
        .collect()
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
/// The parent pid in a `/proc/<pid>/stat` line: `pid (comm) state ppid ...`, where comm may
/// hold spaces and parentheses.
fn parent_of(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_engine::CarriedChannel;

    fn sample() -> Carried {
        Carried {
            paused: true,
            channels: vec![CarriedChannel {
                key: "cloud|ch".into(),
                counters: connect_engine::DeliveryCounters {
                    received: 7,
                    delivered: 6,
                    ..Default::default()
                },
                next_seq: 8,
                entries: Vec::new(),
                queue: None,
            }],
        }
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn hand_over_arguments_between_the_two_images() {
        let app = Path::new("/opt/wc/webhook-connect-app");
        let light = light_args(app, true);
        assert_eq!(
            light,
            os(&["--app", "/opt/wc/webhook-connect-app", "--carried"])
        );
        assert_eq!(
            light_args(app, false),
            os(&["--app", "/opt/wc/webhook-connect-app"])
        );
        assert_eq!(flag_value(&light, APP_FLAG), Some(app.into()));
        assert_eq!(flag_value(&os(&["--app=/x"]), APP_FLAG), Some("/x".into()));
        assert_eq!(flag_value(&os(&["--app"]), APP_FLAG), None);
        let view = View::Inspector {
            key: Some("cloud|ch".into()),
            message_id: None,
        };
        let back = app_args(&view, true);
        assert_eq!(back[0], "--view");
        assert_eq!(back.last().unwrap(), "--carried");
        assert_eq!(view_arg(&back), Some(view));
        assert_eq!(app_args(&View::Overview, false).len(), 2);
        assert_eq!(view_arg(&os(&["--view", "{broken"])), None);
        // The app restarting itself later does not show that view again.
        let mut current = os(&["webhook-connect-app"]);
        current.extend(back);
        assert_eq!(
            args(current, false, true),
            os(&["--minimized", "--carried"])
        );
    }

    #[test]
    fn the_light_image_is_looked_for_next_to_the_app() {
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("webhook-connect-app");
        assert_eq!(light_exe(&app), None);
        std::fs::create_dir(d.path().join(LIGHT_BIN)).unwrap();
        assert_eq!(light_exe(&app), None, "a directory is not the light image");
        std::fs::remove_dir(d.path().join(LIGHT_BIN)).unwrap();
        std::fs::write(d.path().join(LIGHT_BIN), b"").unwrap();
        assert_eq!(light_exe(&app), Some(d.path().join(LIGHT_BIN)));
    }

    #[test]
    fn a_written_file_is_read_once_by_the_same_pid_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("webhook-connect");
        let path = write(&dir, 4242, &sample()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        assert!(take(&dir, 4243).is_none(), "another pid's file is not ours");
        let got = take(&dir, 4242).unwrap();
        assert!(got.paused);
        assert_eq!(got.channels[0].counters.delivered, 6);
        assert!(!path.exists(), "deleted once read");
        assert!(take(&dir, 4242).is_none());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no temporary left"
        );
    }

    #[test]
    fn stale_or_broken_files_are_deleted_and_ignored() {
        let d = tempfile::tempdir().unwrap();
        let path = write(d.path(), 1, &sample()).unwrap();
        let old = SystemTime::now() - FRESH - Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(take(d.path(), 1).is_none());
        assert!(!path.exists());
        std::fs::write(file_of(d.path(), 2), b"{not json").unwrap();
        assert!(take(d.path(), 2).is_none());
        assert!(!file_of(d.path(), 2).exists());
    }

    #[test]
    fn the_next_image_starts_minimized_and_carried_once() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            args(
                os(&["app", "--minimized", "--verbose", "--carried"]),
                false,
                true
            ),
            os(&["--verbose", "--minimized", "--carried"])
        );
        assert_eq!(args(os(&["app"]), true, false), os(&[]));
        assert_eq!(
            args(os(&["app", "--carried"]), false, false),
            os(&["--minimized"])
        );
    }

    #[test]
    fn parent_pid_is_read_past_an_odd_command_name() {
        assert_eq!(parent_of("123 (a (b) c) S 77 123 123 0"), Some(77));
        assert_eq!(parent_of("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn children_are_found_in_proc() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = children_of(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
    }

    #[test]
    fn runtime_dir_first_cache_dir_otherwise() {
        let fallback = PathBuf::from("/home/u/.cache/app");
        assert_eq!(
            dir(Some("/run/user/1000".into()), fallback.clone()),
            PathBuf::from("/run/user/1000/webhook-connect")
        );
        assert_eq!(dir(Some("".into()), fallback.clone()), fallback);
        assert_eq!(dir(Some("relative".into()), fallback.clone()), fallback);
        assert_eq!(dir(None, fallback.clone()), fallback);
    }
}
