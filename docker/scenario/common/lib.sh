# shellcheck shell=bash
# Shared helpers for docker/scenario/*/run_test.sh: one PASS/FAIL line per check, a summary,
# and a non-zero exit status when any check failed.
#
# Needs on the host: docker with Compose v2 (`docker compose`), curl, jq (and openssl for 06).
# Environment: KEEP=1 leaves the containers running; COMPOSE overrides the compose command.

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

compose() {
  # shellcheck disable=SC2086 # COMPOSE may hold several words ("docker compose").
  ${COMPOSE:-docker compose} -f "$SCENARIO_DIR/docker-compose.yaml" -p "$PROJECT" "$@"
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

# post_status ID [curl args...]: POSTs {} (or -d given later) to /webhook/ID.
post_status() {
  local id=$1
  shift
  status POST "$CLOUD/webhook/$id" -H 'content-type: application/json' -d '{}' "$@"
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
