#!/usr/bin/env python3
"""idle-conns.py - memory cost of idle keep-alive client connections in a proxy.

Starts nothing itself. Given the address of a running proxy and the PID(s) of its
process(es), it reads their VmRSS (from /proc/PID/status), opens N keep-alive client
connections (default 5000), sends one `GET / HTTP/1.1` on each and reads the whole
response, keeps every connection open, waits a moment, reads VmRSS again, checks how
many connections the proxy closed meanwhile, prints the figures and closes.

    python3 bench/idle-conns.py 127.0.0.1:18083 PID [PID ...] [-n 5000] [--path /] [--tls]

Several PIDs are summed (e.g. an nginx worker and its master). The proxy itself needs
a file-descriptor limit above N (start it from a shell after `ulimit -n 65536`);
this script raises its own RLIMIT_NOFILE. With --tls, each connection is TLS (ALPN
http/1.1, the certificate not verified: the point is the proxy's memory, not its
identity). Python 3 standard library only.
"""

import argparse
import resource
import select
import socket
import ssl
import sys
import time


def rss_kib(pid):
    """VmRSS of a process in KiB (from /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def total_rss(pids):
    return sum(rss_kib(p) for p in pids)


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        try:  # works as root
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            need = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


def read_response(sock, buf=b""):
    """Read one HTTP/1.1 response (Content-Length or chunked). Returns (status, leftover)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            while b"\r\n" not in rest:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed inside a chunked body")
                rest += chunk
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed inside a chunk")
                rest += chunk
            rest = rest[size + 2:]
            if size == 0:  # (no trailers expected)
                return status, rest
    length = int(headers.get(b"content-length", b"0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        rest += chunk
    if headers.get(b"connection", b"").lower() == b"close":
        raise ConnectionError("server answered Connection: close (no keep-alive)")
    return status, rest[length:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("addr", help="proxy address host:port, e.g. 127.0.0.1:18083")
    ap.add_argument("pids", nargs="+", type=int, help="PID(s) whose VmRSS is summed")
    ap.add_argument("-n", "--connections", type=int, default=5000)
    ap.add_argument("--path", default="/")
    ap.add_argument("--tls", action="store_true",
                    help="speak TLS (ALPN http/1.1, certificate not verified)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds to wait with all connections open before measuring (default 2)")
    args = ap.parse_args()

    host, _, port = args.addr.rpartition(":")
    port = int(port)
    n = args.connections
    limit = raise_nofile(n + 64)
    if limit < n + 16:
        sys.exit(f"idle-conns: RLIMIT_NOFILE is {limit}, need about {n + 16}")

    req = (f"GET {args.path} HTTP/1.1\r\nHost: {args.addr}\r\n"
           f"User-Agent: idle-conns.py\r\n\r\n").encode()

    tls = None
    if args.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        tls.set_alpn_protocols(["http/1.1"])

    for p in args.pids:
        rss_kib(p)  # fail early on a wrong pid
    before = {p: rss_kib(p) for p in args.pids}
    before_total = sum(before.values())

    socks = []
    statuses = {}
    t0 = time.monotonic()
    try:
        for i in range(n):
            s = socket.create_connection((host, port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                s = tls.wrap_socket(s, server_hostname=host)
            s.sendall(req)
            status, _ = read_response(s)
            statuses[status] = statuses.get(status, 0) + 1
            socks.append(s)
    except (OSError, ConnectionError, ValueError, IndexError) as e:
        print(f"idle-conns: connection {len(socks) + 1} failed: {e!r}", file=sys.stderr)
        for s in socks:
            s.close()
        sys.exit(1)
    t_open = time.monotonic() - t0

    time.sleep(args.settle)
    after = {p: rss_kib(p) for p in args.pids}
    after_total = sum(after.values())

    # Did the proxy close any of them meanwhile? (readable == EOF or stray data)
    poller = select.poll()
    by_fd = {}
    for s in socks:
        poller.register(s.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        by_fd[s.fileno()] = s
    closed = len(poller.poll(0))

    print(f"proxy {args.addr}{' (TLS)' if tls else ''}, pid(s) {' '.join(map(str, args.pids))}")
    print(f"connections: {n} opened in {t_open:.2f} s, one GET {args.path} each, "
          f"statuses {dict(sorted(statuses.items()))}, {closed} closed by the peer after {args.settle:g} s")
    for p in args.pids:
        print(f"  pid {p}: VmRSS {before[p]} KiB -> {after[p]} KiB")
    delta = after_total - before_total
    print(f"VmRSS before: {before_total} KiB ({before_total / 1024:.1f} MiB)")
    print(f"VmRSS after:  {after_total} KiB ({after_total / 1024:.1f} MiB)")
    print(f"delta:        {delta} KiB ({delta / 1024:.1f} MiB), {delta * 1024 / n:.0f} bytes per idle connection")

    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
