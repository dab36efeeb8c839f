// "real backend" cases: the page's IPC goes to a test bridge serving the real app core
// (desktop/app/tests/it/ui_bridge.rs runs them with REAL_* set: the bridge, a real cloud with a
// channel, its token and a recording target). What the views show after each save comes from the
// core: its key, the channel's state on the real cloud, the webhook URL, the settings read back.
// Each case was seen failing against a broken bridge or core (desktop/app/tests/it/ui_real.rs).
import assert from "node:assert/strict";
import { byId, rows, text, until } from "./helpers.mjs";
import { env, invoke, keyOf, linked, open, postWebhook, receivedCount, receivedWith, stateIs, targetStatus } from "./real-env.mjs";

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
      const key = await keyOf(page, env("REAL_CHANNEL"));
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
      // Edited, then replayed: the edited body reaches the target.
      await byId(page, "edit-replay").click();
      await byId(page, "replay-editor").waitFor();
      await byId(page, "replay-body").fill('{"edited in the UI":true}');
      await byId(page, "replay-target").fill(env("REAL_OTHER_URL"));
      await byId(page, "replay").click();
      await until(async () => /Delivered/.test(await text(page, "replay-result")) && (await text(page, "event-detail")).includes("replay"), "the edited replay delivered");
      await receivedWith(1, "edited in the UI");

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
  {
    name: "real backend: dead letters are replayed and purged at the cloud",
    async run({ page, baseUrl }) {
      await open(page, baseUrl);
      const key = await keyOf(page, env("REAL_CHANNEL"));
      // The target still refuses (404): two more dead letters.
      const hook = `${env("REAL_CLOUD_URL")}/webhook/${env("REAL_CHANNEL")}`;
      const one = await postWebhook(hook, { dead: "dead-one" });
      const two = await postWebhook(hook, { dead: "dead-two" });
      assert.ok(one.status < 300 && two.status < 300, JSON.stringify([one, two]));
      await byId(page, `dead-letters-${key}`).click();
      await byId(page, "dlq-list").waitFor();
      await until(async () => {
        if ((await rows(page, "dlq-row-")) === 2) return true;
        await byId(page, "dlq-refresh").click();
        return false;
      }, "the cloud's two dead letters", 20000);
      assert.match(await text(page, "dlq-total"), /2 dead letters/);
      // Replayed once the target answers again: the cloud hands it over, the row goes.
      await targetStatus(0, 200);
      await byId(page, `dlq-row-${one.body.message_id}`).click();
      await byId(page, "dlq-detail").waitFor();
      const refused = await receivedCount(0, "dead-one");
      await byId(page, "dlq-replay").click();
      await until(async () => (await rows(page, "dlq-row-")) === 1, "1 row after the replay");
      await receivedWith(0, "dead-one", 20000, refused);
      await byId(page, "dlq-purge").click();
      await byId(page, "confirm-ok").click();
      await byId(page, "dlq-empty").waitFor();
      await page.getByText("Purged 1 dead letter.").waitFor();
    },
  },
  {
    name: "real backend: connect toggle and pause all disconnect from the cloud, which holds the webhooks",
    async run({ page, baseUrl }) {
      await open(page, baseUrl);
      const key = await keyOf(page, env("REAL_CHANNEL"));
      await byId(page, `toggle-${key}`).click();
      // The core's state for a channel the user disconnected, and what the badge says of it.
      await stateIs(page, key, "disconnected");
      assert.equal(await text(page, `toggle-${key}`), "Connect");
      assert.match((await byId(page, `state-${key}`).getAttribute("title")) ?? "", /by you/);
      await until(async () => (await cloudClients()) === 0, "no client at the cloud", 20000);
      await byId(page, `toggle-${key}`).click();
      await linked(page, key);
      await until(async () => (await cloudClients()) === 1, "the client back at the cloud", 20000);

      await byId(page, "pause-all").click();
      await byId(page, "paused-banner").waitFor();
      await stateIs(page, key, "paused");
      await until(async () => (await cloudClients()) === 0, "no client while paused", 20000);
      const held = await postWebhook(`${env("REAL_CLOUD_URL")}/webhook/${env("REAL_CHANNEL")}`, { held: "while-paused" });
      assert.ok(held.status < 300, JSON.stringify(held));
      assert.ok((await cloudStats()).messages_queued >= 1, "held at the cloud");
      await byId(page, "pause-all").click();
      await byId(page, "paused-banner").waitFor({ state: "detached" });
      await linked(page, key);
      await receivedWith(0, "while-paused");
    },
  },
  {
    name: "real backend: editing the channel's target changes where the core forwards",
    async run({ page, baseUrl }) {
      await open(page, baseUrl);
      const key = await keyOf(page, env("REAL_CHANNEL"));
      await byId(page, `edit-channel-${key}`).click();
      await byId(page, "token-stored").waitFor();
      const edited = env("REAL_OTHER_URL").replace(/\/replayed$/, "/edited");
      await byId(page, "input-default-target").fill(edited);
      await byId(page, "save-channel").click();
      await byId(page, `channel-row-${key}`).waitFor();
      await linked(page, key);
      assert.equal((await invoke("list_channels")).value.find((c) => c.key === key).default_target, edited);
      await postWebhook(`${env("REAL_CLOUD_URL")}/webhook/${env("REAL_CHANNEL")}`, { after: "after-edit" });
      const got = await receivedWith(1, "after-edit");
      assert.equal(got.path, "/edited");
    },
  },
  {
    name: "real backend: a refused token, a refused admin token and an unreachable cloud are told",
    async run({ page, baseUrl, shot }) {
      await open(page, baseUrl);
      const add = async (cloud, channel, token, admin) => {
        await byId(page, "add-channel").click();
        await byId(page, "channel-form").waitFor();
        await byId(page, "input-cloud-url").fill(cloud);
        await byId(page, "input-channel").fill(channel);
        await byId(page, "input-token").fill(token);
        await byId(page, "input-admin-token").fill(admin);
        await byId(page, "input-default-target").fill(env("REAL_TARGET_URL"));
        await byId(page, "save-channel").click();
        return keyOf(page, channel);
      };
      // The cloud answers 401 to the wrong channel token: auth failed, said on the row.
      const beta = await add(env("REAL_CLOUD_ALIAS"), env("REAL_OTHER_CHANNEL"), "wrong-token", "wrong-admin-token");
      await stateIs(page, beta, "auth_failed");
      await byId(page, `last-error-${beta}`).waitFor();
      assert.match(await text(page, `last-error-${beta}`), /401|token|auth/i);
      await shot("real-backend-auth-failed");
      // Its dead letters: the admin API refuses the admin token.
      await byId(page, `dead-letters-${beta}`).click();
      await byId(page, "error-inline").waitFor({ timeout: 15000 });
      assert.match(await text(page, "error-inline"), /admin token/i);
      // A cloud nothing answers at: never connected, and the dead letters cannot be loaded.
      await byId(page, "nav-overview").click();
      const gamma = await add(env("REAL_CLOSED_URL"), "gamma", "some-token", "some-admin-token");
      await until(async () => ["connecting", "degraded"].includes(await byId(page, `state-${gamma}`).getAttribute("data-state")), "not connected");
      await byId(page, `dead-letters-${gamma}`).click();
      await byId(page, "error-inline").waitFor({ timeout: 15000 });
      assert.match(await text(page, "error-inline"), /reach|connect|refused/i);
    },
  },
  {
    name: "real backend: removing a channel asks first, and the core forgets it",
    async run({ page, baseUrl }) {
      await open(page, baseUrl);
      for (const channel of [env("REAL_OTHER_CHANNEL"), "gamma"]) {
        const key = await keyOf(page, channel);
        await byId(page, `remove-channel-${key}`).click();
        await byId(page, "confirm-dialog").waitFor();
        // Added with a token: nothing to delete at the cloud, so no such question.
        assert.equal(await byId(page, "confirm-check").count(), 0);
        await byId(page, "confirm-ok").click();
        await byId(page, `channel-row-${key}`).waitFor({ state: "detached" });
        assert.ok(!(await invoke("list_channels")).value.some((c) => c.key === key), "gone from the core");
      }
      assert.equal(await rows(page, "channel-row-"), 1);
    },
  },
  {
    name: "real backend: the fake backend answers invalid input like the core",
    async run({ page, baseUrl }) {
      await page.goto(`${baseUrl}?accounts=0`);
      const unknown = "ch-000000000000";
      const nowhere = "https://nowhere.example.com";
      const channel = { key: null, cloud_url: "https://relay.example.com", channel: "drift", protocol: "websocket", default_target: "http://localhost:9/x", targets: {}, token: "t", admin_token: null };
      const saved = (await invoke("get_settings")).value;
      const inputs = [
        ["save_settings", { settings: { ...saved, history_size: 0 } }],
        ["save_settings", { settings: { ...saved, history_size: 100001 } }],
        ["save_channel", { input: { ...channel, channel: "bad name" } }],
        ["save_channel", { input: { ...channel, channel: "a..b" } }],
        ["save_channel", { input: { ...channel, channel: "-lead" } }],
        ["save_channel", { input: { ...channel, cloud_url: "ftp://relay.example.com" } }],
        ["save_channel", { input: { ...channel, cloud_url: "not a url" } }],
        ["save_channel", { input: { ...channel, token: null } }],
        ["save_channel", { input: { ...channel, default_target: "ftp://x" } }],
        ["save_channel", { input: { ...channel, key: unknown } }],
        ["remove_channel", { key: unknown, delete_at_cloud: false }],
        ["set_channel_enabled", { key: unknown, enabled: false }],
        ["list_events", { key: unknown }],
        ["get_event", { key: unknown, message_id: "m" }],
        ["replay_event", { request: { key: unknown, message_id: "m", target_url: null, headers: null, body_base64: null } }],
        ["list_dead_letters", { key: unknown, limit: 50, offset: 0 }],
        ["purge_dead_letters", { key: unknown }],
        ["sign_in", { input: { cloud_url: "not a url", api_key: "" } }],
        ["sign_in", { input: { cloud_url: nowhere, api_key: "" } }],
        ["create_account", { input: { cloud_url: "not a url", name: "bob" } }],
        ["create_channel", { input: { cloud_url: nowhere, name: "x1", target_url: "http://localhost:9/", verify: null } }],
        ["use_remote_channel", { cloud_url: nowhere, channel: "a.b", target_url: "http://localhost:9/" }],
        ["list_remote_channels", { cloud_url: nowhere }],
      ];
      const diffs = [];
      for (const [cmd, args] of inputs) {
        const core = await invoke(cmd, args);
        const fake = await page.evaluate(
          ([c, a]) =>
            Promise.resolve()
              .then(() => window.__fakeBackend.handle(c, a))
              .then(
                (value) => ({ ok: true, value }),
                (error) => ({ ok: false, error }),
              ),
          [cmd, args],
        );
        const shape = (r) => (r.ok ? "accepted" : { code: r.error.code, message: r.error.message });
        if (JSON.stringify(shape(core)) !== JSON.stringify(shape(fake))) diffs.push({ cmd, args, core: shape(core), fake: shape(fake) });
      }
      if (diffs.length > 0) console.log(JSON.stringify(diffs, null, 1));
      assert.deepEqual(diffs, [], `${diffs.length} answers differ`);
      // Nothing of that reached the core's settings or channels.
      assert.deepEqual((await invoke("get_settings")).value, saved);
      assert.equal((await invoke("list_channels")).value.length, 1);
    },
  },
];

async function cloudStats() {
  const r = await fetch(`${env("REAL_CLOUD_URL")}/admin/webhook-connect/channels/${env("REAL_CHANNEL")}/stats`, {
    headers: { authorization: `Bearer ${env("REAL_ADMIN_TOKEN")}` },
  });
  if (!r.ok) throw new Error(`stats: ${r.status}`);
  return r.json();
}

async function cloudClients() {
  return (await cloudStats()).connected_clients;
}
