#!/bin/sh
# Regenerates completions/ from the built binary; the test tests/it/completions.rs fails when they drift.
set -eu
cd "$(dirname "$0")/.."
wcon="${WCON:-${CARGO_TARGET_DIR:-target}/debug/wcon}"
mkdir -p completions
"$wcon" completions bash > completions/wcon.bash
"$wcon" completions zsh > completions/_wcon
"$wcon" completions fish > completions/wcon.fish
"$wcon" completions powershell > completions/_wcon.ps1
"$wcon" completions elvish > completions/wcon.elv
