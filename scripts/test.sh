#!/usr/bin/env bash
# Runs every check and test: formatting, lints, the TypeScript drift checks, the web UI (lint,
# Vitest, headless Chromium), unit, integration and end-to-end tests (real redis-server, etcd,
# OpenBao and cloud processes on loopback), the desktop app under Xvfb through WebDriver, and the
# Docker/compose static checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export SETUP_PROFILE=test
source scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# Line tables only, for every step (the app's script uses the same): one debug build shared by
# clippy, the binaries, the tests and the app, and a much smaller target directory.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
echo "== cargo fmt --check"
cargo fmt --all -- --check
# The desktop app embeds ui/dist, so the UI is built (and tested) before any cargo build.
echo "== web UI"
bash scripts/test-ui.sh
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build binaries for the end-to-end suite"
cargo build --workspace --bins
echo "== tests"
cargo nextest run --workspace --profile ci
# nextest does not run doctests
cargo test --workspace --doc
echo "== desktop app end to end (Xvfb, tauri-driver, gnome-keyring)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" bash scripts/test-app.sh --skip-ui-build --skip-lint
if [ -f scripts/test-docker.sh ]; then
  echo "== Dockerfiles and compose files (static checks; no Docker engine here)"
  bash scripts/test-docker.sh
fi
echo "== all checks passed"
