import { describe, expect, it, vi } from "vitest";
import type { SavedChannel } from "../../src/generated/app";
import type { ChannelStatus } from "../../src/generated/engine";
import { channelViews, createStore, initialState, reduce, type State } from "../../src/store";

const settings = (key: string): SavedChannel => ({
  key, cloud_url: "https://r", channel: key, protocol: "auto", default_target: "http://l/", targets: {},
  enabled: true, has_token: true, has_admin_token: false, webhook_url: "", self_service: false,
});
const status = (key: string): ChannelStatus => ({
  key, channel: key, state: "connected", transport: "websocket", connection_id: null, last_error: null,
  connection_attempts: 1, counters: { received: 0, delivered: 0, failed: 0, retried: 0, dead_lettered: 0 },
  in_flight: 0, latency: { p50_ms: null, p90_ms: null, p99_ms: null, samples: 0 }, series: [], queue: null,
  last_event_at: null,
});

describe("reducer", () => {
  it("stores snapshots with their arrival time", () => {
    const s = reduce(initialState, { type: "snapshot", snapshot: { paused: true, channels: [] }, at: 5 });
    expect(s.snapshot?.paused).toBe(true);
    expect(s.snapshotAt).toBe(5);
  });
  it("adds or replaces a saved channel", () => {
    let s = reduce(initialState, { type: "channels", channels: [settings("a")] });
    s = reduce(s, { type: "channel-saved", channel: { ...settings("a"), enabled: false } });
    expect(s.channels?.map((c) => [c.key, c.enabled])).toEqual([["a", false]]);
    s = reduce(s, { type: "channel-saved", channel: settings("b") });
    expect(s.channels?.map((c) => c.key)).toEqual(["a", "b"]);
  });
  it("drops a removed channel everywhere and leaves its views", () => {
    let s: State = {
      ...initialState,
      channels: [settings("a"), settings("b")],
      snapshot: { paused: false, channels: [status("a"), status("b")] },
      view: { name: "inspector", key: "a", messageId: "m1" },
    };
    s = reduce(s, { type: "channel-removed", key: "a" });
    expect(s.channels?.map((c) => c.key)).toEqual(["b"]);
    expect(s.snapshot?.channels.map((c) => c.key)).toEqual(["b"]);
    expect(s.view).toEqual({ name: "overview" });
    const other = reduce({ ...s, view: { name: "dead-letters", key: "b" } }, { type: "channel-removed", key: "zzz" });
    expect(other.view).toEqual({ name: "dead-letters", key: "b" });
  });
  it("shows a repeated toast once and keeps at most four", () => {
    let s = reduce(initialState, { type: "toast", kind: "error", message: "boom" });
    const same = reduce(s, { type: "toast", kind: "error", message: "boom" });
    expect(same).toBe(s);
    for (let i = 0; i < 6; i++) s = reduce(s, { type: "toast", kind: "notice", message: `n${i}` });
    expect(s.toasts.map((t) => t.message)).toEqual(["n2", "n3", "n4", "n5"]);
    const id = s.toasts[0]?.id ?? -1;
    expect(reduce(s, { type: "dismiss", id }).toasts).toHaveLength(3);
  });
});

describe("store", () => {
  it("notifies subscribers on change only", () => {
    const store = createStore();
    const fn = vi.fn();
    const off = store.subscribe(fn);
    store.dispatch({ type: "navigate", view: { name: "settings" } });
    store.dispatch({ type: "toast", kind: "error", message: "x" });
    store.dispatch({ type: "toast", kind: "error", message: "x" });
    expect(fn).toHaveBeenCalledTimes(2);
    off();
    store.dispatch({ type: "navigate", view: { name: "overview" } });
    expect(fn).toHaveBeenCalledTimes(2);
  });
});

describe("channelViews", () => {
  it("merges settings and live status by key, in settings order", () => {
    const v = channelViews({
      channels: [settings("b"), settings("a")],
      snapshot: { paused: false, channels: [status("a"), status("c")] },
    });
    expect(v.map((c) => [c.key, !!c.settings, !!c.status])).toEqual([
      ["b", true, false],
      ["a", true, true],
      ["c", false, true],
    ]);
  });
});
