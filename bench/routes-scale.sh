#!/usr/bin/env bash
# What grows with the configuration: for N routes on one cluster (and, with
# --clusters, N clusters of 5 endpoints with a route each), how long `check`, a start
# (to "ninefold: ready") and a SIGHUP reload take, the RSS with two workers once
# started and after the reload (the allocator keeps some of the old snapshot's pages),
# and the size of the /metrics page before and after one request on each of (up to)
# 1,000 routes.
#
#   bench/routes-scale.sh                 # 1, 1000 and 10000 routes
#   bench/routes-scale.sh 10000           # one size
#   bench/routes-scale.sh --clusters 1000
#   ENDPOINTS=1 bench/routes-scale.sh --clusters 1000   # endpoints per cluster (default 5)
#   NINEFOLD_BIN=target/release/ninefold bench/routes-scale.sh
#
# Times are wall clock on an idle machine, best of 3; it needs nothing but the binary
# (the routes' cluster points at a closed port: nothing is proxied).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${NINEFOLD_BIN:-target/release/ninefold}"
[[ -x "$bin" ]] || cargo build --release
clusters=0
sizes=()
for a in "$@"; do
    case "$a" in
        --clusters) clusters=1 ;;
        *) sizes+=("$a") ;;
    esac
done
((${#sizes[@]})) || sizes=(1 1000 10000)
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

gen() { # N -> config on stdout
    local n=$1
    echo "workers: 2"
    echo "admin: {bind: 127.0.0.1:0}"
    echo "listeners:"
    echo "  - name: web"
    echo "    bind: 127.0.0.1:0"
    echo "    routes:"
    for ((i = 0; i < n; i++)); do
        if ((clusters)); then
            echo "      - {name: r$i, match: {path_prefix: /svc$i/}, cluster: c$i, timeout: 2s}"
        else
            echo "      - {name: r$i, match: {path_prefix: /svc$i/}, cluster: app, timeout: 2s}"
        fi
    done
    echo "clusters:"
    if ((clusters)); then
        for ((i = 0; i < n; i++)); do
            echo "  - name: c$i"
            printf '    endpoints: ['
            for ((e = 1; e <= ${ENDPOINTS:-5}; e++)); do
                ((e > 1)) && printf ', '
                printf '{address: 127.0.0.%d:9}' "$e"
            done
            printf ']\n'
        done
    else
        echo "  - name: app"
        echo "    endpoints: [{address: 127.0.0.1:9}]"
    fi
}

best() { sort -n | head -1; }
now() { date +%s.%N; }

printf '%-8s %-9s %9s %9s %9s %10s %12s %12s %12s\n' routes clusters check_s start_s reload_s rss_MiB rss_reload_MiB metrics_KiB after_KiB
for n in "${sizes[@]}"; do
    cfg="$dir/n$n.yaml"
    gen "$n" > "$cfg"
    checks=()
    for _ in 1 2 3; do
        t0=$(now); "$bin" check -c "$cfg" > /dev/null 2>&1 || true; t1=$(now)
        checks+=("$(echo "$t1 - $t0" | bc)")
    done
    starts=(); reloads=(); rss=0; rss0=0; m0=0; m1=0
    for round in 1 2 3; do
        log="$dir/log$n.$round"
        t0=$(now)
        RUST_LOG=info "$bin" serve -c "$cfg" > "$log" 2> "$log.err" &
        pid=$!
        until grep -q '^ninefold: ready' "$log" 2>/dev/null; do sleep 0.01; done
        t1=$(now)
        starts+=("$(echo "$t1 - $t0" | bc)")
        ((round == 1)) && rss0=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
        admin=$(sed -n 's/^ninefold: admin on //p' "$log")
        web=$(sed -n 's/^ninefold: listener web on //p' "$log")
        before=$(grep -c 'configuration reloaded' "$log.err" || true)
        t0=$(now)
        kill -HUP "$pid"
        until [[ $(grep -c 'configuration reloaded' "$log.err" || true) -gt $before ]]; do sleep 0.005; done
        t1=$(now)
        reloads+=("$(echo "$t1 - $t0" | bc)")
        if ((round == 1)); then
            rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
            m0=$(curl -s "http://$admin/metrics" | wc -c)
            # One request on each of (up to) 1000 routes: their series appear.
            for ((i = 0; i < n && i < 1000; i++)); do printf 'url = "http://%s/svc%d/"\noutput = "/dev/null"\n' "$web" "$i"; done > "$dir/urls"
            curl -s -K "$dir/urls" > /dev/null || true
            m1=$(curl -s "http://$admin/metrics" | wc -c)
        fi
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
    printf '%-8s %-9s %9.3f %9.3f %9.3f %10.1f %14.1f %12.1f %12.1f\n' "$n" "$((clusters ? n : 1))" \
        "$(printf '%s\n' "${checks[@]}" | best)" "$(printf '%s\n' "${starts[@]}" | best)" \
        "$(printf '%s\n' "${reloads[@]}" | best)" "$(echo "$rss0 / 1024" | bc -l)" "$(echo "$rss / 1024" | bc -l)" \
        "$(echo "$m0 / 1024" | bc -l)" "$(echo "$m1 / 1024" | bc -l)"
done
