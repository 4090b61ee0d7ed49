#!/usr/bin/env bash
# cpu-split.sh - user and kernel CPU per request of one proxy, from one round of
# bench/run.sh: where its CPU per request goes, beside nginx's in another call.
#
# Usage: bench/cpu-split.sh TARGET [BODY]
#   TARGET  nginx, haproxy or ninefold (as bench/run.sh --targets takes them)
#   BODY    small (default) or 16k
#
# Starts `bench/run.sh -r 1 --targets TARGET --bodies BODY`, reads utime and stime
# (/proc/PID/stat) of every process of that proxy 6 s into the run and again 5 s later,
# takes the busiest one (the proxy's worker, not the backend nginx), and divides by the
# requests the run reports for those 5 s (its requests/s × 5). Prints
# "TARGET BODY: user_us/req=… sys_us/req=… (rps …)". The run is bounded (bench/run.sh's
# own 2 s warm-up + 10 s), sends only to 127.0.0.1, and stops by itself.
#
# Environment: NINEFOLD_BIN as for bench/run.sh.
set -uo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
T=${1:?usage: bench/cpu-split.sh TARGET [BODY]}
B=${2:-small}
case $T in
    ninefold) pat="ninefold serve" ;;
    nginx) pat="nginx" ;;
    haproxy) pat="haproxy" ;;
    *) echo "cpu-split: unknown target $T" >&2; exit 2 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BENCH_DIR/run.sh" -r 1 --targets "$T" --bodies "$B" "$tmp/run.txt" >"$tmp/run.log" 2>&1 &
run=$!
sleep 6
declare -A U S
for p in $(pgrep -f "$pat"); do
    read -r U[$p] S[$p] < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null) || true
done
sleep 5
best=0; bu=0; bs=0
for p in "${!U[@]}"; do
    read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null) || continue
    du=$((u - U[$p])); ds=$((s - S[$p]))
    if [ $((du + ds)) -gt "$best" ]; then best=$((du + ds)); bu=$du; bs=$ds; fi
done
wait "$run"
rps=$(awk -v b="$B" -v t="$T" '$1 == 1 && $2 == b && $3 == t { print $4 }' "$tmp/run.log" | head -1)
if [ -z "$rps" ] || [ "$best" -eq 0 ]; then
    echo "cpu-split: no reading (see bench/run.sh's output)" >&2
    cat "$tmp/run.log" >&2
    exit 1
fi
hz=$(getconf CLK_TCK)
awk -v t="$T" -v b="$B" -v u="$bu" -v s="$bs" -v r="$rps" -v hz="$hz" 'BEGIN {
    printf "%s %s: user_us/req=%.2f sys_us/req=%.2f (rps %d)\n", t, b, u * 1e6 / hz / (r * 5), s * 1e6 / hz / (r * 5), r
}'
