// "real self-service" cases: the self-service views (HOSTED.md §5) with the page's IPC sent to
// the real app core through the test bridge, against a real cloud in `open` mode whose accounts
// may have 2 channels (desktop/app/tests/it/ui_real.rs runs them in order against one core).
// Accounts, New channel with a provider check, the URL and Copy, the quota, removal here or at
// the cloud too, Use here, and the account's dead letters without an admin token.
// Each case was seen failing against a broken bridge or core (see ui_real.rs).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { byId, rows, text, until } from "./helpers.mjs";
import { env, invoke, keyOf, open, postWebhook, receivedCount, receivedWith, stateIs, targetStatus } from "./real-env.mjs";

const SECRET = "gh-s3cret";
/** A webhook signed the way GitHub signs (X-Hub-Signature-256). */
function signed(body) {
  const text = JSON.stringify(body);
  return [text, { "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(text).digest("hex")}` }];
}

async function newChannel(page, name, fill = async () => undefined) {
  await byId(page, "nav-overview").click();
  await byId(page, "new-channel").click();
  await byId(page, "new-channel-form").waitFor();
  await byId(page, "new-name").fill(name);
  await byId(page, "new-target").fill(env("REAL_TARGET_URL"));
  await fill();
  await byId(page, "new-create").click();
}

export const realHostedTests = [
  {
    name: "real self-service: an unreachable cloud, a refused key, then an account created on the open cloud",
    async run({ page, baseUrl }) {
      await open(page, baseUrl);
      await byId(page, "nav-settings").click();
      await byId(page, "account-form").waitFor();
      const fakeKey = `whc_${"A".repeat(43)}`;
      await byId(page, "account-cloud-url").fill(env("REAL_CLOSED_URL"));
      await byId(page, "account-api-key").fill(fakeKey);
      await byId(page, "account-submit").click();
      await byId(page, "account-error").waitFor({ timeout: 15000 });
      const unreachable = await text(page, "account-error");
      assert.match(unreachable, /reach|connect/i);
      assert.doesNotMatch(unreachable, /API key/, "not told as a refused key");
      await byId(page, "account-cloud-url").fill(env("REAL_CLOUD_URL"));
      await byId(page, "account-api-key").fill(fakeKey);
      await byId(page, "account-submit").click();
      await until(async () => /refused this API key/.test(await text(page, "account-error")), "the cloud's 401 told (api_key_rejected)");
      assert.deepEqual((await invoke("list_accounts")).value, [], "nothing stored");
      await byId(page, "mode-create").click();
      await byId(page, "account-cloud-url").fill(env("REAL_CLOUD_URL"));
      await byId(page, "account-name").fill("carol");
      await byId(page, "account-submit").click();
      await byId(page, "account-carol").waitFor({ timeout: 15000 });
      const [account] = (await invoke("list_accounts")).value;
      assert.equal(account.name, "carol");
      assert.equal(account.has_key, true);
    },
  },
  {
    name: "real self-service: New channel with a provider check gives a URL to copy that forwards signed webhooks only",
    async run({ page, baseUrl, shot }) {
      await open(page, baseUrl);
      await newChannel(page, "shop", async () => {
        await byId(page, "new-preset").selectOption("github");
        await byId(page, "new-secret").fill(SECRET);
      });
      await byId(page, "new-channel-created").waitFor({ timeout: 15000 });
      const url = await text(page, "created-webhook-url");
      assert.ok(url.startsWith(`${env("REAL_CLOUD_URL")}/webhook/wh_`), url);
      await until(async () => (await byId(page, "created-state").getAttribute("data-state")) === "connected", "connected", 20000);
      await byId(page, "created-copy").click();
      await byId(page, "notice").first().waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), url);
      await shot("real-self-service-created");
      // The cloud checks the signature the form asked for.
      const unsigned = await postWebhook(url, { order: "unsigned" });
      assert.equal(unsigned.status, 401, JSON.stringify(unsigned));
      const [body, headers] = signed({ order: "signed-order" });
      const ok = await postWebhook(url, body, headers);
      assert.ok(ok.status < 300, JSON.stringify(ok));
      const got = await receivedWith(0, "signed-order");
      assert.equal(got.path, "/shop");
      await byId(page, "created-done").click();
      const key = await keyOf(page, "carol.shop");
      assert.equal(await text(page, `webhook-url-${key}`), url);
      assert.equal(await byId(page, `self-service-${key}`).count(), 1);
      assert.ok(!JSON.stringify((await invoke("list_channels")).value).includes(SECRET), "the secret never comes back");
    },
  },
  {
    name: "real self-service: input the cloud refuses and the account's quota are told on the form",
    async run({ page, baseUrl }) {
      await open(page, baseUrl);
      // The form lets any header name through; the cloud refuses it (422).
      await newChannel(page, "spare", async () => {
        await byId(page, "new-preset").selectOption("hmac-sha256");
        await byId(page, "new-secret").fill("s");
        await byId(page, "new-header").fill("Bad Header");
      });
      await byId(page, "new-channel-error").waitFor({ timeout: 15000 });
      assert.match(await text(page, "new-channel-error"), /header/i);
      await byId(page, "new-preset").selectOption("");
      await byId(page, "new-create").click();
      await byId(page, "new-channel-created").waitFor({ timeout: 15000 });
      // Two channels: the account's quota.
      await newChannel(page, "extra");
      await byId(page, "new-channel-error").waitFor({ timeout: 15000 });
      assert.match(await text(page, "new-channel-error"), /quota/i);
      assert.equal((await invoke("list_channels")).value.length, 2);
    },
  },
  {
    name: "real self-service: removal asks whether to delete at the cloud; Use here forwards the account's channel again",
    async run({ page, baseUrl }) {
      await open(page, baseUrl);
      let key = await keyOf(page, "carol.spare");
      // Removed here only: still the account's, offered with Use here.
      await byId(page, `remove-channel-${key}`).click();
      await byId(page, "confirm-check").waitFor();
      assert.equal(await byId(page, "confirm-check").isChecked(), false);
      await byId(page, "confirm-ok").click();
      await byId(page, `channel-row-${key}`).waitFor({ state: "detached" });
      await byId(page, "remote-channel-carol.spare").waitFor({ timeout: 15000 });
      await byId(page, "use-here-carol.spare").click();
      await byId(page, "use-here-target").fill(env("REAL_TARGET_URL"));
      await byId(page, "use-here-submit").click();
      key = await keyOf(page, "carol.spare");
      await stateIs(page, key, "connected");
      // Deleted at the cloud too: gone from the account's channels.
      await byId(page, `remove-channel-${key}`).click();
      await byId(page, "confirm-check").check();
      await byId(page, "confirm-ok").click();
      await byId(page, `channel-row-${key}`).waitFor({ state: "detached" });
      await page.getByText("Deleted carol.spare here and at the cloud.").waitFor();
      const remote = (await invoke("list_remote_channels", { cloud_url: env("REAL_CLOUD_URL") })).value.map((c) => c.channel);
      assert.deepEqual(remote, ["carol.shop"]);
      assert.equal(await byId(page, "remote-channel-carol.spare").count(), 0);
    },
  },
  {
    name: "real self-service: the account's dead letters are replayed and purged without an admin token",
    async run({ page, baseUrl }) {
      await open(page, baseUrl);
      const key = await keyOf(page, "carol.shop");
      const url = await text(page, `webhook-url-${key}`);
      await targetStatus(0, 404);
      const ids = [];
      for (const order of ["dead-a", "dead-b"]) {
        const [body, headers] = signed({ order });
        const r = await postWebhook(url, body, headers);
        assert.ok(r.status < 300, JSON.stringify(r));
        ids.push(r.body.message_id);
      }
      await byId(page, `dead-letters-${key}`).click();
      await byId(page, "dlq-list").waitFor();
      assert.equal(await byId(page, "dlq-needs-admin").count(), 0);
      await until(async () => {
        if ((await rows(page, "dlq-row-")) === 2) return true;
        await byId(page, "dlq-refresh").click();
        return false;
      }, "the account's two dead letters", 20000);
      await targetStatus(0, 200);
      await byId(page, `dlq-row-${ids[0]}`).click();
      const refused = await receivedCount(0, "dead-a");
      await byId(page, "dlq-replay").click();
      await until(async () => (await rows(page, "dlq-row-")) === 1, "1 row after the replay");
      await receivedWith(0, "dead-a", 20000, refused);
      await byId(page, "dlq-purge").click();
      await byId(page, "confirm-ok").click();
      await byId(page, "dlq-empty").waitFor();
    },
  },
];
