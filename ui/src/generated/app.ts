// Generated from the Rust crate connect-appcore (desktop/appcore/src/ts.rs). Do not edit.
// Regenerate: UPDATE_TS_BINDINGS=1 cargo test -p connect-appcore ts_bindings_are_fresh

import type { ChannelStatus, TargetSettings, Transport } from "./engine";
import type { HostedChannelStats, VerifySpec } from "./protocol";

/** A channel's `protocol`: one transport, or `auto` (the engine's `TransportChoice`). */
export type Protocol = "auto" | Transport;

export type SavedChannel = { key: string, cloud_url: string, channel: string, protocol: Protocol, default_target: string | null, targets: Record<string, TargetSettings>, enabled: boolean, has_token: boolean, has_admin_token: boolean, webhook_url: string, 
/**
 * Created through `/api/v1`: the connector authenticates with the account's API key
 * (`has_token` says whether that key is in the keyring), dead letters need no admin token,
 * and removing it can delete it at the cloud too.
 */
self_service: boolean, };

export type ChannelInput = { key: string | null, cloud_url: string, channel: string, protocol: Protocol, default_target: string | null, targets: Record<string, TargetSettings>, token: string | null, admin_token: string | null, };

export type NotificationLevel = "all" | "errors" | "none";

export type NoTray = "keep_window" | "quit";

export type AppSettings = { autostart: boolean, start_minimized: boolean, notifications: NotificationLevel, history_size: number, 
/**
 * Closing the window destroys the webview instead of hiding it (default true).
 */
light_mode?: boolean, 
/**
 * What closing the window does when the desktop has no tray (default: keep the window).
 */
no_tray?: NoTray, };

export type AppSnapshot = { paused: boolean, channels: Array<ChannelStatus>, 
/**
 * Things the user must be told once (secrets moved out of settings.toml, no keyring...).
 */
notices?: Array<string>, };

export type NavigateView = { "name": "overview" } | { "name": "inspector", key: string | null, messageId: string | null, } | { "name": "dead-letters", key: string | null, } | { "name": "new-channel" };

export type CommandError = { code: string, message: string, };

export type AccountView = { cloud_url: string, account_id: string, name: string, 
/**
 * The API key is in the keyring (false after it was removed there, e.g. by `logout`).
 */
has_key: boolean, };

export type SignInInput = { cloud_url: string, api_key: string, };

export type CreateAccountInput = { cloud_url: string, name: string | null, };

export type NewChannelInput = { cloud_url: string, name: string, target_url: string, verify: VerifySpec | null, };

export type RemoteChannel = { channel: string, webhook_url: string, created_at: string, description: string | null, stats: HostedChannelStats, local_key: string | null, };
