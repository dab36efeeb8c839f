//! The light image: GTK main loop on the main thread (tray icon and menu, clipboard), the engine
//! on a tokio runtime, the single-instance D-Bus name the app uses, and the hand-back to the
//! app when the window is asked for.

use std::cell::RefCell;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_appcore::core::Core;
use connect_appcore::menu::{self, Effect, MenuAction, MenuItem, View};
use connect_appcore::refresh::Refresher;
use connect_appcore::relaunch::{self, CARRIED_FLAG, IDENTIFIER, MINIMIZED_FLAG, PRODUCT_NAME};
use connect_appcore::secrets::{KeyringStore, SecretStore};
use connect_appcore::settings;
use connect_appcore::tray::{self, TrayState};
use gtk::glib;
use parking_lot::Mutex;
use tray_icon::menu as muda;
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

/// The app's binary name, looked for next to this one when `--app` is not given.
const APP_BIN: &str = "webhook-connect-app";

/// The single-instance D-Bus connection; taken (and the name released) at the hand-back.
type Instance = Arc<Mutex<Option<zbus::blocking::Connection>>>;

/// What the GTK thread owns.
struct Light {
    core: Arc<Core>,
    rt: tokio::runtime::Handle,
    tray: Option<TrayIcon>,
    refresher: Refresher,
    app_exe: PathBuf,
    instance: Instance,
    /// Quitting or handing back: no more refreshes or actions.
    leaving: bool,
}

thread_local! {
    static LIGHT: RefCell<Option<Light>> = const { RefCell::new(None) };
}

fn with_light<T>(f: impl FnOnce(&mut Light) -> T) -> Option<T> {
    LIGHT.with(|l| l.borrow_mut().as_mut().map(f))
}

/// Why the light image could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Neither `--app` nor a `webhook-connect-app` next to this binary.
    #[error("cannot tell where webhook-connect-app is (pass --app <path>)")]
    NoApp,
    #[error("tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("GTK: {0}")]
    Gtk(glib::BoolError),
    #[error("neither XDG_CONFIG_HOME nor HOME is set")]
    NoConfigDir,
    /// The app core (settings file, engine) did not start.
    #[error(transparent)]
    Core(#[from] connect_appcore::error::CoreError),
}

/// Runs the light image until Quit (or the hand-back, which does not return).
pub fn run() -> Result<(), StartError> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let app_exe = relaunch::flag_value(&args, relaunch::APP_FLAG)
        .map(PathBuf::from)
        .or_else(|| Some(std::env::current_exe().ok()?.parent()?.join(APP_BIN)))
        .ok_or(StartError::NoApp)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("light-rt")
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let instance = {
        let _in_rt = rt.enter();
        match single_instance::claim() {
            single_instance::Claim::Owned(c) => Some(c),
            single_instance::Claim::Forwarded => {
                tracing::info!("already running: asked the running instance to open its window");
                return Ok(());
            }
            single_instance::Claim::NoBus(why) => {
                tracing::warn!(error = %why, "single instance: no D-Bus session bus, running anyway");
                None
            }
        }
    };
    gtk::init().map_err(StartError::Gtk)?;
    let path = relaunch::config_dir()
        .ok_or(StartError::NoConfigDir)?
        .join(settings::FILE_NAME);
    let store = KeyringStore::new();
    let secrets: Arc<dyn SecretStore> = store.clone();
    let carried = if args.iter().any(|a| a == CARRIED_FLAG) {
        relaunch::take(&relaunch::default_dir(), std::process::id())
    } else {
        None
    };
    let core = rt.block_on(async move { Core::start_with(path, secrets, carried) })?;
    if let Some(why) = store.unavailable() {
        let msg = format!(
            "The OS keyring is unavailable ({why}): tokens are kept in memory until the app exits."
        );
        tracing::warn!("{msg}");
        core.add_notice(msg);
    }
    let core = Arc::new(core);
    let app_table = core.app_table();
    if let Some(al) = autostart(&app_exe)
        && al.is_enabled().unwrap_or(false) != app_table.autostart
    {
        apply_autostart(&app_exe, app_table.autostart);
    }
    let initial = TrayState::Disconnected;
    let tray = build_menu(&menu::model(
        initial.label(),
        false,
        &[],
        0,
        app_table.autostart,
    ))
    .map_err(|e| e.to_string())
    .and_then(|m| {
        let mut b = TrayIconBuilder::new()
            .with_id("main")
            .with_tooltip(tray::tooltip(initial, &tray::Totals::default()))
            .with_menu(Box::new(m))
            .with_menu_on_left_click(true);
        if let Some(i) = icon(initial) {
            b = b.with_icon(i);
        }
        b.build().map_err(|e| e.to_string())
    });
    let tray = match tray {
        Ok(t) => Some(t),
        Err(e) => {
            // No tray host: keep forwarding; the app launched again opens the window.
            tracing::warn!(error = %e, "no tray icon");
            None
        }
    };
    muda::MenuEvent::set_event_handler(Some(|e: muda::MenuEvent| {
        if let Some(a) = MenuAction::parse(e.id().as_ref()) {
            glib::idle_add_once(move || on_action(a));
        }
    }));
    tracing::info!(
        channels = core.list_channels().len(),
        app = %app_exe.display(),
        "light image running: tray and engine without WebKit"
    );
    LIGHT.with(|l| {
        *l.borrow_mut() = Some(Light {
            core,
            rt: rt.handle().clone(),
            tray,
            refresher: Refresher::default(),
            app_exe,
            instance: Arc::new(Mutex::new(instance)),
            leaving: false,
        })
    });
    tick(true);
    glib::timeout_add_seconds_local(1, || {
        tick(false);
        glib::ControlFlow::Continue
    });
    gtk::main();
    LIGHT.with(|l| l.borrow_mut().take());
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// One refresh of tray and notifications (the app's ticker, without the UI).
fn tick(force_menu: bool) {
    let notices = with_light(|l| {
        if l.leaving {
            return Vec::new();
        }
        let r = l.refresher.refresh(&l.core, Instant::now(), force_menu);
        if let Some(t) = &l.tray {
            if let Some(state) = r.icon {
                let _ = t.set_icon(icon(state));
            }
            if let Some(tooltip) = &r.tooltip {
                let _ = t.set_tooltip(Some(tooltip));
            }
            if let Some(items) = &r.menu {
                match build_menu(items) {
                    Ok(m) => t.set_menu(Some(Box::new(m))),
                    Err(e) => tracing::warn!(error = %e, "tray menu"),
                }
            }
        }
        r.notices
    })
    .unwrap_or_default();
    for n in notices {
        notify(&n.title, &n.body);
    }
}

/// A tray menu action: runs on the runtime (keyring and engine calls may block briefly, a replay
/// waits for the target); its effects come back to the GTK thread in order.
fn on_action(action: MenuAction) {
    let Some((core, rt)) =
        with_light(|l| (!l.leaving).then(|| (l.core.clone(), l.rt.clone()))).flatten()
    else {
        return;
    };
    rt.spawn(async move {
        for effect in menu::dispatch(&core, action).await {
            glib::idle_add_once(move || apply(effect));
        }
    });
}

fn apply(effect: Effect) {
    match effect {
        Effect::Refresh => tick(true),
        Effect::ShowWindow(view) => hand_back(view),
        Effect::CopyToClipboard(text) => {
            gtk::Clipboard::get(&gtk::gdk::SELECTION_CLIPBOARD).set_text(&text);
        }
        Effect::Notify { title, body } => notify(&title, &body),
        Effect::SetAutostart(on) => {
            if let Some(exe) = with_light(|l| l.app_exe.clone()) {
                apply_autostart(&exe, on);
            }
        }
        Effect::Exit => quit(),
    }
}

/// Quit: settle running deliveries, then leave the main loop.
fn quit() {
    let Some((core, rt)) = with_light(|l| {
        l.leaving = true;
        (l.core.clone(), l.rt.clone())
    }) else {
        return;
    };
    tracing::info!("quit");
    rt.spawn(async move {
        core.shutdown().await;
        glib::idle_add_once(gtk::main_quit);
    });
}

/// The window is asked for: hand back to the app (same pid), carrying histories, counters and
/// the pause switch over, and have it open the window on `view`.
fn hand_back(view: View) {
    let Some((core, rt, app_exe, instance)) = with_light(|l| {
        if l.leaving {
            return None;
        }
        Some((
            l.core.clone(),
            l.rt.clone(),
            l.app_exe.clone(),
            l.instance.clone(),
        ))
    })
    .flatten() else {
        return;
    };
    if !app_exe.is_file() {
        tracing::error!(app = %app_exe.display(), "the window cannot open: the app's binary is missing");
        notify(
            "The window cannot open",
            &format!(
                "{} is missing; forwarding goes on. Reinstall Webhook Connect.",
                app_exe.display()
            ),
        );
        return;
    }
    with_light(|l| l.leaving = true);
    tracing::info!(?view, "window asked for: handing back to the app");
    rt.spawn(async move {
        let written = relaunch::settle_and_carry(&core).await;
        // The app must be able to take the single-instance name.
        if let Some(c) = instance.lock().take() {
            let _ = c.release_name(single_instance::name().as_str());
        }
        let err = relaunch::exec(&app_exe, &relaunch::app_args(&view, written));
        tracing::error!(error = %err, "could not execute the app; starting it as a new process");
        match std::process::Command::new(&app_exe)
            .args(relaunch::app_args(&view, false))
            .spawn()
        {
            Ok(_) => std::process::exit(0),
            Err(e) => {
                tracing::error!(error = %e, "could not start the app; quitting");
                std::process::exit(1);
            }
        }
    });
}

fn notify(title: &str, body: &str) {
    let Some(rt) = with_light(|l| l.rt.clone()) else {
        return;
    };
    let (title, body) = (title.to_owned(), body.to_owned());
    // A notification is a blocking D-Bus call.
    rt.spawn_blocking(move || connect_appcore::notify::show(&title, &body));
}

/// The login entry the app's autostart plugin writes: same name, the app's binary, `--minimized`.
fn autostart(app_exe: &Path) -> Option<auto_launch::AutoLaunch> {
    auto_launch::AutoLaunchBuilder::new()
        .set_app_name(PRODUCT_NAME)
        .set_app_path(&app_exe.to_string_lossy())
        .set_args(&[MINIMIZED_FLAG])
        .build()
        .inspect_err(|e| tracing::warn!(error = %e, "autostart"))
        .ok()
}

fn apply_autostart(app_exe: &Path, on: bool) {
    let Some(al) = autostart(app_exe) else {
        return;
    };
    let res = if on { al.enable() } else { al.disable() };
    if let Err(e) = res {
        tracing::warn!(error = %e, "autostart");
    }
}

/// The tray icon of `state` (its PNG decoded to RGBA).
fn icon(state: TrayState) -> Option<Icon> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(state.icon_png()));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => {
            tracing::warn!(?other, "tray icon: unexpected PNG colour type");
            return None;
        }
    };
    Icon::from_rgba(rgba, info.width, info.height).ok()
}

/// Renders the menu model as the tray's GTK menu.
fn build_menu(items: &[MenuItem]) -> muda::Result<muda::Menu> {
    let menu = muda::Menu::new();
    for item in items {
        menu.append(render(item)?.as_ref())?;
    }
    Ok(menu)
}

fn render(item: &MenuItem) -> muda::Result<Box<dyn muda::IsMenuItem>> {
    Ok(match item {
        MenuItem::Status { id, label } => {
            Box::new(muda::MenuItem::with_id(id.as_str(), label, false, None))
        }
        MenuItem::Action { action, label } => {
            Box::new(muda::MenuItem::with_id(action.id(), label, true, None))
        }
        MenuItem::Check {
            action,
            label,
            checked,
        } => Box::new(muda::CheckMenuItem::with_id(
            action.id(),
            label,
            true,
            *checked,
            None,
        )),
        MenuItem::Submenu { id, label, items } => {
            let sub = muda::Submenu::with_id(id.as_str(), label, true);
            for i in items {
                sub.append(render(i)?.as_ref())?;
            }
            Box::new(sub)
        }
        MenuItem::Separator => Box::new(muda::PredefinedMenuItem::separator()),
    })
}

/// The single-instance D-Bus name of `tauri-plugin-single-instance`, so that the app launched
/// again while the light image runs finds it and asks it for the window.
mod single_instance {
    use super::*;

    pub fn name() -> String {
        format!("{IDENTIFIER}.SingleInstance")
    }

    fn object_path() -> String {
        format!("/{}", name().replace('.', "/").replace('-', "_"))
    }

    struct Callback;

    #[zbus::interface(name = "org.SingleInstance.DBus")]
    impl Callback {
        fn execute_callback(&mut self, argv: Vec<String>, _cwd: String) {
            tracing::info!(?argv, "launched again: opening the window");
            glib::idle_add_once(|| hand_back(View::Overview));
        }
    }

    pub enum Claim {
        Owned(zbus::blocking::Connection),
        /// Another instance owns the name and was asked for its window.
        Forwarded,
        NoBus(String),
    }

    pub fn claim() -> Claim {
        let name = name();
        let path = object_path();
        let built = zbus::blocking::connection::Builder::session()
            .and_then(|b| b.name(name.as_str()))
            .map(|b| {
                b.replace_existing_names(false)
                    .allow_name_replacements(false)
            })
            .and_then(|b| b.serve_at(path.as_str(), Callback))
            .and_then(|b| b.build());
        match built {
            Ok(c) => Claim::Owned(c),
            Err(zbus::Error::NameTaken) => {
                let argv: Vec<String> = std::env::args().collect();
                let cwd = std::env::current_dir()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                match zbus::blocking::Connection::session().and_then(|c| {
                    c.call_method(
                        Some(name.as_str()),
                        path.as_str(),
                        Some("org.SingleInstance.DBus"),
                        "ExecuteCallback",
                        &(argv, cwd),
                    )
                }) {
                    Ok(_) => Claim::Forwarded,
                    Err(e) => Claim::NoBus(format!("the running instance did not answer: {e}")),
                }
            }
            Err(e) => Claim::NoBus(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tray_state_has_an_icon() {
        for s in TrayState::ALL {
            assert!(icon(s).is_some(), "{s:?}");
        }
    }

    #[test]
    fn the_single_instance_name_is_the_apps() {
        // tauri-plugin-single-instance: `<identifier>.SingleInstance`, path from it.
        assert_eq!(
            single_instance::name(),
            "dev.webhookconnect.desktop.SingleInstance"
        );
    }
}
