#!/usr/bin/env bash
# isolation-overhead.sh - what circuit breakers plus bulkheads cost: the bench route
# bare (bench/ninefold-bare.yaml) against the same route with a breaker on its cluster
# (per endpoint and per cluster) and bulkheads on the route and the cluster
# (bench/ninefold-isolation.yaml), via overhead.sh.
#
# Usage: bench/isolation-overhead.sh [ROUNDS] [DURATION_S]   (default 6 rounds of 10 s)
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$BENCH_DIR/overhead.sh" isolation-overhead "$BENCH_DIR/ninefold-bare.yaml" "$BENCH_DIR/ninefold-isolation.yaml" "$@"
