#!/usr/bin/env bash
# Runs the whole test suite: starts the local services the tests use, then every test.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# A stable build directory outside the clone, so repeated runs build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/wcon-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if [ -x scripts/services.sh ]; then
  scripts/services.sh
  # shellcheck disable=SC1091
  [ -f /var/tmp/wcon-services/env.sh ] && . /var/tmp/wcon-services/env.sh
fi

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
