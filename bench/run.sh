#!/usr/bin/env bash
# run.sh - benchmark ninefold against nginx and HAProxy with bench/proxy-compare.sh.
#
# Usage: bench/run.sh [proxy-compare.sh options] [OUT_PATH]
#   e.g. bench/run.sh -r 2            # 2 interleaved rounds, 10 s runs, small + 16k bodies
#        bench/run.sh --quick         # 3 s runs
#        bench/run.sh --targets nginx,ninefold --bodies small
# Default targets: direct,nginx,haproxy,ninefold,l4 (a --targets option overrides them).
# Results go to bench/results/ (gitignored) unless an OUT_PATH is given.
#
# Environment:
#   NINEFOLD_BIN     use this ninefold binary as is (no build). Otherwise the release
#                    binary is built with `cargo build --release` in the repository
#                    root (a no-op when up to date), honouring CARGO_TARGET_DIR.
#   NINEFOLD_CONFIG  config file (default bench/ninefold.yaml; it reads
#                    NINEFOLD_LISTEN and NINEFOLD_UPSTREAM, exported by the harness)
#   plus everything proxy-compare.sh reads (PROXY_CPU, LOAD_CPU, OUT_FILE, ...).

set -euo pipefail
export LC_ALL=C

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
CONFIG="${NINEFOLD_CONFIG:-$BENCH_DIR/ninefold.yaml}"

echo "== machine"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host:    $(uname -n)"
echo "cpus:    $(nproc) ($(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo))"
echo "kernel:  $(uname -srm)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"

if [ -n "${NINEFOLD_BIN:-}" ]; then
    BIN="$NINEFOLD_BIN"
    echo "ninefold: $BIN (NINEFOLD_BIN, not rebuilt)"
else
    command -v cargo >/dev/null 2>&1 || { echo "run.sh: cargo not found (or set NINEFOLD_BIN)" >&2; exit 1; }
    echo "== building: (cd $REPO_DIR && cargo build --release)${CARGO_TARGET_DIR:+ with CARGO_TARGET_DIR=$CARGO_TARGET_DIR}"
    (cd "$REPO_DIR" && cargo build --release --bin ninefold)
    # Ask cargo where the target directory is (CARGO_TARGET_DIR, .cargo/config, or ./target).
    TARGET_DIR=$(cd "$REPO_DIR" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    [ -n "$TARGET_DIR" ] || TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
    case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO_DIR/$TARGET_DIR" ;; esac
    BIN="$TARGET_DIR/release/ninefold"
    echo "ninefold: $BIN ($(cd "$REPO_DIR" && git describe --always --dirty 2>/dev/null || echo 'no git'))"
fi
[ -x "$BIN" ] || { echo "run.sh: $BIN is not an executable" >&2; exit 1; }
[ -r "$CONFIG" ] || { echo "run.sh: cannot read $CONFIG" >&2; exit 1; }
echo

# The harness runs: taskset -c $PROXY_CPU bash -c "$NINEFOLD_CMD"; exec so that the
# measured process tree is just ninefold.
NINEFOLD_CMD="exec $(printf '%q' "$BIN") serve -c $(printf '%q' "$CONFIG")"
export NINEFOLD_CMD

# A later --targets in "$@" overrides this default (the harness keeps the last one).
exec "$BENCH_DIR/proxy-compare.sh" --targets direct,nginx,haproxy,ninefold,l4 "$@"
