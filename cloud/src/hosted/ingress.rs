//! Ingress lookup of a self-service webhook: read from the store on every request (so a
//! deletion or a change through any replica holds at once), its definition compiled once
//! per record and quota ([`crate::hosted::definition`]).

use std::sync::Arc;

use connect_buffer::BufferError;
use connect_config::Webhook;

use crate::hosted::Hosted;
use crate::hosted::definition::compile;

/// A self-service webhook as ingress needs it.
pub struct IngressTarget {
    pub webhook: Arc<Webhook>,
    /// The account's body cap (within the cloud's).
    pub max_body_bytes: u64,
}

impl Hosted {
    /// The self-service webhook `id`, read from the store (so a deletion through any replica
    /// holds at once). `None`: no such webhook, its account is disabled or gone, or
    /// self-service is off.
    pub async fn ingress_target(&self, id: &str) -> Result<Option<IngressTarget>, BufferError> {
        if self.mode() == connect_protocol::hosted::SelfServiceMode::Off
            || !id.starts_with(connect_protocol::hosted::WEBHOOK_ID_PREFIX)
        {
            return Ok(None);
        }
        let Some(rec) = self.buffer().hosted_channel_by_webhook(id).await? else {
            self.compiled.forget(id);
            return Ok(None);
        };
        let Some(a) = self.buffer().account(&rec.account_id).await? else {
            return Ok(None);
        };
        if a.disabled {
            return Ok(None);
        }
        let webhook = match self.compiled.get(&rec, &a.quota) {
            Some(w) => w,
            None => match compile(&rec, &a.quota) {
                Ok(w) => {
                    let w = Arc::new(w);
                    self.compiled.put(&rec, &a.quota, w.clone());
                    w
                }
                Err(e) => {
                    tracing::warn!(channel = %rec.channel, error = %e, "self-service webhook definition invalid");
                    return Ok(None);
                }
            },
        };
        Ok(Some(IngressTarget {
            webhook,
            max_body_bytes: a
                .quota
                .max_body_bytes
                .min(self.rt.settings().max_body_bytes),
        }))
    }
}
