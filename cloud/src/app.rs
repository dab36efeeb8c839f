//! The application state every HTTP handler gets: settings, the [`Runtime`] (channels, hub,
//! buffer, configuration in force), the configuration sources and the metrics. Fields are
//! private; handlers go through the accessors.

use std::collections::HashMap;
use std::sync::Arc;

use connect_buffer::{Buffer, BufferError};
use connect_config::{EnvSource, ProcessEnv, SlidingWindow, WebhookSet};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config_source::error::StartError;
use crate::config_source::manager::ConfigManager;
use crate::hosted::Hosted;
use crate::hub::Hub;
use crate::metrics::Metrics;
pub use crate::runtime::read_webhooks;
use crate::runtime::{ConfigSnapshot, Runtime};
use crate::settings::Settings;

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    settings: Arc<Settings>,
    runtime: Arc<Runtime>,
    sources: Arc<ConfigManager>,
    hosted: Arc<Hosted>,
    metrics: Arc<Metrics>,
    /// Ingress rate-limit windows of this process (per namespace and entry).
    rate_limits: Mutex<HashMap<String, SlidingWindow>>,
}

impl AppState {
    /// For tests and benches: `${VAR}` references resolve against the process environment and
    /// no command line is checked. The binary uses [`AppState::with_environment`].
    pub fn new(settings: Settings, buffer: Arc<dyn Buffer>) -> Self {
        Self::with_environment(settings, buffer, Arc::new(ProcessEnv), Vec::new())
    }

    /// `env` resolves `${VAR}` references of definitions; `args` is the command line (checked
    /// for secrets passed as flags).
    pub fn with_environment(
        settings: Settings,
        buffer: Arc<dyn Buffer>,
        env: Arc<dyn EnvSource>,
        args: Vec<String>,
    ) -> Self {
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::default());
        let runtime = Arc::new(Runtime::new(settings.clone(), buffer, metrics.clone()));
        let sources = Arc::new(ConfigManager::new(runtime.clone(), env, args));
        let hosted = Arc::new(Hosted::new(runtime.clone()));
        AppState(Arc::new(Inner {
            settings,
            runtime,
            sources,
            hosted,
            metrics,
            rate_limits: Mutex::new(HashMap::new()),
        }))
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.0.runtime
    }

    pub fn sources(&self) -> &Arc<ConfigManager> {
        &self.0.sources
    }

    /// Self-service accounts and channels (HOSTED.md).
    pub fn hosted(&self) -> &Arc<Hosted> {
        &self.0.hosted
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    pub fn hub(&self) -> &Arc<Hub> {
        self.0.runtime.hub()
    }

    pub fn buffer(&self) -> &Arc<dyn Buffer> {
        self.0.runtime.buffer()
    }

    pub fn config(&self) -> Option<Arc<ConfigSnapshot>> {
        self.0.runtime.config()
    }

    /// Cancelled when shutdown starts: ingress and new connections are refused.
    pub fn shutdown(&self) -> &CancellationToken {
        self.0.runtime.shutdown()
    }

    pub fn tracker(&self) -> &TaskTracker {
        self.0.runtime.tracker()
    }

    pub(crate) fn rate_limits(&self) -> &Mutex<HashMap<String, SlidingWindow>> {
        &self.0.rate_limits
    }

    /// Puts a configuration in force (see [`Runtime::apply_config`]).
    pub async fn apply_config(&self, webhooks: WebhookSet) -> Result<(), BufferError> {
        self.0.runtime.apply_config(webhooks).await
    }

    /// Starts the configuration sources: file backend, the first load is complete (or fatal)
    /// when this returns; etcd loads in the background.
    pub async fn start_sources(&self) -> Result<(), StartError> {
        crate::config_source::start::start(&self.0.sources).await
    }

    /// Spawns the background sweeps (see [`crate::sweeper`]).
    pub fn spawn_background(&self) {
        crate::sweeper::spawn(&self.0.runtime, &self.0.sources);
    }
}
