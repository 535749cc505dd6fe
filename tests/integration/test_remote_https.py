"""lxm's remotes over HTTPS with client certificates: `lxm remote add` pins the server's
certificate and redeems a join token, then `list`, `launch`, `exec` and `info` work on REMOTE:
names; a certificate that is not the pinned one is refused, a token works once. Two ways: against
a second private lxmd listening on 127.0.0.1 (core.https_address), and against a small Python TLS
server that requires a client certificate and serves /1.0, so that the client's TLS is exercised
on its own. Traffic to 127.0.0.1 only."""

import base64
import hashlib
import http.server
import json
import os
import pty
import select
import ssl
import threading

import pytest

import sstreams_server
from nettest import free_port
from lxmtest import cli_failed as failed, make_cert, unique


def fingerprint_file(crt):
    with open(crt) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def make_token(name, fp, port, secret, dead_first=False):
    addrs = (["127.0.0.1:1"] if dead_first else []) + ["127.0.0.1:%d" % port]
    doc = {"client_name": name, "fingerprint": fp, "addresses": addrs,
           "secret": secret, "expires_at": "2099-01-01T00:00:00Z"}
    return base64.b64encode(json.dumps(doc).encode()).decode()


@pytest.fixture
def conf(tmp_path):
    d = tmp_path / "conf"
    return {"LXM_CONF": str(d)}


# ---- against a Python TLS server ----

class FakeServer:
    """An HTTPS server that requires a client certificate (the one in trusted_ca) and answers
    GET /1.0, GET /1.0/instances and POST /1.0/certificates like LXD, recording what it saw."""

    def __init__(self, tmp, client_crt):
        self.crt, self.key = make_cert(tmp, "fakeserver")[:2]
        self.fp = fingerprint_file(self.crt)
        self.client_fp = fingerprint_file(client_crt)
        self.port = free_port()
        self.secret = "0123456789abcdef"
        # Its first address answers nobody: the client tries the next.
        self.token = make_token("me", self.fp, self.port, self.secret, dead_first=True)
        self.trusted = set()
        self.seen = []  # (method, path, peer certificate fingerprint)
        self.conns = []  # the client's address and port of each request
        self.posts = []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def peer(self):
                der = self.connection.getpeercert(binary_form=True)
                return hashlib.sha256(der).hexdigest() if der else None

            def do_GET(self):
                peer = self.peer()
                srv.seen.append(("GET", self.path, peer))
                srv.conns.append(self.client_address)
                trusted = peer in srv.trusted
                if self.path == "/1.0":
                    return self.reply(200, {"type": "sync", "status": "Success",
                                            "status_code": 200, "metadata": {
                                                "api_version": "1.0", "api_extensions": [],
                                                "auth": "trusted" if trusted else "untrusted",
                                                "public": False}})
                if not trusted:
                    return self.reply(403, {"type": "error", "error": "not authorized",
                                            "error_code": 403})
                if self.path.startswith("/1.0/instances"):
                    return self.reply(200, {"type": "sync", "status": "Success",
                                            "status_code": 200, "metadata": []})
                return self.reply(404, {"type": "error", "error": "not found",
                                        "error_code": 404})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                peer = self.peer()
                srv.seen.append(("POST", self.path, peer))
                srv.posts.append(body)
                if self.path == "/1.0/certificates" and body.get("password") == srv.token \
                        and srv.secret:
                    srv.secret = None  # single use
                    srv.trusted.add(peer)
                    return self.reply(200, {"type": "sync", "status": "Success",
                                            "status_code": 200, "metadata": {}})
                return self.reply(403, {"type": "error", "error": "no matching token",
                                        "error_code": 403})

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.crt, self.key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_crt)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def fake(tmp_path, conf):
    # The client's own certificate, made the way lxm makes it: lxm keeps one it finds.
    os.makedirs(conf["LXM_CONF"], mode=0o700)
    client_crt = make_cert(conf["LXM_CONF"], "client")[0]
    srv = FakeServer(str(tmp_path), client_crt)
    yield srv
    srv.close()


def test_fake_server_add_list_pin(lxmd, fake, conf, tmp_path):
    url = "https://127.0.0.1:%d" % fake.port
    # Without a terminal to ask and without --accept-certificate: refused, fingerprint shown.
    failed(lxmd.cli("remote", "add", "py", url, env=conf, check=False),
           "py", fake.fp, "--accept-certificate")
    # Accepted, but the server does not trust the client and there is no token.
    failed(lxmd.cli("remote", "add", "py", url, "--accept-certificate", env=conf, check=False),
           "py", "does not trust", "--token")
    pin = os.path.join(conf["LXM_CONF"], "servercerts", "py.crt")
    assert not os.path.exists(pin)
    assert "py" not in json.loads(lxmd.cli("remote", "list", "--format", "json",
                                           env=conf).stdout)

    # The token alone says where the server is and which certificate it has.
    lxmd.cli("remote", "add", "py", fake.token, env=conf)
    assert fingerprint_file(pin) == fake.fp
    post = fake.posts[-1]
    assert post["type"] == "client" and post["password"] == fake.token
    # The certificate it sends is the one it presents on the connection.
    assert hashlib.sha256(base64.b64decode(post["certificate"])).hexdigest() == fake.client_fp
    remotes = json.loads(lxmd.cli("remote", "list", "--format", "json", env=conf).stdout)
    assert remotes["py"]["addr"] == url and remotes["py"]["protocol"] == "lxd"
    assert remotes["py"]["auth_type"] == "tls"
    table = lxmd.cli("remote", "list", env=conf).stdout
    assert "AUTH TYPE" in table and "local (current)" in table

    before = len(fake.seen)
    lxmd.cli("list", "py:", env=conf)
    got = fake.seen[before:]
    # One kept-alive TLS connection carries the command's requests.
    assert len(got) >= 2 and len(set(fake.conns[before:])) == 1, fake.conns[before:]
    assert ("GET", "/1.0", fake.client_fp) in got
    assert any(m == "GET" and p.startswith("/1.0/instances") and peer == fake.client_fp
               for m, p, peer in got), got

    # The default remote.
    lxmd.cli("remote", "switch", "py", env=conf)
    assert lxmd.cli("remote", "get-default", env=conf).stdout.strip() == "py"
    before = len(fake.seen)
    lxmd.cli("list", env=conf)
    assert any(p.startswith("/1.0/instances") for _, p, _ in fake.seen[before:])
    lxmd.cli("remote", "switch", "local", env=conf)

    # Renamed, its pinned certificate follows it; set-url keeps it.
    lxmd.cli("remote", "rename", "py", "pz", env=conf)
    assert not os.path.exists(pin)
    lxmd.cli("list", "pz:", env=conf)
    lxmd.cli("remote", "set-url", "pz", "https://localhost:%d" % fake.port, env=conf)
    lxmd.cli("list", "pz:", env=conf)
    assert json.loads(lxmd.cli("remote", "list", "--format", "json", env=conf).stdout)[
        "pz"]["addr"] == "https://localhost:%d" % fake.port
    failed(lxmd.cli("remote", "set-url", "pz", "unix:///x/unix.socket", env=conf, check=False),
           "pz")
    lxmd.cli("remote", "rename", "pz", "py", env=conf)

    # Another certificate pinned: refused, naming the remote, before any request is sent.
    other = make_cert(str(tmp_path), "other")[0]
    with open(other) as f, open(pin, "w") as g:
        g.write(f.read())
    before = len(fake.seen)
    failed(lxmd.cli("list", "py:", env=conf, check=False), "remote 'py'", "pinned", fake.fp)
    assert fake.seen[before:] == []

    # A token for another server certificate is refused.
    lxmd.cli("remote", "remove", "py", env=conf)
    assert not os.path.exists(pin)
    bad = make_token("me", "00" * 32, fake.port, "x")
    failed(lxmd.cli("remote", "add", "py2", bad, env=conf, check=False), "py2", "the token is for")


def run_on_pty(argv, env, answer):
    """Runs argv on a terminal, answers the first question with answer; (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    out = b""
    answered = False
    while True:
        r, _, _ = select.select([fd], [], [], 30)
        if not r:
            os.kill(pid, 9)
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not answered and b"(y/n)" in out:
            os.write(fd, answer)
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_fake_server_prompt(lxmd, fake, conf):
    """On a terminal, the fingerprint is shown and the user's answer counts."""
    url = "https://127.0.0.1:%d" % fake.port
    env = lxmd.cli_env(conf)
    argv = [lxmd.lxm_bin, "remote", "add", "py", url]
    rc, out = run_on_pty(argv, env, b"n\n")
    assert rc != 0 and fake.fp in out and "not accepted" in out, out
    assert not os.path.exists(os.path.join(conf["LXM_CONF"], "servercerts", "py.crt"))
    rc, out = run_on_pty(argv + ["--token", fake.token], env, b"n\n")
    # A token names the server's certificate: nothing to ask.
    assert rc == 0 and "(y/n)" not in out, out
    assert "py" in json.loads(lxmd.cli("remote", "list", "--format", "json", env=conf).stdout)


# ---- against a second lxmd ----

def test_lxmd_remote(lxmd, r2, conf, tmp_path):
    url = "https://127.0.0.1:%d" % r2.https_port
    token = r2.cli("config", "trust", "add", "--name", "laptop", "-q").stdout.strip()
    lxmd.cli("remote", "add", "r2", url, "--accept-certificate", "--token", token, env=conf)
    certs = json.loads(r2.cli("config", "trust", "list", "--format", "json").stdout)
    assert [c["name"] for c in certs] == ["laptop"]
    client_fp = fingerprint_file(os.path.join(conf["LXM_CONF"], "client.crt"))
    assert certs[0]["fingerprint"] == client_fp
    assert "laptop" in r2.cli("config", "trust", "list").stdout

    # The token worked once: another client cannot reuse it.
    conf2 = {"LXM_CONF": str(tmp_path / "conf2")}
    failed(lxmd.cli("remote", "add", "again", url, "--accept-certificate", "--token", token,
                    env=conf2, check=False), "again", "already used")

    info = lxmd.cli("info", "r2:", env=conf).stdout
    assert info.strip()
    name = unique("c")
    lxmd.cli("list", "r2:", env=conf)
    try:
        lxmd.cli("launch", "busybox", "r2:" + name, env=conf, timeout=300)
        # It is on r2, not on the local lxmd.
        assert name in r2.cli("list", "--format", "csv", "-c", "n").stdout
        assert name not in lxmd.cli("list", "--format", "csv", "-c", "n").stdout
        assert name in lxmd.cli("list", "r2:", "--format", "csv", "-c", "n", env=conf).stdout
        p = lxmd.cli("exec", "r2:" + name, "--", "sh", "-c", "echo hi; exit 3", env=conf,
                     check=False)
        assert p.returncode == 3 and p.stdout == "hi\n", (p.returncode, p.stdout, p.stderr)
        # Under a terminal in the instance too (the control websocket as well).
        p = lxmd.cli("exec", "-t", "r2:" + name, "--", "sh", "-c", "tty >/dev/null && exit 4",
                     env=conf, check=False)
        assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
        assert "Status: RUNNING" in lxmd.cli("info", "r2:" + name, env=conf).stdout
        # Streamed bodies over TLS: r2's image is exported to the local lxmd's import.
        imgs = json.loads(lxmd.cli("image", "list", "r2:", "--format", "json", env=conf).stdout)
        fp = imgs[0]["fingerprint"]
        lxmd.cli("image", "copy", "r2:" + fp, "local:", env=conf, timeout=300)
        assert fp in [i["fingerprint"] for i in json.loads(
            lxmd.cli("image", "list", "--format", "json").stdout)]
        lxmd.cli("stop", "-f", "r2:" + name, env=conf)
        assert "STOPPED" in r2.cli("list", "--format", "csv", "-c", "ns").stdout
        lxmd.cli("delete", "r2:" + name, env=conf)
        assert name not in r2.cli("list", "--format", "csv", "-c", "n").stdout
        failed(lxmd.cli("delete", "r2:x", "local:y", env=conf, check=False), "different remotes")
    finally:
        r2.cli("delete", "-f", name, check=False)

    # A revoked client is refused.
    r2.cli("config", "trust", "remove", client_fp)
    failed(lxmd.cli("list", "r2:", env=conf, check=False))

    # Another certificate pinned: refused, naming the remote.
    other = make_cert(str(tmp_path), "other")[0]
    pin = os.path.join(conf["LXM_CONF"], "servercerts", "r2.crt")
    with open(other) as f, open(pin, "w") as g:
        g.write(f.read())
    failed(lxmd.cli("info", "r2:", env=conf, check=False), "remote 'r2'", "pinned")


def test_lxmd_as_public_image_server(lxmd, r2, conf, tmp_path):
    # One machine serves its public images to others that it does not trust: `remote add
    # --public` needs no token, the untrusted client sees the public images only, and
    # `image copy` brings one to the local store.
    fps = {}
    for name, public in (("pub", True), ("priv", False)):
        path = sstreams_server.make_unified_image(str(tmp_path / name), name)
        r2.cli("image", "import", path, "--alias", "tiny-" + name, *(["--public"] if public
                                                                      else []))
        with open(path, "rb") as f:
            fps[name] = hashlib.sha256(f.read()).hexdigest()
    url = "https://127.0.0.1:%d" % r2.https_port
    # Without --public an untrusted remote is refused: it could do nothing.
    failed(lxmd.cli("remote", "add", "srv", url, "--accept-certificate", env=conf,
                    check=False), "srv", "--token")
    lxmd.cli("remote", "add", "srv", url, "--accept-certificate", "--public", env=conf)
    assert json.loads(r2.cli("config", "trust", "list", "--format", "json").stdout) == []
    listed = json.loads(lxmd.cli("image", "list", "srv:", "--format", "json", env=conf).stdout)
    assert [i["fingerprint"] for i in listed] == [fps["pub"]], listed
    lxmd.cli("image", "copy", "srv:tiny-pub", "local:", "--alias", "got-it", env=conf,
             timeout=120)
    local = json.loads(lxmd.cli("image", "list", "--format", "json").stdout)
    assert [(i["fingerprint"], [a["name"] for a in i["aliases"]]) for i in local] == \
        [(fps["pub"], ["got-it"])], local
    # The private one is not there for it; nothing else is allowed either.
    failed(lxmd.cli("image", "copy", "srv:tiny-priv", "local:", env=conf, check=False),
           "tiny-priv")
    failed(lxmd.cli("list", "srv:", env=conf, check=False))
