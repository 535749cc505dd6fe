#!/usr/bin/env python3
"""lxmd's HTTPS listener under load: RSS before, during and after N concurrent connections from
one address (most refused by the per-address cap), S slowloris clients, a client flooding
requests past its rate, and one pipelining requests without reading the answers; meanwhile the
latency of a trusted GET /1.0 from another address (127.0.0.2). Loopback only.

    sudo LXM_BUILD_DIR=build python3 tests/bench/bench-https-load.py [--conns 300] [--slow 30]
"""
import argparse
import http.client
import json
import os
import ssl
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import REPO, Daemon, UnixConnection, proc_status_kib  # noqa: E402

MIB = 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def context(crt=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if crt:
        ctx.load_cert_chain(crt, key)
    return ctx


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))]


def latencies(port, ctx, n, source="127.0.0.2"):
    """n trusted GET /1.0, each on a fresh connection (as a new lxc command would), in ms."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30,
                                        source_address=(source, 0))
        c.request("GET", "/1.0")
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 200, r.status
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("LXM_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--conns", type=int, default=300, help="concurrent connections at once")
    ap.add_argument("--slow", type=int, default=30, help="slowloris clients")
    ap.add_argument("--flood", type=float, default=5.0, help="seconds of request flood")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="lxm-bench-https-")
    crt, key = os.path.join(tmp, "c.crt"), os.path.join(tmp, "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-days", "2",
                    "-subj", "/CN=bench"], check=True, capture_output=True)
    with open(crt) as f:
        pem = f.read()
    d = Daemon(args.build, storage=None)
    stop = threading.Event()
    held, threads = [], []
    try:
        port = free_port()
        d.run("config", "set", "core.https_address", "127.0.0.1:%d" % port)
        u = UnixConnection(os.path.join(d.root, "unix.socket"))
        u.request("POST", "/1.0/certificates", body=json.dumps(
            {"certificate": pem, "name": "bench", "type": "client"}),
            headers={"Content-Type": "application/json"})
        r = u.getresponse()
        r.read()
        u.close()
        assert r.status == 200, r.status
        trusted = context(crt, key)
        anon = context()

        latencies(port, trusted, 5)
        base = latencies(port, trusted, 50)
        rss0 = proc_status_kib(d.pid, "VmRSS")
        print(f"lxmd RSS before: {rss0 / MIB:.1f} MiB")
        print(f"trusted GET /1.0 (new connection) idle: median {statistics.median(base):.2f} ms, "
              f"p99 {pct(base, 0.99):.2f} ms")

        # N connections at once from 127.0.0.1, each completing its handshake if let in.
        lock = threading.Lock()
        refused = [0]

        def connect():
            try:
                s = anon.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
                with lock:
                    held.append(s)
            except (OSError, ssl.SSLError):
                with lock:
                    refused[0] += 1

        t0 = time.perf_counter()
        ts = [threading.Thread(target=connect) for _ in range(args.conns)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(f"{args.conns} connections at once: {len(held)} held, {refused[0]} refused "
              f"({(time.perf_counter() - t0) * 1e3:.0f} ms)")

        # Slowloris from 127.0.0.3: a header byte a second each (the cap holds 32 of them).
        def loris():
            try:
                s = anon.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30,
                                                              source_address=("127.0.0.3", 0)))
            except (OSError, ssl.SSLError):
                return
            with lock:
                held.append(s)
            for b in b"GET /1.0 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                if stop.wait(1):
                    return
                try:
                    s.sendall(bytes([b]))
                except (OSError, ssl.SSLError):
                    return

        # A request flood from 127.0.0.4 (past its rate: 429s) and a client from 127.0.0.5
        # that pipelines requests and never reads.
        counts = {"200": 0, "429": 0}

        def flood():
            c = http.client.HTTPSConnection("127.0.0.1", port, context=trusted, timeout=30,
                                            source_address=("127.0.0.4", 0))
            end = time.monotonic() + args.flood
            while time.monotonic() < end and not stop.is_set():
                c.request("GET", "/1.0/instances")
                r = c.getresponse()
                r.read()
                counts[str(r.status)] = counts.get(str(r.status), 0) + 1
            c.close()

        def non_reader():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.bind(("127.0.0.5", 0))
            s.connect(("127.0.0.1", port))
            s = trusted.wrap_socket(s)
            with lock:
                held.append(s)
            try:
                s.sendall(b"GET /1.0 HTTP/1.1\r\nHost: x\r\n\r\n" * 20000)
            except (OSError, ssl.SSLError):
                pass

        for fn, n in ((loris, args.slow), (flood, 1), (non_reader, 1)):
            for _ in range(n):
                t = threading.Thread(target=fn, daemon=True)
                t.start()
                threads.append(t)
        time.sleep(1)
        during = latencies(port, trusted, 50)
        rss1 = proc_status_kib(d.pid, "VmRSS")
        print(f"lxmd RSS during: {rss1 / MIB:.1f} MiB")
        print(f"trusted GET /1.0 (new connection) during: median {statistics.median(during):.2f} "
              f"ms, p99 {pct(during, 0.99):.2f} ms")
        time.sleep(max(0.0, args.flood - 1))
        print(f"flood from 127.0.0.4 over {args.flood:.0f} s: {counts.get('200', 0)} served, "
              f"{counts.get('429', 0)} refused with 429")
    finally:
        stop.set()
        for s in held:
            s.close()
        for t in threads:
            t.join(10)
    try:
        time.sleep(1)
        after = latencies(port, trusted, 50)
        rss2 = proc_status_kib(d.pid, "VmRSS")
        print(f"lxmd RSS after: {rss2 / MIB:.1f} MiB")
        print(f"trusted GET /1.0 (new connection) after: median {statistics.median(after):.2f} ms")
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
