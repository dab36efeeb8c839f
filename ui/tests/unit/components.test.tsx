import { clearMocks } from "@tauri-apps/api/mocks";
import { render } from "preact";
import { act } from "preact/test-utils";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { App } from "../../src/components/App";
import { ipc } from "../../src/ipc";
import { startLive, type Live } from "../../src/live";
import { store } from "../../src/store";
import { installFakeBackend, type FakeBackend } from "../fake-backend";

let root: HTMLElement;
let live: Live;
let fake: FakeBackend;

const q = (id: string) => root.querySelector<HTMLElement>(`[data-testid="${id}"]`);
async function settle(ms = 30) {
  await act(async () => {
    await new Promise((r) => setTimeout(r, ms));
  });
}
async function click(id: string) {
  const el = q(id);
  if (!el) throw new Error(`no ${id}`);
  await act(() => el.click());
  await settle();
}
async function type(id: string, value: string) {
  const el = q(id) as HTMLInputElement | null;
  if (!el) throw new Error(`no ${id}`);
  await act(() => {
    el.value = value;
    el.dispatchEvent(new Event("input", { bubbles: true }));
  });
}

beforeEach(async () => {
  fake = installFakeBackend();
  root = document.createElement("div");
  document.body.appendChild(root);
  store.dispatch({ type: "navigate", view: { name: "overview" } });
  live = startLive({ ipc, store });
  await act(() => render(<App refresh={() => void live.refresh()} />, root));
  await settle();
});
afterEach(() => {
  live.stop();
  render(null, root);
  root.remove();
  clearMocks();
});

describe("App (happy-dom)", () => {
  it("renders a card per channel with its state label", () => {
    expect(q("channel-row-team-alpha")).not.toBeNull();
    expect(q("state-team-alpha")?.textContent).toBe("Connected");
    expect(q("state-payments-dev")?.getAttribute("data-state")).toBe("auth_failed");
    expect(q("global-status")?.textContent).toMatch(/2 of 3 channels connected/);
  });

  it("blocks an invalid channel form and saves a valid one", async () => {
    await click("add-channel");
    await click("save-channel");
    expect(q("form-errors")?.textContent).toMatch(/Please fix the 4 fields/);
    expect(fake.calls.some((c) => c.cmd === "save_channel")).toBe(false);
    await type("input-cloud-url", "http://127.0.0.1:8000");
    await type("input-channel", "local.dev");
    await type("input-token", "tok");
    await type("input-default-target", "http://localhost:3000/");
    await click("save-channel");
    expect(fake.calls.filter((c) => c.cmd === "save_channel")).toHaveLength(1);
    const saved = [...fake.channels.values()].find((c) => c.settings.channel === "local.dev");
    expect(saved?.settings.key).toMatch(/^ch-[0-9a-f]{12}$/);
    expect(q(`channel-row-${saved?.settings.key ?? ""}`)).not.toBeNull();
  });

  it("shows the admin-token hint for dead letters of a channel without one", async () => {
    await click("dead-letters-ci-events");
    expect(q("dlq-needs-admin")?.textContent).toMatch(/Admin token needed/);
  });

  it("creates a channel on the signed-in cloud and shows its URL", async () => {
    await click("new-channel");
    await click("new-create");
    expect(q("field-error-new-name")?.textContent).toMatch(/required/);
    expect(fake.calls.some((c) => c.cmd === "create_channel")).toBe(false);
    await type("new-name", "orders");
    await type("new-target", "http://localhost:3000/orders");
    await click("new-create");
    const call = fake.calls.find((c) => c.cmd === "create_channel");
    expect(call?.args).toEqual({ input: { cloud_url: "https://hooks.example.com", name: "orders", target_url: "http://localhost:3000/orders", verify: null } });
    expect(q("created-webhook-url")?.textContent).toMatch(/^https:\/\/hooks\.example\.com\/webhook\/wh_/);
  });

  it("lists the account's other channels with Use here", async () => {
    await settle(50);
    expect(q("remote-channel-alice.shop-dev")).not.toBeNull();
    expect(q("use-here-alice.billing")).not.toBeNull();
  });

  it("shows command errors in the error toast", async () => {
    fake.failNext("set_paused", "engine is shutting down");
    await click("pause-all");
    expect(q("error")?.textContent).toMatch(/engine is shutting down/);
  });
});
