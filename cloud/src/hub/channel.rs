//! Per-channel runtime state on this replica: settings and token state as last read from the
//! buffer, the live connections, and the wake-up of the channel's dispatcher.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use connect_buffer::{ChannelSettings, TokenState};
use connect_protocol::admin::TokenGeneration;
use connect_protocol::time::Timestamp;
use parking_lot::RwLock;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::hub::conn::Conn;
use connect_buffer::digest::Digest;

/// What authenticates a connector on the channel: the token's current digest, the previous
/// one while in grace, and a self-service owner's API key digest. Only what
/// [`ChannelRt::token_matches`] needs of the buffer's [`TokenState`], compactly.
#[derive(Debug, PartialEq)]
struct Tokens {
    current: Digest,
    /// Set only when its grace end is known.
    previous: Option<Box<(Digest, Timestamp)>>,
    /// Self-service channels: digest of the owning account's API key, accepted like the
    /// current token once a connector authenticated with it (HOSTED.md §3). Boxed: set only
    /// while a connector uses the key, so an idle channel holds 8 B, not 40 (issue #14).
    owner_key: Option<Box<Digest>>,
}

impl Tokens {
    fn of(t: &TokenState, owner_key: Option<Box<Digest>>) -> Self {
        Tokens {
            current: Digest::new(&t.current_digest),
            previous: match (&t.previous_digest, t.previous_expires_at) {
                (Some(p), Some(exp)) => Some(Box::new((Digest::new(p), exp))),
                _ => None,
            },
            owner_key,
        }
    }
}

/// Per-channel runtime state on this replica.
pub struct ChannelRt {
    /// Shared with the key of the hub's channel map.
    name: Arc<str>,
    /// Shared by the channels whose settings are equal ([`crate::hub::Hub`] hands out one
    /// `Arc` for equal settings): 16 B per channel instead of ~80 (issue #14).
    settings: RwLock<Arc<ChannelSettings>>,
    tokens: RwLock<Tokens>,
    /// What a channel with connections needs, made at its first connection
    /// ([`Self::add_connection`]) and kept: an idle channel holds a null pointer instead of ~80 B of
    /// connection list, wake-up, stop token and dispatcher flag, and no notifier of the
    /// buffer (issue #14). Set once, so reading it takes no lock.
    live: OnceLock<Box<Live>>,
}

/// The part of a channel's runtime that only a channel with connections needs.
struct Live {
    conns: RwLock<Vec<Arc<Conn>>>,
    /// The buffer's notifier of the channel, asked for when the channel goes live.
    wake: Arc<Notify>,
    serve_tick: AtomicU64,
    /// Cancelled when the channel is removed or dispatching stops (a child of the hub's).
    stop: CancellationToken,
    /// Whether the channel's dispatcher task runs (from its first connection on).
    dispatcher: AtomicBool,
}

impl ChannelRt {
    pub(crate) fn new(
        name: Arc<str>,
        settings: impl Into<Arc<ChannelSettings>>,
        token: TokenState,
    ) -> Self {
        ChannelRt {
            name,
            settings: RwLock::new(settings.into()),
            tokens: RwLock::new(Tokens::of(&token, None)),
            live: OnceLock::new(),
        }
    }

    /// Makes the channel ready for connections (idempotent; `wake` and `stop` are called only
    /// the first time): its dispatcher's wake-up is the buffer's notifier of the channel, and
    /// `stop` ends the dispatcher.
    fn go_live(
        &self,
        wake: impl FnOnce() -> Arc<Notify>,
        stop: impl FnOnce() -> CancellationToken,
    ) -> &Live {
        self.live.get_or_init(|| {
            Box::new(Live {
                conns: RwLock::new(Vec::new()),
                wake: wake(),
                serve_tick: AtomicU64::new(0),
                stop: stop(),
                dispatcher: AtomicBool::new(false),
            })
        })
    }

    /// Whether the channel went live (had a connection) on this replica.
    pub fn is_live(&self) -> bool {
        self.live.get().is_some()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn settings(&self) -> ChannelSettings {
        ChannelSettings::clone(&self.settings.read())
    }

    /// The name as the hub's channel map keys it.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn max_in_flight(&self) -> usize {
        self.settings.read().max_in_flight as usize
    }

    pub fn ack_timeout_seconds(&self) -> u64 {
        self.settings.read().ack_timeout_seconds
    }

    pub(crate) fn max_connections(&self) -> u64 {
        self.settings.read().max_connections
    }

    /// Takes new settings; `true` if they differ from the ones held.
    pub(crate) fn set_settings(&self, s: &Arc<ChannelSettings>) -> bool {
        if **self.settings.read() == **s {
            return false;
        }
        *self.settings.write() = s.clone();
        true
    }

    /// Takes a new token state; `true` if what authenticates on the channel changed.
    pub(crate) fn set_token(&self, t: &TokenState) -> bool {
        let mut held = self.tokens.write();
        let new = Tokens::of(t, held.owner_key.take());
        let changed = new.current != held.current || new.previous != held.previous;
        *held = new;
        changed
    }

    /// When the previous token stops being accepted, if one still is or was.
    pub(crate) fn grace_end(&self) -> Option<Timestamp> {
        self.tokens.read().previous.as_ref().map(|p| p.1)
    }

    pub fn current_token_digest(&self) -> String {
        self.tokens.read().current.to_hex()
    }

    /// This replica's live connections of the channel.
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        self.with_connections(<[Arc<Conn>]>::to_vec)
    }

    pub fn connection_count(&self) -> usize {
        self.with_connections(<[Arc<Conn>]>::len)
    }

    pub(crate) fn with_connections<R>(&self, f: impl FnOnce(&[Arc<Conn>]) -> R) -> R {
        match self.live.get() {
            Some(l) => f(&l.conns.read()),
            None => f(&[]),
        }
    }

    /// Adds a connection. The first one makes the channel live: `wake` (the buffer's
    /// notifier of the channel) and `stop` (a child of the hub's dispatch stop) are called
    /// then, and only then.
    pub(crate) fn add_connection(
        &self,
        c: Arc<Conn>,
        wake: impl FnOnce() -> Arc<Notify>,
        stop: impl FnOnce() -> CancellationToken,
    ) {
        self.go_live(wake, stop).conns.write().push(c);
    }

    pub(crate) fn remove_connection(&self, id: &str) {
        if let Some(l) = self.live.get() {
            l.conns.write().retain(|c| c.id() != id);
        }
    }

    /// Wakes the channel's dispatcher (a message, a free slot or a new connection). A
    /// channel that never went live has none to wake.
    pub fn wake(&self) {
        if let Some(l) = self.live.get() {
            l.wake.notify_one();
        }
    }

    /// The dispatcher's wake-up (`None` until the first connection), also for a connection to
    /// signal that its outbox has room.
    pub(crate) fn waker(&self) -> Option<&Arc<Notify>> {
        self.live.get().map(|l| &l.wake)
    }

    pub(crate) fn next_serve_tick(&self) -> u64 {
        self.live
            .get()
            .map_or(0, |l| l.serve_tick.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// `true` once, and only once the channel is live: the caller starts its dispatcher.
    pub(crate) fn claim_dispatcher(&self) -> bool {
        self.live
            .get()
            .is_some_and(|l| !l.dispatcher.swap(true, Ordering::AcqRel))
    }

    pub fn has_dispatcher(&self) -> bool {
        self.live
            .get()
            .is_some_and(|l| l.dispatcher.load(Ordering::Acquire))
    }

    /// Cancelled when the channel is removed or dispatching stops; `None` until
    /// the first connection (nothing runs for the channel before).
    pub(crate) fn stop_token(&self) -> Option<&CancellationToken> {
        self.live.get().map(|l| &l.stop)
    }

    /// Accepts the owning account's API key digest on this channel (`None`: no key). A key
    /// that is replaced stops matching: [`crate::hub::Hub::enforce_tokens`] then closes its
    /// connections.
    pub fn set_owner_key(&self, digest: Option<String>) {
        self.tokens.write().owner_key = digest.as_deref().map(|d| Box::new(Digest::new(d)));
    }

    /// The owner key digest accepted here, if any.
    pub fn owner_key(&self) -> Option<String> {
        self.tokens.read().owner_key.as_deref().map(Digest::to_hex)
    }

    /// Is `digest` the owner key accepted here?
    pub fn owner_key_is(&self, digest: &str) -> bool {
        self.tokens
            .read()
            .owner_key
            .as_ref()
            .is_some_and(|k| k.is(digest))
    }

    /// Which generation `digest` authenticates for, or `None` (§4.3). The owner's API key
    /// counts as the current token.
    pub fn token_matches(&self, digest: &str, now: Timestamp) -> Option<TokenGeneration> {
        let t = self.tokens.read();
        let owner = t.owner_key.as_ref().is_some_and(|k| k.is(digest));
        let cur = t.current.is(digest) | owner;
        let prev = match t.previous.as_deref() {
            Some((p, exp)) if *exp > now => p.is(digest),
            _ => false,
        };
        if cur {
            Some(TokenGeneration::Current)
        } else if prev {
            Some(TokenGeneration::Previous)
        } else {
            None
        }
    }
}

// What authenticates on an idle channel, inline in its runtime (issue #14): 88 B while the
// owner key's digest was inline.
const _: () = assert!(std::mem::size_of::<Tokens>() <= 56);
// An idle channel's whole runtime, inline (issue #14): 176 B while the connection list,
// wake-up, stop tokens and dispatcher flag were inline.
const _: () = assert!(std::mem::size_of::<ChannelRt>() <= 112);

/// Constant-time comparison of two digests.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
