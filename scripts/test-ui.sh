#!/usr/bin/env bash
# Checks the web UI (ui/) from a fresh clone: npm ci, lint (tsc + ESLint), unit tests (Vitest),
# build (ui/dist, embedded by the Tauri app), browser tests (Debian's headless Chromium through
# playwright-core, Tauri IPC mocked). Screenshots: ui/test-results/screenshots/.
# SKIP_BROWSER_TESTS=1 skips the last step.
set -euo pipefail
cd "$(dirname "$0")/../ui"

need_major=20
if ! command -v node >/dev/null 2>&1 || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt "$need_major" ]; then
  echo "test-ui: Node $need_major or newer is required (found: $(node -v 2>/dev/null || echo none))" >&2
  exit 1
fi

echo "== ui: npm ci"
npm ci --no-audit --no-fund
echo "== ui: lint (tsc --noEmit, eslint)"
npm run lint
echo "== ui: unit tests"
npm test
echo "== ui: build"
npm run build

if [ "${SKIP_BROWSER_TESTS:-0}" = "1" ]; then
  echo "== ui: browser tests skipped (SKIP_BROWSER_TESTS=1)"
  exit 0
fi
chromium_bin="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "== ui: installing chromium (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test-ui: $chromium_bin is missing; install Debian's chromium (or set SKIP_BROWSER_TESTS=1)" >&2
    exit 1
  fi
fi
echo "== ui: browser tests"
npm run test:browser
