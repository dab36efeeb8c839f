#!/usr/bin/env bash
# The cloud image's own container behaviour, with plain `docker` commands (no compose): it runs
# as uid 65532, its HEALTHCHECK reaches `healthy`, a `docker kill` (SIGKILL) in the middle of a
# stream of webhooks loses none that were answered 2xx (embedded store on a named volume), and
# `docker stop` with an SSE client attached exits cleanly within the grace period.
# One PASS/FAIL line per check; exits non-zero on any failure.
SCENARIO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT=whc-s07
# shellcheck source=SCRIPTDIR/../common/lib.sh
. "$SCENARIO_DIR/../common/lib.sh"
need docker curl jq
PORT="${S07_CLOUD_PORT:-18007}"
CLOUD="http://127.0.0.1:$PORT"
IMAGE="webhook-connect-cloud:${WHC_TAG:-local}"
NAME=whc-s07-cloud
VOLUME=whc-s07-data
TOKEN=life-channel-token-00007
GRACE=10
work=$(mktemp -d)

cleanup() {
  local rc=$?
  if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
    echo "---- cloud logs (last 60 lines)"
    docker logs --tail 60 "$NAME" 2>&1 || true
  fi
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm "$VOLUME" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

health_state() { docker inspect -f '{{.State.Health.Status}}' "$NAME" 2>/dev/null; }
healthy() { [ "$(health_state)" = healthy ]; }

docker rm -f "$NAME" >/dev/null 2>&1 || true
docker volume rm "$VOLUME" >/dev/null 2>&1 || true
echo "== start ($IMAGE, embedded store on volume $VOLUME)"
check "container started" quiet docker run -d --name "$NAME" -p "$PORT:8000" --stop-timeout 30 \
  -e WEBHOOK_CONNECT_ADMIN_TOKEN="$ADMIN_TOKEN" -e WEBHOOK_CONNECT_LOG_FORMAT=text \
  -e WEBHOOK_CONNECT_SHUTDOWN_GRACE_SECONDS="$GRACE" \
  -v "$SCENARIO_DIR/webhooks.json:/etc/webhook-connect/webhooks.json:ro" \
  -v "$VOLUME:/var/lib/webhook-connect" "$IMAGE"
check_eq "image user is 65532:65532" 65532:65532 "$(docker inspect -f '{{.Config.User}}' "$NAME")"
pid=$(docker inspect -f '{{.State.Pid}}' "$NAME")
check_eq "the process runs as uid 65532 (host view)" 65532 \
  "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
start=$SECONDS
check "HEALTHCHECK (the image's own) reaches healthy" wait_until 60 healthy
echo "   healthy after $((SECONDS - start)) s"
check_eq "/health: embedded store" embedded "$(curl -s "$CLOUD/health" | jq -r .components.buffer_backend)"

echo "== docker kill in the middle of a stream of webhooks"
# Posts one webhook after another; each line: HTTP status and message id (if any).
(
  for i in $(seq 1 100000); do
    out=$(curl -s --max-time 5 -w ' %{http_code}' -X POST "$CLOUD/webhook/hook-life" \
      -H 'content-type: application/json' -d "{\"n\":$i}" 2>/dev/null) || true
    code=${out##* }
    id=$(jq -r '.message_id // empty' 2>/dev/null <<<"${out% *}") || true
    echo "$code $id"
    [ -f "$work/stop" ] && break
  done >"$work/posts"
) &
poster=$!
answered_so_far() { [ "$(grep -c '^200 ' "$work/posts" 2>/dev/null)" -ge "$1" ]; }
wait_until 30 answered_so_far 100 || true
check "SIGKILL while webhooks arrive" quiet docker kill "$NAME"
sleep 1
touch "$work/stop"
wait "$poster" || true
answered=$(grep -cE '^2[0-9][0-9] msg_' "$work/posts" || true)
unanswered=$(grep -cvE '^2[0-9][0-9] ' "$work/posts" || true)
echo "   $answered webhooks answered 2xx before the kill, $unanswered without an answer after it"
check "at least 100 answered 2xx before the kill" test "$answered" -ge 100
check "docker start on the same volume" quiet docker start "$NAME"
check "healthy again" wait_until 60 healthy
check "stats: at least the answered webhooks queued" test "$(stat channel-life messages_queued)" -ge "$answered"
# Every stored message, polled and ACKed batch by batch.
: >"$work/stored"
for _ in $(seq 1 2000); do
  body=$(curl -s --max-time 10 "$CLOUD/connect/stream/channel-life/poll?timeout=1" -H "Authorization: Bearer $TOKEN")
  [ -n "$body" ] || break
  conn=$(jq -r .connection_id <<<"$body")
  for id in $(jq -r '.messages[].message_id' <<<"$body"); do
    echo "$id" >>"$work/stored"
    curl -s -o /dev/null --max-time 10 -X POST "$CLOUD/connect/ack?message_id=$id" \
      -H "Authorization: Bearer $TOKEN" -H "X-Connection-ID: $conn"
  done
done
grep -E '^2[0-9][0-9] msg_' "$work/posts" | awk '{print $2}' | sort -u >"$work/acked"
sort -u "$work/stored" -o "$work/stored"
check_eq "every webhook answered 2xx is on the volume after kill + start" 0 \
  "$(comm -23 "$work/acked" "$work/stored" | wc -l | tr -d ' ')"
echo "   stored after the restart: $(wc -l <"$work/stored" | tr -d ' ') (answered: $answered)"
check "stats: all acked, none queued" wait_until 10 stat_is channel-life messages_queued 0

echo "== docker stop drains within the grace period (${GRACE} s)"
ok=0
for i in 1 2 3 4 5; do [ "$(post_status hook-life -d "{\"late\":$i}")" = 200 ] && ok=$((ok + 1)); done
check_eq "5 more webhooks answered 200" 5 "$ok"
# An SSE client that takes the 5 and never ACKs them: the cloud waits for ACKs until its grace
# period ends, then exits by itself, well before docker's own timeout (30 s) would SIGKILL it.
curl -s -N --max-time 60 "$CLOUD/connect/stream/channel-life/sse" -H "Authorization: Bearer $TOKEN" \
  >"$work/sse" 2>/dev/null &
sse=$!
check "the SSE client got the 5 (in flight, not ACKed)" wait_until 10 stat_is channel-life messages_in_flight 5
t0=$(date +%s%N)
docker stop -t 30 "$NAME" >/dev/null
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
echo "   docker stop took ${elapsed_ms} ms"
check "exited within the grace period (+5 s), before docker's SIGKILL" test "$elapsed_ms" -le $(((GRACE + 5) * 1000))
check_eq "exit code 0 (SIGTERM handled, not killed)" "0 false" \
  "$(docker inspect -f '{{.State.ExitCode}} {{.State.OOMKilled}}' "$NAME")"
check "the SSE client's stream ended" wait_until 10 bash -c "! kill -0 $sse 2>/dev/null"
wait "$sse" 2>/dev/null || true
check "started again after the stop" quiet docker start "$NAME"
check "healthy after the stop" wait_until 60 healthy
check_eq "the 5 unacknowledged webhooks are queued again" 5 "$(stat channel-life messages_queued)"

finish
