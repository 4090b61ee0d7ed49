#!/usr/bin/env bash
# h2-compare.sh - HTTP/2 from clients, side by side: h2load (h2c with prior knowledge,
# -c16 -m10 by default) against nginx, HAProxy and ninefold, each proxying GET /small
# over HTTP/1.1 with keep-alive to one backend nginx.
#
# The proxy runs pinned to PROXY_CPU (0), alone; h2load and the backend share LOAD_CPU
# (1). The figure is the proxy's CPU time (utime+stime of its process tree) divided by
# the requests h2load completed, and its ratio to nginx's in the same round; h2load's
# own request latency p99 is shown beside it (h2load reports per-request time
# percentiles only as mean/sd/max, so p99 comes from its --log-file). Rounds are
# interleaved.
#
# Usage: h2-compare.sh [options]
#   -r, --rounds N        rounds (default 3)
#   -d, --duration SECS   h2load seconds per row (default 10)
#   -c N                  h2load clients (default 16)
#   -m N                  streams per client (default 10)
#       --targets LIST    nginx,haproxy,ninefold (default all three)
#   -h, --help
#
# Environment: NINEFOLD_BIN (default target/release/ninefold), PROXY_CPU, LOAD_CPU.
#
# Needs: h2load (Debian nghttp2-client), nginx, haproxy, taskset, awk. Installs
# nothing. All traffic stays on 127.0.0.1; every process started here is stopped by
# PID on exit.

set -uo pipefail
export LC_ALL=C
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

ROUNDS=3
DURATION=10
CLIENTS=16
STREAMS=10
TARGETS="nginx,haproxy,ninefold"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
NINEFOLD_BIN="${NINEFOLD_BIN:-$ROOT/target/release/ninefold}"

die() { echo "h2-compare: ERROR: $*" >&2; exit 1; }
log() { echo "h2-compare: $*" >&2; }
usage() { sed -n '2,/^# Needs:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        -r|--rounds)   ROUNDS="$2"; shift 2 ;;
        -d|--duration) DURATION="$2"; shift 2 ;;
        -c)            CLIENTS="$2"; shift 2 ;;
        -m)            STREAMS="$2"; shift 2 ;;
        --targets)     TARGETS="$2"; shift 2 ;;
        -h|--help)     usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
for n in "$ROUNDS" "$DURATION" "$CLIENTS" "$STREAMS"; do
    [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 ]] || die "numbers must be >= 1"
done
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
command -v h2load >/dev/null || die "h2load not found (apt-get install nghttp2-client)"
for t in "${TARGET_LIST[@]}"; do
    case $t in
        nginx|haproxy) command -v "$t" >/dev/null || die "$t not found (apt-get install $t)" ;;
        ninefold) [ -x "$NINEFOLD_BIN" ] || die "no ninefold binary at $NINEFOLD_BIN (cargo build --release)" ;;
        *) die "unknown target '$t'" ;;
    esac
done
CLK_TCK=$(getconf CLK_TCK)

. "$BENCH_DIR/compare-lib.sh"
bench_tmp h2-compare

PORT_BACKEND=18280
declare -A PORT=([nginx]=18281 [haproxy]=18282 [ninefold]=18283)
for p in $PORT_BACKEND "${PORT[@]}"; do port_in_use "$p" && die "127.0.0.1:$p is in use"; done

start_backend "$PORT_BACKEND" "$LOAD_CPU"

start_target() { # target -> PID
    local t=$1 d="$TMP/$1" port=${PORT[$1]}
    mkdir -p "$d"
    case $t in
        nginx)
            cat >"$d/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $d/nginx.pid; error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off; $(temp_paths "$d")
    http2_max_concurrent_streams 128; keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$PORT_BACKEND; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$port http2;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
            taskset -c "$PROXY_CPU" nginx -c "$d/nginx.conf" -p "$d" >"$d/out.log" 2>&1 &
            ;;
        haproxy)
            { haproxy_head; cat <<EOF
frontend fe
    bind 127.0.0.1:$port proto h2
    default_backend be
backend be
    server s1 127.0.0.1:$PORT_BACKEND
EOF
            } >"$d/haproxy.cfg"
            taskset -c "$PROXY_CPU" haproxy -db -f "$d/haproxy.cfg" >"$d/out.log" 2>&1 &
            ;;
        ninefold)
            NINEFOLD_LISTEN=127.0.0.1:$port NINEFOLD_UPSTREAM=127.0.0.1:$PORT_BACKEND \
                taskset -c "$PROXY_CPU" "$NINEFOLD_BIN" serve -c "$BENCH_DIR/ninefold.yaml" >"$d/out.log" 2>&1 &
            ;;
    esac
    PID=$!
    PIDS+=("$PID")
    local deadline=$(( $(date +%s) + 20 ))
    until h2load -n1 -c1 "http://127.0.0.1:$port/small" 2>/dev/null | grep -q '1 succeeded'; do
        kill -0 "$PID" 2>/dev/null || { cat "$d/out.log" >&2; die "$t exited during start-up"; }
        [ "$(date +%s)" -ge $deadline ] && die "$t did not answer h2c on $port"
        sleep 0.1
    done
}

RESULTS="$BENCH_DIR/results/h2-compare-$(date +%Y%m%d-%H%M%S).tsv"
mkdir -p "$BENCH_DIR/results"
printf 'round\ttarget\trequests\tfailed\tproxy_cpu_s\tproxy_us_per_req\tp99_ms\tcpu_vs_nginx\tp99_vs_nginx\n' >"$RESULTS"
log "proxy on CPU $PROXY_CPU; h2load -c$CLIENTS -m$STREAMS and the backend on CPU $LOAD_CPU; ${DURATION}s per row"
for r in $(seq 1 "$ROUNDS"); do
    for t in "${TARGET_LIST[@]}"; do
        start_target "$t"
        url="http://127.0.0.1:${PORT[$t]}/small"
        taskset -c "$LOAD_CPU" h2load -c"$CLIENTS" -m"$STREAMS" -D 2 "$url" >/dev/null 2>&1   # warm-up
        before=$(tree_ticks "$PID")
        taskset -c "$LOAD_CPU" h2load -c"$CLIENTS" -m"$STREAMS" -D "$DURATION" --log-file="$TMP/lat" "$url" >"$TMP/out" 2>&1
        after=$(tree_ticks "$PID")
        ok=$(awk '/^requests:/ {for (i = 1; i <= NF; i++) if ($(i+1) == "succeeded,") print $i}' "$TMP/out")
        failed=$(awk '/^requests:/ {for (i = 1; i <= NF; i++) if ($(i+1) == "failed,") print $i}' "$TMP/out")
        # --log-file: start time, status, microseconds per request.
        p99=$(awk '{print $3}' "$TMP/lat" | sort -n | awk '{a[NR] = $1} END { if (NR) printf "%.2f", a[int(NR * 0.99)] / 1000; else print "nan" }')
        us=$(awk -v t=$((after - before)) -v n="${ok:-0}" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "nan" }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t\n' "$r" "$t" "${ok:-0}" "${failed:-0}" \
            "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" "$us" "$p99" >>"$RESULTS"
        log "round $r $t: ${ok:-0} requests (${failed:-0} failed), $us us each, p99 $p99 ms"
        kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null
    done
done

awk -F'\t' 'NR == 1 { print; next }
    { row[NR] = $0; r[NR] = $1; us[NR] = $6; p[NR] = $7; if ($2 == "nginx") { bu[$1] = $6; bp[$1] = $7 } }
    END { for (i = 2; i <= NR; i++) { split(row[i], f, FS);
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.3f\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], us[i] / bu[r[i]], p[i] / bp[r[i]] } }' \
    "$RESULTS" >"$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS"
column -t -s$'\t' "$RESULTS"
echo "results: $RESULTS"
