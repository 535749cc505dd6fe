"""Network helpers for lxm's integration tests: the host's links, routes and free subnets, managed
networks of a test's own, a daemon's nftables table, and what a container sees on its eth0.

Traffic goes only to loopback and to bridges the tests create: free_subnet picks a 10.X.Y.0/24
that overlaps no route and no address of the host."""

import ipaddress
import os
import random
import socket
import subprocess
import urllib.request
import uuid

import pytest

import lxmtest
from lxmtest import assert_async, sh, unique, wait_for


def ip(*args, check=True):
    """`ip ARGS`'s output; with check, a failure fails the test with ip's stderr."""
    p = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    assert p.returncode == 0 or not check, "ip %s: %s" % (" ".join(args), p.stderr)
    return p.stdout


def link_exists(name):
    return subprocess.run(["ip", "link", "show", "dev", name],
                          capture_output=True).returncode == 0


def host_links():
    """The host's link names (without the @peer part of veths)."""
    out = ip("-br", "link")
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


def host_networks():
    """The IPv4 networks of the host's routes (all tables) and addresses, the default route's
    0.0.0.0/0 left out."""
    taken = []
    for args in (("-4", "route", "show", "table", "all"), ("-4", "-o", "addr")):
        for line in ip(*args).splitlines():
            for word in line.split():
                try:
                    net = ipaddress.ip_network(word, strict=False)
                except ValueError:
                    continue
                if net.prefixlen > 0:
                    taken.append(net)
    return taken


def free_subnet():
    """A 10.X.Y.0/24 that overlaps no route and no address of the host."""
    taken = host_networks()
    rng = random.Random()
    for _ in range(200):
        net = ipaddress.ip_network("10.%d.%d.0/24" % (rng.randint(100, 250), rng.randint(1, 250)))
        if not any(net.overlaps(t) for t in taken):
            return net
    pytest.skip("no free 10.x.y.0/24 on this host")


def free_link_name(prefix="lxmt"):
    """prefix + 8 hex digits, naming no link of the host."""
    name = prefix + uuid.uuid4().hex[:8]
    while link_exists(name):
        name = prefix + uuid.uuid4().hex[:8]
    return name


def create_network(d, prefix, *config):
    """A managed network of d with a free 10.X.Y.1/24 and config (key=value words) on a bridge
    named prefix + 8 hex digits: (name, subnet, gateway address)."""
    name = free_link_name(prefix)
    net = free_subnet()
    gw = str(net.network_address + 1)
    d.cli("network", "create", name, "ipv4.address=%s/24" % gw, *config)
    return name, net, gw


def delete_network(d, name):
    """Deletes d's network name (while d runs) and checks that its bridge is gone."""
    if d.proc is not None:
        d.cli("network", "delete", name, check=False)
    assert not link_exists(name)


@pytest.fixture
def daemon(lxmd_factory):
    """A private lxmd of the test's own, started; its nftables table is gone at teardown (a test
    module takes it with `daemon = nettest.daemon`)."""
    d = lxmd_factory()
    d.start()
    yield d
    assert lxmtest.nft_table_name(d.root) not in subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True).stdout


def free_port():
    """A TCP port nothing on the host listens on (the DNAT takes it over anyway)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nft_table(d):
    """d's nftables table (lxmtest.nft_table_name), listed, or "" when it does not exist."""
    p = subprocess.run(["nft", "list", "table", "inet", lxmtest.nft_table_name(d.root)],
                       capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else ""


def fetch(url):
    """The body at url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode()
    except OSError:
        return None


def dnsmasq_pid(d, net):
    """The pid of the dnsmasq d runs for its network net, or None."""
    try:
        with open(os.path.join(d.root, "networks", net, "dnsmasq.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if not argv[0].endswith(b"dnsmasq") or ("--interface=%s" % net).encode() not in argv:
        return None
    return pid


def eth0_ipv4(d, name):
    """The IPv4 address on eth0 inside name, or None."""
    out = sh(d, name, "ip -4 -o addr show dev eth0", check=False).stdout
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            return words[words.index("inet") + 1].split("/")[0]
    return None


def ping(d, name, target):
    """`ping` of target inside name (tried twice: the first ARP may race the other side coming
    up)."""
    p = sh(d, name, "ping -c 1 -W 2 %s" % target, check=False)
    if p.returncode != 0:
        p = sh(d, name, "ping -c 2 -W 2 %s" % target, check=False)
    return p


def two_on_network(d, made, network):
    """Two busybox containers with a nic on network, started, with their leases: (names,
    {name: address})."""
    net, subnet = network["name"], network["net"]
    names = [unique("c"), unique("c")]
    for c in names:
        made.append(c)
        d.cli("init", "busybox", c, timeout=120)
        r = d.api("PATCH", "/1.0/instances/" + c,
                  {"devices": {"eth0": {"type": "nic", "network": net}}})
        done = d.wait_op(assert_async(r)["id"])
        assert done["status"] == "Success", done
    for c in names:
        d.cli("start", c, timeout=60)
    addrs = {}
    for c in names:
        wait_for(lambda: eth0_ipv4(d, c) is not None, 30, "a DHCP lease on eth0 of " + c)
        addrs[c] = eth0_ipv4(d, c)
        assert ipaddress.ip_address(addrs[c]) in subnet, addrs
    return names, addrs
