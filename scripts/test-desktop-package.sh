#!/usr/bin/env bash
# Installs the desktop .deb the way a user would, into a fresh Debian bookworm container
# (local/debian:bookworm, scripts/docker-base-images.sh): `apt-get install ./webhook-connect_….deb`
# with the host's network, so apt resolves the package's dependencies. Then it starts the
# installed app from the menu's command (`webhook-connect-app`, no settings yet) under Xvfb and a
# D-Bus session, waits for its window and saves a screenshot:
#   $WHC_PACKAGE_LOG_DIR (default artifacts/desktop-package)/first-launch.png, app.log, windows.txt
# Checks: the package installs, both binaries and the .desktop entry are in place, the window
# "Webhook Connect" is mapped, and the screen is not black.
# The .rpm beside it is checked against the .deb without installing it (no RPM distribution's
# repository is reachable here to resolve its dependencies): scripts/check-desktop-rpm.sh
# (same files, contents, modes, Recommends; sonames only as Requires), and in the container the
# Debian packages that ship the .rpm's required sonames must be exactly the .deb's Depends.
# Run scripts/package-desktop.sh first. Needs a Docker engine (started here as root when none runs;
# without one and without root: skipped, which fails under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
log_dir="${WHC_PACKAGE_LOG_DIR:-$PWD/artifacts/desktop-package}"
mkdir -p "$log_dir"
rm -f "$log_dir"/first-launch.* "$log_dir"/app.log "$log_dir"/windows.txt "$log_dir"/rpm-*.txt \
  "$log_dir"/deb-depends.txt
shopt -s nullglob
debs=(dist/webhook-connect_*_amd64.deb)
[ "${#debs[@]}" -eq 1 ] || { echo "FAIL expected one dist/webhook-connect_*_amd64.deb (run scripts/package-desktop.sh)"; exit 1; }
deb=$(basename "${debs[0]}")
if ! command -v rpm >/dev/null 2>&1 || ! command -v rpm2archive >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "test-desktop-package: installing rpm rpm2cpio (Debian's rpm tools, to read the .rpm)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm rpm2cpio >/dev/null
  else
    echo "FAIL rpm and rpm2archive are missing (sudo apt-get install rpm rpm2cpio)"
    exit 1
  fi
fi
source scripts/docker-lib.sh
trap docker_engine_down EXIT
docker_engine_up "$log_dir" test-desktop-package || exit $?
[ "$DOCKER_ENGINE_UP" = 1 ] || exit 0
docker image inspect local/debian:bookworm >/dev/null 2>&1 || bash scripts/docker-base-images.sh

failed=0
check() {
  local name=$1
  shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failed=1; fi
}

echo "== the .rpm against the .deb (Debian's rpm tools; installing the .rpm is not proven)"
check "the .rpm matches the .deb (scripts/check-desktop-rpm.sh)" \
  env WHC_PACKAGE_LOG_DIR="$log_dir" bash scripts/check-desktop-rpm.sh

t=$SECONDS
echo "== apt-get install ./$deb in a fresh bookworm container, then the app under Xvfb"
# Recommends (gnome-keyring) left out to keep CI short; the app then keeps tokens in memory.
set +e
docker run --rm --network host \
  -v "$PWD/dist:/dist:ro" -v "$log_dir:/out" \
  -e DEB="$deb" local/debian:bookworm bash -euo pipefail -c '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    cd /dist
    apt-get install -y -qq --no-install-recommends "./$DEB" xvfb xauth x11-apps x11-utils dbus dbus-x11 >/out/apt.log 2>&1 \
      || { tail -30 /out/apt.log; exit 10; }
    dpkg -L webhook-connect >/out/files.txt
    for f in /usr/bin/webhook-connect-app /usr/bin/webhook-connect-light; do
      [ -x "$f" ] || { echo "missing $f"; exit 11; }
    done
    ls /usr/share/applications/*.desktop | grep -qi "webhook connect" || exit 12
    # The Debian packages that ship the sonames the .rpm requires (check-desktop-rpm.sh).
    for so in $(sed "s/().*//" /out/rpm-requires.txt); do
      dpkg -S "*/$so" 2>/dev/null | cut -d: -f1 || echo "nothing-ships-$so"
    done | sort -u >/out/rpm-requires-debian-packages.txt
    dpkg-query -W -f="\${Depends}" webhook-connect | tr "," "\n" | sed "s/^ *//; s/ .*//" | grep . | sort -u \
      >/out/deb-depends.txt
    useradd -m user
    install -d -o user /tmp/out
    su user -c "cd ~ && xvfb-run -a -s \"-screen 0 1280x800x24\" dbus-run-session -- bash -c \"
      webhook-connect-app >/tmp/out/app.log 2>&1 &
      app=\\\$!
      for i in \\\$(seq 1 60); do
        xwininfo -root -tree | grep -q \\\"Webhook Connect\\\" && break
        sleep 1
      done
      sleep 4
      xwininfo -root -tree >/tmp/out/windows.txt
      xwd -root -silent >/tmp/out/first-launch.xwd
      kill \\\$app || true
      wait \\\$app || true
    \""
    cp /tmp/out/* /out/
  '
rc=$?
set -e
echo "   container: exit $rc after $((SECONDS - t)) s"
check "the .deb installs with apt-get (dependencies resolved), binaries and .desktop entry present" test "$rc" -eq 0
check "the .rpm's required sonames are shipped by exactly the .deb's Depends (Debian packages)" \
  diff -u "$log_dir/deb-depends.txt" "$log_dir/rpm-requires-debian-packages.txt"
check "the window \"Webhook Connect\" was mapped" grep -q '"Webhook Connect"' "$log_dir/windows.txt"
if [ -f "$log_dir/first-launch.xwd" ]; then
  convert "xwd:$log_dir/first-launch.xwd" "$log_dir/first-launch.png"
  rm -f "$log_dir/first-launch.xwd"
  mean=$(convert "$log_dir/first-launch.png" -colorspace Gray -format '%[fx:mean]' info:)
  echo "   screenshot: $log_dir/first-launch.png (mean brightness $mean)"
  check "the screen is not black" awk -v m="$mean" 'BEGIN { exit !(m > 0.05) }'
else
  check "a screenshot was taken" false
fi
[ "$failed" -eq 0 ] || { echo "---- app.log (last 40 lines)"; tail -40 "$log_dir/app.log" 2>/dev/null || true; exit 1; }
echo "test-desktop-package: passed"
