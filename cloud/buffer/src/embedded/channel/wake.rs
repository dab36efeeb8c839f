//! A channel's notifier ([`crate::Buffer::notifier`]): what its dispatcher waits on for new
//! work. Made when first asked for — by the hub at the channel's first connection — so an idle
//! channel holds none (issue #14: ≤ 1 KB per idle channel; a `Notify` in its `Arc` is 48 B).
//! Until then nobody waits, so a wake-up has nobody to reach and is skipped; whoever asks
//! for the notifier checks for work after taking it (the hub wakes a new connection's
//! dispatcher itself).

use std::sync::Arc;

use tokio::sync::Notify;

use super::Chan;

impl Chan {
    /// The channel's notifier, made now if nobody asked for it before.
    pub fn notifier(&mut self) -> Arc<Notify> {
        self.notify.get_or_insert_with(Arc::default).clone()
    }

    /// Wakes one waiter of the channel's notifier (a message, a free slot), if it has one.
    pub fn wake(&self) {
        if let Some(n) = &self.notify {
            n.notify_one();
        }
    }

    /// Wakes every waiter (the channel is deleted).
    pub fn wake_waiters(&self) {
        if let Some(n) = &self.notify {
            n.notify_waiters();
        }
    }
}
