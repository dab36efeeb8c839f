// Browser tests: the built UI (dist/) in Debian's headless Chromium via playwright-core, with the
// Tauri IPC replaced by the in-memory fake backend (or, for the "real backend" cases, sent to the
// real app core through a test bridge). No browser download: /usr/bin/chromium only.
// Usage: node tests/browser/run.mjs [name filter]
import { build } from "esbuild";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { tests as baseTests } from "./cases.mjs";
import { scaled } from "./helpers.mjs";
import { hostedTests } from "./cases-hosted.mjs";
import { realTests } from "./cases-real.mjs";
import { realHostedTests } from "./cases-real-hosted.mjs";

// The "real backend" / "real self-service" cases need the bridge desktop/app/tests/it/ui_real.rs
// starts (REAL_BACKEND_URL).
const tests = [...baseTests, ...hostedTests, ...(process.env.REAL_BACKEND_URL ? [...realTests, ...realHostedTests] : [])];

const root = resolve(fileURLToPath(import.meta.url), "../../..");
const dist = join(root, "dist");
const shots = join(root, "test-results", "screenshots");
const failures = join(root, "test-results", "failures");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

if (!existsSync(join(dist, "index.html"))) {
  console.error("dist/index.html is missing: run `npm run build` first.");
  process.exit(2);
}
if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
rmSync(failures, { recursive: true, force: true });

const mock = await build({
  entryPoints: [join(root, "tests/browser/mock-entry.ts")],
  bundle: true,
  format: "iife",
  write: false,
  target: "es2021",
  logLevel: "warning",
});
const mockScript = mock.outputFiles[0].text;

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png", ".json": "application/json" };
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
  let file = normalize(join(dist, path));
  if (!file.startsWith(dist)) {
    res.writeHead(403).end();
    return;
  }
  if (!existsSync(file) || statSync(file).isDirectory()) file = join(dist, "index.html");
  res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", () => r(undefined)));
const addr = server.address();
const baseUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/`;

const profile = mkdtempSync(join(tmpdir(), "whc-ui-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ],
  viewport: { width: 1180, height: 780 },
  colorScheme: "light",
  permissions: ["clipboard-read", "clipboard-write"],
});
await context.addInitScript({ content: mockScript });

const filter = process.argv[2];
let passed = 0;
let failed = 0;
const started = Date.now();
for (const t of tests) {
  if (filter && !t.name.includes(filter)) continue;
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(m.text());
  });
  // Every wait ends at its event; the limit only bounds a failure, and the real-backend cases
  // wait on a real cloud and core, slower on a loaded machine (CONNECT_TEST_TIME_SCALE).
  page.setDefaultTimeout(scaled(15000));
  const t0 = Date.now();
  try {
    await page.goto(baseUrl);
    await t.run({ page, shot: (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: false }), baseUrl });
    if (pageErrors.length > 0) throw new Error(`errors in the page: ${pageErrors.join(" | ")}`);
    passed++;
    console.log(`ok   ${t.name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    mkdirSync(failures, { recursive: true });
    await page.screenshot({ path: join(failures, `${t.name.replace(/\W+/g, "_")}.png`) }).catch(() => undefined);
    console.log(`FAIL ${t.name} (${Date.now() - t0} ms)\n     ${String(e instanceof Error ? e.stack ?? e.message : e).split("\n").slice(0, 6).join("\n     ")}`);
  } finally {
    await page.close();
  }
}
await context.close();
server.close();
rmSync(profile, { recursive: true, force: true });
console.log(`\nbrowser tests: ${((Date.now() - started) / 1000).toFixed(1)} s, screenshots in ${shots}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
