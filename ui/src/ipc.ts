// Every call to the Rust backend goes through this module, so tests can mock one place.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  AccountView,
  AppSettings,
  AppSnapshot,
  ChannelInput,
  CommandError,
  CreateAccountInput,
  NavigateView,
  NewChannelInput,
  RemoteChannel,
  SavedChannel,
  SignInInput,
} from "./generated/app";
import type { EventDetail, EventSummary, ReplayRequest } from "./generated/engine";
import type { DeadLetterList } from "./generated/protocol";

/**
 * A failed command. `code` tells the kind of failure (`admin_auth`: the admin token was refused,
 * `network`: the cloud could not be reached, `no_token`, `invalid_input`...; see
 * desktop/appcore/src/error.rs), `message` is for the user. `unknown` when the rejection carried
 * no code.
 */
export class IpcError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "IpcError";
    this.code = code;
  }
}

/** Commands reject with a `CommandError` `{ code, message }`. */
export function isCommandError(e: unknown): e is CommandError {
  return !!e && typeof e === "object" && "code" in e && typeof e.code === "string" && "message" in e && typeof e.message === "string";
}

/** The machine code of a failed call (`unknown` when it has none). */
export function errorCode(e: unknown): string {
  if (e instanceof IpcError || isCommandError(e)) return e.code;
  return "unknown";
}

/** The text of any rejection, so the UI can show it. */
export function errorMessage(e: unknown): string {
  if (typeof e === "string") return e;
  if (e instanceof Error) return e.message;
  if (e && typeof e === "object" && "message" in e && typeof e.message === "string") return e.message;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    throw isCommandError(e) ? new IpcError(e.code, e.message) : new IpcError("unknown", errorMessage(e));
  }
}

export const ipc = {
  getSnapshot: () => call<AppSnapshot>("get_snapshot"),
  onSnapshot: (handler: (s: AppSnapshot) => void): Promise<UnlistenFn> =>
    listen<AppSnapshot>("snapshot", (event) => handler(event.payload)),

  listChannels: () => call<SavedChannel[]>("list_channels"),
  saveChannel: (input: ChannelInput) => call<SavedChannel>("save_channel", { input }),
  /** `deleteAtCloud`: a self-service channel is deleted at its cloud too (its URL stops working). */
  removeChannel: (key: string, deleteAtCloud = false) => call<null>("remove_channel", { key, delete_at_cloud: deleteAtCloud }),

  // Self-service (HOSTED.md §5). API keys go to the backend once and never come back.
  listAccounts: () => call<AccountView[]>("list_accounts"),
  signIn: (input: SignInInput) => call<AccountView>("sign_in", { input }),
  createAccount: (input: CreateAccountInput) => call<AccountView>("create_account", { input }),
  signOut: (cloud_url: string) => call<null>("sign_out", { cloud_url }),
  listRemoteChannels: (cloud_url: string) => call<RemoteChannel[]>("list_remote_channels", { cloud_url }),
  createChannel: (input: NewChannelInput) => call<SavedChannel>("create_channel", { input }),
  useRemoteChannel: (cloud_url: string, channel: string, target_url: string) =>
    call<SavedChannel>("use_remote_channel", { cloud_url, channel, target_url }),
  setChannelEnabled: (key: string, enabled: boolean) => call<null>("set_channel_enabled", { key, enabled }),
  setPaused: (paused: boolean) => call<null>("set_paused", { paused }),

  listEvents: (key: string) => call<EventSummary[]>("list_events", { key }),
  getEvent: (key: string, message_id: string) => call<EventDetail>("get_event", { key, message_id }),
  replayEvent: (request: ReplayRequest) => call<EventDetail>("replay_event", { request }),

  listDeadLetters: (key: string, limit: number, offset: number) =>
    call<DeadLetterList>("list_dead_letters", { key, limit, offset }),
  replayDeadLetter: (key: string, message_id: string) => call<unknown>("replay_dead_letter", { key, message_id }),
  deleteDeadLetter: (key: string, message_id: string) => call<unknown>("delete_dead_letter", { key, message_id }),
  purgeDeadLetters: (key: string) => call<number>("purge_dead_letters", { key }),

  getSettings: () => call<AppSettings>("get_settings"),
  /** Resolves to the settings as stored (null from a backend that answers nothing). */
  saveSettings: (settings: AppSettings) => call<AppSettings | null>("save_settings", { settings }),

  /** The view the tray asked for before the window existed; asked once at start. */
  takePendingView: () => call<NavigateView | null>("take_pending_view"),
  onNavigate: (handler: (v: NavigateView) => void): Promise<UnlistenFn> =>
    listen<NavigateView>("navigate", (event) => handler(event.payload)),
  /** Closes the window like its close button (light mode: the webview is destroyed). */
  closeWindow: () => call<null>("close_window"),
  /** Quits the app like the tray's Quit (forwarding stops). */
  quitApp: () => call<null>("quit_app"),
};

export type Ipc = typeof ipc;
