# shellcheck shell=bash
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
