//! The CLI's self-service commands (HOSTED.md §4) as a developer runs them: the real
//! `webhook-connect` binary against the real cloud in `open` self-service mode, from a machine
//! with no prior configuration (a fresh HOME and XDG directories, no keyring: the API key lives
//! in a `--key-file`).
//!
//! - `login` + `listen --forward-to` deliver a webhook posted to the printed URL to a local
//!   target byte for byte, one line per webhook, and Ctrl-C exits 0;
//! - `channels create/list/rotate-token/delete` and `dead-letters` (list, replay, replay-all,
//!   delete, purge) with `--json` output that parses as the API's shapes;
//! - the documented exit codes: a refused key 77, not logged in 77, a key file others may read
//!   64, no keyring without `--key-file` 64, an unreachable cloud 69, a missing channel 1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use connect_testkit::{ChildProcess, Cloud, RecordingTarget, free_port, wait_for, workspace_bin};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// A machine with no prior configuration: its own HOME, config and runtime directories.
struct Machine {
    home: tempfile::TempDir,
}

/// What one CLI run left.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "stdout is not JSON:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    fn ok(self) -> Result<Self> {
        ensure!(
            self.code == Some(0),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
}

impl Machine {
    fn new() -> Result<Self> {
        Ok(Self {
            home: tempfile::tempdir()?,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    fn env(&self) -> Vec<(String, String)> {
        let h = self.home.path();
        vec![
            ("HOME".into(), h.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                h.join(".config").display().to_string(),
            ),
            (
                "XDG_RUNTIME_DIR".into(),
                h.join("run").display().to_string(),
            ),
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ]
    }

    /// Runs `webhook-connect args` to its end with `stdin`, in a clean environment (no D-Bus
    /// session, hence no keyring; no `CONNECTOR_*`).
    async fn run(&self, args: &[&str], stdin: &str) -> Result<Run> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(workspace_bin("webhook-connect")?)
            .args(args)
            .env_clear()
            .envs(self.env())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut pipe = child.stdin.take().context("stdin")?;
        pipe.write_all(stdin.as_bytes()).await?;
        drop(pipe);
        let out = tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .with_context(|| format!("webhook-connect {args:?} hung"))??;
        Ok(Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `webhook-connect listen …` left running.
    fn listen(&self, args: &[&str]) -> Result<ChildProcess> {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut all = vec!["listen"];
        all.extend_from_slice(args);
        ChildProcess::spawn(workspace_bin("webhook-connect")?, &all, &env, "listen")
    }
}

async fn hosted_cloud() -> Result<Cloud> {
    Cloud::builder(json!({})).self_service("open").start().await
}

/// Creates account `name` through the admin API (the test kit's helper); its API key.
async fn admin_account(cloud: &Cloud, name: &str) -> Result<String> {
    Ok(cloud.create_account(name, Value::Null).await?.1)
}

/// `login` with `key` on stdin, keeping it in `key_file`.
async fn login(m: &Machine, cloud: &Cloud, key: &str, key_file: &Path) -> Result<Run> {
    m.run(
        &[
            "login",
            "--cloud-url",
            &cloud.base,
            "--key-file",
            key_file.to_str().context("utf-8")?,
        ],
        &format!("{key}\n"),
    )
    .await
}

/// Waits for stdout of `p` to contain `needle`; the stdout then.
async fn wait_stdout(p: &ChildProcess, needle: &str) -> Result<String> {
    wait_for(WAIT, &format!("{needle:?} on listen's stdout"), || async {
        let out = p.stdout_text();
        out.contains(needle).then_some(out)
    })
    .await
    .with_context(|| format!("stdout:\n{}\nstderr:\n{}", p.stdout_text(), p.stderr_text()))
}

/// Ctrl-C, then the exit code once the process ended.
async fn interrupt(p: &mut ChildProcess) -> Result<Option<i32>> {
    let pid = rustix::process::Pid::from_raw(p.pid() as i32).context("pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::INT)?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.is_running() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "listen did not stop on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(p.exit_status().and_then(|s| s.code()))
}

#[tokio::test]
async fn cli_login_then_listen_forwards_a_webhook_byte_for_byte_from_a_fresh_machine() -> Result<()>
{
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "alice").await?;
    let target = RecordingTarget::start().await?;
    let m = Machine::new()?;
    let key_file = m.path("keys/webhook-connect.key");
    let run = login(&m, &cloud, &key, &key_file).await?.ok()?;
    ensure!(run.stdout.contains("alice"), "{}", run.stdout);
    ensure!(
        !run.stdout.contains(&key) && !run.stderr.contains(&key),
        "the key is never printed"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "key file mode {mode:o}");
    }
    // The second command: no --cloud-url, no --key-file: both remembered by login.
    let mut p = m.listen(&["--forward-to", &format!("{}/hooks", target.url)])?;
    let out = wait_stdout(&p, "\n").await?;
    let first = out.lines().next().unwrap_or_default();
    let url = first
        .strip_prefix("Webhook URL: ")
        .with_context(|| format!("the first line is the webhook URL: {out}"))?
        .trim()
        .to_owned();
    ensure!(
        url.starts_with(&format!("{}/webhook/wh_", cloud.base)),
        "{url}"
    );
    let body: Vec<u8> = b"{\"k\": \"h\xc3\xa9llo\",\n \"n\": 1.50e3 }\r\n".to_vec();
    let r = cloud
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", "sha256=abc")
        .body(body.clone())
        .send()
        .await?;
    ensure!(r.status() == 200, "ingress answered {}", r.status());
    let got = target
        .wait_for_count(1, WAIT)
        .await
        .with_context(|| p.stderr_text())?;
    ensure!(got[0].body == body, "byte for byte: {:?}", got[0].body);
    ensure!(got[0].header("x-hub-signature-256") == Some("sha256=abc"));
    ensure!(got[0].header("content-type") == Some("application/json"));
    let out = wait_stdout(&p, "-> 200").await?;
    let line = out
        .lines()
        .find(|l| l.contains("-> 200"))
        .unwrap_or_default();
    ensure!(
        line.contains("POST /webhook/wh_") && line.contains(" ms"),
        "{line}"
    );
    let code = interrupt(&mut p).await?;
    ensure!(
        code == Some(0),
        "Ctrl-C exits 0, got {code:?}\n{}",
        p.stderr_text()
    );
    ensure!(!p.stderr_text().contains(&key) && !p.stdout_text().contains(&key));
    // The channel `listen` made is the account's `dev`, and a second listen reuses it.
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
    let names: Vec<&str> = list["channels"]
        .as_array()
        .context("channels")?
        .iter()
        .filter_map(|c| c["channel"].as_str())
        .collect();
    ensure!(names == ["alice.dev"], "{list}");
    let mut again = m.listen(&["--forward-to", &target.url, "--json"])?;
    let out = wait_stdout(&again, "\n").await?;
    let ready: Value = serde_json::from_str(out.lines().next().unwrap_or_default())?;
    ensure!(
        ready["webhook_url"] == url.as_str() && ready["created"] == false,
        "{ready}"
    );
    ensure!(interrupt(&mut again).await? == Some(0));
    Ok(())
}

#[tokio::test]
async fn cli_channels_and_dead_letters_with_json_output() -> Result<()> {
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "bob").await?;
    let m = Machine::new()?;
    login(&m, &cloud, &key, &m.path("key")).await?.ok()?;
    let who = m.run(&["whoami", "--json"], "").await?.ok()?.json()?;
    ensure!(
        who["name"] == "bob"
            && who["account_id"]
                .as_str()
                .is_some_and(|a| a.starts_with("acc_")),
        "{who}"
    );

    let created = m
        .run(&["channels", "create", "shop", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(created["channel"] == "bob.shop", "{created}");
    let url = created["webhook_url"]
        .as_str()
        .context("webhook_url")?
        .to_owned();
    ensure!(
        created["channel_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{created}"
    );
    let human = m.run(&["channels", "list"], "").await?.ok()?;
    ensure!(
        human.stdout.contains("bob.shop") && human.stdout.contains(&url),
        "{}",
        human.stdout
    );
    let taken = m.run(&["channels", "create", "shop"], "").await?;
    ensure!(
        taken.code == Some(1) && taken.stderr.contains("409"),
        "{}",
        taken.stderr
    );

    // Three webhooks dead-lettered by a target answering 404.
    let target = RecordingTarget::start().await?;
    target.set_status(404);
    for i in 0..3 {
        let r = cloud
            .http
            .post(&url)
            .body(format!("{{\"n\":{i}}}"))
            .send()
            .await?;
        ensure!(r.status() == 200);
    }
    let mut p = m.listen(&["--channel", "shop", "--forward-to", &target.url])?;
    wait_for(WAIT, "three dead-lettered lines", || async {
        (p.stdout_text().matches("(dead-lettered)").count() == 3).then_some(())
    })
    .await
    .with_context(|| p.stdout_text())?;
    ensure!(interrupt(&mut p).await? == Some(0));
    let dl = m
        .run(&["dead-letters", "shop", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(dl["total"] == 3 && dl["channel"] == "bob.shop", "{dl}");
    let ids: Vec<String> = dl["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|v| v["message_id"].as_str().map(str::to_owned))
        .collect();
    ensure!(ids.len() == 3);
    let human = m.run(&["dead-letters", "bob.shop"], "").await?.ok()?;
    ensure!(
        human.stdout.contains(&ids[0]) && human.stdout.contains("HTTP 404"),
        "{}",
        human.stdout
    );

    let del = m
        .run(&["dead-letters", "shop", "--delete", &ids[0], "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(
        del["status"] == "deleted" && del["message_id"] == ids[0].as_str(),
        "{del}"
    );
    let rep = m
        .run(&["dead-letters", "shop", "--replay", &ids[1], "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(rep["status"] == "replayed", "{rep}");
    let all = m
        .run(&["dead-letters", "shop", "--replay-all", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(all["replayed"] == 1 && all["remaining"] == 0, "{all}");
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(
        list["channels"][0]["stats"]["messages_queued"] == 2,
        "{list}"
    );
    // Dead-lettered again, then purged.
    let mut p = m.listen(&["--channel", "shop", "--forward-to", &target.url])?;
    wait_for(WAIT, "two dead-lettered lines", || async {
        (p.stdout_text().matches("(dead-lettered)").count() == 2).then_some(())
    })
    .await
    .with_context(|| p.stdout_text())?;
    ensure!(interrupt(&mut p).await? == Some(0));
    let purged = m
        .run(&["dead-letters", "shop", "--purge", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(purged["deleted"] == 2, "{purged}");
    let gone = m
        .run(&["dead-letters", "shop", "--delete", &ids[1]], "")
        .await?;
    ensure!(
        gone.code == Some(1),
        "a missing dead letter is an error: {:?}",
        gone.code
    );

    let rotated = m
        .run(
            &[
                "channels",
                "rotate-token",
                "shop",
                "--grace-seconds",
                "0",
                "--json",
            ],
            "",
        )
        .await?
        .ok()?
        .json()?;
    ensure!(
        rotated["new_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("ch_tok_")),
        "{rotated}"
    );
    let deleted = m
        .run(&["channels", "delete", "shop", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(deleted["deleted"] == "bob.shop", "{deleted}");
    let r = cloud.http.post(&url).body("{}").send().await?;
    ensure!(
        r.status() == 404,
        "a deleted channel's URL answers 404, got {}",
        r.status()
    );
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(
        list["channels"].as_array().is_some_and(Vec::is_empty),
        "{list}"
    );
    let again = m.run(&["channels", "delete", "shop"], "").await?;
    ensure!(
        again.code == Some(1) && again.stderr.contains("404"),
        "{}",
        again.stderr
    );

    // A provider check: the secret comes from stdin and is never shown again.
    let gh = m
        .run(
            &[
                "channels",
                "create",
                "gh",
                "--verify",
                "github",
                "--secret-stdin",
                "--json",
            ],
            "s3cret-signing\n",
        )
        .await?
        .ok()?;
    ensure!(!gh.stdout.contains("s3cret-signing"), "{}", gh.stdout);
    let gh = gh.json()?;
    ensure!(
        gh["verify"]["preset"] == "github" && gh["verify"]["secret_set"] == true,
        "{gh}"
    );
    let gh_url = gh["webhook_url"].as_str().context("webhook_url")?;
    let body = br#"{"action":"opened"}"#.to_vec();
    let sign = |secret: &[u8]| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(&body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    for (secret, want) in [(&b"wrong"[..], 401), (&b"s3cret-signing"[..], 200)] {
        let r = cloud
            .http
            .post(gh_url)
            .header("x-hub-signature-256", sign(secret))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        ensure!(r.status() == want, "signed with {secret:?}: {}", r.status());
    }
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
    ensure!(
        list["channels"][0]["stats"]["messages_queued"] == 1,
        "only the good one is stored: {list}"
    );
    let bad = m
        .run(
            &[
                "channels",
                "create",
                "x",
                "--verify",
                "gitlab",
                "--secret-stdin",
            ],
            "s\n",
        )
        .await?;
    ensure!(
        bad.code == Some(64) && bad.stderr.contains("github"),
        "{}",
        bad.stderr
    );
    Ok(())
}

#[tokio::test]
async fn cli_exit_codes_for_refused_keys_bad_key_files_and_no_cloud() -> Result<()> {
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "carol").await?;
    let m = Machine::new()?;

    // Not logged in anywhere yet.
    let r = m.run(&["whoami"], "").await?;
    ensure!(
        r.code == Some(77),
        "not logged in: {:?} {}",
        r.code,
        r.stderr
    );

    // A key the cloud refuses: 77, and nothing stored.
    let key_file = m.path("key");
    let r = login(&m, &cloud, "whc_not-a-real-key", &key_file).await?;
    ensure!(r.code == Some(77), "refused key: {:?} {}", r.code, r.stderr);
    ensure!(!key_file.exists(), "a refused key is not stored");
    ensure!(!r.stderr.contains("whc_not-a-real-key"), "{}", r.stderr);

    // No keyring on this machine and no --key-file: refused before anything is stored.
    let r = m
        .run(&["login", "--cloud-url", &cloud.base], &format!("{key}\n"))
        .await?;
    ensure!(r.code == Some(64), "no keyring: {:?} {}", r.code, r.stderr);
    ensure!(r.stderr.contains("--key-file"), "{}", r.stderr);

    // A key file others may read is refused.
    std::fs::write(&key_file, format!("{key}\n"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644))?;
    }
    let kf = key_file.to_str().context("utf-8")?;
    let r = m
        .run(
            &["whoami", "--cloud-url", &cloud.base, "--key-file", kf],
            "",
        )
        .await?;
    ensure!(
        r.code == Some(64),
        "0644 key file: {:?} {}",
        r.code,
        r.stderr
    );
    ensure!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
    }
    let r = m
        .run(
            &["whoami", "--cloud-url", &cloud.base, "--key-file", kf],
            "",
        )
        .await?
        .ok()?;
    ensure!(r.stdout.contains("carol"), "{}", r.stdout);

    // A cloud without self-service: said so, exit 1.
    let plain = Cloud::start(json!({})).await?;
    let r = m
        .run(
            &["whoami", "--cloud-url", &plain.base, "--key-file", kf],
            "",
        )
        .await?;
    ensure!(
        r.code == Some(1) && r.stderr.contains("does not offer self-service"),
        "self-service off: {:?} {}",
        r.code,
        r.stderr
    );

    // A cloud nobody answers at: 69.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let r = m
        .run(&["whoami", "--cloud-url", &dead, "--key-file", kf], "")
        .await?;
    ensure!(r.code == Some(69), "unreachable: {:?} {}", r.code, r.stderr);

    // Logged in, then the key is rotated by the operator: 77 at once.
    login(&m, &cloud, &key, &key_file).await?.ok()?;
    let who = m.run(&["whoami", "--json"], "").await?.ok()?.json()?;
    let id = who["account_id"].as_str().context("account_id")?;
    let (s, v) = cloud
        .admin(reqwest::Method::POST, &format!("/accounts/{id}/rotate-key"))
        .await?;
    ensure!(s == 200, "{v}");
    let r = m.run(&["whoami"], "").await?;
    ensure!(r.code == Some(77), "rotated key: {:?} {}", r.code, r.stderr);

    // Open sign-up from the CLI, then logout forgets the key.
    let m2 = Machine::new()?;
    let kf2 = m2.path("k");
    let r = m2
        .run(
            &[
                "login",
                "--cloud-url",
                &cloud.base,
                "--create-account",
                "--name",
                "dave",
                "--key-file",
                kf2.to_str().context("utf-8")?,
                "--json",
            ],
            "",
        )
        .await?
        .ok()?;
    let v = r.json()?;
    ensure!(
        v["created"] == true && v["account"]["name"] == "dave",
        "{v}"
    );
    ensure!(
        !r.stdout.contains("whc_"),
        "the key is never printed: {}",
        r.stdout
    );
    m2.run(&["whoami"], "").await?.ok()?;
    m2.run(&["logout"], "").await?.ok()?;
    ensure!(!kf2.exists(), "logout deletes the key file");
    let r = m2.run(&["whoami"], "").await?;
    ensure!(
        r.code == Some(77),
        "after logout: {:?} {}",
        r.code,
        r.stderr
    );
    Ok(())
}

/// `listen` ends by itself when it cannot go on: the key rotated by the operator (the cloud
/// closes the link with 4005) exits 77, the channel deleted (4006) exits 1.
#[tokio::test]
async fn cli_listen_ends_with_77_on_a_rotated_key_and_1_on_a_deleted_channel() -> Result<()> {
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "erin").await?;
    let target = RecordingTarget::start().await?;
    let m = Machine::new()?;
    let key_file = m.path("key");
    login(&m, &cloud, &key, &key_file).await?.ok()?;
    let id = m.run(&["whoami", "--json"], "").await?.ok()?.json()?["account_id"]
        .as_str()
        .context("account_id")?
        .to_owned();
    let mut p = m.listen(&["--forward-to", &target.url])?;
    wait_for(WAIT, "connected", || async {
        p.stderr_text().contains("connected (").then_some(())
    })
    .await
    .with_context(|| p.stderr_text())?;
    let (s, v) = cloud
        .admin(reqwest::Method::POST, &format!("/accounts/{id}/rotate-key"))
        .await?;
    ensure!(s == 200, "{v}");
    let new_key = v["api_key"].as_str().context("api_key")?.to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.is_running() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "listen kept running with a rotated key:\n{}",
            p.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let code = p.exit_status().and_then(|s| s.code());
    ensure!(
        code == Some(77),
        "rotated key: {code:?}\n{}",
        p.stderr_text()
    );

    login(&m, &cloud, &new_key, &key_file).await?.ok()?;
    let mut p = m.listen(&["--forward-to", &target.url])?;
    wait_for(WAIT, "connected", || async {
        p.stderr_text().contains("connected (").then_some(())
    })
    .await
    .with_context(|| p.stderr_text())?;
    m.run(&["channels", "delete", "dev"], "").await?.ok()?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.is_running() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "listen kept running on a deleted channel:\n{}",
            p.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let code = p.exit_status().and_then(|s| s.code());
    ensure!(
        code == Some(1),
        "deleted channel: {code:?}\n{}",
        p.stderr_text()
    );
    Ok(())
}

/// The default place for the key: a real Secret Service (gnome-keyring in a private D-Bus
/// session, a throwaway HOME). `login` stores it under service `webhook-connect`, account
/// `api-key:<cloud url>`; `whoami` reads it; `logout` removes it.
#[tokio::test]
async fn cli_login_keeps_the_key_in_the_os_keyring() -> Result<()> {
    for tool in ["dbus-run-session", "gnome-keyring-daemon", "secret-tool"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()?
            .status
            .success();
        ensure!(
            found,
            "{tool} is not installed (apt-get install dbus gnome-keyring libsecret-tools)"
        );
    }
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "frank").await?;
    let m = Machine::new()?;
    let bin = workspace_bin("webhook-connect")?;
    let bin = bin.to_str().context("utf-8")?;
    let script = format!(
        "echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 70\n\
         printf '%s\\n' \"$KEY\" | {bin} login --cloud-url {cloud}/ || exit 71\n\
         echo \"stored=$(secret-tool lookup service webhook-connect username api-key:{cloud})\"\n\
         {bin} whoami || exit 72\n\
         {bin} logout || exit 73\n\
         echo \"after=$(secret-tool lookup service webhook-connect username api-key:{cloud})\"\n\
         {bin} whoami; echo \"whoami-after-logout=$?\"",
        cloud = cloud.base,
    );
    let mut env = m.env();
    env.retain(|(k, _)| k != "XDG_RUNTIME_DIR");
    env.push(("KEY".into(), key.clone()));
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("dbus-run-session")
            .args(["--", "bash", "-c", &script])
            .env_clear()
            .envs(env)
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    ensure!(stdout.contains(&format!("stored={key}")), "{stdout}");
    ensure!(
        stdout.contains("frank ("),
        "whoami read the key from the keyring: {stdout}"
    );
    ensure!(stdout.contains("after=\n"), "logout removed it: {stdout}");
    ensure!(
        stdout.contains("whoami-after-logout=77"),
        "{stdout}\n{stderr}"
    );
    ensure!(
        stdout.matches(key.as_str()).count() == 1,
        "the key shows only where the test itself printed it: {stdout}"
    );
    ensure!(!stderr.contains(&key), "{stderr}");
    Ok(())
}

/// Typed or pasted at a terminal, the key is not echoed: `login` on a pseudo-terminal (util-linux
/// `script`), the key written only once the prompt showed, and the terminal's transcript checked.
#[tokio::test]
async fn cli_login_at_a_terminal_does_not_echo_the_key() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "gina").await?;
    let m = Machine::new()?;
    let bin = workspace_bin("webhook-connect")?;
    let cmd = format!(
        "{} login --cloud-url {} --key-file {}",
        bin.display(),
        cloud.base,
        m.path("key").display()
    );
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_clear()
        .envs(m.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("util-linux `script` (apt-get install util-linux)")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("(not shown): ") {
            let n = stdout.read(&mut buf).await?;
            ensure!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        Ok(())
    })
    .await??;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(format!("{key}\n").as_bytes()).await?;
    stdout.read_to_end(&mut seen).await?;
    let status = tokio::time::timeout(WAIT, child.wait()).await??;
    let transcript = String::from_utf8_lossy(&seen);
    ensure!(status.success(), "{status:?}: {transcript}");
    ensure!(transcript.contains("logged in as gina"), "{transcript}");
    ensure!(
        !transcript.contains(&key),
        "the key was echoed: {transcript}"
    );
    Ok(())
}

/// Ctrl-C while a delivery is at the target: `listen` waits for the target's answer, prints its
/// line, ACKs it (nothing is left queued or in flight at the cloud) and exits 0.
#[tokio::test]
async fn cli_listen_settles_a_running_delivery_on_ctrl_c() -> Result<()> {
    let cloud = hosted_cloud().await?;
    let key = admin_account(&cloud, "jo").await?;
    let target = RecordingTarget::start().await?;
    target.set_delay(Duration::from_secs(2));
    let m = Machine::new()?;
    login(&m, &cloud, &key, &m.path("key")).await?.ok()?;
    let mut p = m.listen(&["--forward-to", &target.url, "--json"])?;
    let out = wait_stdout(&p, "\n").await?;
    let ready: Value = serde_json::from_str(out.lines().next().unwrap_or_default())?;
    let url = ready["webhook_url"].as_str().context("webhook_url")?;
    let r = cloud.http.post(url).body("{\"slow\":true}").send().await?;
    ensure!(r.status() == 200);
    // The target has the request and holds its answer for 2 s: interrupt now.
    target.wait_for_count(1, WAIT).await?;
    let code = interrupt(&mut p).await?;
    ensure!(code == Some(0), "{code:?}\n{}", p.stderr_text());
    let line = p
        .stdout_text()
        .lines()
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("no delivery line: {}", p.stdout_text()))?;
    let d: Value = serde_json::from_str(&line)?;
    ensure!(d["status"] == 200 && d["outcome"] == "delivered", "{d}");
    ensure!(
        d["latency_ms"].as_f64().is_some_and(|ms| ms >= 2000.0),
        "{d}"
    );
    let list = m
        .run(&["channels", "list", "--json"], "")
        .await?
        .ok()?
        .json()?;
    let stats = &list["channels"][0]["stats"];
    ensure!(
        stats["messages_queued"] == 0
            && stats["messages_in_flight"] == 0
            && stats["messages_acked"] == 1,
        "settled at the cloud: {list}"
    );
    ensure!(target.count() == 1, "delivered once");
    Ok(())
}
