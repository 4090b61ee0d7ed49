#!/usr/bin/env bash
# features-overhead.sh - what the failover and isolation features cost together: the
# bench route with retries off and nothing else (bench/ninefold-bare.yaml) against the
# same route with health checks, outlier detection, retries under a budget, circuit
# breakers, bulkheads and an SLO (bench/ninefold-features.yaml), via overhead.sh.
#
# Usage: bench/features-overhead.sh [ROUNDS] [DURATION_S]   (default 6 rounds of 10 s)
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$BENCH_DIR/overhead.sh" features-overhead "$BENCH_DIR/ninefold-bare.yaml" "$BENCH_DIR/ninefold-features.yaml" "$@"
