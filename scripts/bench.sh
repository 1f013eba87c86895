#!/usr/bin/env bash
# Regenerates BENCHMARKS.md: builds higuma in release mode, runs every scenario of
# `higuma-load` on the in-memory store and on Postgres, with event-driven push on and off,
# at N = 1,000 and N = 10,000 simulated dataplanes, and renders the tables.
#
#   ./scripts/bench.sh            the full matrix (about half an hour on 2 cores)
#   SIZES="1000" ./scripts/bench.sh   a subset
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_system_packages
ensure_rust
cargo build --release --bins
results=bench/results
mkdir -p "$results"
SIZES="${SIZES:-1000 10000}"
STORES="${STORES:-memory postgres}"
PUSHES="${PUSHES:-true false}"
for n in $SIZES; do
    services=$((n / 10))
    for store in $STORES; do
        for push in $PUSHES; do
            out="$results/$n-$store-push-$push.json"
            echo "==> N=$n store=$store push=$push -> $out"
            ./target/release/higuma-load run --store "$store" --push "$push" \
                --services "$services" --instances 10 --outbounds 10 --seed 1 \
                --ramp "${RAMP:-5}" --idle "${IDLE:-60}" --changes 50 --churn "${CHURN:-60}" --churn-rate 100 \
                --out "$out"
        done
    done
done
{
    cat bench/intro.md
    echo
    echo "## Results"
    echo
    ./target/release/higuma-load report "$results"/*.json
    echo
    cat bench/analysis.md
} > BENCHMARKS.md
echo "==> wrote BENCHMARKS.md"
