# shellcheck shell=bash
# shellcheck disable=SC2034 # DOCKER_ENGINE_UP and STARTED_DOCKERD are read by the scripts that source this.
# Sourced by the Docker scripts. docker_build: `docker build` with BuildKit (the Dockerfiles use
# RUN --mount and skip unused stages). A Docker CLI newer than 23 builds through the buildx
# plugin; without that plugin, Debian's 20.10 CLI (/usr/bin/docker, matching Debian's engine)
# still has BuildKit built in.
docker_build() {
  if docker buildx version >/dev/null 2>&1; then
    DOCKER_BUILDKIT=1 docker build "$@"
  elif [ -x /usr/bin/docker ] && /usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | grep -q '^20\.'; then
    DOCKER_BUILDKIT=1 /usr/bin/docker build "$@"
  else
    DOCKER_BUILDKIT=1 docker build "$@"
  fi
}

# docker_engine_up LOG_DIR NAME: makes sure a Docker engine answers. Uses the running one, or
# starts `dockerd --iptables=false` (as root; log in LOG_DIR/dockerd.log) for docker_engine_down
# to stop. Without an engine and without root: says so and sets DOCKER_ENGINE_UP=0, which is an
# error (status 1) under CI=true.
STARTED_DOCKERD=""
DOCKER_ENGINE_UP=0
docker_engine_up() {
  local log_dir=$1 name=$2
  if docker info >/dev/null 2>&1; then
    DOCKER_ENGINE_UP=1
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v dockerd >/dev/null 2>&1; then
    local msg="no Docker engine reachable (docker info failed) and not root with dockerd to start one"
    if [ "${CI:-}" = true ]; then
      echo "$name: FAIL: $msg; CI must run the containers" >&2
      return 1
    fi
    echo "$name: SKIPPED the real containers: $msg."
    echo "$name: only the static checks ran. Run as root (or start dockerd) to run them."
    return 0
  fi
  echo "$name: starting dockerd --iptables=false (log: $log_dir/dockerd.log)"
  mkdir -p "$log_dir"
  dockerd --iptables=false >>"$log_dir/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  local _
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  if ! docker info >/dev/null 2>&1; then
    tail -20 "$log_dir/dockerd.log" >&2
    echo "$name: FAIL: dockerd did not start" >&2
    return 1
  fi
  DOCKER_ENGINE_UP=1
}

# docker_engine_down: stops the engine docker_engine_up started (nothing else).
docker_engine_down() {
  if [ -n "$STARTED_DOCKERD" ] && kill -0 "$STARTED_DOCKERD" 2>/dev/null; then
    echo "stopping the Docker engine started here (pid $STARTED_DOCKERD)"
    kill "$STARTED_DOCKERD"
    local _
    for _ in $(seq 1 60); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 0.5; done
  fi
  STARTED_DOCKERD=""
}
