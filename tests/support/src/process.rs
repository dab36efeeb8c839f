//! Child processes that never outlive the test, and locating the workspace's binaries.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;

/// A child process that gets SIGKILL on drop, with stdout and stderr captured to files.
///
/// The output files live in the process's own temp dir, so they can be read after the child is
/// gone (e.g. to put the child's last words in a failure message).
pub struct ChildProcess {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    logs: TempDir,
}

impl ChildProcess {
    /// Spawns `program` with `args` and extra `envs`; `name` labels logs and error messages.
    pub fn spawn(
        program: impl AsRef<OsStr>,
        args: &[&str],
        envs: &[(&str, &str)],
        name: &str,
    ) -> Result<Self> {
        Self::spawn_inner(program.as_ref(), args, envs, name, None)
    }

    /// Like [`spawn`](Self::spawn), with `input` written to the child's stdin, then closed (a
    /// password for a daemon that reads one).
    pub fn spawn_with_stdin(
        program: impl AsRef<OsStr>,
        args: &[&str],
        envs: &[(String, String)],
        name: &str,
        input: &[u8],
    ) -> Result<Self> {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::spawn_inner(program.as_ref(), args, &envs, name, Some(input))
    }

    fn spawn_inner(
        program: &OsStr,
        args: &[&str],
        envs: &[(&str, &str)],
        name: &str,
        input: Option<&[u8]>,
    ) -> Result<Self> {
        let logs = tempfile::Builder::new()
            .prefix(&format!("testkit-{name}-"))
            .tempdir()
            .context("creating a log dir")?;
        let stdout = File::create(logs.path().join("stdout"))?;
        let stderr = File::create(logs.path().join("stderr"))?;
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {name} ({})", program.to_string_lossy()))?;
        tracing::debug!(name, pid = child.id(), "spawned child process");
        let mut me = Self {
            name: name.to_owned(),
            child,
            status: None,
            logs,
        };
        if let Some(input) = input {
            use std::io::Write;
            // Dropping the pipe closes it: the child reads to the end.
            let written = me
                .child
                .stdin
                .take()
                .context("the child's stdin")
                .and_then(|mut pipe| Ok(pipe.write_all(input)?));
            // On failure `me` is dropped, which kills the child.
            written.with_context(|| format!("writing to {name}'s stdin"))?;
        }
        Ok(me)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL (if still running) and reaps the child.
    pub fn kill9(&mut self) {
        if self.is_running() {
            // Only fails if the child has already exited, which `wait` below handles.
            let _ = self.child.kill();
        }
        self.reap();
    }

    /// Sends SIGTERM, waits up to `grace` for an exit, then SIGKILL.
    ///
    /// Returns the exit code, or `None` when the child died from a signal. Blocks the calling
    /// thread for up to `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        if self.is_running() {
            if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
                let _ = kill_process(pid, Signal::TERM);
            }
            let deadline = Instant::now() + grace;
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill9();
        self.status.and_then(|status| status.code())
    }

    /// Whether the child is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(None) => return true,
                Ok(Some(status)) => self.status = Some(status),
                Err(_) => self.reap(),
            }
        }
        false
    }

    /// The exit status, once the child has been seen to exit.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.is_running();
        self.status
    }

    pub fn stdout_text(&self) -> String {
        self.read_log("stdout")
    }

    pub fn stderr_text(&self) -> String {
        self.read_log("stderr")
    }

    /// The directory holding the `stdout` and `stderr` files.
    pub fn log_dir(&self) -> &Path {
        self.logs.path()
    }

    fn read_log(&self, stream: &str) -> String {
        std::fs::read(self.logs.path().join(stream))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    fn reap(&mut self) {
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl std::fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProcess")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("status", &self.status)
            .finish()
    }
}

/// Path of a binary built by cargo from this workspace, e.g. `webhook-connect-cloud`.
///
/// Looks at `CARGO_BIN_EXE_<name>`, then next to the running test binary (`<target>/<profile>/`,
/// which follows `CARGO_TARGET_DIR`), then `$CARGO_TARGET_DIR` and the workspace's `target/`.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return Ok(PathBuf::from(path));
    }
    let profiles: &[&str] = if cfg!(debug_assertions) {
        &["debug", "release"]
    } else {
        &["release", "debug"]
    };
    let mut candidates = Vec::new();
    // Test binaries run from <target>/<profile>/deps/.
    if let Some(profile_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
    {
        candidates.push(profile_dir.join(name));
    }
    let mut target_dirs: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    target_dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    for dir in &target_dirs {
        candidates.extend(profiles.iter().map(|profile| dir.join(profile).join(name)));
    }
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "binary {name:?} not built (looked at {candidates:?}); run `cargo build --workspace` first"
    )
}

/// Processes (pid, command line) whose environment holds `var=value`, this process excluded:
/// what a test started with its own `HOME` or bus address, found however it was started
/// (daemonized, reparented). Zombies have no readable environment and are not listed.
pub fn processes_with_env(var: &str, value: &str) -> Vec<(u32, String)> {
    let want = format!("{var}={value}");
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == want.as_bytes()))
        })
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            (pid, cmd.trim().to_owned())
        })
        .collect()
}

/// Fails (listing them) if processes with `var=value` in their environment are still running
/// `within` after the call: the check that a test's teardown left nothing behind. Polls until
/// they are gone (a killed process takes a moment to die) rather than sampling once. Blocking:
/// call it after the test's runtime work, from any thread.
pub fn ensure_no_survivors(var: &str, value: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let left = processes_with_env(var, value);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("processes left running with {var}={value}: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
