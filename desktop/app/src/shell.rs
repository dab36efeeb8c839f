//! The Tauri side: plugins, IPC commands, the tray, the window (light mode) and the ticker that
//! refreshes tray, notifications and the UI once a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_engine::api::{EventDetail, EventSummary, ReplayRequest};
use connect_protocol::admin::DeadLetterList;
use parking_lot::Mutex;
use tauri::image::Image;
use tauri::menu::{
    CheckMenuItem, IsMenuItem, Menu, MenuItem as TauriMenuItem, MenuItemKind, PredefinedMenuItem,
    Submenu,
};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Emitter, Manager, RunEvent, Runtime, State, WebviewUrl, WindowEvent};
use tauri_plugin_autostart::ManagerExt as _;
use tauri_plugin_clipboard_manager::ClipboardExt as _;
#[cfg(not(all(unix, not(target_os = "macos"))))]
use tauri_plugin_notification::NotificationExt as _;

use crate::accounts::{
    AccountView, CreateAccountInput, NewChannelInput, RemoteChannel, SignInInput,
};
use crate::core::{AppSettings, AppSnapshot, ChannelInput, Core, SavedChannel};
use crate::error::CommandError;
use crate::launch::{self, NoTray, OnClose};
pub use crate::menu::View;
use crate::menu::{self, Effect, MenuAction, MenuItem};
use crate::refresh::Refresher;
pub use crate::relaunch::MINIMIZED_FLAG;
use crate::secrets::KeyringStore;
use crate::settings;
use crate::tray::{self, TrayState};

/// Label of the one window.
pub const MAIN: &str = "main";
const TRAY_ID: &str = "main";

/// State the shell keeps next to the core.
#[derive(Default)]
struct ShellState {
    refresher: Refresher,
    pending_view: Option<View>,
    /// Quit was chosen: a window destroyed now is the app ending, not light mode.
    quitting: bool,
    /// Light mode's restart is under way ([`relaunch_light`]).
    relaunching: bool,
    /// The window was asked for during the restart: the next image opens it.
    open_after_relaunch: bool,
    /// The user was told that the desktop has no tray (once per process).
    told_no_tray: bool,
}

/// The state Tauri manages (`app.manage`): the core, the shell's own state and the keyring.
pub struct ManagedState {
    pub core: Arc<Core>,
    shell: Mutex<ShellState>,
    keyring: Arc<KeyringStore>,
}

/// Every command answers a serialisable `{ code, message }` error (`ui/src/ipc.ts` reads it).
type Cmd<T> = Result<T, CommandError>;

fn core<'a>(s: &'a State<'_, ManagedState>) -> &'a Core {
    &s.core
}

// ---- IPC commands (names and arguments: see the UI's ipc.ts) -------------------------------

#[tauri::command(rename_all = "snake_case")]
async fn get_snapshot(state: State<'_, ManagedState>) -> Cmd<AppSnapshot> {
    Ok(core(&state).snapshot())
}

#[tauri::command(rename_all = "snake_case")]
async fn list_channels(state: State<'_, ManagedState>) -> Cmd<Vec<SavedChannel>> {
    Ok(core(&state).list_channels())
}

#[tauri::command(rename_all = "snake_case")]
async fn save_channel<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    input: ChannelInput,
) -> Cmd<SavedChannel> {
    let saved = core(&state).save_channel(input)?;
    refresh_now(&app);
    Ok(saved)
}

#[tauri::command(rename_all = "snake_case")]
async fn remove_channel<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    key: String,
    delete_at_cloud: Option<bool>,
) -> Cmd<()> {
    core(&state)
        .remove_channel(&key, delete_at_cloud.unwrap_or(false))
        .await?;
    refresh_now(&app);
    Ok(())
}

// ---- self-service (HOSTED.md §5) -----------------------------------------------------------

#[tauri::command(rename_all = "snake_case")]
async fn list_accounts(state: State<'_, ManagedState>) -> Cmd<Vec<AccountView>> {
    Ok(core(&state).accounts())
}

#[tauri::command(rename_all = "snake_case")]
async fn sign_in<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    input: SignInInput,
) -> Cmd<AccountView> {
    let a = core(&state).sign_in(input).await?;
    refresh_now(&app);
    Ok(a)
}

#[tauri::command(rename_all = "snake_case")]
async fn create_account<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    input: CreateAccountInput,
) -> Cmd<AccountView> {
    let a = core(&state).create_account(input).await?;
    refresh_now(&app);
    Ok(a)
}

#[tauri::command(rename_all = "snake_case")]
async fn sign_out<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    cloud_url: String,
) -> Cmd<()> {
    core(&state).sign_out(&cloud_url).await?;
    refresh_now(&app);
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
async fn list_remote_channels(
    state: State<'_, ManagedState>,
    cloud_url: String,
) -> Cmd<Vec<RemoteChannel>> {
    Ok(core(&state).remote_channels(&cloud_url).await?)
}

#[tauri::command(rename_all = "snake_case")]
async fn create_channel<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    input: NewChannelInput,
) -> Cmd<SavedChannel> {
    let saved = core(&state).create_channel(input).await?;
    refresh_now(&app);
    Ok(saved)
}

#[tauri::command(rename_all = "snake_case")]
async fn use_remote_channel<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    cloud_url: String,
    channel: String,
    target_url: String,
) -> Cmd<SavedChannel> {
    let saved = core(&state)
        .use_remote_channel(&cloud_url, &channel, &target_url)
        .await?;
    refresh_now(&app);
    Ok(saved)
}

#[tauri::command(rename_all = "snake_case")]
async fn set_channel_enabled<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    key: String,
    enabled: bool,
) -> Cmd<()> {
    core(&state).set_channel_enabled(&key, enabled)?;
    refresh_now(&app);
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
async fn set_paused<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    paused: bool,
) -> Cmd<()> {
    core(&state).set_paused(paused);
    refresh_now(&app);
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
async fn list_events(state: State<'_, ManagedState>, key: String) -> Cmd<Vec<EventSummary>> {
    Ok(core(&state).list_events(&key)?)
}

#[tauri::command(rename_all = "snake_case")]
async fn get_event(
    state: State<'_, ManagedState>,
    key: String,
    message_id: String,
) -> Cmd<EventDetail> {
    Ok(core(&state).get_event(&key, &message_id)?)
}

#[tauri::command(rename_all = "snake_case")]
async fn replay_event(state: State<'_, ManagedState>, request: ReplayRequest) -> Cmd<EventDetail> {
    Ok(core(&state).replay_event(request).await?)
}

#[tauri::command(rename_all = "snake_case")]
async fn list_dead_letters(
    state: State<'_, ManagedState>,
    key: String,
    limit: u32,
    offset: u32,
) -> Cmd<DeadLetterList> {
    Ok(core(&state).list_dead_letters(&key, limit, offset).await?)
}

#[tauri::command(rename_all = "snake_case")]
async fn replay_dead_letter(
    state: State<'_, ManagedState>,
    key: String,
    message_id: String,
) -> Cmd<()> {
    Ok(core(&state).replay_dead_letter(&key, &message_id).await?)
}

#[tauri::command(rename_all = "snake_case")]
async fn delete_dead_letter(
    state: State<'_, ManagedState>,
    key: String,
    message_id: String,
) -> Cmd<()> {
    Ok(core(&state).delete_dead_letter(&key, &message_id).await?)
}

#[tauri::command(rename_all = "snake_case")]
async fn purge_dead_letters(state: State<'_, ManagedState>, key: String) -> Cmd<u64> {
    Ok(core(&state).purge_dead_letters(&key).await?)
}

#[tauri::command(rename_all = "snake_case")]
async fn get_settings(state: State<'_, ManagedState>) -> Cmd<AppSettings> {
    Ok(core(&state).settings())
}

#[tauri::command(rename_all = "snake_case")]
async fn save_settings<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, ManagedState>,
    settings: AppSettings,
) -> Cmd<AppSettings> {
    let saved = core(&state).save_settings(settings)?;
    apply_autostart(&app, saved.autostart);
    state
        .shell
        .lock()
        .refresher
        .set_notification_level(saved.notifications);
    refresh_now(&app);
    Ok(saved)
}

/// The view the tray asked for before the window existed (the UI calls it once at start).
#[tauri::command(rename_all = "snake_case")]
async fn take_pending_view(state: State<'_, ManagedState>) -> Cmd<Option<View>> {
    Ok(state.shell.lock().pending_view.take())
}

/// Closes the window like its close button: in light mode the webview is destroyed.
#[tauri::command(rename_all = "snake_case")]
async fn close_window<R: Runtime>(app: AppHandle<R>) -> Cmd<()> {
    if let Some(w) = app.get_webview_window(MAIN) {
        w.close()
            .map_err(|e| CommandError::new("internal", e.to_string()))?;
    }
    Ok(())
}

/// Quits like the tray's Quit (where there is no tray, the window's only way out).
#[tauri::command(rename_all = "snake_case")]
async fn quit_app<R: Runtime>(app: AppHandle<R>) -> Cmd<()> {
    apply_effect(&app, Effect::Exit);
    Ok(())
}

// ---- window -----------------------------------------------------------------------------

/// Shows the window, creating it (and its webview) when it does not exist; then asks the UI to
/// show `view`.
pub fn show_window<R: Runtime>(app: &AppHandle<R>, view: Option<View>) {
    {
        let state = app.state::<ManagedState>();
        let mut shell = state.shell.lock();
        if shell.relaunching {
            // This image is about to be replaced; the next one opens the window.
            shell.open_after_relaunch = true;
            return;
        }
    }
    if let Some(w) = app.get_webview_window(MAIN) {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
        if let Some(v) = view {
            let _ = app.emit_to(MAIN, "navigate", v);
        }
        return;
    }
    if let Some(v) = view {
        app.state::<ManagedState>().shell.lock().pending_view = Some(v);
    }
    let built = tauri::WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App("index.html".into()))
        .title("Webhook Connect")
        .inner_size(1120.0, 760.0)
        .min_inner_size(760.0, 520.0)
        .build();
    if let Err(e) = built {
        tracing::error!(error = %e, "could not open the window");
    }
}

fn on_window_event<R: Runtime>(window: &tauri::Window<R>, event: &WindowEvent) {
    if window.label() != MAIN {
        return;
    }
    if let WindowEvent::CloseRequested { api, .. } = event {
        let app = window.app_handle();
        let state = app.state::<ManagedState>();
        let table = state.core.app_table();
        let told = state.shell.lock().told_no_tray;
        // Asked at every close: a tray host can come and go while the app runs (an extension
        // turned on, a panel restarted).
        let tray_host = tray_host_present();
        let decided = launch::on_close(&table, tray_host, told);
        tracing::info!(tray_host, ?decided, "window close asked for");
        match decided {
            // Light mode: the window and its WebKit processes go away; the tray keeps
            // forwarding (the hand-over follows on `Destroyed`).
            OnClose::LightMode => {}
            OnClose::Hide => {
                // Keep the webview loaded: hide instead of close.
                api.prevent_close();
                let _ = window.hide();
            }
            OnClose::Minimize { tell } => {
                api.prevent_close();
                let _ = window.minimize();
                tracing::info!(
                    "window closed with no tray host on the session bus: minimized instead (no_tray = keep_window)"
                );
                if tell {
                    state.shell.lock().told_no_tray = true;
                    let m = launch::no_tray_message(NoTray::KeepWindow);
                    state.core.add_notice(m.body.to_owned());
                    notify(app, m.title, m.body);
                }
            }
            OnClose::Quit => {
                api.prevent_close();
                let _ = window.hide();
                // Not light mode's hand-over when the window goes.
                state.shell.lock().quitting = true;
                tracing::info!(
                    "window closed with no tray host on the session bus: quitting (no_tray = quit)"
                );
                tell_then_quit(app);
            }
        }
    }
    if let WindowEvent::Destroyed = event {
        let app = window.app_handle();
        let state = app.state::<ManagedState>();
        let light = state.core.app_table().light_mode;
        if light && !state.shell.lock().quitting && cfg!(target_os = "linux") {
            relaunch_light(app);
        }
    }
}

/// Whether the session bus has a tray host now ([`launch::TRAY_WATCHER`]). Asked through GDBus
/// on the GTK thread (the session connection GTK and WebKit already hold; at most a second). No
/// session bus means no tray.
#[cfg(all(unix, not(target_os = "macos")))]
fn tray_host_present() -> bool {
    use gio::prelude::ToVariant as _;
    let asked =
        gio::bus_get_sync(gio::BusType::Session, None::<&gio::Cancellable>).and_then(|bus| {
            bus.call_sync(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameHasOwner",
                Some(&(launch::TRAY_WATCHER,).to_variant()),
                gio::glib::VariantTy::new("(b)").ok(),
                gio::DBusCallFlags::NONE,
                1000,
                None::<&gio::Cancellable>,
            )
        });
    match asked.map(|reply| reply.get::<(bool,)>()) {
        Ok(Some((present,))) => present,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask the session bus for a tray host; assuming none");
            false
        }
    }
}

/// Windows and macOS always have a tray (notification area, menu bar).
#[cfg(not(all(unix, not(target_os = "macos"))))]
fn tray_host_present() -> bool {
    true
}

/// No tray: tells the user that the app quits (the notification is sent before the process
/// ends), then quits.
fn tell_then_quit<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let m = launch::no_tray_message(NoTray::Quit);
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            let sent = tauri::async_runtime::spawn_blocking(move || {
                connect_appcore::notify::show(m.title, m.body)
            })
            .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "the no-tray notification");
            }
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        notify(&app, m.title, m.body);
        apply_effect(&app, Effect::Exit);
    });
}

/// Light mode on Linux: once the window is gone, replace this process with the light image
/// (tray and engine without WebKit), or with a fresh image of the app started without a window
/// when the light image is not installed next to it (see [`crate::relaunch`]). Deliveries
/// running now are settled first; the histories, counters and pause switch are carried over;
/// the cloud keeps new webhooks queued for the second or so the channel is disconnected.
fn relaunch_light<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let state = app.state::<ManagedState>();
        {
            let mut shell = state.shell.lock();
            if shell.quitting || shell.relaunching {
                return;
            }
            // Without the OS keyring the tokens live in this process only: another image would
            // start without them.
            if state.keyring.unavailable().is_some() {
                tracing::warn!(
                    "light mode: the OS keyring is unavailable, so the tokens live in this process only; staying (the webview's helpers stay until the next start)"
                );
                return;
            }
            shell.relaunching = true;
        }
        let exe = match std::env::current_exe() {
            Ok(p) if p.is_file() => p,
            other => {
                // Replaced or removed under us (an upgrade): keep running as we are.
                tracing::warn!(exe = ?other, "light mode: cannot restart, the binary is gone; the webview's helpers stay until the next start");
                let mut shell = state.shell.lock();
                shell.relaunching = false;
                if std::mem::take(&mut shell.open_after_relaunch) {
                    drop(shell);
                    show_window(&app, None);
                }
                return;
            }
        };
        let light = crate::relaunch::light_exe(&exe);
        match &light {
            Some(l) => {
                tracing::info!(light = %l.display(), "window closed in light mode: handing over to the light image")
            }
            None => tracing::info!("window closed in light mode: restarting without the webview"),
        }
        let written = crate::relaunch::settle_and_carry(&state.core).await;
        // The next image must be able to take the single-instance name.
        tauri_plugin_single_instance::destroy(&app);
        let open = state.shell.lock().open_after_relaunch;
        #[cfg(unix)]
        {
            // The light image cannot open the window: asked for it meanwhile, stay the app.
            if let Some(l) = light.filter(|_| !open) {
                let err = crate::relaunch::exec(&l, &crate::relaunch::light_args(&exe, written));
                tracing::error!(error = %err, light = %l.display(), "light mode: could not start the light image; restarting the app instead");
            }
            let args = crate::relaunch::args(std::env::args_os(), open, written);
            let err = crate::relaunch::exec(&exe, &args);
            tracing::error!(error = %err, "light mode: exec failed; starting a new process");
        }
        // A new process has another pid: it cannot find this one's carried file.
        let args = crate::relaunch::args(std::env::args_os(), open, false);
        match std::process::Command::new(&exe).args(&args).spawn() {
            Ok(_) => std::process::exit(0),
            Err(e) => {
                tracing::error!(error = %e, "light mode: could not start again; quitting");
                app.exit(1);
            }
        }
    });
}

// ---- tray -------------------------------------------------------------------------------

fn icon(state: TrayState) -> Option<Image<'static>> {
    Image::from_bytes(state.icon_png()).ok()
}

/// Renders the menu model ([`menu::model`]) as Tauri menu items.
fn render_items<R: Runtime>(
    app: &AppHandle<R>,
    items: &[MenuItem],
) -> tauri::Result<Vec<MenuItemKind<R>>> {
    items
        .iter()
        .map(|item| {
            Ok(match item {
                MenuItem::Status { id, label } => MenuItemKind::MenuItem(TauriMenuItem::with_id(
                    app,
                    id.as_str(),
                    label,
                    false,
                    None::<&str>,
                )?),
                MenuItem::Action { action, label } => MenuItemKind::MenuItem(
                    TauriMenuItem::with_id(app, action.id(), label, true, None::<&str>)?,
                ),
                MenuItem::Check {
                    action,
                    label,
                    checked,
                } => MenuItemKind::Check(CheckMenuItem::with_id(
                    app,
                    action.id(),
                    label,
                    true,
                    *checked,
                    None::<&str>,
                )?),
                MenuItem::Submenu { id, label, items } => {
                    let children = render_items(app, items)?;
                    let refs: Vec<&dyn IsMenuItem<R>> =
                        children.iter().map(|c| c as &dyn IsMenuItem<R>).collect();
                    MenuItemKind::Submenu(Submenu::with_id_and_items(
                        app,
                        id.as_str(),
                        label,
                        true,
                        &refs,
                    )?)
                }
                MenuItem::Separator => {
                    MenuItemKind::Predefined(PredefinedMenuItem::separator(app)?)
                }
            })
        })
        .collect()
}

fn build_menu<R: Runtime>(app: &AppHandle<R>, items: &[MenuItem]) -> tauri::Result<Menu<R>> {
    let rendered = render_items(app, items)?;
    let refs: Vec<&dyn IsMenuItem<R>> = rendered.iter().map(|c| c as &dyn IsMenuItem<R>).collect();
    Menu::with_items(app, &refs)
}

fn tray_icon<R: Runtime>(app: &AppHandle<R>) -> Option<TrayIcon<R>> {
    app.tray_by_id(TRAY_ID)
}

/// Refreshes tray, notifications and the UI now (after a command changed something).
fn refresh_now<R: Runtime>(app: &AppHandle<R>) {
    tick(app, Instant::now(), true);
}

/// One refresh: tray icon, tooltip and menu, notifications, and the `snapshot` event.
fn tick<R: Runtime>(app: &AppHandle<R>, now: Instant, force_menu: bool) {
    let st = app.state::<ManagedState>();
    let r = st.shell.lock().refresher.refresh(&st.core, now, force_menu);
    if let Some(t) = tray_icon(app) {
        if let Some(state) = r.icon {
            let _ = t.set_icon(icon(state));
        }
        if let Some(tooltip) = &r.tooltip {
            let _ = t.set_tooltip(Some(tooltip));
        }
        if let Some(items) = &r.menu {
            match build_menu(app, items) {
                Ok(m) => {
                    let _ = t.set_menu(Some(m));
                }
                Err(e) => tracing::warn!(error = %e, "tray menu"),
            }
        }
    }
    for n in r.notices {
        notify(app, &n.title, &n.body);
    }
    if app.get_webview_window(MAIN).is_some() {
        let _ = app.emit_to(MAIN, "snapshot", &r.snapshot);
    }
}

/// On Linux and the BSDs through the same sender as the light image (the plugin names its
/// notifications after the binary, `webhook-connect-app`, not "Webhook Connect").
#[cfg(all(unix, not(target_os = "macos")))]
fn notify<R: Runtime>(_app: &AppHandle<R>, title: &str, body: &str) {
    let (title, body) = (title.to_owned(), body.to_owned());
    // A blocking D-Bus call: off the event loop.
    tauri::async_runtime::spawn_blocking(move || connect_appcore::notify::show(&title, &body));
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn notify<R: Runtime>(app: &AppHandle<R>, title: &str, body: &str) {
    let mut b = app.notification().builder().title(title);
    if !body.is_empty() {
        b = b.body(body);
    }
    if let Err(e) = b.show() {
        tracing::debug!(error = %e, "notification not shown");
    }
}

fn apply_autostart<R: Runtime>(app: &AppHandle<R>, on: bool) {
    let al = app.autolaunch();
    let res = if on { al.enable() } else { al.disable() };
    if let Err(e) = res {
        tracing::warn!(error = %e, "autostart");
    }
}

/// Runs a tray action off the main thread (menu events arrive on it; keyring and engine calls
/// may block briefly, a replay waits for the target), then applies its effects.
pub fn handle_menu<R: Runtime>(app: &AppHandle<R>, action: MenuAction) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let core = app.state::<ManagedState>().core.clone();
        for effect in menu::dispatch(&core, action).await {
            apply_effect(&app, effect);
        }
    });
}

fn apply_effect<R: Runtime>(app: &AppHandle<R>, effect: Effect) {
    match effect {
        Effect::Refresh => refresh_now(app),
        Effect::ShowWindow(view) => show_window(app, Some(view)),
        Effect::CopyToClipboard(text) => {
            if let Err(e) = app.clipboard().write_text(text) {
                tracing::warn!(error = %e, "clipboard");
            }
        }
        Effect::Notify { title, body } => notify(app, &title, &body),
        Effect::SetAutostart(on) => apply_autostart(app, on),
        Effect::Exit => {
            app.state::<ManagedState>().shell.lock().quitting = true;
            app.exit(0);
        }
    }
}

fn setup<R: Runtime>(app: &mut tauri::App<R>) -> Result<(), Box<dyn std::error::Error>> {
    let handle = app.handle().clone();
    let path = app.path().app_config_dir()?.join(settings::FILE_NAME);
    let store = KeyringStore::new();
    let secrets: Arc<dyn crate::secrets::SecretStore> = store.clone();
    // The engine spawns its tasks on Tauri's tokio runtime.
    // After light mode's restart: what the previous image of this process carried out.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let carried = if args.iter().any(|a| a == crate::relaunch::CARRIED_FLAG) {
        crate::relaunch::take(&crate::relaunch::default_dir(), std::process::id())
    } else {
        None
    };
    // The view the light image's tray menu asked for.
    let view = crate::relaunch::view_arg(&args);
    let core =
        tauri::async_runtime::block_on(async move { Core::start_with(path, secrets, carried) })?;
    if let Some(why) = store.unavailable() {
        core.add_notice(format!(
            "The OS keyring is unavailable ({why}): tokens are kept in memory until the app exits."
        ));
    }
    let app_table = core.app_table();
    app.manage(ManagedState {
        core: Arc::new(core),
        shell: Mutex::new(ShellState::default()),
        keyring: store,
    });
    let initial = TrayState::Disconnected;
    let mut tb = TrayIconBuilder::with_id(TRAY_ID)
        .tooltip(tray::tooltip(initial, &tray::Totals::default()))
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| {
            if let Some(a) = MenuAction::parse(event.id().as_ref()) {
                handle_menu(app, a);
            }
        });
    if let Some(i) = icon(initial) {
        tb = tb.icon(i);
    }
    let menu = build_menu(
        &handle,
        &menu::model(initial.label(), false, &[], 0, app_table.autostart),
    )?;
    tb.menu(&menu).build(app)?;
    // The autostart entry follows the setting (it may have been edited in the file).
    if handle.autolaunch().is_enabled().unwrap_or(false) != app_table.autostart {
        apply_autostart(&handle, app_table.autostart);
    }
    // A start by hand always shows the window; `start_minimized` is for the start at login.
    if launch::opens_window(args.get(1..).unwrap_or_default(), &app_table) {
        show_window(&handle, view);
    }
    let ticker = handle.clone();
    tauri::async_runtime::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            tick(&ticker, Instant::now(), false);
        }
    });
    Ok(())
}

/// Builds and runs the app until Quit.
pub fn run() -> Result<(), tauri::Error> {
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show_window(app, None);
        }))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec![MINIMIZED_FLAG]),
        ))
        .plugin(tauri_plugin_clipboard_manager::init())
        .invoke_handler(tauri::generate_handler![
            get_snapshot,
            list_channels,
            save_channel,
            remove_channel,
            list_accounts,
            sign_in,
            create_account,
            sign_out,
            list_remote_channels,
            create_channel,
            use_remote_channel,
            set_channel_enabled,
            set_paused,
            list_events,
            get_event,
            replay_event,
            list_dead_letters,
            replay_dead_letter,
            delete_dead_letter,
            purge_dead_letters,
            get_settings,
            save_settings,
            take_pending_view,
            close_window,
            quit_app,
        ])
        .on_window_event(on_window_event)
        .setup(setup)
        .build(tauri::generate_context!())?;
    app.run(|_app, event| {
        // Closing the last window must not end the app: the tray keeps forwarding. Quit calls
        // `exit(0)`, which carries a code.
        if let RunEvent::ExitRequested {
            code: None, api, ..
        } = event
        {
            api.prevent_exit();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The light image finds the app's settings, carried files, autostart entry and D-Bus name
    /// through these constants: they must be the app's.
    #[test]
    fn identifier_and_product_name_are_the_tauri_configs() {
        let conf: serde_json::Value =
            serde_json::from_str(include_str!("../tauri.conf.json")).unwrap();
        assert_eq!(conf["identifier"], crate::relaunch::IDENTIFIER);
        assert_eq!(conf["productName"], crate::relaunch::PRODUCT_NAME);
    }
}
