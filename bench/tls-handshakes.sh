#!/usr/bin/env bash
# tls-handshakes.sh - what a TLS handshake costs the proxy: one new connection per
# request, side by side with nginx and HAProxy, for two certificate kinds and two
# modes.
#
#   full     every connection a full handshake (openssl s_time -new)
#   resumed  every connection resumes the first one's session (s_time -reuse:
#            a TLS 1.3 ticket, or a TLS 1.2 ticket or session id)
#
# Certificates: ECDSA P-256 and RSA-2048, self-signed, made with openssl here. Each
# proxy terminates TLS on 127.0.0.1 and forwards GET /small over plain HTTP/1.1 with
# keep-alive to one backend nginx. The proxy runs pinned to PROXY_CPU (0), alone;
# the client (s_time) and the backend share LOAD_CPU (1). The figure is the proxy's
# own CPU time (utime+stime of its process tree, /proc/PID/stat) divided by the
# connections s_time completed: CPU per handshake-and-request. Rounds are
# interleaved (every target once per round), and each row says the ratio to nginx
# in the same round. Before measuring, each target's resumption is checked with
# `openssl s_client -sess_out/-sess_in` ("Reused" must be printed), so a "resumed"
# row that is really a full handshake cannot pass unnoticed.
#
# Usage: tls-handshakes.sh [options]
#   -r, --rounds N        rounds (default 3)
#   -d, --duration SECS   s_time seconds per row (default 5)
#       --certs LIST      ecdsa,rsa (default both)
#       --modes LIST      full,resumed (default both)
#       --versions LIST   1.3,1.2 (default 1.3)
#       --targets LIST    nginx,haproxy,ninefold (default all three)
#       --clients N       s_time processes at once (default 2)
#   -h, --help
#
# Environment:
#   NINEFOLD_BIN    the ninefold binary (default target/release/ninefold)
#   NINEFOLD_BIN_B  a second ninefold binary, target "ninefold-b" (e.g. another
#                   crypto provider); NINEFOLD_LABEL_B names it in the output
#   PROXY_CPU, LOAD_CPU  pinning (defaults 0 and 1)
#
# Needs: openssl, nginx, haproxy, taskset, awk. Installs nothing. All traffic stays
# on 127.0.0.1; every process started here is stopped by PID on exit.

set -uo pipefail
export LC_ALL=C
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

ROUNDS=3
DURATION=5
CERTS="ecdsa,rsa"
MODES="full,resumed"
VERSIONS="1.3"
TARGETS="nginx,haproxy,ninefold"
CLIENTS=2
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
NINEFOLD_BIN="${NINEFOLD_BIN:-$ROOT/target/release/ninefold}"
NINEFOLD_BIN_B="${NINEFOLD_BIN_B:-}"
NINEFOLD_LABEL_B="${NINEFOLD_LABEL_B:-ninefold-b}"

die() { echo "tls-handshakes: ERROR: $*" >&2; exit 1; }
log() { echo "tls-handshakes: $*" >&2; }
usage() { sed -n '2,/^# Needs:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        -r|--rounds)   ROUNDS="$2"; shift 2 ;;
        -d|--duration) DURATION="$2"; shift 2 ;;
        --certs)       CERTS="$2"; shift 2 ;;
        --modes)       MODES="$2"; shift 2 ;;
        --versions)    VERSIONS="$2"; shift 2 ;;
        --targets)     TARGETS="$2"; shift 2 ;;
        --clients)     CLIENTS="$2"; shift 2 ;;
        -h|--help)     usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]] || die "--rounds must be >= 1"
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 ]] || die "--duration must be >= 1"
[[ "$CLIENTS" =~ ^[0-9]+$ && "$CLIENTS" -ge 1 ]] || die "--clients must be >= 1"
IFS=, read -r -a CERT_LIST <<<"$CERTS"
IFS=, read -r -a MODE_LIST <<<"$MODES"
IFS=, read -r -a VERSION_LIST <<<"$VERSIONS"
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
[ -n "$NINEFOLD_BIN_B" ] && TARGET_LIST+=(ninefold-b)
for c in "${CERT_LIST[@]}"; do case $c in ecdsa|rsa) ;; *) die "unknown cert '$c'" ;; esac; done
for m in "${MODE_LIST[@]}"; do case $m in full|resumed) ;; *) die "unknown mode '$m'" ;; esac; done
for v in "${VERSION_LIST[@]}"; do case $v in 1.2|1.3) ;; *) die "unknown version '$v'" ;; esac; done
for t in "${TARGET_LIST[@]}"; do
    case $t in
        nginx|haproxy) command -v "$t" >/dev/null || die "$t not found (apt-get install $t)" ;;
        ninefold) [ -x "$NINEFOLD_BIN" ] || die "no ninefold binary at $NINEFOLD_BIN (cargo build --release)" ;;
        ninefold-b) [ -x "$NINEFOLD_BIN_B" ] || die "NINEFOLD_BIN_B=$NINEFOLD_BIN_B is not executable" ;;
        *) die "unknown target '$t'" ;;
    esac
done
for c in openssl nginx taskset awk; do command -v "$c" >/dev/null || die "$c not found"; done
CLK_TCK=$(getconf CLK_TCK)

. "$BENCH_DIR/compare-lib.sh"
bench_tmp tls-handshakes

PORT_BACKEND=18180
declare -A PORT=([nginx]=18181 [haproxy]=18182 [ninefold]=18183 [ninefold-b]=18184)
for p in $PORT_BACKEND "${PORT[@]}"; do port_in_use "$p" && die "127.0.0.1:$p is in use"; done

# ---------------------------------------------------------------- certificates --
for c in "${CERT_LIST[@]}"; do
    case $c in
        ecdsa) openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                   -keyout "$TMP/ecdsa.key" -out "$TMP/ecdsa.pem" -days 2 -subj /CN=localhost 2>/dev/null ;;
        rsa)   openssl req -x509 -newkey rsa:2048 -nodes \
                   -keyout "$TMP/rsa.key" -out "$TMP/rsa.pem" -days 2 -subj /CN=localhost 2>/dev/null ;;
    esac || die "openssl could not make the $c certificate"
    cat "$TMP/$c.pem" "$TMP/$c.key" >"$TMP/$c.combined"
done

# --------------------------------------------------------------------- backend --
start_backend "$PORT_BACKEND" "$LOAD_CPU"

# ------------------------------------------------------------- one proxy start --
# start_target TARGET CERT: starts it pinned to PROXY_CPU; sets PID.
start_target() {
    local t=$1 c=$2 d="$TMP/$1-$2" port=${PORT[$1]}
    mkdir -p "$d"
    case $t in
        nginx)
            cat >"$d/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $d/nginx.pid; error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/t1; proxy_temp_path $d/t2;
    fastcgi_temp_path $d/t3; uwsgi_temp_path $d/t4; scgi_temp_path $d/t5;
    upstream backend { server 127.0.0.1:$PORT_BACKEND; keepalive 64; }
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $TMP/$c.pem; ssl_certificate_key $TMP/$c.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:20m;
        ssl_session_tickets on;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
            taskset -c "$PROXY_CPU" nginx -c "$d/nginx.conf" -p "$d" >"$d/out.log" 2>&1 &
            ;;
        haproxy)
            { haproxy_head; cat <<EOF
frontend fe
    bind 127.0.0.1:$port ssl crt $TMP/$c.combined
    default_backend be
backend be
    server s1 127.0.0.1:$PORT_BACKEND
EOF
            } >"$d/haproxy.cfg"
            taskset -c "$PROXY_CPU" haproxy -db -f "$d/haproxy.cfg" >"$d/out.log" 2>&1 &
            ;;
        ninefold|ninefold-b)
            local bin=$NINEFOLD_BIN
            [ "$t" = ninefold-b ] && bin=$NINEFOLD_BIN_B
            NINEFOLD_LISTEN=127.0.0.1:$port NINEFOLD_UPSTREAM=127.0.0.1:$PORT_BACKEND \
                NINEFOLD_TLS_CERT=$TMP/$c.pem NINEFOLD_TLS_KEY=$TMP/$c.key \
                taskset -c "$PROXY_CPU" "$bin" serve -c "$BENCH_DIR/ninefold-tls.yaml" >"$d/out.log" 2>&1 &
            ;;
    esac
    PID=$!
    PIDS+=("$PID")
    local deadline=$(( $(date +%s) + 20 ))
    until timeout 3 openssl s_client -connect 127.0.0.1:$port </dev/null >/dev/null 2>&1; do
        kill -0 "$PID" 2>/dev/null || { cat "$d/out.log" >&2; die "$t exited during start-up"; }
        [ "$(date +%s)" -ge $deadline ] && die "$t did not accept TLS on $port"
        sleep 0.1
    done
}

stop_target() {
    kill -TERM "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
}

# Checks that a second connection resumes the first one's session.
check_resumes() { # port version
    local sess="$TMP/sess.$1" v="-tls1_3"
    [ "$2" = 1.2 ] && v="-tls1_2"
    rm -f "$sess"
    printf 'GET /small HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n' |
        timeout 5 openssl s_client -connect 127.0.0.1:$1 $v -sess_out "$sess" -ign_eof >/dev/null 2>&1
    printf 'GET /small HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n' |
        timeout 5 openssl s_client -connect 127.0.0.1:$1 $v -sess_in "$sess" -ign_eof 2>/dev/null | grep -q '^Reused'
}

# One row: CLIENTS s_time processes for DURATION seconds. Prints "conns ticks".
measure() { # port mode version seconds
    local port=$1 mode=$2 secs=$4 v="-tls1_3" flag="-new" i before after total=0 out
    [ "$3" = 1.2 ] && v="-tls1_2"
    [ "$mode" = resumed ] && flag="-reuse"
    before=$(tree_ticks "$PID")
    for i in $(seq 1 "$CLIENTS"); do
        taskset -c "$LOAD_CPU" openssl s_time -connect 127.0.0.1:$port $v $flag \
            -www /small -time "$secs" >"$TMP/stime.$i" 2>&1 &
    done
    wait $(jobs -p | tail -n "$CLIENTS") 2>/dev/null
    after=$(tree_ticks "$PID")
    for i in $(seq 1 "$CLIENTS"); do
        out=$(awk '/connections in [0-9.]+ real seconds/ {print $1}' "$TMP/stime.$i" | tail -n 1)
        total=$(( total + ${out:-0} ))
    done
    echo "$total $(( after - before ))"
}

RESULTS="$BENCH_DIR/results/tls-handshakes-$(date +%Y%m%d-%H%M%S).tsv"
mkdir -p "$BENCH_DIR/results"
printf 'round\tcert\tversion\tmode\ttarget\tconnections\tproxy_cpu_s\tproxy_us_per_conn\tvs_nginx\n' >"$RESULTS"
log "cpus $(nproc); proxy on CPU $PROXY_CPU, client and backend on CPU $LOAD_CPU; $CLIENTS s_time clients, ${DURATION}s per row"
[ -n "$NINEFOLD_BIN_B" ] && log "ninefold-b is $NINEFOLD_LABEL_B ($NINEFOLD_BIN_B)"

declare -A RESUME_OK=()
for r in $(seq 1 "$ROUNDS"); do
    for c in "${CERT_LIST[@]}"; do
        for t in "${TARGET_LIST[@]}"; do
            start_target "$t" "$c"
            for v in "${VERSION_LIST[@]}"; do
                if [ -z "${RESUME_OK[$t-$c-$v]:-}" ]; then
                    if check_resumes "${PORT[$t]}" "$v"; then RESUME_OK[$t-$c-$v]=yes; else RESUME_OK[$t-$c-$v]=no; fi
                    [ "${RESUME_OK[$t-$c-$v]}" = yes ] || log "warning: $t ($c, TLS $v) did not resume a session"
                fi
                for m in "${MODE_LIST[@]}"; do
                    # A short warm-up: the first connections fill caches and the pool.
                    measure "${PORT[$t]}" "$m" "$v" 1 >/dev/null
                    read -r conns ticks < <(measure "${PORT[$t]}" "$m" "$v" "$DURATION")
                    us=$(awk -v t="$ticks" -v n="$conns" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "nan" }')
                    name=$t; [ "$t" = ninefold-b ] && name=$NINEFOLD_LABEL_B
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' "$r" "$c" "$v" "$m" "$name" "$conns" \
                        "$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" "$us" >>"$RESULTS"
                    log "round $r $c TLS $v $m $name: $conns connections, $us us each"
                done
            done
            stop_target
        done
    done
done

# Ratios to nginx in the same round, cert, version and mode.
awk -F'\t' 'NR == 1 { print; next }
    { key = $1 FS $2 FS $3 FS $4; row[NR] = $0; k[NR] = key; us[NR] = $8; if ($5 == "nginx") base[key] = $8 }
    END { for (i = 2; i <= NR; i++) { split(row[i], f, FS); r = (base[k[i]] > 0) ? sprintf("%.3f", us[i] / base[k[i]]) : "";
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], r } }' \
    "$RESULTS" >"$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS"
column -t -s$'\t' "$RESULTS"
echo
echo "medians over rounds (proxy µs per connection, ratio to nginx):"
awk -F'\t' 'NR > 1 { key = $2 " TLS" $3 " " $4 " " $5; n[key]++; v[key, n[key]] = $8; q[key, n[key]] = $9; order[key] = NR }
    function median(a, key, m,   i, j, t, x) { for (i = 1; i <= m; i++) x[i] = a[key, i];
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }
        return (m % 2) ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2 }
    END { for (key in n) printf "%-36s %8.1f  %5.3f\n", key, median(v, key, n[key]), median(q, key, n[key]) }' "$RESULTS" | sort
for k in "${!RESUME_OK[@]}"; do [ "${RESUME_OK[$k]}" = yes ] || echo "not resumed: $k"; done
echo "results: $RESULTS"
