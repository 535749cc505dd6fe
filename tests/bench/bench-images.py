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
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import CACHE_ROOT, Daemon, pack_dir, proc_status_kib, script_hash  # noqa: E402


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
    d = Daemon(args.build, args.storage)
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
    d = Daemon(args.build, args.storage)
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
    ap.add_argument("--storage", default="btrfs", choices=("dir", "btrfs", "overlay"),
                    help="the pool `lxm init --auto` makes (default btrfs)")
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
