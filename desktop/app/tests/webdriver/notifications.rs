//! The desktop's notification server (`org.freedesktop.Notifications` on the session bus, what
//! GNOME Shell, KDE or dunst provide), recording every notification and the process it came from.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use parking_lot::Mutex;
use zbus::Connection;
use zbus::zvariant::OwnedValue;

/// One notification as shown.
#[derive(Clone, Debug)]
pub struct Shown {
    pub app_name: String,
    pub summary: String,
    pub body: String,
    /// The sending process, asked of the bus while the notification is handled (a sender may
    /// disconnect right after).
    pub pid: Option<u32>,
}

struct Server {
    shown: Arc<Mutex<Vec<Shown>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> u32 {
        let pid = match header.sender() {
            Some(sender) => crate::bus::pid_of(conn, sender.as_str()).await,
            None => None,
        };
        let mut shown = self.shown.lock();
        shown.push(Shown {
            app_name,
            summary,
            body,
            pid,
        });
        u32::try_from(shown.len()).unwrap_or(u32::MAX)
    }

    async fn close_notification(&self, _id: u32) {}

    async fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    async fn get_server_information(&self) -> (String, String, String, String) {
        (
            "test".into(),
            "webhook-connect".into(),
            "1".into(),
            "1.2".into(),
        )
    }
}

pub struct Notifications {
    // Owns the name for as long as the test holds this.
    _conn: Connection,
    shown: Arc<Mutex<Vec<Shown>>>,
}

impl Notifications {
    /// Owns the notification server's name on the session bus.
    pub async fn start() -> Result<Self> {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let conn = crate::bus::serve(
            "org.freedesktop.Notifications",
            "/org/freedesktop/Notifications",
            Server {
                shown: shown.clone(),
            },
        )
        .await?;
        Ok(Self { _conn: conn, shown })
    }

    /// Every notification shown so far.
    pub fn all(&self) -> Vec<Shown> {
        self.shown.lock().clone()
    }

    /// How many notifications were shown so far.
    pub fn count(&self) -> usize {
        self.shown.lock().len()
    }

    /// Waits for a notification from process `pid` whose summary is `summary`, among those
    /// shown after the first `after`.
    pub async fn wait_for(
        &self,
        pid: u32,
        summary: &str,
        after: usize,
        timeout: Duration,
    ) -> Result<Shown> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self
                .shown
                .lock()
                .iter()
                .skip(after)
                .find(|n| n.summary == summary && n.pid == Some(pid))
                .cloned();
            if let Some(n) = found {
                return Ok(n);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "no notification {summary:?} from pid {pid} within {timeout:?}; shown: {:?}",
                    self.shown.lock()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
