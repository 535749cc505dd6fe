"""An lxmd restart keeps a managed network's connectivity: two busybox containers with a nic on a
network the test creates (a free 10.X.Y.1/24 with NAT, dns.domain=lxmtest) get DHCP leases; after
lxmd is stopped and started again on the same root they still ping each other and the bridge,
still resolve each other by name through the network's dnsmasq, and the daemon's nftables table is
the same. A table flushed or deleted by hand behind lxmd's back is written again (its masquerade
rule too) by the next start, and a killed dnsmasq is started again and answers DNS. An lxmd killed
with SIGKILL leaves its dnsmasq behind: the next one replaces it (one dnsmasq per network) and the
containers keep their connectivity.

Traffic goes only to the bridge this test creates; the containers and the network are removed at
the end even when a step fails (the fixture then checks that no nft table is left)."""

import os
import signal
import subprocess

import pytest

import lxmtest
from lxmtest import made_fixture, pid_alive, sh, wait_for
from nettest import (create_network, delete_network, dnsmasq_pid, eth0_ipv4, nft_table, ping,
                     two_on_network)

BUSYBOX = "/bin/busybox"
DOMAIN = "lxmtest"

pytestmark = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                                reason="busybox-static is not installed")


def nft(*args, check=True):
    p = subprocess.run(["nft"] + list(args), capture_output=True, text=True)
    assert not check or p.returncode == 0, "nft %s: %s" % (" ".join(args), p.stderr)
    return p


def has_masquerade(text, net):
    """Whether text (a listed table) masquerades what leaves the subnet net."""
    return any("masquerade" in line and str(net) in line for line in text.splitlines())


@pytest.fixture
def network(lxmd):
    """A managed network with NAT of this test's own; deleted (with its bridge) at teardown."""
    name, net, gw = create_network(lxmd, "lxmt", "ipv4.nat=true", "ipv6.address=none",
                                   "dns.domain=" + DOMAIN)
    yield {"name": name, "gw": gw, "net": net}
    delete_network(lxmd, name)


made = made_fixture()


def resolves(d, name, other, addr, gw):
    """Whether name resolves other under the network's domain to addr through the bridge."""
    p = sh(d, name, "nslookup %s.%s %s" % (other, DOMAIN, gw), check=False)
    return p.returncode == 0 and addr in p.stdout


def check_connectivity(d, names, addrs, gw, when):
    for a, b in ((names[0], names[1]), (names[1], names[0])):
        p = ping(d, a, addrs[b])
        assert p.returncode == 0, "%s: %s -> %s: %s" % (when, a, b, p.stdout + p.stderr)
        p = ping(d, a, gw)
        assert p.returncode == 0, "%s: %s -> bridge: %s" % (when, a, p.stdout + p.stderr)
        # dnsmasq may still be coming up right after a start: give it a few seconds.
        wait_for(lambda: resolves(d, a, b, addrs[b], gw), 10,
                 "%s: %s resolving %s.%s" % (when, a, b, DOMAIN))


def test_restart_keeps_connectivity(lxmd, made, network):
    d = lxmd
    net, gw, subnet = network["name"], network["gw"], network["net"]
    names, addrs = two_on_network(d, made, network)
    check_connectivity(d, names, addrs, gw, "before the restart")
    table = nft_table(d)
    assert has_masquerade(table, subnet) and net in table, table
    init_pids = {c: d.api("GET", "/1.0/instances/%s/state" % c).json["metadata"]["pid"]
                 for c in names}

    # lxmd stops and starts again on the same root: the containers run on, untouched.
    d.restart()
    for c in names:
        st = d.api("GET", "/1.0/instances/%s/state" % c).json["metadata"]
        assert st["status"] == "Running" and st["pid"] == init_pids[c], st
        assert eth0_ipv4(d, c) == addrs[c]
    wait_for(lambda: dnsmasq_pid(d, net), what="dnsmasq after the restart")
    check_connectivity(d, names, addrs, gw, "after the restart")
    assert nft_table(d) == table

    # The table flushed behind lxmd's back: the next start writes it again.
    nft("flush", "table", "inet", lxmtest.nft_table_name(d.root))
    assert not has_masquerade(nft_table(d), subnet)
    d.restart()
    assert nft_table(d) == table
    # Deleted: the same.
    nft("delete", "table", "inet", lxmtest.nft_table_name(d.root))
    assert nft_table(d) == ""
    d.restart()
    again = nft_table(d)
    assert has_masquerade(again, subnet) and again == table, again
    check_connectivity(d, names, addrs, gw, "after the table was rewritten")

    # dnsmasq killed: lxmd starts a new one, which answers DNS for the leases it had.
    old = wait_for(lambda: dnsmasq_pid(d, net), what="dnsmasq of " + net)
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (dnsmasq_pid(d, net) or old) != old and dnsmasq_pid(d, net),
                   what="dnsmasq restarted")
    assert new != old and pid_alive(new) and not pid_alive(old)
    check_connectivity(d, names, addrs, gw, "after dnsmasq was killed")

    for c in names:
        d.cli("delete", "-f", c, timeout=60)
        made.remove(c)


def dnsmasqs_of(d, net):
    """The pids of every dnsmasq serving net's bridge."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"dnsmasq") and ("--interface=%s" % net).encode() in argv:
            found.append(int(p))
    return found


def test_kill9_restart_keeps_connectivity(lxmd, made, network):
    """lxmd killed outright leaves its dnsmasq running; the next lxmd ends that one and serves the
    network with a dnsmasq of its own: one, answering DNS, and the containers still connected."""
    d = lxmd
    net, gw = network["name"], network["gw"]
    names, addrs = two_on_network(d, made, network)
    old = wait_for(lambda: dnsmasq_pid(d, net), what="dnsmasq of " + net)
    table = nft_table(d)
    d.kill9()
    assert pid_alive(old)
    d.start()
    wait_for(lambda: dnsmasqs_of(d, net) and old not in dnsmasqs_of(d, net), 10,
             "the old dnsmasq replaced")
    assert len(dnsmasqs_of(d, net)) == 1, dnsmasqs_of(d, net)
    assert dnsmasq_pid(d, net) in dnsmasqs_of(d, net)
    assert nft_table(d) == table
    check_connectivity(d, names, addrs, gw, "after lxmd was killed and started again")
    for c in names:
        d.cli("delete", "-f", c, timeout=60)
        made.remove(c)
