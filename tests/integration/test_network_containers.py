"""Containers on a managed network, as a user sees them: two busybox containers with a nic on a
network the test creates (10.X.Y.1/24, no NAT, dns.domain=lxmtest) both get a DHCP lease from its
dnsmasq (shown by `lxm network list-leases` and on eth0 inside), resolve each other by name under
the network's domain, and ping each other and the bridge.

Traffic goes only to the bridge this test creates (a 10.X.Y.0/24 that collides with no route or
address of the host); the containers and the network are removed at the end even when a step
fails."""

import os
import subprocess
import uuid

import pytest

from lxmtest import assert_async, made_fixture, sh, unique, wait_for
from nettest import create_network, delete_network, ping, two_on_network

BUSYBOX = "/bin/busybox"
DOMAIN = "lxmtest"

pytestmark = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                                reason="busybox-static is not installed")


@pytest.fixture
def network(lxmd):
    """A managed network of this test's own; deleted (with its bridge) at teardown."""
    name, net, gw = create_network(lxmd, "lxmt", "ipv4.nat=false", "ipv6.address=none",
                                   "dns.domain=" + DOMAIN)
    yield {"name": name, "gw": gw, "net": net}
    delete_network(lxmd, name)


made = made_fixture()


def leases(d, net):
    """`lxm network list-leases` as {hostname: (address, type)}."""
    out = d.cli("network", "list-leases", net, "--format", "csv").stdout
    got = {}
    for line in out.splitlines():
        f = line.split(",")
        if len(f) >= 4:
            got[f[0]] = (f[2], f[3])
    return got


def test_two_containers_lease_resolve_and_ping(lxmd, made, network):
    d = lxmd
    net, gw = network["name"], network["gw"]
    # The image's rcS runs udhcpc on eth0: both get a dynamic address in the network's subnet.
    names, addrs = two_on_network(d, made, network)
    for c in names:
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
