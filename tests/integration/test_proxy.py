"""Proxy devices in NAT mode as a user sees them: a busybox container with a nic on a managed
network the test creates (static ipv4.address) and a proxy device listen=tcp:0.0.0.0:PORT
connect=tcp:<its address>:80 answers the host's connections to 127.0.0.1:PORT with what its web
server serves; the DNAT rule is in lxmd's nftables table only while the container runs, moves
when the device changes on the running container, and bad proxy keys are refused naming the
device and the key.

Traffic goes only over loopback and the bridge this test creates (a 10.X.Y.0/24 that collides
with no route or address of the host); the container, the network and lxmd's nftables table are
gone at the end even when a step fails."""

import ipaddress
import os
import random
import socket
import subprocess
import urllib.request
import uuid

import pytest

import lxmtest
from lxmtest import assert_async, unique, wait_for

BUSYBOX = "/bin/busybox"

pytestmark = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                                reason="busybox-static is not installed")


def ip(*args):
    p = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    assert p.returncode == 0, "ip %s: %s" % (" ".join(args), p.stderr)
    return p.stdout


def link_exists(name):
    return subprocess.run(["ip", "link", "show", "dev", name],
                          capture_output=True).returncode == 0


def free_subnet():
    """A 10.X.Y.0/24 that overlaps no route and no address of the host."""
    taken = []
    for args in (("-4", "route", "show", "table", "all"), ("-4", "-o", "addr")):
        for line in ip(*args).splitlines():
            for word in line.split():
                try:
                    taken.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    pass
    rng = random.Random()
    for _ in range(200):
        net = ipaddress.ip_network("10.%d.%d.0/24" % (rng.randint(100, 250), rng.randint(1, 250)))
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    pytest.skip("no free 10.x.y.0/24 on this host")


def free_port():
    """A TCP port nothing on the host listens on (the DNAT takes it over anyway)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nft_table(d):
    """d's nftables table, listed, or "" when it does not exist."""
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


def patch(d, name, body):
    r = d.api("PATCH", "/1.0/instances/" + name, body)
    if r.status != 202:
        return r
    return d.wait_op(assert_async(r)["id"])


def sh(d, name, script, check=True):
    return d.cli("exec", name, "--", "sh", "-c", script, check=check)


@pytest.fixture
def daemon(lxmd_factory):
    d = lxmd_factory()
    d.start()
    yield d
    assert lxmtest.nft_table_name(d.root) not in subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True).stdout


@pytest.fixture
def network(daemon):
    """A managed network of this test's own; deleted (with its bridge) at teardown."""
    name = "lxmt" + uuid.uuid4().hex[:8]
    while link_exists(name):
        name = "lxmt" + uuid.uuid4().hex[:8]
    net = free_subnet()
    gw = str(net.network_address + 1)
    daemon.cli("network", "create", name, "ipv4.address=%s/24" % gw, "ipv4.nat=false",
               "ipv6.address=none")
    yield {"name": name, "gw": gw, "c": str(net.network_address + 10)}
    daemon.cli("network", "delete", name, check=False)
    assert not link_exists(name)


@pytest.fixture
def made(daemon):
    names = []
    yield names
    for n in names:
        daemon.cli("delete", "-f", n, check=False)


def proxy(port, addr, **kw):
    dev = {"type": "proxy", "listen": "tcp:0.0.0.0:%d" % port,
           "connect": "tcp:%s:80" % addr, "nat": "true"}
    dev.update(kw)
    return dev


def test_proxy_nat_forwards_host_connections(daemon, network, made):
    d = daemon
    c = unique("c")
    made.append(c)
    port = free_port()
    d.cli("init", "busybox", c, timeout=120)
    done = patch(d, c, {"devices": {
        "eth0": {"type": "nic", "network": network["name"], "ipv4.address": network["c"]},
        "web": proxy(port, network["c"])}})
    assert done["status"] == "Success", done
    assert "dport %d" % port not in nft_table(d)

    d.cli("start", c, timeout=60)
    rules = nft_table(d)
    assert "dport %d dnat ip to %s:80" % (port, network["c"]) in rules, rules
    # The address: from its static DHCP lease, else set by hand (the lease may be slow).
    try:
        wait_for(lambda: network["c"] in sh(d, c, "ip -4 -o addr show dev eth0",
                                           check=False).stdout, timeout=15)
    except AssertionError:
        sh(d, c, "ip link set eth0 up && ip addr add %s/24 dev eth0" % network["c"])
    sh(d, c, "mkdir -p /srv && echo hello-proxy > /srv/index.html && "
             "busybox httpd -p 80 -h /srv")
    url = "http://127.0.0.1:%d/index.html" % port
    assert wait_for(lambda: fetch(url) == "hello-proxy\n", timeout=15), fetch(url)

    # The device changes on the running container: the rule follows.
    port2 = free_port()
    done = patch(d, c, {"devices": {"web": proxy(port2, network["c"])}})
    assert done["status"] == "Success", done
    rules = nft_table(d)
    assert "dport %d " % port not in rules and "dport %d " % port2 in rules, rules
    url2 = "http://127.0.0.1:%d/index.html" % port2
    assert fetch(url2) == "hello-proxy\n"
    assert fetch(url) is None

    # A connect address that is no static address of its nics is refused while it runs.
    r = d.api("PATCH", "/1.0/instances/" + c,
              {"devices": {"web": proxy(port2, "10.255.255.9")}})
    assert r.status == 400, r
    assert "web" in r.json["error"] and "ipv4.address" in r.json["error"], r.json
    assert "dport %d " % port2 in nft_table(d)

    # lxmd restarts (the container keeps running): its rule is back once it re-attached.
    d.restart()
    assert "dport %d " % port2 in nft_table(d)
    assert fetch(url2) == "hello-proxy\n"

    d.cli("stop", "-f", c, timeout=60)
    rules = nft_table(d)
    assert "dport %d " % port2 not in rules, rules
    assert fetch(url2) is None


def test_bad_proxy_keys_are_refused(daemon, network, made):
    d = daemon
    c = unique("c")
    made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    addr = network["c"]
    bad = [
        (proxy(8080, addr, nat="false"), "nat=true"),
        ({"type": "proxy", "listen": "tcp:0.0.0.0:8080", "connect": "tcp:%s:80" % addr},
         "nat=true"),
        (proxy(8080, addr, listen="sctp:0.0.0.0:8080"), "listen"),
        (proxy(8080, addr, listen="tcp:0.0.0.0"), "listen"),
        (proxy(8080, addr, listen="tcp:0.0.0.0:70000"), "listen"),
        (proxy(8080, addr, connect="udp:%s:80" % addr), "same protocol"),
        (proxy(8080, addr, connect="tcp:0.0.0.0:80"), "connect"),
        (proxy(8080, addr, bind="instance"), "bind"),
        (proxy(8080, addr, mode="0644"), "mode"),
    ]
    for dev, what in bad:
        r = d.api("PATCH", "/1.0/instances/" + c, {"devices": {"web": dev}})
        assert r.status == 400, (dev, r)
        err = r.json["error"]
        assert "proxy device 'web'" in err and what in err, (dev, err)

    # Valid keys, but the container has no nic with that address: the start fails, naming it.
    done = patch(d, c, {"devices": {"web": proxy(8080, addr)}})
    assert done["status"] == "Success", done
    p = d.cli("start", c, check=False, timeout=60)
    assert p.returncode != 0
    assert "proxy device 'web'" in p.stderr and "ipv4.address" in p.stderr, p.stderr
    wait_for(lambda: d.api("GET", "/1.0/instances/" + c).json["metadata"]["status"] == "Stopped",
             timeout=30)
    assert "dport 8080 " not in nft_table(d)
