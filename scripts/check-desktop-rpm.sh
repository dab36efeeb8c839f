#!/usr/bin/env bash
# Checks the desktop .rpm against the .deb beside it, with Debian's rpm tools (no RPM-based
# system needed; installing the .rpm is NOT proven: no RPM distribution's repository is
# reachable from CI, so its dependencies cannot be resolved there). Run by
# scripts/test-desktop-package.sh after scripts/package-desktop.sh.
#   - name, version and architecture match the .deb's;
#   - the same regular files (`rpm -qpl` against `dpkg-deb -c`), with the same modes and sizes;
#   - the same contents (sha256): every file byte for byte, except the app, in which Tauri's
#     bundler stamps the package type ("DEB" / "RPM", 3 bytes) and which must not differ otherwise;
#   - the same Recommends;
#   - the Requires (`rpm -qpR`): rpmlib features and sonames only; the sonames are written to
#     $WHC_PACKAGE_LOG_DIR/rpm-requires.txt, and scripts/test-desktop-package.sh checks, in the
#     container where the .deb is installed, that the Debian packages shipping them are exactly
#     the .deb's Depends.
# Prints PASS/FAIL lines; exits 1 on any FAIL.
set -euo pipefail
cd "$(dirname "$0")/.."
log_dir="${WHC_PACKAGE_LOG_DIR:-$PWD/artifacts/desktop-package}"
mkdir -p "$log_dir"
shopt -s nullglob
debs=(dist/webhook-connect_*_amd64.deb)
rpms=(dist/webhook-connect-*.x86_64.rpm)
if [ "${#debs[@]}" -ne 1 ] || [ "${#rpms[@]}" -ne 1 ]; then
  echo "FAIL expected one dist/webhook-connect_*_amd64.deb and one dist/webhook-connect-*.x86_64.rpm (run scripts/package-desktop.sh)"
  exit 1
fi
deb=${debs[0]}
rpm=${rpms[0]}
for tool in rpm rpm2archive dpkg-deb python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "FAIL $tool is missing (apt-get install rpm rpm2cpio)"; exit 1; }
done
q() { rpm -qp --nosignature "$@" "$rpm" 2>/dev/null; }

failed=0
check() {
  local name=$1
  shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failed=1; fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/deb" "$work/rpm"
dpkg-deb -x "$deb" "$work/deb"
rpm2archive -n <"$rpm" | tar -C "$work/rpm" -x

deb_meta="$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) $(dpkg-deb -f "$deb" Architecture)"
rpm_meta="$(q --qf '%{NAME} %{VERSION} %{ARCH}')"
echo "   .deb: $deb_meta; .rpm: $rpm_meta"
check ".rpm name and version match the .deb's (amd64 = x86_64)" \
  test "$rpm_meta" = "${deb_meta% amd64} x86_64"

# Regular files with mode and size: from the .deb's archive listing and the .rpm's header.
dpkg-deb -c "$deb" | awk '$1 ~ /^-/ {
    path = $0; for (i = 1; i <= 5; i++) sub(/^[^ ]+ +/, "", path); sub(/^\.?\/?/, "/", path)
    print path "\t" $1 "\t" $3 }' | sort >"$work/deb.files"
q --qf '[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILESIZES}\n]' | awk -F'\t' '$2 ~ /^-/' | sort >"$work/rpm.files"
cp "$work/rpm.files" "$log_dir/rpm-files.txt"
check ".rpm holds the .deb's regular files (rpm -qpl), same modes and sizes" \
  diff -u "$work/deb.files" "$work/rpm.files"
check ".rpm has the app, the light image, a .desktop entry and icons" \
  awk -F'\t' '/^\/usr\/bin\/webhook-connect-app\t/ {a=1} /^\/usr\/bin\/webhook-connect-light\t/ {l=1}
    /^\/usr\/share\/applications\/.*\.desktop\t/ {d=1} /^\/usr\/share\/icons\/.*\.png\t/ {i=1}
    END {exit !(a && l && d && i)}' "$work/rpm.files"
# The header's digests must describe the payload (rpm2archive does not verify them).
header_digests_match() {
  q --qf '[%{FILEDIGESTS}  %{FILENAMES}\n]' | grep -v '^  ' | sed "s|  /|  $work/rpm/|" |
    sha256sum --quiet -c -
}
check ".rpm header digests match its payload (sha256)" header_digests_match
check "same contents as the .deb, except the app's 3-byte package-type stamp" python3 - "$work" <<'PY'
import os, sys
work = sys.argv[1]
ok = True
for root, _, files in os.walk(os.path.join(work, "deb")):
    for name in files:
        d = os.path.join(root, name)
        rel = os.path.relpath(d, os.path.join(work, "deb"))
        r = os.path.join(work, "rpm", rel)
        a, b = open(d, "rb").read(), open(r, "rb").read()
        if a == b:
            continue
        diff = [i for i in range(min(len(a), len(b))) if a[i] != b[i]] if len(a) == len(b) else None
        stamp = (rel == "usr/bin/webhook-connect-app" and diff is not None and len(diff) == 3
                 and diff[2] - diff[0] == 2 and a[diff[0]:diff[0] + 3] == b"DEB"
                 and b[diff[0]:diff[0] + 3] == b"RPM")
        if stamp:
            print(f"   /{rel}: differs only in the package-type stamp at byte {diff[0]}")
        else:
            print(f"   /{rel}: contents differ")
            ok = False
sys.exit(0 if ok else 1)
PY

deb_rec=$(dpkg-deb -f "$deb" Recommends | tr ',' '\n' | sed 's/^ *//; s/ *$//' | grep -v '^$' | sort | tr '\n' ' ')
rpm_rec=$(q --recommends | sort | tr '\n' ' ')
echo "   Recommends: .deb: ${deb_rec:-none}; .rpm: ${rpm_rec:-none}"
check ".rpm recommends what the .deb recommends" test "$deb_rec" = "$rpm_rec"

q --requires | sort >"$work/requires"
grep -v '^rpmlib(' "$work/requires" >"$log_dir/rpm-requires.txt" || true
echo "   .rpm Requires: $(tr '\n' ' ' <"$work/requires")"
only_sonames() { ! grep -vE '^rpmlib\(|^[A-Za-z0-9_.+-]+\.so(\.[0-9]+)*\(\)\(64bit\)$' "$work/requires"; }
check ".rpm requires only rpmlib features and 64-bit sonames" only_sonames
check ".rpm requires as many libraries as the .deb has Depends" \
  test "$(wc -l <"$log_dir/rpm-requires.txt")" -eq "$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | grep -c .)"
[ "$failed" -eq 0 ] || exit 1
echo "check-desktop-rpm: passed"
