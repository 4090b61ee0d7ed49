#!/usr/bin/env bash
# pg-compare.sh - pgbench through ninefold's `tcp` listener and through HAProxy
# `mode tcp`, against one PostgreSQL server, side by side.
#
# Targets, each measured with `pgbench -S` (select only, the simple query protocol,
# one connection per client for the whole run):
#   direct    pgbench -> PostgreSQL                     (the ceiling of this machine)
#   haproxy   pgbench -> HAProxy mode tcp -> PostgreSQL (1 thread, no logs)
#   ninefold  pgbench -> ninefold tcp listener -> PostgreSQL (1 worker, no access log)
#
# Pinning as bench/proxy-compare.sh: the proxy alone on PROXY_CPU (default 0),
# PostgreSQL and pgbench on LOAD_CPU (default 1). Per run it reports transactions per
# second, the average and p99 latency (from pgbench's per-transaction log), and the
# proxy's CPU time per transaction (utime + stime of its process over the run, from
# /proc), which stays valid when the load core, not the proxy, is the bottleneck.
# Rounds are interleaved (direct, haproxy, ninefold, direct, ...) so drift on a shared
# machine hits every target alike; quote ratios.
#
# Usage: bench/pg-compare.sh [-r ROUNDS] [-d SECS] [-c CLIENTS] [-s SCALE]
#   defaults: 3 rounds, 10 s per run, 8 clients, scale 10.
# Environment: NINEFOLD_BIN (default: target/release/ninefold, built if missing),
#   PROXY_CPU, LOAD_CPU.
# Needs: root (PostgreSQL runs as the `postgres` user through runuser), Debian's
#   postgresql (15) and haproxy. All traffic stays on 127.0.0.1; everything started
#   is stopped by PID on exit.

set -euo pipefail
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin"

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
ROUNDS=3
DURATION=10
CLIENTS=8
SCALE=10
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
PORT_PG=18432
PORT_HAPROXY=18433
PORT_NINEFOLD=18434

while [ $# -gt 0 ]; do
    case "$1" in
        -r) ROUNDS="$2"; shift 2 ;;
        -d) DURATION="$2"; shift 2 ;;
        -c) CLIENTS="$2"; shift 2 ;;
        -s) SCALE="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^# Needs:/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "pg-compare: unknown option $1" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "pg-compare: run as root (PostgreSQL runs as postgres via runuser)" >&2; exit 1; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$PGBIN/initdb" ] || { echo "pg-compare: install Debian's postgresql" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "pg-compare: install haproxy" >&2; exit 1; }
BIN="${NINEFOLD_BIN:-$REPO_DIR/target/release/ninefold}"
if [ ! -x "$BIN" ]; then
    (cd "$REPO_DIR" && cargo build --release)
fi

TMP=$(mktemp -d /tmp/pg-compare.XXXXXX)
chown postgres "$TMP"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

echo "== machine: $(nproc) cpus ($(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo)), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== postgresql $("$PGBIN/postgres" --version | awk '{print $3}'), haproxy $(haproxy -v | head -n1 | awk '{print $3}'), ninefold $BIN"

runuser -u postgres -- "$PGBIN/initdb" -D "$TMP/data" -A trust -U postgres --no-sync >/dev/null
cat >>"$TMP/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT_PG
unix_socket_directories = '$TMP'
fsync = off
synchronous_commit = off
shared_buffers = 256MB
max_connections = 100
EOF
runuser -u postgres -- taskset -c "$LOAD_CPU" "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/pg.log" -w start >/dev/null
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT_PG" -U postgres -i -q -s "$SCALE" postgres >/dev/null 2>&1

cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend fe
    bind 127.0.0.1:$PORT_HAPROXY
    default_backend be
backend be
    server pg 127.0.0.1:$PORT_PG
EOF
taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")

cat >"$TMP/ninefold.yaml" <<EOF
admin: {bind: "127.0.0.1:0"}
workers: 1
access_log: off
listeners:
  - {name: pg, bind: "127.0.0.1:$PORT_NINEFOLD", protocol: tcp, cluster: pg}
clusters:
  - {name: pg, endpoints: [{address: "127.0.0.1:$PORT_PG"}]}
EOF
taskset -c "$PROXY_CPU" "$BIN" serve -c "$TMP/ninefold.yaml" >"$TMP/ninefold.log" 2>&1 &
NINEFOLD_PID=$!
PIDS+=("$NINEFOLD_PID")

for port in $PORT_HAPROXY $PORT_NINEFOLD; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

# CPU seconds (utime + stime) of a process so far.
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

declare -A PORT=([direct]=$PORT_PG [haproxy]=$PORT_HAPROXY [ninefold]=$PORT_NINEFOLD)
declare -A PID=([direct]= [haproxy]=$HAPROXY_PID [ninefold]=$NINEFOLD_PID)
printf '%-9s %5s %10s %10s %10s %14s\n' target round tps avg_ms p99_ms proxy_us_per_tx
for round in $(seq "$ROUNDS"); do
    for t in direct haproxy ninefold; do
        rm -f "$TMP"/log*
        before=0
        [ -n "${PID[$t]}" ] && before=$(cpu_of "${PID[$t]}")
        out=$(cd "$TMP" && taskset -c "$LOAD_CPU" "$PGBIN/pgbench" -h 127.0.0.1 -p "${PORT[$t]}" -U postgres \
            -S -n -c "$CLIENTS" -j 1 -T "$DURATION" -l --log-prefix=log postgres 2>&1)
        after=0
        [ -n "${PID[$t]}" ] && after=$(cpu_of "${PID[$t]}")
        tps=$(echo "$out" | awk -F'= ' '/^tps/{split($2, a, " "); printf "%.0f", a[1]; exit}')
        tx=$(echo "$out" | awk -F': ' '/number of transactions actually processed/{split($2, a, "/"); print a[1]; exit}')
        avg=$(echo "$out" | awk -F'= ' '/^latency average/{split($2, a, " "); print a[1]; exit}')
        p99=$(cat "$TMP"/log* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.3f", v[i]/1000}')
        per_tx=$(awk -v a="$after" -v b="$before" -v n="$tx" 'BEGIN {if (n > 0 && a > b) printf "%.2f", (a - b) * 1e6 / n; else print "-"}')
        printf '%-9s %5s %10s %10s %10s %14s\n' "$t" "$round" "$tps" "$avg" "$p99" "$per_tx"
    done
done
