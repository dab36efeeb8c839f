#!/usr/bin/env bash
# Builds the desktop app's installable Linux packages with Tauri 2's bundler (offline):
#   dist/webhook-connect_<version>_amd64.deb and dist/webhook-connect-<version>-1.x86_64.rpm
# Each holds /usr/bin/webhook-connect-app (the app), /usr/bin/webhook-connect-light (the light
# image, which light mode hands over to: it must sit next to the app), a .desktop entry and
# icons (32, 128, 256 px: desktop/app/icons/, the larger ones the 32 px icon scaled up without
# smoothing), and declares the libraries the two binaries need (the bundler adds
# WebKitGTK 4.1, GTK 3 and the Ayatana AppIndicator library, which the tray loads at run time;
# the light image needs only GTK 3, GLib and the AppIndicator library, already among them).
#   bash scripts/package-desktop.sh           the binaries of the `desktop` profile (fat LTO; ~10 min)
#   bash scripts/package-desktop.sh --debug   the debug binaries (what scripts/test.sh built; CI)
# The tauri CLI comes from npm (@tauri-apps/cli, a prebuilt binary inside the npm package), in
# ~/.cache/webhook-connect-tauri-cli; rpm's rpmbuild is not needed (the bundler writes the .rpm).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=desktop
[ "${1:-}" = --debug ] && profile=debug
source scripts/build-env.sh
target="${CARGO_TARGET_DIR:-$PWD/target}"
version=$(cargo metadata --no-deps --format-version 1 |
  jq -r '.packages[] | select(.name == "webhook-connect-app") | .version')

cli_dir="${WEBHOOK_CONNECT_TAURI_CLI:-$HOME/.cache/webhook-connect-tauri-cli}"
if [ ! -x "$cli_dir/node_modules/.bin/tauri" ]; then
  echo "package-desktop: installing @tauri-apps/cli 2 (npm) into $cli_dir"
  mkdir -p "$cli_dir"
  npm install --prefix "$cli_dir" --no-audit --no-fund --silent '@tauri-apps/cli@^2'
fi
tauri="$cli_dir/node_modules/.bin/tauri"

if [ ! -f ui/dist/index.html ]; then
  echo "package-desktop: building the UI (ui/dist)"
  (cd ui && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build)
fi
echo "package-desktop: building the app and the light image ($profile)"
if [ "$profile" = debug ]; then
  # The same command as scripts/test.sh: nothing is rebuilt after it.
  cargo build --workspace --bins
  bin_dir="$target/debug"
else
  cargo build --profile desktop -p webhook-connect-app -p webhook-connect-light
  bin_dir="$target/desktop"
fi

# The bundler reads the binaries from <target>/{release,debug}: a staging target directory
# holds them (and receives the bundles), whatever profile built them.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
kind=release
bundle_flags=()
if [ "$profile" = debug ]; then kind=debug; bundle_flags+=(--debug); fi
mkdir -p "$stage/$kind"
cp "$bin_dir/webhook-connect-app" "$bin_dir/webhook-connect-light" "$stage/$kind/"
# desktop/app/tauri.conf.json holds the package's settings (bundle: targets, icons, category,
# descriptions); this adds what depends on the build: the light image's path.
cat >"$stage/bundle.json" <<JSON
{
  "mainBinaryName": "webhook-connect-app",
  "bundle": {
    "linux": {
      "deb": {"files": {"/usr/bin/webhook-connect-light": "$stage/$kind/webhook-connect-light"}},
      "rpm": {"files": {"/usr/bin/webhook-connect-light": "$stage/$kind/webhook-connect-light"}}
    }
  }
}
JSON
echo "package-desktop: tauri bundle (deb, rpm)"
(cd desktop/app && CARGO_TARGET_DIR="$stage" CI=true "$tauri" bundle "${bundle_flags[@]}" \
  --bundles deb,rpm --config "$stage/bundle.json")
mkdir -p dist
deb=$(find "$stage/$kind/bundle/deb" -name '*.deb' | head -1)
rpm=$(find "$stage/$kind/bundle/rpm" -name '*.rpm' | head -1)
cp "$deb" "dist/webhook-connect_${version}_amd64.deb"
cp "$rpm" "dist/webhook-connect-${version}-1.x86_64.rpm"
ls -l dist/
