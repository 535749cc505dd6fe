"""Abuse limits of lxmd's HTTPS listener: a per-address request rate (429 with Retry-After and
LXD's error envelope, the connection stays usable), the per-address connection cap under 300
connections at once (a trusted client elsewhere is still served), deadlines for handshakes,
slow headers and idle connections, bodies over the limit, clients that do not read what they
are sent, and lxmd's memory through it all. The limits are lowered for the tests with the
LXMD_TEST_HTTPS_* environment variables. Traffic to 127.0.0.0/8 only."""

import concurrent.futures
import http.client
import json
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from nettest import free_port
from lxmtest import assert_sync, make_cert, wait_for

MIB = 1 << 20
# RSS lxmd may gain over an attack (generous: allocator slack, TLS sessions, log buffers).
RSS_BOUND = 64 * MIB
ATTACKER = "127.0.0.1"
# The trusted client comes from another loopback address: the attacker fills 127.0.0.1's share.
FRIEND = "127.0.0.2"


def tls_context(cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


class Server:
    """A private lxmd with the HTTPS listener on 127.0.0.1:port and a trusted client
    certificate."""

    def __init__(self, lxmd, tmp):
        self.lxmd = lxmd
        self.port = free_port()
        assert_sync(lxmd.api("PATCH", "/1.0", {"config": {
            "core.https_address": "%s:%d" % (ATTACKER, self.port)}}))
        self.cert = make_cert(tmp, "trusted")
        assert_sync(lxmd.api("POST", "/1.0/certificates", {
            "certificate": self.cert[2], "name": "trusted", "type": "client"}))
        self.ctx = tls_context(self.cert)
        self.anon_ctx = tls_context()

    def client(self, source=ATTACKER, timeout=10):
        return http.client.HTTPSConnection(ATTACKER, self.port, context=self.ctx, timeout=timeout,
                                           source_address=(source, 0))

    def tls_socket(self, source=ATTACKER, cert=True, timeout=10):
        s = socket.create_connection((ATTACKER, self.port), timeout=timeout,
                                     source_address=(source, 0))
        try:
            return (self.ctx if cert else self.anon_ctx).wrap_socket(s)
        except BaseException:
            s.close()
            raise

    def rss(self):
        with open("/proc/%d/status" % self.lxmd.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for lxmd")

    def asan(self):
        """An ASan build keeps freed memory in quarantine: its RSS says nothing here."""
        with open("/proc/%d/maps" % self.lxmd.pid) as f:
            return "libasan" in f.read()

    def assert_rss_bounded(self, before, what):
        after = self.rss()
        if self.asan():
            return
        assert after - before < RSS_BOUND, "lxmd's RSS grew from %.1f to %.1f MiB over %s" % (
            before / MIB, after / MIB, what)

    def assert_served(self, source=FRIEND):
        """A trusted client on a fresh connection gets /1.0 and the instance list."""
        c = self.client(source)
        try:
            for path in ("/1.0", "/1.0/instances"):
                c.request("GET", path)
                r = c.getresponse()
                body = json.loads(r.read())
                assert r.status == 200, (path, r.status, body)
            assert body["metadata"] == [], body
        finally:
            c.close()


def limited_server(lxmd_factory, monkeypatch, **knobs):
    for k, v in knobs.items():
        monkeypatch.setenv("LXMD_TEST_HTTPS_" + k.upper(), str(v))
    d = lxmd_factory()
    d.start()
    tmp = tempfile.mkdtemp(prefix="lxm-https-limits-")
    return Server(d, tmp), tmp


@pytest.fixture
def server(lxmd_factory, monkeypatch, request):
    knobs = getattr(request, "param", {})
    srv, tmp = limited_server(lxmd_factory, monkeypatch, **knobs)
    yield srv
    subprocess.run(["rm", "-rf", tmp])


def try_recv(s):
    """What s has to read now without waiting: bytes, b"" once the peer has closed (or reset)
    it, None when nothing has come."""
    s.setblocking(False)
    try:
        return s.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return None
    except (OSError, ssl.SSLError):
        return b""
    finally:
        s.settimeout(10)


def read_response(s):
    """One HTTP response from s: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, "closed before a response: %r" % data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "closed inside a response: %r" % data
        body += chunk
    return head, body


def closed_within(s, timeout):
    """Waits for the peer to close s; returns the seconds it took, or None."""
    start = time.monotonic()
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                break
    except socket.timeout:
        return None
    except (OSError, ssl.SSLError):
        pass
    return time.monotonic() - start


@pytest.mark.parametrize("server", [{"rate": 5, "burst": 10}], indirect=True)
def test_rate_limit(server):
    c = server.client()
    statuses, limited = [], None
    for _ in range(30):
        c.request("GET", "/1.0/instances")
        r = c.getresponse()
        body = json.loads(r.read())
        statuses.append(r.status)
        if r.status == 429 and limited is None:
            limited = (r, body)
    served = statuses.count(200)
    # The burst, plus what refilled at 5 a second while the loop ran.
    assert 10 <= served <= 14 and statuses.count(429) == 30 - served, statuses
    assert statuses[:10] == [200] * 10, statuses
    r, body = limited
    assert body["type"] == "error" and body["error_code"] == 429, body
    assert "too many requests from 127.0.0.1" in body["error"], body
    assert "5 requests a second" in body["error"], body
    retry = int(r.getheader("Retry-After"))
    assert retry >= 1, r.getheaders()

    # A body sent while over the rate is dropped, not acted on; the connection goes on.
    c.request("POST", "/1.0/profiles", body=json.dumps({"name": "limited"}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 429, r.read()
    r.read()

    # After waiting as told, the same connection is served again.
    time.sleep(retry)
    c.request("GET", "/1.0/instances")
    r = c.getresponse()
    assert r.status == 200, r.read()
    r.read()
    c.close()
    assert server.lxmd.api("GET", "/1.0/profiles/limited").status == 404

    # Other addresses have their own budget; the unix socket has none.
    server.assert_served(FRIEND)
    for _ in range(50):
        assert server.lxmd.api("GET", "/1.0").status == 200

    # A websocket upgrade over the rate is refused the same way and its connection closes.
    s = server.tls_socket()
    for _ in range(20):
        s.sendall(b"GET /1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
    s.sendall(b"GET /1.0/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    data = b""
    s.settimeout(10)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.count(b"HTTP/1.1 429 ") >= 20 - 14, data[:400]
    assert b"HTTP/1.1 101" not in data and data.rstrip().endswith(b"}"), data[-400:]


@pytest.mark.parametrize("server", [{"handshake_timeout_ms": 3000}], indirect=True)
def test_many_connections(server):
    """300 connections at once from one address: lxmd takes its share (32), refuses the rest
    cleanly and goes on serving a trusted client from elsewhere, during and after."""
    rss_before = server.rss()
    ctx = tls_context()

    def attack(_):
        try:
            s = socket.create_connection((ATTACKER, server.port), timeout=20)
        except OSError:
            return None
        try:
            t = ctx.wrap_socket(s)
            t.settimeout(20)
            return t
        except (OSError, ssl.SSLError):
            s.close()
            return None

    with concurrent.futures.ThreadPoolExecutor(max_workers=300) as pool:
        futures = [pool.submit(attack, i) for i in range(300)]
        # A trusted client elsewhere is served while the attack runs.
        server.assert_served()
        socks = [f.result() for f in futures]
    held = [s for s in socks if s is not None]
    try:
        assert 1 <= len(held) <= 32, "%d of 300 connections from one address held" % len(held)
        assert server.lxmd.proc.poll() is None, "lxmd died"
        server.assert_served()
        rss_during = server.rss()
        log = server.lxmd.log_text()
        assert "refused: it has 32 connections open already" in log
        # 268 refusals, logged at most once a second each.
        refusals = log.count("refused: it has 32 connections open already")
        assert refusals < 30, "%d log lines for the refused connections" % refusals
    finally:
        for s in held:
            s.close()
    # Once the attacker has gone, its address is served again.
    wait_for(lambda: _served_ok(server, ATTACKER), 10, "127.0.0.1 served again")
    server.assert_rss_bounded(rss_before, "300 connections (%.1f MiB during)" % (rss_during / MIB))


def _served_ok(server, source):
    try:
        server.assert_served(source)
        return True
    except (OSError, ssl.SSLError, http.client.HTTPException, AssertionError):
        return False


def client_hello():
    """The first flight of a TLS client, to send in part."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tls_context().wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("server", [{"handshake_timeout_ms": 2000, "header_timeout_ms": 3000,
                                     "idle_timeout_ms": 6000}], indirect=True)
def test_slow_clients(server):
    """Deadlines: 2 s for the handshake (a client that sends half a ClientHello, one that sends
    nothing), 3 s from a request's first byte to its end (clients that send a header byte a
    second), 6 s for a connection that says nothing after its handshake."""
    rss_before = server.rss()
    hello = client_hello()
    start = time.monotonic()
    half = socket.create_connection((ATTACKER, server.port), source_address=(ATTACKER, 0))
    half.sendall(hello[:len(hello) // 2])
    silent = socket.create_connection((ATTACKER, server.port), source_address=(ATTACKER, 0))
    clients = {"half handshake": (half, start), "no handshake": (silent, start)}
    clients["idle"] = (server.tls_socket(), time.monotonic())
    loris = {}
    for i in range(6):
        loris["slow headers %d" % i] = server.tls_socket(cert=(i % 2 == 0))
    request = b"GET /1.0 HTTP/1.1\r\nHost: example\r\nX-Padding: " + b"a" * 100
    sent = 0
    dropped = {}
    try:
        # A header byte a second from each slow client; everyone is watched for the drop.
        loris_start = time.monotonic()
        for name, s in loris.items():
            clients[name] = (s, loris_start)
        while len(dropped) < len(clients) and time.monotonic() - start < 15:
            for name, s in loris.items():
                if name in dropped:
                    continue
                try:
                    s.sendall(request[sent:sent + 1])
                except (OSError, ssl.SSLError):
                    dropped[name] = time.monotonic() - loris_start
            sent += 1
            for name, (s, since) in clients.items():
                if name not in dropped:
                    data = try_recv(s)
                    # (A TLS 1.3 session ticket reads as nothing.)
                    if data == b"":
                        dropped[name] = time.monotonic() - since
            if len(dropped) == 3:
                # A trusted client is served meanwhile.
                server.assert_served()
            time.sleep(1)
        assert set(dropped) == set(clients), "still connected: %r" % (
            set(clients) - set(dropped))
        # After each deadline (checked each second, seen here within a second more), and not
        # before: the slow clients sent a byte a second, so no idle timeout saw them.
        for name, took in dropped.items():
            limit = 2 if "handshake" in name else 6 if name == "idle" else 3
            assert limit - 0.5 <= took <= limit + 2.5, (name, took, dropped)
        server.assert_served()
    finally:
        for s, _ in clients.values():
            s.close()
    log = server.lxmd.log_text()
    for why in ("TLS handshake timed out", "request too slow", "closed: idle"):
        assert why in log, why
    server.assert_rss_bounded(rss_before, "slow clients")


def test_body_over_limit(server):
    """Bodies over the 8 MiB limit: refused (413) as they come, not buffered."""
    rss_before = server.rss()
    # Announced: refused at the headers.
    s = server.tls_socket()
    s.sendall(b"POST /1.0/profiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (1 << 30))
    s.settimeout(10)
    head, body = read_response(s)
    assert head.startswith(b"HTTP/1.1 413 "), head
    body = json.loads(body)
    assert body["error_code"] == 413 and "larger than 8388608 bytes" in body["error"], body
    assert closed_within(s, 5) is not None
    s.close()

    # Chunked: refused once 8 MiB have come; the client cannot push much more.
    s = server.tls_socket()
    s.sendall(b"POST /1.0/profiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"%x\r\n%s\r\n" % (MIB, b" " * MIB)
    pushed, answer, error = 0, b"", None
    s.settimeout(5)
    try:
        while pushed < 256 * MIB and not answer:
            s.sendall(piece)
            pushed += MIB
            answer = try_recv(s)
    except (OSError, ssl.SSLError) as e:
        error = e
    s.close()
    assert (answer or b"").startswith(b"HTTP/1.1 413 ") or error is not None, (answer, pushed)
    # What lxmd took (8 MiB) plus what the socket buffers hold.
    assert pushed <= 40 * MIB, "pushed %d MiB before the refusal" % (pushed // MIB)
    server.assert_served()
    assert server.lxmd.api("GET", "/1.0/profiles").status == 200
    server.assert_rss_bounded(rss_before, "bodies over the limit")


@pytest.mark.parametrize("server", [{"rate": 1000000, "burst": 1000000,
                                     "idle_timeout_ms": 5000}], indirect=True)
def test_client_that_does_not_read(server):
    """Pipelined requests from a client that does not read the answers: lxmd stops taking its
    requests once about 1 MiB waits for it (no unbounded queue), serves the rest once it reads,
    and drops a client that never reads after the idle timeout."""
    n = 20000
    pipeline = b"GET /1.0 HTTP/1.1\r\nHost: x\r\n\r\n" * n
    rss_before = server.rss()

    def make():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((ATTACKER, 0))
        s.settimeout(30)
        s.connect((ATTACKER, server.port))
        return server.ctx.wrap_socket(s)

    reader, never = make(), make()
    errors = []

    def send(s):
        try:
            s.sendall(pipeline)
        except (OSError, ssl.SSLError) as e:
            errors.append(e)

    senders = [threading.Thread(target=send, args=(s,)) for s in (reader, never)]
    for t in senders:
        t.start()
    try:
        time.sleep(3)
        # Each /1.0 answer is some kB: 20000 of them unbounded would be tens of MiB.
        server.assert_rss_bounded(rss_before, "two clients that do not read")
        assert server.lxmd.proc.poll() is None
        server.assert_served()

        # The reader reads now: every answer comes, in order.
        got, buf = 0, b""
        reader.settimeout(30)
        while got < n:
            chunk = reader.recv(1 << 20)
            assert chunk, "connection closed after %d answers" % got
            buf += chunk
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end]
                assert head.startswith(b"HTTP/1.1 200 "), head
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(buf) < end + 4 + length:
                    break
                buf = buf[end + 4 + length:]
                got += 1
        assert got == n

        # The one that never reads is dropped after the idle timeout (reading it now would
        # let it go on: the log says when it went).
        wait_for(lambda: "the client does not read its responses" in server.lxmd.log_text(),
                 15, "the client that never reads to be dropped")
        assert closed_within(never, 10) is not None, "the client that never reads is connected"
    finally:
        reader.close()
        never.close()
        for t in senders:
            t.join(30)
