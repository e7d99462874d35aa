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
cargo test --workspace --locked "$@"
