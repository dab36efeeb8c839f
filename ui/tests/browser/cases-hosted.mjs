// Click-through cases of self-service (HOSTED.md §5): accounts, "New channel", "Use here", removal
// at the cloud, dead letters with the API key. Each gets a fresh page and fake backend.
import assert from "node:assert/strict";
import { byId, fake, keyOf, lastCall, text, until } from "./helpers.mjs";

const KEY = "whc_alice_0123456789abcdefghijklmnopqrstuvwxyzAB";
const CLOUD = "https://hooks.example.com";

export const hostedTests = [
  {
    name: "accounts: a refused key, sign in, closed sign-up, create an account, sign out",
    async run({ page, shot, baseUrl }) {
      await page.goto(`${baseUrl}?accounts=0`);
      await byId(page, "nav-settings").click();
      await byId(page, "account-form").waitFor();
      await byId(page, "account-submit").click();
      assert.match(await text(page, "field-error-account-cloud-url"), /required/);
      assert.equal(await lastCall(page, "sign_in"), null, "nothing sent for an invalid form");
      await byId(page, "account-cloud-url").fill(`${CLOUD}/`);
      // No key typed: the backend looks for one `webhook-connect login` stored, and says so.
      await byId(page, "account-submit").click();
      await byId(page, "account-error").waitFor();
      assert.match(await text(page, "account-error"), /none is stored/);
      assert.equal((await lastCall(page, "sign_in")).input.api_key, "");
      await byId(page, "account-api-key").fill("not-a-key");
      assert.match(await text(page, "field-error-account-api-key"), /starts with whc_/);
      await byId(page, "account-api-key").fill("whc_revoked");
      await byId(page, "account-submit").click();
      await byId(page, "account-error").waitFor();
      assert.match(await text(page, "account-error"), /refused this API key/);
      await byId(page, "account-api-key").fill(KEY);
      await byId(page, "account-submit").click();
      await byId(page, "account-alice").waitFor();
      assert.deepEqual((await lastCall(page, "sign_in")).input, { cloud_url: CLOUD, api_key: KEY });
      assert.equal(await byId(page, "account-api-key").inputValue(), "", "the key is cleared from the form");
      const listed = await fake(page, () => window.__fakeBackend.handle("list_accounts", {}));
      assert.ok(!JSON.stringify(listed).includes(KEY), "the UI's account list carries no key");
      await shot("settings-accounts");

      await byId(page, "mode-create").click();
      await byId(page, "account-cloud-url").fill("https://keys-only.example.com");
      await byId(page, "account-name").fill("Bob");
      await byId(page, "account-submit").click();
      assert.match(await text(page, "field-error-account-name"), /lower-case/);
      await byId(page, "account-name").fill("bob");
      await byId(page, "account-submit").click();
      await byId(page, "account-error").waitFor();
      assert.match(await text(page, "account-error"), /does not allow sign-up/);
      await byId(page, "account-cloud-url").fill("https://open.example.com");
      await byId(page, "account-submit").click();
      await byId(page, "account-bob").waitFor();
      assert.deepEqual((await lastCall(page, "create_account")).input, { cloud_url: "https://open.example.com", name: "bob" });

      await byId(page, "sign-out-bob").click();
      await byId(page, "confirm-dialog").waitFor();
      assert.match(await text(page, "confirm-dialog"), /deleted from this computer's keyring/);
      await byId(page, "confirm-ok").click();
      await byId(page, "account-bob").waitFor({ state: "detached" });
      assert.equal((await lastCall(page, "sign_out")).cloud_url, "https://open.example.com");
      assert.equal(await byId(page, "account-alice").count(), 1);
    },
  },
  {
    name: "new channel: validated, created with a provider check, URL with Copy, connects at once",
    async run({ page, shot }) {
      await byId(page, "new-channel").click();
      await byId(page, "new-channel-form").waitFor();
      assert.match(await text(page, "new-account-line"), /hooks\.example\.com.*alice/);
      await byId(page, "new-create").click();
      assert.match(await text(page, "field-error-new-name"), /required/);
      assert.match(await text(page, "field-error-new-target_url"), /required/);
      await byId(page, "new-name").fill("Shop Dev");
      assert.match(await text(page, "field-error-new-name"), /lower-case/);
      // A name the account already has at the cloud: the cloud's 409, explained.
      await byId(page, "new-name").fill("shop-dev");
      await byId(page, "new-target").fill("http://localhost:3000/webhook");
      await byId(page, "new-create").click();
      await byId(page, "new-channel-error").waitFor();
      assert.match(await text(page, "new-channel-error"), /already has a channel with this name/);
      await byId(page, "new-name").fill("shop-api");
      await byId(page, "new-preset").selectOption("github");
      assert.equal(await byId(page, "new-header").inputValue(), "X-Hub-Signature-256");
      assert.equal(await byId(page, "new-header").isDisabled(), true);
      await byId(page, "new-create").click();
      assert.match(await text(page, "field-error-new-secret"), /secret is required/);
      await byId(page, "new-secret").fill("gh-s3cret");
      await shot("new-channel-form");
      await byId(page, "new-create").click();
      await byId(page, "new-channel-created").waitFor();
      assert.deepEqual((await lastCall(page, "create_channel")).input, {
        cloud_url: CLOUD, name: "shop-api", target_url: "http://localhost:3000/webhook", verify: { preset: "github", secret: "gh-s3cret" },
      });
      const url = await text(page, "created-webhook-url");
      assert.match(url, /^https:\/\/hooks\.example\.com\/webhook\/wh_[a-z2-7]{26}$/);
      await until(async () => (await byId(page, "created-state").getAttribute("data-state")) === "connected", "connected", 6000);
      await byId(page, "created-copy").click();
      await byId(page, "notice").first().waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), url);
      await shot("new-channel-created");
      await byId(page, "created-done").click();
      const key = await keyOf(page, "alice.shop-api");
      assert.match(key, /^ch-[0-9a-f]{12}$/, "keyed like the core");
      assert.equal(await text(page, `webhook-url-${key}`), url);
      assert.equal(await byId(page, `self-service-${key}`).count(), 1);
      // The secret never comes back to the UI.
      const channels = await fake(page, () => window.__fakeBackend.handle("list_channels", {}));
      assert.ok(!JSON.stringify(channels).includes("gh-s3cret"));
    },
  },
  {
    name: "new channel without an account asks to sign in first",
    async run({ page, baseUrl }) {
      await page.goto(`${baseUrl}?accounts=0`);
      await byId(page, "new-channel").click();
      await byId(page, "new-channel-sign-in").waitFor();
      await byId(page, "go-accounts").click();
      await byId(page, "account-form").waitFor();
    },
  },
  {
    name: "use here: the account's channels not forwarded yet, with a target",
    async run({ page, shot }) {
      await byId(page, "remote-alice").waitFor();
      assert.equal(await byId(page, "remote-channel-alice.shop-dev").count(), 1);
      assert.equal(await byId(page, "remote-channel-alice.billing").count(), 1);
      await page.setViewportSize({ width: 1180, height: 1200 });
      await shot("overview-use-here");
      await page.setViewportSize({ width: 1180, height: 780 });
      await byId(page, "use-here-alice.shop-dev").click();
      await byId(page, "use-here-submit").click();
      assert.match(await text(page, "field-error-use-here-target"), /required/);
      await byId(page, "use-here-target").fill("http://localhost:4000/hooks");
      await byId(page, "use-here-submit").click();
      const key = await keyOf(page, "alice.shop-dev");
      assert.deepEqual(await lastCall(page, "use_remote_channel"), { cloud_url: CLOUD, channel: "alice.shop-dev", target_url: "http://localhost:4000/hooks" });
      await byId(page, "remote-channel-alice.shop-dev").waitFor({ state: "detached" });
      assert.equal(await byId(page, "remote-channel-alice.billing").count(), 1);
      assert.match(await text(page, `webhook-url-${key}`), /wh_k3q7z2m9x4c8v1b6n5t0r2y7pd$/);
      await until(async () => (await byId(page, `state-${key}`).getAttribute("data-state")) === "connected", "connected", 6000);
    },
  },
  {
    name: "removing a self-service channel asks whether to delete it at the cloud too",
    async run({ page, shot }) {
      await byId(page, "use-here-alice.billing").click();
      await byId(page, "use-here-target").fill("http://localhost:4000/billing");
      await byId(page, "use-here-submit").click();
      let key = await keyOf(page, "alice.billing");
      // Removed here only: the channel is still the account's, offered with "Use here" again.
      await byId(page, `remove-channel-${key}`).click();
      await byId(page, "confirm-check").waitFor();
      assert.equal(await byId(page, "confirm-check").isChecked(), false);
      await byId(page, "confirm-ok").click();
      await byId(page, `channel-row-${key}`).waitFor({ state: "detached" });
      assert.deepEqual(await lastCall(page, "remove_channel"), { key, delete_at_cloud: false });
      await byId(page, "remote-channel-alice.billing").waitFor();
      // Used again, then deleted at the cloud too: gone from the account's list.
      await byId(page, "use-here-alice.billing").click();
      await byId(page, "use-here-target").fill("http://localhost:4000/billing");
      await byId(page, "use-here-submit").click();
      key = await keyOf(page, "alice.billing");
      await byId(page, `remove-channel-${key}`).click();
      await byId(page, "confirm-check").check();
      await shot("remove-self-service-confirm");
      await byId(page, "confirm-ok").click();
      await byId(page, `channel-row-${key}`).waitFor({ state: "detached" });
      assert.deepEqual(await lastCall(page, "remove_channel"), { key, delete_at_cloud: true });
      await page.getByText("Deleted alice.billing here and at the cloud.").waitFor();
      const remote = await fake(page, (c) => window.__fakeBackend.remote.get(c).map((r) => r.channel), CLOUD);
      assert.ok(!remote.includes("alice.billing"), JSON.stringify(remote));
      // A channel added with a token has nothing to delete at the cloud: no checkbox.
      await byId(page, "remove-channel-payments-dev").click();
      await byId(page, "confirm-dialog").waitFor();
      assert.equal(await byId(page, "confirm-check").count(), 0);
      await byId(page, "confirm-ok").click();
      await byId(page, "channel-row-payments-dev").waitFor({ state: "detached" });
      assert.deepEqual(await lastCall(page, "remove_channel"), { key: "payments-dev", delete_at_cloud: false });
    },
  },
  {
    name: "dead letters of a self-service channel need no admin token; signed out, it asks to sign in",
    async run({ page }) {
      await byId(page, "use-here-alice.shop-dev").click();
      await byId(page, "use-here-target").fill("http://localhost:4000/hooks");
      await byId(page, "use-here-submit").click();
      const key = await keyOf(page, "alice.shop-dev");
      await fake(page, (k) => {
        const b = window.__fakeBackend;
        b.channels.get(k).deadLetters = structuredClone(b.channels.get("team-alpha").deadLetters);
      }, key);
      await byId(page, `dead-letters-${key}`).click();
      await byId(page, "dlq-list").waitFor();
      assert.equal(await byId(page, "dlq-needs-admin").count(), 0);
      assert.equal((await lastCall(page, "list_dead_letters")).key, key);
      await byId(page, "dlq-purge").click();
      await byId(page, "confirm-ok").click();
      await byId(page, "dlq-empty").waitFor();
      // Signed out: the channel has no credential, and the view says how to get one.
      await byId(page, "nav-settings").click();
      await byId(page, "sign-out-alice").click();
      await byId(page, "confirm-ok").click();
      await byId(page, "account-alice").waitFor({ state: "detached" });
      await byId(page, "nav-dead-letters").click();
      await byId(page, "channel-picker").selectOption(key);
      await byId(page, "dlq-needs-sign-in").waitFor();
    },
  },
  {
    name: "editing a self-service channel keeps its cloud, name and credential",
    async run({ page }) {
      await byId(page, "use-here-alice.shop-dev").click();
      await byId(page, "use-here-target").fill("http://localhost:4000/hooks");
      await byId(page, "use-here-submit").click();
      const key = await keyOf(page, "alice.shop-dev");
      await byId(page, `edit-channel-${key}`).click();
      await byId(page, "self-service-note").waitFor();
      assert.equal(await byId(page, "input-cloud-url").isDisabled(), true);
      assert.equal(await byId(page, "input-channel").isDisabled(), true);
      assert.equal(await byId(page, "input-token").count(), 0, "no channel token to enter");
      await byId(page, "input-default-target").fill("http://localhost:4001/hooks");
      await byId(page, "save-channel").click();
      await byId(page, `channel-row-${key}`).waitFor();
      const input = (await lastCall(page, "save_channel")).input;
      assert.equal(input.channel, "alice.shop-dev");
      assert.equal(input.cloud_url, CLOUD);
      assert.equal(input.token, null);
      assert.equal(input.default_target, "http://localhost:4001/hooks");
    },
  },
  {
    name: "the tray's New channel… opens the form",
    async run({ page }) {
      await byId(page, "channel-row-team-alpha").waitFor();
      await page.evaluate(() =>
        window.__TAURI_INTERNALS__.invoke("plugin:event|emit", { event: "navigate", payload: { name: "new-channel" } }),
      );
      await byId(page, "new-channel-form").waitFor();
      assert.equal(await byId(page, "nav-overview").getAttribute("aria-current"), "page");
    },
  },
];
