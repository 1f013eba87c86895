#!/usr/bin/env bash
# Runs every fuzz target in tests/fuzz.rs for longer than the test suite does: each target
# runs for SECONDS of wall clock (default 300) with fresh random seeds, all targets at once
# (one test thread each, sharing the machine's cores). A failure prints the seed and the
# minimal failing input; turn it into a regression test in tests/fuzz.rs and fix it.
#
#   ./scripts/fuzz.sh            # 5 minutes per target
#   ./scripts/fuzz.sh 3600 jwt   # one hour, only the jwt target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
shift || true
echo "==> fuzzing for ${seconds}s per target ${*:-(all targets)}"
set +e
HIGUMA_FUZZ_SECONDS="$seconds" cargo test --test fuzz -- --nocapture --test-threads=16 "$@" 2>&1 \
    | grep --line-buffered -E '^fuzz |^test |panicked|failed|minimal|seed'
exit "${PIPESTATUS[0]}"
