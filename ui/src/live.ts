// Keeps the store's snapshot fresh: the backend emits `snapshot` about once a second; when no
// event arrived for a while (events not wired, or the webview was suspended) we poll instead.
import type { AppSnapshot, NavigateView } from "./generated/app";
import type { Ipc } from "./ipc";
import { errorMessage } from "./ipc";
import type { Store } from "./store";
import { toastError } from "./store";

export const POLL_INTERVAL_MS = 2000;

export interface LiveDeps {
  ipc: Pick<Ipc, "getSnapshot" | "onSnapshot" | "listChannels" | "getSettings"> &
    Partial<Pick<Ipc, "takePendingView" | "onNavigate" | "listAccounts">>;
  store: Store;
  now?: () => number;
  setInterval?: (fn: () => void, ms: number) => unknown;
  clearInterval?: (h: unknown) => void;
}

export interface Live {
  stop(): void;
  /** Fetches the snapshot now (after a command that changes it). */
  refresh(): Promise<void>;
}

export function startLive(deps: LiveDeps): Live {
  const now = deps.now ?? (() => Date.now());
  const setI = deps.setInterval ?? ((fn, ms) => setInterval(fn, ms));
  const clearI = deps.clearInterval ?? ((h) => clearInterval(h as ReturnType<typeof setInterval>));
  let lastEventAt = 0;
  let stopped = false;
  let unlisten: (() => void) | null = null;
  let polling = false;

  const apply = (snapshot: AppSnapshot) => {
    if (!stopped) deps.store.dispatch({ type: "snapshot", snapshot, at: now() });
  };

  const refresh = async () => {
    if (polling) return;
    polling = true;
    try {
      apply(await deps.ipc.getSnapshot());
    } catch (e) {
      deps.store.dispatch(toastError(`Could not read the status: ${errorMessage(e)}`));
    } finally {
      polling = false;
    }
  };

  deps.ipc
    .onSnapshot((s) => {
      lastEventAt = now();
      apply(s);
    })
    .then((fn) => {
      if (stopped) fn();
      else unlisten = fn;
    })
    .catch(() => {
      // No event support: the poll below carries the view.
    });

  // The tray opens the window on a view (a failing channel's inspector, its dead letters).
  let unlistenNav: (() => void) | null = null;
  const go = (view: NavigateView) => {
    if (!stopped) deps.store.dispatch({ type: "navigate", view });
  };
  deps.ipc
    .onNavigate?.(go)
    .then((fn) => {
      if (stopped) fn();
      else unlistenNav = fn;
    })
    .catch(() => undefined);
  deps.ipc
    .takePendingView?.()
    .then((v) => {
      if (v) go(v);
    })
    .catch(() => undefined);

  const timer = setI(() => {
    if (now() - lastEventAt >= POLL_INTERVAL_MS) void refresh();
  }, POLL_INTERVAL_MS);

  void refresh();
  deps.ipc
    .listChannels()
    .then((channels) => deps.store.dispatch({ type: "channels", channels }))
    .catch((e: unknown) => deps.store.dispatch(toastError(`Could not load the channels: ${errorMessage(e)}`)));
  deps.ipc
    .listAccounts?.()
    .then((accounts) => deps.store.dispatch({ type: "accounts", accounts }))
    .catch((e: unknown) => deps.store.dispatch(toastError(`Could not load the accounts: ${errorMessage(e)}`)));
  deps.ipc
    .getSettings()
    .then((settings) => deps.store.dispatch({ type: "settings", settings }))
    .catch((e: unknown) => deps.store.dispatch(toastError(`Could not load the settings: ${errorMessage(e)}`)));

  return {
    stop() {
      stopped = true;
      clearI(timer);
      unlisten?.();
      unlistenNav?.();
    },
    refresh,
  };
}
