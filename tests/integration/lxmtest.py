"""Helpers for lxm's integration tests: a private lxmd on a temporary root, a tiny HTTP client over
its unix socket, raw-bytes access, an events websocket, and the CLI.

Stdlib only, plus python3-websocket (Debian) for the events stream and python3-yaml for CLI output.
Every daemon lives under a fresh /tmp/lxm-it-XXXX directory and is stopped (and checked) by its
owner; nothing here touches the host's /var/lib/lxm.
"""

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import http.client
import json
import os
import pty
import re
import shutil
import select
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import termios
import threading
import time
import uuid

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PREFIX = "lxm-it-"

# RFC 3339 date-time with a mandatory zone (Z or +hh:mm), optional fraction.
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

# LXD operation status codes.
STATUS_CODES = {100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 200, 400, 401}


def ws_connect(lxmd, op_id, secret, timeout=10):
    """A websocket of an operation (exec, console), on lxmd's unix socket."""
    import websocket  # python3-websocket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(lxmd.socket)
    ws = websocket.WebSocket()
    try:
        ws.connect("ws://localhost/1.0/operations/%s/websocket?secret=%s" % (op_id, secret),
                   socket=s, timeout=timeout)
    except BaseException:
        s.close()
        raise
    return ws


def ws_close(ws):
    try:
        ws.shutdown()
    except Exception:
        pass


def wait_for(pred, timeout=15, what="condition"):
    """Polls pred until it returns something true (returned), or fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def build_dir():
    d = os.environ.get("LXM_BUILD_DIR") or os.path.join(REPO, "build")
    if not os.path.isabs(d):
        d = os.path.join(REPO, d)
    return d


def lxmd_binary():
    return os.path.join(build_dir(), "lxmd", "lxmd")


def lxm_binary():
    return os.path.join(build_dir(), "lxm", "lxm")


def unique(name):
    """A name that cannot collide with anything on the host: lxm-it-<name>-<random>."""
    return "%s%s-%s" % (PREFIX, name, uuid.uuid4().hex[:6])


def is_rfc3339(value):
    return isinstance(value, str) and RFC3339.match(value) is not None


def rfc3339_fields(obj, path=""):
    """Yields (path, value) for every key that LXD defines as a timestamp."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = "%s.%s" % (path, k) if path else k
            if (k.endswith("_at") or k == "timestamp") and isinstance(v, str):
                yield p, v
            else:
                yield from rfc3339_fields(v, p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from rfc3339_fields(v, "%s[%d]" % (path, i))


def assert_timestamps(obj):
    bad = [(p, v) for p, v in rfc3339_fields(obj) if not is_rfc3339(v)]
    assert not bad, "timestamps not RFC 3339 with a zone: %r" % bad


def assert_error_envelope(resp, status):
    """An LXD error envelope whose error_code equals the HTTP status."""
    assert resp.status == status, "expected HTTP %d, got %d: %r" % (status, resp.status, resp.raw[:500])
    body = resp.json
    assert isinstance(body, dict), "error body is not a JSON object: %r" % resp.raw[:500]
    assert body.get("type") == "error", body
    assert body.get("error_code") == status, body
    assert isinstance(body.get("error"), str) and body["error"].strip(), body
    return body["error"]


def make_cert(tmp, name, curve="P-384"):
    """A self-signed EC certificate made with openssl, as a user would: (crt, key, PEM, sha256
    fingerprint)."""
    crt, key = os.path.join(tmp, name + ".crt"), os.path.join(tmp, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:%s" % curve, "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=%s" % name], check=True, capture_output=True)
    with open(crt) as f:
        pem = f.read()
    return crt, key, pem, hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def cli_failed(p, *words):
    """A CLI run that failed with an error naming each of words; returns its stderr."""
    assert p.returncode != 0, "expected a failure:\n%s\n%s" % (p.stdout, p.stderr)
    # lxm may say first that it made the client certificate.
    assert p.stderr.splitlines()[-1].startswith("Error: "), p.stderr
    for w in words:
        assert w in p.stderr, "%r not in %r" % (w, p.stderr)
    return p.stderr


def assert_sync(resp, status=200):
    assert resp.status == status, "expected HTTP %d, got %d: %r" % (status, resp.status, resp.raw[:500])
    body = resp.json
    assert isinstance(body, dict), resp.raw[:500]
    assert body.get("type") == "sync", body
    assert body.get("status") == "Success", body
    assert body.get("status_code") == 200, body
    assert body.get("error_code", 0) == 0, body
    assert body.get("error", "") == "", body
    return body.get("metadata")


def assert_async(resp):
    assert resp.status == 202, "expected HTTP 202, got %d: %r" % (resp.status, resp.raw[:500])
    body = resp.json
    assert body.get("type") == "async", body
    assert body.get("status_code") == 100, body
    assert body.get("status") == "Operation created", body
    op = body.get("metadata")
    assert isinstance(op, dict) and op.get("id"), body
    url = "/1.0/operations/" + op["id"]
    assert body.get("operation") == url, body
    assert resp.headers.get("Location") == url, dict(resp.headers)
    return op


# ---------------------------------------------------------------- HTTP over AF_UNIX

class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client on a unix socket; Host is "localhost" like pylxd's."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class Response:
    """status, headers (case-insensitive), json (parsed body or None), raw (bytes)."""

    def __init__(self, status, headers, raw, version=11):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.version = version
        try:
            self.json = json.loads(raw.decode("utf-8")) if raw else None
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def __iter__(self):
        return iter((self.status, self.headers, self.json))

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.raw[:300])


class Headers(dict):
    """A case-insensitive dict of response headers (last value wins)."""

    def __setitem__(self, k, v):
        super().__setitem__(k.lower(), v)

    def __getitem__(self, k):
        return super().__getitem__(k.lower())

    def get(self, k, default=None):
        return super().get(k.lower(), default)

    def __contains__(self, k):
        return super().__contains__(k.lower())


class RawConn:
    """One client connection on which bytes are written as given and responses parsed by hand,
    so that keep-alive, pipelining and connection closing can be observed."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        """Sends everything; a peer that stops reading and closes early is not an error here."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by lxmd")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, head_request=False):
        status_line = self._line().decode("latin-1")
        m = re.match(r"^HTTP/1\.([01]) (\d{3})( .*)?$", status_line)
        assert m, "malformed status line from lxmd: %r" % status_line
        version = 10 + int(m.group(1))
        status = int(m.group(2))
        headers = Headers()
        while True:
            line = self._line().decode("latin-1")
            if not line:
                break
            name, sep, value = line.partition(":")
            assert sep, "malformed header line from lxmd: %r" % line
            headers[name.strip()] = value.strip()
        if head_request or status in (101, 204, 304):
            body = b""
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._line()
        elif headers.get("Content-Length") is not None:
            body = self._exact(int(headers["Content-Length"]))
        else:
            # Delimited by the connection close.
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            body, self.buf = self.buf, b""
        return Response(status, headers, body, version)

    def is_closed(self, timeout=5):
        """True when the peer closes the connection (EOF) within timeout without sending more."""
        if self.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(old)
        if data:
            self.buf += data
            return False
        return True


def http_request(method, path, body=None, headers=None, version="1.1"):
    """Bytes of one request. body: dict/list (JSON), str or bytes."""
    headers = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s HTTP/%s" % (method, path, version), "Host: localhost"]
    if body is not None and "Transfer-Encoding" not in headers:
        headers.setdefault("Content-Length", str(len(body)))
        headers.setdefault("Content-Type", "application/json")
    for k, v in headers.items():
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def chunked(data, sizes):
    """data encoded as chunks of the given sizes (the rest in one last chunk), then the end."""
    out, pos = b"", 0
    for n in sizes:
        piece = data[pos:pos + n]
        if not piece:
            break
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
        pos += n
    if pos < len(data):
        out += b"%x\r\n%s\r\n" % (len(data) - pos, data[pos:])
    return out + b"0\r\n\r\n"


# ---------------------------------------------------------------- events websocket

class Events:
    """The /1.0/events websocket; recv() returns parsed events."""

    def __init__(self, path, types=None, timeout=10):
        import websocket  # python3-websocket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        url = "ws://localhost/1.0/events"
        if types:
            url += "?type=" + ",".join(types)
        self.ws = websocket.WebSocket()
        try:
            self.ws.connect(url, socket=s, timeout=timeout)
        except BaseException:
            s.close()
            raise
        self.seen = []

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass
        try:
            self.ws.shutdown()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def recv(self, timeout):
        import websocket

        self.ws.settimeout(timeout)
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        assert opcode == websocket.ABNF.OPCODE_TEXT, \
            "event frame is not TEXT (opcode %d): %r" % (opcode, data[:200])
        ev = json.loads(data.decode("utf-8"))
        self.seen.append(ev)
        return ev

    def wait_for(self, pred, timeout=15):
        """Returns the first event (already seen or new) for which pred is true; fails after timeout."""
        for ev in self.seen:
            if pred(ev):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching event within %ss; events seen: %s"
                                     % (timeout, json.dumps(self.seen)[:3000]))
            ev = self.recv(left)
            if ev is not None and pred(ev):
                return ev


# ---------------------------------------------------------------- the daemon

def pids_mentioning(text):
    """Pids of processes whose command line mentions text (our temp root): for leftover checks."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % d) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if text.encode() in cmd:
            out.append(int(d))
    return out


@contextlib.contextmanager
def reaped(proc):
    """Kills and reaps proc (a subprocess.Popen) on the way out if it is still running, so that a
    failed step leaves no process behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def rss_kib(pid):
    """Resident memory of process pid in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def check_slow_reader_backpressure(d, name, timeout):
    """`lxm exec name` writes 64 MiB to a reader that sleeps 3 s first: the daemon d must not
    buffer the output (its RSS grows by less than 16 MiB: at most a slow peer's queue and some
    slack) and the reader must get all of it."""
    size = 64 * 1024 * 1024
    proc = subprocess.Popen(["sh", "-c", '"$0" exec "$1" -- dd if=/dev/zero bs=65536 count=1024 '
                             '2>/dev/null | (sleep 3; wc -c)', d.lxm_bin, name],
                            env=d.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with reaped(proc):
        before = rss_kib(d.pid)
        time.sleep(2)
        during = rss_kib(d.pid)
        out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert int(out.split()[0]) == size, out
    assert during - before < 16 * 1024, "lxmd grew by %d KiB while the reader slept" % (
        during - before)


@contextlib.contextmanager
def static_program(name, source):
    """A C program compiled with gcc -static into a temp dir (removed on exit), for tests that
    copy it into a container's rootfs and run it there (busybox has no compiler)."""
    gcc = shutil.which("gcc")
    if not gcc:
        raise AssertionError("gcc is needed to build the static test program " + name)
    d = tempfile.mkdtemp(prefix="lxm-probe-")
    try:
        src = os.path.join(d, name + ".c")
        out = os.path.join(d, name)
        with open(src, "w") as f:
            f.write(source)
        p = subprocess.run([gcc, "-static", "-O2", "-o", out, src], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, "gcc -static failed:\n%s" % p.stderr
        yield out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def descendants(pid):
    """Pids below pid (children, grandchildren...): a container's init is its monitor's child."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def nft_table_name(root):
    """The nftables table of the lxmd of root: "lxm" for the default root, else "lxm_" and the
    first 8 hex of sha256(root) (as its cgroup names are tagged)."""
    root = root.rstrip("/")
    if root == "/var/lib/lxm":
        return "lxm"
    return "lxm_" + hashlib.sha256(root.encode()).hexdigest()[:8]


def cgroup_dirs(name):
    """The cgroup dirs lxm makes for an instance, on every hierarchy that has one."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            mnt = fields[4]
            # An lxmd with another root than /var/lib/lxm tags its names with its root:
            # lxm.payload.<tag>/<name> (v1), lxm.payload.<tag>.<name> (v2).
            for d in (os.path.join(mnt, "lxm.payload", name),
                      os.path.join(mnt, "lxm.payload." + name)):
                if os.path.isdir(d):
                    out.append(d)
            for e in os.listdir(mnt) if os.path.isdir(mnt) else ():
                if re.fullmatch(r"lxm\.payload\.[0-9a-f]{8}", e) and \
                        os.path.isdir(os.path.join(mnt, e, name)):
                    out.append(os.path.join(mnt, e, name))
                elif e == "lxm.payload.%s.%s" % (e[12:20], name) and \
                        re.fullmatch(r"[0-9a-f]{8}", e[12:20]):
                    out.append(os.path.join(mnt, e))
    return out


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def mounts_under(path):
    """Mount points at or below path (from /proc/self/mountinfo), deepest first."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path or mp.startswith(path + "/"):
                found.append(mp)
    return sorted(found, key=lambda m: m.count("/"), reverse=True)


def unmount_under(path):
    """Detaches (umount2 MNT_DETACH) everything mounted at or below path, deepest first."""
    libc = ctypes.CDLL(None, use_errno=True)
    for mp in mounts_under(path):
        libc.umount2(mp.encode(), 2)


class Lxmd:
    """A private lxmd: base dir /tmp/lxm-it-XXXX holding root/ (the daemon's --root, with the
    socket in it) and lxmd.stderr."""

    def __init__(self, log_level=None, base=None, storage="dir"):
        self.lxmd_bin = lxmd_binary()
        self.lxm_bin = lxm_binary()
        for b in (self.lxmd_bin, self.lxm_bin):
            if not os.access(b, os.X_OK):
                raise RuntimeError("%s not built (LXM_BUILD_DIR=%s)" % (b, build_dir()))
        self.base = base or tempfile.mkdtemp(prefix=PREFIX, dir="/tmp")
        # Unprivileged containers' root (a host uid of root's subordinate range) must traverse
        # down to their rootfs, as it can under /var/lib/lxm (0711).
        os.chmod(self.base, 0o711)
        self.root = os.path.join(self.base, "root")
        os.makedirs(self.root, exist_ok=True)
        self.socket = os.path.join(self.root, "unix.socket")
        self.stderr_path = os.path.join(self.base, "lxmd.stderr")
        self.log_level = log_level or os.environ.get("LXM_IT_LOG_LEVEL", "debug")
        self.proc = None
        self.history = []  # stderr of earlier runs (restarts), for failure reports
        # The storage backend that `lxm init --auto` sets up at the first start (as a user
        # does on a fresh server), or None for a server left uninitialised.
        self.storage = storage

    # ---- lifecycle

    def argv(self, extra=()):
        return [self.lxmd_bin, "--root", self.root, "--socket", self.socket,
                "--log-level", self.log_level, "--foreground"] + list(extra)

    def start(self, timeout=10):
        assert self.proc is None, "lxmd already started"
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=self._stderr)
        self.wait_ready(timeout)
        if self.storage and self.api("GET", "/1.0/storage-pools/default").status == 404:
            # No network: a bridge per test daemon would be host-wide residue (test_network.py
            # creates its own, with private names).
            self.cli("init", "--auto", "--storage-backend", self.storage, "--no-network")
        return self

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("lxmd exited with %d during startup:\n%s"
                                   % (self.proc.returncode, self.stderr_text()))
            try:
                r = self.api("GET", "/1.0", timeout=2)
                if r.status == 200:
                    return
                last = r
            except (OSError, http.client.HTTPException) as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("lxmd did not answer GET /1.0 on %s within %ss (last: %r)\n%s"
                           % (self.socket, timeout, last, self.stderr_text()))

    def stop(self, timeout=10):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
        self._stderr.close()
        return rc

    def stop_checked(self, timeout=10):
        rc = self.stop(timeout)
        assert rc == 0, "lxmd exited with %r after SIGTERM (expected 0 within %ss):\n%s" % (
            rc, timeout, self.stderr_text()[-6000:])

    def restart(self):
        self.stop_checked()
        self.start()

    def kill9(self):
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait()
        self._stderr.close()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def cleanup(self):
        """Stops whatever is left and removes the base directory. Returns leftover pids."""
        if self.proc is not None:
            self.stop()
        left = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            left = pids_mentioning(self.base)
            if not left:
                break
            time.sleep(0.1)
        for p in left:
            for q in [p] + descendants(p):
                try:
                    os.kill(q, signal.SIGKILL)
                except OSError:
                    pass
        # Instances' cgroups are outside the base dir: a leftover one is residue too.
        containers = os.path.join(self.root, "containers")
        names = os.listdir(containers) if os.path.isdir(containers) else []
        for name in names:
            for d in cgroup_dirs(name):
                left.append(d)
                for _ in range(50):
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)
        # The daemon's nftables table (its networks' NAT) outlives it: a leftover is residue.
        table = nft_table_name(self.root)
        if subprocess.run(["nft", "list", "table", "inet", table], capture_output=True,
                          check=False).returncode == 0:
            left.append("nftables table inet " + table)
            subprocess.run(["nft", "delete", "table", "inet", table], check=False)
        # A failing test may leave storage pools mounted: never delete through a mount.
        unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        return left

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_text(self):
        try:
            with open(os.path.join(self.root, "lxmd.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ---- clients

    def api(self, method, path, body=None, headers=None, timeout=30):
        """One request on a fresh connection. body: dict/list → JSON, str/bytes as given."""
        conn = UnixHTTPConnection(self.socket, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            data = body
            if body is not None and not isinstance(body, (bytes, str)):
                data = json.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            h = Headers()
            for k, v in r.getheaders():
                h[k] = v
            return Response(r.status, h, raw, r.version)
        finally:
            conn.close()

    def raw(self, data, timeout=10):
        """Sends data on a fresh connection and returns the (first) parsed response."""
        with RawConn(self.socket, timeout) as c:
            c.send(data)
            return c.read_response()

    def conn(self, timeout=10):
        return RawConn(self.socket, timeout)

    def events(self, types=None, timeout=10):
        return Events(self.socket, types, timeout)

    def cli_env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LXM_", "LXD_"))}
        env["LXM_DIR"] = self.root
        env.setdefault("LC_ALL", "C.UTF-8")
        if extra:
            env.update(extra)
        return env

    def cli(self, *args, check=True, env=None, input=None, timeout=60):
        p = subprocess.run([self.lxm_bin] + [str(a) for a in args], env=self.cli_env(env),
                           input=input if input is not None else "", capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("lxm %s exited %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(map(str, args)), p.returncode, p.stdout, p.stderr))
        return p

    def cli_popen(self, *args, env=None):
        """lxm running in the background (stdin closed, stdout/stderr as text pipes)."""
        return subprocess.Popen([self.lxm_bin] + [str(a) for a in args], env=self.cli_env(env),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    # ---- common API steps

    def wait_op(self, op_id, timeout=30):
        r = self.api("GET", "/1.0/operations/%s/wait?timeout=%d" % (op_id, timeout),
                     timeout=timeout + 10)
        return assert_sync(r)

    def create_instance(self, name, profiles=None, wait=True, prefix="/1.0/instances"):
        body = {"name": name, "source": {"type": "none"}}
        if profiles is not None:
            body["profiles"] = profiles
            if "default" not in profiles:
                # Without the default profile's root disk device, the instance names its own.
                body["devices"] = {"root": {"type": "disk", "path": "/", "pool": "default"}}
        r = self.api("POST", prefix, body)
        op = assert_async(r)
        if wait:
            done = self.wait_op(op["id"])
            assert done["status"] == "Success", done
            return done
        return op

    def delete_instance(self, name):
        r = self.api("DELETE", "/1.0/instances/" + name)
        op = assert_async(r)
        done = self.wait_op(op["id"])
        assert done["status"] == "Success", done
        return done

    def instance_names(self, prefix="/1.0/instances"):
        urls = assert_sync(self.api("GET", prefix))
        return sorted(u.rsplit("/", 1)[1] for u in urls)


def run_as_nobody(argv, env=None, timeout=30):
    """Runs argv as nobody:nogroup with no supplementary groups."""
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + argv,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def copy_for_nobody(binary, base):
    """A copy of binary that nobody can execute (the build tree may not be reachable by it)."""
    d = os.path.join(base, "bin")
    os.makedirs(d, exist_ok=True)
    os.chmod(base, 0o755)
    os.chmod(d, 0o755)
    dst = os.path.join(d, os.path.basename(binary))
    shutil.copy2(binary, dst)
    os.chmod(dst, 0o755)
    return dst


class FakeHTTPPeer:
    """A unix socket server that is not an LXD API: it answers every request with
    200 and an HTML body."""

    BODY = b"<html><body>hello, I am not lxd</body></html>\n"

    def __init__(self, path):
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(16)
        self.stop_flag = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.srv.settimeout(0.2)
        while not self.stop_flag:
            try:
                c, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(5)
                try:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = c.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                              b"Connection: close\r\n\r\n%s" % (len(self.BODY), self.BODY))
                except OSError:
                    pass

    def close(self):
        self.stop_flag = True
        self.srv.close()
        self.thread.join(5)
        try:
            os.unlink(self.path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise


def sh(d, name, script, check=True):
    """`sh -c script` run in instance name of d through `lxm exec`."""
    return d.cli("exec", name, "--", "sh", "-c", script, check=check)


def patch(d, name, body):
    """PATCH /1.0/instances/<name>, waited for: the finished operation (or the refusal)."""
    r = d.api("PATCH", "/1.0/instances/" + name, body)
    if r.status != 202:
        return r
    return d.wait_op(assert_async(r)["id"])


def made_fixture(daemon="lxmd"):
    """A fixture for a test module: the list of instance names the test makes, force-deleted at
    teardown through the fixture named daemon (while its lxmd runs)."""

    @pytest.fixture
    def made(request):
        d = request.getfixturevalue(daemon)
        names = []
        yield names
        if d.proc is not None:
            for n in names:
                d.cli("delete", "-f", n, check=False)

    return made


def run_under_pty(argv, steps, env, rows=33, cols=101, timeout=40, retry_enter=False):
    """Runs argv (with environment env) under a pty of cols x rows. steps: (text to wait for,
    action) where action is bytes to type or a callable given the master fd. With retry_enter,
    an Enter (b"\\r") is typed again while the next text does not come, for clients that may
    drop keys typed while they set up their terminal. Returns (wait status or None when it had
    to be killed, everything it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(99)
    out, status = b"", None
    steps = list(steps)
    deadline = time.monotonic() + timeout
    last, last_at = None, 0.0
    try:
        while status is None and time.monotonic() < deadline:
            while steps and steps[0][0].encode() in out:
                last, last_at = steps.pop(0)[1], time.monotonic()
                if callable(last):
                    last(fd)
                else:
                    os.write(fd, last)
                # Keys arrive as separate reads, as typed (lxc looks at one key per read).
                time.sleep(0.2)
            if retry_enter and last == b"\r" and time.monotonic() - last_at > 2:
                last_at = time.monotonic()
                os.write(fd, last)
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    pass  # EIO: the child is gone
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    return status, out.decode(errors="replace")
