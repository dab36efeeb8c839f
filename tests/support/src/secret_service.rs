//! A real, isolated Secret Service: the test's own `dbus-daemon` session bus and an unlocked
//! `gnome-keyring-daemon` on it, with a throwaway `HOME`; both are our children (no forking),
//! killed by pid on drop, and [`SecretService::shutdown`] checks that nothing the test started
//! in the session outlived it.
//!
//! Two ways to use it:
//! - Child processes (the CLI, a connector): [`SecretService::start`], then spawn with
//!   [`SecretService::env`].
//! - Code in the test's own process (the app's `KeyringStore`): the `keyring` crate finds the
//!   bus through `DBUS_SESSION_BUS_ADDRESS`, which a running test cannot safely set for itself.
//!   [`isolated`] runs the test again as a child process of itself, inside a fresh session, and
//!   hands the body a [`Session`] for checking the keyring from outside (`secret-tool`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::process::{ChildProcess, ensure_no_survivors};

/// Set in the re-run child: the session's directory (its `HOME` is `<dir>/home`).
const MARKER: &str = "CONNECT_TESTKIT_SECRET_SERVICE";
/// The keyring crate's and the CLI's service name (CONFIG.md §8.2).
pub const SERVICE: &str = "webhook-connect";
/// How long the re-run test may take before it is killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(170);
const STARTUP: Duration = Duration::from_secs(15);

/// `dbus-daemon` + `gnome-keyring-daemon`, ours alone.
pub struct SecretService {
    keyring: Option<ChildProcess>,
    bus: Option<ChildProcess>,
    session: Session,
    _dir: TempDir,
}

/// Where a session lives: enough to reach it from any process.
#[derive(Debug, Clone)]
pub struct Session {
    dir: PathBuf,
    address: String,
}

impl SecretService {
    /// Starts the bus, then the keyring daemon with its login collection created and unlocked,
    /// and waits until the Secret Service's name is owned on the bus.
    pub fn start() -> Result<Self> {
        for (tool, package) in [
            ("dbus-daemon", "dbus"),
            ("gnome-keyring-daemon", "gnome-keyring"),
            ("dbus-send", "dbus"),
            ("secret-tool", "libsecret-tools"),
        ] {
            crate::find_program(tool, package)?;
        }
        let dir = tempfile::Builder::new()
            .prefix("testkit-secret-service-")
            .tempdir()?;
        for sub in ["home", "run", "data", "config"] {
            private_dir(&dir.path().join(sub))?;
        }
        let session = Session {
            dir: dir.path().to_owned(),
            address: format!("unix:path={}", dir.path().join("bus").display()),
        };
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&session.address))?;
        let env = session.env();
        let env_refs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut bus = ChildProcess::spawn(
            "dbus-daemon",
            &[
                "--nofork",
                "--nopidfile",
                &format!("--config-file={}", config.display()),
            ],
            &env_refs,
            "dbus-daemon",
        )?;
        wait_ready(&mut bus, || session.bus_answers())?;
        let mut keyring = ChildProcess::spawn_with_stdin(
            "gnome-keyring-daemon",
            &["--foreground", "--unlock", "--components=secrets"],
            &env,
            "gnome-keyring-daemon",
            b"testkit-keyring-password",
        )?;
        wait_ready(&mut keyring, || session.secrets_owned())?;
        Ok(Self {
            keyring: Some(keyring),
            bus: Some(bus),
            session,
            _dir: dir,
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The variables that put a child process in this session (bus, `HOME`, XDG dirs).
    pub fn env(&self) -> Vec<(String, String)> {
        self.session.env()
    }

    /// Kills the daemons, then fails if any process started with this session's bus address or
    /// `HOME` is still running (a connector or daemon the test leaked).
    pub fn shutdown(mut self) -> Result<()> {
        self.stop();
        ensure_no_survivors(
            "DBUS_SESSION_BUS_ADDRESS",
            &self.session.address,
            Duration::from_secs(5),
        )?;
        ensure_no_survivors("HOME", &self.session.home_str(), Duration::from_secs(5))
    }

    fn stop(&mut self) {
        // The keyring first: it would otherwise log the bus going away.
        if let Some(mut k) = self.keyring.take() {
            k.kill9();
        }
        if let Some(mut b) = self.bus.take() {
            b.kill9();
        }
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Session {
    /// The session this process was re-run in by [`isolated`], if any.
    pub fn current() -> Option<Self> {
        let dir = PathBuf::from(std::env::var_os(MARKER)?);
        let address = std::env::var("DBUS_SESSION_BUS_ADDRESS").ok()?;
        Some(Self { dir, address })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    fn home_str(&self) -> String {
        self.home().display().to_string()
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let d = |s: &str| self.dir.join(s).display().to_string();
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone()),
            ("HOME".into(), self.home_str()),
            ("XDG_RUNTIME_DIR".into(), d("run")),
            ("XDG_DATA_HOME".into(), d("data")),
            ("XDG_CONFIG_HOME".into(), d("config")),
            (MARKER.into(), self.dir.display().to_string()),
        ]
    }

    fn tool(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_remove("DISPLAY").envs(self.env());
        c
    }

    /// The secret stored under `account` (service `webhook-connect`), read with `secret-tool`:
    /// from outside the code under test, as another program on the desktop would.
    pub fn lookup(&self, account: &str) -> Result<Option<String>> {
        let out = self
            .tool("secret-tool")
            .args(["lookup", "service", SERVICE, "username", account])
            .output()?;
        // `lookup` exits 1 with no output when nothing matches.
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            ensure!(err.trim().is_empty(), "secret-tool lookup: {err}");
            return Ok(None);
        }
        Ok(Some(String::from_utf8(out.stdout)?))
    }

    /// Every account stored under service `webhook-connect`, sorted.
    pub fn accounts(&self) -> Result<Vec<String>> {
        let out = self
            .tool("secret-tool")
            .args(["search", "--all", "service", SERVICE])
            .output()?;
        // Attributes are printed on stderr, one `attribute.username = <account>` per item.
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let mut accounts: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("attribute.username = "))
            .map(str::to_owned)
            .collect();
        accounts.sort();
        Ok(accounts)
    }

    /// Stores `secret` under `account` with `secret-tool`, as another program would.
    pub fn store(&self, account: &str, secret: &str) -> Result<()> {
        use std::io::Write;
        let mut child = self
            .tool("secret-tool")
            .args([
                "store", "--label", account, "service", SERVICE, "username", account,
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(secret.as_bytes())?;
        ensure!(child.wait()?.success(), "secret-tool store {account}");
        Ok(())
    }

    /// Removes `account` with `secret-tool`.
    pub fn clear(&self, account: &str) -> Result<()> {
        let st = self
            .tool("secret-tool")
            .args(["clear", "service", SERVICE, "username", account])
            .status()?;
        ensure!(st.success(), "secret-tool clear {account}");
        Ok(())
    }

    fn bus_answers(&self) -> Result<()> {
        self.dbus_call("org.freedesktop.DBus.GetId", &[]).map(drop)
    }

    fn secrets_owned(&self) -> Result<()> {
        let out = self.dbus_call(
            "org.freedesktop.DBus.NameHasOwner",
            &["string:org.freedesktop.secrets"],
        )?;
        ensure!(out.contains("boolean true"), "not yet owned: {out}");
        Ok(())
    }

    fn dbus_call(&self, method: &str, args: &[&str]) -> Result<String> {
        let out = self
            .tool("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                method,
            ])
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Runs `body` inside its own real Secret Service, for tests whose code under test reaches the
/// keyring from the test's process. Call it from a plain `#[test]`:
///
/// - in the test process, it starts a [`SecretService`], runs this same test again as a child
///   process inside it (`<test binary> --exact <test name>`), and fails unless the child ran
///   exactly that one test and passed; then it tears the session down and fails if anything
///   the test started there is still running;
/// - in that child, it runs `body` on a multi-threaded tokio runtime.
///
/// The test's name comes from its thread, which libtest (and nextest through it) names after
/// the test.
pub fn isolated<F, Fut>(body: F) -> Result<()>
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    if let Some(session) = Session::current() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return rt.block_on(body(session));
    }
    let name = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .context("isolated() needs the test's thread, named after the test by libtest")?
        .to_owned();
    let ss = SecretService::start()?;
    let exe = std::env::current_exe()?;
    let logs = tempfile::tempdir()?;
    let out_path = logs.path().join("stdout");
    let err_path = logs.path().join("stderr");
    let mut child = Command::new(&exe)
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .envs(ss.env())
        .env_remove("DISPLAY")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("re-running {name} in its Secret Service session"))?;
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    // The child's output is the test's output.
    print!("{stdout}");
    eprint!("{stderr}");
    let torn_down = ss.shutdown();
    let Some(status) = status else {
        bail!("{name} did not finish within {CHILD_TIMEOUT:?} in its Secret Service session");
    };
    ensure!(
        status.success(),
        "{name} failed in its Secret Service session ({status})"
    );
    ensure!(
        stdout.contains("running 1 test") && stdout.contains("test result: ok. 1 passed"),
        "the re-run did not run exactly {name}:\n{stdout}"
    );
    torn_down
}

fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    Ok(())
}

/// A session bus listening only on the given socket, letting any local user in (as the
/// distribution's `session.conf`), without service activation.
fn bus_config(address: &str) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#
    )
}

/// Polls `probe` until it succeeds, failing early with the daemon's output if it exits.
fn wait_ready(process: &mut ChildProcess, probe: impl Fn() -> Result<()>) -> Result<()> {
    let startup = crate::timing::scaled(STARTUP);
    let deadline = Instant::now() + startup;
    loop {
        if !process.is_running() {
            bail!(
                "{} exited during startup: {}",
                process.name(),
                process.stderr_text()
            );
        }
        let last = match probe() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            bail!(
                "{} not ready after {startup:?}: {last:#}\n{}",
                process.name(),
                process.stderr_text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
