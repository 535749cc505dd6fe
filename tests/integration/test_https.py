"""The HTTPS listener (core.https_address) with mutual TLS and the trust store: untrusted clients
see only GET /1.0, trusted ones the API, revocation takes effect at the next request (same
connection), join tokens work once, read-only certificates only read. Traffic to 127.0.0.1 only."""

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import sstreams_server
from nettest import free_port
from lxmtest import assert_error_envelope, assert_sync, make_cert


class Client:
    """A keep-alive HTTPS connection to 127.0.0.1:port, with a client certificate or none."""

    def __init__(self, port, cert=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(cert[0], cert[1])
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)

    def req(self, method, path, body=None):
        data = json.dumps(body) if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        self.conn.request(method, path, body=data, headers=hdrs)
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None

    def peer_der(self):
        return self.conn.sock.getpeercert(binary_form=True)

    def close(self):
        self.conn.close()


def test_untrusted_then_trusted_then_revoked(lxmd, https):
    port, tmp = https
    cert = make_cert(tmp, "laptop")
    c = Client(port, cert)

    status, body = c.req("GET", "/1.0")
    assert status == 200 and body["metadata"]["auth"] == "untrusted", body
    assert "environment" not in body["metadata"] and "config" not in body["metadata"]
    status, body = c.req("GET", "/1.0/instances")
    assert status == 403 and body["error"] == "not authorized", body
    status, body = c.req("GET", "/1.0/nonexistent")
    assert status == 403, body

    # Trusted through the unix socket: the same keep-alive connection now gets the API.
    assert_sync(lxmd.api("POST", "/1.0/certificates", {"certificate": cert[2], "name": "laptop",
                                                       "type": "client"}))
    status, body = c.req("GET", "/1.0/instances")
    assert status == 200 and body["metadata"] == [], body
    status, body = c.req("GET", "/1.0")
    assert body["metadata"]["auth"] == "trusted", body

    # The server certificate: /1.0 shows the one the handshake presented.
    env = body["metadata"]["environment"]
    der = c.peer_der()
    assert env["certificate_fingerprint"] == hashlib.sha256(der).hexdigest()
    assert ssl.PEM_cert_to_DER_cert(env["certificate"]) == der
    assert env["addresses"] == ["127.0.0.1:%d" % port], env["addresses"]
    key = os.path.join(lxmd.root, "server.key")
    assert os.stat(key).st_mode & 0o777 == 0o600

    # The store lists it (fingerprint, name, type, PEM); a prefix finds it.
    certs = assert_sync(lxmd.api("GET", "/1.0/certificates?recursion=1"))
    assert [(x["fingerprint"], x["name"], x["type"], x["read_only"]) for x in certs] == \
        [(cert[3], "laptop", "client", False)], certs
    r = lxmd.api("GET", "/1.0/certificates/%s" % cert[3][:12])
    assert r.status == 200 and r.json["metadata"]["fingerprint"] == cert[3]
    r = lxmd.api("GET", "/1.0/certificates")
    assert r.json["metadata"] == ["/1.0/certificates/%s" % cert[3]]

    # Revoked: refused at once, on the same connection.
    r = lxmd.api("DELETE", "/1.0/certificates/%s" % cert[3])
    assert r.status == 200, r
    status, body = c.req("GET", "/1.0/instances")
    assert status == 403, body
    c.close()


def test_no_client_cert(lxmd, https):
    port, tmp = https
    c = Client(port)
    status, body = c.req("GET", "/1.0")
    assert body["metadata"]["auth"] == "untrusted"
    status, body = c.req("POST", "/1.0/instances", {"name": "x"})
    assert status == 403
    c.close()


def test_token_single_use(lxmd, https):
    port, tmp = https
    r = lxmd.api("POST", "/1.0/certificates", {"token": True, "name": "joiner",
                                               "type": "client"})
    assert r.status == 202, r
    meta = r.json["metadata"]["metadata"]
    tok = json.loads(base64.b64decode(meta["token"]))
    assert tok["client_name"] == "joiner" and tok["addresses"] == ["127.0.0.1:%d" % port]
    assert tok["secret"] == meta["secret"]
    srv = lxmd.api("GET", "/1.0").json["metadata"]["environment"]
    assert tok["fingerprint"] == srv["certificate_fingerprint"]

    a = Client(port, make_cert(tmp, "a"))
    status, body = a.req("POST", "/1.0/certificates", {"type": "client", "password":
                                                       meta["token"]})
    assert status == 200, body
    status, body = a.req("GET", "/1.0/instances")
    assert status == 200, body
    names = [x["name"] for x in lxmd.api("GET", "/1.0/certificates?recursion=1").json["metadata"]]
    assert names == ["joiner"]

    # Used: a second client cannot redeem it.
    b = Client(port, make_cert(tmp, "b"))
    status, body = b.req("POST", "/1.0/certificates", {"type": "client", "trust_token":
                                                       meta["token"]})
    assert status == 403, body
    status, body = b.req("GET", "/1.0/instances")
    assert status == 403
    # An untrusted client cannot add certificates directly, nor make tokens.
    status, body = b.req("POST", "/1.0/certificates", {"certificate": "x", "name": "n"})
    assert status == 403
    status, body = b.req("POST", "/1.0/certificates", {"token": True, "name": "n"})
    assert status == 403
    a.close()
    b.close()


def test_read_only(lxmd, https):
    port, tmp = https
    cert = make_cert(tmp, "viewer")
    der = base64.b64encode(ssl.PEM_cert_to_DER_cert(cert[2])).decode()
    assert_sync(lxmd.api("POST", "/1.0/certificates", {"certificate": der, "name": "viewer",
                                                       "read_only": True}))
    c = Client(port, cert)
    status, body = c.req("GET", "/1.0/instances")
    assert status == 200, body
    status, body = c.req("POST", "/1.0/profiles", {"name": "p1"})
    assert status == 403 and "read-only" in body["error"], body
    assert lxmd.api("GET", "/1.0/profiles/p1").status == 404
    # Made writable: allowed at the next request.
    assert_sync(lxmd.api("PATCH", "/1.0/certificates/%s" % cert[3], {"read_only": False}))
    status, body = c.req("POST", "/1.0/profiles", {"name": "p1"})
    assert status in (200, 201), body
    c.close()


def test_address_changes(lxmd, https):
    port, tmp = https
    c = Client(port)
    assert c.req("GET", "/1.0")[0] == 200

    # A port in use: 400 naming the address and cause, nothing stored, old listener stays.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    used = "127.0.0.1:%d" % blocker.getsockname()[1]
    msg = assert_error_envelope(lxmd.api("PATCH", "/1.0", {"config": {"core.https_address":
                                                                       used}}), 400)
    assert used in msg and "in use" in msg, msg
    blocker.close()
    cfg = lxmd.api("GET", "/1.0").json["metadata"]["config"]
    assert cfg["core.https_address"] == "127.0.0.1:%d" % port

    # Rebind elsewhere: the old port closes.
    port2 = free_port()
    assert_sync(lxmd.api("PATCH", "/1.0", {"config": {"core.https_address":
                                                      "127.0.0.1:%d" % port2}}))
    assert Client(port2).req("GET", "/1.0")[0] == 200
    with pytest.raises(OSError):
        Client(port).req("GET", "/1.0")

    # Restored at start.
    lxmd.stop()
    lxmd.start()
    assert Client(port2).req("GET", "/1.0")[0] == 200

    # Unset: the port closes.
    assert_sync(lxmd.api("PATCH", "/1.0", {"config": {"core.https_address": None}}))
    time.sleep(0.2)
    with pytest.raises(OSError):
        Client(port2).req("GET", "/1.0")
    assert lxmd.api("GET", "/1.0").json["metadata"]["environment"]["addresses"] == []


def test_limits(lxmd, https):
    """A client that never starts the handshake is dropped; one IP cannot hold more than its
    share of connections."""
    port, tmp = https
    socks = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", port))
        socks.append(s)
    time.sleep(0.5)
    closed = 0
    for s in socks:
        s.settimeout(0.2)
        try:
            if s.recv(1) == b"":
                closed += 1
        except socket.timeout:
            pass
        except OSError:
            closed += 1
    assert closed >= 40 - 33, "per-IP cap did not refuse: %d closed" % closed
    for s in socks:
        s.close()
    log = lxmd.log_text()
    assert "refused: it has 32 connections open already" in log


@pytest.mark.skipif(not shutil.which("lxc"), reason="lxd-client (lxc) is not installed")
def test_lxc_remote_add_token(lxmd, https):
    """An unmodified LXD 5.0 client joins with a token (it sends it as "password") and then
    uses the API; a second add with the same token fails."""
    port, tmp = https
    r = lxmd.api("POST", "/1.0/certificates", {"token": True, "name": "lxc-laptop"})
    token = r.json["metadata"]["metadata"]["token"]
    conf = os.path.join(tmp, "lxc")
    env = dict(os.environ, LXD_CONF=conf, HOME=tmp)

    def lxc(*args):
        return subprocess.run(["lxc"] + list(args), env=env, capture_output=True, text=True,
                              timeout=60)

    p = lxc("remote", "add", "lxm", token)
    assert p.returncode == 0, p.stderr
    p = lxc("info", "lxm:")
    assert p.returncode == 0 and "auth: trusted" in p.stdout, p.stdout + p.stderr
    p = lxc("list", "lxm:", "--format", "csv")
    assert p.returncode == 0 and p.stdout == "", p.stdout + p.stderr
    certs = lxmd.api("GET", "/1.0/certificates?recursion=1").json["metadata"]
    assert [c["name"] for c in certs] == ["lxc-laptop"]

    # The token is spent: another client configuration cannot use it.
    env["LXD_CONF"] = os.path.join(tmp, "lxc2")
    p = lxc("remote", "add", "lxm", token)
    assert p.returncode != 0 and "already used" in p.stderr, p.stderr

    # Revoked: the client is refused.
    env["LXD_CONF"] = conf
    assert_sync(lxmd.api("DELETE", "/1.0/certificates/%s" % certs[0]["fingerprint"]))
    p = lxc("list", "lxm:", "--format", "csv")
    assert p.returncode != 0, p.stdout


def test_handshake_timeout(lxmd, https):
    """A client that connects and never speaks TLS is dropped after the handshake timeout."""
    port, tmp = https
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(20)
    start = time.monotonic()
    assert s.recv(1) == b""
    took = time.monotonic() - start
    assert 8 < took < 15, took
    s.close()
    assert "TLS handshake timed out" in lxmd.log_text()


def test_websocket_over_tls(lxmd, https):
    """The events websocket works over TLS for a trusted client."""
    port, tmp = https
    cert = make_cert(tmp, "ws")
    assert_sync(lxmd.api("POST", "/1.0/certificates", {"certificate": cert[2], "name": "ws"}))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert[0], cert[1])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
    s.settimeout(10)
    s.sendall(b"GET /1.0/events?type=lifecycle HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    rest = head.split(b"\r\n\r\n", 1)[1]
    assert lxmd.api("POST", "/1.0/profiles", {"name": "wsprof"}).status in (200, 201)
    data = rest
    deadline = time.monotonic() + 10
    while b"wsprof" not in data and time.monotonic() < deadline:
        data += s.recv(65536)
    assert b"profile-created" in data and b"wsprof" in data, data[:500]
    s.close()


def test_untrusted_sees_public_images_only(lxmd, https):
    # lxmd as an image server for other hosts: an untrusted client lists, reads and exports the
    # public images and their aliases; the private ones do not exist for it.
    port, tmp = https
    fps = {}
    for name, public in (("pub", True), ("priv", False)):
        path = sstreams_server.make_unified_image(os.path.join(tmp, name), name)
        args = ["image", "import", path, "--alias", "img-" + name] + (["--public"] if public
                                                                     else [])
        lxmd.cli(*args)
        with open(path, "rb") as f:
            fps[name] = hashlib.sha256(f.read()).hexdigest()
    c = Client(port)
    status, body = c.req("GET", "/1.0/images?recursion=1")
    assert status == 200, body
    assert [i["fingerprint"] for i in body["metadata"]] == [fps["pub"]], body
    status, body = c.req("GET", "/1.0/images")
    assert body["metadata"] == ["/1.0/images/" + fps["pub"]], body
    status, body = c.req("GET", "/1.0/images/aliases")
    assert body["metadata"] == ["/1.0/images/aliases/img-pub"], body
    status, body = c.req("GET", "/1.0/images/aliases/img-pub")
    assert status == 200 and body["metadata"]["target"] == fps["pub"], body
    status, body = c.req("GET", "/1.0/images/aliases/img-priv")
    assert status == 404, body
    status, body = c.req("GET", "/1.0/images/" + fps["priv"])
    assert status == 404, body
    status, body = c.req("GET", "/1.0/images/" + fps["pub"])
    assert status == 200 and body["metadata"]["public"] is True, body
    # The export is the image file itself.
    c.conn.request("GET", "/1.0/images/%s/export" % fps["pub"])
    r = c.conn.getresponse()
    data = r.read()
    assert r.status == 200 and hashlib.sha256(data).hexdigest() == fps["pub"]
    c.conn.request("GET", "/1.0/images/%s/export" % fps["priv"])
    r = c.conn.getresponse()
    r.read()
    assert r.status == 404
    # Nothing else: no writes to images.
    status, body = c.req("DELETE", "/1.0/images/" + fps["pub"])
    assert status == 403, body
    c.close()
