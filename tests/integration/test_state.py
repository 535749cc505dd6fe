"""GET /1.0/instances/NAME/state: the network section as LXD gives it (every interface of the
container's own network namespace, with addresses, counters, hwaddr, mtu, state, type), read
from inside the container's namespace and never from the host's."""

import os
import socket

import pytest

from lxmtest import assert_sync, cgroup_dirs, unique, wait_for

COUNTERS = ("bytes_received", "bytes_sent", "packets_received", "packets_sent", "errors_received",
            "errors_sent", "packets_dropped_outbound", "packets_dropped_inbound")


def state(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % name))


def addresses(iface, family=None):
    return [(a["address"], a["netmask"], a["scope"]) for a in iface["addresses"]
            if family is None or a["family"] == family]


@pytest.fixture
def running(lxmd):
    names = []

    def launch():
        name = unique("st")
        lxmd.cli("launch", "busybox", name, timeout=120)
        names.append(name)
        return name

    yield launch
    for name in names:
        lxmd.cli("delete", "-f", name, check=False)
        assert cgroup_dirs(name) == [], "cgroups of %s left behind" % name


def test_network_lists_lo_with_lxd_fields(lxmd, running):
    name = running()
    # rcS brings lo up, and the runtime does too (setup step 'loopback').
    net = wait_for(lambda: (state(lxmd, name)["network"] or {}).get("lo"), what="lo in state")
    assert set(net) == {"addresses", "counters", "hwaddr", "host_name", "mtu", "state", "type"}
    assert net["type"] == "loopback" and net["state"] == "up", net
    assert net["mtu"] == 65536 and net["hwaddr"] == "" and net["host_name"] == "", net
    assert set(net["counters"]) == set(COUNTERS), net["counters"]
    assert all(isinstance(v, int) and v >= 0 for v in net["counters"].values())
    assert ("127.0.0.1", "8", "local") in addresses(net, "inet"), net["addresses"]
    # ::1 is there when the container's lo has IPv6 (the kernel has it and it is not disabled).
    ipv6 = lxmd.cli("exec", name, "--", "cat", "/proc/sys/net/ipv6/conf/lo/disable_ipv6",
                    check=False)
    if ipv6.returncode == 0 and ipv6.stdout.strip() == "0":
        assert ("::1", "128", "local") in addresses(net, "inet6"), net["addresses"]
    else:
        assert addresses(net, "inet6") == [], net["addresses"]
    # The container has its own network namespace: none of the host's other interfaces show.
    # (eth0 is the container's own nic once it has one.)
    assert set(state(lxmd, name)["network"]) - {"lo", "eth0"} == set(), \
        (state(lxmd, name)["network"], [n for _, n in socket.if_nameindex()])


def test_address_added_inside_appears(lxmd, running):
    name = running()
    lxmd.cli("exec", name, "--", "ip", "addr", "add", "192.0.2.77/24", "dev", "lo")
    lo = state(lxmd, name)["network"]["lo"]
    assert ("192.0.2.77", "24", "global") in addresses(lo, "inet"), lo["addresses"]
    # lxm info lists it under lo (as lxc info does); lxm list's IPV4 column, like lxc's, leaves
    # loopback interfaces out.
    info = lxmd.cli("info", name).stdout
    assert "inet:  192.0.2.77/24 (global)" in info and "inet:  127.0.0.1/8 (local)" in info, info
    listed = lxmd.cli("list", "--format", "csv", "-c", "n4").stdout
    assert "%s,\n" % name in listed or "%s,\"\"" % name in listed, listed
    # It is the container's lo, not the host's.
    with open("/proc/net/fib_trie") as f:
        assert "192.0.2.77" not in f.read()
    lxmd.cli("exec", name, "--", "ip", "addr", "del", "192.0.2.77/24", "dev", "lo")
    lo = state(lxmd, name)["network"]["lo"]
    assert "192.0.2.77" not in [a for a, _, _ in addresses(lo)], lo["addresses"]


def test_counters_grow_with_traffic(lxmd, running):
    name = running()
    before = state(lxmd, name)["network"]["lo"]["counters"]
    p = lxmd.cli("exec", name, "--", "ping", "-c", "2", "-W", "2", "127.0.0.1", check=False)
    assert p.returncode == 0, "ping inside %s failed: %s %s" % (name, p.stdout, p.stderr)
    after = state(lxmd, name)["network"]["lo"]["counters"]
    # Two echo requests and two replies, each both sent and received on lo.
    assert after["packets_sent"] >= before["packets_sent"] + 4, (before, after)
    assert after["packets_received"] >= before["packets_received"] + 4, (before, after)
    assert after["bytes_sent"] > before["bytes_sent"], (before, after)
    assert after["bytes_received"] > before["bytes_received"], (before, after)


def test_stopped_instance_has_no_network(lxmd, running):
    name = running()
    lxmd.cli("stop", "--force", name)
    st = state(lxmd, name)
    assert st["status"] == "Stopped" and st["network"] is None and st["pid"] == 0, st


def test_state_leaves_lxmd_in_its_own_netns(lxmd, running):
    """lxmd enters the container's namespace to open its netlink socket and must come back:
    every thread of lxmd stays in the host's network namespace after many state reads."""
    name = running()
    for _ in range(20):
        assert "lo" in state(lxmd, name)["network"]
    mine = os.readlink("/proc/self/ns/net")
    tasks = os.listdir("/proc/%d/task" % lxmd.pid)
    for t in tasks:
        assert os.readlink("/proc/%d/task/%s/ns/net" % (lxmd.pid, t)) == mine, t
    # And lxmd still sees the host's interfaces (a request served after the reads).
    assert assert_sync(lxmd.api("GET", "/1.0"))["environment"]
