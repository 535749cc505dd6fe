#!/usr/bin/python3
"""Managed network benchmark: a private lxmd on a temporary root with a managed bridge on a free
10.X.Y.0/24 (no NAT; no traffic leaves the bridge). Prints

(a) the start latency (`lxm start` return, which is after the nics are in place) of a busybox
    container without a nic and of one with a nic on the network, medians over --runs starts of
    each (stopped with --force in between), and the difference, against issue 6's target: nic set-up
    adds <= 5 ms to a start;
(b) --count busybox containers with a nic on the one bridge: the time per start, the time until
    every one has a DHCP lease (`lxm list` shows an IPv4 address), lxmd's RSS with all running, the
    time per stop; then, with strace following lxmd, the same starts, stops and the deletes again,
    and the programs lxmd ran, counted by name: one lxm-monitor per start is expected, a
    per-container ip, nft, tc (or any other helper) is not (nics, NAT and rate limits are netlink
    and libnftables calls). Programs run under the monitors (the containers' init and rcS) are
    counted apart.

Everything (containers, profile, network, bridge, nft table, daemon) is removed at the end, also
when a step fails.

Usage: tests/bench/bench-network.py [--build DIR] [--runs N] [--count N] [--lease-timeout S]
                                    [--storage dir|btrfs|overlay] [--keep-trace FILE]
"""
import argparse
import collections
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import REPO, Daemon, proc_status_kib  # noqa: E402

TARGET_MS = 5.0
# Programs that would mean lxmd shells out for per-container network set-up.
NET_TOOLS = {"ip", "nft", "tc", "iptables", "ip6tables", "brctl", "bridge", "sysctl", "ethtool",
             "dnsmasq"}


def free_subnet():
    """A 10.X.Y.0/24 that overlaps no route and no address of the host."""
    taken = []
    for args in (("-4", "route", "show", "table", "all"), ("-4", "-o", "addr")):
        out = subprocess.run(["ip"] + list(args), capture_output=True, text=True,
                             check=True).stdout
        for word in out.split():
            try:
                taken.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
    rng = random.Random()
    for _ in range(500):
        net = ipaddress.ip_network("10.%d.%d.0/24" % (rng.randint(100, 250), rng.randint(1, 250)))
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise RuntimeError("no free 10.x.y.0/24 on this host")


def link_exists(name):
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


def nft_table_name(root):
    """lxmd's nftables table for root (as lxmtest.nft_table_name)."""
    import hashlib
    root = root.rstrip("/")
    if root == "/var/lib/lxm":
        return "lxm"
    return "lxm_" + hashlib.sha256(root.encode()).hexdigest()[:8]


def ms(xs):
    return statistics.median(xs) * 1000


def ipv4_of(d, names):
    """{name: first IPv4 address} of the instances `lxm list` shows with one."""
    out = d.run("list", "--format", "json").stdout
    got = {}
    for inst in json.loads(out):
        if inst["name"] not in names:
            continue
        nets = ((inst.get("state") or {}).get("network") or {})
        for dev, info in nets.items():
            if dev == "lo":
                continue
            for a in info.get("addresses", []):
                if a.get("family") == "inet":
                    got[inst["name"]] = a["address"]
    return got


def wait_leases(d, names, subnet, timeout):
    """Seconds until every name in names has an IPv4 address in subnet (per `lxm list`)."""
    t0 = time.perf_counter()
    while True:
        got = ipv4_of(d, set(names))
        inside = {n for n, a in got.items() if ipaddress.ip_address(a) in subnet}
        if len(inside) == len(names):
            return time.perf_counter() - t0, got
        if time.perf_counter() - t0 > timeout:
            missing = sorted(set(names) - inside)
            raise RuntimeError("%d of %d containers have no DHCP lease after %d s: %s" % (
                len(missing), len(names), timeout, " ".join(missing[:10])))
        time.sleep(0.2)


class ExecTrace:
    """strace -f on lxmd: execve, and the clones that tell which process ran what."""

    def __init__(self, pid, path):
        self.pid, self.path = pid, path
        self.proc = subprocess.Popen(["strace", "-f", "-qq", "-o", path, "-s", "256",
                                      "-e", "trace=execve,clone,clone3,fork,vfork",
                                      "-e", "signal=none", "-p", str(pid)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        # strace writes nothing when attached: wait until it is lxmd's tracer.
        for _ in range(500):
            if self.proc.poll() is not None:
                raise RuntimeError("strace exited: " + self.proc.stderr.read().decode())
            if proc_status_kib(pid, "TracerPid") == self.proc.pid:
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("strace did not attach to lxmd %d within 5 s" % pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def programs(self):
        """(Counter of the programs lxmd's own children ran, Counter of those run further down:
        by the monitors and in the containers). Everything lxmd runs is a child it forks (a
        shell or helper of its own would show here by name); clones inside a container's pid
        namespace return that namespace's pids, so deeper parentage is not followed."""
        threads = {self.pid} | {int(t) for t in os.listdir("/proc/%d/task" % self.pid)}
        children = set()
        pending = {}
        own, other = collections.Counter(), collections.Counter()
        execs = []
        clone_re = re.compile(r"^(\d+)\s+(clone3?|v?fork)\(.*=\s+(\d+)$")
        exec_re = re.compile(r'^(\d+)\s+execve\("([^"]*)", \["([^"]*)".*=\s+0$')
        with open(self.path) as f:
            for line in f:
                line = line.rstrip("\n")
                m = re.match(r"^(\d+)\s+(.*) <unfinished \.\.\.>$", line)
                if m:
                    pending[m.group(1)] = m.group(2)
                    continue
                m = re.match(r"^(\d+)\s+<\.\.\. \w+ resumed>(.*)$", line)
                if m and m.group(1) in pending:
                    line = "%s %s%s" % (m.group(1), pending.pop(m.group(1)), m.group(2))
                m = clone_re.match(line)
                if m and int(m.group(1)) in threads:
                    if "CLONE_THREAD" in line:
                        threads.add(int(m.group(3)))
                    else:
                        children.add(int(m.group(3)))
                    continue
                m = exec_re.match(line)
                if m:
                    # Busybox applets run as /proc/self/exe: name them by their argv[0].
                    prog = os.path.basename(m.group(3) if m.group(2) == "/proc/self/exe"
                                            else m.group(2))
                    execs.append((int(m.group(1)), prog))
        # A child may exec before strace prints its parent's clone return: sort them out last.
        for pid, prog in execs:
            (own if pid in children else other)[prog] += 1
        return own, other


def start_latency(d, net, runs):
    d.names += ["lat-nonic", "lat-nic"]
    d.run("init", "busybox", "lat-nonic", timeout=300)
    d.run("init", "busybox", "lat-nic", "-p", "default", "-p", net)
    nonic, nic = [], []
    for i in range(runs + 1):
        for name, xs in (("lat-nonic", nonic), ("lat-nic", nic)):
            t = d.timed("start", name)
            if i:  # the first start of each warms caches: not counted
                xs.append(t)
            d.run("stop", "--force", name)
    print(f"(a) start latency, {runs} starts each (lxm start return; the nic is in place):")
    print(f"    busybox without a nic: median {ms(nonic):.1f} ms (min {min(nonic) * 1000:.1f})")
    print(f"    busybox with a nic on managed network {net}: median {ms(nic):.1f} ms "
          f"(min {min(nic) * 1000:.1f})")
    # Starts alternate, so pairs see the same load: the median of the pairs' differences.
    diff = statistics.median(b - a for a, b in zip(nonic, nic)) * 1000
    print(f"    nic set-up adds {diff:.1f} ms (median of the {runs} paired differences; "
          f"difference of the medians {ms(nic) - ms(nonic):.1f} ms; target <= {TARGET_MS:.0f} "
          f"ms: {'met' if diff <= TARGET_MS else 'NOT met'})")
    for n in ("lat-nonic", "lat-nic"):
        d.run("delete", "-f", n)
        d.names.remove(n)


def many(d, net, subnet, count, lease_timeout, trace_path):
    names = ["m%03d" % i for i in range(count)]
    t0 = time.perf_counter()
    for n in names:
        d.names.append(n)
        d.run("init", "busybox", n, "-p", "default", "-p", net)
    print(f"(b) {count} busybox containers with a nic on {net} ({subnet}):")
    print(f"    create: {(time.perf_counter() - t0) / count * 1000:.1f} ms per container")
    starts = [d.timed("start", n) for n in names]
    tenth = max(1, count // 10)
    print(f"    first start of each, one after the other: median {ms(starts):.1f} ms, max "
          f"{max(starts) * 1000:.1f} ms, total {sum(starts):.1f} s; median of the first "
          f"{tenth} {ms(starts[:tenth]):.1f} ms, of the last {tenth} {ms(starts[-tenth:]):.1f} ms")
    took, got = wait_leases(d, names, subnet, lease_timeout)
    print(f"    all {count} have a DHCP lease in {subnet} (lxm list shows the IPv4) "
          f"{took:.1f} s after the last start returned (bound {lease_timeout} s); "
          f"{len(set(got.values()))} distinct addresses")
    print(f"    lxmd RSS with {count} running containers: "
          f"{proc_status_kib(d.pid, 'VmRSS')} KiB")
    stops = [d.timed("stop", "--force", n) for n in names]
    print(f"    stop --force: median {ms(stops):.1f} ms")

    # Again under strace: which programs lxmd runs for a start, a stop and a delete.
    tr = ExecTrace(d.pid, trace_path)
    try:
        t0 = time.perf_counter()
        for n in names:
            d.run("start", n)
        wait_leases(d, names, subnet, lease_timeout)
        for n in names:
            d.run("stop", "--force", n)
        for n in names:
            d.run("delete", n)
            d.names.remove(n)
        traced = time.perf_counter() - t0
    finally:
        tr.stop()
    own, monitor = tr.programs()
    print(f"    traced run (strace -f on lxmd): {count} starts, leases, stops and deletes in "
          f"{traced:.1f} s")
    print("    programs lxmd ran: " +
          (", ".join(f"{p} x{c}" for p, c in own.most_common()) or "none"))
    print("    run further down (by the monitors, in the containers): " +
          (", ".join(f"{p} x{c}" for p, c in monitor.most_common()) or "none"))
    net_tools = sorted(p for p in own if p in NET_TOOLS)
    print("    ip/nft/tc-like programs lxmd ran: " + (", ".join(net_tools) or "none"))
    bad = {p: c for p, c in own.items() if p != "lxm-monitor"}
    if own.get("lxm-monitor", 0) < count:
        raise RuntimeError("expected at least %d lxm-monitor execs, saw %d: the trace missed "
                           "lxmd's children" % (count, own.get("lxm-monitor", 0)))
    if bad:
        print(f"    NOT met: lxmd ran other programs than lxm-monitor: {bad}")
        return False
    print("    met: no per-container ip/nft/tc (or other) subprocess, only lxm-monitor")
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("LXM_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--lease-timeout", type=int, default=60)
    ap.add_argument("--storage", default="btrfs", choices=("dir", "btrfs", "overlay"))
    ap.add_argument("--keep-trace", metavar="FILE", help="keep strace's output in FILE")
    args = ap.parse_args()
    if not shutil.which("strace"):
        sys.exit("bench-network: strace is not installed (scripts/install-deps installs it)")
    net = "lxmb" + uuid.uuid4().hex[:8]
    while link_exists(net):
        net = "lxmb" + uuid.uuid4().hex[:8]
    subnet = free_subnet()
    d = Daemon(args.build, args.storage)
    table = nft_table_name(d.root)
    ok = False
    try:
        print(f"storage pool: {args.storage}; network {net}: {subnet}, no NAT")
        d.run("network", "create", net, "ipv4.address=%s/24" % (subnet.network_address + 1),
              "ipv4.nat=false", "ipv6.address=none")
        # A profile with just the nic: `-p default -p NET` adds it to the root disk.
        d.run("profile", "create", net)
        p = subprocess.run([d.lxm, "profile", "edit", net], env=d.env, text=True,
                           capture_output=True, input=json.dumps({
                               "config": {}, "description": "",
                               "devices": {"eth0": {"type": "nic", "network": net,
                                                    "name": "eth0"}}}))
        if p.returncode != 0 or "eth0" not in d.get("/1.0/profiles/" + net)["devices"]:
            raise RuntimeError("profile edit %s: %s" % (net, p.stderr))
        # The first launch builds the busybox image: not timed.
        start_latency(d, net, args.runs)
        trace = os.path.join(d.root, "execve.trace")
        try:
            ok = many(d, net, subnet, args.count, args.lease_timeout, trace)
        finally:
            if args.keep_trace and os.path.exists(trace):
                shutil.copy(trace, args.keep_trace)
    finally:
        for n in list(d.names):
            d.run("delete", "-f", n, check=False)
        d.names = []
        d.run("profile", "delete", net, check=False)
        d.run("network", "delete", net, check=False)
        d.stop()
        left = []
        if link_exists(net):
            left.append("bridge " + net)
            subprocess.run(["ip", "link", "del", net], check=False)
        if subprocess.run(["nft", "list", "table", "inet", table],
                          capture_output=True).returncode == 0:
            left.append("nft table inet " + table)
            subprocess.run(["nft", "delete", "table", "inet", table], check=False)
        if left:
            print("cleanup: removed what lxmd left: " + ", ".join(left))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
