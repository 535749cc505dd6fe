"""What the benchmarks share: a private lxmd on a fresh root (with a storage pool made by
`lxm init --auto`, as a user sets up a new server), the Debian image the test suite caches, and
/proc readers."""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_ROOT = "/var/cache/lxm-test"
BOOTED = ("running", "degraded")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def proc_status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


class Daemon:
    """A private lxmd on a fresh root; stop() also removes the root."""

    def __init__(self, build, storage="btrfs"):
        self.lxm = os.path.join(build, "lxm/lxm")
        self.root = tempfile.mkdtemp(prefix="lxm-bench-")
        # Unprivileged containers' root must traverse to their rootfs, as under /var/lib/lxm.
        os.chmod(self.root, 0o711)
        self.env = dict(os.environ, LXM_DIR=self.root)
        self.errpath = os.path.join(self.root, "lxmd.stderr")
        self.errfile = open(self.errpath, "wb")
        self.proc = subprocess.Popen([os.path.join(build, "lxmd/lxmd"), "--root", self.root,
                                      "--foreground", "--log-level", "warn"],
                                     stdin=subprocess.DEVNULL, stdout=self.errfile,
                                     stderr=self.errfile)
        self.names = []
        for _ in range(500):
            if self.proc.poll() is not None:
                raise RuntimeError("lxmd exited with %d:\n%s" % (self.proc.returncode, self.err()))
            if os.path.exists(os.path.join(self.root, "unix.socket")) and \
                    self.run("info", check=False).returncode == 0:
                if storage:
                    self.run("init", "--auto", "--storage-backend", storage, "--no-network")
                return
            time.sleep(0.02)
        raise RuntimeError("lxmd did not answer within 10 s:\n" + self.err())

    @property
    def pid(self):
        return self.proc.pid

    def err(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def run(self, *args, check=True, timeout=600):
        p = subprocess.run([self.lxm] + list(args), env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("lxm %s exited %d: %s%s\nlxmd: %s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr, self.err()))
        return p

    def get(self, path):
        conn = UnixConnection(os.path.join(self.root, "unix.socket"))
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return json.loads(resp.read())["metadata"]
        finally:
            conn.close()

    def timed(self, *args, timeout=600):
        t = time.perf_counter()
        self.run(*args, timeout=timeout)
        return time.perf_counter() - t

    def system_running(self, name, timeout=120):
        """Polls `systemctl is-system-running --wait` until systemd answers running or degraded
        (before its bus is up the exec fails at once); returns the time of that answer."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            p = self.run("exec", name, "--", "systemctl", "is-system-running", "--wait",
                         check=False, timeout=timeout)
            state = p.stdout.strip()
            if state in BOOTED:
                return time.perf_counter(), state
            time.sleep(0.02)
        raise RuntimeError("systemd in %s did not come up within %d s" % (name, timeout))

    def stop(self):
        try:
            for n in self.names:
                self.run("delete", "-f", n, check=False)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            self.errfile.close()
            # Pools stay mounted when lxmd stops (containers keep their files): unmount them.
            with open("/proc/self/mountinfo") as f:
                mnts = [l.split()[4] for l in f if l.split()[4].startswith(self.root + "/")]
            for m in sorted(mnts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], check=False)
            shutil.rmtree(self.root, ignore_errors=True)


def script_hash():
    with open(os.path.join(REPO, "templates", "debian", "build"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def pack_dir(src, path):
    """An uncompressed unified image (metadata.yaml, rootfs/, templates/) of a template OUTDIR."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for entry in ("metadata.yaml", "rootfs", "templates"):
            if os.path.lexists(os.path.join(src, entry)):
                t.add(os.path.join(src, entry), arcname=entry)


