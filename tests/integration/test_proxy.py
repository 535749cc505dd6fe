"""Proxy devices as a user sees them.

NAT mode: a busybox container with a nic on a managed network the test creates (static
ipv4.address) and a proxy device listen=tcp:0.0.0.0:PORT connect=tcp:<its address>:80 nat=true
answers the host's connections to 127.0.0.1:PORT with what its web server serves; the DNAT rule is
in lxmd's nftables table only while the container runs and moves when the device changes.

Without NAT (LXD's default): one lxm-proxy process per device listens on the host (or, with
bind=instance, in the container) and connects on the other side, so listen=tcp:127.0.0.1:PORT
connect=tcp:127.0.0.1:80 reaches a server on the container's own loopback; UDP, port ranges,
hot-plug, stop, delete, an lxmd restart (the process is kept, not doubled) and a port in use.

Bad proxy keys are refused naming the device and the key. Traffic goes only over loopback, the
container's loopback and the bridge this test creates (a 10.X.Y.0/24 that collides with no route
or address of the host); containers, networks, forwarders and lxmd's nftables table are gone at
the end even when a step fails."""

import http.server
import os
import signal
import socket
import subprocess
import threading

import pytest

import lxmtest
from lxmtest import made_fixture, patch, sh, unique, wait_for
import nettest
from nettest import create_network, delete_network, fetch, free_port, nft_table

BUSYBOX = "/bin/busybox"

pytestmark = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                                reason="busybox-static is not installed")


daemon = nettest.daemon


@pytest.fixture
def network(daemon):
    """A managed network of this test's own; deleted (with its bridge) at teardown."""
    name, net, gw = create_network(daemon, "lxmt", "ipv4.nat=false", "ipv6.address=none")
    yield {"name": name, "gw": gw, "c": str(net.network_address + 10)}
    delete_network(daemon, name)


made = made_fixture("daemon")


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

    # A range of listen ports to one port: one rule for the range, each port answers.
    p3 = free_port()
    while subprocess.run(["ss", "-Htln", "sport = :%d" % (p3 + 1)], capture_output=True,
                         text=True).stdout.strip():
        p3 = free_port()
    done = patch(d, c, {"devices": {"web": proxy(p3, network["c"],
                                                 listen="tcp:0.0.0.0:%d-%d" % (p3, p3 + 1))}})
    assert done["status"] == "Success", done
    rules = nft_table(d)
    assert "dport %d-%d dnat ip to %s:80" % (p3, p3 + 1, network["c"]) in rules, rules
    assert fetch("http://127.0.0.1:%d/index.html" % p3) == "hello-proxy\n"
    assert fetch("http://127.0.0.1:%d/index.html" % (p3 + 1)) == "hello-proxy\n"
    done = patch(d, c, {"devices": {"web": proxy(port2, network["c"])}})
    assert done["status"] == "Success", done

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
        (proxy(8080, addr, nat="yes"), "nat"),
        (proxy(8080, addr, listen="sctp:0.0.0.0:8080"), "listen"),
        (proxy(8080, addr, listen="tcp:0.0.0.0"), "listen"),
        (proxy(8080, addr, listen="tcp:0.0.0.0:70000"), "listen"),
        (proxy(8080, addr, listen="tcp:0.0.0.0:8080-8082", connect="tcp:%s:80-81" % addr),
         "as many ports"),
        (proxy(8080, addr, connect="udp:%s:80" % addr), "same protocol"),
        (proxy(8080, addr, connect="tcp:0.0.0.0:80"), "connect"),
        (proxy(8080, addr, bind="instance"), "bind"),
        (proxy(8080, addr, bind="guest", nat="false"), "bind"),
        (proxy(8080, addr, listen="unix:/run/x.sock", nat="false"), "unix"),
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


# ---------------------------------------------------------------- without NAT: lxm-proxy

UDP_ECHO_SRC = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* udp-echo PORT: answers every datagram on 127.0.0.1:PORT with "echo:" and the datagram. */
int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET }, from;
	char buf[2048], out[2100];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (argc != 2 || fd < 0)
		return 1;
	a.sin_port = htons(atoi(argv[1]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return 1;
	if (fork() > 0)
		return 0;
	setsid();
	for (;;) {
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);

		if (n < 0)
			continue;
		memcpy(out, "echo:", 5);
		memcpy(out + 5, buf, n);
		sendto(fd, out, n + 5, 0, (struct sockaddr *)&from, fl);
	}
}
"""


def fwd(listen, connect, **kw):
    dev = {"type": "proxy", "listen": listen, "connect": connect}
    dev.update(kw)
    return dev


def forwarders(d, device=None):
    """Pids of d's lxm-proxy processes (of one device when given)."""
    out = []
    for pid in lxmtest.pids_mentioning(d.root):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv[0].endswith(b"/lxm-proxy"):
            continue
        if device is None or device.encode() in argv[argv.index(b"--device") + 1:][:1]:
            out.append(pid)
    return out


def fetch_http(port, path="/index.html"):
    return fetch("http://127.0.0.1:%d%s" % (port, path))


def udp_ask(port, data, timeout=2):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recvfrom(4096)[0]
        except OSError:
            return None


def devices_of(d, name):
    return d.api("GET", "/1.0/instances/" + name).json["metadata"]["devices"]


@pytest.fixture
def plain(lxmd_factory):
    """A private lxmd without networks; no forwarder of it survives the test."""
    d = lxmd_factory()
    d.start()
    yield d
    assert wait_for(lambda: not forwarders(d), timeout=10), forwarders(d)


# Names of plain's containers: deleted (forced) at teardown, before plain's checks.
pmade = made_fixture("plain")


def start_web(d, c, port, text, docroot="/srv"):
    """busybox httpd on the container's 127.0.0.1:port serving text."""
    sh(d, c, "ip link set lo up; mkdir -p %s && echo %s > %s/index.html && "
             "busybox httpd -p 127.0.0.1:%d -h %s" % (docroot, text, docroot, port, docroot))


def test_proxy_to_the_containers_loopback(plain, pmade):
    """The issue's example: listen on the host, connect to the container's 127.0.0.1."""
    d = plain
    c = unique("c")
    pmade.append(c)
    hport = free_port()
    d.cli("launch", "busybox", c, timeout=120)
    start_web(d, c, 80, "hello-loopback")
    assert fetch_http(hport) is None

    done = patch(d, c, {"devices": {"web": fwd("tcp:127.0.0.1:%d" % hport,
                                                "tcp:127.0.0.1:80")}})
    assert done["status"] == "Success", done
    pids = forwarders(d, "web")
    assert len(pids) == 1, pids
    assert fetch_http(hport) == "hello-loopback\n"
    # Many requests, and a large body: the copy loop with backpressure.
    big = "x" * (3 << 20)
    sh(d, c, "busybox dd if=/dev/zero bs=1048576 count=3 2>/dev/null | tr '\\0' x "
             "> /srv/big.txt")
    assert fetch_http(hport, "/big.txt") == big
    for _ in range(20):
        assert fetch_http(hport) == "hello-loopback\n"
    # Its own session: not lxmd's child, nor in lxmd's process group; no capabilities left.
    assert os.getsid(pids[0]) != os.getsid(d.pid)
    with open("/proc/%d/status" % pids[0]) as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    assert int(status["PPid"]) != d.pid
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status

    # Hot-unplug: the process goes, the port is free again.
    d.cli("config", "device", "remove", c, "web")
    assert forwarders(d) == []
    assert fetch_http(hport) is None


def test_proxy_bind_instance_udp_and_ranges(plain, pmade):
    d = plain
    c = unique("c")
    pmade.append(c)
    d.cli("launch", "busybox", c, timeout=120)
    sh(d, c, "ip link set lo up")

    # bind=instance: the container connects to its own 127.0.0.1:cport and reaches the host's
    # server on 127.0.0.1:hport.
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello-host\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        hport = srv.server_address[1]
        cport = 18080
        done = patch(d, c, {"devices": {"back": fwd("tcp:127.0.0.1:%d" % cport,
                                                     "tcp:127.0.0.1:%d" % hport,
                                                     bind="instance")}})
        assert done["status"] == "Success", done
        out = sh(d, c, "busybox wget -qO- http://127.0.0.1:%d/" % cport).stdout
        assert out == "hello-host\n", out
    finally:
        srv.shutdown()
        srv.server_close()

    # UDP: an echo server on the container's loopback, through the host's 127.0.0.1:uport.
    with lxmtest.static_program("udp-echo", UDP_ECHO_SRC) as prog:
        d.cli("file", "push", "--mode", "0755", prog, "%s/bin/udp-echo" % c)
    sh(d, c, "/bin/udp-echo 5300")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        uport = s.getsockname()[1]
    done = patch(d, c, {"devices": {"dns": fwd("udp:127.0.0.1:%d" % uport,
                                                "udp:127.0.0.1:5300")}})
    assert done["status"] == "Success", done
    assert udp_ask(uport, b"ping") == b"echo:ping"
    assert udp_ask(uport, b"pong") == b"echo:pong"

    # A port range, one to one: two web servers, two host ports.
    p0 = free_port()
    while True:
        with socket.socket() as s1:
            try:
                s1.bind(("127.0.0.1", p0 + 1))
                break
            except OSError:
                p0 = free_port()
    start_web(d, c, 81, "web-a", "/srv/a")
    start_web(d, c, 82, "web-b", "/srv/b")
    done = patch(d, c, {"devices": {"range": fwd("tcp:127.0.0.1:%d-%d" % (p0, p0 + 1),
                                                  "tcp:127.0.0.1:81-82")}})
    assert done["status"] == "Success", done
    assert fetch_http(p0) == "web-a\n"
    assert fetch_http(p0 + 1) == "web-b\n"
    assert len(forwarders(d)) == 3, forwarders(d)

    # Stop: every forwarder goes with the container, and its pidfiles.
    piddir = os.path.join(d.root, "run", "proxy.d", c)
    assert sorted(os.listdir(piddir)) == ["back.pid", "dns.pid", "range.pid"], piddir
    d.cli("stop", "-f", c, timeout=60)
    assert wait_for(lambda: not forwarders(d), timeout=10), forwarders(d)
    assert fetch_http(p0) is None
    assert not os.path.exists(piddir)

    # Start again: they are back.
    d.cli("start", c, timeout=60)
    assert len(forwarders(d)) == 3, forwarders(d)
    assert udp_ask(uport, b"again", timeout=1) is None  # the echo server is gone with the stop
    sh(d, c, "ip link set lo up; /bin/udp-echo 5300")
    assert udp_ask(uport, b"again") == b"echo:again"

    # Delete while it runs: no forwarder is left.
    d.cli("delete", "-f", c, timeout=60)
    pmade.remove(c)
    assert wait_for(lambda: not forwarders(d), timeout=10), forwarders(d)


def test_proxy_survives_lxmd_restart(plain, pmade):
    d = plain
    c = unique("c")
    pmade.append(c)
    hport = free_port()
    d.cli("init", "busybox", c, timeout=120)
    done = patch(d, c, {"devices": {"web": fwd("tcp:127.0.0.1:%d" % hport,
                                                "tcp:127.0.0.1:80")}})
    assert done["status"] == "Success", done
    assert forwarders(d) == []
    d.cli("start", c, timeout=60)
    start_web(d, c, 80, "hello-restart")
    before = forwarders(d, "web")
    assert len(before) == 1, before
    assert fetch_http(hport) == "hello-restart\n"

    d.restart()
    assert forwarders(d, "web") == before
    assert fetch_http(hport) == "hello-restart\n"

    # The device changes while lxmd is down: the old forwarder is replaced, not doubled.
    hport2 = free_port()
    d.stop_checked()
    assert forwarders(d, "web") == before
    assert fetch_http(hport) == "hello-restart\n"
    d.start()
    done = patch(d, c, {"devices": {"web": fwd("tcp:127.0.0.1:%d" % hport2,
                                                "tcp:127.0.0.1:80")}})
    assert done["status"] == "Success", done
    after = forwarders(d, "web")
    assert len(after) == 1 and after != before, (before, after)
    assert fetch_http(hport2) == "hello-restart\n"
    assert fetch_http(hport) is None

    # A forwarder killed while lxmd is down is started again when lxmd comes back.
    d.stop_checked()
    os.kill(after[0], signal.SIGKILL)
    assert wait_for(lambda: not forwarders(d), timeout=5)
    d.start()
    again = forwarders(d, "web")
    assert len(again) == 1 and again != after, again
    assert fetch_http(hport2) == "hello-restart\n"


def test_proxy_port_in_use_fails_cleanly(plain, pmade):
    d = plain
    c = unique("c")
    pmade.append(c)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        want = "proxy device 'web': listen tcp:127.0.0.1:%d: Address already in use" % port

        # A start fails with the message; nothing runs afterwards.
        d.cli("init", "busybox", c, timeout=120)
        done = patch(d, c, {"devices": {"web": fwd("tcp:127.0.0.1:%d" % port,
                                                    "tcp:127.0.0.1:80")}})
        assert done["status"] == "Success", done
        p = d.cli("start", c, check=False, timeout=60)
        assert p.returncode != 0
        assert want in p.stderr, p.stderr
        wait_for(lambda: d.api("GET", "/1.0/instances/" + c).json["metadata"]["status"]
                 == "Stopped", timeout=30)
        assert forwarders(d) == []

        # A hot-plug fails with the message, saves nothing and keeps the forwarder it had.
        free = free_port()
        done = patch(d, c, {"devices": {"web": fwd("tcp:127.0.0.1:%d" % free,
                                                    "tcp:127.0.0.1:80")}})
        assert done["status"] == "Success", done
        d.cli("start", c, timeout=60)
        start_web(d, c, 80, "still-here")
        before = forwarders(d)
        assert len(before) == 1
        r = d.api("PATCH", "/1.0/instances/" + c, {"devices": {
            "web": fwd("tcp:127.0.0.1:%d" % port, "tcp:127.0.0.1:80")}})
        assert r.status == 400, r
        assert want in r.json["error"], r.json
        r = d.api("PATCH", "/1.0/instances/" + c, {"devices": {
            "web2": fwd("udp:127.0.0.1:%d" % free, "udp:127.0.0.1:53"),
            "web3": fwd("tcp:127.0.0.1:%d" % port, "tcp:127.0.0.1:80")}})
        assert r.status == 400, r
        assert "proxy device 'web3'" in r.json["error"], r.json
        devs = devices_of(d, c)
        assert devs["web"]["listen"] == "tcp:127.0.0.1:%d" % free, devs
        assert "web2" not in devs and "web3" not in devs, devs
        assert fetch_http(free) == "still-here\n"
        assert len(forwarders(d)) == 1, forwarders(d)
