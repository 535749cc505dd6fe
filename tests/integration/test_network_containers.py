"""Containers on a managed network, as a user sees them: two busybox containers with a nic on a
network the test creates (10.X.Y.1/24, no NAT, dns.domain=lxmtest) both get a DHCP lease from its
dnsmasq (shown by `lxm network list-leases` and on eth0 inside), resolve each other by name under
the network's domain, and ping each other and the bridge.

Traffic goes only to the bridge this test creates (a 10.X.Y.0/24 that collides with no route or
address of the host); the containers and the network are removed at the end even when a step
fails."""

import ipaddress
import os
import random
import subprocess
import uuid

import pytest

from lxmtest import assert_async, unique, wait_for

BUSYBOX = "/bin/busybox"
DOMAIN = "lxmtest"

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


@pytest.fixture
def network(lxmd):
    """A managed network of this test's own; deleted (with its bridge) at teardown."""
    name = "lxmt" + uuid.uuid4().hex[:8]
    while link_exists(name):
        name = "lxmt" + uuid.uuid4().hex[:8]
    net = free_subnet()
    gw = str(net.network_address + 1)
    lxmd.cli("network", "create", name, "ipv4.address=%s/24" % gw, "ipv4.nat=false",
             "ipv6.address=none", "dns.domain=" + DOMAIN)
    yield {"name": name, "gw": gw, "net": net}
    lxmd.cli("network", "delete", name, check=False)
    assert not link_exists(name)


@pytest.fixture
def made(lxmd):
    names = []
    yield names
    for n in names:
        lxmd.cli("delete", "-f", n, check=False)


def sh(d, name, script, check=True):
    return d.cli("exec", name, "--", "sh", "-c", script, check=check)


def eth0_ipv4(d, name):
    """The IPv4 address on eth0 inside name, or None."""
    out = sh(d, name, "ip -4 -o addr show dev eth0", check=False).stdout
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            return words[words.index("inet") + 1].split("/")[0]
    return None


def leases(d, net):
    """`lxm network list-leases` as {hostname: (address, type)}."""
    out = d.cli("network", "list-leases", net, "--format", "csv").stdout
    got = {}
    for line in out.splitlines():
        f = line.split(",")
        if len(f) >= 4:
            got[f[0]] = (f[2], f[3])
    return got


def ping(d, name, target):
    p = sh(d, name, "ping -c 1 -W 2 %s" % target, check=False)
    if p.returncode != 0:  # the first ARP may race the other side coming up
        p = sh(d, name, "ping -c 2 -W 2 %s" % target, check=False)
    return p


def test_two_containers_lease_resolve_and_ping(lxmd, made, network):
    d = lxmd
    net, gw = network["name"], network["gw"]
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

    # The image's rcS runs udhcpc on eth0: both get a dynamic address in the network's subnet.
    addrs = {}
    for c in names:
        wait_for(lambda: eth0_ipv4(d, c) is not None, 30, "a DHCP lease on eth0 of " + c)
        addrs[c] = eth0_ipv4(d, c)
        assert ipaddress.ip_address(addrs[c]) in network["net"], addrs
        assert addrs[c] != gw
    assert addrs[names[0]] != addrs[names[1]], addrs

    # dnsmasq's leases, as lxm shows them, carry the instances' names and addresses.
    wait_for(lambda: all(c in leases(d, net) for c in names), 10, "both leases listed")
    got = leases(d, net)
    for c in names:
        assert got[c][0] == addrs[c], got

    # Each resolves the other by name under the network's domain, through the bridge's dnsmasq.
    for a, b in ((names[0], names[1]), (names[1], names[0])):
        p = sh(d, a, "nslookup %s.%s %s" % (b, DOMAIN, gw), check=False)
        assert p.returncode == 0 and addrs[b] in p.stdout, p.stdout + p.stderr
    # An unknown name under the domain is not invented.
    p = sh(d, names[0], "nslookup nosuch-%s.%s %s" % (uuid.uuid4().hex[:6], DOMAIN, gw),
           check=False)
    assert p.returncode != 0 or addrs[names[1]] not in p.stdout, p.stdout

    # They ping each other (by address and by name) and the bridge.
    for a, b in ((names[0], names[1]), (names[1], names[0])):
        p = ping(d, a, addrs[b])
        assert p.returncode == 0, p.stdout + p.stderr
        p = ping(d, a, gw)
        assert p.returncode == 0, p.stdout + p.stderr
    # By name: busybox's resolver asks the server the lease named (the bridge).
    resolv = sh(d, names[0], "cat /etc/resolv.conf", check=False).stdout

    if gw in resolv:
        p = ping(d, names[0], "%s.%s" % (names[1], DOMAIN))
        assert p.returncode == 0, resolv + p.stdout + p.stderr

    for c in names:
        d.cli("delete", "-f", c, timeout=60)
        made.remove(c)


def qdisc(dev, pid=None):
    """`tc qdisc show dev DEV` on the host, or in the network namespace of pid."""
    argv = ["tc", "qdisc", "show", "dev", dev]
    if pid:
        argv = ["nsenter", "-t", str(pid), "-n"] + argv
    p = subprocess.run(argv, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v tc && command -v nsenter"],
                                   capture_output=True).returncode != 0,
                    reason="tc or nsenter is not installed")
def test_nic_rate_limits(lxmd, made, network):
    d = lxmd
    net = network["name"]
    c = unique("c")
    made.append(c)
    d.cli("init", "busybox", c, timeout=120)

    # Bad rates are refused when the device is set, naming the device and the key.
    for key, value in (("limits.ingress", "fast"), ("limits.egress", "10MB"),
                       ("limits.ingress", "1Tbit")):
        r = d.api("PATCH", "/1.0/instances/" + c,
                  {"devices": {"eth0": {"type": "nic", "network": net, key: value}}})
        assert r.status == 400, r
        assert "'eth0'" in r.json["error"] and key in r.json["error"], r.json["error"]

    # At start: a tbf on the host end (traffic to the instance) and on eth0 inside (from it).
    r = d.api("PATCH", "/1.0/instances/" + c, {"devices": {"eth0": {
        "type": "nic", "network": net, "limits.ingress": "10Mbit", "limits.egress": "4Mbit"}}})
    assert d.wait_op(assert_async(r)["id"])["status"] == "Success"
    d.cli("start", c, timeout=60)
    inst = d.api("GET", "/1.0/instances/" + c).json["metadata"]
    host_end = inst["config"]["volatile.eth0.host_name"]
    out = qdisc(host_end)
    assert "qdisc tbf" in out and "rate 10Mbit" in out, out
    pid = d.api("GET", "/1.0/instances/%s/state" % c).json["metadata"]["pid"]
    assert pid > 0
    out = qdisc("eth0", pid)
    assert "qdisc tbf" in out and "rate 4Mbit" in out, out

    # Hot-plug: a second nic with only an ingress limit.
    r = d.api("PATCH", "/1.0/instances/" + c, {"devices": {"eth1": {
        "type": "nic", "network": net, "limits.ingress": "512kbit"}}})
    assert d.wait_op(assert_async(r)["id"])["status"] == "Success"
    inst = d.api("GET", "/1.0/instances/" + c).json["metadata"]
    host1 = inst["config"]["volatile.eth1.host_name"]
    out = qdisc(host1)
    assert "qdisc tbf" in out and "rate 512Kbit" in out, out
    assert "tbf" not in qdisc("eth1", pid)

    d.cli("delete", "-f", c, timeout=60)
    made.remove(c)
