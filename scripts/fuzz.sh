#!/usr/bin/env bash
# Runs every fuzz target in tests/fuzz.rs for longer than the test suite does: each target
# runs for SECONDS (default 300) with fresh random seeds, the targets in parallel (one
# test thread each). A failure prints the seed and the minimal failing input.
#
#   ./scripts/fuzz.sh            # 5 minutes per target
#   ./scripts/fuzz.sh 3600 jwt   # one hour, only the jwt target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
shift || true
echo "==> fuzzing for ${seconds}s per target ${*:-(all targets)}"
set +e
HIGUMA_FUZZ_SECONDS="$seconds" cargo test --test fuzz -- --nocapture "$@" 2>&1 \
    | grep --line-buffered -E '^fuzz |^test |panicked|failed|minimal|seed'
exit "${PIPESTATUS[0]}"
