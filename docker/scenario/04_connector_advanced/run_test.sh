#!/usr/bin/env bash
# Seed scenario 04 (advanced connector) in Docker, cloud on the embedded store with a named
# volume. Mirrors tests/e2e/tests/it/scenario_04.rs and connector.rs: admin API, long-poll,
# token rotation (persisted across a container restart), queue overflow (503, never a silent
# drop), multi-channel over SSE + WebSocket with per-channel routing, retry delivery to an
# already connected client, module mode. One PASS/FAIL line per check; non-zero on failure.
SCENARIO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT=whc-s04
# shellcheck source=SCRIPTDIR/../common/lib.sh
. "$SCENARIO_DIR/../common/lib.sh"
need docker curl jq
CLOUD="http://127.0.0.1:${S04_CLOUD_PORT:-18004}"
TARGET_A="http://127.0.0.1:${S04_TARGET_A_PORT:-19041}"
TARGET_B="http://127.0.0.1:${S04_TARGET_B_PORT:-19042}"
FLAKY="http://127.0.0.1:${S04_FLAKY_PORT:-19043}"
ALPHA=alpha-channel-token-0001
trap on_exit EXIT

echo "== build images"
build_images --profile multi --profile retry --profile module
compose down -v --remove-orphans >/dev/null 2>&1 || true
check "cloud healthy (embedded store on a volume)" compose up -d --wait cloud

echo "== admin-api"
check_eq "admin health: 200 healthy embedded" "200 healthy embedded" \
  "$(status GET "$CLOUD/admin/webhook-connect/health") $(curl -s "$CLOUD/admin/webhook-connect/health" | jq -r '"\(.status) \(.backend)"')"
check_eq "channel list ordered by name" '["channel-alpha","channel-beta","channel-module","channel-retry","channel-rotate","overflow"]' \
  "$(admin "$CLOUD/admin/webhook-connect/channels" | jq -c '[.[].name]')"
check_eq "channel detail" "channel-alpha hook-alpha" \
  "$(admin "$CLOUD/admin/webhook-connect/channels/channel-alpha" | jq -r '"\(.name) \(.webhook_id)"')"
check_eq "channel stats has messages_queued" true \
  "$(admin "$CLOUD/admin/webhook-connect/channels/channel-alpha/stats" | jq 'has("messages_queued")')"
check_eq "dead letters empty" 0 \
  "$(admin "$CLOUD/admin/webhook-connect/channels/channel-alpha/dead-letters" | jq '.messages | length')"
check "overview total_channels >= 2" \
  test "$(admin "$CLOUD/admin/webhook-connect/overview" | jq '.total_channels')" -ge 2
check_eq "channels without a token: 401" 401 "$(status GET "$CLOUD/admin/webhook-connect/channels")"
check_eq "channels with a wrong token: 401" 401 \
  "$(status GET "$CLOUD/admin/webhook-connect/channels" -H 'Authorization: Bearer wrong')"
check_eq "unknown channel: 404" 404 \
  "$(status GET "$CLOUD/admin/webhook-connect/channels/nope" -H "Authorization: Bearer $ADMIN_TOKEN")"

echo "== long-poll"
poll() { status GET "$CLOUD/connect/stream/$1/poll?timeout=1" -H "Authorization: Bearer $2"; }
check_eq "poll on an empty queue: 204" 204 "$(poll channel-alpha "$ALPHA")"
msg=$(curl -s -X POST "$CLOUD/webhook/hook-alpha" -H 'content-type: application/json' -d '{"hello":"poll"}' | jq -r .message_id)
got=$(curl -s --max-time 10 "$CLOUD/connect/stream/channel-alpha/poll?timeout=1" -H "Authorization: Bearer $ALPHA")
check_eq "poll returns the message" "$msg {\"hello\":\"poll\"}" "$(jq -r '"\(.messages[0].message_id) \(.messages[0].payload | tojson)"' <<<"$got")"
check_eq "leased: a second poll gets nothing" 204 "$(poll channel-alpha "$ALPHA")"
conn=$(jq -r .connection_id <<<"$got")
ack() { status POST "$CLOUD/connect/ack?message_id=$msg" -H "Authorization: Bearer $ALPHA" -H "X-Connection-ID: $conn"; }
check_eq "ACK with the poll connection id: 200" 200 "$(ack)"
check_eq "second ACK: 404" 404 "$(ack)"
check_eq "stats after ACK: in flight 0, acked 1" "[0,1]" \
  "$(admin "$CLOUD/admin/webhook-connect/channels/channel-alpha/stats" | jq -c '[.messages_in_flight,.messages_acked]')"

echo "== token-rotation"
OLD=rotate-channel-token-0003
rot=$(admin -X POST "$CLOUD/admin/webhook-connect/channels/channel-rotate/rotate-token")
NEW=$(jq -r .new_token <<<"$rot")
check_eq "rotation returns a ch_tok_ token of 55 characters" "ch_tok_ 55" "${NEW:0:7} ${#NEW}"
check "old token within the grace period: 200/204" one_of "$(poll channel-rotate "$OLD")" 200 204
check "new token: 200/204" one_of "$(poll channel-rotate "$NEW")" 200 204
check_eq "wrong token: 401" 401 "$(poll channel-rotate wrong-token)"
check_eq "a webhook after the rotation: 200" 200 "$(post_status hook-rotate)"
check "cloud restarted on the same volume" compose restart cloud
check "cloud healthy again" wait_until 60 health_is 200
check "rotated token survives the restart" one_of "$(poll channel-rotate "$NEW")" 200 204
NEWER=$(admin -X POST "$CLOUD/admin/webhook-connect/channels/channel-rotate/rotate-token" \
  -H 'content-type: application/json' -d '{"grace_period_seconds":0}' | jq -r .new_token)
check_eq "grace 0 revokes the previous token" 401 "$(poll channel-rotate "$NEW")"
check_eq "configured token long replaced" 401 "$(poll channel-rotate "$OLD")"
check "newest token works" one_of "$(poll channel-rotate "$NEWER")" 200 204

echo "== queue-overflow"
ok=0
for _ in 1 2 3; do [ "$(post_status overflow)" = 200 ] && ok=$((ok + 1)); done
check_eq "3 webhooks fill the channel (max_queue_size 3)" 3 "$ok"
refused=0
for _ in 1 2 3 4 5 6; do
  hdrs=$(curl -s -D - -o /tmp/whc-s04-body.$$ -X POST "$CLOUD/webhook/overflow" -d '{}')
  if grep -q '^HTTP/[0-9.]* 503' <<<"$hdrs" && grep -qi '^retry-after:' <<<"$hdrs" \
    && [ "$(jq -r .code /tmp/whc-s04-body.$$)" = queue_full ]; then
    refused=$((refused + 1))
  fi
done
rm -f /tmp/whc-s04-body.$$
check_eq "every webhook over the limit: 503 queue_full + Retry-After" 6 "$refused"
check_eq "queue depth and received stay at 3" "[3,3]" \
  "$(admin "$CLOUD/admin/webhook-connect/channels/overflow/stats" | jq -c '[.messages_queued,.messages_received]')"

echo "== multi-channel, websocket, target-routing"
check_eq "one webhook per channel before the connectors" "200 200" \
  "$(post_status hook-alpha -d '{"ch":"alpha"}') $(post_status hook-beta -d '{"ch":"beta"}')"
check "targets + SSE and WebSocket connectors started" compose --profile multi up -d --wait \
  local-processor-a local-processor-b connector-sse connector-ws
for _ in 1 2 3 4 5; do
  post_status hook-alpha -d '{"ch":"alpha"}' >/dev/null
  post_status hook-beta -d '{"ch":"beta"}' >/dev/null
done
check "channel-alpha: 6/6 at target A" wait_until 30 count_at_least "$TARGET_A" 6
check "channel-beta: 6/6 at target B" wait_until 30 count_at_least "$TARGET_B" 6
check_eq "target A got only channel-alpha bodies" '["alpha"]' \
  "$(curl -s "$TARGET_A/_requests" | jq -c '[.[].body | fromjson | .ch] | unique')"
check_eq "target B got only channel-beta bodies" '["beta"]' \
  "$(curl -s "$TARGET_B/_requests" | jq -c '[.[].body | fromjson | .ch] | unique')"
check "channel-beta fully acked" wait_until 20 stat_is channel-beta messages_acked 6
check_eq "channel-beta connection: websocket, 6 acked" "websocket 6" \
  "$(admin "$CLOUD/admin/webhook-connect/channels/channel-beta" | jq -r '.connected_clients[0] | "\(.protocol) \(.messages_acked)"')"
check_eq "channel-alpha connection: sse" sse \
  "$(admin "$CLOUD/admin/webhook-connect/channels/channel-alpha" | jq -r '.connected_clients[0].protocol')"
check_eq "no duplicates" "6 6" "$(target_count "$TARGET_A") $(target_count "$TARGET_B")"

echo "== retry-delivery"
ok=0
for i in 0 1 2 3 4 5; do [ "$(post_status hook-retry -d "{\"n\":$i}")" = 200 ] && ok=$((ok + 1)); done
check_eq "6 queued with connector and target down" "6 6" "$ok $(stat channel-retry messages_queued)"
check "flaky target (2 × 503) + connector started" compose --profile retry up -d --wait flaky-target connector-retry
# The real connector retries a 503 locally (protocol: 408, 429, 5xx -> local retries, then NACK
# with retry), so the cloud sees no NACK here; tests/e2e's scenario_04.rs covers the cloud's
# NACK-with-retry redelivery with a test connector that NACKs at once.
check "all 6 acked after the connector's local retries" wait_until 60 stat_is channel-retry messages_acked 6
check_eq "retried by the connector: 0 NACKs, 0 dead letters" "[0,0]" \
  "$(admin "$CLOUD/admin/webhook-connect/channels/channel-retry/stats" | jq -c '[.messages_nacked,.dead_letters]')"
check_eq "target saw 8 attempts" 8 "$(target_count "$FLAKY")"

echo "== module mode (save_to_disk in the connector)"
check "module connector started" compose --profile module up -d --wait connector-module
ok=0
for i in 0 1 2; do [ "$(post_status hook-module -d "{\"m\":$i}")" = 200 ] && ok=$((ok + 1)); done
check_eq "3 webhooks for the module channel" 3 "$ok"
check "3 acked" wait_until 30 stat_is channel-module messages_acked 3
out=$(mktemp -d)
compose cp connector-module:/srv/webhook-connect/out "$out/" >/dev/null 2>&1 || true
check_eq "3 files written, one per message id" 3 "$(find "$out" -name 'msg_*.json' | wc -l | tr -d ' ')"
check_eq "file content is the payload" "[0,1,2]" \
  "$(find "$out" -name 'msg_*.json' -exec cat {} + | jq -s -c '[.[].m] | sort')"
rm -rf "$out"

finish
