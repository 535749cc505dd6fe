#!/usr/bin/python3
"""Containers against virtual machines on this machine (issue 9's comparison): a private lxmd on
a temporary root starts N busybox containers and N busybox VMs (the same busybox userland; the VM
image carries the Debian cloud kernel and lxm-agent) and prints, side by side:

  ready     launch command to the first `lxm exec NAME -- true` that answers (s)
  idle mem  per instance once idle: the container's cgroup; the VM's cgroup and QEMU's RSS (MiB)
  fit       how many such instances fit in --budget-mib of memory
  cpu       a fixed hash workload (sha256 of --hash-mib MiB of zeros) inside, as a ratio to the
            same busybox command on the host (1.0 = native)
  disk      sequential write of --write-mib MiB with fsync inside (MB/s)

Each row says which acceleration the VMs used (KVM figures are only printed where KVM ran). The
table goes to stdout; --json FILE also writes the figures as JSON.

Usage: tests/bench/bench-compare.py [--build DIR] [-n N] [--storage dir|btrfs|overlay]
                                    [--vm-memory MiB] [--budget-mib MiB] [--json FILE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import REPO, Daemon, proc_status_kib  # noqa: E402

KERNEL_CACHE = "/var/cache/lxm-test/kernel"


def vm_image(build, tmp):
    """The busybox VM image as a tarball (templates/busybox/build --vm with the agent built in
    build; the kernel package is cached where the test suite keeps it)."""
    agent = os.path.join(build, "lxmd", "vm", "agent", "lxm-agent")
    out = os.path.join(tmp, "img")
    env = dict(os.environ, LXM_TEMPLATE_CACHE=KERNEL_CACHE)
    subprocess.run([os.path.join(REPO, "templates", "busybox", "build"), out, "--vm", "--agent",
                    agent], check=True, capture_output=True, env=env, timeout=900)
    tarball = os.path.join(tmp, "vm.tar")
    with tarfile.open(tarball, "w") as t:
        for name in ("metadata.yaml", "rootfs.img", "boot"):
            t.add(os.path.join(out, name), arcname=name)
    shutil.rmtree(out)
    return tarball


def wait_exec(d, name, timeout=300):
    """Polls `lxm exec NAME -- true` until it answers; returns the time it did."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if d.run("exec", name, "--", "true", check=False, timeout=timeout).returncode == 0:
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError("%s: exec did not answer within %d s" % (name, timeout))


def in_guest(d, name, script, timeout=600):
    """Wall time of `sh -c script` inside name, measured from the host."""
    t = time.perf_counter()
    d.run("exec", name, "--", "sh", "-c", script, timeout=timeout)
    return time.perf_counter() - t


def launch(d, kind, i, vm_memory):
    name = "bench-%s%d" % (kind, i)
    args = ["launch", "busybox", name]
    if kind == "vm":
        args += ["--vm", "-c", "limits.memory=%dMiB" % vm_memory]
    t = time.perf_counter()
    d.run(*args, timeout=600)
    d.names.append(name)
    return name, wait_exec(d, name) - t


def idle_memory(d, name, kind):
    """(cgroup MiB, process RSS MiB or None) once the instance has settled."""
    st = d.get("/1.0/instances/%s/state" % name)
    cg = st["memory"]["usage"] / 2**20
    rss = proc_status_kib(st["pid"], "VmRSS") / 1024 if kind == "vm" else None
    return cg, rss


def host_hash(hash_mib):
    t = time.perf_counter()
    subprocess.run(["/bin/busybox", "sh", "-c", "dd if=/dev/zero bs=1M count=%d 2>/dev/null | "
                    "busybox sha256sum >/dev/null" % hash_mib], check=True)
    return time.perf_counter() - t


def measure(d, kind, n, args):
    rows = {"ready_s": [], "idle_cgroup_mib": [], "idle_rss_mib": [], "cpu_s": [],
            "disk_mbps": []}
    names = []
    for i in range(n):
        name, ready = launch(d, kind, i, args.vm_memory)
        names.append(name)
        rows["ready_s"].append(ready)
    time.sleep(args.settle)
    for name in names:
        cg, rss = idle_memory(d, name, kind)
        rows["idle_cgroup_mib"].append(cg)
        if rss is not None:
            rows["idle_rss_mib"].append(rss)
    for name in names:
        rows["cpu_s"].append(in_guest(d, name, "dd if=/dev/zero bs=1M count=%d 2>/dev/null | "
                                      "sha256sum >/dev/null" % args.hash_mib))
        secs = in_guest(d, name, "dd if=/dev/zero of=/root/bench.out bs=1M count=%d "
                        "conv=fsync 2>/dev/null; rm -f /root/bench.out" % args.write_mib)
        rows["disk_mbps"].append(args.write_mib * 2**20 / 1e6 / secs)
    for name in names:
        d.run("delete", "-f", name, timeout=300)
        d.names.remove(name)
    return {k: v for k, v in rows.items() if v}


def median(v):
    return statistics.median(v) if v else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("-n", type=int, default=3, help="instances of each kind")
    ap.add_argument("--storage", default="dir", choices=["dir", "btrfs", "overlay"])
    ap.add_argument("--vm-memory", type=int, default=256, help="guest RAM (MiB)")
    ap.add_argument("--budget-mib", type=int, default=16384, help="memory budget for 'fit'")
    ap.add_argument("--hash-mib", type=int, default=256)
    ap.add_argument("--write-mib", type=int, default=128)
    ap.add_argument("--settle", type=float, default=5.0, help="idle seconds before measuring")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="lxm-bench-compare-")
    d = None
    try:
        tarball = vm_image(args.build, tmp)
        d = Daemon(args.build, storage=args.storage)
        d.run("image", "import", tarball, "--alias", "busybox/vm", timeout=300)
        d.run("launch", "busybox", "bench-warm", timeout=600)  # builds the container image
        d.run("delete", "-f", "bench-warm")
        env = d.get("/1.0")["environment"]
        accel = env.get("vm_acceleration", "?")
        reason = env.get("vm_acceleration_reason", "")
        native = host_hash(args.hash_mib)
        result = {"n": args.n, "storage": args.storage, "vm_memory_mib": args.vm_memory,
                  "vm_acceleration": accel, "vm_acceleration_reason": reason,
                  "host_hash_s": native, "hash_mib": args.hash_mib, "write_mib": args.write_mib}
        for kind in ("container", "vm"):
            rows = measure(d, kind, args.n, args)
            mem = median(rows["idle_cgroup_mib"])
            if kind == "vm":
                mem = max(mem, median(rows["idle_rss_mib"]))
            result[kind] = {
                "raw": rows,
                "ready_s": median(rows["ready_s"]),
                "idle_mib": mem,
                "fit": int(args.budget_mib // mem) if mem else None,
                "cpu_ratio": median(rows["cpu_s"]) / native,
                "disk_mbps": median(rows["disk_mbps"]),
            }
    finally:
        if d:
            d.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    c, v = result["container"], result["vm"]
    label = "vm (%s)" % accel
    print("containers vs VMs: %d of each, busybox, %s pool, VM RAM %d MiB; VMs used %s: %s"
          % (args.n, args.storage, args.vm_memory, accel, reason))
    print("%-22s %14s %14s %10s" % ("", "container", label, "vm/ct"))
    for key, title, fmt in (("ready_s", "ready (s)", "%.3f"), ("idle_mib", "idle memory (MiB)",
                                                                 "%.1f"),
                            ("fit", "fit in %d MiB" % args.budget_mib, "%d"),
                            ("cpu_ratio", "cpu time / native", "%.2f"),
                            ("disk_mbps", "disk write (MB/s)", "%.0f")):
        a, b = c[key], v[key]
        ratio = "%.1fx" % (b / a) if a and b else "-"
        print("%-22s %14s %14s %10s" % (title, fmt % a, fmt % b, ratio))
    if accel != "kvm":
        print("(no KVM figures: KVM was not used on this machine)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
