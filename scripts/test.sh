#!/usr/bin/env bash
# Runs every check and test: formatting, lints, the TypeScript drift check, unit, integration
# and end-to-end tests (real redis-server / etcd / cloud processes on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build binaries for the end-to-end suite"
cargo build --workspace --bins
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --profile ci
  # nextest does not run doctests
  cargo test --workspace --doc
else
  cargo test --workspace
fi
