# compare-lib.sh - what the side-by-side harnesses that start their own nginx,
# HAProxy and ninefold share (sourced by h2-compare.sh and tls-handshakes.sh; not run
# on its own): a private temp dir and every started process stopped by PID on exit,
# a port check, the backend nginx, HAProxy's common head, and a process's CPU ticks.
# The caller defines die() first.

# bench_tmp NAME: makes $TMP, tracks the PIDs appended to PIDS, and stops them and
# removes $TMP on exit (also on SIGINT and SIGTERM).
bench_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || die "mktemp failed"
    chmod 0755 "$TMP"
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf -- "$TMP"
}

# port_in_use PORT: whether something accepts on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# temp_paths DIR: nginx's temp paths inside DIR (it runs unprivileged elsewhere).
temp_paths() {
    echo "client_body_temp_path $1/t1; proxy_temp_path $1/t2; fastcgi_temp_path $1/t3; uwsgi_temp_path $1/t4; scgi_temp_path $1/t5;"
}

# start_backend PORT CPU: the backend nginx (every path answers "ok"), pinned to CPU.
start_backend() {
    mkdir -p "$TMP/backend"
    cat >"$TMP/backend/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $TMP/backend/nginx.pid; error_log $TMP/backend/error.log warn;
events { worker_connections 4096; }
http {
    access_log off; keepalive_requests 1000000; $(temp_paths "$TMP/backend")
    server { listen 127.0.0.1:$1; location / { return 200 "ok"; } }
}
CONF
    taskset -c "$2" nginx -c "$TMP/backend/nginx.conf" -p "$TMP/backend" >/dev/null 2>&1 &
    PIDS+=($!)
}

# haproxy_head: HAProxy's global and defaults sections of these harnesses (one thread,
# HTTP mode, upstream connections reused).
haproxy_head() {
    cat <<CONF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
CONF
}

# tree_ticks PID: utime+stime of PID and its children (one level is enough here).
tree_ticks() {
    local sum=0 p s
    for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        s=$(cat /proc/"$p"/stat 2>/dev/null) || continue
        s=${s##*) }
        set -- $s
        sum=$(( sum + ${12} + ${13} ))
    done
    echo "$sum"
}
