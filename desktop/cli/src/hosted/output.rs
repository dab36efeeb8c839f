//! What the self-service commands print for a person (`--json` prints the API's own shapes).

use std::io::{self, Write};

use connect_engine::Finished;
use connect_engine::api::Outcome;
use connect_protocol::admin::MessageView;
use connect_protocol::hosted::{Account, HostedChannel};

use super::error::CliError;

pub fn json<T: serde::Serialize>(out: &mut impl Write, v: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| CliError::Failed(e.to_string()))?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// One line of JSON (`listen --json` prints one object per line).
pub fn json_line<T: serde::Serialize>(out: &mut impl Write, v: &T) -> Result<(), CliError> {
    let text = serde_json::to_string(v).map_err(|e| CliError::Failed(e.to_string()))?;
    writeln!(out, "{text}")?;
    Ok(())
}

pub fn account(out: &mut impl Write, cloud_url: &str, a: &Account) -> io::Result<()> {
    let q = &a.quota;
    writeln!(out, "{} ({}) on {cloud_url}", a.name, a.account_id)?;
    writeln!(
        out,
        "  created {}{}",
        a.created_at,
        if a.disabled { "  DISABLED" } else { "" }
    )?;
    writeln!(out, "  channels {} of {}", a.channels, q.max_channels)?;
    writeln!(
        out,
        "  per channel: queue {} webhooks, body {} bytes, {} webhooks/s, ttl up to {} s",
        q.max_queue_size, q.max_body_bytes, q.ingress_per_second, q.max_ttl_seconds
    )
}

pub fn channels(out: &mut impl Write, list: &[HostedChannel]) -> io::Result<()> {
    if list.is_empty() {
        return writeln!(
            out,
            "no channels yet: webhook-connect channels create NAME (or webhook-connect listen)"
        );
    }
    let width = list
        .iter()
        .map(|c| c.channel.len())
        .max()
        .unwrap_or(7)
        .max(7);
    writeln!(
        out,
        "{:<width$}  {:>6}  {:>9}  {:>4}  {:>7}  WEBHOOK URL",
        "CHANNEL", "QUEUED", "IN FLIGHT", "DEAD", "CLIENTS"
    )?;
    for c in list {
        let s = &c.stats;
        writeln!(
            out,
            "{:<width$}  {:>6}  {:>9}  {:>4}  {:>7}  {}",
            c.channel,
            s.messages_queued,
            s.messages_in_flight,
            s.dead_letters,
            s.connected_clients,
            c.webhook_url
        )?;
    }
    Ok(())
}

pub fn dead_letters(
    out: &mut impl Write,
    channel: &str,
    total: u64,
    list: &[MessageView],
) -> io::Result<()> {
    if list.is_empty() {
        return writeln!(out, "{channel}: no dead letters");
    }
    writeln!(
        out,
        "{channel}: {total} dead letter{} (newest first)",
        if total == 1 { "" } else { "s" }
    )?;
    for m in list {
        let reason = m.reason.map(|r| r.as_str()).unwrap_or("-");
        writeln!(
            out,
            "  {}  {}  {} {}  attempts={}  {}{}",
            m.message_id,
            m.dead_lettered_at
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| m.timestamp.to_string()),
            m.method,
            m.path,
            m.delivery_count,
            reason,
            m.last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `13:40:01.512` of an RFC 3339 UTC time (`2026-12-06T13:40:01.512Z`); other text as is.
pub fn time_of_day(rfc3339: &str) -> &str {
    rfc3339
        .split_once('T')
        .map(|(_, t)| t.trim_end_matches('Z'))
        .unwrap_or(rfc3339)
}

/// One line per settled webhook: time, method, path, the target's status (or why it gave
/// none), latency, and the outcome when it was not delivered.
pub fn delivery_line(f: &Finished) -> String {
    let s = &f.summary;
    let answer = match (s.response_status, &f.error) {
        (Some(code), _) => code.to_string(),
        (None, Some(e)) => format!("error: {e}"),
        (None, None) => "no answer".into(),
    };
    let outcome = match s.outcome {
        Outcome::Delivered => "",
        Outcome::Retry => "  (handed back: the cloud retries it)",
        Outcome::DeadLetter => "  (dead-lettered)",
        Outcome::Failed => "  (failed)",
        Outcome::InFlight => "  (in flight)",
    };
    format!(
        "{}  {} {}  -> {}  {:.1} ms{outcome}",
        time_of_day(&s.received_at),
        s.method.as_deref().unwrap_or("-"),
        s.path.as_deref().unwrap_or("-"),
        answer,
        s.duration_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_engine::EventSummary;

    fn finished(status: Option<u16>, outcome: Outcome, error: Option<&str>) -> Finished {
        Finished {
            key: "alice.dev".into(),
            summary: EventSummary {
                message_id: "msg_1".into(),
                webhook_id: "wh_x".into(),
                received_at: "2026-12-06T13:40:01.512Z".into(),
                method: Some("POST".into()),
                path: Some("/webhook/wh_x".into()),
                target_url: Some("http://localhost:3000".into()),
                response_status: status,
                duration_ms: 12.34,
                attempts: 1,
                outcome,
                replay_of: None,
            },
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_delivery_line_has_time_method_path_status_and_latency() {
        assert_eq!(
            delivery_line(&finished(Some(200), Outcome::Delivered, None)),
            "13:40:01.512  POST /webhook/wh_x  -> 200  12.3 ms"
        );
        assert_eq!(
            delivery_line(&finished(None, Outcome::Retry, Some("connection refused"))),
            "13:40:01.512  POST /webhook/wh_x  -> error: connection refused  12.3 ms  (handed back: the cloud retries it)"
        );
        assert_eq!(
            delivery_line(&finished(Some(404), Outcome::DeadLetter, None)),
            "13:40:01.512  POST /webhook/wh_x  -> 404  12.3 ms  (dead-lettered)"
        );
        assert_eq!(time_of_day("not a time"), "not a time");
    }
}
