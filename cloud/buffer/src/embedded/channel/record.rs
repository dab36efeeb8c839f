//! A channel's record as the store holds it in memory (issue #14: ≤ 1 KB per idle channel).
//!
//! [`ChannelRecord`] and its [`TokenState`] are the form every backend hands out and the
//! embedded store writes to redb (as [`ChannelDisk`]); both stay as they are. Held per channel,
//! though, that form cost ~0.5 KB: two 64-character hex digests (equal for a token never
//! rotated), the name again beside the map's key, a self-service channel's webhook id twice
//! (`owner` and `webhook_ids`), the settings inline and three rotation fields that are almost
//! always empty. Here the name is the map key's `Arc`, equal settings are one shared `Arc`,
//! digests are their 32 bytes ([`Digest`]), the configured digest is kept only when it differs
//! from the current one, the owner only when it is not the first webhook id, and the rotation
//! fields are boxed. Converting to and from the shared form is exact (a round trip gives the
//! same record), and happens only when a record is handed out or persisted — never per webhook.

use std::sync::Arc;

use connect_protocol::admin::{ChannelState, TokenSource};
use connect_protocol::time::Timestamp;

use crate::digest::Digest;
use crate::embedded::channel::Env;
use crate::embedded::meta::ChannelDisk;
use crate::{ChannelRecord, ChannelSettings, TokenState};

impl Env {
    /// `s` as an `Arc` shared with the previous channel's settings when they are equal
    /// (channels mostly have the same settings: 8 B each instead of ~72 B).
    pub fn settings(&self, s: ChannelSettings) -> Arc<ChannelSettings> {
        let mut last = self.last_settings.lock();
        match &*last {
            Some(l) if **l == s => l.clone(),
            _ => {
                let new = Arc::new(s);
                *last = Some(new.clone());
                new
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(in crate::embedded) struct ChanRecord {
    /// Shared with the key of the store's channel map.
    pub name: Arc<str>,
    /// Shared by channels whose settings are equal (`Env::settings`).
    pub settings: Arc<ChannelSettings>,
    webhook_ids: WebhookIds,
    /// `None`: the owner is `webhook_ids[0]` (always so for a self-service channel).
    owner: Option<Box<str>>,
    pub state: ChannelState,
    pub orphaned_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub token: Token,
}

impl ChanRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: Arc<str>,
        settings: Arc<ChannelSettings>,
        owner: String,
        webhook_ids: Vec<String>,
        state: ChannelState,
        orphaned_at: Option<Timestamp>,
        created_at: Timestamp,
        updated_at: Timestamp,
        token: Token,
    ) -> Self {
        let mut r = ChanRecord {
            name,
            settings,
            webhook_ids: WebhookIds::Many(Box::default()),
            owner: None,
            state,
            orphaned_at,
            created_at,
            updated_at,
            token,
        };
        r.set_webhooks(owner, webhook_ids);
        r
    }

    pub fn owner(&self) -> &str {
        match (&self.owner, self.webhook_ids().next()) {
            (Some(o), _) => o,
            (None, Some(first)) => first,
            // `set_webhooks` keeps `owner` whenever there is no webhook id.
            (None, None) => "",
        }
    }

    /// The webhook ids, in order (without allocating: the ingest path looks here).
    pub fn webhook_ids(&self) -> impl Iterator<Item = &str> + Clone {
        let (one, many): (Option<&str>, &[Box<str>]) = match &self.webhook_ids {
            WebhookIds::One(id) => (Some(id), &[]),
            WebhookIds::Shared(id) => (Some(id), &[]),
            WebhookIds::Many(ids) => (None, ids),
        };
        one.into_iter().chain(many.iter().map(|i| &**i))
    }

    pub fn set_webhooks(&mut self, owner: String, mut webhook_ids: Vec<String>) {
        self.webhook_ids = match (webhook_ids.pop(), webhook_ids.is_empty()) {
            (Some(only), true) => WebhookIds::One(only.into_boxed_str()),
            (last, _) => {
                webhook_ids.extend(last);
                WebhookIds::Many(
                    webhook_ids
                        .into_iter()
                        .map(String::into_boxed_str)
                        .collect(),
                )
            }
        };
        let owner_is_first = self.webhook_ids().next() == Some(owner.as_str());
        self.owner = (!owner_is_first).then(|| owner.into_boxed_str());
    }

    /// Holds `name` and a single `webhook_id` as these `Arc`s when equal to its own
    /// (strings another index already holds: shared, not held twice).
    pub fn share(&mut self, name: &Arc<str>, webhook_id: &Arc<str>) {
        if *self.name == **name {
            self.name = name.clone();
        }
        if self.webhook_ids().eq([&**webhook_id]) {
            self.webhook_ids = WebhookIds::Shared(webhook_id.clone());
        }
    }

    /// The record in the form every backend hands out.
    pub fn to_record(&self) -> ChannelRecord {
        ChannelRecord {
            name: self.name.to_string(),
            settings: (*self.settings).clone(),
            owner: self.owner().to_owned(),
            webhook_ids: self.webhook_ids().map(str::to_owned).collect(),
            state: self.state,
            orphaned_at: self.orphaned_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            token: self.token.state(),
        }
    }

    /// The record as redb stores it (format unchanged).
    pub fn to_disk(&self, id: u64) -> ChannelDisk {
        ChannelDisk {
            id,
            settings: (*self.settings).clone(),
            owner: self.owner().to_owned(),
            webhook_ids: self.webhook_ids().map(str::to_owned).collect(),
            state: self.state,
            orphaned_at: self.orphaned_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            token: self.token.state(),
        }
    }
}

/// A channel's webhook ids: most channels (every self-service one) have exactly one, held
/// without the slice's own allocation.
#[derive(Clone, Debug, PartialEq)]
enum WebhookIds {
    One(Box<str>),
    /// One, shared with the index of self-service records (`share`).
    Shared(Arc<str>),
    Many(Box<[Box<str>]>),
}

/// [`TokenState`], compactly.
#[derive(Clone, Debug, PartialEq)]
pub(in crate::embedded) struct Token {
    current: Digest,
    /// `None`: the configured digest is the current one (a token never rotated).
    configured: Option<Box<Digest>>,
    source: TokenSource,
    /// `None`: no previous digest, no grace end, never rotated.
    rotation: Option<Box<Rotation>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Rotation {
    previous: Option<Digest>,
    previous_expires_at: Option<Timestamp>,
    rotated_at: Option<Timestamp>,
}

impl Token {
    /// A token as configured: current and configured alike, no rotation.
    pub fn configured(digest: &str) -> Self {
        Token {
            current: Digest::new(digest),
            configured: None,
            source: TokenSource::Config,
            rotation: None,
        }
    }

    pub fn of(t: &TokenState) -> Self {
        let current = Digest::new(&t.current_digest);
        let configured = (t.configured_digest != t.current_digest)
            .then(|| Box::new(Digest::new(&t.configured_digest)));
        let rotation = Rotation {
            previous: t.previous_digest.as_deref().map(Digest::new),
            previous_expires_at: t.previous_expires_at,
            rotated_at: t.rotated_at,
        };
        let none = rotation.previous.is_none()
            && rotation.previous_expires_at.is_none()
            && rotation.rotated_at.is_none();
        Token {
            current,
            configured,
            source: t.source,
            rotation: (!none).then(|| Box::new(rotation)),
        }
    }

    pub fn state(&self) -> TokenState {
        let current_digest = self.current.to_hex();
        let configured_digest = match &self.configured {
            Some(c) => c.to_hex(),
            None => current_digest.clone(),
        };
        let r = self.rotation.as_deref();
        TokenState {
            current_digest,
            source: self.source,
            configured_digest,
            previous_digest: r.and_then(|r| r.previous.as_ref()).map(Digest::to_hex),
            previous_expires_at: r.and_then(|r| r.previous_expires_at),
            rotated_at: r.and_then(|r| r.rotated_at),
        }
    }

    /// Is `digest` the configured token's digest?
    pub fn configured_is(&self, digest: &str) -> bool {
        self.configured
            .as_deref()
            .unwrap_or(&self.current)
            .is(digest)
    }

    /// `new_digest` becomes current; the current one stays valid until `grace_end`. Whatever
    /// was previous (even still in grace) is dropped: at most one previous token.
    pub fn rotate(&mut self, new_digest: &str, grace_end: Timestamp, now: Timestamp) {
        let new = Digest::new(new_digest);
        let old = std::mem::replace(&mut self.current, new);
        if self.configured.is_none() {
            self.configured = Some(Box::new(old.clone()));
        }
        if self.configured.as_deref() == Some(&self.current) {
            self.configured = None;
        }
        self.source = TokenSource::Rotated;
        self.rotation = Some(Box::new(Rotation {
            previous: Some(old),
            previous_expires_at: Some(grace_end),
            rotated_at: Some(now),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_protocol::ids::token_digest;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_micros(1_770_000_000_000_000 + s * 1_000_000)
    }

    fn record(owner: &str, ids: &[&str], token: TokenState) -> ChannelRecord {
        ChannelRecord {
            name: "acc.ch".into(),
            settings: ChannelSettings::default(),
            owner: owner.into(),
            webhook_ids: ids.iter().map(|s| s.to_string()).collect(),
            state: ChannelState::Orphaned,
            orphaned_at: Some(t(3)),
            created_at: t(1),
            updated_at: t(2),
            token,
        }
    }

    fn compact(r: &ChannelRecord) -> ChanRecord {
        ChanRecord::new(
            r.name.as_str().into(),
            Arc::new(r.settings.clone()),
            r.owner.clone(),
            r.webhook_ids.clone(),
            r.state,
            r.orphaned_at,
            r.created_at,
            r.updated_at,
            Token::of(&r.token),
        )
    }

    #[test]
    fn a_record_round_trips_exactly() {
        let (a, b) = (token_digest("a"), token_digest("b"));
        let plain = TokenState {
            current_digest: a.clone(),
            source: TokenSource::Config,
            configured_digest: a.clone(),
            previous_digest: None,
            previous_expires_at: None,
            rotated_at: None,
        };
        let rotated = TokenState {
            current_digest: b.clone(),
            source: TokenSource::Rotated,
            configured_digest: a.clone(),
            previous_digest: Some(a.clone()),
            previous_expires_at: Some(t(9)),
            rotated_at: Some(t(4)),
        };
        let odd = TokenState {
            current_digest: "not-hex".into(),
            configured_digest: a.to_uppercase(),
            previous_digest: Some(String::new()),
            rotated_at: None,
            ..rotated.clone()
        };
        let partial = TokenState {
            rotated_at: Some(t(5)),
            ..plain.clone()
        };
        for token in [plain, rotated, odd, partial] {
            for (owner, ids) in [
                ("wh_1", &["wh_1"][..]),
                ("ns/b", &["ns/a", "ns/b"][..]),
                ("other", &["ns/a"][..]),
                ("", &[][..]),
                ("lonely", &[][..]),
            ] {
                let r = record(owner, ids, token.clone());
                let c = compact(&r);
                assert_eq!(c.to_record(), r);
                assert_eq!(c.owner(), owner);
                let d = c.to_disk(7);
                assert_eq!(
                    (d.owner, d.webhook_ids, d.token),
                    (r.owner, r.webhook_ids, r.token)
                );
            }
        }
    }

    #[test]
    fn a_self_service_record_keeps_its_webhook_id_and_digest_once() {
        let a = token_digest("a");
        let c = compact(&record(
            "wh_1",
            &["wh_1"],
            TokenState {
                current_digest: a.clone(),
                source: TokenSource::Config,
                configured_digest: a.clone(),
                previous_digest: None,
                previous_expires_at: None,
                rotated_at: None,
            },
        ));
        assert_eq!(c.owner, None);
        assert_eq!(c.webhook_ids, WebhookIds::One("wh_1".into()));
        assert_eq!(c.token.configured, None);
        assert_eq!(c.token.rotation, None);
        assert!(matches!(c.token.current, Digest::Sha256(_)));
        assert!(c.token.configured_is(&a));
    }

    #[test]
    fn a_record_shares_equal_strings_and_stays_the_same_record() {
        let tok = TokenState {
            current_digest: token_digest("a"),
            source: TokenSource::Config,
            configured_digest: token_digest("a"),
            previous_digest: None,
            previous_expires_at: None,
            rotated_at: None,
        };
        let r = record("wh_1", &["wh_1"], tok.clone());
        let (name, id): (Arc<str>, Arc<str>) = ("acc.ch".into(), "wh_1".into());
        let mut c = compact(&r);
        c.share(&name, &id);
        assert!(Arc::ptr_eq(&c.name, &name));
        assert!(matches!(&c.webhook_ids, WebhookIds::Shared(s) if Arc::ptr_eq(s, &id)));
        assert_eq!(c.to_record(), r);
        // Unequal strings are not taken; several webhook ids are left alone.
        let mut other = compact(&record("wh_2", &["wh_2"], tok.clone()));
        other.share(&"acc.other".into(), &id);
        assert_eq!(other.to_record(), record("wh_2", &["wh_2"], tok.clone()));
        let many = record("o", &["wh_1", "wh_3"], tok);
        let mut c = compact(&many);
        c.share(&name, &id);
        assert_eq!(c.to_record(), many);
    }

    #[test]
    fn rotating_gives_what_the_token_state_gave() {
        let (a, b, c) = (token_digest("a"), token_digest("b"), token_digest("c"));
        let mut tok = Token::configured(&a);
        tok.rotate(&b, t(60), t(0));
        let s = tok.state();
        assert_eq!(
            (s.current_digest.as_str(), s.configured_digest.as_str()),
            (b.as_str(), a.as_str())
        );
        assert_eq!(s.previous_digest.as_deref(), Some(a.as_str()));
        assert_eq!(
            (s.previous_expires_at, s.rotated_at),
            (Some(t(60)), Some(t(0)))
        );
        assert_eq!(s.source, TokenSource::Rotated);
        assert!(tok.configured_is(&a) && !tok.configured_is(&b));
        // Rotating back to the configured token: current and configured are one again.
        tok.rotate(&a, t(70), t(10));
        let s = tok.state();
        assert_eq!(s.current_digest, a);
        assert_eq!(s.configured_digest, a);
        assert_eq!(s.previous_digest.as_deref(), Some(b.as_str()));
        assert_eq!(tok.configured, None);
        tok.rotate(&c, t(80), t(20));
        assert_eq!(tok.state().configured_digest, a);
        assert_eq!(Token::of(&tok.state()), tok);
    }
}
