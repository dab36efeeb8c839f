// Generated from the Rust crate connect-engine (desktop/engine/src/api.rs). Do not edit.
// Regenerate: UPDATE_TS_BINDINGS=1 cargo test -p connect-engine ts_bindings_are_fresh

import type { Protocol } from "./protocol";

/** The transport a channel is on (the wire contract's `Protocol`). */
export type Transport = Protocol;

export type LinkState = "connecting" | "connected" | "auth_failed" | "degraded" | "paused" | "stopped" | "disconnected";

export type Outcome = "delivered" | "retry" | "dead_letter" | "failed" | "in_flight";

export type DeliveryCounters = { received: number, delivered: number, failed: number, retried: number, dead_lettered: number, };

export type Latency = { p50_ms: number | null, p90_ms: number | null, p99_ms: number | null, samples: number, };

export type SeriesPoint = { 
/**
 * Bucket start, Unix milliseconds.
 */
t_ms: number, delivered: number, failed: number, p50_ms: number | null, p99_ms: number | null, };

export type QueueDepth = { pending: number, in_flight: number, delayed: number, dead_letters: number, connected: boolean, 
/**
 * When it was read (RFC 3339).
 */
at: string, };

export type ChannelStatus = { 
/**
 * Engine-unique key (the channel name unless the app gave its own).
 */
key: string, channel: string, state: LinkState, transport: Protocol | null, connection_id: string | null, 
/**
 * Why the channel is not (fully) connected. Cleared when a connection is established and
 * when the channel is paused or disconnected: it is shown only while it describes the
 * current state.
 */
last_error: string | null, 
/**
 * When `last_error` happened (RFC 3339).
 */
last_error_at?: string, connection_attempts: number, counters: DeliveryCounters, in_flight: number, latency: Latency, series: Array<SeriesPoint>, queue: QueueDepth | null, 
/**
 * Last message received (RFC 3339).
 */
last_event_at: string | null, };

export type EventSummary = { message_id: string, webhook_id: string, 
/**
 * When the connector received it (RFC 3339).
 */
received_at: string, method: string | null, path: string | null, target_url: string | null, response_status: number | null, duration_ms: number, attempts: number, outcome: Outcome, 
/**
 * For a replay: the message it replays.
 */
replay_of: string | null, };

export type Attempt = { at: string, target_url: string, status: number | null, duration_ms: number, response_headers: Array<[string, string]>, response_body_excerpt: string, error: string | null, };

export type RequestView = { method: string | null, path: string | null, query: string | null, headers: Array<[string, string]>, 
/**
 * The body as text when it is valid UTF-8.
 */
body_text: string | null, body_base64: string, body_len: number, 
/**
 * True when the history kept only the first bytes (replay needs an edited body then).
 */
body_truncated: boolean, content_type: string | null, };

export type EventDetail = { summary: EventSummary, request: RequestView, attempts: Array<Attempt>, };

export type ReplayRequest = { key: string, message_id: string, 
/**
 * Another URL instead of the event's target.
 */
target_url: string | null, 
/**
 * Replace every original header (hop-by-hop ones are still dropped).
 */
headers: Array<[string, string]> | null, 
/**
 * Replace the body.
 */
body_base64: string | null, };

export type TargetSettings = { url: string, };
