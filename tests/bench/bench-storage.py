#!/usr/bin/python3
"""Storage benchmark: for each pool driver (dir, btrfs on a loop file, overlay), a private lxmd
whose pool `lxm init --auto --storage-backend DRIVER` makes; prints, from a cached image, the
median wall time of `lxm init IMAGE c` (create), `lxm snapshot c`, `lxm restore c snap` (stopped)
and `lxm copy c c2`, next to the targets of issue 5 (create <= 100 ms, snapshot <= 50 ms, restore
<= 200 ms, copy <= 150 ms on btrfs and overlay) and LXD's figures from anchors.md.

Usage: tests/bench/bench-storage.py [--build DIR] [--runs N] [--drivers dir,btrfs,overlay]
                                    [--image debian|busybox]
--image debian uses the Debian image the test suite caches (/var/cache/lxm-test), packed and
imported here; busybox (the default when that cache is missing) is built offline by lxmd.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import CACHE_ROOT, REPO, Daemon, pack_dir, script_hash  # noqa: E402


def median_ms(xs):
    return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f})"


def bench_driver(args, driver, image_file):
    d = Daemon(args.build, driver)
    try:
        if image_file:
            d.run("image", "import", image_file, "--alias", "benchimg")
            image = "benchimg"
        else:
            image = "busybox"
        # The first create makes the pool's image volume (unpack once per pool): timed apart.
        d.names.append("warm")
        first = d.timed("init", image, "warm")
        create, snap, restore, copy = [], [], [], []
        for i in range(args.runs):
            n, c = f"b{i}", f"b{i}copy"
            d.names += [n, c]
            create.append(d.timed("init", image, n))
            snap.append(d.timed("snapshot", n, "s0"))
            restore.append(d.timed("restore", n, "s0"))
            copy.append(d.timed("copy", n, c))
        print(f"{driver}: first create (makes the pool's image volume) {first * 1000:.0f} ms")
        print(f"{driver}: create {median_ms(create)}; snapshot {median_ms(snap)}; "
              f"restore {median_ms(restore)}; copy {median_ms(copy)}  [{args.runs} runs]")
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("LXM_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--drivers", default="dir,btrfs,overlay")
    ap.add_argument("--image", choices=("debian", "busybox"))
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    cached = os.path.join(CACHE_ROOT, "debian-bookworm-" + script_hash())
    use_debian = args.image == "debian" or (
        args.image is None and os.path.exists(os.path.join(cached, "metadata.yaml")))
    tmp = tempfile.mkdtemp(prefix="lxm-bench-storage-")
    try:
        image_file = None
        if use_debian:
            if not os.path.exists(os.path.join(cached, "metadata.yaml")):
                print(f"debian: no cached image in {cached} (run "
                      "tests/integration/test_template_debian.py first)")
                return 1
            image_file = os.path.join(tmp, "debian.tar")
            pack_dir(cached, image_file)
            print(f"image: cached debian bookworm ({os.path.getsize(image_file) / 1e6:.0f} MB)")
        else:
            print("image: busybox")
        print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        for driver in args.drivers.split(","):
            bench_driver(args, driver, image_file)
        print("targets (btrfs, overlay): create <= 100 ms, snapshot <= 50 ms, restore <= 200 ms, "
              "copy <= 150 ms; LXD btrfs: create 1.06 s, snapshot 0.25 s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
