//! The local modules a webhook may use instead of `webhook_connect`: `log` and `save_to_disk`.

use axum::http::HeaderMap;
use connect_config::{Module, Webhook};

/// Why a local module failed (logged; the sender gets 500 `processing_error`).
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("not a local module")]
    NotLocal,
    #[error(transparent)]
    Save(#[from] connect_config::modules::SaveError),
}

/// Runs `log` or `save_to_disk` to completion (the file is written and synced).
pub fn run_local(
    webhook: &Webhook,
    headers: &HeaderMap,
    body: &[u8],
    parsed: Option<serde_json::Value>,
    content_type: Option<&str>,
) -> Result<(), ModuleError> {
    let header_map: serde_json::Map<String, serde_json::Value> = {
        let mut m = serde_json::Map::new();
        for (k, v) in headers {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            match m.get_mut(k.as_str()) {
                Some(serde_json::Value::String(e)) => {
                    e.push_str(", ");
                    e.push_str(&v);
                }
                _ => {
                    m.insert(k.as_str().to_owned(), serde_json::Value::String(v));
                }
            }
        }
        m
    };
    match &webhook.module {
        Module::Log(cfg) => {
            let payload =
                parsed.unwrap_or_else(|| connect_protocol::json::payload_of(body, content_type));
            let line = connect_config::modules::render_log(
                cfg,
                &webhook.cleanup,
                &connect_config::modules::LogInput {
                    webhook_id: &webhook.id,
                    namespace: webhook.namespace.as_deref(),
                    received_at: &connect_protocol::time::Timestamp::now(),
                    headers: &header_map,
                    payload: &payload,
                },
            );
            println!("{line}");
            Ok(())
        }
        Module::SaveToDisk(cfg) => {
            let doc = connect_config::modules::disk_document(body, parsed.as_ref());
            let stem = uuid::Uuid::new_v4().to_string();
            cfg.write(&webhook.cleanup, &doc, &stem)?;
            Ok(())
        }
        Module::WebhookConnect(_) => Err(ModuleError::NotLocal),
    }
}
