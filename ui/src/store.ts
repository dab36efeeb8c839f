// The one app store: a pure reducer plus a tiny subscribe/dispatch container and a Preact hook.
import { useEffect, useState } from "preact/hooks";
import type { AccountView, AppSettings, AppSnapshot, SavedChannel } from "./generated/app";
import type { ChannelStatus } from "./generated/engine";

export type View =
  | { name: "overview" }
  | { name: "channel-form"; key: string | null }
  | { name: "new-channel" }
  | { name: "inspector"; key: string | null; messageId: string | null }
  | { name: "dead-letters"; key: string | null }
  | { name: "settings" };

export interface Toast {
  id: number;
  kind: "error" | "notice";
  message: string;
}

export interface State {
  view: View;
  snapshot: AppSnapshot | null;
  /** Local time of the last snapshot, to tell a stale view. */
  snapshotAt: number | null;
  channels: SavedChannel[] | null;
  /** Self-service accounts this app is signed in to (null until loaded). */
  accounts: AccountView[] | null;
  settings: AppSettings | null;
  toasts: Toast[];
  nextToastId: number;
  /** Snapshot notices the user closed (the backend may repeat them). */
  dismissedNotices: string[];
}

export type Action =
  | { type: "snapshot"; snapshot: AppSnapshot; at: number }
  | { type: "channels"; channels: SavedChannel[] }
  | { type: "channel-saved"; channel: SavedChannel }
  | { type: "channel-removed"; key: string }
  | { type: "accounts"; accounts: AccountView[] }
  | { type: "settings"; settings: AppSettings }
  | { type: "navigate"; view: View }
  | { type: "toast"; kind: Toast["kind"]; message: string }
  | { type: "dismiss"; id: number }
  | { type: "dismiss-notice"; text: string };

export const initialState: State = {
  view: { name: "overview" },
  snapshot: null,
  snapshotAt: null,
  channels: null,
  accounts: null,
  settings: null,
  toasts: [],
  nextToastId: 1,
  dismissedNotices: [],
};

const MAX_TOASTS = 4;

export function reduce(state: State, action: Action): State {
  switch (action.type) {
    case "snapshot":
      return { ...state, snapshot: action.snapshot, snapshotAt: action.at };
    case "channels":
      return { ...state, channels: action.channels };
    case "channel-saved": {
      const list = state.channels ?? [];
      const exists = list.some((c) => c.key === action.channel.key);
      const channels = exists
        ? list.map((c) => (c.key === action.channel.key ? action.channel : c))
        : [...list, action.channel];
      return { ...state, channels };
    }
    case "channel-removed": {
      const channels = (state.channels ?? []).filter((c) => c.key !== action.key);
      const snapshot = state.snapshot && {
        ...state.snapshot,
        channels: state.snapshot.channels.filter((c) => c.key !== action.key),
      };
      const view = "key" in state.view && state.view.key === action.key ? { name: "overview" as const } : state.view;
      return { ...state, channels, snapshot, view };
    }
    case "accounts":
      return { ...state, accounts: action.accounts };
    case "settings":
      return { ...state, settings: action.settings };
    case "navigate":
      return { ...state, view: action.view };
    case "toast": {
      // The same message twice in a row (e.g. a poll failing every 2 s) is shown once.
      const last = state.toasts[state.toasts.length - 1];
      if (last && last.kind === action.kind && last.message === action.message) return state;
      const toast: Toast = { id: state.nextToastId, kind: action.kind, message: action.message };
      return { ...state, toasts: [...state.toasts, toast].slice(-MAX_TOASTS), nextToastId: state.nextToastId + 1 };
    }
    case "dismiss":
      return { ...state, toasts: state.toasts.filter((t) => t.id !== action.id) };
    case "dismiss-notice":
      return { ...state, dismissedNotices: [...state.dismissedNotices, action.text] };
  }
}

export interface Store {
  get(): State;
  dispatch(action: Action): void;
  subscribe(fn: () => void): () => void;
}

export function createStore(initial: State = initialState): Store {
  let state = initial;
  const subs = new Set<() => void>();
  return {
    get: () => state,
    dispatch(action) {
      const next = reduce(state, action);
      if (next === state) return;
      state = next;
      for (const fn of subs) fn();
    },
    subscribe(fn) {
      subs.add(fn);
      return () => subs.delete(fn);
    },
  };
}

export const store = createStore();

/** Re-renders the component when the selected slice changes (compared with ===). */
export function useStore<T>(select: (s: State) => T, s: Store = store): T {
  const [value, setValue] = useState(() => select(s.get()));
  useEffect(() => {
    const update = () => setValue(() => select(s.get()));
    update();
    return s.subscribe(update);
    // The selector is read on each change; callers pass a pure function of the state.
  }, [s]);
  return value;
}

/** A channel's live status merged with its settings, in settings order (then unknown statuses). */
export interface ChannelView {
  key: string;
  settings: SavedChannel | null;
  status: ChannelStatus | null;
}

export function channelViews(state: Pick<State, "channels" | "snapshot">): ChannelView[] {
  const statuses = new Map((state.snapshot?.channels ?? []).map((c) => [c.key, c]));
  const out: ChannelView[] = (state.channels ?? []).map((c) => ({
    key: c.key,
    settings: c,
    status: statuses.get(c.key) ?? null,
  }));
  const known = new Set(out.map((c) => c.key));
  for (const st of state.snapshot?.channels ?? []) {
    if (!known.has(st.key)) out.push({ key: st.key, settings: null, status: st });
  }
  return out;
}

export function toastError(message: string): Action {
  return { type: "toast", kind: "error", message };
}

export function toastNotice(message: string): Action {
  return { type: "toast", kind: "notice", message };
}
