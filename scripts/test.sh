#!/usr/bin/env bash
# Runs the whole test suite: starts the local services the tests use, then every test.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# A stable build directory outside the clone, so repeated runs build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/wcon-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Test binaries keep the path of the checkout they were built from (snapshots, completions).
# Cargo tracks this workspace's sources by relative path and modification time, so in a build
# directory last used by another checkout it may run those binaries as they are, reading that
# checkout's files (or failing if it is gone). Make this workspace's crates rebuild then.
mkdir -p "$CARGO_TARGET_DIR"
marker="$CARGO_TARGET_DIR/.wcon-checkout"
if [ "$(cat "$marker" 2>/dev/null)" != "$PWD" ]; then
  find src commands tui tests bench -type f -exec touch {} +
  echo "$PWD" > "$marker"
fi

if [ -x scripts/services.sh ]; then
  scripts/services.sh
  # shellcheck disable=SC1091
  [ -f /var/tmp/wcon-services/env.sh ] && . /var/tmp/wcon-services/env.sh
fi

# Long mode (WCON_TEST_LONG=1): minute-long outages in the fault suite, then each cargo-fuzz
# target for a bounded time (WCON_FUZZ_SECONDS, default 60).
long="${WCON_TEST_LONG:-0}"
if [ "$long" = "1" ]; then
  export WCON_FAULTS_LONG=1
fi

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
if [ "$long" = "1" ]; then
  echo "== fuzz (cargo fuzz, ${WCON_FUZZ_SECONDS:-60} s per target)"
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  for target in frames config signatures; do
    # cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable compiler take them.
    (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$CARGO_TARGET_DIR-fuzz" \
      cargo fuzz run -O "$target" -- -max_total_time="${WCON_FUZZ_SECONDS:-60}") || status=$?
  done
fi
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
