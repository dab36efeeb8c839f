#!/usr/bin/env bash
# Seed scenario 05 (etcd namespaces) in Docker. Mirrors tests/e2e/tests/it/etcd.rs
# (scenario_05_etcd_namespaces, plus the last good configuration while etcd is stopped).
# One PASS/FAIL line per check; exits non-zero on any failure.
SCENARIO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT=whc-s05
# shellcheck source=SCRIPTDIR/../common/lib.sh
. "$SCENARIO_DIR/../common/lib.sh"
need docker curl jq
CLOUD="http://127.0.0.1:${S05_CLOUD_PORT:-18005}"
RELOAD_TOKEN="${RELOAD_TOKEN:-scenario-reload-token}"
LOG_HOOK='{"data_type":"json","module":"log","module-config":{"pretty_print":true}}'
trap on_exit EXIT

etcdctl() { compose exec -T etcd /usr/local/bin/etcdctl --endpoints=http://127.0.0.1:2379 "$@"; }

echo "== build image"
build_images --profile cloud
compose down -v --remove-orphans >/dev/null 2>&1 || true
check "etcd + redis healthy" compose up -d --wait etcd redis

echo "== etcd namespaces"
seeded=0
for key in ns_alpha/webhooks/hook1 ns_alpha/webhooks/hook2 ns_beta/webhooks/hook1 default/webhooks/fallback_hook; do
  etcdctl put "/cwm/$key" "$LOG_HOOK" >/dev/null && seeded=$((seeded + 1))
done
check_eq "1. seeded ns_alpha (hook1, hook2), ns_beta (hook1), default (fallback_hook)" 4 "$seeded"
check "cloud healthy (CONFIG_BACKEND=etcd)" compose --profile cloud up -d --wait cloud
check "2. ns_alpha/hook1: 200" wait_until 20 post_is ns_alpha/hook1 200
check_eq "3. ns_alpha/hook2: 200" 200 "$(post_status ns_alpha/hook2)"
check_eq "4. ns_beta/hook1: 200" 200 "$(post_status ns_beta/hook1)"
check_eq "5. ns_beta/hook2 (not seeded): 404" 404 "$(post_status ns_beta/hook2)"
check_eq "5b. unknown namespace: 404" 404 "$(post_status ns_gamma/hook1)"
etcdctl put /cwm/ns_beta/webhooks/hook_new "$LOG_HOOK" >/dev/null
check "6. live add ns_beta/hook_new: 200" wait_until 20 post_is ns_beta/hook_new 200
etcdctl del /cwm/ns_alpha/webhooks/hook2 >/dev/null
check "7. live delete ns_alpha/hook2: 404" wait_until 20 post_is ns_alpha/hook2 404
check_eq "7b. ns_alpha/hook1 still 200" 200 "$(post_status ns_alpha/hook1)"
check_eq "8. non-namespaced /webhook/fallback_hook: 200" 200 "$(post_status fallback_hook)"
check_eq "8b. /webhook/default/fallback_hook: 200" 200 "$(post_status default/fallback_hook)"
check_eq "8c. namespaces do not leak (/webhook/hook1): 404" 404 "$(post_status hook1)"
check_eq "/health: 200 healthy, backend etcd, etcd healthy" "200 healthy etcd healthy" \
  "$(status GET "$CLOUD/health") $(curl -s "$CLOUD/health" | jq -r '"\(.status) \(.components.config_backend) \(.components.etcd)"')"
check_eq "config-status: provider etcd, connected" "etcd true" \
  "$(curl -s -H "Authorization: Bearer $RELOAD_TOKEN" "$CLOUD/admin/config-status" | jq -r '"\(.provider.type) \(.provider.connected)"')"

echo "== etcd outage: the last good configuration keeps serving"
check "etcd stopped" compose stop etcd
check "/health degraded with etcd disconnected" wait_until 30 \
  health_match '"\(.status) \(.components.etcd)"' "degraded disconnected"
check_eq "ns_alpha/hook1 still 200 during the outage" 200 "$(post_status ns_alpha/hook1)"
check "etcd started again" compose start etcd
check "/health healthy again" wait_until 60 \
  health_match .status healthy
etcdctl put /cwm/ns_beta/webhooks/after_outage "$LOG_HOOK" >/dev/null
check "a put after the outage is applied" wait_until 20 post_is ns_beta/after_outage 200

finish
