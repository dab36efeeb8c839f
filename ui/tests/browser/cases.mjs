// Click-through cases of the browser tests. Each gets a fresh page (and so a fresh fake backend).
import assert from "node:assert/strict";
import { byId, fake, keyOf, lastCall, rows, scaled, stateOf, text, until } from "./helpers.mjs";

const eventId = (page, key, webhookId) =>
  fake(page, ([k, w]) => window.__fakeBackend.channels.get(k).events.find((e) => e.summary.webhook_id === w).summary.message_id, [key, webhookId]);

export const tests = [
  {
    name: "overview shows every channel with its state, counters and chart",
    async run({ page, shot }) {
      await byId(page, "channel-row-team-alpha").waitFor();
      assert.equal(await stateOf(page, "team-alpha"), "connected");
      assert.equal(await stateOf(page, "ci-events"), "degraded");
      assert.equal(await stateOf(page, "payments-dev"), "auth_failed");
      assert.match(await text(page, "state-payments-dev"), /Auth failed/);
      assert.match(await text(page, "last-error-payments-dev"), /invalid channel token/);
      assert.equal(await text(page, "transport-ci-events"), "Long-poll");
      assert.equal(await text(page, "delivered-team-alpha"), "1.3k");
      assert.equal(await text(page, "queue-team-alpha"), "3");
      const bars = await page.locator('[data-testid="chart-team-alpha"] rect').count();
      assert.ok(bars > 30, `chart has bars (${bars})`);
      assert.match(await text(page, "global-status"), /2 of 3 channels connected/);
      await shot("overview");
    },
  },
  {
    name: "add channel validates the form, then the channel appears and connects",
    async run({ page, shot }) {
      await byId(page, "add-channel").click();
      await byId(page, "channel-form").waitFor();
      await byId(page, "save-channel").click();
      assert.match(await text(page, "field-error-cloud_url"), /required/);
      assert.match(await text(page, "field-error-channel"), /required/);
      assert.match(await text(page, "field-error-token"), /required/);
      assert.match(await text(page, "field-error-default_target"), /default target or add/);
      await byId(page, "input-cloud-url").fill("ftp://relay.example.com");
      await byId(page, "input-channel").fill("bad name!");
      await byId(page, "add-target").click();
      await byId(page, "target-id-0").fill("admin");
      await byId(page, "target-url-0").fill("localhost:3000");
      assert.match(await text(page, "field-error-cloud_url"), /http:\/\/ or https:\/\//);
      assert.match(await text(page, "field-error-channel"), /letters, digits/);
      assert.match(await text(page, "field-error-targets-0-id"), /reserved/);
      assert.match(await text(page, "field-error-targets-0-url"), /http:\/\/ or https:\/\//);
      await shot("channel-form-errors");

      await byId(page, "input-cloud-url").fill("https://relay.example.com/");
      await byId(page, "input-channel").fill("team-beta");
      await byId(page, "input-token").fill("s3cret-token");
      await byId(page, "input-protocol").selectOption("sse");
      await byId(page, "target-id-0").fill("github-main");
      await byId(page, "target-url-0").fill("http://localhost:3000/hooks/github");
      await byId(page, "save-channel").click();
      const key = await keyOf(page, "team-beta");
      assert.match(key, /^ch-[0-9a-f]{12}$/, "keyed like the core");
      const input = (await lastCall(page, "save_channel")).input;
      assert.equal(input.key, null);
      assert.equal(input.cloud_url, "https://relay.example.com");
      assert.equal(input.token, "s3cret-token");
      assert.equal(input.admin_token, null);
      assert.equal(input.default_target, null);
      assert.deepEqual(input.targets, { "github-main": { url: "http://localhost:3000/hooks/github" } });
      await until(async () => (await stateOf(page, key)) === "connected", "team-beta connected", 6000);
      assert.equal(await text(page, `transport-${key}`), "SSE");
      assert.match(await text(page, `webhook-url-${key}`), /^https:\/\/relay\.example\.com\/webhook\/github-main$/);
    },
  },
  {
    name: "edit channel shows the stored token and keeps it when left blank",
    async run({ page, shot }) {
      await byId(page, "edit-channel-team-alpha").click();
      await byId(page, "token-stored").waitFor();
      assert.match(await text(page, "token-stored"), /Stored in keyring/);
      assert.match(await text(page, "admin-token-stored"), /Stored in keyring/);
      assert.equal(await byId(page, "input-token").inputValue(), "");
      assert.equal(await byId(page, "input-token").getAttribute("type"), "password");
      assert.equal(await byId(page, "target-id-1").inputValue(), "stripe");
      await shot("channel-form-edit");
      await byId(page, "remove-target-1").click();
      await byId(page, "input-default-target").fill("http://localhost:8081/other");
      await byId(page, "save-channel").click();
      await byId(page, "channel-row-team-alpha").waitFor();
      const input = (await lastCall(page, "save_channel")).input;
      assert.equal(input.key, "team-alpha");
      assert.equal(input.token, null);
      assert.equal(input.admin_token, null);
      assert.equal(input.default_target, "http://localhost:8081/other");
      assert.deepEqual(Object.keys(input.targets), ["github-main"]);
    },
  },
  {
    name: "connect toggle, pause all and resume all",
    async run({ page }) {
      await byId(page, "toggle-team-alpha").click();
      await until(async () => (await stateOf(page, "team-alpha")) === "disconnected", "disconnected");
      assert.equal(await text(page, "toggle-team-alpha"), "Connect");
      // The engine's `disconnected` is the user's Disconnect (not a lost connection).
      assert.match((await byId(page, "state-team-alpha").getAttribute("title")) ?? "", /by you/);
      await byId(page, "toggle-team-alpha").click();
      await until(async () => (await stateOf(page, "team-alpha")) === "connected", "connected again", 6000);
      await byId(page, "pause-all").click();
      await byId(page, "paused-banner").waitFor();
      await until(async () => (await stateOf(page, "team-alpha")) === "paused", "paused");
      assert.match(await text(page, "pause-all"), /Resume all/);
      await byId(page, "pause-all").click();
      await byId(page, "paused-banner").waitFor({ state: "detached" });
      await until(async () => (await stateOf(page, "team-alpha")) === "connected", "resumed");
    },
  },
  {
    name: "copy webhook URL puts it on the clipboard",
    async run({ page }) {
      await byId(page, "copy-url-team-alpha").click();
      await byId(page, "notice").first().waitFor();
      const clip = await page.evaluate(() => navigator.clipboard.readText());
      assert.equal(clip, "https://relay.example.com/webhook/github-main");
    },
  },
  {
    name: "inspector shows a webhook, edits its body, replays it and shows the result",
    async run({ page, shot }) {
      await byId(page, "open-inspector-team-alpha").click();
      await byId(page, "event-list").waitFor();
      assert.equal(await rows(page, "event-row-"), 12);
      const id = await eventId(page, "team-alpha", "github-main");
      await byId(page, `event-row-${id}`).click();
      await byId(page, "event-detail").waitFor();
      assert.match(await text(page, "request-headers"), /x-github-event\s*push/);
      assert.match(await text(page, "request-body-text"), /\n {2}"ref": "refs\/heads\/main"/);
      assert.equal(await text(page, "detail-outcome"), "Delivered");
      await shot("inspector-detail");

      await byId(page, "edit-replay").click();
      await byId(page, "replay-editor").waitFor();
      await byId(page, "replay-body").fill('{"ref":"refs/heads/feature","edited":true}');
      await byId(page, "replay-header-value-2").fill("ping");
      await byId(page, "replay").click();
      await byId(page, "replay-result").waitFor();
      assert.match(await text(page, "replay-result"), /Delivered/);
      assert.match(await text(page, "replay-result"), /200/);
      // The result is scrolled into view, not left below the fold.
      await until(async () => {
        const box = await byId(page, "replay-result").boundingBox();
        const vp = page.viewportSize();
        // (1 px of slack: "nearest" aligns to the bottom edge at sub-pixel positions.)
        return box && vp && box.y >= 0 && box.y + box.height <= vp.height + 1;
      }, "replay result in view", 2000);
      const req = (await lastCall(page, "replay_event")).request;
      assert.equal(req.key, "team-alpha");
      assert.equal(req.message_id, id);
      assert.equal(req.target_url, null);
      assert.equal(Buffer.from(req.body_base64, "base64").toString("utf8"), '{"ref":"refs/heads/feature","edited":true}');
      assert.deepEqual(req.headers[2], ["x-github-event", "ping"]);
      await shot("inspector-replay");

      await byId(page, "open-replay").click();
      await until(async () => /replay of/.test(await text(page, "event-detail")), "replay detail");
      assert.match(await text(page, "request-body-text"), /"edited": true/);
    },
  },
  {
    name: "replay to another URL reports the failure",
    async run({ page }) {
      await byId(page, "nav-inspector").click();
      const id = await eventId(page, "team-alpha", "stripe");
      await byId(page, `event-row-${id}`).click();
      await byId(page, "replay-target").fill("not a url");
      await byId(page, "replay").click();
      await page.getByText("Target URL is not a valid URL").waitFor();
      await byId(page, "replay-target").fill("http://localhost:9/");
      await byId(page, "replay").click();
      await byId(page, "replay-result").waitFor();
      assert.match(await text(page, "replay-result"), /Failed/);
      assert.match(await text(page, "replay-result"), /Connection refused/);
      assert.equal((await lastCall(page, "replay_event")).request.target_url, "http://localhost:9/");
    },
  },
  {
    name: "copy as curl builds a shell-quoted command with --data-binary",
    async run({ page }) {
      await byId(page, "open-inspector-team-alpha").click();
      const id = await eventId(page, "team-alpha", "forms");
      await byId(page, `event-row-${id}`).click();
      await byId(page, "copy-curl").click();
      await byId(page, "notice").first().waitFor();
      const clip = await page.evaluate(() => navigator.clipboard.readText());
      assert.equal(
        clip,
        "curl http://localhost:8080/fallback -H 'content-type: application/x-www-form-urlencoded' -H 'user-agent: curl/8.5.0' --data-binary 'name=O%27Brien&email=ob%40example.com&message=Hello+there'",
      );
    },
  },
  {
    name: "binary bodies are shown as base64 with a note",
    async run({ page }) {
      await byId(page, "open-inspector-team-alpha").click();
      const id = await eventId(page, "team-alpha", "camera");
      await byId(page, `event-row-${id}`).focus();
      await page.keyboard.press("Enter");
      await byId(page, "event-detail").waitFor();
      assert.match(await text(page, "request-body"), /Binary body \(70 B, image\/png\)/);
      assert.equal(await text(page, "detail-outcome"), "Dead letter");
    },
  },
  {
    name: "dead letters: inspect, replay, delete and purge with confirmation",
    async run({ page, shot }) {
      await byId(page, "dead-letters-team-alpha").click();
      await byId(page, "dlq-list").waitFor();
      assert.equal(await rows(page, "dlq-row-"), 3);
      assert.match(await text(page, "dlq-total"), /3 dead letters/);
      const ids = await fake(page, () => window.__fakeBackend.channels.get("team-alpha").deadLetters.map((m) => m.message_id));
      await byId(page, `dlq-row-${ids[1]}`).click();
      await byId(page, "dlq-detail").waitFor();
      assert.match(await text(page, "dlq-detail"), /503 Service Unavailable/);
      // Next to the detail, the method and path of each row are not cut.
      const cut = await page.evaluate(() =>
        [...document.querySelectorAll('[data-testid="dlq-list"] td.stack .line2')].filter((e) => e.scrollWidth > e.clientWidth).map((e) => e.textContent),
      );
      assert.deepEqual(cut, []);
      await shot("dead-letters");
      await byId(page, "dlq-replay").click();
      await until(async () => (await rows(page, "dlq-row-")) === 2, "2 rows after replay");
      assert.equal((await lastCall(page, "replay_dead_letter")).message_id, ids[1]);

      await byId(page, `dlq-row-${ids[0]}`).click();
      await byId(page, "dlq-delete").click();
      await byId(page, "confirm-cancel").click();
      assert.equal(await rows(page, "dlq-row-"), 2);
      await byId(page, "dlq-delete").click();
      await byId(page, "confirm-ok").click();
      await until(async () => (await rows(page, "dlq-row-")) === 1, "1 row after delete");

      await byId(page, "dlq-purge").click();
      await byId(page, "confirm-dialog").waitFor();
      await shot("dead-letters-purge-confirm");
      await byId(page, "confirm-ok").click();
      await byId(page, "dlq-empty").waitFor();
      await page.getByText("Purged 1 dead letter.").waitFor();
      assert.equal(await byId(page, "dlq-purge").isDisabled(), true);
    },
  },
  {
    name: "dead letters explain that the admin token is needed",
    async run({ page, shot }) {
      await byId(page, "dead-letters-ci-events").click();
      await byId(page, "dlq-needs-admin").waitFor();
      assert.match(await text(page, "dlq-needs-admin"), /Admin token needed/);
      assert.equal(await lastCall(page, "list_dead_letters"), null);
      await shot("dead-letters-no-admin");
      await byId(page, "dlq-add-admin-token").click();
      await byId(page, "channel-form").waitFor();
    },
  },
  {
    name: "settings are validated and saved",
    async run({ page, shot }) {
      await byId(page, "nav-settings").click();
      await byId(page, "settings-form").waitFor();
      assert.equal(await byId(page, "save-settings").isDisabled(), true);
      await byId(page, "notifications-all").check();
      await byId(page, "autostart").check();
      await byId(page, "history-size").fill("0");
      assert.match(await text(page, "field-error-history-size"), /between 1 and 100000/);
      assert.equal(await byId(page, "save-settings").isDisabled(), true);
      await byId(page, "history-size").fill("500");
      await shot("settings");
      await byId(page, "save-settings").click();
      await byId(page, "notice").first().waitFor();
      const s = (await lastCall(page, "save_settings")).settings;
      assert.deepEqual(s, { autostart: true, start_minimized: true, notifications: "all", history_size: 500, light_mode: true, no_tray: "keep_window" });
      assert.match(await text(page, "light-mode-info"), /never stops forwarding/);
      await byId(page, "light-mode").uncheck();
      await byId(page, "save-settings").click();
      await until(async () => (await lastCall(page, "save_settings")).settings.light_mode === false, "light_mode saved");
      await byId(page, "close-window").click();
      await until(() => fake(page, () => window.__fakeBackend.closed), "close_window called");
      await byId(page, "no-tray-quit").check();
      await byId(page, "save-settings").click();
      await until(async () => (await lastCall(page, "save_settings")).settings.no_tray === "quit", "no_tray saved");
      await byId(page, "quit-app").click();
      await until(() => fake(page, () => window.__fakeBackend.quit), "quit_app called");
    },
  },
  {
    name: "the tray's navigate event and pending view open the asked view",
    async run({ page }) {
      await byId(page, "channel-row-team-alpha").waitFor();
      await page.evaluate(() =>
        window.__TAURI_INTERNALS__.invoke("plugin:event|emit", { event: "navigate", payload: { name: "dead-letters", key: "team-alpha" } }),
      );
      await byId(page, "dlq-list").waitFor();
      assert.equal(await byId(page, "nav-dead-letters").getAttribute("aria-current"), "page");
      assert.ok((await fake(page, () => window.__fakeBackend.calls.some((c) => c.cmd === "take_pending_view"))));
    },
  },
  {
    name: "backend notices are shown once and can be dismissed",
    async run({ page }) {
      await fake(page, () => {
        window.__fakeBackend.notices = ["A token found in settings.toml was moved to the keyring."];
      });
      await byId(page, "app-notice").waitFor();
      assert.match(await text(page, "app-notice"), /moved to the keyring/);
      await page.getByRole("button", { name: "Dismiss notice" }).click();
      await byId(page, "app-notice").waitFor({ state: "detached" });
      // The backend keeps sending the notice in every snapshot: two more snapshots are
      // applied, and it stays dismissed.
      const emitted = () => fake(page, () => window.__fakeBackend.snapshotsEmitted);
      const after = await emitted();
      await until(async () => (await emitted()) >= after + 2, "two later snapshots", 15000);
      assert.ok(await fake(page, () => window.__fakeBackend.notices.length === 1), "the backend still sends the notice");
      assert.equal(await byId(page, "app-notice").count(), 0);
    },
  },
  {
    name: "edit channel can remove the stored admin token",
    async run({ page }) {
      await byId(page, "edit-channel-team-alpha").click();
      await byId(page, "remove-admin-token").check();
      assert.equal(await byId(page, "input-admin-token").isDisabled(), true);
      await byId(page, "save-channel").click();
      await byId(page, "channel-row-team-alpha").waitFor();
      assert.equal((await lastCall(page, "save_channel")).input.admin_token, "");
      await byId(page, "dead-letters-team-alpha").click();
      await byId(page, "dlq-needs-admin").waitFor();
    },
  },
  {
    name: "a failing command shows its message in the error toast",
    async run({ page }) {
      await byId(page, "nav-settings").click();
      await byId(page, "autostart").check();
      await fake(page, () => window.__fakeBackend.failNext("save_settings", "The keyring is locked"));
      await byId(page, "save-settings").click();
      await byId(page, "error").waitFor();
      assert.equal((await text(page, "error")).replace("✕", "").trim(), "The keyring is locked");
      await page.getByRole("button", { name: "Dismiss" }).click();
      await byId(page, "error").waitFor({ state: "detached" });
    },
  },
  {
    name: "remove channel asks for confirmation",
    async run({ page }) {
      await byId(page, "remove-channel-payments-dev").click();
      await byId(page, "confirm-dialog").waitFor();
      await page.keyboard.press("Escape");
      await byId(page, "confirm-dialog").waitFor({ state: "detached" });
      assert.equal(await rows(page, "channel-row-"), 3);
      await byId(page, "remove-channel-payments-dev").click();
      await byId(page, "confirm-ok").click();
      await byId(page, "channel-row-payments-dev").waitFor({ state: "detached" });
      assert.equal((await lastCall(page, "remove_channel")).key, "payments-dev");
    },
  },
  {
    name: "keyboard only: tab to the navigation and open settings",
    async run({ page }) {
      await byId(page, "channel-row-team-alpha").waitFor();
      for (let i = 0; i < 6; i++) {
        await page.keyboard.press("Tab");
        if (await byId(page, "nav-settings").evaluate((el) => el === document.activeElement)) break;
      }
      await page.keyboard.press("Enter");
      await byId(page, "settings-form").waitFor();
      assert.equal(await byId(page, "nav-settings").getAttribute("aria-current"), "page");
    },
  },
  {
    name: "without snapshot events the view is kept fresh by polling",
    url: "?tick=0",
    async run({ page, baseUrl }) {
      await page.goto(`${baseUrl}?tick=0`);
      await byId(page, "channel-row-team-alpha").waitFor();
      await fake(page, () => window.__fakeBackend.handle("set_paused", { paused: true }));
      await until(async () => (await stateOf(page, "team-alpha")) === "paused", "poll shows paused", 4000);
    },
  },
  {
    name: "toasts sit in the sidebar, never over a view's buttons, and notices go away",
    async run({ page, shot }) {
      await byId(page, "open-inspector-team-alpha").click();
      const id = await eventId(page, "team-alpha", "github-main");
      await byId(page, `event-row-${id}`).click();
      await byId(page, "event-detail").waitFor();
      await byId(page, "copy-curl").click();
      const toast = byId(page, "notice").first();
      await toast.waitFor();
      const box = await toast.boundingBox();
      const side = await page.locator("nav.sidebar").boundingBox();
      assert.ok(box && side, "toast and sidebar have boxes");
      assert.ok(box.x >= side.x && box.x + box.width <= side.x + side.width, `toast ${JSON.stringify(box)} inside the sidebar ${JSON.stringify(side)}`);
      // Nothing the view offers to click is under the toast.
      const covered = await page.evaluate(({ x, y, width, height }) => {
        const hit = [];
        for (const el of document.querySelectorAll("main button, main a, main input, main select, main textarea")) {
          const r = el.getBoundingClientRect();
          if (r.width > 0 && r.left < x + width && r.right > x && r.top < y + height && r.bottom > y) hit.push(el.textContent);
        }
        return hit;
      }, box);
      assert.deepEqual(covered, []);
      await shot("toast-in-sidebar");
      // Gone on its own (NOTICE_MS, 3 s), also across a change of view. The wait only bounds a
      // hang; it is generous for a loaded machine and scales with CONNECT_TEST_TIME_SCALE.
      await byId(page, "nav-overview").click();
      await byId(page, "notice").first().waitFor({ state: "detached", timeout: scaled(15000) });
      // Errors stay until dismissed: a notice raised after the error goes away on its own timer
      // while the older error is still there (no fixed wait).
      await fake(page, () => window.__fakeBackend.failNext("set_paused", "engine is shutting down"));
      await byId(page, "pause-all").click();
      await byId(page, "error").waitFor();
      await page.locator('[data-testid^="copy-url-"]').first().click();
      const later = byId(page, "notice").first();
      await later.waitFor();
      await later.waitFor({ state: "detached", timeout: scaled(15000) });
      assert.equal(await byId(page, "error").count(), 1);
    },
  },
  {
    name: "stat labels are not cut at the default window size, nor with two cards abreast",
    async run({ page, shot }) {
      const cut = () =>
        page.evaluate(() =>
          [...document.querySelectorAll(".stat dt")].filter((dt) => dt.scrollWidth > dt.clientWidth).map((dt) => dt.textContent),
        );
      // The app's window opens at 1120 × 760; 1440 puts two cards side by side; 860 stacks.
      for (const [width, height] of [[1120, 760], [1440, 900], [1000, 700], [860, 640]]) {
        await page.setViewportSize({ width, height });
        await byId(page, "channel-row-team-alpha").waitFor();
        const labels = await page.locator(".stat dt").count();
        assert.ok(labels >= 8, `stats shown at ${width} px`);
        assert.deepEqual(await cut(), [], `labels cut at ${width} px`);
        if (width === 1120) await shot("overview-1120");
      }
    },
  },
  {
    name: "dark theme and a narrow window stay readable",
    async run({ page, shot }) {
      await page.emulateMedia({ colorScheme: "dark" });
      await byId(page, "channel-row-team-alpha").waitFor();
      await shot("overview-dark");
      await byId(page, "open-inspector-team-alpha").click();
      const id = await eventId(page, "team-alpha", "github-main");
      await byId(page, `event-row-${id}`).click();
      await byId(page, "event-detail").waitFor();
      await shot("inspector-dark");
      await page.emulateMedia({ colorScheme: "light" });
      await page.setViewportSize({ width: 860, height: 640 });
      await byId(page, "nav-overview").click();
      await shot("overview-narrow");
    },
  },
];
