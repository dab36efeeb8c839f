//! Snapshot of every frame and body shape of the wire contract, with ids and times fixed so
//! that a change in any JSON shape shows up as a reviewed diff.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure with its message

use connect_protocol::admin::*;
use connect_protocol::error::{ErrorBody, ErrorCode};
use connect_protocol::frames::*;
use connect_protocol::ids::Protocol;
use connect_protocol::message::{StoredMessage, WireMessage};
use connect_protocol::time::Timestamp;
use serde_json::json;

/// serde_json's own output: the wire is written by serde_json, and insta's serializer does
/// not understand `arbitrary_precision` numbers.
fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

fn t() -> Timestamp {
    Timestamp::from_micros(1_770_631_502_004_512)
}

fn stored() -> StoredMessage {
    StoredMessage {
        message_id: "msg_3c9e41a07b5d2f18".into(),
        channel: "team-alpha".into(),
        webhook_id: "github-main".into(),
        namespace: None,
        sequence: 42,
        received_at: t(),
        expires_at: t().plus_seconds(86_400.0),
        method: "POST".into(),
        path: "/webhook/github-main".into(),
        query: "".into(),
        raw_headers: Some(vec![
            ("Host".into(), "relay.example.com".into()),
            ("Content-Type".into(), "application/json".into()),
            ("X-Dup".into(), "a".into()),
            ("X-Dup".into(), "b".into()),
        ]),
        body: Some(br#"{"ref":"refs/heads/main","n":1.50}"#.to_vec()),
        payload: None,
        masked_headers: None,
        content_type: Some("application/json".into()),
        is_json: true,
    }
}

fn wire() -> WireMessage {
    stored().to_wire(1)
}

#[test]
fn wire_message() {
    insta::assert_snapshot!(pretty(&wire()));
}

#[test]
fn wire_message_for_v1_budget() {
    insta::assert_snapshot!(pretty(&wire().without_raw()));
}

#[test]
fn websocket_server_frames() {
    let connected = ServerFrame::Connected(Connected {
        connection_id: "wsc_00000000000000000000000000000000".into(),
        channel: "team-alpha".into(),
        timestamp: Some(t()),
        protocol_version: Some(2),
        heartbeat_interval_seconds: Some(15),
        ack_timeout_seconds: Some(30),
        max_in_flight: Some(100),
    });
    let hb = ServerFrame::Heartbeat(Heartbeat {
        timestamp: t(),
        server_time: Some(t()),
    });
    let err = ServerFrame::Error {
        error: "Invalid JSON".into(),
        code: FrameErrorCode::InvalidJson,
    };
    insta::assert_snapshot!(pretty(&json!([connected, hb, err])));
}

#[test]
fn websocket_client_frames() {
    let frames = vec![
        ClientFrame::Ack {
            message_id: "msg_1".into(),
        },
        ClientFrame::Nack {
            message_id: "msg_1".into(),
            retry: false,
            error: Some("HTTP 404".into()),
        },
        ClientFrame::Heartbeat {
            timestamp: Some(t()),
        },
        ClientFrame::Extend {
            message_id: "msg_1".into(),
        },
    ];
    insta::assert_snapshot!(pretty(&frames));
}

#[test]
fn sse_and_poll_bodies() {
    let poll = PollResponse {
        messages: vec![wire()],
        connection_id: "poll_00000000000000000000000000000000".into(),
        channel: "team-alpha".into(),
        timestamp: t(),
        protocol_version: Some(2),
        ack_timeout_seconds: Some(30),
    };
    insta::assert_snapshot!(pretty(&json!({
        "sse_error": SseError { error: sse_error::TOKEN_REVOKED.into() },
        "poll": poll,
        "ack": AckResponse { status: "ok".into(), message_id: "msg_1".into() },
        "ingress": IngressAccepted { message: "200 OK".into(), message_id: Some("msg_1".into()) },
    })));
}

#[test]
fn sse_data_is_ascii_only() {
    let mut w = wire();
    w.payload = json!({"text": "grüße 😀"});
    insta::assert_snapshot!(connect_protocol::json::to_ascii_json(&w.payload));
}

#[test]
fn error_bodies() {
    let mut schema = ErrorBody::new(
        ErrorCode::SchemaValidationFailed,
        "JSON schema validation failed",
    );
    schema.errors = Some(vec!["/amount: \"x\" is not of type \"number\"".into()]);
    insta::assert_snapshot!(pretty(&json!([
        ErrorBody::new(ErrorCode::QueueFull, "Channel queue full"),
        ErrorBody {
            detail: "Missing authorization token".into(),
            code: None,
            errors: None
        },
        schema,
    ])));
}

#[test]
fn admin_bodies() {
    let stats = ChannelStats {
        channel: "team-alpha".into(),
        messages_queued: 3,
        messages_in_flight: 1,
        messages_delivered: 10,
        messages_dispatched: 12,
        messages_expired: 0,
        messages_dead_lettered: 1,
        connected_clients: 1,
        messages_acked: 10,
        messages_nacked: 2,
        messages_delayed: 0,
        messages_received: 15,
        dead_letters: 1,
        oldest_message_age_seconds: Some(1.5),
    };
    let conn = ConnectionInfo {
        connection_id: "sse_00000000000000000000000000000000".into(),
        connector_id: Some("alice-laptop".into()),
        channel: "team-alpha".into(),
        protocol: Protocol::Sse,
        connected_at: t(),
        last_heartbeat_at: None,
        last_message_at: Some(t()),
        state: ConnectionState::Connected,
        in_flight_count: 1,
        messages_received: 12,
        messages_acked: 10,
        messages_nacked: 2,
        remote_ip: Some("203.0.113.7".into()),
        protocol_version: 2,
        token: TokenGeneration::Current,
    };
    let rotate = RotateTokenResponse {
        channel: "team-alpha".into(),
        new_token: "ch_tok_000000000000000000000000000000000000000000000000".into(),
        old_token_expires_at: t(),
        message: "Old token valid for 3600 seconds grace period".into(),
    };
    let status = StatusResponse {
        channel: "team-alpha".into(),
        connected: true,
        stats: stats.clone(),
        server_time: t(),
    };
    insta::assert_snapshot!(pretty(&json!({
        "stats": stats,
        "connection": conn,
        "rotate": rotate,
        "status": status,
        "bulk_replay": BulkReplayResponse { channel: "team-alpha".into(), replayed: 2, remaining: 0, stopped: None },
        "purge": PurgeResponse { channel: "team-alpha".into(), deleted: 4 },
        "disconnect": DisconnectResponse { status: "disconnected".into(), connection_id: "wsc_x".into() },
    })));
}
