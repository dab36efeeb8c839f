//! Self-service hosting (HOSTED.md §2–§3): accounts with API keys, and the channels accounts
//! own. The records live in the buffer backend ([`connect_buffer::hosted`]); nothing here is
//! cached except the compiled ingress definition of a channel, so a change made through one
//! replica holds on every replica at its next request.
//!
//! Layout: this file ([`Hosted`], [`HostedError`]); [`keys`] (API keys, ids, tokens);
//! [`accounts`] (create, update, rotate, delete, key authentication, the sign-up limit);
//! [`channels`] (create, views, update, delete, buffer registration); [`definition`] (the
//! webhook definition ingress runs for a self-service channel), [`ingress`] (its lookup);
//! [`bodies`] (the request bodies as handlers read them, for the fuzz target); [`signup`] (the
//! per-client sign-up windows of one process).

pub mod accounts;
pub mod bodies;
pub mod channels;
pub mod definition;
pub mod ingress;
pub mod keys;
pub mod signup;

use std::sync::Arc;

use connect_buffer::{AccountRecord, Buffer, BufferError};
use connect_protocol::hosted::{Account, SelfServiceMode};
use parking_lot::Mutex;

use crate::runtime::Runtime;
use crate::settings::hosted::HostedSettings;

/// Why a self-service request is refused. The HTTP layer maps each to its documented status.
#[derive(Debug, thiserror::Error)]
pub enum HostedError {
    /// Unknown, revoked or malformed key, or a disabled account: one answer for all.
    #[error("unauthorized")]
    Unauthorized,
    /// Missing, or owned by another account, or a configured channel: one answer for all.
    #[error("not found")]
    NotFound,
    /// Admin API: no account with this id.
    #[error("account not found")]
    AccountNotFound,
    #[error("{0}")]
    NameTaken(String),
    #[error("{0}")]
    QuotaExceeded(String),
    /// A request field is invalid (422); the text names the field (and the cap).
    #[error("{0}")]
    Invalid(String),
    /// Open sign-up is not enabled (403).
    #[error("account creation is disabled on this cloud")]
    SignUpDisabled,
    /// `WEBHOOK_CONNECT_MAX_ACCOUNTS` reached (503).
    #[error("this cloud accepts no new accounts")]
    Capacity,
    /// Too many sign-ups from one client IP; retry after the seconds given (429).
    #[error("too many accounts created from this address")]
    RateLimited(u64),
    #[error(transparent)]
    Buffer(#[from] BufferError),
}

pub type HostedResult<T> = Result<T, HostedError>;

/// The self-service domain: accounts, their channels, the sign-up limit.
pub struct Hosted {
    rt: Arc<Runtime>,
    /// Sign-ups per client IP (open mode), this process's window.
    signups: Mutex<signup::SignupWindows>,
    /// Compiled ingress definitions by webhook id (see [`ingress`]).
    compiled: definition::Compiled,
}

impl Hosted {
    pub fn new(rt: Arc<Runtime>) -> Self {
        Hosted {
            rt,
            signups: Mutex::new(signup::SignupWindows::new(signup::MAX_TRACKED)),
            compiled: definition::Compiled::default(),
        }
    }

    pub fn settings(&self) -> &HostedSettings {
        &self.rt.settings().hosted
    }

    pub fn mode(&self) -> SelfServiceMode {
        self.settings().self_service
    }

    fn buffer(&self) -> &Arc<dyn Buffer> {
        self.rt.buffer()
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// `PUBLIC_URL/webhook/{id}`.
    pub fn webhook_url(&self, webhook_id: &str) -> String {
        format!(
            "{}/webhook/{webhook_id}",
            self.settings().public_url().unwrap_or("")
        )
    }

    /// The wire view of an account, with its channel count.
    pub async fn account_view(&self, a: &AccountRecord) -> HostedResult<Account> {
        let channels = self.buffer().account_channels(&a.account_id).await?.len() as u64;
        Ok(Account {
            account_id: a.account_id.clone(),
            name: a.name.clone(),
            created_at: a.created_at,
            disabled: a.disabled,
            quota: a.quota,
            channels,
        })
    }
}
