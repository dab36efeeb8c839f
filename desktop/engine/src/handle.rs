//! The public face of the engine: [`Engine::start`], the [`EngineHandle`] that adds, removes,
//! pauses and inspects channels, replays events and shuts down, and the state [`Carried`] from
//! one process to the next.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::task::TaskTracker;

use crate::api::{ChannelStatus, EventDetail, EventSummary, LinkState, ReplayRequest};
use crate::channel::{ChannelCtx, Tokens, queue_poller};
use crate::config::{ChannelConfig, ConnectorConfig};
use crate::error::EngineError;
use crate::history::{Entry, History};
use crate::session::channel_loop;

/// Default grace period for in-flight deliveries on shutdown.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Entry point.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Starts every enabled channel. Must be called inside a tokio runtime.
    pub fn start(config: ConnectorConfig) -> Result<EngineHandle, EngineError> {
        let (paused, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            global: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            env: config.env.clone(),
            channels: Mutex::new(Vec::new()),
            paused,
            tokens: Tokens::new(),
            loops: TaskTracker::new(),
            history_size: AtomicUsize::new(config.history_size),
            carried: Mutex::new(HashMap::new()),
            finished: broadcast::channel(FINISHED_BACKLOG).0,
        });
        let handle = EngineHandle { inner };
        for ch in config.channels {
            handle.add_channel(ch)?;
        }
        Ok(handle)
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) global: Arc<Semaphore>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) channels: Mutex<Vec<Arc<ChannelCtx>>>,
    pub(crate) paused: watch::Sender<bool>,
    pub(crate) tokens: Tokens,
    pub(crate) loops: TaskTracker,
    pub(crate) history_size: AtomicUsize,
    /// Channels taken over from a previous process ([`EngineHandle::carry_in`]), by key, until
    /// the channel is added.
    pub(crate) carried: Mutex<HashMap<String, CarriedChannel>>,
    /// Every settled delivery and replay, for [`EngineHandle::subscribe_finished`].
    pub(crate) finished: broadcast::Sender<Finished>,
}

/// Deliveries a slow [`EngineHandle::subscribe_finished`] receiver may lag behind before it
/// misses some (it is told how many).
const FINISHED_BACKLOG: usize = 1024;

/// A delivery (or replay) that reached its outcome: one line of `webhook-connect listen`.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The channel's engine key.
    pub key: String,
    /// The event as the history keeps it, with its final outcome.
    pub summary: EventSummary,
    /// The last attempt's error when the target gave no answer (refused, timeout…).
    pub error: Option<String>,
}

/// What one process hands to the next when it replaces itself (the desktop app does in light
/// mode): the pause switch and, per channel, the history, the counters and the last queue depth
/// read at the cloud (shown until the next reading, so a tray does not fall back to its own
/// dead-letter count while paused or reconnecting). Live state (links,
/// leases, running deliveries, the charts' time series) is not carried: the old process settles
/// its deliveries before it ends and the new one connects afresh.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Carried {
    pub paused: bool,
    pub channels: Vec<CarriedChannel>,
}

/// One channel of [`Carried`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CarriedChannel {
    pub key: String,
    pub counters: crate::api::DeliveryCounters,
    pub next_seq: u64,
    /// Oldest first.
    pub entries: Vec<Entry>,
    /// The last reading of the channel's queue at the cloud, if any (absent in files written
    /// before it was carried).
    #[serde(default)]
    pub queue: Option<crate::api::QueueDepth>,
}

/// Controls a running engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl EngineHandle {
    fn channel(&self, key: &str) -> Result<Arc<ChannelCtx>, EngineError> {
        self.inner
            .channels
            .lock()
            .iter()
            .find(|c| c.cfg.key == key)
            .cloned()
            .ok_or_else(|| EngineError::UnknownChannel(key.to_owned()))
    }

    /// Every delivery and replay from now on, once settled, in the order they finish. Only
    /// events the history keeps are told (`history_size` 0 tells none).
    pub fn subscribe_finished(&self) -> broadcast::Receiver<Finished> {
        self.inner.finished.subscribe()
    }

    /// A snapshot of every channel.
    pub fn status(&self) -> Vec<ChannelStatus> {
        self.inner
            .channels
            .lock()
            .iter()
            .map(|c| c.snapshot())
            .collect()
    }

    /// Starts a channel; one with the same key is replaced (its history is kept).
    pub fn add_channel(&self, cfg: ChannelConfig) -> Result<(), EngineError> {
        if self.inner.tokens.intake.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let previous = {
            let list = self.inner.channels.lock();
            list.iter().find(|c| c.cfg.key == cfg.key).cloned()
        };
        let carried = match previous {
            Some(_) => None,
            None => self.inner.carried.lock().remove(&cfg.key),
        };
        let capacity = self.inner.history_size.load(Ordering::Relaxed);
        let (history, carried) = match (&previous, carried) {
            (Some(p), _) => (
                std::mem::replace(&mut *p.history.lock(), History::new(0)),
                None,
            ),
            (None, Some(c)) => (
                History::restore(capacity, c.entries, c.next_seq),
                Some((c.counters, c.queue)),
            ),
            (None, None) => (History::new(capacity), None),
        };
        let ctx = Arc::new(ChannelCtx::new(cfg, &self.inner, history)?);
        if let Some((counters, queue)) = carried {
            let mut live = ctx.live.lock();
            live.status.counters = counters;
            live.status.queue = queue;
        }
        {
            let mut list = self.inner.channels.lock();
            list.retain(|c| c.cfg.key != ctx.cfg.key);
            list.push(ctx.clone());
        }
        if let Some(p) = previous {
            self.inner
                .loops
                .spawn(async move { p.stop(DEFAULT_GRACE).await });
        }
        self.inner.loops.spawn(channel_loop(ctx.clone()));
        self.inner.loops.spawn(queue_poller(ctx));
        Ok(())
    }

    /// Everything [`Carried`] holds, taken out of this engine (its histories are left empty).
    /// Meant for after [`Self::shutdown`], when nothing changes them any more.
    pub fn carry_out(&self) -> Carried {
        let channels = self.inner.channels.lock().clone();
        Carried {
            paused: self.is_paused(),
            channels: channels
                .iter()
                .map(|c| {
                    let (entries, next_seq) = c.history.lock().take_all();
                    let live = c.live.lock();
                    CarriedChannel {
                        key: c.cfg.key.clone(),
                        counters: live.status.counters.clone(),
                        next_seq,
                        entries,
                        queue: live.status.queue.clone(),
                    }
                })
                .collect(),
        }
    }

    /// Takes over what a previous process carried out: the pause switch at once, each
    /// channel's history and counters when a channel with its key is added. Call before adding
    /// channels; a key that is never added is dropped with the engine.
    pub fn carry_in(&self, carried: Carried) {
        self.set_paused(carried.paused);
        let mut stash = self.inner.carried.lock();
        for c in carried.channels {
            stash.insert(c.key.clone(), c);
        }
    }

    /// Stops a channel: no new messages, running deliveries get `grace`, then it is dropped.
    pub async fn remove_channel(&self, key: &str, grace: Duration) {
        let removed = {
            let mut list = self.inner.channels.lock();
            let found = list.iter().position(|c| c.cfg.key == key);
            found.map(|i| list.remove(i))
        };
        if let Some(c) = removed {
            c.stop(grace).await;
        }
    }

    /// Reads the channel's queue at the cloud now rather than at the next tick (if connected):
    /// after its dead letters were replayed, deleted or purged, say.
    pub fn refresh_queue(&self, key: &str) -> Result<(), EngineError> {
        self.channel(key)?.queue_wake.notify_one();
        Ok(())
    }

    /// Connects (`true`) or disconnects (`false`) one channel; history and counters stay.
    pub fn set_channel_enabled(&self, key: &str, enabled: bool) -> Result<(), EngineError> {
        self.channel(key)?.enabled.send_replace(enabled);
        Ok(())
    }

    /// Pauses or resumes every channel: paused channels close their links after running
    /// deliveries finish, and messages wait at the cloud.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// Events kept per channel.
    pub fn set_history_size(&self, n: usize) {
        self.inner.history_size.store(n, Ordering::Relaxed);
        for c in self.inner.channels.lock().iter() {
            c.history.lock().set_capacity(n);
        }
    }

    /// The channel's history, newest first.
    pub fn events(&self, key: &str) -> Result<Vec<EventSummary>, EngineError> {
        Ok(self.channel(key)?.history.lock().summaries())
    }

    /// One event with its request and attempts.
    pub fn event(&self, key: &str, message_id: &str) -> Result<EventDetail, EngineError> {
        self.channel(key)?
            .history
            .lock()
            .get(message_id)
            .map(Entry::detail)
            .ok_or_else(|| EngineError::UnknownEvent(message_id.to_owned()))
    }

    /// Every channel key with its events, newest first (for lookups across channels).
    pub fn find_event(&self, message_id: &str) -> Option<(String, EventDetail)> {
        self.inner.channels.lock().iter().find_map(|c| {
            c.history
                .lock()
                .get(message_id)
                .map(|e| (c.cfg.key.clone(), e.detail()))
        })
    }

    /// Re-sends an event to its target or another URL, optionally edited. The replay is a new
    /// event (`replay_of` set); nothing is ACKed or NACKed at the cloud.
    pub async fn replay(&self, req: ReplayRequest) -> Result<EventDetail, EngineError> {
        self.channel(&req.key)?.replay(req).await
    }

    /// Stops taking messages, lets running deliveries finish for up to `grace`, NACKs
    /// (`retry=true`) what is still running, then closes the connections (WebSocket 1000).
    pub async fn shutdown(&self, grace: Duration) {
        let tokens = &self.inner.tokens;
        tokens.intake.cancel();
        let channels: Vec<_> = self.inner.channels.lock().clone();
        let all = futures::future::join_all(channels.iter().map(|c| {
            c.deliveries.close();
            c.deliveries.wait()
        }));
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("grace period over; NACKing unfinished deliveries");
            tokens.hard.cancel();
            let again = futures::future::join_all(channels.iter().map(|c| c.deliveries.wait()));
            let _ = tokio::time::timeout(Duration::from_secs(5), again).await;
        }
        tokens.drained.cancel();
        self.inner.loops.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.loops.wait()).await;
        tokens.hard.cancel();
        for c in &channels {
            c.live.lock().status.state = LinkState::Stopped;
        }
    }
}
