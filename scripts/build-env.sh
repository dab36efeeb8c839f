#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/test-app.sh: one debug build, shared by clippy, the
# binaries, the tests and the app, kept small enough for a CI machine with little disk.
# - no debug info (a panic still names its file and line; symbols stay, so backtraces name
#   functions): a Tauri test binary is ~480 MB with line tables, far less without;
# - the standard library's debug info stripped from every binary too;
# - no incremental caches (CI builds once; they were a further ~30% of the target directory).
# Each can be overridden from the environment.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}"
export CARGO_PROFILE_DEV_STRIP="${CARGO_PROFILE_DEV_STRIP:-debuginfo}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Prints the free space where the target directory lives, with a label, so a CI log shows how
# much each stage used (a full disk once failed CI in the middle of a compile).
disk_report() {
  local dir="${CARGO_TARGET_DIR:-$PWD/target}"
  mkdir -p "$dir"
  echo "-- disk ($1): $(df -Pk "$dir" | awk 'NR==2 {printf "%.1f GiB free", $4/1048576}'), target $(du -sk "$dir" 2>/dev/null | awk '{printf "%.1f GiB", $1/1048576}')"
}
