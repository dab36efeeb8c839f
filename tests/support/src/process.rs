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
        let program = program.as_ref();
        let logs = tempfile::Builder::new()
            .prefix(&format!("testkit-{name}-"))
            .tempdir()
            .context("creating a log dir")?;
        let stdout = File::create(logs.path().join("stdout"))?;
        let stderr = File::create(logs.path().join("stderr"))?;
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {name} ({})", program.to_string_lossy()))?;
        tracing::debug!(name, pid = child.id(), "spawned child process");
        Ok(Self {
            name: name.to_owned(),
            child,
            status: None,
            logs,
        })
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
