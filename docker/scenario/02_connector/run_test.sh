#!/usr/bin/env bash
# Seed scenario 02 (basic connector) in Docker: the cloud on Redis, a recording target and the
# real `webhook-connect` container. Mirrors tests/e2e/tests/it/connector.rs (basic flow and
# queue-while-offline). Prints one PASS/FAIL line per check; exits non-zero on any failure.
#   PROTOCOLS="websocket sse long_poll" (default: all three) ./run_test.sh
SCENARIO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT=whc-s02
# shellcheck source=SCRIPTDIR/../common/lib.sh
. "$SCENARIO_DIR/../common/lib.sh"
need docker curl jq
CLOUD="http://127.0.0.1:${S02_CLOUD_PORT:-18002}"
TARGET="http://127.0.0.1:${S02_TARGET_PORT:-19002}"
trap on_exit EXIT

echo "== build images"
build_images --profile connector --profile ordered

basic_flow() {
  local proto=$1
  echo "== basic flow ($proto)"
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  check "[$proto] redis + cloud healthy" compose up -d --wait redis cloud
  check "[$proto] local processor healthy" compose --profile connector up -d --wait local-processor
  local body
  body=$(curl -s -X POST "$CLOUD/webhook/basic" -H 'content-type: application/json' -d '{"n":0}')
  check_eq "[$proto] first webhook answered with a message id" msg_ "$(jq -r '.message_id[0:4]' <<<"$body")"
  CONNECTOR_PROTOCOL="$proto" check "[$proto] connector started" \
    compose --profile connector up -d --wait connector
  local i ok=0
  for i in $(seq 1 9); do
    [ "$(post_status basic -d "{\"n\":$i}")" = 200 ] && ok=$((ok + 1))
  done
  check_eq "[$proto] 9 more webhooks answered 200" 9 "$ok"
  check "[$proto] 10/10 delivered" wait_until 30 count_at_least "$TARGET" 10
  check_eq "[$proto] every body arrived once" "[0,1,2,3,4,5,6,7,8,9]" \
    "$(curl -s "$TARGET/_requests" | jq -c '[.[].body | fromjson | .n] | sort')"
  check_eq "[$proto] X-Webhook-Message-Id on every delivery" 10 \
    "$(curl -s "$TARGET/_requests" | jq '[.[] | select(.headers["x-webhook-message-id"] // "" | startswith("msg_"))] | length')"
  check "[$proto] stats: 10 acked, 0 queued, 0 in flight" wait_until 20 \
    stats_match test-channel '[.messages_acked,.messages_queued,.messages_in_flight]' '[10,0,0]'
  check_eq "[$proto] stats: messages_delivered" 10 "$(stat test-channel messages_delivered)"
  check_eq "[$proto] stats: connected_clients" 1 "$(stat test-channel connected_clients)"
  check_eq "[$proto] no duplicates on a healthy link" 10 "$(target_count "$TARGET")"
  check_eq "[$proto] cloud /health buffer_backend" redis \
    "$(curl -s "$CLOUD/health" | jq -r .components.buffer_backend)"
}

queue_while_offline() {
  local proto=$1
  echo "== resilience: queue while offline ($proto, connector configured by file)"
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  check "[offline] redis + cloud healthy" compose up -d --wait redis cloud
  local i ok=0
  for i in $(seq 0 9); do
    [ "$(post_status basic -d "{\"n\":$i}")" = 200 ] && ok=$((ok + 1))
  done
  check_eq "[offline] 10 webhooks answered 200 with target and connector down" 10 "$ok"
  check_eq "[offline] stats: queued, delivered, clients" "[10,0,0]" \
    "$(admin "$CLOUD/admin/webhook-connect/channels/test-channel/stats" | jq -c '[.messages_queued,.messages_delivered,.connected_clients]')"
  CONNECTOR_PROTOCOL="$proto" check "[offline] local processor + connector started" \
    compose --profile ordered up -d --wait local-processor connector-ordered
  check "[offline] 10/10 delivered from the queue" wait_until 30 count_at_least "$TARGET" 10
  check_eq "[offline] FIFO at the target (ordered target)" "[0,1,2,3,4,5,6,7,8,9]" \
    "$(curl -s "$TARGET/_requests" | jq -c '[.[].body | fromjson | .n]')"
  check "[offline] stats: 10 acked" wait_until 20 stat_is test-channel messages_acked 10
  check_eq "[offline] no duplicates" 10 "$(target_count "$TARGET")"
}

for p in ${PROTOCOLS:-websocket sse long_poll}; do
  basic_flow "$p"
done
queue_while_offline sse
finish
