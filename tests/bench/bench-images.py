#!/usr/bin/python3
"""Image benchmark: private lxmds on temporary roots; prints the launch of a stored Debian image to
systemd "running" (command return, and to running) and the start of a stopped one, the clean stop,
an idle Debian container's memory, and the import of a ~130 MB tarball (wall time, MB/s, lxmd's
peak RSS before and after on a fresh daemon), next to the reference figures of
/work/shared/research/anchors.md.

Usage: tests/bench/bench-images.py [--build DIR] [--runs N] [--image FILE] [--with-build]
                                   [--import-mb N] [--import FILE]
The Debian image comes from --image (an `lxm image export` of it), else from the template output
the test suite caches (/var/cache/lxm-test/debian-bookworm-<script hash>, packed here into a
tarball), else, with --with-build, from lxmd building it on the first launch (timed); without any
of these the Debian figures are skipped. The import tarball is made here (metadata.yaml and a
rootfs of small files and incompressible data, uncompressed) unless --import names one.
Everything made is removed at the end.
"""
import argparse
import hashlib
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
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

    def __init__(self, build):
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


def make_import_tarball(path, mb):
    """metadata.yaml + a rootfs of 4000 small files and incompressible data up to mb MB."""
    rng = random.Random(1)

    def add(t, name, data=None, mode=0o644, kind=tarfile.REGTYPE):
        info = tarfile.TarInfo(name)
        info.mode, info.mtime, info.type = mode, 1767225600, kind
        if data is None:
            t.addfile(info)
        else:
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))

    meta = (b"architecture: %s\ncreation_date: 1767225600\nproperties:\n"
            b"  os: lxmbench\n  release: \"1\"\n  description: lxm bench import\n"
            % os.uname().machine.encode())
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        add(t, "metadata.yaml", meta)
        add(t, "rootfs", mode=0o755, kind=tarfile.DIRTYPE)
        for d in range(40):
            add(t, f"rootfs/d{d}", mode=0o755, kind=tarfile.DIRTYPE)
            for i in range(100):
                add(t, f"rootfs/d{d}/f{i}", rng.randbytes(4096))
        left = mb * 1000 * 1000 - 4000 * 4096
        add(t, "rootfs/data", mode=0o755, kind=tarfile.DIRTYPE)
        k = 0
        while left > 0:
            size = min(left, 16 << 20)
            add(t, f"rootfs/data/blob{k}", rng.randbytes(size))
            left -= size
            k += 1


def bench_debian(args, tmp):
    """Figures (a), (b) and (d) on one daemon."""
    d = Daemon(args.build)
    try:
        if args.with_build:
            d.names.append("warmup")
            t = d.timed("launch", "debian", "warmup", timeout=1800)
            print(f"first launch of debian (lxmd builds the image with debootstrap): {t:.1f} s "
                  f"(debootstrap alone on the anchors' machine: 82 s)")
        else:
            image = args.image
            if not image:
                cached = os.path.join(CACHE_ROOT, "debian-bookworm-" + script_hash())
                if not os.path.exists(os.path.join(cached, "metadata.yaml")):
                    print("debian: no image to launch (pass --image FILE or --with-build, or run "
                          "tests/integration/test_template_debian.py to cache a build in "
                          f"{CACHE_ROOT}): skipped")
                    return
                image = os.path.join(tmp, "debian.tar")
                pack_dir(cached, image)
            t = d.timed("image", "import", image, "--alias", "debian")
            print(f"debian image import ({os.path.getsize(image) / 1e6:.0f} MB): {t:.2f} s")
            d.names.append("warmup")
            t = d.timed("launch", "debian", "warmup")
            print(f"first launch of the imported image: {t:.2f} s")
        d.system_running("warmup")
        d.run("stop", "warmup")

        ret, run, mem = [], [], []
        for i in range(args.runs):
            n = f"deb{i}"
            d.names.append(n)
            t0 = time.perf_counter()
            d.run("launch", "debian", n)
            t1 = time.perf_counter()
            t2, _ = d.system_running(n)
            ret.append(t1 - t0)
            run.append(t2 - t0)
        time.sleep(2)
        for i in range(args.runs):
            mem.append(d.get(f"/1.0/instances/deb{i}/state")["memory"]["usage"] / 2**20)
        print(f"launch debian (create + start), {args.runs} runs: command return median "
              f"{statistics.median(ret):.2f} s (min {min(ret):.2f}); to systemd running median "
              f"{statistics.median(run):.2f} s (min {min(run):.2f})")
        print("  anchors: LXC start to running 0.43-0.58 s; LXD btrfs create+start to running "
              "1.68-1.70 s, command return 1.06-1.10 s; LXD dir 3.8-5.0 s")
        if mem:
            print(f"idle debian container memory (cgroup), {len(mem)} containers: median "
                  f"{statistics.median(mem):.1f} MiB (anchor: LXC 7-9 MiB)")

        stop = [d.timed("stop", f"deb{i}") for i in range(args.runs)]
        print(f"clean stop (systemd halt), {args.runs} runs: median "
              f"{statistics.median(stop):.2f} s (min {min(stop):.2f}); anchors: LXC 1.75 s, "
              f"LXD 1.9 s")

        start = []
        for i in range(args.runs):
            t0 = time.perf_counter()
            d.run("start", f"deb{i}")
            t2, _ = d.system_running(f"deb{i}")
            start.append(t2 - t0)
        print(f"start of a stopped debian container to systemd running, {args.runs} runs: median "
              f"{statistics.median(start):.2f} s (min {min(start):.2f}); anchor: LXC 0.43-0.58 s")
    finally:
        d.stop()


def bench_import(args, tmp):
    """Figure (c): a fresh daemon, so its VmHWM before the import is its start-up peak."""
    path = args.import_file
    if not path:
        path = os.path.join(tmp, "import.tar")
        make_import_tarball(path, args.import_mb)
    size = os.path.getsize(path)
    # The tarball is in the page cache now: the import reads it from memory and writes the store.
    d = Daemon(args.build)
    try:
        hwm0, rss0 = proc_status_kib(d.pid, "VmHWM"), proc_status_kib(d.pid, "VmRSS")
        t0 = time.perf_counter()
        cli = subprocess.Popen([d.lxm, "image", "import", path, "--alias", "big"], env=d.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        # The client's own peak, sampled while it runs (its rusage after exit would include
        # the memory of this Python process it was forked from).
        cli_hwm = 0
        while cli.poll() is None:
            try:
                cli_hwm = max(cli_hwm, proc_status_kib(cli.pid, "VmHWM"))
            except OSError:
                pass
            time.sleep(0.01)
        t = time.perf_counter() - t0
        if cli.returncode != 0:
            raise RuntimeError("lxm image import failed: %s" % cli.stderr.read().decode())
        cli.stderr.close()
        hwm1, rss1 = proc_status_kib(d.pid, "VmHWM"), proc_status_kib(d.pid, "VmRSS")
        print(f"image import of a {size / 1e6:.0f} MB tarball: {t:.2f} s, "
              f"{size / 1e6 / t:.0f} MB/s; lxmd peak RSS (VmHWM) {hwm0} KiB before, "
              f"{hwm1} KiB after (RSS {rss0} -> {rss1} KiB); lxm client peak RSS {cli_hwm} KiB")
        # The import unpacked the image too; an instance of it copies that tree (cp, a child).
        d.names.append("big1")
        t = d.timed("init", "big", "big1")
        hwm2 = proc_status_kib(d.pid, "VmHWM")
        print(f"create an instance of it (rootfs copied from the unpacked image): {t:.2f} s; "
              f"lxmd VmHWM {hwm2} KiB after")
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("LXM_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", help="an exported debian image to launch from")
    ap.add_argument("--with-build", action="store_true",
                    help="let lxmd build the debian image (debootstrap) and time it")
    ap.add_argument("--import-mb", type=int, default=130)
    ap.add_argument("--import", dest="import_file", help="a tarball to time the import of")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    tmp = tempfile.mkdtemp(prefix="lxm-bench-images-")
    try:
        bench_import(args, tmp)
        bench_debian(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
