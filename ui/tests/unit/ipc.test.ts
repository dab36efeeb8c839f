import { clearMocks } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { errorCode, errorMessage, ipc, IpcError } from "../../src/ipc";
import { textToBase64 } from "../../src/lib/base64";
import { FakeBackend, installFakeBackend } from "../fake-backend";

let fake: FakeBackend;
beforeEach(() => {
  fake = installFakeBackend();
});
afterEach(() => {
  clearMocks();
});

describe("ipc against the fake backend", () => {
  it("passes snake_case arguments exactly as the Rust commands expect", async () => {
    await ipc.getEvent("team-alpha", fake.channels.get("team-alpha")?.events[0]?.summary.message_id ?? "");
    await ipc.listDeadLetters("team-alpha", 50, 0);
    await ipc.setChannelEnabled("ci-events", false);
    await ipc.saveSettings({ autostart: true, start_minimized: false, notifications: "none", history_size: 200 });
    expect(fake.calls.map((c) => [c.cmd, Object.keys(c.args).sort()])).toEqual([
      ["get_event", ["key", "message_id"]],
      ["list_dead_letters", ["key", "limit", "offset"]],
      ["set_channel_enabled", ["enabled", "key"]],
      ["save_settings", ["settings"]],
    ]);
  });

  it("turns rejected commands into Errors carrying the backend's message", async () => {
    fake.failNext("list_channels", "settings.toml is not writable");
    await expect(ipc.listChannels()).rejects.toThrow("settings.toml is not writable");
    await expect(ipc.listDeadLetters("ci-events", 50, 0)).rejects.toThrow(/no admin token/);
    expect(errorMessage({ message: "m" })).toBe("m");
    expect(errorMessage(42)).toBe("42");
  });

  it("keeps the code of a CommandError so a bad token is told from a network failure", async () => {
    fake.failNextWith("list_dead_letters", { code: "admin_auth", message: "admin token rejected (HTTP 401 Unauthorized): bad token" });
    const auth = await ipc.listDeadLetters("team-alpha", 50, 0).catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(IpcError);
    expect(errorCode(auth)).toBe("admin_auth");
    expect(errorMessage(auth)).toBe("admin token rejected (HTTP 401 Unauthorized): bad token");
    fake.failNextWith("list_dead_letters", { code: "network", message: "admin API: connection refused" });
    expect(errorCode(await ipc.listDeadLetters("team-alpha", 50, 0).catch((e: unknown) => e))).toBe("network");
    expect(errorCode(await ipc.listDeadLetters("ci-events", 50, 0).catch((e: unknown) => e))).toBe("no_admin_token");
    expect(errorCode("a plain string")).toBe("unknown");
  });

  it("adds a channel: it connects, never exposes its token, and can be removed", async () => {
    const saved = await ipc.saveChannel({
      key: null, cloud_url: "https://relay.example.com", channel: "team-beta", protocol: "long_poll",
      default_target: "http://localhost:3000/", targets: {}, token: "secret", admin_token: null,
    });
    expect(saved).toMatchObject({ has_token: true, has_admin_token: false, enabled: true });
    expect(saved.key).toMatch(/^ch-[0-9a-f]{12}$/);
    expect(JSON.stringify(await ipc.listChannels())).not.toContain("secret");
    const st = (await ipc.getSnapshot()).channels.find((c) => c.key === saved.key);
    expect(st?.state).toBe("connecting");
    await ipc.removeChannel(saved.key);
    expect((await ipc.listChannels()).map((c) => c.key)).not.toContain(saved.key);
  });

  it("replays an event with an edited body as a new event", async () => {
    const [first] = await ipc.listEvents("team-alpha");
    expect(first).toBeDefined();
    const id = first?.message_id ?? "";
    const r = await ipc.replayEvent({
      key: "team-alpha", message_id: id, target_url: "http://localhost:5555/x", headers: [["content-type", "text/plain"]],
      body_base64: textToBase64("edited ✓"),
    });
    expect(r.summary.replay_of).toBe(id);
    expect(r.summary.target_url).toBe("http://localhost:5555/x");
    expect(r.request.body_text).toBe("edited ✓");
    const list = await ipc.listEvents("team-alpha");
    expect(list[0]?.message_id).toBe(r.summary.message_id);
  });

  it("lists, replays, deletes and purges dead letters", async () => {
    const list = await ipc.listDeadLetters("team-alpha", 2, 0);
    expect(list.total).toBe(3);
    expect(list.count).toBe(2);
    await ipc.replayDeadLetter("team-alpha", list.messages[0]?.message_id ?? "");
    await ipc.deleteDeadLetter("team-alpha", list.messages[1]?.message_id ?? "");
    expect(await ipc.purgeDeadLetters("team-alpha")).toBe(1);
    expect((await ipc.listDeadLetters("team-alpha", 50, 0)).total).toBe(0);
  });

  it("delivers snapshot events to the subscriber", async () => {
    const got: boolean[] = [];
    const off = await ipc.onSnapshot((s) => got.push(s.paused));
    await emit("snapshot", { paused: true, channels: [] });
    off();
    await emit("snapshot", { paused: false, channels: [] });
    expect(got).toEqual([true]);
  });
});
