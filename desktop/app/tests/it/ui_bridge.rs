//! The test bridge of the UI's "real backend" browser cases (`ui/tests/browser/cases-real*.mjs`):
//! the built UI in headless Chromium with its IPC sent over HTTP to this bridge, which answers
//! every command the views call with the real app core (`Core`: real engine, real Secret Service
//! of the test's session) instead of the fake backend. Two test-only routes let a case steer and
//! read the recording targets the core forwards to.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use connect_testkit::RecordingTarget;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use webhook_connect_app::core::Core;
use webhook_connect_app::error::CommandError;

type Answer = Result<Value, CommandError>;

fn arg<T: DeserializeOwned>(args: &Value, name: &str) -> Result<T, CommandError> {
    serde_json::from_value(args.get(name).cloned().unwrap_or(Value::Null))
        .map_err(|e| CommandError::new("invalid_input", format!("argument {name}: {e}")))
}

fn ok<T: Serialize>(v: T) -> Answer {
    serde_json::to_value(v).map_err(|e| CommandError::new("internal", e.to_string()))
}

/// The commands the views call, with the arguments of the Tauri shell's commands
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
        "list_accounts" => ok(core.accounts()),
        "sign_in" => ok(core.sign_in(arg(a, "input")?).await?),
        "create_account" => ok(core.create_account(arg(a, "input")?).await?),
        "sign_out" => ok(core.sign_out(&arg::<String>(a, "cloud_url")?).await?),
        "list_remote_channels" => ok(core
            .remote_channels(&arg::<String>(a, "cloud_url")?)
            .await?),
        "create_channel" => ok(core.create_channel(arg(a, "input")?).await?),
        "use_remote_channel" => {
            let cloud: String = arg(a, "cloud_url")?;
            let channel: String = arg(a, "channel")?;
            let target: String = arg(a, "target_url")?;
            ok(core.use_remote_channel(&cloud, &channel, &target).await?)
        }
        "set_channel_enabled" => {
            let key: String = arg(a, "key")?;
            ok(core.set_channel_enabled(&key, arg(a, "enabled")?)?)
        }
        "set_paused" => {
            core.set_paused(arg(a, "paused")?);
            ok(())
        }
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

struct Served {
    core: Arc<Core>,
    /// The recording targets, by index (`REAL_TARGET_URL` is 0, `REAL_OTHER_URL` 1).
    targets: Vec<Arc<RecordingTarget>>,
}

fn cors(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        axum::Json(v),
    )
        .into_response()
}

/// `POST /invoke/<command>` with the arguments as JSON (sent as text/plain: no CORS preflight);
/// answers `{"ok": <value>}` or `{"error": {"code", "message"}}`.
async fn invoke(
    State(s): State<Arc<Served>>,
    UrlPath(cmd): UrlPath<String>,
    body: Bytes,
) -> Response {
    let args: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // A refusal is an answer (200), so the browser logs no failed request in the page.
    match dispatch(&s.core, &cmd, &args).await {
        Ok(v) => cors(StatusCode::OK, json!({ "ok": v })),
        Err(e) => cors(
            StatusCode::OK,
            json!({"error": {"code": e.code, "message": e.message}}),
        ),
    }
}

fn unknown_target(i: usize) -> Response {
    cors(StatusCode::NOT_FOUND, json!({"unknown target": i}))
}

/// Test-only: `POST /test/target/<i>/status/<code>`: target `i` answers `code` from now on.
async fn set_status(
    State(s): State<Arc<Served>>,
    UrlPath((i, code)): UrlPath<(usize, u16)>,
) -> Response {
    let Some(t) = s.targets.get(i) else {
        return unknown_target(i);
    };
    t.set_status(code);
    cors(StatusCode::OK, json!(null))
}

/// Test-only: `GET /test/target/<i>/requests`: what target `i` received, in order.
async fn requests(State(s): State<Arc<Served>>, UrlPath(i): UrlPath<usize>) -> Response {
    let Some(t) = s.targets.get(i) else {
        return unknown_target(i);
    };
    let all: Vec<Value> = t
        .requests()
        .iter()
        .map(|r| json!({"path": r.path, "body": r.body_text(), "headers": r.headers}))
        .collect();
    cors(StatusCode::OK, Value::Array(all))
}

/// The bridge, serving on a loopback port until dropped.
pub struct Bridge {
    pub url: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Bridge {
    pub async fn start(core: Arc<Core>, targets: Vec<Arc<RecordingTarget>>) -> Result<Self> {
        let app = Router::new()
            .route("/invoke/{cmd}", post(invoke))
            .route("/test/target/{i}/status/{code}", post(set_status))
            .route("/test/target/{i}/requests", get(requests))
            .with_state(Arc::new(Served { core, targets }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, server })
    }
}

/// The UI's directory, checked to be built.
pub fn ui_dir() -> Result<PathBuf> {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui");
    ensure!(
        ui.join("dist/index.html").is_file() && ui.join("node_modules").is_dir(),
        "the UI is not built: cd ui && npm ci && npm run build"
    );
    Ok(ui)
}

/// Runs the browser cases whose names contain `filter` (`node tests/browser/run.mjs`) with
/// `REAL_BACKEND_URL` = the bridge and `env`; fails unless all `expected` of them passed.
pub async fn run_cases(
    bridge: &Bridge,
    filter: &str,
    expected: usize,
    env: &[(&str, String)],
) -> Result<String> {
    let mut cmd = tokio::process::Command::new("node");
    cmd.args(["tests/browser/run.mjs", filter])
        .current_dir(ui_dir()?)
        .env("REAL_BACKEND_URL", &bridge.url)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .context("the browser run did not finish in 300 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    ensure!(
        out.status.success(),
        "browser run failed: {stdout}\n{stderr}"
    );
    ensure!(
        stdout.contains(&format!("{expected} passed, 0 failed")),
        "{stdout}"
    );
    Ok(stdout)
}
