#!/usr/bin/env bash
# idle-mem.sh - memory of idle keep-alive client connections in nginx, HAProxy and
# ninefold, in one run, with bench/idle-conns.py.
#
# Usage: bench/idle-mem.sh [-n N] [--settle SECS] [--tls]
#   -n, --connections N   idle connections opened against each proxy (default 5000)
#       --tls             the client connections are TLS (HTTP/1.1 by ALPN): each proxy
#                         terminates TLS with the same self-signed ECDSA P-256
#                         certificate, made with openssl in the temp dir
#       --settle SECS     seconds with every connection open before the second
#                         reading (idle-conns.py --settle; default 2)
#   -h, --help
#
# Starts a backend nginx on 127.0.0.1:18080 (`/` answers "ok"), and in front of it
# nginx (:18081), HAProxy (:18082) and ninefold (:18083), each with one worker/thread,
# keep-alive to the backend and no logs (the settings of bench/proxy-compare.sh, whose
# configs are inline in that shared, unchanged harness and so are written again here,
# minimal; with --tls, each listener terminates TLS). `ulimit -n` is raised to 65536 before any of them starts, so each inherits
# it (or to the hard limit, with a warning, where 65536 is above it and cannot be
# raised). Then, one proxy after the other, idle-conns.py reads the proxy's VmRSS (nginx:
# master + worker), opens N keep-alive connections with one GET each, keeps them open,
# reads VmRSS again and closes them. Prints a table: RSS before and after (KiB), the
# delta, bytes per idle connection and the ratio to nginx's bytes per connection.
#
# Every process the script starts is tracked by PID and start time and stopped on exit
# (trap); nothing is killed by name. Configs and logs live in a private temp dir.
#
# Environment:
#   NINEFOLD_BIN     use this ninefold binary as is (no build). Otherwise the release
#                    binary is built with `cargo build --release` in the repository
#                    root, honouring CARGO_TARGET_DIR (as bench/run.sh does).
#   NINEFOLD_CONFIG  config (default bench/ninefold.yaml, with --tls
#                    bench/ninefold-tls.yaml; reads NINEFOLD_LISTEN and NINEFOLD_UPSTREAM,
#                    and with --tls NINEFOLD_TLS_CERT and NINEFOLD_TLS_KEY, which this
#                    script exports)
#   PROXY_CPU, LOAD_CPU  pinning of the proxies and of backend + client (defaults 0, 1)
#
# Needs: bash, python3, taskset (util-linux), and the Debian packages nginx, haproxy;
# with --tls also openssl and curl.

set -uo pipefail
export LC_ALL=C
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
CONFIG="${NINEFOLD_CONFIG:-}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
N=5000
SETTLE=2
TLS=0
PORT_BACKEND=18080
PORT_NGINX=18081
PORT_HAPROXY=18082
PORT_NINEFOLD=18083
NOFILE=65536

die() { echo "idle-mem: ERROR: $*" >&2; exit 1; }
log() { echo "idle-mem: $*" >&2; }
usage() { sed -n '2,/^# Needs:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        -n|--connections) N="${2:-}"; shift 2 ;;
        --settle)         SETTLE="${2:-}"; shift 2 ;;
        --tls)            TLS=1; shift ;;
        -h|--help)        usage; exit 0 ;;
        *)                die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] || die "-n must be a whole number >= 1"
[[ "$SETTLE" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--settle must be a number of seconds"
NEEDS="nginx haproxy python3 taskset"
[ "$TLS" = 1 ] && NEEDS="$NEEDS openssl curl"
for c in $NEEDS; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found"
done
if [ -z "$CONFIG" ]; then
    CONFIG="$BENCH_DIR/ninefold.yaml"
    [ "$TLS" = 1 ] && CONFIG="$BENCH_DIR/ninefold-tls.yaml"
fi
[ -r "$CONFIG" ] || die "cannot read $CONFIG"

# --------------------------------------------------------------- the binary --
if [ -n "${NINEFOLD_BIN:-}" ]; then
    BIN="$NINEFOLD_BIN"
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found (or set NINEFOLD_BIN)"
    log "building: (cd $REPO_DIR && cargo build --release --bin ninefold)"
    (cd "$REPO_DIR" && cargo build --release --bin ninefold) || die "build failed"
    TARGET_DIR=$(cd "$REPO_DIR" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    [ -n "$TARGET_DIR" ] || TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
    case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO_DIR/$TARGET_DIR" ;; esac
    BIN="$TARGET_DIR/release/ninefold"
fi
[ -x "$BIN" ] || die "$BIN is not an executable"

# ------------------------------------------------------------- fd limit --
# Every process started below inherits this limit. Where the hard limit is lower and
# cannot be raised (no CAP_SYS_RESOURCE, e.g. in a container), the hard limit is used.
if ! ulimit -n "$NOFILE" 2>/dev/null; then
    log "warning: cannot raise ulimit -n to $NOFILE (hard limit $(ulimit -Hn)); using the hard limit"
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
FDLIM=$(ulimit -n)
[ "$FDLIM" = unlimited ] && FDLIM=1048576
# The harness's sizing: nginx's worker_connections and HAProxy's maxconn from the limit.
MAXCONN=$(( (FDLIM - 256) / 2 )); [ "$MAXCONN" -gt 20000 ] && MAXCONN=20000
WORKER_CONNS=$(( MAXCONN * 2 ))
[ $(( N + 256 )) -le "$MAXCONN" ] || die "-n $N needs a maxconn above $(( N + 256 )); ulimit -n $FDLIM allows $MAXCONN"

# --------------------------------------------------------- process tracking --
TMP=""
declare -a PIDS=()
declare -A PID_START=()

starttime() { # pid -> field 22 of /proc/pid/stat, empty if gone
    local s=""
    { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 0
    s="${s##*) }"
    set -- $s
    echo "${20}"
}
is_ours() { [ -n "${PID_START[$1]:-}" ] && [ "$(starttime "$1")" = "${PID_START[$1]}" ]; }
track() {
    local st="" i
    for i in 1 2 3 4 5 6 7 8 9 10; do st=$(starttime "$1"); [ -n "$st" ] && break; sleep 0.01; done
    PIDS+=("$1"); PID_START[$1]="$st"
}
children() { # pid -> its child pids (scan of /proc)
    local f s p pp
    for f in /proc/[0-9]*/stat; do
        s=""; { read -r s <"$f"; } 2>/dev/null || continue
        p="${s%% *}"; s="${s##*) }"; pp="${s#* }"; pp="${pp%% *}"
        [ "$pp" = "$1" ] && echo "$p"
    done
}
stop_pid() { # TERM the process (nginx and HAProxy masters stop their workers), KILL after 5 s
    local pid=$1 i
    is_ours "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do is_ours "$pid" || break; sleep 0.1; done
    if is_ours "$pid"; then
        log "pid $pid ignored SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for (( i=${#PIDS[@]}-1; i>=0; i-- )); do stop_pid "${PIDS[$i]}"; done
    [ -n "$TMP" ] && [ -d "$TMP" ] && rm -rf -- "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $PORT_BACKEND $PORT_NGINX $PORT_HAPROXY $PORT_NINEFOLD; do
    port_in_use "$p" && die "127.0.0.1:$p is already in use; stop whatever listens there first"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/idle-mem.XXXXXX") || die "mktemp failed"
chmod 0755 "$TMP"
mkdir -p "$TMP/backend" "$TMP/nginx" "$TMP/haproxy" "$TMP/ninefold"

# With --tls: one certificate for the three proxies (ECDSA P-256: cheap handshakes).
NGINX_TLS=""; HAPROXY_TLS=""; LISTEN_SSL=""; SCHEME=http; IDLE_TLS=""
if [ "$TLS" = 1 ]; then
    mkdir -p "$TMP/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$TMP/tls/server.key" -out "$TMP/tls/server.pem" -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$TMP/tls/openssl.log" 2>&1 \
        || { cat "$TMP/tls/openssl.log" >&2; die "openssl could not make a certificate"; }
    cat "$TMP/tls/server.pem" "$TMP/tls/server.key" >"$TMP/tls/bundle.pem"
    LISTEN_SSL=" ssl"
    NGINX_TLS="ssl_certificate $TMP/tls/server.pem; ssl_certificate_key $TMP/tls/server.key;"
    HAPROXY_TLS=" ssl crt $TMP/tls/bundle.pem alpn http/1.1"
    SCHEME=https
    IDLE_TLS="--tls"
    export NINEFOLD_TLS_CERT="$TMP/tls/server.pem" NINEFOLD_TLS_KEY="$TMP/tls/server.key"
fi

# ----------------------------------------------------------------- configs --
nginx_http() { # prefix dir
    cat <<EOF
    access_log off;
    client_body_temp_path $1/client_body_temp;
    proxy_temp_path       $1/proxy_temp;
    fastcgi_temp_path     $1/fastcgi_temp;
    uwsgi_temp_path       $1/uwsgi_temp;
    scgi_temp_path        $1/scgi_temp;
    keepalive_requests 1000000;
    keepalive_timeout  65s;
    tcp_nodelay on;
    server_tokens off;
EOF
}
cat >"$TMP/backend/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/error.log warn;
events { worker_connections $WORKER_CONNS; }
http {
$(nginx_http "$TMP/backend")
    server {
        listen 127.0.0.1:$PORT_BACKEND backlog=4096;
        location / { return 200 "ok"; }
    }
}
EOF
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections $WORKER_CONNS; }
http {
$(nginx_http "$TMP/nginx")
    upstream backend {
        server 127.0.0.1:$PORT_BACKEND;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$PORT_NGINX backlog=4096$LISTEN_SSL;
        $NGINX_TLS
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $MAXCONN

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 30s
    timeout http-keep-alive 60s
    timeout http-request 10s
    option http-keep-alive
    http-reuse always

frontend fe
    bind 127.0.0.1:$PORT_HAPROXY backlog 4096$HAPROXY_TLS
    default_backend be

backend be
    server s1 127.0.0.1:$PORT_BACKEND
EOF

# ------------------------------------------------------------------- start --
# GET / on a port; prints the status code (000 when nothing answers). The backend is
# always plain; with --tls, the proxies are asked over TLS.
probe() {
    local r
    if [ "$SCHEME" = https ] && [ "$1" != "$PORT_BACKEND" ]; then
        curl -sk -o /dev/null -m 3 -w '%{http_code}' "https://127.0.0.1:$1/" 2>/dev/null || echo 000
        return
    fi
    r=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
        head -c 12 <&3' "$1" 2>/dev/null) || { echo 000; return; }
    echo "${r:9:3}"
}
wait_ready() { # name port pid errlog
    local i
    for i in $(seq 1 300); do
        is_ours "$3" || { tail -n 20 "$4" >&2; die "$1 exited during start-up"; }
        [ "$(probe "$2")" = 200 ] && return 0
        sleep 0.1
    done
    tail -n 20 "$4" >&2
    die "$1 did not answer 200 on 127.0.0.1:$2 within 30 s"
}

declare -A PID_OF=()
nginx -t -q -p "$TMP/backend/" -c "$TMP/backend/nginx.conf" >>"$TMP/backend/error.log" 2>&1 \
    || { cat "$TMP/backend/error.log" >&2; die "backend nginx config test failed"; }
taskset -c "$LOAD_CPU" nginx -p "$TMP/backend/" -c "$TMP/backend/nginx.conf" \
    >>"$TMP/backend/error.log" 2>&1 </dev/null &
track $!; PID_OF[backend]=$!
wait_ready backend $PORT_BACKEND "${PID_OF[backend]}" "$TMP/backend/error.log"

nginx -t -q -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" >>"$TMP/nginx/error.log" 2>&1 \
    || { cat "$TMP/nginx/error.log" >&2; die "proxy nginx config test failed"; }
taskset -c "$PROXY_CPU" nginx -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" \
    >>"$TMP/nginx/error.log" 2>&1 </dev/null &
track $!; PID_OF[nginx]=$!
wait_ready nginx $PORT_NGINX "${PID_OF[nginx]}" "$TMP/nginx/error.log"

haproxy -c -q -f "$TMP/haproxy/haproxy.cfg" >>"$TMP/haproxy/output.log" 2>&1 \
    || { cat "$TMP/haproxy/output.log" >&2; die "haproxy config check failed"; }
taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy/haproxy.cfg" \
    >>"$TMP/haproxy/output.log" 2>&1 </dev/null &
track $!; PID_OF[haproxy]=$!
wait_ready haproxy $PORT_HAPROXY "${PID_OF[haproxy]}" "$TMP/haproxy/output.log"

NINEFOLD_LISTEN="127.0.0.1:$PORT_NINEFOLD" NINEFOLD_UPSTREAM="127.0.0.1:$PORT_BACKEND" NINEFOLD_WORKERS=1 \
    taskset -c "$PROXY_CPU" "$BIN" serve -c "$CONFIG" >>"$TMP/ninefold/output.log" 2>&1 </dev/null &
track $!; PID_OF[ninefold]=$!
wait_ready ninefold $PORT_NINEFOLD "${PID_OF[ninefold]}" "$TMP/ninefold/output.log"

# The PIDs whose VmRSS counts: nginx's master and its worker(s); HAProxy and ninefold
# are one process each.
measured_pids() {
    case "$1" in
        nginx) echo "${PID_OF[nginx]} $(children "${PID_OF[nginx]}" | tr '\n' ' ')" ;;
        *)     echo "${PID_OF[$1]}" ;;
    esac
}
nofile_of() { awk '/^Max open files/ {print $4}' "/proc/$1/limits" 2>/dev/null; }

echo "== idle keep-alive connections: $N per proxy, one GET / each, ${SETTLE} s settle$([ "$TLS" = 1 ] && echo ', TLS (HTTP/1.1 by ALPN)')"
echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) CPUs ($(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo)); $(uname -sr)"
echo "nginx:    $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_connections $WORKER_CONNS; ulimit -n $FDLIM"
echo "haproxy:  $(haproxy -v 2>&1 | head -n1 | awk '{print $3}'), maxconn $MAXCONN"
echo "ninefold: $BIN ($(cd "$REPO_DIR" && git describe --always --dirty 2>/dev/null || echo 'no git')), config $CONFIG"
for t in nginx haproxy ninefold; do
    echo "$t pids: $(measured_pids $t)(open files limit $(nofile_of "${PID_OF[$t]}"))"
done
echo

declare -A BEFORE=() AFTER=() DELTA=() PER=() NOTE=()
for t in nginx haproxy ninefold; do
    port=$PORT_NGINX; [ $t = haproxy ] && port=$PORT_HAPROXY; [ $t = ninefold ] && port=$PORT_NINEFOLD
    is_ours "${PID_OF[$t]}" || die "$t is no longer running"
    # In the background and waited for, so that a signal to this script stops it at once.
    # shellcheck disable=SC2046
    taskset -c "$LOAD_CPU" python3 "$BENCH_DIR/idle-conns.py" "127.0.0.1:$port" $(measured_pids $t) \
        -n "$N" --settle "$SETTLE" $IDLE_TLS >"$TMP/$t.out" 2>&1 </dev/null &
    track $!
    wait $!
    rc=$?
    sed "s/^/  [$t] /" "$TMP/$t.out"
    [ $rc = 0 ] || die "idle-conns.py failed against $t"
    BEFORE[$t]=$(awk '/^VmRSS before:/ {print $3}' "$TMP/$t.out")
    AFTER[$t]=$(awk '/^VmRSS after:/ {print $3}' "$TMP/$t.out")
    DELTA[$t]=$(( AFTER[$t] - BEFORE[$t] ))
    PER[$t]=$(awk -v d="${DELTA[$t]}" -v n="$N" 'BEGIN { printf "%.0f", d * 1024 / n }')
    NOTE[$t]=$(sed -n 's/.*statuses \({[^}]*}\), \([0-9]*\) closed by the peer.*/statuses \1, \2 closed/p' "$TMP/$t.out")
    # Let the closed connections go before the next proxy's first reading.
    sleep 1
done

echo
printf '%-9s %12s %12s %11s %14s %9s  %s\n' proxy rss_before_kib rss_after_kib delta_kib bytes_per_conn vs_nginx client
for t in nginx haproxy ninefold; do
    ratio=$(awk -v a="${PER[$t]}" -v b="${PER[nginx]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "NA" }')
    printf '%-9s %12s %12s %11s %14s %9s  %s\n' "$t" "${BEFORE[$t]}" "${AFTER[$t]}" "${DELTA[$t]}" "${PER[$t]}" "$ratio" "${NOTE[$t]}"
done
echo "  bytes_per_conn = (VmRSS after - before) * 1024 / $N; vs_nginx = bytes_per_conn / nginx's"
echo "  nginx = master + worker; nginx preallocates its connection table ($WORKER_CONNS slots) before the"
echo "  first reading, so its delta is what a connection adds beyond that table"
