// Generated from the Rust crate connect-protocol (shared/src/ts.rs). Do not edit.
// Regenerate: UPDATE_TS_BINDINGS=1 cargo test -p connect-protocol ts_bindings_are_fresh

export type Timestamp = string;

export type Protocol = "websocket" | "sse" | "long_poll";

export type MessageState = "ready" | "in_flight" | "delayed" | "dead_lettered";

export type DeadLetterReason = "rejected" | "max_delivery_attempts" | "expired";

export type WebhookType = "webhook";

export type WireMessage = { type: WebhookType, message_id: string, sequence: number, webhook_id: string, timestamp: Timestamp, headers: Record<string, string>, payload: unknown, delivery_count?: number, channel?: string, expires_at?: Timestamp, method?: string, path?: string, query?: string, raw_headers?: Array<[string, string]>, body_b64?: string, content_type: string | null, namespace: string | null, };

export type Connected = { connection_id: string, channel: string, timestamp?: Timestamp, protocol_version?: number, heartbeat_interval_seconds?: number, ack_timeout_seconds?: number, max_in_flight?: number, };

export type Heartbeat = { timestamp: Timestamp, server_time?: Timestamp, };

export type FrameErrorCode = "invalid_json" | "binary_frame" | "unknown_type" | "missing_field" | "invalid_field";

export type ServerFrame = { "type": "connected" } & Connected | { "type": "heartbeat" } & Heartbeat | { "type": "error", error: string, code: FrameErrorCode, };

export type ClientFrame = { "type": "ack", message_id: string, } | { "type": "nack", message_id: string, retry: boolean, error?: string, } | { "type": "heartbeat", timestamp?: Timestamp, } | { "type": "extend", message_id: string, };

export type SseError = { error: string, };

export type PollResponse = { messages: Array<WireMessage>, connection_id: string, channel: string, timestamp: Timestamp, protocol_version?: number, ack_timeout_seconds?: number, };

export type AckResponse = { status: string, message_id: string, };

export type AckStatus = "ack" | "nack" | "extend";

export type StatusResponse = { channel: string, connected: boolean, stats: ChannelStats, server_time: Timestamp, };

export type IngressAccepted = { message: string, message_id?: string, };

export type ErrorBody = { detail: string, code?: ErrorCode, 
/**
 * Only for `json_schema` failures (422): up to 10 messages.
 */
errors?: Array<string>, };

export type ErrorCode = "not_found" | "method_not_allowed" | "invalid_request" | "invalid_headers" | "webhook_not_found" | "webhook_unavailable" | "config_not_loaded" | "payload_too_large" | "body_timeout" | "unauthorized" | "rate_limited" | "invalid_encoding" | "malformed_json" | "json_too_deep" | "string_too_long" | "schema_validation_failed" | "queue_full" | "buffer_unavailable" | "message_too_large" | "not_initialized" | "processing_error" | "forbidden" | "channel_not_found" | "connection_not_found" | "connection_not_on_channel" | "message_not_in_flight" | "dead_letter_not_found" | "max_connections" | "validation_error" | "internal_error" | "quota_exceeded" | "capacity" | "name_taken";

export type ChannelState = "active" | "orphaned";

export type ChannelStats = { channel: string, messages_queued: number, messages_in_flight: number, messages_delivered: number, messages_dispatched: number, messages_expired: number, messages_dead_lettered: number, connected_clients: number, messages_acked: number, messages_nacked: number, messages_delayed: number, messages_received: number, dead_letters: number, oldest_message_age_seconds: number | null, };

export type ChannelInfo = { name: string, webhook_id: string, created_at: Timestamp, ttl_seconds: number, max_queue_size: number, max_connections: number, connected_clients: number, webhook_ids: Array<string>, state: ChannelState, 
/**
 * The owning account of a self-service channel (HOSTED.md §3); absent for configured
 * channels.
 */
owner?: string, };

export type TokenInfo = { source: TokenSource, rotated_at: Timestamp | null, old_token_expires_at: Timestamp | null, };

export type TokenSource = "config" | "rotated";

export type ChannelConfigView = { name: string, webhook_id: string, ttl_seconds: number, max_queue_size: number, max_message_size: number, max_in_flight: number, ack_timeout_seconds: number, max_connections: number, heartbeat_interval_seconds: number, allowed_ips: Array<string> | null, rate_limit_per_second: number | null, created_at: Timestamp, updated_at: Timestamp, max_delivery_attempts: number, retry_backoff_max_seconds: number, dlq_retention_seconds: number, webhook_ids: Array<string>, state: ChannelState, token: TokenInfo, };

export type ChannelDetailStats = { webhook_stats: { [key in string]?: number }, channel: string, messages_queued: number, messages_in_flight: number, messages_delivered: number, messages_dispatched: number, messages_expired: number, messages_dead_lettered: number, connected_clients: number, messages_acked: number, messages_nacked: number, messages_delayed: number, messages_received: number, dead_letters: number, oldest_message_age_seconds: number | null, };

export type ConfigError = { webhook: string, error: string, };

export type ChannelDetail = { name: string, webhook_id: string, created_at: Timestamp, config: ChannelConfigView, stats: ChannelDetailStats, connected_clients: Array<ConnectionInfo>, config_errors: Array<ConfigError>, };

export type ConnectionState = "connected" | "disconnecting";

export type TokenGeneration = "current" | "previous";

export type ConnectionInfo = { connection_id: string, connector_id: string | null, channel: string, protocol: Protocol, connected_at: Timestamp, last_heartbeat_at: Timestamp | null, last_message_at: Timestamp | null, state: ConnectionState, in_flight_count: number, messages_received: number, messages_acked: number, messages_nacked: number, remote_ip: string | null, protocol_version: number, token: TokenGeneration, };

export type WebhookStatsResponse = { channel: string, webhooks: { [key in string]?: PendingCount }, };

export type PendingCount = { pending: number, };

export type OverviewChannel = { webhook_id: string, connected_clients: number, max_connections: number, ttl_seconds: number, messages_queued: number, messages_in_flight: number, dead_letters: number, state: ChannelState, };

export type OverviewHealth = { buffer: boolean, channels_count: number, connections_count: number, };

export type Overview = { timestamp: Timestamp, health: OverviewHealth, total_channels: number, total_connections: number, channels: { [key in string]?: OverviewChannel }, };

export type AdminHealth = { status: string, buffer: boolean, channels_count: number, connections_count: number, timestamp: Timestamp, backend: string, };

export type MessageView = { message_id: string, channel: string, webhook_id: string, timestamp: Timestamp, expires_at: Timestamp, metadata: Record<string, unknown>, headers: Record<string, string>, payload: unknown, sequence: number, delivery_count: number, state: MessageState, method: string, path: string, query: string, content_type: string | null, namespace: string | null, first_attempt_at: Timestamp | null, last_attempt_at: Timestamp | null, last_error: string | null, reason?: DeadLetterReason, dead_lettered_at?: Timestamp, leased_to?: string | null, lease_expires_at?: Timestamp | null, next_attempt_at?: Timestamp | null, raw_headers?: Array<[string, string]>, body_b64?: string, };

export type DeadLetterList = { channel: string, count: number, total: number, messages: Array<MessageView>, };

export type MessageList = { channel: string, count: number, messages: Array<MessageView>, };

export type RotateTokenRequest = { grace_period_seconds?: number, };

export type RotateTokenResponse = { channel: string, new_token: string, old_token_expires_at: Timestamp, message: string, };

export type DisconnectResponse = { status: string, connection_id: string, };

export type DeadLetterActionResponse = { status: string, channel: string, message_id: string, };

export type BulkReplayResponse = { channel: string, replayed: number, remaining: number, stopped: string | null, };

export type PurgeResponse = { channel: string, deleted: number, };

export type HealthComponents = { config_manager: string, config_backend: string, etcd: string, buffer: string, buffer_backend: string, webhook_connect: string, vault: string, };

export type Health = { status: string, service: string, version: string, timestamp: number, components: HealthComponents, webhooks_active: number, webhooks_disabled: number, config_errors: number, };

export type SelfServiceMode = "off" | "keys" | "open";

export type Quota = { max_channels: number, max_queue_size: number, max_body_bytes: number, ingress_per_second: number, max_ttl_seconds: number, };

export type QuotaPatch = { max_channels?: number, max_queue_size?: number, max_body_bytes?: number, ingress_per_second?: number, max_ttl_seconds?: number, };

export type Account = { account_id: string, name: string, created_at: Timestamp, disabled: boolean, quota: Quota, 
/**
 * Number of channels the account owns.
 */
channels: number, };

export type AccountCreated = { api_key: string, account_id: string, name: string, created_at: Timestamp, disabled: boolean, quota: Quota, 
/**
 * Number of channels the account owns.
 */
channels: number, };

export type CreateAccountRequest = { name: string, quota?: QuotaPatch, };

export type SignUpRequest = { name?: string, };

export type UpdateAccountRequest = { quota?: QuotaPatch, disabled?: boolean, };

export type AccountList = { accounts: Array<Account>, };

export type KeyRotated = { account_id: string, api_key: string, };

export type AccountDeleted = { deleted: string, channels_deleted: number, };

export type VerifyPreset = "github" | "stripe" | "shopify" | "slack" | "standard-webhooks" | "hmac-sha256";

export type VerifySpec = { preset: VerifyPreset, secret: string, header?: string, };

export type VerifyView = { preset: VerifyPreset, secret_set: boolean, header?: string, };

export type CreateChannelRequest = { name: string, verify?: VerifySpec, ttl_seconds?: number, max_queue_size?: number, max_delivery_attempts?: number, description?: string, };

export type UpdateChannelRequest = { verify?: VerifySpec | null, ttl_seconds?: number, max_queue_size?: number, max_delivery_attempts?: number, description?: string, };

export type HostedChannelSettings = { ttl_seconds: number, max_queue_size: number, max_delivery_attempts: number, max_body_bytes: number, ingress_per_second: number, verify?: VerifyView, };

export type ChannelCreated = { channel: string, webhook_id: string, webhook_url: string, channel_token: string, created_at: Timestamp, description: string | null, ttl_seconds: number, max_queue_size: number, max_delivery_attempts: number, max_body_bytes: number, ingress_per_second: number, verify?: VerifyView, };

export type HostedChannelStats = { messages_queued: number, messages_in_flight: number, dead_letters: number, connected_clients: number, messages_received: number, messages_acked: number, };

export type HostedChannel = { channel: string, webhook_id: string, webhook_url: string, created_at: Timestamp, description: string | null, stats: HostedChannelStats, };

export type HostedChannelList = { channels: Array<HostedChannel>, };

export type HostedChannelDetail = { connected_clients: Array<ConnectionInfo>, channel: string, webhook_id: string, webhook_url: string, created_at: Timestamp, description: string | null, stats: HostedChannelStats, ttl_seconds: number, max_queue_size: number, max_delivery_attempts: number, max_body_bytes: number, ingress_per_second: number, verify?: VerifyView, };

export type ChannelDeleted = { deleted: string, messages_discarded: number, };
