// What the "real backend" case files share: the REAL_* environment the Rust test
// (desktop/app/tests/it/ui_real.rs) sets, opening the app on its test bridge, the bridge's
// test-only routes (the recording targets), and plain HTTP to the real cloud.
import { byId, until } from "./helpers.mjs";
export { keyOf } from "./helpers.mjs";

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: these cases run from desktop/app/tests/it/ui_real.rs`);
  return v;
};

/** Opens the app with its IPC sent to the bridge (the real core). */
export const open = (page, baseUrl) => page.goto(`${baseUrl}?backend=${encodeURIComponent(env("REAL_BACKEND_URL"))}`);

export const stateIs = async (page, key, state, ms = 20000) =>
  until(async () => (await byId(page, `state-${key}`).getAttribute("data-state")) === state, `${key} ${state}`, ms);

/** Test-only route of the bridge: recording target `i` answers `status` from now on. */
export async function targetStatus(i, status) {
  const r = await fetch(`${env("REAL_BACKEND_URL")}/test/target/${i}/status/${status}`, { method: "POST" });
  if (!r.ok) throw new Error(`target status: ${r.status}`);
}

/** What recording target `i` received: `[{ path, body, headers }]`. */
export async function received(i) {
  const r = await fetch(`${env("REAL_BACKEND_URL")}/test/target/${i}/requests`);
  if (!r.ok) throw new Error(`target requests: ${r.status}`);
  return r.json();
}

/** Waits until target `i` received a request whose body contains `marker`, beyond the first
 * `seen` of them (a refused attempt is recorded too); returns it. */
export const receivedWith = (i, marker, ms = 20000, seen = 0) =>
  until(async () => (await received(i)).filter((q) => q.body.includes(marker))[seen], `target ${i} received ${marker} (after ${seen})`, ms);

/** How many requests with `marker` in the body target `i` received so far. */
export const receivedCount = async (i, marker) => (await received(i)).filter((q) => q.body.includes(marker)).length;

/** Linked to the cloud: connected, or degraded by a target that refused earlier deliveries. */
export const linked = async (page, key, ms = 20000) =>
  until(async () => ["connected", "degraded"].includes(await byId(page, `state-${key}`).getAttribute("data-state")), `${key} linked`, ms);

/** POSTs a JSON webhook to `url` (`<cloud>/webhook/<id>`); the status and the answer. */
export async function postWebhook(url, body, headers = {}) {
  const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: r.status, body: await r.json().catch(() => null) };
}

/** A command sent to the bridge as the page would: `{ ok, value }` or `{ ok: false, error }`. */
export async function invoke(cmd, args) {
  const r = await fetch(`${env("REAL_BACKEND_URL")}/invoke/${cmd}`, { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify(args ?? {}) });
  if (!r.ok) throw new Error(`bridge: HTTP ${r.status}`);
  const v = await r.json();
  return "error" in v ? { ok: false, error: v.error } : { ok: true, value: v.ok };
}
