//! Reading `GET /connect/status/{channel}` (§5.5): the queue depth shown in the status, and the
//! check that tells a protocol-v1 cloud apart **before** long-polling it.
//!
//! Why a check before polling: a v1 cloud's long-poll hands messages out without any way to
//! settle them (its ACKs answer 404), and the reference cloud with its Redis buffer then keeps
//! them pending and never gives them out again. Polling once to learn the version would take
//! up to `max_messages` messages. The status answer takes nothing and tells the version the
//! same way every `/connect/*` answer does (§1.2 rule 4): a v2 cloud sends
//! `X-Webhook-Connect-Version: 2`; a v1 cloud neither that header nor any v2 key.

use std::time::SystemTime;

use connect_protocol::status::StatusReading;

use crate::api::QueueDepth;

/// What the status answer says.
#[derive(Debug)]
pub(crate) struct CloudStatus {
    /// The cloud speaks protocol version 2 (header or v2 keys).
    pub v2: bool,
    pub reading: StatusReading,
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StatusError {
    #[error("HTTP {0}: invalid channel token")]
    Auth(u16),
    #[error("/connect/status answered HTTP {0}")]
    Status(u16),
    #[error("/connect/status: {0}")]
    Request(String),
}

/// Sends `req` (a prepared `GET /connect/status/{channel}`) and reads the answer.
pub(crate) async fn read(req: reqwest::RequestBuilder) -> Result<CloudStatus, StatusError> {
    let resp = req
        .send()
        .await
        .map_err(|e| StatusError::Request(crate::channel::error_chain(&e)))?;
    let s = resp.status().as_u16();
    if s == 401 || s == 403 {
        return Err(StatusError::Auth(s));
    }
    if !resp.status().is_success() {
        return Err(StatusError::Status(s));
    }
    let header_v2 = crate::transport::is_v2(resp.headers());
    let reading: StatusReading = resp
        .json()
        .await
        .map_err(|e| StatusError::Request(format!("unreadable answer: {e}")))?;
    Ok(CloudStatus {
        v2: header_v2 || reading.stats.has_v2_keys(),
        reading,
    })
}

impl CloudStatus {
    /// The queue depth for the channel status.
    pub fn queue_depth(&self) -> QueueDepth {
        let s = &self.reading.stats;
        QueueDepth {
            pending: s.messages_queued,
            in_flight: s.messages_in_flight,
            delayed: s.messages_delayed.unwrap_or(0),
            dead_letters: s.dead_letter_count(),
            connected: self.reading.connected.unwrap_or(true),
            at: crate::history::rfc3339(SystemTime::now()),
        }
    }
}
