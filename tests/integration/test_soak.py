"""Soak: many containers through their whole life in one lxmd (launch, exec, stop -f, delete),
and many execs into one container; lxmd's fds, RSS and threads must not grow with the count,
and nothing may be left behind: no lxm-monitor, no cgroup, no mount, no directory, no zombie.
The file keeps to well under a minute.
"""

import os
import time

from lxmtest import assert_sync, cgroup_dirs, descendants, pids_mentioning, unique

ITERATIONS = 20
FD_SLACK = 8
RSS_SLACK = 4 << 20
THREAD_SLACK = 2


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split()[1]
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def rss_bytes(pid):
    return int(status(pid, "VmRSS")) * 1024


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def fds_of(pid):
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[fd] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return out


def monitors(lxmd):
    """Processes other than lxmd whose command line names this lxmd's root: its monitors."""
    return [p for p in pids_mentioning(lxmd.root) if p != lxmd.pid]


def mounts_mentioning(text):
    with open("/proc/self/mountinfo") as f:
        return [l.strip() for l in f if text in l]


def lxmd_zombies(lxmd):
    return [p for p in descendants(lxmd.pid) if proc_state(p) == "Z"]


def settle(pred, msg, timeout=5):
    """Waits up to timeout for pred(); fails with msg() (computed then) if it never holds."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, msg()
        time.sleep(0.05)


def snapshot(lxmd):
    pid = lxmd.pid
    return {"fds": fd_count(pid), "rss": rss_bytes(pid), "threads": int(status(pid, "Threads")),
            "fd_table": fds_of(pid), "asan": sanitized(pid)}


def sanitized(pid):
    """True for an ASan build: its allocator keeps freed memory in quarantine (up to 256 MiB),
    so RSS says nothing about leaks there; LeakSanitizer checks lxmd at exit instead."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def assert_no_growth(first, last, what):
    new_fds = {fd: t for fd, t in last["fd_table"].items() if first["fd_table"].get(fd) != t}
    assert last["fds"] <= first["fds"] + FD_SLACK, \
        "lxmd's fds grew from %d to %d over %s; new or changed: %r" % (
            first["fds"], last["fds"], what, new_fds)
    assert first["asan"] or last["rss"] <= first["rss"] + RSS_SLACK, \
        "lxmd's RSS grew from %.1f MiB to %.1f MiB over %s" % (
            first["rss"] / 2**20, last["rss"] / 2**20, what)
    assert last["threads"] <= first["threads"] + THREAD_SLACK, \
        "lxmd's threads grew from %d to %d over %s" % (first["threads"], last["threads"], what)


def assert_instance_gone(lxmd, name):
    assert cgroup_dirs(name) == [], "cgroups of %s left behind" % name
    for d in ("containers", "run", "logs"):
        assert not os.path.exists(os.path.join(lxmd.root, d, name)), \
            "%s/%s left behind" % (d, name)
    assert lxmd.api("GET", "/1.0/instances/" + name).status == 404


def test_launch_exec_stop_delete_loop(lxmd):
    names = []
    first = None
    t0 = time.monotonic()
    try:
        for i in range(ITERATIONS):
            name = unique("soak%d" % i)
            names.append(name)
            # Every other one with limits, so that the cgroup files are written as well.
            cfg = [] if i % 2 else ["-c", "limits.memory=64MiB", "-c", "limits.processes=200"]
            lxmd.cli("launch", "busybox", name, *cfg)
            lxmd.cli("exec", name, "--", "true")
            out = lxmd.cli("exec", name, "--", "sh", "-c", "echo $((6*7))").stdout
            assert out == "42\n", out
            lxmd.cli("stop", "-f", name)
            lxmd.cli("delete", name)
            assert_instance_gone(lxmd, name)
            if i == 0:
                first = snapshot(lxmd)
        elapsed = time.monotonic() - t0
        last = snapshot(lxmd)
    finally:
        for name in names:
            lxmd.cli("delete", "-f", name, check=False)

    assert_no_growth(first, last, "%d launch/exec/stop/delete rounds" % (ITERATIONS - 1))
    assert assert_sync(lxmd.api("GET", "/1.0/instances")) == []
    assert monitors(lxmd) == [], "lxm-monitor processes left: %r" % monitors(lxmd)
    settle(lambda: not lxmd_zombies(lxmd), lambda: "lxmd did not reap %r" % lxmd_zombies(lxmd))
    kids = descendants(lxmd.pid)
    assert [p for p in kids if proc_state(p) not in (None, "Z")] == [], \
        "processes still below lxmd: %r" % kids
    assert mounts_mentioning(lxmd.base) == [], mounts_mentioning(lxmd.base)
    for name in names:
        assert cgroup_dirs(name) == [], name
    # A round stays cheap (lxmd's budget: well under a second for a busybox container).
    assert elapsed / ITERATIONS < 2.5, "%.2f s per round" % (elapsed / ITERATIONS)


def test_many_execs_leak_nothing(lxmd):
    name = unique("execsoak")
    lxmd.cli("launch", "busybox", name)
    try:
        mons = monitors(lxmd)
        assert len(mons) == 1, "expected one monitor, found %r" % mons
        mon = mons[0]

        def one(k):
            out = lxmd.cli("exec", name, "--", "sh", "-c", "echo $((%d+1))" % k).stdout
            assert out == "%d\n" % (k + 1), out

        for k in range(5):
            one(k)
        first, mon_first = snapshot(lxmd), fds_of(mon)
        for k in range(60):
            one(k)
        # A command that fails and one killed by a signal take the error paths.
        for _ in range(5):
            assert lxmd.cli("exec", name, "--", "/no/such/cmd", check=False).returncode == 127
            assert lxmd.cli("exec", name, "--", "sh", "-c", "kill -9 $$",
                            check=False).returncode == 137
        last, mon_last = snapshot(lxmd), fds_of(mon)
        assert_no_growth(first, last, "70 execs")
        # Every exec's helper is gone and reaped (lxmd reaps asynchronously: a moment's grace):
        # only the container's monitor is left.
        settle(lambda: monitors(lxmd) == [mon], lambda: "exec helpers left: %r" % monitors(lxmd))
        settle(lambda: not lxmd_zombies(lxmd), lambda: "lxmd did not reap %r" % lxmd_zombies(lxmd))
        assert len(mon_last) <= len(mon_first) + 2, \
            "the monitor's fds grew from %d to %d: new %r" % (
                len(mon_first), len(mon_last),
                {fd: t for fd, t in mon_last.items() if mon_first.get(fd) != t})
        # The execs are gone from the container: its usual few processes only.
        st = assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % name))
        assert st["processes"] <= 5, st["processes"]
    finally:
        lxmd.cli("delete", "-f", name, check=False)
    assert_instance_gone(lxmd, name)
    assert monitors(lxmd) == []
    assert mounts_mentioning(lxmd.base) == []
