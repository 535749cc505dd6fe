"""lxm-agent on its own (no VM, no lxmd): the binary is static, it keeps reopening its port when
the host goes away and says HELLO again when it comes back, and random frames never kill it.

The exec, pty, signal, flow-control and file tests drive the agent with lxmd's own client in
tests/unit/test-agent.c; these tests speak the wire format (lxmd/vm/agent-proto.h) directly.
"""

import os
import random
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from lxmtest import REPO, build_dir

HELLO, EXEC, STARTED, STDIN, STDIN_EOF, STDOUT, STDERR, RESIZE, SIGNAL, EXIT = range(1, 11)
FILE_GET, FILE, FILE_PUT, DATA, END, RESULT, ERROR, WINDOW, CLOSE = range(11, 20)


def agent_binary():
    path = os.path.join(build_dir(), "lxmd", "vm", "agent", "lxm-agent")
    if not os.access(path, os.X_OK):
        pytest.skip("lxm-agent not built in " + build_dir())
    return path


def frame(ftype, session, payload=b""):
    return b"LA" + bytes([ftype, 0]) + struct.pack(">II", session, len(payload)) + payload


def s(text):
    b = text.encode()
    return struct.pack(">I", len(b)) + b


def strv(items):
    return struct.pack(">I", len(items)) + b"".join(s(x) for x in items)


def hello(nonce):
    return frame(HELLO, 0, struct.pack(">III", 1, 1, nonce) + s("") + s(""))


class Conn:
    """One end of the agent's byte stream, with a frame reader."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_frame(self, timeout=5.0):
        end = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 12:
                n = struct.unpack(">I", self.buf[8:12])[0]
                if len(self.buf) >= 12 + n:
                    f = (self.buf[2], struct.unpack(">I", self.buf[4:8])[0], self.buf[12:12 + n])
                    self.buf = self.buf[12 + n:]
                    return f
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise AssertionError("no frame from the agent within %.1fs" % timeout)
            d = self.sock.recv(1 << 16)
            if not d:
                raise AssertionError("the agent closed the connection")
            self.buf += d

    def expect(self, ftype, timeout=5.0):
        while True:
            f = self.read_frame(timeout)
            if f[0] == ftype:
                return f


def hello_nonce(f):
    return struct.unpack(">III", f[2][:12])[2]


@pytest.fixture
def agent_proc():
    procs = []

    def start(*args):
        # Its log goes to a file: a pipe nobody reads could fill and stall it.
        log = tempfile.TemporaryFile()
        p = subprocess.Popen([agent_binary(), *map(str, args)], stderr=log,
                             pass_fds=[a for a in args if isinstance(a, int)])
        p.log = log
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.log.close()


def test_static_binary():
    """lxm-agent runs in any guest: no program interpreter (ld.so) in its ELF headers."""
    with open(agent_binary(), "rb") as f:
        elf = f.read(1 << 16)
    assert elf[:4] == b"\x7fELF"
    phoff, = struct.unpack("<Q", elf[32:40])
    phentsize, phnum = struct.unpack("<HH", elf[54:58])
    types = [struct.unpack("<I", elf[phoff + i * phentsize:phoff + i * phentsize + 4])[0]
             for i in range(phnum)]
    assert 3 not in types, "lxm-agent has a PT_INTERP: it is dynamically linked"


def test_port_reopened_when_host_returns(tmp_path, agent_proc):
    """The port mode: when the host side closes, the agent reopens the port and says HELLO
    (nonce 0) to the next host, as on a virtio-serial port whose host went and came back."""
    path = str(tmp_path / "port.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(10)
    p = agent_proc(path)
    try:
        c = Conn(srv.accept()[0])
        assert hello_nonce(c.expect(HELLO)) == 0
        c.send(hello(77))
        f = c.expect(HELLO)
        assert hello_nonce(f) == 77 and os.uname().release.encode() in f[2]
        c.send(frame(EXEC, 1, struct.pack(">IIIHH", 4 | 8, 0, 0, 0, 0) + s("") +
                     strv(["sh", "-c", "echo hi; exit 7"]) + strv(["PATH=/usr/bin:/bin"])))
        assert c.expect(STDOUT)[2] == b"hi\n"
        assert c.expect(EXIT)[2] == struct.pack(">II", 0, 7)
        c.sock.close()

        t0 = time.monotonic()
        c = Conn(srv.accept()[0])
        assert time.monotonic() - t0 < 5
        assert hello_nonce(c.expect(HELLO)) == 0
        c.send(hello(78))
        assert hello_nonce(c.expect(HELLO)) == 78
        c.send(frame(FILE_GET, 2, s("/nonexistent-lxm-agent-test")))
        f = c.expect(ERROR)
        errnum, = struct.unpack(">I", f[2][:4])
        assert errnum == 2 and b"/nonexistent-lxm-agent-test" in f[2]
        c.sock.close()
        assert p.poll() is None
    finally:
        srv.close()


def test_random_frames_never_kill_it(agent_proc):
    """Random garbage and random frames of the harmless kinds (never EXEC or FILE_PUT, which
    would run or write what chance made): the agent answers a HELLO afterwards."""
    a, b = socket.socketpair()
    p = agent_proc("--fd", b.fileno())
    b.close()
    c = Conn(a)
    c.expect(HELLO)
    rnd = random.Random(9)
    kinds = [HELLO, STDIN, STDIN_EOF, RESIZE, SIGNAL, FILE_GET, DATA, END, WINDOW, CLOSE,
             STDOUT, EXIT, 0, 20, 255]
    for i in range(3000):
        if i % 7 == 0:
            data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))
        else:
            payload = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 24)))
            t = rnd.choice(kinds)
            data = b"LA" + bytes([t, rnd.choice([0, 0, 0, 1])]) + \
                struct.pack(">II", rnd.randrange(4), len(payload) + rnd.choice([0, 0, 0, 3])) + \
                payload
        a.sendall(data)
        # Keep the agent's answers flowing so that neither side blocks.
        while select.select([a], [], [], 0)[0]:
            if not a.recv(1 << 16):
                raise AssertionError("the agent closed the connection")
    a.sendall(b"\0" * 64 + hello(4242))
    while True:
        f = c.expect(HELLO, timeout=10)
        if hello_nonce(f) == 4242:
            break
    assert p.poll() is None
    a.close()
    p.wait(timeout=5)


# ---------------------------------------------------------------- in a real guest

QEMU = shutil.which("qemu-system-x86_64")
BUSYBOX_BUILD = os.path.join(REPO, "templates", "busybox", "build")
# Shared with test_template_vm: Debian's cloud kernel package, downloaded once.
KERNEL_CACHE = "/var/cache/lxm-test/kernel"


def exec_frame(session, argv, flags=4 | 8):
    return frame(EXEC, session, struct.pack(">IIIHH", flags, 0, 0, 0, 0) + s("") + strv(argv) +
                 strv(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]))


def say_hello(path, nonce, timeout):
    """Connects to the chardev socket and repeats HELLO until the answer with its nonce."""
    c = Conn(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    c.sock.connect(path)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c.send(hello(nonce))
        try:
            while True:
                f = c.read_frame(timeout=1.0)
                if f[0] == HELLO and hello_nonce(f) == nonce:
                    return c, f
        except AssertionError:
            nonce += 1
    raise AssertionError("the guest's agent did not answer within %d s" % timeout)


@pytest.mark.skipif(os.uname().machine != "x86_64" or not QEMU,
                    reason="needs qemu-system-x86_64 on x86_64")
def test_agent_in_a_busybox_guest(tmp_path):
    """The busybox VM image with this lxm-agent, booted under TCG with the port as lxmd gives it
    (a virtio-serial port on a unix socket chardev): the guest's kernel answers, stdout and the
    exit code come through, and a host that disconnects and comes back is served again."""
    img = str(tmp_path / "img")
    env = dict(os.environ, LXM_TEMPLATE_CACHE=KERNEL_CACHE)
    r = subprocess.run([BUSYBOX_BUILD, img, "--vm", "--agent", agent_binary()], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    disk = str(tmp_path / "disk.img")
    shutil.copyfile(os.path.join(img, "rootfs.img"), disk)
    sock = str(tmp_path / "agent.sock")
    console = tmp_path / "console.log"
    q = subprocess.Popen([
        QEMU, "-accel", "tcg", "-m", "256", "-nographic", "-nodefaults",
        "-serial", "file:%s" % console, "-no-reboot",
        "-kernel", os.path.join(img, "boot", "vmlinuz"),
        "-initrd", os.path.join(img, "boot", "initrd.img"),
        "-append", "console=ttyS0 root=/dev/vda rw",
        "-drive", "file=%s,if=virtio,format=raw" % disk,
        "-device", "virtio-serial",
        "-chardev", "socket,id=ag,path=%s,server=on,wait=off" % sock,
        "-device", "virtserialport,chardev=ag,name=org.lxm.agent.0"])
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.1)
        c, f = say_hello(sock, 1, 120)
        guest = os.uname().release.encode()
        c.send(exec_frame(1, ["uname", "-r"]))
        out = c.expect(STDOUT, timeout=30)[2].strip()
        assert c.expect(EXIT, timeout=30)[2] == struct.pack(">II", 0, 0)
        assert out and out != guest and out in f[2], (out, f[2])

        # The host goes away mid-session and comes back: the agent reopens its port, says
        # HELLO again and serves the new host.
        c.send(exec_frame(2, ["sleep", "100"]))
        c.expect(STARTED, timeout=30)
        c.sock.close()
        c, f = say_hello(sock, 100, 30)
        c.send(exec_frame(3, ["sh", "-c", "pidof sleep; echo again; exit 4"]))
        assert c.expect(STDOUT, timeout=30)[2] == b"again\n", \
            "the sleep of the host that left still runs"
        assert c.expect(EXIT, timeout=30)[2] == struct.pack(">II", 0, 4)
        # Leaving before poweroff exits would end its session (and kill it) first.
        c.send(exec_frame(4, ["poweroff"]))
        assert c.expect(EXIT, timeout=30)[2] == struct.pack(">II", 0, 0)
        c.sock.close()
        assert q.wait(timeout=90) == 0
    finally:
        if q.poll() is None:
            q.kill()
        q.wait()
