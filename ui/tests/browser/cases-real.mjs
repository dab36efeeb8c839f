// "real backend" cases: the page's IPC goes to a test bridge serving the real app core
// (desktop/app/tests/it/ui_bridge.rs runs them with REAL_* set: the bridge, a real cloud with a
// channel, its token and a recording target). What the views show after each save comes from the
// core: its key, the channel's state on the real cloud, the webhook URL, the settings read back.
import assert from "node:assert/strict";
import { byId, rows, text, until } from "./helpers.mjs";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: these cases run from desktop/app/tests/it/ui_bridge.rs`);
  return v;
};
/** The key the core gave the one channel (after the first case added it). */
async function channelKey(page) {
  const row = page.locator('[data-testid^="channel-row-"]').first();
  await row.waitFor();
  return ((await row.getAttribute("data-testid")) ?? "").slice("channel-row-".length);
}
const open = (page, baseUrl) => page.goto(`${baseUrl}?backend=${encodeURIComponent(env("REAL_BACKEND_URL"))}`);

export const realTests = [
  {
    name: "real backend: the channel form adds a channel the core saves and runs against the cloud",
    async run({ page, baseUrl, shot }) {
      await open(page, baseUrl);
      await byId(page, "add-channel").click();
      await byId(page, "channel-form").waitFor();
      await byId(page, "input-cloud-url").fill(`${env("REAL_CLOUD_URL")}/`);
      await byId(page, "input-channel").fill(env("REAL_CHANNEL"));
      await byId(page, "input-token").fill(env("REAL_TOKEN"));
      await byId(page, "input-admin-token").fill(env("REAL_ADMIN_TOKEN"));
      await byId(page, "input-default-target").fill(env("REAL_TARGET_URL"));
      await byId(page, "save-channel").click();
      const rows = page.locator('[data-testid^="channel-row-"]');
      await rows.first().waitFor();
      assert.equal(await rows.count(), 1);
      const key = ((await rows.first().getAttribute("data-testid")) ?? "").slice("channel-row-".length);
      assert.match(key, /^ch-/, "the key is the core's");
      // Connected to the real cloud, which hands it the webhook queued before; the target refuses
      // it (404), and the core says so: degraded (the inspector case reads the 404).
      await until(async () => (await byId(page, `state-${key}`).getAttribute("data-state")) === "degraded", "degraded by the refusing target", 20000);
      assert.equal(await text(page, `webhook-url-${key}`), `${env("REAL_CLOUD_URL")}/webhook/${env("REAL_CHANNEL")}`);
      await shot("real-backend-channel");
      // The core says the token is stored (in the keyring of the test's session), never shows it.
      await byId(page, `edit-channel-${key}`).click();
      await byId(page, "token-stored").waitFor();
      assert.match(await text(page, "token-stored"), /Stored in keyring/);
      assert.equal(await byId(page, "input-token").inputValue(), "");
    },
  },
  {
    name: "real backend: settings are saved by the core and read back after a reload",
    async run({ page, baseUrl }) {
      await open(page, baseUrl);
      await byId(page, "nav-settings").click();
      await byId(page, "settings-form").waitFor();
      await until(async () => (await byId(page, "history-size").inputValue()) !== "", "the core's settings loaded");
      assert.notEqual(await byId(page, "history-size").inputValue(), "500");
      await byId(page, "history-size").fill("500");
      await byId(page, "save-settings").click();
      await until(() => byId(page, "save-settings").isDisabled(), "saved: nothing left to save");
      await open(page, baseUrl);
      await byId(page, "nav-settings").click();
      await byId(page, "settings-form").waitFor();
      await until(async () => (await byId(page, "history-size").inputValue()) === "500", "500 read back from the core");
    },
  },
  {
    name: "real backend: the inspector replays the core's event to an edited target, the dead letter is deleted at the cloud",
    async run({ page, baseUrl, shot }) {
      await open(page, baseUrl);
      const key = await channelKey(page);
      const id = env("REAL_MESSAGE_ID");
      await byId(page, `open-inspector-${key}`).click();
      await byId(page, "event-list").waitFor();
      // The webhook queued before the UI started, refused by the target (404).
      await until(async () => (await rows(page, "event-row-")) === 1, "the core's one event");
      await byId(page, `event-row-${id}`).click();
      await byId(page, "event-detail").waitFor();
      assert.match(await text(page, "request-body-text"), /before the UI/);
      assert.match(await text(page, "event-detail"), /404/);
      await byId(page, "replay-target").fill(env("REAL_OTHER_URL"));
      await byId(page, "replay").click();
      await byId(page, "replay-result").waitFor();
      assert.match(await text(page, "replay-result"), /Delivered/);
      assert.match(await text(page, "replay-result"), /200/);
      await shot("real-backend-replay");

      await byId(page, "nav-overview").click();
      await byId(page, `dead-letters-${key}`).click();
      await byId(page, "dlq-list").waitFor();
      await until(async () => {
        if ((await rows(page, "dlq-row-")) === 1) return true;
        await byId(page, "dlq-refresh").click();
        return false;
      }, "the cloud's dead letter", 15000);
      await byId(page, `dlq-row-${id}`).click();
      await byId(page, "dlq-detail").waitFor();
      assert.match(await text(page, "dlq-detail"), /404/);
      await byId(page, "dlq-delete").click();
      await byId(page, "confirm-ok").click();
      await byId(page, "dlq-empty").waitFor();
    },
  },
];
