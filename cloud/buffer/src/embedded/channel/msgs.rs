//! What a channel holds per message, allocated with the channel's first message: a channel
//! that never held one (most idle channels) costs only its header (`Chan`), not the dozen
//! empty maps and queues below.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::embedded::ids::SeqMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, LazyLock};

use connect_protocol::message::DeadLetterReason;

use super::{Lease, Pending, Reserved, Slots};
use crate::embedded::ids::Ids;
use crate::embedded::log::Loc;
use crate::embedded::room;

/// What a channel holds per message (see `Chan`).
#[derive(Default)]
pub(super) struct Msgs {
    pub(super) entries: Slots,
    /// The latest state record of each message that has one.
    pub(super) state_locs: SeqMap<Loc>,
    /// When each delayed message is due (`Place::Delayed`).
    pub(super) delayed_until: SeqMap<i64>,
    /// Why and when each dead letter died (`Place::Dead`).
    pub(super) dead_info: SeqMap<(DeadLetterReason, i64)>,
    /// Message id → sequence, including ids reserved by enqueues awaiting their commit.
    pub(super) ids: Ids,
    /// Dispatch order: requeued leases at the head, new/promoted/replayed at the tail.
    pub(super) ready: VecDeque<u64>,
    pub(super) in_flight: BTreeSet<u64>,
    pub(super) delayed: BTreeSet<(i64, u64)>,
    pub(super) dead: BTreeSet<(i64, u64)>,
    pub(super) reserved: SeqMap<Reserved>,
    pub(super) leases: SeqMap<Lease>,
    /// Every connection that held a lease of a message since the last restart (late ACKs).
    pub(super) holders: SeqMap<Vec<Arc<str>>>,
    /// States whose record is not written yet (bounded by the lazy-write window).
    pub(super) pending: SeqMap<Pending>,
    pub(super) webhooks: Vec<Box<str>>,
    pub(super) webhook_index: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    pub(super) webhook_pending: Vec<u64>,
}

impl Msgs {
    /// Gives back the room a drained backlog took in the per-message tables and the ready
    /// queue ([`room`]); called as each message goes, it costs a few comparisons when there
    /// is nothing to give back. (`ids` trims itself; the ordered sets free as they shrink.)
    pub(super) fn trim(&mut self) {
        room::deque(&mut self.ready);
        room::map(&mut self.state_locs);
        room::map(&mut self.delayed_until);
        room::map(&mut self.dead_info);
        room::map(&mut self.reserved);
        room::map(&mut self.leases);
        room::map(&mut self.holders);
        room::map(&mut self.pending);
    }
}

/// What every channel without messages reads.
static EMPTY: LazyLock<Msgs> = LazyLock::new(Msgs::default);

/// [`Msgs`], allocated at the first write.
#[derive(Default)]
pub(super) struct Lazy(Option<Box<Msgs>>);

impl Lazy {
    /// Whether the channel ever held a message since it was created or loaded.
    pub fn is_allocated(&self) -> bool {
        self.0.is_some()
    }
}

impl Deref for Lazy {
    type Target = Msgs;

    fn deref(&self) -> &Msgs {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for Lazy {
    fn deref_mut(&mut self) -> &mut Msgs {
        self.0.get_or_insert_with(Box::default)
    }
}
