// Types of the desktop app's own IPC commands (desktop/appcore/src/core.rs and desktop/app/src/shell.rs), next to
// the engine's generated engine.ts. Written by hand until the app crate exports them with ts-rs
// in the same shapes; keep it types-only.
import type { ChannelStatus, TargetSettings, Transport } from "./engine";

export type Protocol = "auto" | Transport;

export interface ChannelSettings { key: string; cloud_url: string; channel: string; protocol: Protocol; default_target: string | null; targets: Record<string, TargetSettings>; enabled: boolean; has_token: boolean; has_admin_token: boolean; webhook_url: string; }

/** `token: null` keeps the stored token; `admin_token: null` keeps it, `""` removes it. */
export interface ChannelInput { key: string | null; cloud_url: string; channel: string; protocol: Protocol; default_target: string | null; targets: Record<string, TargetSettings>; token: string | null; admin_token: string | null; }

export type NotificationLevel = "all" | "errors" | "none";

/** What closing the window does when the desktop has no tray (desktop/appcore/src/launch.rs). */
export type NoTray = "keep_window" | "quit";

/** `light_mode`: closing the window destroys the webview (default true). `start_minimized`: the
 * start at login only. `no_tray`: default `keep_window`. */
export interface AppSettings { autostart: boolean; start_minimized: boolean; notifications: NotificationLevel; history_size: number; light_mode?: boolean; no_tray?: NoTray; }

/** Also the payload of the `snapshot` event. `notices`: things to tell the user once. */
export interface AppSnapshot { paused: boolean; channels: ChannelStatus[]; notices?: string[]; }

/** Payload of the `navigate` event and of `take_pending_view` (the tray asks for a view). */
export type NavigateView =
  | { name: "overview" }
  | { name: "inspector"; key: string | null; messageId: string | null }
  | { name: "dead-letters"; key: string | null };
