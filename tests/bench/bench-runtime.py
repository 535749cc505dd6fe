#!/usr/bin/python3
"""Runtime benchmark: a private lxmd on a temporary root; prints busybox launch time (command
return, and to Running), start of a stopped container, `lxm exec c -- true` round trip, clean and
forced stop, and the RSS of lxm-monitor and lxmd.

Usage: tests/bench/bench-runtime.py [--build DIR] [--runs N] [--storage dir|btrfs|overlay]
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def cmdline(pid):
    """A process's command line, empty when it is gone (processes come and go meanwhile)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def timed(argv, env):
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("LXM_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--storage", default="btrfs", choices=("dir", "btrfs", "overlay"),
                    help="the pool `lxm init --auto` makes (default btrfs)")
    args = ap.parse_args()
    lxm = os.path.join(args.build, "lxm/lxm")
    root = tempfile.mkdtemp(prefix="lxm-bench-")
    env = dict(os.environ, LXM_DIR=root)
    daemon = subprocess.Popen([os.path.join(args.build, "lxmd/lxmd"), "--root", root,
                               "--foreground", "--log-level", "warn"], stderr=subprocess.DEVNULL)
    names = []
    rc = 1
    try:
        for _ in range(200):
            if os.path.exists(os.path.join(root, "unix.socket")):
                break
            time.sleep(0.02)
        subprocess.run([lxm, "init", "--auto", "--storage-backend", args.storage,
                        "--no-network"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        print(f"storage pool: {args.storage}")
        # The first launch builds the busybox image from its template: time it apart.
        t = timed([lxm, "launch", "busybox", "warmup"], env)
        names.append("warmup")
        print(f"first launch (builds the busybox image): {t:.0f} ms")

        launch, start, stop, kill, exe = [], [], [], [], []
        for i in range(args.runs):
            n = f"bench{i}"
            launch.append(timed([lxm, "launch", "busybox", n], env))
            names.append(n)
        print(f"launch busybox (create + start, command return = Running), {args.runs} runs: "
              f"median {statistics.median(launch):.1f} ms, min {min(launch):.1f} ms")
        for _ in range(args.runs * 3):
            try:
                exe.append(timed([lxm, "exec", "bench0", "--", "true"], env))
            except subprocess.CalledProcessError:
                exe = []
                break
        if exe:
            print(f"exec true round trip, {len(exe)} runs: median {statistics.median(exe):.1f} ms")
        else:
            print("exec: not available")
        mon = [int(p) for p in os.listdir("/proc") if p.isdigit() and
               b"lxm-monitor" in cmdline(p) and root.encode() in cmdline(p)]
        rss = sorted(rss_kib(p) for p in mon)
        print(f"lxm-monitor RSS over {len(rss)} monitors: median {statistics.median(rss)} KiB, "
              f"max {rss[-1]} KiB")
        print(f"lxmd RSS with {len(names)} running containers: {rss_kib(daemon.pid)} KiB")
        for i in range(args.runs):
            n = f"bench{i}"
            if i % 2 == 0:
                stop.append(timed([lxm, "stop", n], env))
            else:
                kill.append(timed([lxm, "stop", "--force", n], env))
        print(f"stop (clean, busybox init): median {statistics.median(stop):.1f} ms; "
              f"stop --force: median {statistics.median(kill):.1f} ms")
        for i in range(0, args.runs, 2):
            start.append(timed([lxm, "start", f"bench{i}"], env))
        print(f"start of a stopped container: median {statistics.median(start):.1f} ms")
        rc = 0
    finally:
        for n in names:
            subprocess.run([lxm, "delete", "-f", n], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        # Pools stay mounted when lxmd stops (containers keep their files): unmount them.
        with open("/proc/self/mountinfo") as f:
            mnts = [line.split()[4] for line in f if line.split()[4].startswith(root + "/")]
        for m in sorted(mnts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(root, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
