//! The UI's browser tests against the real app core: the built UI in headless Chromium
//! (`ui/tests/browser/run.mjs`, its "real backend" cases, in order against one core) with its
//! IPC sent over HTTP to this test's `Core` (real engine, real Secret Service of the test's
//! session) instead of the fake backend, the channel connecting to a real cloud. A webhook is
//! queued at the cloud before, for a target answering 404: it becomes the event the inspector
//! replays and the dead letter the dead-letter view deletes. What the views show — the channel's
//! key, state, webhook URL, the event, the replay's outcome, the dead letter, the settings read
//! back — comes from the core and the cloud, and the test checks them afterwards.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use connect_engine::api::LinkState;
use connect_testkit::secret_service::isolated;
use connect_testkit::{RecordingTarget, wait_until};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use webhook_connect_app::core::Core;
use webhook_connect_app::error::CommandError;
use webhook_connect_app::secrets::KeyringStore;
use webhook_connect_app::settings;

use crate::harness::{ADMIN, CHANNEL, Cloud, TOKEN};

type Answer = Result<Value, CommandError>;

fn arg<T: DeserializeOwned>(args: &Value, name: &str) -> Result<T, CommandError> {
    serde_json::from_value(args.get(name).cloned().unwrap_or(Value::Null))
        .map_err(|e| CommandError::new("invalid_input", format!("argument {name}: {e}")))
}

fn ok<T: Serialize>(v: T) -> Answer {
    serde_json::to_value(v).map_err(|e| CommandError::new("internal", e.to_string()))
}

/// The commands the older views call, with the arguments of the Tauri shell's commands
/// (desktop/app/src/shell.rs), answered by the core alone.
async fn dispatch(core: &Core, cmd: &str, a: &Value) -> Answer {
    match cmd {
        "get_snapshot" => ok(core.snapshot()),
        "list_channels" => ok(core.list_channels()),
        "save_channel" => ok(core.save_channel(arg(a, "input")?)?),
        "remove_channel" => {
            let at_cloud: Option<bool> = arg(a, "delete_at_cloud")?;
            let key: String = arg(a, "key")?;
            ok(core.remove_channel(&key, at_cloud.unwrap_or(false)).await?)
        }
        "set_channel_enabled" => {
            let key: String = arg(a, "key")?;
            ok(core.set_channel_enabled(&key, arg(a, "enabled")?)?)
        }
        "set_paused" => {
            core.set_paused(arg(a, "paused")?);
            ok(())
        }
        "list_accounts" => ok(core.accounts()),
        "list_events" => ok(core.list_events(&arg::<String>(a, "key")?)?),
        "get_event" => {
            let key: String = arg(a, "key")?;
            ok(core.get_event(&key, &arg::<String>(a, "message_id")?)?)
        }
        "replay_event" => ok(core.replay_event(arg(a, "request")?).await?),
        "replay_dead_letter" | "delete_dead_letter" => {
            let key: String = arg(a, "key")?;
            let id: String = arg(a, "message_id")?;
            if cmd == "replay_dead_letter" {
                ok(core.replay_dead_letter(&key, &id).await?)
            } else {
                ok(core.delete_dead_letter(&key, &id).await?)
            }
        }
        "purge_dead_letters" => ok(core.purge_dead_letters(&arg::<String>(a, "key")?).await?),
        "list_dead_letters" => {
            let key: String = arg(a, "key")?;
            ok(core
                .list_dead_letters(&key, arg(a, "limit")?, arg(a, "offset")?)
                .await?)
        }
        "get_settings" => ok(core.settings()),
        "save_settings" => ok(core.save_settings(arg(a, "settings")?)?),
        "take_pending_view" => ok(Option::<()>::None),
        other => Err(CommandError::new(
            "internal",
            format!("{other} is not served by the test bridge"),
        )),
    }
}

/// `POST /invoke/<command>` with the arguments as JSON (sent as text/plain: no CORS preflight).
async fn invoke(
    State(core): State<Arc<Core>>,
    UrlPath(cmd): UrlPath<String>,
    body: Bytes,
) -> Response {
    let args: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, v) = match dispatch(&core, &cmd, &args).await {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            json!({"code": e.code, "message": e.message}),
        ),
    };
    (
        status,
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        axum::Json(v),
    )
        .into_response()
}

#[test]
fn the_channel_form_and_settings_views_against_the_real_core() -> Result<()> {
    isolated(|_| async {
        let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui");
        ensure!(
            ui.join("dist/index.html").is_file() && ui.join("node_modules").is_dir(),
            "the UI is not built: cd ui && npm ci && npm run build"
        );
        let cloud = Cloud::start().await?;
        let target = RecordingTarget::start().await?;
        let other = RecordingTarget::start().await?;
        // Refused for good (404: no retry): a dead letter once the UI's channel takes it.
        target.set_status(404);
        let queued = cloud.post(&json!({"queued": "before the UI"})).await?;
        let dir = tempfile::tempdir()?;
        let store = KeyringStore::new();
        let core = Arc::new(
            Core::start(dir.path().join(settings::FILE_NAME), store.clone())
                .map_err(anyhow::Error::msg)?,
        );
        let app = Router::new()
            .route("/invoke/{cmd}", post(invoke))
            .with_state(core.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let bridge = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let run = tokio::process::Command::new("node")
            .args(["tests/browser/run.mjs", "real backend:"])
            .current_dir(&ui)
            .env("REAL_BACKEND_URL", &bridge)
            .env("REAL_CLOUD_URL", &cloud.base)
            .env("REAL_CHANNEL", CHANNEL)
            .env("REAL_TOKEN", TOKEN)
            .env("REAL_ADMIN_TOKEN", ADMIN)
            .env("REAL_TARGET_URL", format!("{}/from-ui", target.url))
            .env("REAL_OTHER_URL", format!("{}/replayed", other.url))
            .env("REAL_MESSAGE_ID", &queued)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .context("the browser run did not finish in 120 s")??;
        server.abort();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{stdout}");
        eprintln!("{stderr}");
        ensure!(
            out.status.success(),
            "browser run failed: {stdout}\n{stderr}"
        );
        ensure!(stdout.contains("3 passed, 0 failed"), "{stdout}");

        // What the UI did is in the core: the channel, connected, its token in the keyring;
        // the settings saved to the file.
        let channels = core.list_channels();
        ensure!(channels.len() == 1, "{}", serde_json::to_string(&channels)?);
        ensure!(channels[0].channel == CHANNEL && channels[0].has_token);
        ensure!(store.unavailable().is_none());
        ensure!(core.settings().history_size == 500);
        let file = std::fs::read_to_string(dir.path().join(settings::FILE_NAME))?;
        ensure!(file.contains("history_size = 500"), "{file}");
        ensure!(!file.contains(TOKEN), "{file}");
        // The inspector's replay went to the edited target, with the webhook's body.
        let replayed = other.wait_for_count(1, Duration::from_secs(5)).await?;
        ensure!(replayed[0].body_text().contains("before the UI"));
        ensure!(replayed[0].header("x-webhook-message-id") == Some(queued.as_str()));
        // The dead letter the UI deleted is gone at the cloud.
        let key = channels[0].key.clone();
        let left = core
            .list_dead_letters(&key, 10, 0)
            .await
            .map_err(anyhow::Error::msg)?;
        ensure!(left.total == 0, "dead letters left: {}", left.total);
        // A webhook posted now reaches the target the form set.
        target.set_status(200);
        cloud.post(&json!({"via": "the form"})).await?;
        let got = target.wait_for_count(2, Duration::from_secs(20)).await?;
        let last = got.last().context("a request")?;
        ensure!(last.path == "/from-ui", "{}", last.path);
        wait_until(
            Duration::from_secs(20),
            "the channel connected and the delivery counted",
            || async {
                let c = &core.snapshot().channels[0];
                c.state == LinkState::Connected && c.counters.delivered >= 1
            },
        )
        .await?;
        core.shutdown().await;
        Ok(())
    })
}
