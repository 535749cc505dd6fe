#!/usr/bin/python3
"""API benchmark: starts a private lxmd on a temporary root and prints latency and memory figures.

Usage: tests/bench/bench-api.py [--build DIR] [--requests N] [--instances N]
Figures: GET /1.0 round trip on a keep-alive connection, the same with a new connection each time
(as `lxc` does), `lxm list` wall time, create+delete of an empty instance through the operation
API, and the daemon's RSS idle and with N instances recorded.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def request(conn, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"null")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("LXM_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--instances", type=int, default=100)
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="lxm-bench-")
    sock = os.path.join(root, "unix.socket")
    daemon = subprocess.Popen([os.path.join(args.build, "lxmd/lxmd"), "--root", root,
                               "--foreground", "--log-level", "warn"],
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        conn = UnixConnection(sock)
        request(conn, "GET", "/1.0")
        print(f"lxmd RSS idle: {rss_kib(daemon.pid)} KiB")

        lat = []
        for _ in range(args.requests):
            t = time.perf_counter()
            status, _ = request(conn, "GET", "/1.0")
            lat.append((time.perf_counter() - t) * 1e6)
            assert status == 200
        print(f"GET /1.0 keep-alive, {args.requests} requests: median {statistics.median(lat):.0f} us, "
              f"p99 {pct(lat, 0.99):.0f} us")

        lat = []
        for _ in range(args.requests // 4):
            t = time.perf_counter()
            c = UnixConnection(sock)
            status, _ = request(c, "GET", "/1.0")
            c.close()
            lat.append((time.perf_counter() - t) * 1e6)
        print(f"GET /1.0 new connection each, {len(lat)} requests: median {statistics.median(lat):.0f} us")

        lat = []
        for i in range(args.instances):
            t = time.perf_counter()
            status, r = request(conn, "POST", "/1.0/instances",
                                {"name": f"bench{i}", "source": {"type": "none"}})
            assert status == 202, r
            status, r = request(conn, "GET", r["operation"] + "/wait?timeout=30")
            assert r["metadata"]["status"] == "Success", r
            lat.append((time.perf_counter() - t) * 1e3)
        print(f"create empty instance + wait, {args.instances}: median {statistics.median(lat):.2f} ms, "
              f"p99 {pct(lat, 0.99):.2f} ms")
        print(f"lxmd RSS with {args.instances} instances: {rss_kib(daemon.pid)} KiB")

        env = dict(os.environ, LXM_DIR=root)
        lat = []
        for _ in range(20):
            t = time.perf_counter()
            subprocess.run([os.path.join(args.build, "lxm/lxm"), "list"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            lat.append((time.perf_counter() - t) * 1e3)
        print(f"lxm list with {args.instances} instances: median {statistics.median(lat):.1f} ms")

        lat = []
        for i in range(args.instances):
            t = time.perf_counter()
            status, r = request(conn, "DELETE", f"/1.0/instances/bench{i}")
            assert status == 202, r
            status, r = request(conn, "GET", r["operation"] + "/wait?timeout=30")
            assert r["metadata"]["status"] == "Success", r
            lat.append((time.perf_counter() - t) * 1e3)
        print(f"delete instance + wait, {args.instances}: median {statistics.median(lat):.2f} ms")
        conn.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)
    if rc != 0:
        print(f"lxmd exited with {rc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
