import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AppSnapshot, NavigateView } from "../../src/generated/app";
import { POLL_INTERVAL_MS, startLive } from "../../src/live";
import { createStore } from "../../src/store";

const snap = (paused: boolean): AppSnapshot => ({ paused, channels: [] });

function deps() {
  let handler: ((s: AppSnapshot) => void) | null = null;
  const ipc = {
    getSnapshot: vi.fn(() => Promise.resolve(snap(false))),
    onSnapshot: vi.fn((h: (s: AppSnapshot) => void) => {
      handler = h;
      return Promise.resolve(() => {
        handler = null;
      });
    }),
    listChannels: vi.fn(() => Promise.resolve([])),
    getSettings: vi.fn(() => Promise.resolve({ autostart: false, start_minimized: true, notifications: "errors" as const, history_size: 1000 })),
  };
  return { ipc, emit: (s: AppSnapshot) => handler?.(s), hasListener: () => handler !== null };
}

describe("live snapshot", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("loads everything once, then relies on events while they arrive", async () => {
    const d = deps();
    const store = createStore();
    const live = startLive({ ipc: d.ipc, store });
    await vi.advanceTimersByTimeAsync(0);
    expect(d.ipc.getSnapshot).toHaveBeenCalledTimes(1);
    expect(store.get().channels).toEqual([]);
    expect(store.get().settings?.history_size).toBe(1000);
    for (let i = 0; i < 5; i++) {
      d.emit(snap(i % 2 === 0));
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(d.ipc.getSnapshot).toHaveBeenCalledTimes(1);
    expect(store.get().snapshot?.paused).toBe(true);
    live.stop();
    expect(d.hasListener()).toBe(false);
  });

  it("polls every 2 s when no event arrives", async () => {
    const d = deps();
    const store = createStore();
    const live = startLive({ ipc: d.ipc, store });
    await vi.advanceTimersByTimeAsync(POLL_INTERVAL_MS * 3 + 10);
    expect(d.ipc.getSnapshot).toHaveBeenCalledTimes(4);
    live.stop();
    await vi.advanceTimersByTimeAsync(POLL_INTERVAL_MS * 3);
    expect(d.ipc.getSnapshot).toHaveBeenCalledTimes(4);
  });

  it("opens the view the tray asked for, before and after start", async () => {
    const d = deps();
    let nav: ((v: NavigateView) => void) | null = null;
    const ipc = {
      ...d.ipc,
      takePendingView: vi.fn(() => Promise.resolve<NavigateView | null>({ name: "dead-letters", key: "a" })),
      onNavigate: vi.fn((h: (v: NavigateView) => void) => {
        nav = h;
        return Promise.resolve(() => undefined);
      }),
    };
    const store = createStore();
    const live = startLive({ ipc, store });
    await vi.advanceTimersByTimeAsync(0);
    expect(store.get().view).toEqual({ name: "dead-letters", key: "a" });
    (nav as ((v: NavigateView) => void) | null)?.({ name: "inspector", key: "b", messageId: "m" });
    expect(store.get().view).toEqual({ name: "inspector", key: "b", messageId: "m" });
    live.stop();
  });

  it("shows failures as an error toast", async () => {
    const d = deps();
    d.ipc.getSnapshot.mockImplementation(() => Promise.reject(new Error("engine not running")));
    d.ipc.listChannels.mockImplementation(() => Promise.reject(new Error("settings file unreadable")));
    const store = createStore();
    const live = startLive({ ipc: d.ipc, store });
    await vi.advanceTimersByTimeAsync(0);
    expect(store.get().toasts.map((t) => t.message)).toEqual([
      "Could not read the status: engine not running",
      "Could not load the channels: settings file unreadable",
    ]);
    live.stop();
  });
});
