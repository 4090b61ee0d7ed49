#!/usr/bin/env bash
# slo-overhead.sh - what recording SLIs costs on the data path: bench/ninefold.yaml
# against bench/ninefold-slo.yaml (the same route with `slo:`), via overhead.sh.
#
# Usage: bench/slo-overhead.sh [ROUNDS] [DURATION_S]   (default 6 rounds of 10 s)
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$BENCH_DIR/overhead.sh" slo-overhead "$BENCH_DIR/ninefold.yaml" "$BENCH_DIR/ninefold-slo.yaml" "$@"
