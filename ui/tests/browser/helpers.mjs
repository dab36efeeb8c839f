// What every browser case file shares: polling, locators by test id, and the fake backend's
// call log. (The cases run in run.mjs: each gets a fresh page.)

/** Waits for something the app times itself, with room for a loaded machine: CONNECT_TEST_TIME_SCALE (≥ 1) stretches it. */
const SCALE = Math.max(1, Number(process.env.CONNECT_TEST_TIME_SCALE) || 1);
export function scaled(ms) {
  return Math.ceil(ms * SCALE);
}

/** Polls `fn` until it returns a truthy value (or throws the last error after `ms`, stretched by
 * CONNECT_TEST_TIME_SCALE like every other wait here). */
export async function until(fn, what, ms = 5000) {
  const end = Date.now() + scaled(ms);
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = new Error(`still false: ${what}`);
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw last;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const byId = (page, id) => page.getByTestId(id, { exact: true });
export const text = async (page, id) => (await byId(page, id).textContent()) ?? "";
export const stateOf = (page, key) => byId(page, `state-${key}`).getAttribute("data-state");
export const rows = (page, prefix) => page.locator(`[data-testid^="${prefix}"]`).count();
/** Runs `fn(arg)` in the page (where the fake backend is `window.__fakeBackend`). */
export const fake = (page, fn, arg) => page.evaluate(fn, arg);
/** The arguments of the last call of `cmd` the fake backend saw (null: none). */
export const lastCall = (page, cmd) =>
  fake(page, (c) => window.__fakeBackend.calls.filter((x) => x.cmd === c).at(-1)?.args ?? null, cmd);

/** The key the backend gave the channel whose overview row mentions `channel` (keys are the
 * core's `ch-…`, not derived from the name). */
export async function keyOf(page, channel) {
  return until(
    () =>
      page.evaluate((name) => {
        const row = [...document.querySelectorAll('[data-testid^="channel-row-"]')].find((r) => (r.textContent ?? "").includes(name));
        return row?.getAttribute("data-testid")?.slice("channel-row-".length) ?? null;
      }, channel),
    `a channel row of ${channel}`,
  );
}
