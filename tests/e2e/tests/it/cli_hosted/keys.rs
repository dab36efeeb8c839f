//! Where the key is kept (key file, OS keyring, never echoed) and the exit codes when it is
//! missing, refused or unsafe.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use connect_testkit::{Cloud, free_port, workspace_bin};
use serde_json::json;

use super::{Machine, WAIT, admin_account, hosted_cloud, login};

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
