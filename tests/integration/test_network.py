"""Managed networks: a bridge with a free 10.x.y.1/24, NAT in the nftables table inet lxm, a
supervised dnsmasq that answers DHCP (proved with busybox udhcpc in a network namespace wired to
the bridge by a veth), restarts, set/rename/delete, refusals while in use, invalid input, and
`lxm init --auto` creating a network. Every bridge, veth, netns and the nft table the tests make
are removed at the end."""
import ipaddress
import os
import re
import signal
import subprocess
import uuid

import pytest
import yaml

from lxmtest import assert_error_envelope, assert_sync, pid_alive, wait_for
from nettest import dnsmasq_pid, free_link_name, link_exists, nft_table


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def ipv4_addrs(name):
    out = sh("ip", "-4", "-o", "addr", "show", "dev", name).stdout
    return [line.split()[3] for line in out.splitlines()]


def dnsmasq_argv(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


class Host:
    """What a test made on the host: bridges (networks), veths and netns, removed at the end."""

    def __init__(self, d):
        self.d = d
        self.nets, self.veths, self.netns = [], [], []

    def net(self):
        name = free_link_name("lxmt")
        self.nets.append(name)
        return name

    def cleanup(self):
        d = self.d
        if d.proc is not None:
            # Profiles naming a network keep it: drop their nic devices first.
            prof = assert_sync(d.api("GET", "/1.0/profiles/default"))
            devices = {k: v for k, v in prof["devices"].items() if v.get("type") != "nic"}
            d.api("PUT", "/1.0/profiles/default",
                  {"config": prof["config"], "description": prof["description"],
                   "devices": devices})
            for n in self.nets:
                if d.api("GET", "/1.0/networks/%s" % n).status == 200:
                    d.api("DELETE", "/1.0/networks/%s" % n)
        for ns in self.netns:
            sh("ip", "netns", "del", ns, check=False)
        for v in self.veths + self.nets:
            if link_exists(v):
                sh("ip", "link", "del", v, check=False)
        left = [n for n in self.veths + self.nets if link_exists(n)]
        table = nft_table(d)
        left += [n for n in self.nets if n in table]
        left += [ns for ns in self.netns
                 if ns in sh("ip", "netns", "list").stdout.split()]
        assert not left, "left behind on the host: %r" % left


@pytest.fixture
def host(lxmd):
    h = Host(lxmd)
    yield h
    h.cleanup()


def dhcp_client(h, bridge):
    """A netns wired to bridge by a veth; returns (netns, inner link, its MAC)."""
    tag = uuid.uuid4().hex[:8]
    ns, outer, inner = "lxmtns" + tag, "lxmtv" + tag, "lxmtp" + tag
    sh("ip", "netns", "add", ns)
    h.netns.append(ns)
    sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
    h.veths.append(outer)
    sh("ip", "link", "set", outer, "master", bridge, "up")
    sh("ip", "link", "set", inner, "netns", ns)
    sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
    mac = sh("ip", "netns", "exec", ns, "cat", "/sys/class/net/%s/address" % inner).stdout.strip()
    return ns, inner, mac


def udhcpc(ns, inner):
    """One DHCP exchange (no address is configured: the script is /bin/true)."""
    return subprocess.run(["ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", inner, "-n",
                           "-q", "-f", "-s", "/bin/true", "-t", "5", "-T", "1"],
                          capture_output=True, text=True, timeout=30)


def test_network_lifecycle(lxmd, host):
    d = lxmd
    net = host.net()
    out = d.cli("network", "create", net).stdout
    assert "Network %s created" % net in out

    # The bridge with a 10.x.y.1/24 no other link of the host uses.
    assert link_exists(net)
    addrs = ipv4_addrs(net)
    assert len(addrs) == 1 and addrs[0].startswith("10.") and addrs[0].endswith(".1/24"), addrs
    subnet = ipaddress.ip_interface(addrs[0]).network
    others = sh("ip", "-4", "-o", "addr", "show").stdout.splitlines()
    for line in others:
        dev, cidr = line.split()[1], line.split()[3]
        if dev != net:
            assert not ipaddress.ip_interface(cidr).network.overlaps(subnet), line
    cfg = assert_sync(d.api("GET", "/1.0/networks/%s" % net))
    assert cfg["config"]["ipv4.address"] == addrs[0]
    assert cfg["config"]["ipv4.nat"] == "true" and cfg["config"]["ipv6.address"] == "none"
    assert cfg["managed"] is True and cfg["type"] == "bridge" and cfg["status"] == "Created"
    assert "/1.0/networks/%s" % net in assert_sync(d.api("GET", "/1.0/networks"))
    listing = d.cli("network", "list").stdout
    assert net in listing and addrs[0] in listing and "CREATED" in listing

    # NAT for the subnet in lxm's own table.
    table = nft_table(d)
    assert "masquerade" in table and str(subnet) in table and net in table, table

    # dnsmasq runs for the bridge and answers DHCP.
    pid = wait_for(lambda: dnsmasq_pid(d, net), what="dnsmasq of %s" % net)
    ns, inner, mac = dhcp_client(host, net)
    p = udhcpc(ns, inner)
    assert p.returncode == 0, p.stderr + p.stdout
    leased = re.findall(r"lease of ([0-9.]+) obtained", p.stderr + p.stdout)
    assert leased and ipaddress.ip_address(leased[0]) in subnet, p.stderr + p.stdout
    leases = assert_sync(d.api("GET", "/1.0/networks/%s/leases" % net))
    assert any(le["hwaddr"] == mac and le["address"] == leased[0] for le in leases), leases
    assert mac in d.cli("network", "list-leases", net).stdout
    state = assert_sync(d.api("GET", "/1.0/networks/%s/state" % net))
    assert any(a["address"] == addrs[0].split("/")[0] for a in state["addresses"])
    assert state["counters"]["packets_received"] > 0

    # Killed, dnsmasq is started again.
    os.kill(pid, signal.SIGKILL)
    pid2 = wait_for(lambda: (dnsmasq_pid(d, net) or 0) not in (0, pid) and dnsmasq_pid(d, net),
                    what="dnsmasq restarted")
    assert pid_alive(pid2)

    # dns.domain reaches dnsmasq.
    d.cli("network", "set", net, "dns.domain=example.test")
    assert d.cli("network", "get", net, "dns.domain").stdout.strip() == "example.test"
    wait_for(lambda: dnsmasq_pid(d, net) and
             "--domain=example.test" in dnsmasq_argv(dnsmasq_pid(d, net)),
             what="dnsmasq with the new domain")

    # An lxmd restart keeps the network: bridge, address, rules, and dnsmasq again.
    old = dnsmasq_pid(d, net)
    d.restart()
    assert not pid_alive(old) or old == dnsmasq_pid(d, net)
    assert ipv4_addrs(net) == addrs and str(subnet) in nft_table(d)
    wait_for(lambda: dnsmasq_pid(d, net), what="dnsmasq after restart")
    p = udhcpc(ns, inner)
    assert p.returncode == 0, p.stderr + p.stdout

    # Rename: the bridge follows the name.
    new = host.net()
    d.cli("network", "rename", net, new)
    assert not link_exists(net) and link_exists(new) and ipv4_addrs(new) == addrs
    table = nft_table(d)
    assert new in table and net not in table
    wait_for(lambda: dnsmasq_pid(d, new), what="dnsmasq of the renamed network")
    assert_error_envelope(d.api("GET", "/1.0/networks/%s" % net), 404)

    # Delete: bridge, rules, dnsmasq and state directory go.
    pid = dnsmasq_pid(d, new)
    d.cli("network", "delete", new)
    assert not link_exists(new)
    assert new not in nft_table(d)
    wait_for(lambda: not pid_alive(pid), what="dnsmasq stopped")
    assert not os.path.exists(os.path.join(d.root, "networks", new))
    assert_error_envelope(d.api("GET", "/1.0/networks/%s" % new), 404)


def test_network_in_use_and_errors(lxmd, host):
    d = lxmd
    net = host.net()
    d.cli("network", "create", net, "ipv4.address=auto", "--description", "test net")
    got = assert_sync(d.api("GET", "/1.0/networks/%s" % net))
    assert got["description"] == "test net"

    # Used by a profile's nic: delete and rename refused.
    body = {"devices": {"eth0": {"type": "nic", "network": net, "name": "eth0"}}}
    assert_sync(d.api("PATCH", "/1.0/profiles/default", body))
    got = assert_sync(d.api("GET", "/1.0/networks/%s" % net))
    assert got["used_by"] == ["/1.0/profiles/default"]
    p = d.cli("network", "delete", net, check=False)
    assert p.returncode != 0 and "The network is currently in use" in p.stderr
    p = d.cli("network", "rename", net, host.net(), check=False)
    assert p.returncode != 0 and "currently in use" in p.stderr
    assert link_exists(net)
    prof = assert_sync(d.api("GET", "/1.0/profiles/default"))
    assert_sync(d.api("PUT", "/1.0/profiles/default",
                      {"config": prof["config"], "description": prof["description"],
                       "devices": {}}))

    # Invalid names, keys and values are refused with the name or key.
    for bad, why in (("1234", "only digits"), ("a" * 16, "15 characters"),
                     ("-ab", "must not start"), ("a:b", "letters, digits")):
        r = d.api("POST", "/1.0/networks", {"name": bad, "config": {}})
        assert r.status == 400 and why in r.json["error"], (bad, r.json)
    for kv, what in (("bogus.key=1", "bogus.key"), ("ipv4.address=foo", "ipv4.address"),
                     ("ipv4.nat=maybe", "ipv4.nat"), ("bridge.mtu=10", "bridge.mtu"),
                     ("ipv6.address=fd00::1", "ipv6.address"), ("dns.domain=a b", "dns.domain")):
        p = d.cli("network", "set", net, kv, check=False)
        assert p.returncode != 0 and what in p.stderr, (kv, p.stderr)
    p = d.cli("network", "create", host.net(), "ipv4.address=10.0.0.0/24", check=False)
    assert p.returncode != 0 and "ipv4.address" in p.stderr
    # A taken name, and an interface the host has already.
    assert_error_envelope(d.api("POST", "/1.0/networks", {"name": net}), 409)
    r = d.api("POST", "/1.0/networks", {"name": "lo"})
    assert r.status == 409 and "interface" in r.json["error"]
    # ETag guards PUT.
    r = d.api("PUT", "/1.0/networks/%s" % net, {"config": {}},
              headers={"If-Match": "0" * 64})
    assert_error_envelope(r, 412)

    # A fixed address and IPv6 apply.
    d.cli("network", "set", net, "ipv4.address=10.254.213.1/24", "ipv6.address=auto")
    assert ipv4_addrs(net) == ["10.254.213.1/24"]
    cfg = yaml.safe_load(d.cli("network", "show", net).stdout)["config"]
    assert cfg["ipv6.address"].startswith("fd") and cfg["ipv6.address"].endswith("::1/64")
    v6 = sh("ip", "-6", "-o", "addr", "show", "dev", net).stdout
    assert cfg["ipv6.address"] in v6
    wait_for(lambda: dnsmasq_pid(d, net) and
             "--listen-address=10.254.213.1" in dnsmasq_argv(dnsmasq_pid(d, net)),
             what="dnsmasq on the new address")
    # edit takes YAML on stdin.
    doc = yaml.safe_load(d.cli("network", "show", net).stdout)
    doc["description"] = "edited"
    doc["config"]["dns.domain"] = "edited.test"
    d.cli("network", "edit", net, input=yaml.safe_dump(doc))
    got = assert_sync(d.api("GET", "/1.0/networks/%s" % net))
    assert got["description"] == "edited" and got["config"]["dns.domain"] == "edited.test"

    # Unset after creation, an address means none (as stored), not a new pick.
    d.cli("network", "unset", net, "ipv4.address")
    assert ipv4_addrs(net) == []
    assert "ipv4.address" not in assert_sync(d.api("GET", "/1.0/networks/%s" % net))["config"]
    d.cli("network", "delete", net)
    assert not link_exists(net)


def test_init_auto_network(lxmd_factory):
    d = lxmd_factory(storage=None).start()
    h = Host(d)
    net = h.net()
    try:
        out = d.cli("init", "--auto", "--storage-backend", "dir", "--network-name", net).stdout
        assert "Network %s created" % net in out, out
        got = assert_sync(d.api("GET", "/1.0/networks/%s" % net))
        assert got["config"]["ipv4.nat"] == "true" and got["config"]["ipv6.address"] == "none"
        assert got["config"]["ipv4.address"].startswith("10.")
        prof = yaml.safe_load(d.cli("profile", "show", "default").stdout)
        assert prof["devices"]["eth0"] == {"type": "nic", "network": net, "name": "eth0"}
        assert link_exists(net)
    finally:
        h.cleanup()
        prof = assert_sync(d.api("GET", "/1.0/profiles/default"))
        d.api("PUT", "/1.0/profiles/default",
              {"config": {}, "description": prof["description"], "devices": {}})
        d.cli("storage", "delete", "default", check=False)
