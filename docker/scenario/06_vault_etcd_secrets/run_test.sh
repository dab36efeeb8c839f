#!/usr/bin/env bash
# Seed scenario 06 (Vault + etcd secrets) in Docker. Mirrors tests/e2e/tests/it/vault.rs
# (scenario_06_vault_and_etcd_secrets: all eight checks, plus rotation without any
# configuration change). One PASS/FAIL line per check; exits non-zero on any failure.
SCENARIO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT=whc-s06
# shellcheck source=SCRIPTDIR/../common/lib.sh
. "$SCENARIO_DIR/../common/lib.sh"
need docker curl jq openssl
CLOUD="http://127.0.0.1:${S06_CLOUD_PORT:-18006}"
trap on_exit EXIT

etcdctl() { compose exec -T etcd /usr/local/bin/etcdctl --endpoints=http://127.0.0.1:2379 "$@"; }
vault() { compose exec -T vault vault "$@"; }
# The JSON values hold {$vault:...} and {$VAR} placeholders: single quotes, no expansion.
# shellcheck disable=SC2016
AUTH_HOOK='{"module":"log","authorization":"Bearer {$vault:app/auth#webhook_token}"}'
# shellcheck disable=SC2016
HMAC_HOOK='{"module":"log","hmac":{"secret":"{$vault:app/auth#hmac_secret}","header":"X-HMAC-Signature","algorithm":"sha256","encoding":"hex"}}'
# shellcheck disable=SC2016
LEGACY_HOOK='{"module":"log","authorization":"Bearer {$LEGACY_ENV_TOKEN}"}'
BODY='{"event":"push"}'

bearer() { post_status "$1" -H "Authorization: Bearer $2"; }
bearer_is() { [ "$(bearer "$1" "$2")" = "$3" ]; }
sign() { printf '%s' "$2" | openssl dgst -sha256 -hmac "$1" | sed 's/^.* //'; }
hmac_post() { post_status vault_hmac -H "X-HMAC-Signature: $(sign "$1" "$BODY")" -d "$BODY"; }
seed_etcd() {
  etcdctl put /cwm/default/webhooks/vault_auth "$AUTH_HOOK" >/dev/null \
    && etcdctl put /cwm/default/webhooks/vault_hmac "$HMAC_HOOK" >/dev/null \
    && etcdctl put /cwm/default/webhooks/legacy_env "$LEGACY_HOOK" >/dev/null
}

echo "== build image"
build_images --profile cloud
compose down -v --remove-orphans >/dev/null 2>&1 || true
check "etcd + vault + redis healthy" compose up -d --wait etcd vault redis
check "KV v2 enabled at webhooks/" vault secrets enable -path=webhooks -version=2 kv
check "secret app/auth written" quiet vault kv put -mount=webhooks app/auth webhook_token=tok-1 hmac_secret=hmac-1
check "etcd seeded (vault_auth, vault_hmac, legacy_env)" seed_etcd
check "cloud healthy (etcd + Vault)" compose --profile cloud up -d --wait cloud

echo "== vault-auth"
check "3. vault-resolved token: 200" wait_until 30 bearer_is vault_auth tok-1 200
check_eq "1. no token: 401" 401 "$(post_status vault_auth)"
check_eq "2. wrong token: 401" 401 "$(bearer vault_auth wrong)"

echo "== vault-hmac"
check_eq "4. wrong signature: 401" 401 "$(hmac_post wrong)"
check_eq "5. signature with the Vault secret: 200" 200 "$(hmac_post hmac-1)"

echo "== legacy-env"
check_eq "6. {\$LEGACY_ENV_TOKEN} placeholder: 200" 200 "$(bearer legacy_env legacy-tok)"

echo "== secret-rotation"
vault kv put -mount=webhooks app/auth webhook_token=tok-2 hmac_secret=hmac-1 >/dev/null
etcdctl put /cwm/default/webhooks/vault_auth "$AUTH_HOOK" >/dev/null
check "new token live after Vault update + etcd re-put" wait_until 30 bearer_is vault_auth tok-2 200
check_eq "7. old token rejected" 401 "$(bearer vault_auth tok-1)"
check_eq "8. new token accepted" 200 "$(bearer vault_auth tok-2)"
check_eq "/health: vault healthy, status healthy" "healthy healthy" \
  "$(curl -s "$CLOUD/health" | jq -r '"\(.components.vault) \(.status)"')"

echo "== rotation without any configuration change (TTL refresh)"
vault kv put -mount=webhooks app/auth webhook_token=tok-3 hmac_secret=hmac-3 >/dev/null
check "tok-3 live without an etcd put" wait_until 30 bearer_is vault_auth tok-3 200
check_eq "tok-2 rejected" 401 "$(bearer vault_auth tok-2)"
check_eq "HMAC with the rotated secret: 200" 200 "$(hmac_post hmac-3)"

finish
