#!/usr/bin/env bash
# Runs every check and test: formatting, lints, the TypeScript drift checks, the web UI (lint,
# Vitest, headless Chromium), unit, integration and end-to-end tests (real redis-server, etcd,
# OpenBao and cloud processes on loopback), the desktop app under Xvfb through WebDriver, and the
# Docker stage: static checks, then the images built and the Docker scenarios run in real
# containers (a Docker engine is started when none runs; without one and without root, only the
# static checks run, which fails under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
export SETUP_PROFILE=test
source scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/build-env.sh
disk_report start
echo "== cargo fmt --check"
cargo fmt --all -- --check
# The desktop app embeds ui/dist, so the UI is built (and tested) before any cargo build.
echo "== web UI"
bash scripts/test-ui.sh
disk_report "UI done"
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
disk_report "clippy done"
echo "== build binaries for the end-to-end suite"
cargo build --workspace --bins
disk_report "binaries built"
echo "== tests"
cargo nextest run --workspace --profile ci
# nextest does not run doctests
cargo test --workspace --doc
disk_report "tests done"
echo "== desktop app end to end (Xvfb, tauri-driver, gnome-keyring)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" bash scripts/test-app.sh --skip-ui-build --skip-lint
disk_report "app done"
echo "== Docker: static checks, images, scenarios in real containers"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" bash scripts/test-docker.sh
disk_report "docker done"
echo "== desktop packages (.deb, .rpm of the debug build) and the .deb installed in a fresh container"
bash scripts/package-desktop.sh --debug
bash scripts/test-desktop-package.sh
disk_report "packages done"
echo "== all checks passed"
