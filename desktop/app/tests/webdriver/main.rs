//! End to end: the real app binary under Xvfb, driven through `tauri-driver` + `WebKitWebDriver`
//! (plain W3C WebDriver over HTTP), against a real `webhook-connect-cloud` and a local recording
//! target, with tokens in a real Secret Service (gnome-keyring). Run by `scripts/test-app.sh`,
//! which provides the display and the D-Bus session; ignored in plain `cargo test`.

// The `it` tests' cloud; the rest of that harness (the core's world) is not used here.
mod bus;
mod driver;
mod first_launch;
#[path = "../it/harness.rs"]
#[allow(dead_code)]
mod harness;
mod notifications;
mod self_service;
mod tray;
mod webdriver;
mod x11;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use connect_testkit::{RecordingTarget, wait_until};
use driver::Driver;
use serde_json::{Value, json};
use webdriver::By;

use harness::{ADMIN, CHANNEL, Cloud, TOKEN};

/// A flow's failure as the test's last output, without a backtrace: anyhow captures one when
/// `RUST_BACKTRACE` is set, and its frames pushed the message itself out of the tail of the
/// output that CI reports.
fn outcome(result: Result<()>) -> std::result::Result<(), String> {
    result.map_err(|e| format!("{e:#}"))
}

/// The test's own gnome-keyring daemon; ended when dropped, so that the next test's daemon owns
/// the Secret Service's bus name (a daemon left running keeps the name with its `home` deleted,
/// and every write to it then fails).
pub(crate) struct Keyring(Option<u32>);

impl Drop for Keyring {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// gnome-keyring's Secret Service on the session bus of `dbus-run-session`, storing under `home`,
/// with its own control directory (else the launcher only unlocks a daemon already running).
fn start_keyring(home: &Path) -> Result<Keyring> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        bail!("no D-Bus session: run under `dbus-run-session` (scripts/test-app.sh)");
    }
    let run = home.join(".run");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&run)?;
    }
    let mut c = Command::new("gnome-keyring-daemon")
        .args(["--unlock", "--components=secrets"])
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", &run)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("gnome-keyring-daemon")?;
    if let Some(mut stdin) = c.stdin.take() {
        use std::io::Write;
        stdin.write_all(b"test-keyring-password")?;
    }
    // It daemonizes: the launcher exits once the service is registered. The daemon is the
    // gnome-keyring process whose HOME is this test's.
    c.wait()?;
    let want = format!("HOME={}", home.display());
    let pid = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .find(|pid| {
            comm(*pid).starts_with("gnome-keyring")
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == want.as_bytes()))
        });
    Ok(Keyring(pid))
}

fn secret_tool_lookup(home: &Path, account: &str) -> Option<String> {
    let out = Command::new("secret-tool")
        .args(["lookup", "service", "webhook-connect", "username", account])
        .env("HOME", home)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Pids of `root` and all its descendants.
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may contain spaces.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Xvfb, D-Bus, gnome-keyring, tauri-driver and WebKitWebDriver: run scripts/test-app.sh"]
async fn add_channel_forward_inspect_replay_and_dead_letter() -> std::result::Result<(), String> {
    crate::outcome(add_channel_forward_inspect_replay_and_dead_letter_flow().await)
}

async fn add_channel_forward_inspect_replay_and_dead_letter_flow() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    let config_home = home.join(".config");
    std::fs::create_dir_all(&config_home)?;
    let _keyring = start_keyring(&home)?;

    let mut cloud = Cloud::start().await?;
    let base = cloud.base.clone();
    let target = RecordingTarget::start().await?;
    let http = reqwest::Client::new();

    // Start with the window open; notifications at their default level (errors).
    let settings_dir = config_home.join("dev.webhookconnect.desktop");
    std::fs::create_dir_all(&settings_dir)?;
    let settings_path = settings_dir.join("settings.toml");
    std::fs::write(&settings_path, "[app]\nstart_minimized = false\n")?;

    let app = driver::app_binary();
    let log_path = tmp.path().join("app.log");
    // The desktop shell's side of the tray, up before the app so that it registers at once.
    let tray = tray::Tray::start().await?;
    let notifications = notifications::Notifications::start().await?;
    let driver = Driver::start(&home, &config_home, &log_path, Some("info")).await?;
    let s = driver.session().await?;
    let shots = driver::screenshots_dir()?;

    let result: Result<()> = async {
        // Overview, empty.
        s.wait_for(By::testid("add-channel"), Duration::from_secs(30))
            .await?;
        s.invoke("get_snapshot", json!({})).await?;
        // The first `snapshot` event reaches the UI within a second.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        s.screenshot(&shots.join("01-overview-empty.png")).await?;

        // The app re-executed itself with its Linux start-up defaults, keeping what was set.
        let app_pid = driver.app_pid().context("the app process")?;
        let environ = std::fs::read(format!("/proc/{app_pid}/environ"))?;
        let environ: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        for want in [
            "WEBHOOK_CONNECT_APP_ENV_DEFAULTS=applied",
            "MALLOC_ARENA_MAX=2",
            "WEBKIT_DISABLE_COMPOSITING_MODE=0",
        ] {
            assert!(
                environ.iter().any(|v| v == want),
                "{want} not in {environ:?}"
            );
        }
        assert!(
            !environ.iter().any(|v| v.starts_with("GDK_GL=")),
            "GDK's GL stays on with compositing"
        );

        // Add the channel through the form.
        s.click(By::testid("add-channel")).await?;
        s.wait_for(By::testid("channel-form"), Duration::from_secs(10))
            .await?;
        s.type_into(By::testid("input-cloud-url"), &base).await?;
        s.type_into(By::testid("input-channel"), CHANNEL).await?;
        s.type_into(By::testid("input-token"), TOKEN).await?;
        s.type_into(By::testid("input-admin-token"), ADMIN).await?;
        s.type_into(
            By::testid("input-default-target"),
            &format!("{}/hook", target.url),
        )
        .await?;
        s.screenshot(&shots.join("02-channel-form.png")).await?;
        s.click(By::testid("save-channel")).await?;

        // The channel row appears and connects.
        let row = s
            .wait_for(
                By::css("[data-testid^='channel-row-']"),
                Duration::from_secs(15),
            )
            .await?;
        let key = s
            .attribute(&row, "data-testid")
            .await?
            .trim_start_matches("channel-row-")
            .to_owned();
        s.wait_text(
            By::testid(&format!("state-{key}")),
            "onnected",
            Duration::from_secs(30),
        )
        .await
        .context("channel to connect")?;

        // The tray as the desktop shell shows it (StatusNotifierItem + dbusmenu over D-Bus):
        // the status line, the connected channel's submenu and every action.
        let item = tray.item_of(app_pid, 0, Duration::from_secs(20)).await?;
        let menu = tray
            .wait_menu(
                &item,
                "the channel shown connected",
                Duration::from_secs(20),
                |m| m.labels()[0].starts_with("Connected · 1/1"),
            )
            .await?;
        let labels = menu.labels();
        eprintln!("tray menu, window open: {labels:?}");
        assert!(
            labels.iter().any(|l| l.ends_with(
                " ● > Disconnect | Open inspector | Replay last event | Copy webhook URL"
            )),
            "{labels:?}"
        );
        for want in [
            "Pause all",
            "Open Webhook Connect",
            "Start at login [ ]",
            "Quit",
        ] {
            assert!(labels.iter().any(|l| l == want), "{want} not in {labels:?}");
        }
        assert!(
            labels.iter().any(|l| l.starts_with("Dead letters (")),
            "{labels:?}"
        );
        assert!(
            !menu.children[0].enabled,
            "the status line is not clickable"
        );

        // The token is in the Secret Service and nowhere in settings.toml.
        let account = format!("channel:{base}/{CHANNEL}");
        assert_eq!(
            secret_tool_lookup(&home, &account).as_deref(),
            Some(TOKEN),
            "token in the keyring"
        );
        assert_eq!(
            secret_tool_lookup(&home, &format!("admin:{base}")).as_deref(),
            Some(ADMIN)
        );
        let file = std::fs::read_to_string(&settings_path)?;
        assert!(!file.contains(TOKEN) && !file.contains(ADMIN), "{file}");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&settings_path)?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // The UI never receives a token.
        let channels = s.invoke("list_channels", json!({})).await?.to_string();
        assert!(
            !channels.contains(TOKEN) && !channels.contains(ADMIN),
            "{channels}"
        );

        // A webhook flows through to the target and shows in the inspector.
        let id = cloud.post(&json!({"hello": "world"})).await?;
        target.wait_for_count(1, Duration::from_secs(20)).await?;
        s.wait_text(
            By::testid(&format!("state-{key}")),
            "onnected",
            Duration::from_secs(10),
        )
        .await?;
        wait_until(
            Duration::from_secs(10),
            "the delivery in the snapshot",
            || async {
                s.invoke("get_snapshot", json!({}))
                    .await
                    .is_ok_and(|v| v["channels"][0]["counters"]["delivered"].as_u64() >= Some(1))
            },
        )
        .await?;
        // The UI renders the next `snapshot` event (once a second).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.screenshot(&shots.join("03-overview-connected.png"))
            .await?;
        s.click(By::testid(&format!("open-inspector-{key}")))
            .await?;
        s.wait_for(
            By::testid(&format!("event-row-{id}")),
            Duration::from_secs(15),
        )
        .await?;
        s.click(By::testid(&format!("event-row-{id}"))).await?;
        s.wait_for(By::testid("event-detail"), Duration::from_secs(10))
            .await?;
        s.screenshot(&shots.join("04-inspector.png")).await?;

        // Replay it: the target gets it again.
        s.click(By::testid("replay")).await?;
        s.wait_for(By::testid("replay-result"), Duration::from_secs(15))
            .await?;
        // The result (under the Replay button) is scrolled into view.
        wait_until(
            Duration::from_secs(5),
            "the replay result to be in view",
            || async {
                s.execute(
                    "const r = document.querySelector('[data-testid=replay-result]')\
                       .getBoundingClientRect(); \
                     return r.top >= 0 && r.bottom <= window.innerHeight + 1;",
                )
                .await
                .is_ok_and(|v| v == Value::Bool(true))
            },
        )
        .await?;
        target.wait_for_count(2, Duration::from_secs(10)).await?;
        assert_eq!(target.requests()[1].body_text(), r#"{"hello":"world"}"#);
        s.screenshot(&shots.join("05-inspector-replayed.png"))
            .await?;

        // Force a dead letter: the target refuses with 404 (NACK without retry).
        target.set_status(404);
        let dead = cloud.post(&json!({"will": "fail"})).await?;
        target.wait_for_count(3, Duration::from_secs(20)).await?;
        // The desktop is told once: the target's first failure (Tauri's notification plugin).
        let shown = notifications
            .wait_for(app_pid, "alpha: target failing", 0, Duration::from_secs(15))
            .await?;
        anyhow::ensure!(
            shown.body.contains(&format!("{}/hook", target.url)),
            "{shown:?}"
        );
        s.click(By::testid("nav-overview")).await?;
        s.wait_for(
            By::testid(&format!("dead-letters-{key}")),
            Duration::from_secs(10),
        )
        .await?;
        s.click(By::testid(&format!("dead-letters-{key}"))).await?;
        let row = By::testid(&format!("dlq-row-{dead}"));
        let mut found = false;
        for _ in 0..30 {
            if s.find(row.clone()).await.is_ok() {
                found = true;
                break;
            }
            let _ = s.click(By::testid("dlq-refresh")).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::ensure!(found, "dead letter {dead} not listed");
        s.click(row.clone()).await?;
        s.wait_for(By::testid("dlq-detail"), Duration::from_secs(10))
            .await?;
        s.screenshot(&shots.join("06-dead-letters.png")).await?;

        // Replay it from the dead-letter view once the target is fixed.
        target.set_status(200);
        s.click(By::testid("dlq-replay")).await?;
        if s.find(By::testid("confirm-ok")).await.is_ok() {
            s.click(By::testid("confirm-ok")).await?;
        }
        let reqs = target.wait_for_count(4, Duration::from_secs(30)).await?;
        assert_eq!(reqs[3].body_text(), r#"{"will":"fail"}"#);
        let (_, list) =
            admin_get(&http, &base, &format!("/channels/{CHANNEL}/dead-letters")).await?;
        assert_eq!(list["total"], 0, "{list}");

        // Settings view.
        s.click(By::testid("nav-settings")).await?;
        s.wait_for(By::testid("settings-form"), Duration::from_secs(10))
            .await?;
        s.screenshot(&shots.join("07-settings.png")).await?;

        // No connection of the channel left at the cloud.
        let no_links = || async {
            admin_get(&http, &base, &format!("/channels/{CHANNEL}"))
                .await
                .is_ok_and(|(_, d)| {
                    d["connected_clients"]
                        .as_array()
                        .is_some_and(|c| c.is_empty())
                })
        };
        // Light mode: closing the window destroys the webview, and the app hands over (same
        // pid) to the light image, which never loads WebKit, taking the history over.
        let webkit = |pid: u32| {
            process_tree(pid)
                .into_iter()
                .map(comm)
                .filter(|c| c.starts_with("WebKit"))
                .collect::<Vec<_>>()
        };
        let window_open = || {
            webkit(app_pid)
                .iter()
                .any(|c| c.starts_with("WebKitWebProces"))
        };
        assert!(window_open(), "{:?}", webkit(app_pid));
        let cmdline = || {
            std::fs::read(format!("/proc/{app_pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        };
        let exe_name = || {
            std::fs::read_link(format!("/proc/{app_pid}/exe"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default()
        };
        let log_lines = |needle: &'static str| {
            driver
                .app_log()
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let carried_lines = || {
            log_lines("took over the previous image's history")
                .into_iter()
                .filter(|l| l.contains("events=") && !l.contains("events=0"))
                .count()
        };
        // After the window was closed: the light image took over (same pid), no WebKit is
        // left, and the history is carried (the `hand_overs`-th time).
        let in_light = async |hand_overs: usize| -> Result<()> {
            // `exe` changes before the new image's arguments are set up: wait for both.
            wait_until(
                Duration::from_secs(30),
                "the app to hand over to the light image",
                || async {
                    exe_name() == "webhook-connect-light"
                        && cmdline().iter().any(|a| a == "--carried")
                },
            )
            .await?;
            let args = cmdline();
            let app_arg = args.iter().position(|a| a == "--app").map(|i| &args[i + 1]);
            anyhow::ensure!(
                app_arg.map(PathBuf::from) == Some(app.canonicalize()?),
                "--app is not {}: {args:?}",
                app.display()
            );
            wait_until(
                Duration::from_secs(15),
                "every WebKit process to exit",
                || async { webkit(app_pid).is_empty() },
            )
            .await
            .with_context(|| format!("left: {:?}", webkit(app_pid)))?;
            // Every other hand-over goes to the light image.
            let light_runs = hand_overs.div_ceil(2);
            wait_until(
                Duration::from_secs(15),
                "the history taken over",
                || async {
                    carried_lines() == hand_overs
                        && log_lines("light image running").len() == light_runs
                },
            )
            .await?;
            // The light image links no WebKit at all.
            let maps = std::fs::read_to_string(format!("/proc/{app_pid}/maps"))?;
            anyhow::ensure!(
                !maps.contains("libwebkit2gtk"),
                "WebKit mapped in the light image"
            );
            anyhow::ensure!(maps.contains("libgtk-3"), "the tray's GTK is not mapped");
            Ok(())
        };
        // Waits for the app to be back in the pid (same pid) with its window open on `--view`,
        // and the history carried back.
        let back_in_app = async |hand_overs: usize| -> Result<()> {
            wait_until(
                Duration::from_secs(30),
                "the window to open again",
                || async { window_open() },
            )
            .await?;
            let args = cmdline();
            anyhow::ensure!(
                exe_name() == "webhook-connect-app"
                    && args.iter().any(|a| a == "--view")
                    && args.iter().any(|a| a == "--carried"),
                "not the app with --view and --carried: {} {args:?}",
                exe_name()
            );
            wait_until(
                Duration::from_secs(15),
                "the history taken back",
                || async { carried_lines() == hand_overs },
            )
            .await
        };

        let registered = tray.registrations();
        let _ = s.invoke("close_window", json!({})).await;
        in_light(1).await?;
        let _ = cloud.post(&json!({"light": true})).await?;
        let reqs = target.wait_for_count(5, Duration::from_secs(20)).await?;
        assert_eq!(reqs[4].body_text(), r#"{"light":true}"#);

        // The light image's tray, clicked as a user does: "Pause all" closes the channel's link
        // and webhooks wait at the cloud; "Resume all" delivers them.
        let item = tray
            .item_of(app_pid, registered, Duration::from_secs(20))
            .await
            .context("the light image's tray item")?;
        let menu = tray
            .wait_menu(
                &item,
                "the light image's menu",
                Duration::from_secs(20),
                |m| m.labels()[0].starts_with("Connected · 1/1"),
            )
            .await?;
        let pause = menu.id_of("Pause all")?;
        tray.click(&item, pause).await?;
        let menu = tray
            .wait_menu(&item, "paused", Duration::from_secs(20), |m| {
                m.labels()[0].starts_with("Paused · 0/1")
            })
            .await?;
        eprintln!("tray menu, light image, paused: {:?}", menu.labels());
        assert!(
            menu.find(&|l| l == "Resume all").is_some(),
            "{:?}",
            menu.labels()
        );
        wait_until(
            Duration::from_secs(15),
            "the paused channel's link to close at the cloud",
            no_links,
        )
        .await?;
        let held = cloud.post(&json!({"paused": true})).await?;
        let (_, ready) = admin_get(
            &http,
            &base,
            &format!("/channels/{CHANNEL}/messages?state=ready"),
        )
        .await?;
        assert!(ready["messages"].to_string().contains(&held), "{ready}");
        assert_eq!(target.requests().len(), 5, "delivered while paused");
        tray.click(&item, menu.id_of("Resume all")?).await?;
        let reqs = target.wait_for_count(6, Duration::from_secs(20)).await?;
        assert_eq!(reqs[5].body_text(), r#"{"paused":true}"#);
        tray.wait_menu(&item, "resumed", Duration::from_secs(20), |m| {
            m.labels()[0].starts_with("Connected · 1/1")
        })
        .await?;

        // The channel's submenu: "Replay last event" sends the newest event again, byte for
        // byte; "Disconnect" closes its link, and "Connect" opens it again.
        let in_channel = |m: &tray::Node, label: &str| {
            m.children
                .iter()
                .find(|c| c.label.starts_with("alpha") && !c.children.is_empty())
                .and_then(|c| c.find(&|l| l == label))
                .map(|n| n.id)
                .with_context(|| format!("no {label} under alpha in {:?}", m.labels()))
        };
        let menu = tray.menu(&item).await?;
        let before = notifications.count();
        tray.click(&item, in_channel(&menu, "Replay last event")?)
            .await?;
        let reqs = target.wait_for_count(7, Duration::from_secs(20)).await?;
        assert_eq!(reqs[6].body, reqs[5].body, "the replay is byte for byte");
        // Its outcome is a notification from the light image (notify-rust).
        let shown = notifications
            .wait_for(app_pid, "Replayed", before, Duration::from_secs(10))
            .await?;
        anyhow::ensure!(
            shown.app_name == "Webhook Connect" && shown.body.ends_with(" → 200"),
            "{shown:?}"
        );
        tray.click(&item, in_channel(&menu, "Disconnect")?).await?;
        let menu = tray
            .wait_menu(
                &item,
                "the channel disconnected",
                Duration::from_secs(20),
                |m| m.labels()[0].contains("0/1") && in_channel(m, "Connect").is_ok(),
            )
            .await?;
        wait_until(
            Duration::from_secs(15),
            "the disconnected channel's link to close at the cloud",
            no_links,
        )
        .await?;
        tray.click(&item, in_channel(&menu, "Connect")?).await?;
        tray.wait_menu(
            &item,
            "the channel connected again",
            Duration::from_secs(20),
            |m| m.labels()[0].starts_with("Connected · 1/1"),
        )
        .await?;
        // "Copy webhook URL" puts the channel's public URL on the clipboard, for a paste.
        let menu = tray.menu(&item).await?;
        tray.click(&item, in_channel(&menu, "Copy webhook URL")?)
            .await?;
        let url = format!("{base}/webhook/{CHANNEL}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let pasted = loop {
            let got = tokio::task::spawn_blocking(x11::clipboard_text).await??;
            if got.as_deref() == Some(url.as_str()) || tokio::time::Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        anyhow::ensure!(
            pasted.as_deref() == Some(url.as_str()),
            "clipboard: {pasted:?}, not {url}"
        );

        // "Start at login" in the light image writes the login entry the app's autostart
        // plugin writes (the app's binary, --minimized) and saves the setting.
        let entry = home.join(".config/autostart/Webhook Connect.desktop");
        anyhow::ensure!(!entry.exists(), "a login entry before it was asked for");
        let login_checked =
            |m: &tray::Node| m.find(&|l| l == "Start at login").and_then(|n| n.toggle);
        let menu = tray.menu(&item).await?;
        let login = menu.id_of("Start at login")?;
        tray.click(&item, login).await?;
        tray.wait_menu(
            &item,
            "Start at login checked",
            Duration::from_secs(10),
            |m| login_checked(m) == Some(true),
        )
        .await?;
        wait_until(Duration::from_secs(10), "the login entry", || async {
            entry.exists()
        })
        .await?;
        let text = std::fs::read_to_string(&entry)?;
        let exec = text
            .lines()
            .find(|l| l.starts_with("Exec="))
            .unwrap_or_default();
        anyhow::ensure!(
            exec.contains(&*app.canonicalize()?.to_string_lossy()) && exec.contains("--minimized"),
            "login entry: {text}"
        );
        let saved = std::fs::read_to_string(&settings_path)?;
        anyhow::ensure!(saved.contains("autostart = true"), "{saved}");

        // "Open Webhook Connect" in the light image's tray hands back to the app (same pid),
        // which opens its window and takes the history back.
        let menu = tray.menu(&item).await?;
        let open = menu.id_of("Open Webhook Connect")?;
        let registered = tray.registrations();
        tray.click(&item, open).await?;
        back_in_app(2).await?;

        // The app's tray shows the setting the light image saved; unchecking it there removes
        // the login entry.
        let item = tray
            .item_of(app_pid, registered, Duration::from_secs(20))
            .await
            .context("the app's tray item after the hand-back")?;
        let menu = tray
            .wait_menu(
                &item,
                "Start at login checked in the app",
                Duration::from_secs(10),
                |m| login_checked(m) == Some(true),
            )
            .await?;
        tray.click(&item, menu.id_of("Start at login")?).await?;
        tray.wait_menu(
            &item,
            "Start at login unchecked",
            Duration::from_secs(10),
            |m| login_checked(m) == Some(false),
        )
        .await?;
        wait_until(
            Duration::from_secs(10),
            "the login entry removed",
            || async { !entry.exists() },
        )
        .await?;

        // Closed once more, this time as a window manager closes it (WM_DELETE_WINDOW: the
        // WebDriver session ended with the first image), back to the light image...
        let registered = tray.registrations();
        let closed = x11::close_windows_of(app_pid)?;
        assert_eq!(closed, 1, "the app's mapped windows");
        in_light(3).await?;
        tray.item_of(app_pid, registered, Duration::from_secs(20))
            .await
            .context("the light image's tray item, second time")?;
        let _ = cloud.post(&json!({"light": 2})).await?;
        let reqs = target.wait_for_count(8, Duration::from_secs(20)).await?;
        assert_eq!(reqs[7].body_text(), r#"{"light":2}"#);

        // ...and launched again: the app asks the running light image (single instance: it
        // holds the app's D-Bus name) for the window; the light image hands back to the app,
        // which opens the window and takes the history over once more.
        let registered = tray.registrations();
        let second = Command::new(&app)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &config_home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("WEBKIT_DISABLE_COMPOSITING_MODE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        assert!(second.success(), "second launch: {second}");
        back_in_app(4).await?;
        // Forwarding goes on in the app.
        let _ = cloud.post(&json!({"back": true})).await?;
        let reqs = target.wait_for_count(9, Duration::from_secs(20)).await?;
        assert_eq!(reqs[8].body_text(), r#"{"back":true}"#);
        eprintln!("four hand-overs done: close_window, tray, WM_DELETE_WINDOW, second launch");
        // Both images name their notifications alike, and a failure told once is not told again
        // by the next image (the carried history is a baseline).
        let all = notifications.all();
        for n in &all {
            eprintln!("notification: {n:?}");
        }
        anyhow::ensure!(
            all.iter().all(|n| n.app_name == "Webhook Connect"),
            "{all:?}"
        );
        anyhow::ensure!(
            all.iter()
                .filter(|n| n.summary == "alpha: target failing")
                .count()
                == 1,
            "the target's failure told again after a hand-over: {all:?}"
        );

        // "Quit" in the tray ends the app: the process exits and the cloud sees the link close.
        let item = tray
            .item_of(app_pid, registered, Duration::from_secs(20))
            .await
            .context("the app's tray item after the second launch")?;
        let menu = tray.menu(&item).await?;
        let quit = menu.id_of("Quit")?;
        tray.click(&item, quit).await?;
        // Until its parent reaps it, an ended process is a zombie.
        let running = || {
            std::fs::read_to_string(format!("/proc/{app_pid}/stat"))
                .ok()
                .and_then(|st| st.rsplit(')').next().map(|r| r.trim_start().to_owned()))
                .is_some_and(|r| !r.starts_with('Z'))
        };
        wait_until(Duration::from_secs(20), "the app to quit", || async {
            !running()
        })
        .await?;
        wait_until(
            Duration::from_secs(15),
            "the link to close at the cloud",
            no_links,
        )
        .await?;
        Ok(())
    }
    .await;
    if result.is_err() {
        driver::failure_screenshot(&s, "add-channel").await;
        eprintln!("cloud stderr:\n{}", cloud.proc.stderr_text());
        eprintln!("app log:\n{}", driver.app_log());
    }
    driver.stop(Some(&s)).await;
    cloud.proc.kill9();
    result
}

async fn admin_get(http: &reqwest::Client, base: &str, path: &str) -> Result<(u16, Value)> {
    let r = http
        .get(format!("{base}/admin/webhook-connect{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}
