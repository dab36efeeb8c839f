# shellcheck shell=bash
# Shared helpers for docker/scenario/*/run_test.sh: one PASS/FAIL line per check, a summary,
# and a non-zero exit status when any check failed.
#
# Needs on the host: docker with Compose v2 (`docker compose`) or Compose v1 (`docker-compose`
# 1.29, Debian's: `up --wait` and `cp` are emulated below), curl, jq (and openssl for 06).
# Environment: KEEP=1 leaves the containers running; COMPOSE overrides the compose command
# (default: `docker compose`, or `docker-compose` when the v2 plugin is missing);
# WHC_SKIP_BUILD=1 uses the images already built (scripts/test-docker.sh builds them once);
# REDIS_IMAGE, PYTHON_IMAGE, ETCD_IMAGE, VAULT_IMAGE name the third-party images.

set -euo pipefail

PASSED=0
FAILED=0
ADMIN_TOKEN="${ADMIN_TOKEN:-scenario-admin-token}"

need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || { echo "FAIL prerequisite: $t is not installed"; exit 2; }
  done
}

if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then
    COMPOSE="docker compose"
  else
    COMPOSE=docker-compose
  fi
fi
COMPOSE_V1=0
case "$COMPOSE" in *docker-compose*) COMPOSE_V1=1 ;; esac

compose_raw() {
  # shellcheck disable=SC2086 # COMPOSE may hold several words ("docker compose").
  $COMPOSE -f "$SCENARIO_DIR/docker-compose.yaml" -p "$PROJECT" "$@"
}

# compose ARGS...: Compose v2's command line. With v1, `up --wait` becomes `up -d` and a wait
# for every named service to be healthy (or running, without a healthcheck), and
# `cp SERVICE:PATH DEST` becomes `docker cp`.
compose() {
  if [ "$COMPOSE_V1" = 1 ]; then
    local pre=() args=("$@") i=0
    while [ "$i" -lt "${#args[@]}" ] && [ "${args[$i]}" = --profile ]; do
      pre+=(--profile "${args[$((i + 1))]}")
      i=$((i + 2))
    done
    local sub=${args[$i]:-}
    local rest=("${args[@]:$((i + 1))}")
    if [ "$sub" = up ] && [[ " ${rest[*]} " == *" --wait "* ]]; then
      local opts=() services=() a
      for a in "${rest[@]}"; do
        case "$a" in
          --wait | -d) ;;
          -*) opts+=("$a") ;;
          *) services+=("$a") ;;
        esac
      done
      compose_raw "${pre[@]}" up -d "${opts[@]}" "${services[@]}" >/dev/null 2>&1 || {
        compose_raw "${pre[@]}" up -d "${opts[@]}" "${services[@]}"
        return 1
      }
      [ "${#services[@]}" -gt 0 ] || mapfile -t services < <(compose_raw "${pre[@]}" config --services)
      local s
      for s in "${services[@]}"; do
        wait_until 120 service_ready "$s" || {
          echo "compose: $s not healthy after 120 s" >&2
          return 1
        }
      done
      return 0
    fi
    if [ "$sub" = cp ]; then
      local src=${rest[0]} dest=${rest[1]}
      docker cp "$(compose_raw ps -q "${src%%:*}")":"${src#*:}" "$dest"
      return
    fi
  fi
  compose_raw "$@"
}

# service_ready SERVICE: its container is healthy, or running when it has no healthcheck.
service_ready() {
  local id state
  id=$(compose_raw ps -q "$1" 2>/dev/null) || return 1
  [ -n "$id" ] || return 1
  state=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null)
  [ "$state" = healthy ] || [ "$state" = running ]
}

# build_images ARGS...: `compose ARGS... build`, unless WHC_SKIP_BUILD=1.
build_images() {
  if [ "${WHC_SKIP_BUILD:-0}" = 1 ]; then
    echo "(images built by the caller: WHC_SKIP_BUILD=1)"
  else
    compose "$@" build
  fi
}

pass() { PASSED=$((PASSED + 1)); printf 'PASS %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$*"; }

# check_eq NAME EXPECTED ACTUAL
check_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}

# check NAME COMMAND...: passes when the command succeeds.
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

# quiet COMMAND...: the command with its standard output dropped.
quiet() { "$@" >/dev/null; }

# wait_until SECONDS COMMAND...: retries every half second; non-zero after the deadline.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# status METHOD URL [curl args...]: prints the HTTP status (000 when there was no answer).
status() {
  local method=$1 url=$2
  shift 2
  curl -s -o /dev/null -w '%{http_code}' -X "$method" --max-time 30 "$@" "$url" || true
}

# post_status ID [curl args...]: POSTs {} (or the body of a -d among the args) to /webhook/ID.
# (curl joins several -d with '&': the default body is left out when the caller gives one.)
post_status() {
  local id=$1 a data=(-d '{}')
  shift
  for a in "$@"; do
    case "$a" in -d | --data | --data-raw | --data-binary) data=() ;; esac
  done
  status POST "$CLOUD/webhook/$id" -H 'content-type: application/json' "${data[@]}" "$@"
}

admin() { curl -s --max-time 30 -H "Authorization: Bearer $ADMIN_TOKEN" "$@"; }

# stat CHANNEL FIELD: one field of the channel's stats (admin API).
stat() { admin "$CLOUD/admin/webhook-connect/channels/$1/stats" | jq -r ".$2"; }

# target_count URL: number of requests a recorder got.
target_count() { curl -s --max-time 10 "$1/_count" | jq -r '.count // 0' 2>/dev/null || echo 0; }

count_at_least() { [ "$(target_count "$1")" -ge "$2" ]; }
stat_is() { [ "$(stat "$1" "$2")" = "$3" ]; }
post_is() { [ "$(post_status "$1")" = "$2" ]; }

on_exit() {
  local rc=$?
  if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
    echo "---- logs (last 60 lines per service)"
    compose logs --no-color --tail 60 || true
  fi
  if [ "${KEEP:-0}" != 1 ]; then
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
}

finish() {
  echo "== $PROJECT: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

# stats_match CHANNEL JQ_FILTER EXPECTED: the filter applied to the channel's stats, compact.
stats_match() {
  [ "$(admin "$CLOUD/admin/webhook-connect/channels/$1/stats" | jq -c "$2")" = "$3" ]
}

# one_of VALUE CHOICE...: succeeds when VALUE equals one of the choices.
one_of() {
  local v=$1 c
  shift
  for c in "$@"; do [ "$v" = "$c" ] && return 0; done
  return 1
}

# health_is CODE: GET /health answers CODE.
health_is() { [ "$(status GET "$CLOUD/health")" = "$1" ]; }

# health_match JQ_FILTER EXPECTED: the filter applied to the /health body, raw output.
health_match() { [ "$(curl -s --max-time 10 "$CLOUD/health" | jq -r "$1")" = "$2" ]; }
