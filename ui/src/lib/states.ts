// How each connection state is shown.
import type { LinkState, Outcome, Transport } from "../generated/engine";

export const STATE_INFO: Record<LinkState, { label: string; tone: "ok" | "warn" | "bad" | "idle" | "busy"; help: string }> = {
  connected: { label: "Connected", tone: "ok", help: "Receiving webhooks." },
  connecting: { label: "Connecting", tone: "busy", help: "Opening a connection to the cloud." },
  degraded: { label: "Degraded", tone: "warn", help: "Connected on a fallback transport or after errors." },
  auth_failed: { label: "Auth failed", tone: "bad", help: "The cloud rejected the channel token: edit the channel and enter a new one." },
  paused: { label: "Paused", tone: "idle", help: "Forwarding is paused; messages wait in the cloud." },
  // The engine's meanings (desktop/engine/src/api.rs `LinkState`): `disconnected` is the user's
  // Disconnect of this channel; `stopped` is for good (token revoked, channel removed, shutting down).
  stopped: { label: "Stopped", tone: "bad", help: "Stopped for good: the token was revoked, the channel removed, or the app is shutting down." },
  disconnected: { label: "Disconnected", tone: "idle", help: "Disconnected by you: Connect forwards again." },
};

export const TRANSPORT_LABEL: Record<Transport, string> = {
  websocket: "WebSocket",
  sse: "SSE",
  long_poll: "Long-poll",
};

export const OUTCOME_INFO: Record<Outcome, { label: string; tone: "ok" | "warn" | "bad" | "busy" }> = {
  delivered: { label: "Delivered", tone: "ok" },
  retry: { label: "Retry", tone: "warn" },
  dead_letter: { label: "Dead letter", tone: "bad" },
  failed: { label: "Failed", tone: "bad" },
  in_flight: { label: "In flight", tone: "busy" },
};
