#!/usr/bin/env bash
# Desktop app tests: unit tests, clippy, then the real app end to end under Xvfb through
# tauri-driver + WebKitWebDriver against a real cloud, with a real Secret Service (gnome-keyring).
# Installs what it needs: apt packages (when root and missing) and tauri-driver (cargo install).
# Writes screenshots of the main views to docs/screenshots/.
#
# Usage: scripts/test-app.sh [--no-e2e] [--skip-ui-build] [--skip-lint]
# (scripts/test.sh passes --skip-ui-build --skip-lint: it has built the UI and run fmt and clippy
# over the whole workspace, the app included, already.)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-app}"
source scripts/build-env.sh
E2E=1
UI_BUILD=1
LINT=1
for a in "$@"; do
  case "$a" in
    --no-e2e) E2E=0 ;;
    --skip-ui-build) UI_BUILD=0 ;;
    --skip-lint) LINT=0 ;;
    *) echo "unknown argument $a" >&2; exit 64 ;;
  esac
done

APT_PACKAGES=(
  build-essential pkg-config libssl-dev
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libsoup-3.0-dev
  xvfb xauth imagemagick xdotool x11-utils webkit2gtk-driver
  dbus dbus-x11 gnome-keyring libsecret-tools
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    echo "== apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "missing packages (run as root or install them): ${missing[*]}" >&2
    exit 1
  fi
fi
if ! command -v tauri-driver >/dev/null; then
  echo "== cargo install tauri-driver"
  cargo install tauri-driver --version '^2' --locked
fi

if ((UI_BUILD)) || [[ ! -f ui/dist/index.html ]]; then
  echo "== building the UI (ui/dist)"
  # npm ci wipes node_modules: only on a fresh checkout.
  (cd ui && { [[ -d node_modules ]] || npm ci --no-audit --no-fund; } && npm run build)
fi

if ((LINT)); then
  echo "== fmt, clippy"
  cargo fmt -p connect-appcore -p webhook-connect-app -p webhook-connect-light -- --check
  cargo clippy -p connect-appcore -p webhook-connect-app -p webhook-connect-light --all-targets -- -D warnings
fi
# The cloud binary for the tray-menu and end-to-end tests, built into the same target dir.
cargo build -p connect-cloud --bin webhook-connect-cloud
# The light image next to the app's binary: light mode hands over to it.
cargo build -p webhook-connect-light --bin webhook-connect-light
# The CLI: the self-service test has it `login` into the test's Secret Service.
cargo build -p connect-cli --bin webhook-connect
echo "== unit tests, tray menu against a real engine and cloud (tests/it)"
# Each test that stores tokens runs in its own dbus-daemon + gnome-keyring (the test kit's
# secret_service::isolated re-runs it there); nothing needs a D-Bus session from outside.
# (connect-appcore's tests run with the workspace's, in scripts/test.sh.)
cargo test -p webhook-connect-light
cargo test -p webhook-connect-app --lib --test it

if ((E2E)); then
  echo "== end to end under Xvfb + D-Bus (tauri-driver, WebKitWebDriver, gnome-keyring)"
  mkdir -p docs/screenshots
  # The test gives the app (through tauri-driver) a fresh HOME / XDG_CONFIG_HOME and starts
  # gnome-keyring-daemon there, inside this D-Bus session.
  xvfb-run -a -s "-screen 0 1400x900x24" dbus-run-session -- \
    cargo test -p webhook-connect-app --test webdriver -- --ignored --nocapture --test-threads=1
  echo "screenshots: $(ls docs/screenshots | tr '\n' ' ')"
fi
