#!/usr/bin/env bash
# Builds and runs the cloud service on its embedded store with the example configuration.
# Override anything with the environment (see ../shared/CONFIG.md), e.g.
#   WEBHOOK_CONNECT_LISTEN=0.0.0.0:8000 WEBHOOKS_CONFIG_FILE=/etc/webhooks.json scripts/run-cloud.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -p connect-cloud --bin webhook-connect-cloud
export WEBHOOKS_CONFIG_FILE="${WEBHOOKS_CONFIG_FILE:-examples/webhooks.json}"
export WEBHOOK_CONNECT_DATA_DIR="${WEBHOOK_CONNECT_DATA_DIR:-./data}"
export WEBHOOK_CONNECT_LOG_FORMAT="${WEBHOOK_CONNECT_LOG_FORMAT:-text}"
export DEMO_CHANNEL_TOKEN="${DEMO_CHANNEL_TOKEN:-demo-channel-token-change-me}"
# Return freed memory to the system at once (docs/OPERATIONS.md, "Memory"), as the image does.
export MIMALLOC_PURGE_DELAY="${MIMALLOC_PURGE_DELAY:-0}"
echo "webhook-connect-cloud on ${WEBHOOK_CONNECT_LISTEN:-127.0.0.1:8000}, config ${WEBHOOKS_CONFIG_FILE}, data ${WEBHOOK_CONNECT_DATA_DIR}"
exec "${CARGO_TARGET_DIR:-target}/release/webhook-connect-cloud" "$@"
