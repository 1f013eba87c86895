#!/usr/bin/env bash
# Builds higuma and starts it on the in-memory store (REST API on :5681).
# Extra arguments go to `higuma run` (e.g. -c etc/higuma.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_system_packages
ensure_rust
echo "==> building (the first build compiles gRPC's C core: about 10 minutes on 2 cores)"
cargo build --release --bin higuma
echo "==> starting higuma; stop it with Ctrl-C"
exec env KUMA_STORE_TYPE=memory ./target/release/higuma run "$@"
