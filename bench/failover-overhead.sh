#!/usr/bin/env bash
# failover-overhead.sh - what the attempt loop costs: the bench route with retries off
# and no health check (bench/ninefold-bare.yaml) against the same route with active
# health checks, outlier detection and retries under a budget
# (bench/ninefold-failover.yaml), via overhead.sh.
#
# Usage: bench/failover-overhead.sh [ROUNDS] [DURATION_S]   (default 6 rounds of 10 s)
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$BENCH_DIR/overhead.sh" failover-overhead "$BENCH_DIR/ninefold-bare.yaml" "$BENCH_DIR/ninefold-failover.yaml" "$@"
