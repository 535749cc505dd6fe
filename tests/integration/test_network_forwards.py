"""Network forwards as a user sees them (LXD's /1.0/networks/<net>/forwards and `lxm network
forward`): a busybox container with a static address on a managed network the test creates
serves HTTP; forwards from an address of a dummy interface the test creates (198.18.0.0/15, the
benchmark range, checked unused) and from a 127.0.0.x address reach it from the host, port by
port, through port ranges mapped one to one and, with only a default target_address, on every
port; a UDP port reaches a tiny echo server. The DNAT rules are in the lxmd's nftables table,
follow every change, come back after a restart and are gone with the forward and with the
network. Bad forwards are refused naming the forward, the port entry, the key and the value.

Also: another nftables table whose forward hook has policy drop (which lxm's own accept rules
cannot override) is reported in the network's state, in `lxm network info` and in the lxmd log;
the throwaway table is deleted at once.

Traffic goes only to addresses the test created (the dummy interface's, 127.0.0.x) and the
bridge of its own network; the container, the network, the dummy link and the tables are gone at
the end even when a step fails."""

import ipaddress
import json
import os
import random
import socket
import subprocess
import uuid

import pytest

from lxmtest import assert_async, made_fixture, sh, static_program, unique, wait_for
import nettest
from nettest import (create_network, delete_network, fetch, free_subnet, host_networks, ip,
                     link_exists, nft_table)

BUSYBOX = "/bin/busybox"

pytestmark = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                                reason="busybox-static is not installed")

UDP_ECHO_SRC = r"""
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Answers every datagram on port argv[1] with "echo:" and the datagram. */
int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (argc < 2 || fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return 1;
	for (;;) {
		char buf[512] = "echo:";
		struct sockaddr_in from;
		socklen_t len = sizeof(from);
		ssize_t n = recvfrom(fd, buf + 5, sizeof(buf) - 5, 0, (struct sockaddr *)&from, &len);

		if (n >= 0)
			sendto(fd, buf, n + 5, 0, (struct sockaddr *)&from, len);
	}
}
"""


def udp_ask(addr, port, payload):
    """The answer to one datagram, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.sendto(payload, (addr, port))
        try:
            return s.recv(512)
        except OSError:
            return None


def fwd_url(net, listen=""):
    return "/1.0/networks/%s/forwards%s" % (net, "/" + listen if listen else "")


daemon = nettest.daemon


@pytest.fixture
def network(daemon):
    """A managed network of this test's own; deleted (with its bridge) at teardown."""
    name, net, gw = create_network(daemon, "lxmf", "ipv4.nat=false", "ipv6.address=none")
    yield {"name": name, "gw": gw, "subnet": str(net), "c": str(net.network_address + 10),
           "c2": str(net.network_address + 11)}
    delete_network(daemon, name)


@pytest.fixture
def dummy():
    """A dummy link with two unused addresses of 198.18.0.0/15 (the host's own); deleted at
    teardown."""
    name = "lxmfd" + uuid.uuid4().hex[:8]
    taken = host_networks()
    rng = random.Random()
    addrs = None
    for _ in range(100):
        base = ipaddress.ip_address("198.18.0.0") + rng.randrange(0, 2 ** 17 - 4)
        cand = [base + 1, base + 2]
        if not any(ipaddress.ip_network(str(a)).overlaps(t) for a in cand for t in taken):
            addrs = [str(a) for a in cand]
            break
    if not addrs:
        pytest.skip("no unused address in 198.18.0.0/15")
    # A dummy link, or where the kernel has no dummy driver an empty bridge (its addresses are
    # local just the same).
    if subprocess.run(["ip", "link", "add", name, "type", "dummy"],
                      capture_output=True).returncode != 0:
        ip("link", "add", name, "type", "bridge")
    try:
        for a in addrs:
            ip("addr", "add", a + "/32", "dev", name)
        ip("link", "set", name, "up")
        yield addrs
    finally:
        ip("link", "del", name, check=False)
    assert not link_exists(name)


made = made_fixture("daemon")


def start_server(d, network, made):
    """A started busybox container at network["c"] with web servers on ports 80, 81 and 82
    (each answering its own port number) and a default route through the bridge."""
    c = unique("fw")
    made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    r = d.api("PATCH", "/1.0/instances/" + c, {"devices": {
        "eth0": {"type": "nic", "network": network["name"], "ipv4.address": network["c"]}}})
    assert r.status == 202, r
    assert d.wait_op(assert_async(r)["id"])["status"] == "Success"
    d.cli("start", c, timeout=60)
    try:
        wait_for(lambda: network["c"] in sh(d, c, "ip -4 -o addr show dev eth0",
                                           check=False).stdout, timeout=15)
    except AssertionError:
        sh(d, c, "ip link set eth0 up && ip addr add %s/24 dev eth0" % network["c"])
    sh(d, c, "ip route add default via %s 2>/dev/null; true" % network["gw"])
    for port in (80, 81, 82):
        sh(d, c, "mkdir -p /srv/%d && echo port-%d > /srv/%d/index.html && "
                 "busybox httpd -p %d -h /srv/%d" % (port, port, port, port, port))
    return c


def test_forwards_carry_traffic(daemon, network, dummy, made):
    d = daemon
    net = network["name"]
    c = start_server(d, network, made)
    addr, addr2 = dummy
    lo = "127.0.%d.%d" % (random.randint(1, 254), random.randint(2, 254))

    # One port, a range mapped one to one, and a list to a single target port.
    r = d.api("POST", fwd_url(net), {
        "listen_address": addr, "description": "web",
        "ports": [
            {"protocol": "tcp", "listen_port": "8080", "target_address": network["c"],
             "target_port": "80"},
            {"protocol": "tcp", "listen_port": "9001-9002", "target_address": network["c"],
             "target_port": "81-82"},
            {"protocol": "tcp", "listen_port": "7000,7005", "target_address": network["c"],
             "target_port": "80"},
        ]})
    assert r.status == 200, r.json
    rules = nft_table(d)
    assert "ip daddr %s tcp dport 8080 dnat ip to %s:80" % (addr, network["c"]) in rules, rules
    assert "9001 : 81" in rules and "9002 : 82" in rules, rules
    assert wait_for(lambda: fetch("http://%s:8080/" % addr) == "port-80\n", timeout=10)
    assert fetch("http://%s:9001/" % addr) == "port-81\n"
    assert fetch("http://%s:9002/" % addr) == "port-82\n"
    assert fetch("http://%s:7005/" % addr) == "port-80\n"
    assert fetch("http://%s:8081/" % addr) is None

    # Another instance of the network reaches the forward too (through the host and back).
    c2 = unique("fwc")
    made.append(c2)
    d.cli("init", "busybox", c2, timeout=120)
    r = d.api("PATCH", "/1.0/instances/" + c2, {"devices": {
        "eth0": {"type": "nic", "network": network["name"], "ipv4.address": network["c2"]}}})
    assert d.wait_op(assert_async(r)["id"])["status"] == "Success"
    d.cli("start", c2, timeout=60)
    try:
        wait_for(lambda: network["c2"] in sh(d, c2, "ip -4 -o addr show dev eth0",
                                            check=False).stdout, timeout=15)
    except AssertionError:
        sh(d, c2, "ip link set eth0 up && ip addr add %s/24 dev eth0" % network["c2"])
    sh(d, c2, "ip route add default via %s 2>/dev/null; true" % network["gw"])
    got = sh(d, c2, "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 %s 9002" % addr,
             check=False).stdout
    assert got.startswith("HTTP/1.1 200") and got.endswith("\nport-82\n"), got
    d.cli("delete", "-f", c2)

    # A loopback listen address (the host's own connections, through the output chain).
    r = d.api("POST", fwd_url(net), {
        "listen_address": lo,
        "ports": [{"protocol": "tcp", "listen_port": "8080", "target_address": network["c"],
                   "target_port": "81"}]})
    assert r.status == 200, r.json
    assert wait_for(lambda: fetch("http://%s:8080/" % lo) == "port-81\n", timeout=10)

    # Only a default target address: every port goes there, keeping its number.
    r = d.api("POST", fwd_url(net), {"listen_address": addr2,
                                     "config": {"target_address": network["c"]}})
    assert r.status == 200, r.json
    assert "ip daddr %s dnat ip to %s" % (addr2, network["c"]) in nft_table(d)
    assert wait_for(lambda: fetch("http://%s:82/" % addr2) == "port-82\n", timeout=10)
    assert fetch("http://%s:80/" % addr2) == "port-80\n"

    # UDP: an echo server in the container.
    with static_program("udpecho", UDP_ECHO_SRC) as prog:
        d.cli("file", "push", "--mode", "0755", prog, c + "/udpecho")
    sh(d, c, "/udpecho 5353 </dev/null >/dev/null 2>&1 &")
    r = d.api("PATCH", fwd_url(net, addr), {"ports": [
        {"protocol": "udp", "listen_port": "5300", "target_address": network["c"],
         "target_port": "5353"}]})
    assert r.status == 200, r.json
    assert wait_for(lambda: udp_ask(addr, 5300, b"ping") == b"echo:ping", timeout=10)
    # PATCH replaced the ports: the TCP ones are gone.
    assert fetch("http://%s:8080/" % addr) is None
    assert "dport 8080 dnat ip to %s:80" % network["c"] not in nft_table(d)

    # lxmd restarts: the rules come back from the database.
    d.restart()
    assert udp_ask(addr, 5300, b"again") == b"echo:again"
    assert fetch("http://%s:8080/" % lo) == "port-81\n"
    assert fetch("http://%s:81/" % addr2) == "port-81\n"

    # Deleting a forward removes its rules and its traffic.
    r = d.api("DELETE", fwd_url(net, addr2))
    assert r.status == 200, r.json
    assert addr2 not in nft_table(d)
    assert fetch("http://%s:82/" % addr2) is None


def test_forward_api_and_errors(daemon, network, dummy):
    d = daemon
    net = network["name"]
    addr = dummy[0]
    tgt = network["c"]

    def port(**kw):
        p = {"protocol": "tcp", "listen_port": "80", "target_address": tgt}
        p.update(kw)
        return p

    bad = [
        ({"listen_address": "not-an-ip"}, ["listen_address", "not-an-ip"]),
        ({"listen_address": "0.0.0.0"}, ["listen_address", "0.0.0.0", "wildcard"]),
        ({"listen_address": network["c2"]}, ["listen_address", network["c2"], "subnet"]),
        ({"listen_address": "224.0.0.9"}, ["listen_address", "unicast"]),
        ({"listen_address": addr, "config": {"bogus": "1"}}, [addr, "bogus"]),
        ({"listen_address": addr, "config": {"target_address": "192.0.2.200"}},
         [addr, "target_address", "192.0.2.200", "subnet"]),
        ({"listen_address": addr, "ports": [port(protocol="sctp")]},
         [addr, "port 1", "protocol", "sctp"]),
        ({"listen_address": addr, "ports": [port(listen_port="70000")]},
         [addr, "port 1", "listen_port", "70000"]),
        ({"listen_address": addr, "ports": [port(listen_port="0")]},
         [addr, "port 1", "listen_port", "'0'"]),
        ({"listen_address": addr, "ports": [port(listen_port="90-80")]},
         [addr, "port 1", "listen_port", "90-80"]),
        ({"listen_address": addr, "ports": [port(), port(listen_port="70-85")]},
         [addr, "port 2", "listen_port", "70-85", "tcp port 80"]),
        ({"listen_address": addr, "ports": [port(listen_port="80-82", target_port="90-91")]},
         [addr, "port 1", "target_port", "90-91", "80-82"]),
        ({"listen_address": addr, "ports": [port(target_address="10.255.255.1")]},
         [addr, "port 1", "target_address", "10.255.255.1", "subnet"]),
        ({"listen_address": addr, "ports": [port(target_address="fd42::9")]},
         [addr, "port 1", "target_address", "fd42::9", "family"]),
        ({"listen_address": addr, "ports": [{"protocol": "tcp", "listen_port": "80"}]},
         [addr, "port 1", "target_address", "required"]),
        ({"listen_address": addr, "ports": [port(colour="red")]}, [addr, "port 1", "colour"]),
    ]
    for body, words in bad:
        r = d.api("POST", fwd_url(net), body)
        assert r.status == 400, (body, r.json)
        err = r.json["error"]
        assert ("network '%s'" % net) in err, (body, err)
        for w in words:
            assert w in err, (body, w, err)
    assert d.api("GET", fwd_url(net)).json["metadata"] == []
    assert "dnat" not in nft_table(d)

    # Unknown network and forward: 404.
    assert d.api("GET", fwd_url("nosuchnet0")).status == 404
    assert d.api("POST", fwd_url("nosuchnet0"), {"listen_address": addr}).status == 404
    assert d.api("GET", fwd_url(net, addr)).status == 404
    assert d.api("DELETE", fwd_url(net, addr)).status == 404

    # Create, duplicate (409), list, get.
    body = {"listen_address": addr, "description": "d1",
            "config": {"user.note": "x"},
            "ports": [port(listen_port="80,443", description="web")]}
    r = d.api("POST", fwd_url(net), body)
    assert r.status == 200, r.json
    r = d.api("POST", fwd_url(net), body)
    assert r.status == 409, r.json
    assert addr in r.json["error"]
    assert d.api("GET", fwd_url(net)).json["metadata"] == [
        "/1.0/networks/%s/forwards/%s" % (net, addr)]
    full = d.api("GET", fwd_url(net) + "?recursion=1").json["metadata"]
    assert len(full) == 1 and full[0]["listen_address"] == addr
    r = d.api("GET", fwd_url(net, addr))
    fw = r.json["metadata"]
    assert fw["description"] == "d1" and fw["config"] == {"user.note": "x"}
    assert fw["location"] == "none"
    assert fw["ports"] == [{"description": "web", "protocol": "tcp", "listen_port": "80,443",
                            "target_port": "", "target_address": tgt}]
    assert r.headers.get("ETag")
    assert "ip daddr %s tcp dport { 80, 443 } dnat ip to %s" % (addr, tgt) in nft_table(d)

    # PUT replaces, PATCH merges config; a bad PUT changes nothing.
    r = d.api("PUT", fwd_url(net, addr), {"description": "d2", "config": {},
                                          "ports": [port(listen_port="8080", target_port="80")]})
    assert r.status == 200, r.json
    fw = d.api("GET", fwd_url(net, addr)).json["metadata"]
    assert fw["description"] == "d2" and fw["config"] == {} and len(fw["ports"]) == 1
    r = d.api("PATCH", fwd_url(net, addr), {"config": {"target_address": network["c2"]}})
    assert r.status == 200, r.json
    fw = d.api("GET", fwd_url(net, addr)).json["metadata"]
    assert fw["config"] == {"target_address": network["c2"]} and len(fw["ports"]) == 1
    rules = nft_table(d)
    assert "ip daddr %s tcp dport 8080 dnat ip to %s:80" % (addr, tgt) in rules, rules
    assert "ip daddr %s dnat ip to %s" % (addr, network["c2"]) in rules, rules
    r = d.api("PUT", fwd_url(net, addr), {"ports": [port(listen_port="x")]})
    assert r.status == 400 and "listen_port" in r.json["error"], r.json
    assert d.api("GET", fwd_url(net, addr)).json["metadata"] == fw
    assert "dport 8080" in nft_table(d)

    # Another network cannot take the same listen address.
    other = "lxmh" + uuid.uuid4().hex[:8]
    other_net = free_subnet()
    d.cli("network", "create", other, "ipv4.address=%s/24" % (other_net.network_address + 1),
          "ipv4.nat=false", "ipv6.address=none")
    try:
        r = d.api("POST", fwd_url(other), {"listen_address": addr, "config": {
            "target_address": str(other_net.network_address + 5)}})
        assert r.status == 409, r.json
        assert addr in r.json["error"] and net in r.json["error"], r.json
    finally:
        d.cli("network", "delete", other)

    # The network's subnet cannot move away from its forwards' targets.
    moved = free_subnet()
    p = d.cli("network", "set", net, "ipv4.address=%s/24" % (moved.network_address + 1),
              check=False)
    assert p.returncode != 0 and "forward " + addr in p.stderr, p.stderr
    assert "outside" in p.stderr and network["c2"] in p.stderr, p.stderr
    assert d.api("GET", "/1.0/networks/" + net).json["metadata"]["config"]["ipv4.address"] == \
        network["gw"] + "/24"

    # Deleting the network deletes its forwards: a new network of that name has none.
    d.cli("network", "delete", net)
    assert addr not in nft_table(d)
    d.cli("network", "create", net, "ipv4.address=%s/24" % network["gw"], "ipv4.nat=false",
          "ipv6.address=none")
    assert d.api("GET", fwd_url(net)).json["metadata"] == []


def test_forward_cli(daemon, network, dummy):
    d = daemon
    net = network["name"]
    addr = dummy[0]
    tgt = network["c"]

    out = d.cli("network", "forward", "create", net, addr, "--description", "cli",
                "target_address=" + tgt).stdout
    assert addr in out
    d.cli("network", "forward", "port", "add", net, addr, "tcp", "8080-8081", tgt, "80-81")
    d.cli("network", "forward", "port", "add", net, addr, "udp", "53", network["c2"])
    listing = json.loads(d.cli("network", "forward", "list", net, "--format", "json").stdout)
    assert [f["listen_address"] for f in listing] == [addr]
    table = d.cli("network", "forward", "list", net).stdout
    assert addr in table and tgt in table and "2" in table
    shown = d.cli("network", "forward", "show", net, addr).stdout
    assert "listen_port: 8080-8081" in shown and "protocol: udp" in shown, shown
    assert d.cli("network", "forward", "get", net, addr, "target_address").stdout.strip() == tgt
    d.cli("network", "forward", "set", net, addr, "user.owner=me")
    assert d.cli("network", "forward", "get", net, addr, "user.owner").stdout.strip() == "me"
    d.cli("network", "forward", "unset", net, addr, "user.owner")
    assert d.cli("network", "forward", "get", net, addr, "user.owner").stdout.strip() == ""
    p = d.cli("network", "forward", "set", net, addr, "target_address=10.255.255.7",
              check=False)
    assert p.returncode != 0 and "target_address" in p.stderr and "10.255.255.7" in p.stderr
    rules = nft_table(d)
    assert "tcp dport 8080-8081 dnat ip to %s" % tgt in rules, rules
    assert "udp dport 53 dnat ip to %s" % network["c2"] in rules, rules

    d.cli("network", "forward", "port", "remove", net, addr, "udp")
    assert "udp dport 53" not in nft_table(d)
    p = d.cli("network", "forward", "port", "remove", net, addr, "udp", check=False)
    assert p.returncode != 0 and "no port" in p.stderr

    yaml_doc = ("description: edited\nconfig: {}\nports:\n- protocol: tcp\n  listen_port: 9000\n"
                "  target_address: %s\n  target_port: 80\n" % tgt)
    d.cli("network", "forward", "edit", net, addr, input=yaml_doc)
    fw = d.api("GET", fwd_url(net, addr)).json["metadata"]
    assert fw["description"] == "edited" and fw["config"] == {}
    assert fw["ports"][0]["listen_port"] == "9000" and fw["ports"][0]["target_port"] == "80"
    assert "tcp dport 9000 dnat ip to %s:80" % tgt in nft_table(d)

    p = d.cli("network", "forward", "show", net, "198.18.255.254", check=False)
    assert p.returncode != 0 and "not found" in p.stderr
    d.cli("network", "forward", "delete", net, addr)
    assert d.api("GET", fwd_url(net)).json["metadata"] == []
    assert "dnat" not in nft_table(d)


def test_foreign_forward_drop_is_reported(daemon, network):
    d = daemon
    net = network["name"]
    table = "lxmtest_" + uuid.uuid4().hex[:8]
    st = d.api("GET", "/1.0/networks/%s/state" % net).json["metadata"]
    assert table not in (st.get("forward_drop") or "")
    main = d.api("GET", "/1.0/networks/" + net).json["metadata"]
    assert "forward_drop" not in main
    # The throwaway table drops forwarded packets for as short a time as the checks take.
    p = subprocess.run(["nft", "add table inet %s { chain lxmtestfwd { type filter hook forward "
                        "priority 0; policy drop; }; }" % table], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    try:
        # A network created now is warned about, naming the table, the chain and the cause.
        net2 = "lxmg" + uuid.uuid4().hex[:8]
        d.cli("network", "create", net2, "ipv4.address=none", "ipv6.address=none")
        st = d.api("GET", "/1.0/networks/%s/state" % net).json["metadata"]
        info = d.cli("network", "info", net).stdout
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
        d.cli("network", "delete", net2, check=False)
    assert table not in subprocess.run(["nft", "list", "tables"], capture_output=True,
                                       text=True).stdout
    assert "table inet %s chain lxmtestfwd" % table in st["forward_drop"], st
    assert "table inet %s chain lxmtestfwd" % table in info and "Warning" in info, info
    log = d.log_text()
    line = [ln for ln in log.splitlines() if table in ln and net2 in ln]
    assert line and "policy drop" in line[0] and "cannot" in line[0], log[-2000:]
    main = d.api("GET", "/1.0/networks/" + net).json["metadata"]
    assert "forward_drop" not in main and table not in json.dumps(main)
    # Gone once the table is.
    st = d.api("GET", "/1.0/networks/%s/state" % net).json["metadata"]
    assert table not in (st.get("forward_drop") or "")
