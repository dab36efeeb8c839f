//! A first launch as a new user makes it: no settings yet, started by hand (no `--minimized`),
//! on a desktop without a tray host (plain GNOME: nobody owns `org.kde.StatusNotifierWatcher`).
//! The window opens; closing it never leaves an invisible process: the app says so once and
//! keeps its window (the default) or quits (`no_tray = quit`, chosen in Settings).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use connect_testkit::wait_until;

use crate::driver::{self, Driver};
use crate::notifications::Notifications;
use crate::webdriver::By;
use crate::{start_keyring, x11};

const WATCHER: &str = "org.kde.StatusNotifierWatcher";
const KEPT: &str = "No system tray: Webhook Connect stays in its window";
const QUIT: &str = "Webhook Connect has quit";

async fn has_owner(bus: &zbus::Connection, name: &str) -> Result<bool> {
    let reply = bus
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "NameHasOwner",
            &(name,),
        )
        .await?;
    Ok(reply.body().deserialize::<bool>()?)
}

/// Grabs the whole X screen into `path` (imagemagick's `import`); how many colours it shows.
fn screen_colours(path: &std::path::Path) -> Option<usize> {
    let grabbed = Command::new("import")
        .args(["-window", "root"])
        .arg(path)
        .status()
        .ok()?;
    if !grabbed.success() {
        return None;
    }
    let out = Command::new("identify")
        .args(["-format", "%k"])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Xvfb, D-Bus, gnome-keyring, tauri-driver and WebKitWebDriver: run scripts/test-app.sh"]
async fn first_launch_shows_the_window_and_closing_it_without_a_tray_follows_the_setting()
-> std::result::Result<(), String> {
    crate::outcome(
        first_launch_shows_the_window_and_closing_it_without_a_tray_follows_the_setting_flow()
            .await,
    )
}

async fn first_launch_shows_the_window_and_closing_it_without_a_tray_follows_the_setting_flow()
-> Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    let config_home = home.join(".config");
    std::fs::create_dir_all(&config_home)?;
    let _keyring = start_keyring(&home)?;
    // No settings file at all: the defaults of a fresh install (start minimized at login, light
    // mode, keep the window without a tray).
    let settings_path = config_home.join("dev.webhookconnect.desktop/settings.toml");

    // The suite's other test played a tray host on this bus; its name goes with its connection.
    let bus = zbus::Connection::session().await?;
    wait_until(
        Duration::from_secs(10),
        "no tray host on the bus (this test plays a desktop without one)",
        || async { has_owner(&bus, WATCHER).await.is_ok_and(|owned| !owned) },
    )
    .await?;
    let notifications = Notifications::start().await?;
    let log_path = tmp.path().join("app.log");
    let driver = Driver::start(&home, &config_home, &log_path, Some("info")).await?;
    let log_lines = |needle: &'static str| {
        driver
            .app_log()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    };
    let exe_name = |pid: u32| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default()
    };
    // Creating the session fails (times out) when the app shows no window.
    let session = driver.session().await;
    let result: Result<()> = async {
        let s = session.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // The window opened on its own, on the overview.
        s.wait_for(By::testid("add-channel"), Duration::from_secs(30))
            .await
            .context("the first launch's window")?;
        let pid = driver.app_pid().context("the app process")?;
        ensure!(exe_name(pid) == "webhook-connect-app", "{}", exe_name(pid));
        let mapped = tokio::task::spawn_blocking(move || x11::mapped_windows_of(pid)).await??;
        ensure!(mapped == 1, "{mapped} windows of the app on the screen");
        // What the user sees: the whole screen, as Xvfb shows it, once the window has painted
        // its page there (more than a blank window's few colours).
        let shots = driver::screenshots_dir()?;
        let shot = shots.join("00-first-launch.png");
        wait_until(
            Duration::from_secs(20),
            "the page painted on the screen",
            || {
                let shot = shot.clone();
                async move { screen_colours(&shot).is_some_and(|n| n > 64) }
            },
        )
        .await?;

        // Closed as the window manager does, with the default setting: the window stays
        // (minimized where a window manager can), the user is told once, forwarding goes on.
        let before = notifications.count();
        let closed = tokio::task::spawn_blocking(move || x11::close_windows_of(pid)).await??;
        ensure!(closed == 1, "{closed} windows closed");
        let told = notifications
            .wait_for(pid, KEPT, before, Duration::from_secs(20))
            .await?;
        ensure!(told.body.contains("Without a system tray"), "{told:?}");
        // The same in the window, for when the user comes back to it.
        s.wait_text(
            By::testid("app-notice"),
            "no tray icons",
            Duration::from_secs(10),
        )
        .await?;
        ensure!(exe_name(pid) == "webhook-connect-app", "{}", exe_name(pid));
        // Closed again: handled (the app logs each close), not told again.
        let closed = tokio::task::spawn_blocking(move || x11::close_windows_of(pid)).await??;
        ensure!(closed == 1, "{closed} windows closed the second time");
        wait_until(
            Duration::from_secs(10),
            "the second close handled",
            || async { log_lines("minimized instead") == 2 },
        )
        .await?;
        let from_app: Vec<_> = notifications
            .all()
            .into_iter()
            .filter(|n| n.pid == Some(pid))
            .collect();
        ensure!(
            from_app.iter().filter(|n| n.summary == KEPT).count() == 1,
            "told more than once: {from_app:?}"
        );
        s.find(By::testid("add-channel"))
            .await
            .context("the page after two closes")?;

        // The user chooses to quit without a tray, in Settings.
        s.click(By::testid("nav-settings")).await?;
        s.wait_for(By::testid("no-tray-quit"), Duration::from_secs(10))
            .await?;
        s.click(By::testid("no-tray-quit")).await?;
        let checked = r#"return document.querySelector("[data-testid=no-tray-quit]").checked"#;
        if s.execute(checked).await? != serde_json::Value::Bool(true) {
            // WebKitWebDriver's click can land while the view scrolls the radio into place:
            // then the DOM click a user's click amounts to.
            s.execute(r#"document.querySelector("[data-testid=no-tray-quit]").click()"#)
                .await?;
        }
        ensure!(
            s.execute(checked).await? == serde_json::Value::Bool(true),
            "\"Quits\" not chosen"
        );
        s.click(By::testid("save-settings")).await?;
        wait_until(Duration::from_secs(10), "no_tray saved", || async {
            std::fs::read_to_string(&settings_path).is_ok_and(|t| t.contains("no_tray = \"quit\""))
        })
        .await?;
        s.screenshot(&shots.join("00-settings-without-a-tray.png"))
            .await?;
        let saved = std::fs::read_to_string(&settings_path)?;
        ensure!(saved.contains("start_minimized = true"), "{saved}");

        // Closed now: told, then the process ends (no light image, nothing left running).
        let before = notifications.count();
        let closed = tokio::task::spawn_blocking(move || x11::close_windows_of(pid)).await??;
        ensure!(closed == 1, "{closed} windows closed the third time");
        let told = notifications
            .wait_for(pid, QUIT, before, Duration::from_secs(20))
            .await?;
        ensure!(told.body.contains("Start it again"), "{told:?}");
        // Until its parent reaps it, an ended process is a zombie.
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| st.rsplit(')').next().map(|r| r.trim_start().to_owned()))
                .is_some_and(|r| !r.starts_with('Z'))
        };
        wait_until(Duration::from_secs(20), "the app to quit", || async {
            !running()
        })
        .await?;
        ensure!(
            log_lines("light image running") == 0 && log_lines("handing over") == 0,
            "a hand-over to the light image"
        );
        Ok(())
    }
    .await;
    if result.is_err() {
        if let Ok(s) = &session {
            driver::failure_screenshot(s, "first-launch").await;
        }
        eprintln!("app log:\n{}", driver.app_log());
        if let Some(pid) = driver.app_pid() {
            eprintln!("app process {pid}: {}", exe_name(pid));
        }
    }
    driver.stop(session.as_ref().ok()).await;
    result
}
